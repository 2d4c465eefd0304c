package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/paystatus/orderstatus/internal/config"
	"github.com/paystatus/orderstatus/internal/dlq"
	"github.com/paystatus/orderstatus/internal/events"
	"github.com/paystatus/orderstatus/internal/natsinfra"
	"github.com/paystatus/orderstatus/internal/natstest"
)

// replayFixture is a server with the service's streams, a config with Kuaishou only, and a
// way to store dead letters as the service does.
type replayFixture struct {
	url, config string
	nc          *nats.Conn
	js          jetstream.JetStream
}

func newReplayFixture(t *testing.T) *replayFixture {
	t.Helper()
	ns := natstest.RunServer(t)
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, _ := jetstream.New(nc)
	for _, sc := range natsinfra.StreamConfigs(config.Default()) {
		if _, err := js.CreateOrUpdateStream(context.Background(), sc); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(t.TempDir(), "consumer.yaml")
	os.WriteFile(path, []byte("nats:\n  url: "+ns.ClientURL()+"\nproviders:\n  kuaishou:\n    base_url: http://127.0.0.1:1\n    apps:\n      - app_id: a1\n        app_secret: s\n"), 0o600)
	t.Setenv("XDG_CONFIG_HOME", t.TempDir()) // no nats CLI context of the machine's
	return &replayFixture{url: ns.ClientURL(), config: path, nc: nc, js: js}
}

// deadLetter stores a dead letter whose Orders-Subject is target ("" for none).
func (f *replayFixture) deadLetter(t *testing.T, target string, data []byte, hdr nats.Header) uint64 {
	t.Helper()
	m := &nats.Msg{Subject: "orders.dlq.kuaishou.payment", Data: data, Header: nats.Header{events.HeaderErrorReason: {"invalid_payload"}, events.HeaderError: {"x"}}}
	for k, v := range hdr {
		m.Header[k] = v
	}
	if target != "" {
		m.Header.Set(events.HeaderSubject, target)
	}
	ack, err := f.js.PublishMsg(context.Background(), m)
	if err != nil {
		t.Fatal(err)
	}
	return ack.Sequence
}

// A letter that cannot be replayed is skipped with its reason and left in ORDERS_DLQ; the
// letters after it are still replayed; the summary counts each reason and the exit is 1.
func TestDLQReplaySkipsAndGoesOn(t *testing.T) {
	f := newReplayFixture(t)
	a := f.deadLetter(t, "orders.query.kuaishou.payment", []byte("a"), nil)
	noSubject := f.deadLetter(t, "", []byte("n"), nil)
	b := f.deadLetter(t, "orders.query.kuaishou.refund", []byte("b"), nil)
	follow := f.deadLetter(t, "orders.follow.x", []byte("f"), nil)
	unknown := f.deadLetter(t, "orders.query.kudian.payment", []byte("k"), nil) // kudian is not configured

	code, stdout, stderr := runCmd("dlq", "replay", "--config", f.config, "--dry-run", "--json")
	var dry dlq.Summary
	if err := json.Unmarshal([]byte(stdout), &dry); err != nil || code != 0 || !dry.DryRun || dry.Replayed != 2 || dry.SkippedTotal() != 3 {
		t.Fatalf("dry run: exit %d, %v, %+v\n%s", code, err, dry, stderr)
	}

	code, stdout, stderr = runCmd("dlq", "replay", "--config", f.config)
	for _, want := range []string{
		"replayed " + itoa(a) + " invalid_payload -> orders.query.kuaishou.payment",
		"skipped " + itoa(noSubject) + " invalid_payload: no_orders_subject",
		"replayed " + itoa(b) + " invalid_payload -> orders.query.kuaishou.refund",
		"skipped " + itoa(follow) + " invalid_payload: not_a_query_subject: orders.follow.x is not orders.query.<provider>.<kind>",
		"skipped " + itoa(unknown) + " invalid_payload: unknown_provider_kind",
		"2 dead letters replayed (0 were already queued), 3 skipped (no_orders_subject 1, not_a_query_subject 1, unknown_provider_kind 1), 0 gone before their turn\n",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("stdout lacks %q:\n%s", want, stdout)
		}
	}
	if code != 1 || stderr != "consumer: 3 dead letters skipped; they are still in ORDERS_DLQ\n" {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	if left := seqs(deadLetters(t, f.js)); !slices.Equal(left, []uint64{noSubject, follow, unknown}) {
		t.Fatalf("left in ORDERS_DLQ %v, want the three skipped", left)
	}
	q := streamMsgs(t, f.js, "ORDERS_QUERY")
	if len(q) != 2 || string(q[0].Data) != "a" || string(q[1].Data) != "b" || q[1].Subject != "orders.query.kuaishou.refund" {
		t.Fatalf("ORDERS_QUERY: %d messages", len(q))
	}
	for _, m := range q {
		if strings.Contains(m.Subject, "follow") || strings.Contains(m.Subject, "kudian") {
			t.Fatalf("stored on %s", m.Subject)
		}
	}

	// Again, as JSON: nothing left to replay, the same three skipped.
	code, stdout, stderr = runCmd("dlq", "replay", "--config", f.config, "--json")
	var sum dlq.Summary
	if err := json.Unmarshal([]byte(stdout), &sum); err != nil || code != 1 || stderr != "" {
		t.Fatalf("--json: exit %d, %v, stdout %q, stderr %q", code, err, stdout, stderr)
	}
	if sum.Replayed != 0 || sum.Selected != 3 || sum.Skipped[dlq.SkipNoSubject] != 1 || sum.Skipped[dlq.SkipNotQuery] != 1 ||
		sum.Skipped[dlq.SkipUnknown] != 1 || len(sum.Letters) != 3 || sum.Letters[1].Seq != follow || sum.Letters[1].Result != dlq.ResultSkipped {
		t.Fatalf("--json summary %+v", sum)
	}
}

// A request of exactly max_payload bytes, dead-lettered (its payload stored alone), replays:
// the replay cannot carry Nats-Msg-Id as well, so it goes without, byte for byte.
func TestDLQReplayMaxPayloadLetter(t *testing.T) {
	f := newReplayFixture(t)
	max := int(f.nc.MaxPayload())
	big := bytes.Repeat([]byte("m"), max)
	pack, err := f.js.PublishMsg(context.Background(), &nats.Msg{Subject: "orders.dlq.kuaishou.payment.payload", Data: big})
	if err != nil {
		t.Fatal(err)
	}
	seq := f.deadLetter(t, "orders.query.kuaishou.payment", big[:1000], nats.Header{
		events.HeaderOriginalSize: {itoa(uint64(max))}, events.HeaderPayloadSeq: {itoa(pack.Sequence)}, events.HeaderOriginalMsgID: {"req-9"}})
	code, stdout, stderr := runCmd("dlq", "replay", "--config", f.config)
	if code != 0 || !strings.Contains(stdout, "replayed "+itoa(seq)+" ") || !strings.Contains(stdout, "without Nats-Msg-Id or Nats-Expected-Stream to fit max_payload") {
		t.Fatalf("exit %d\n%s%s", code, stdout, stderr)
	}
	q := streamMsgs(t, f.js, "ORDERS_QUERY")
	if len(q) != 1 || !bytes.Equal(q[0].Data, big) {
		t.Fatalf("ORDERS_QUERY: %d messages", len(q))
	}
	if left := streamMsgs(t, f.js, "ORDERS_DLQ"); len(left) != 0 {
		t.Fatalf("left in ORDERS_DLQ: %v", seqs(left))
	}
}

// dlq replay reaches NATS as the nats CLI does: --server, --creds, a context; and says
// "NATS unreachable" when it is.
func TestDLQReplayConnection(t *testing.T) {
	f := newReplayFixture(t)
	f.deadLetter(t, "orders.query.kuaishou.payment", []byte("a"), nil)
	dir := filepath.Join(os.Getenv("XDG_CONFIG_HOME"), "nats", "context")
	os.MkdirAll(dir, 0o700)
	os.WriteFile(filepath.Join(dir, "orders.json"), []byte(`{"url":"`+f.url+`"}`), 0o600)
	os.WriteFile(filepath.Join(dir, "away.json"), []byte(`{"url":"nats://127.0.0.1:1"}`), 0o600)

	for name, args := range map[string][]string{
		"server":          {"--server", f.url},
		"context":         {"--context", "orders"},
		"server over ctx": {"--context", "away", "--server", f.url},
		"server over cfg": {"--config", writeFile(t, "nats:\n  url: nats://127.0.0.1:1\nproviders:\n  kuaishou:\n    base_url: http://127.0.0.1:1\n"), "-s", f.url},
		"config":          {"--config", f.config},
	} {
		code, stdout, stderr := runCmd(append([]string{"dlq", "replay", "--dry-run"}, args...)...)
		if code != 0 || !strings.Contains(stdout, "1 dead letters would be replayed") {
			t.Errorf("%s: exit %d\n%s%s", name, code, stdout, stderr)
		}
	}
	for name, args := range map[string][]string{
		"server":  {"--server", "nats://orders:s3cret@127.0.0.1:1"},
		"context": {"--context", "away"},
		"config":  {"--config", writeFile(t, "nats:\n  url: nats://127.0.0.1:1\n")},
	} {
		code, stdout, stderr := runCmd(append([]string{"dlq", "replay"}, args...)...)
		if code != 1 || stdout != "" || !strings.HasPrefix(stderr, "consumer: NATS unreachable at nats://") || strings.Count(stderr, "\n") != 1 || strings.Contains(stderr, "s3cret") {
			t.Errorf("%s: exit %d, stdout %q, stderr %q", name, code, stdout, stderr)
		}
	}
	bad, _ := corruptCreds(t)
	if code, _, stderr := runCmd("dlq", "replay", "--server", f.url, "--creds", bad); code != 2 || !strings.HasPrefix(stderr, "consumer: config: nats.creds: ") {
		t.Errorf("--creds corrupt: exit %d, %q", code, stderr)
	}
	if code, _, stderr := runCmd("dlq", "replay", "--context", "nope"); code != 2 || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, "--context nope") {
		t.Errorf("unknown context: exit %d, %q", code, stderr)
	}
}

func writeFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "f.yaml")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func itoa(n uint64) string { return listedSeq(&jetstream.RawStreamMsg{Sequence: n}) }
