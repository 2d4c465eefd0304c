package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/paystatus/orderstatus/internal/events"
	"github.com/paystatus/orderstatus/internal/natstest"
	kssandbox "github.com/paystatus/orderstatus/internal/providers/kuaishou/sandbox"
)

// startService runs `consumer --config path` until the returned stop is called (or the test ends).
func startService(t *testing.T, path string) (stop func()) {
	t.Helper()
	_, _, stop = startCommand(t, "--config", path, "--log-format", "json")
	return stop
}

// streamMsgs reads every message a stream holds, in order.
func streamMsgs(t *testing.T, js jetstream.JetStream, name string) []*jetstream.RawStreamMsg {
	t.Helper()
	ctx := context.Background()
	s, err := js.Stream(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	st := s.CachedInfo().State
	var out []*jetstream.RawStreamMsg
	for seq := st.FirstSeq; st.Msgs > 0 && seq <= st.LastSeq; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, m)
	}
	return out
}

// deadLetters are the dead letters (not their .payload messages) in ORDERS_DLQ.
func deadLetters(t *testing.T, js jetstream.JetStream) []*jetstream.RawStreamMsg {
	t.Helper()
	var out []*jetstream.RawStreamMsg
	for _, m := range streamMsgs(t, js, "ORDERS_DLQ") {
		if !strings.HasSuffix(m.Subject, ".payload") {
			out = append(out, m)
		}
	}
	return out
}

func seqs(ms []*jetstream.RawStreamMsg) []uint64 {
	var out []uint64
	for _, m := range ms {
		out = append(out, m.Sequence)
	}
	return out
}

var listedSeqRe = regexp.MustCompile(`(?m)^(\d+)\s+\d{4}-`)

// listed are the sequences a dry run lists.
func listed(out string) []uint64 {
	var s []uint64
	for _, m := range listedSeqRe.FindAllStringSubmatch(out, -1) {
		n, _ := strconv.ParseUint(m[1], 10, 64)
		s = append(s, n)
	}
	return s
}

func setQueryMaxMsgSize(t *testing.T, js jetstream.JetStream, size int32) {
	t.Helper()
	s, err := js.Stream(context.Background(), "ORDERS_QUERY")
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.CachedInfo().Config
	cfg.MaxMsgSize = size
	if _, err := js.UpdateStream(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
}

// Dead letters made by the real pipeline are listed, filtered, replayed without loss when a
// publish fails half-way, and processed once replayed.
func TestDLQReplay(t *testing.T) {
	ns := natstest.RunServer(t)
	sb := kssandbox.New(30)
	kssandbox.LoadDemo(sb)
	if err := sb.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	defer sb.Close()
	dir := t.TempDir()
	conf := func(name, appID, secret string) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte("nats:\n  url: "+ns.ClientURL()+"\nhttp:\n  listen: \"\"\nproviders:\n  kuaishou:\n    base_url: "+sb.URL()+
			"\n    apps:\n      - app_id: "+appID+"\n        app_secret: "+secret+"\n"), 0o600)
		return p
	}
	// Before: the demo app is missing from the config, so its requests are dead-lettered.
	before := conf("before.yaml", "ks700000000000000002", "demo-secret-2")
	after := conf("after.yaml", kssandbox.DemoAppID, kssandbox.DemoAppSecret)

	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx := context.Background()

	stop := startService(t, before)
	natstest.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		_, err := js.Consumer(ctx, "ORDERS_QUERY", "orders-query")
		return err
	})
	big := bytes.Repeat([]byte("x"), int(nc.MaxPayload())-200) // fits a request, not a dead letter
	reqs := []struct {
		subject string
		data    []byte
		hdr     nats.Header
	}{
		{"orders.query.kuaishou.payment", []byte(`{"app_id":"` + kssandbox.DemoAppID + `","order_no":"` + kssandbox.DemoOrderNo + `"}`), nats.Header{"X-Keep": {"a"}, "Nats-Msg-Id": {"req-1"}}},
		{"orders.query.kuaishou.payment", []byte(`{"app_id":"` + kssandbox.DemoAppID + `","order_no":"1637808229728demo"}`), nil},
		{"orders.query.kuaishou.payment", []byte("not json"), nats.Header{"X-Keep": {"b"}}},
		{"orders.query.kuaishou.refund", big, nil},
		{"orders.query.kuaishou.payment", []byte("still not json"), nil},
		{"orders.query.kudian.payment", []byte(`{"app_id":"kd1","order_no":"o1"}`), nil},
	}
	for i, r := range reqs {
		if _, err := js.PublishMsg(ctx, &nats.Msg{Subject: r.subject, Data: r.data, Header: r.hdr}); err != nil {
			t.Fatal(err)
		}
		natstest.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error { // one at a time: a known order
			if n := len(deadLetters(t, js)); n != i+1 {
				return errors.New("waiting for a dead letter")
			}
			return nil
		})
	}
	stop()
	dl := deadLetters(t, js)
	reasons := []string{}
	for _, m := range dl {
		reasons = append(reasons, m.Header.Get(events.HeaderErrorReason))
	}
	if !slices.Equal(reasons[:5], []string{"unknown_app", "unknown_app", "invalid_payload", "invalid_payload", "invalid_payload"}) || dl[3].Header.Get(events.HeaderPayloadSeq) == "" {
		t.Fatalf("dead letters: %v, big one's headers %v", reasons, dl[3].Header)
	}
	dlqBefore, queryBefore := streamMsgs(t, js, "ORDERS_DLQ"), streamMsgs(t, js, "ORDERS_QUERY")

	t.Run("filters", func(t *testing.T) {
		for name, tc := range map[string]struct {
			args []string
			want []*jetstream.RawStreamMsg
		}{
			"all":      {nil, dl},
			"reason":   {[]string{"--reason", "unknown_app"}, dl[:2]},
			"reasons":  {[]string{"--reason", "unknown_app," + reasons[5]}, []*jetstream.RawStreamMsg{dl[0], dl[1], dl[5]}},
			"kind":     {[]string{"--kind", "refund"}, dl[3:4]},
			"provider": {[]string{"--provider", "kudian"}, dl[5:]}, // a provider not configured: its dead letter keeps its name
			"both":     {[]string{"--provider", "kuaishou", "--kind", "payment", "--reason", "invalid_payload"}, []*jetstream.RawStreamMsg{dl[2], dl[4]}},
			"time":     {[]string{"--since", dl[2].Time.Format(time.RFC3339Nano), "--until", dl[3].Time.Format(time.RFC3339Nano)}, dl[2:4]},
			"none":     {[]string{"--reason", "no_such_reason"}, nil},
		} {
			code, stdout, stderr := runCmd(append([]string{"dlq", "replay", "--config", before, "--dry-run"}, tc.args...)...)
			if code != 0 || !slices.Equal(listed(stdout), seqs(tc.want)) {
				t.Errorf("%s: exit %d, listed %v, want %v\n%s%s", name, code, listed(stdout), seqs(tc.want), stdout, stderr)
			}
		}
		if got := streamMsgs(t, js, "ORDERS_DLQ"); !slices.Equal(seqs(got), seqs(dlqBefore)) {
			t.Fatalf("a dry run changed ORDERS_DLQ: %v -> %v", seqs(dlqBefore), seqs(got))
		}
		if got := streamMsgs(t, js, "ORDERS_QUERY"); len(got) != len(queryBefore) {
			t.Fatalf("a dry run published: %d -> %d", len(queryBefore), len(got))
		}
	})

	t.Run("too big is skipped, the rest replayed", func(t *testing.T) {
		setQueryMaxMsgSize(t, js, 64<<10) // the big one cannot be stored
		code, stdout, stderr := runCmd("dlq", "replay", "--config", before, "--reason", "invalid_payload")
		if code != 1 || !strings.Contains(stdout, "skipped "+listedSeq(dl[3])+" invalid_payload: too_big: ") ||
			!strings.Contains(stdout, "ORDERS_QUERY max_msg_size 65536") ||
			!strings.Contains(stdout, "2 dead letters replayed (0 were already queued), 1 skipped (too_big 1)") ||
			stderr != "consumer: 1 dead letters skipped; they are still in ORDERS_DLQ\n" {
			t.Fatalf("exit %d\n%s%s", code, stdout, stderr)
		}
		left := seqs(streamMsgs(t, js, "ORDERS_DLQ"))
		payloadSeq := dl[3].Header.Get(events.HeaderPayloadSeq)
		for _, m := range []*jetstream.RawStreamMsg{dl[0], dl[1], dl[3], dl[5]} {
			if !slices.Contains(left, m.Sequence) {
				t.Errorf("dead letter %d deleted, but its replay was not stored", m.Sequence)
			}
		}
		for _, m := range []*jetstream.RawStreamMsg{dl[2], dl[4]} {
			if slices.Contains(left, m.Sequence) {
				t.Errorf("dead letter %d replayed but not deleted", m.Sequence)
			}
		}
		if ps, _ := strconv.ParseUint(payloadSeq, 10, 64); !slices.Contains(left, ps) {
			t.Errorf("the big one's payload message %s is gone: %v", payloadSeq, left)
		}
		q := streamMsgs(t, js, "ORDERS_QUERY")
		if len(q) != 2 || string(q[0].Data) != "not json" || q[0].Subject != "orders.query.kuaishou.payment" || q[0].Header.Get("X-Keep") != "b" ||
			q[0].Header.Get("Nats-Msg-Id") == "" || string(q[1].Data) != "still not json" {
			t.Fatalf("ORDERS_QUERY after the run: %+v", q)
		}
		for k := range q[0].Header {
			if strings.HasPrefix(k, "Orders-") {
				t.Errorf("replay carries the dead letter's header %s", k)
			}
		}
	})

	t.Run("oversized replays whole", func(t *testing.T) {
		setQueryMaxMsgSize(t, js, -1)
		code, stdout, stderr := runCmd("dlq", "replay", "--config", before, "--reason", "invalid_payload")
		if code != 0 || !strings.Contains(stdout, "1 dead letters replayed") {
			t.Fatalf("exit %d\n%s%s", code, stdout, stderr)
		}
		left := streamMsgs(t, js, "ORDERS_DLQ")
		if !slices.Equal(seqs(left), []uint64{dl[0].Sequence, dl[1].Sequence, dl[5].Sequence}) {
			t.Fatalf("left in ORDERS_DLQ: %v (the big one and its payload must be gone)", seqs(left))
		}
		q := streamMsgs(t, js, "ORDERS_QUERY")
		if len(q) != 3 || !bytes.Equal(q[2].Data, big) || q[2].Subject != "orders.query.kuaishou.refund" {
			t.Fatalf("ORDERS_QUERY: %d messages", len(q))
		}
	})

	t.Run("replayed requests are processed", func(t *testing.T) {
		sub, err := nc.SubscribeSync("orders.status.>")
		if err != nil {
			t.Fatal(err)
		}
		startService(t, after)
		code, stdout, stderr := runCmd("dlq", "replay", "--config", after, "--reason", "unknown_app")
		if code != 0 || !strings.Contains(stdout, "2 dead letters replayed") {
			t.Fatalf("exit %d\n%s%s", code, stdout, stderr)
		}
		got := map[string]bool{}
		for range 2 {
			ev := receiveEvent(t, sub)
			got[ev.OrderNo] = true
			if ev.OrderNo == kssandbox.DemoOrderNo && ev.RequestID != "req-1-replay-"+listedSeq(dl[0]) {
				t.Errorf("request id %q", ev.RequestID)
			}
		}
		if !got[kssandbox.DemoOrderNo] || !got["1637808229728demo"] {
			t.Fatalf("events for %v", got)
		}
		for _, m := range deadLetters(t, js) {
			if m.Sequence == dl[0].Sequence || m.Sequence == dl[1].Sequence {
				t.Fatalf("dead letter %d still there", m.Sequence)
			}
		}
	})
}

func listedSeq(m *jetstream.RawStreamMsg) string { return strconv.FormatUint(m.Sequence, 10) }
