package handlers_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/paystatus/orderstatus/internal/config"
	"github.com/paystatus/orderstatus/internal/events"
	"github.com/paystatus/orderstatus/internal/handlers"
	"github.com/paystatus/orderstatus/internal/natsinfra"
	"github.com/paystatus/orderstatus/internal/natstest"
	"github.com/paystatus/orderstatus/internal/providers/kuaishou"
	kssandbox "github.com/paystatus/orderstatus/internal/providers/kuaishou/sandbox"
	"github.com/paystatus/orderstatus/internal/providers/sandboxkit"
)

// hostileRequest is one input from outside the trust boundary, and the dead-letter reason it
// must end in ("" when it must end in an event).
type hostileRequest struct {
	name    string
	subject string
	data    []byte
	hdr     nats.Header
	reason  string
}

func nestedMap16(n int) []byte {
	var b []byte
	for range n {
		b = append(b, 0xde, 0xff, 0xff, 0xa1, 'k')
	}
	return b
}

// hostileRequests are inputs a publisher can send to harm the service: msgpack length bombs
// that must not allocate beyond their size, invalid UTF-8 that must be refused, and others.
func hostileRequests() []hostileRequest {
	q := "orders.query.kuaishou.payment"
	return []hostileRequest{
		{"map16 bomb", q, []byte{0xde, 0xff, 0xff}, nil, events.ReasonInvalidPayload},
		{"map32 bomb", q, []byte{0xdf, 0xff, 0xff, 0xff, 0xff}, nil, events.ReasonInvalidPayload},
		{"nested map16 bomb", q, nestedMap16(41), nil, events.ReasonInvalidPayload},
		{"map32 bomb as msgpack", q, []byte{0xdf, 0xff, 0xff, 0xff, 0xff}, nats.Header{"Content-Type": {"application/msgpack"}}, events.ReasonInvalidPayload},
		{"invalid UTF-8", q, []byte(`{"app_id":"` + demoApp + `","order_no":"o` + "\xff" + `"}`), nil, events.ReasonInvalidField},
		{"lone surrogate", q, []byte(`{"app_id":"` + demoApp + `","order_no":"\ud800"}`), nil, events.ReasonInvalidField},
		{"unknown provider", "orders.query.nope.payment", []byte(`{}`), nil, events.ReasonUnknownProvider},
		{"unknown kind", "orders.query.kudian.refund", []byte(`{}`), nil, events.ReasonUnknownKind},
		{"follow_until in 2999", q, []byte(`{"app_id":"` + demoApp + `","order_no":"` + demoOrder + `","follow":true,"follow_until":"2999-01-01T00:00:00Z"}`), nil, events.ReasonInvalidField},
		{"garbage Content-Type", q, []byte(`{}`), nats.Header{"Content-Type": {";;==\t"}}, events.ReasonInvalidPayload},
	}
}

// Every hostile payload ends as exactly one dead letter with its reason, the original bytes,
// and none of the publisher's own Orders-* headers.
func TestHostileRequestsAreDeadLettered(t *testing.T) {
	e := newEnv(t, nil)
	e.startReplica(nil)
	cases := hostileRequests()
	for i, c := range cases {
		hdr := nats.Header{"Orders-Error-Reason": {"forged"}, "Orders-Follow-Round": {"7"}}
		for k, v := range c.hdr {
			hdr[k] = v
		}
		hdr.Set("Nats-Msg-Id", fmt.Sprintf("hostile-%d", i))
		e.publish(c.subject, c.data, hdr)
	}
	var dl []*jetstream.RawStreamMsg
	natstest.CheckFor(t, 15*time.Second, 20*time.Millisecond, func() error {
		dl = e.streamMsgs(natsinfra.DLQStream)
		if len(dl) != len(cases) {
			return fmt.Errorf("%d dead letters, want %d", len(dl), len(cases))
		}
		return nil
	})
	e.waitIdle()
	for _, m := range dl {
		i := -1
		fmt.Sscanf(m.Header.Get("Orders-Original-Msg-Id"), "hostile-%d", &i)
		if i < 0 {
			t.Fatalf("dead letter without its original id: %v", m.Header)
		}
		c := cases[i]
		if c.name == "follow_until in 2999" && !strings.Contains(m.Header.Get("Orders-Error"), "follow_until") {
			t.Errorf("%s: %s", c.name, m.Header.Get("Orders-Error"))
		}
		if got := m.Header.Get("Orders-Error-Reason"); got != c.reason {
			t.Errorf("%s: reason %q (%s), want %q", c.name, got, m.Header.Get("Orders-Error"), c.reason)
		}
		if !bytes.Equal(m.Data, c.data) {
			t.Errorf("%s: payload changed", c.name)
		}
		if m.Header.Get("Orders-Follow-Round") != "" || len(m.Header.Values("Orders-Error-Reason")) != 1 {
			t.Errorf("%s: a publisher's Orders-* header reached the dead letter: %v", c.name, m.Header)
		}
		t.Logf("%s -> %s: %s", c.name, m.Header.Get("Orders-Error-Reason"), m.Header.Get("Orders-Error"))
	}
	if n := len(e.events()); n != 0 {
		t.Fatalf("%d events from hostile requests", n)
	}
}

// A publisher's Orders-* headers are ignored; the service's own follow-ups keep theirs. A forged
// Orders-Follow-Round: 9223372036854775807 must not hold a worker, the message or shutdown.
func TestForgedFollowHeadersAreIgnored(t *testing.T) {
	e := newEnv(t, fastFollow)
	stop := e.startReplica(nil)
	e.sb.PutOrder(kssandbox.Order{AppID: demoApp, Kind: events.KindPayment, OrderNo: "forged-001",
		Steps:  []kssandbox.Step{{Status: "PROCESSING"}, {After: 2 * time.Second, Status: "SUCCESS"}},
		Amount: 500, KsOrderNo: "ks-forged-001", PayChannel: "WECHAT"})
	e.publish("orders.query.kuaishou.payment", []byte(`{"app_id":"`+demoApp+`","order_no":"forged-001","follow":true}`),
		nats.Header{
			"Nats-Msg-Id":         {"m-forged"},
			"Orders-Follow-Round": {"9223372036854775807"},
			"Orders-Follow-Until": {"2999-01-01T00:00:00Z"},
			"Orders-Request-Id":   {"forged-id"},
		})
	evs := e.waitEvents(2) // pending, then succeeded after the service's own follow-up
	for _, ev := range evs {
		if ev.RequestID != "m-forged" {
			t.Fatalf("event %s has request_id %q, want the Nats-Msg-Id m-forged (the forged header ignored, the service's kept)", ev.Status, ev.RequestID)
		}
	}
	if evs[1].Status != events.StatusSucceeded {
		t.Fatalf("second event %+v", evs[1])
	}
	e.waitIdle()
	stopped := make(chan struct{})
	go func() { stop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(e.cfg.Consumer.AckWait): // a hang guard, not a timing assertion
		t.Fatal("the replica did not stop within the ack wait")
	}
}

// A forged round on a follow-up is bounded too: the wait stays within follow_max_delay and
// the deadline within 30 days, whatever the headers say.
func TestFollowRoundAndDeadlineAreBounded(t *testing.T) {
	e := newEnv(t, fastFollow)
	e.startReplica(nil)
	// The server marks what its scheduler fires with Nats-Scheduler; a publisher can forge that
	// mark (alongside a purge of a subject with no schedule), so bounds must hold regardless.
	e.publish("orders.query.kuaishou.payment", []byte(`{"app_id":"`+demoApp+`","order_no":"`+demoOrder+`","follow":true}`),
		nats.Header{
			"Nats-Scheduler":      {"orders.follow.kuaishou.payment.999999"},
			"Nats-Schedule-Next":  {"purge"},
			"Orders-Follow-Round": {"9223372036854775807"},
			"Orders-Follow-Until": {"2999-01-01T00:00:00Z"},
		})
	e.waitEvents(1)
	var sched *jetstream.RawStreamMsg
	natstest.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		for _, m := range e.streamMsgs(natsinfra.QueryStream) {
			if strings.HasPrefix(m.Subject, "orders.follow.") {
				sched = m
				return nil
			}
		}
		return errors.New("no follow-up scheduled")
	})
	at, err := time.Parse(time.RFC3339, strings.TrimPrefix(sched.Header.Get("Nats-Schedule"), "@at "))
	if err != nil {
		t.Fatal(err)
	}
	until, err := time.Parse(time.RFC3339, sched.Header.Get("Orders-Follow-Until"))
	if err != nil {
		t.Fatal(err)
	}
	if wait := time.Until(at); wait > e.cfg.Consumer.FollowMaxDelay+2*time.Second {
		t.Fatalf("follow-up in %s, beyond follow_max_delay %s", wait, e.cfg.Consumer.FollowMaxDelay)
	}
	if until.After(time.Now().Add(events.MaxFollow)) {
		t.Fatalf("follow deadline %s is more than 30 days away", until)
	}
	if round := sched.Header.Get("Orders-Follow-Round"); round != "65" {
		t.Fatalf("round %q, want the bound 64 plus one", round)
	}
	t.Logf("figures: forged round 9223372036854775807 -> next round %s in %s, deadline %s",
		sched.Header.Get("Orders-Follow-Round"), time.Until(at).Round(time.Second), until.Format(time.RFC3339))
}

// A request near the server's max_payload is dead-lettered, not redelivered for ever: its whole
// payload is stored alone in ORDERS_DLQ and the dead letter (which, with its headers, would not
// fit otherwise) carries what fits, with a pointer to it.
func TestOversizedRequestIsDeadLettered(t *testing.T) {
	e := newEnv(t, nil)
	e.startReplica(nil)
	limit := int(e.nc.MaxPayload())
	hdr := nats.Header{"Nats-Msg-Id": {"big-1"}}
	body := []byte(`{"app_id":"` + demoApp + `","order_no":"o","pad":"`)
	body = append(body, bytes.Repeat([]byte("x"), limit-len(body)-2-200)...) // 200: room for its own header
	body = append(body, '"', '}')
	e.publish("orders.query.kuaishou.payment", body, hdr)

	var dl []*jetstream.RawStreamMsg
	natstest.CheckFor(t, 15*time.Second, 20*time.Millisecond, func() error {
		dl = e.streamMsgs(natsinfra.DLQStream)
		if len(dl) != 2 {
			return fmt.Errorf("%d messages in %s, want the payload and its dead letter", len(dl), natsinfra.DLQStream)
		}
		return nil
	})
	e.waitIdle()
	whole, letter := dl[0], dl[1]
	if whole.Subject != "orders.dlq.kuaishou.payment.payload" || !bytes.Equal(whole.Data, body) {
		t.Fatalf("payload message on %s, %d bytes (want %d)", whole.Subject, len(whole.Data), len(body))
	}
	if letter.Subject != "orders.dlq.kuaishou.payment" || letter.Header.Get("Orders-Error-Reason") != events.ReasonInvalidPayload ||
		letter.Header.Get("Orders-Original-Size") != fmt.Sprint(len(body)) ||
		letter.Header.Get("Orders-Payload-Seq") != fmt.Sprint(whole.Sequence) || !bytes.HasPrefix(body, letter.Data) {
		t.Fatalf("dead letter on %s: %v, %d bytes", letter.Subject, letter.Header, len(letter.Data))
	}
	if n := len(e.queued()); n != 0 {
		t.Fatalf("%d requests left in %s", n, natsinfra.QueryStream)
	}
	t.Logf("figures: max_payload=%d request=%d dead_letter_payload=%d payload_seq=%d", limit, len(body), len(letter.Data), whole.Sequence)
}

// A deleted durable consumer is made again and requests flow: the replica never sits healthy
// on /healthz while consuming nothing.
func TestDeletedConsumerIsMadeAgain(t *testing.T) {
	e := newEnv(t, nil)
	e.startReplica(nil)
	e.publish("orders.query.kuaishou.payment", []byte(`{"app_id":"`+demoApp+`","order_no":"`+demoOrder+`"}`), nil)
	e.waitEvents(1)
	e.waitIdle()
	if err := e.js.DeleteConsumer(context.Background(), natsinfra.QueryStream, e.cfg.Consumer.Name); err != nil {
		t.Fatal(err)
	}
	e.publish("orders.query.kuaishou.refund", []byte(`{"app_id":"`+demoApp+`","order_no":"1660811124083refund"}`), nil)
	e.waitEvents(2)
	e.waitIdle()
}

// A replica that cannot get its consumer back exits with an error, so that it is restarted.
func TestLostConsumerEndsRun(t *testing.T) {
	e := newEnv(t, nil)
	r := e.build(nil)
	defer r.close()
	svc := r.svc
	svc.CheckEvery, svc.RebindFor = 100*time.Millisecond, time.Second
	svc.Rebind = func(context.Context) (jetstream.Consumer, error) { return nil, errors.New("not allowed") }
	done := make(chan error, 1)
	go func() { done <- svc.Run(context.Background()) }()
	if err := e.js.DeleteConsumer(context.Background(), natsinfra.QueryStream, e.cfg.Consumer.Name); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, handlers.ErrConsumerLost) {
			t.Fatalf("Run returned %v, want ErrConsumerLost", err)
		}
	case <-time.After(30 * time.Second): // a hang guard
		t.Fatal("Run went on without its consumer")
	}
}

// A lookup waiting behind a stalled provider answers "timeout" at its deadline, not when the
// provider gives up, long after the caller has.
func TestLookupHasADeadline(t *testing.T) {
	e := newEnv(t, func(c *config.Config) {
		p := c.Providers[kuaishou.Name]
		p.Timeout = 20 * time.Second
		c.Providers[kuaishou.Name] = p
	})
	r := e.build(nil)
	defer r.close()
	e.startLookup(r)
	e.sb.SetFault(demoApp, sandboxkit.Stall, 1)
	req := &nats.Msg{Subject: "orders.lookup.kuaishou.payment", Data: []byte(`{"app_id":"` + demoApp + `","order_no":"` + demoOrder + `"}`),
		Header: nats.Header{handlers.HeaderRequestTimeout: {"300ms"}}}
	m, err := e.nc.RequestMsg(req, 15*time.Second)
	if err != nil {
		t.Fatalf("no answer: %v", err)
	}
	if code := m.Header.Get("Nats-Service-Error-Code"); code != handlers.CodeTimeout {
		t.Fatalf("code %q (%s), want %q", code, m.Header.Get("Nats-Service-Error"), handlers.CodeTimeout)
	}
	// The endpoint is free again at once.
	req.Header = nil
	m, err = e.nc.RequestMsg(req, 15*time.Second)
	if err != nil || m.Header.Get("Nats-Service-Error-Code") != "" {
		t.Fatalf("next lookup: %v %v", err, m.Header)
	}
}

// The lookup endpoints share the request decoder: the bombs are refused with their reason.
func TestLookupRefusesHostilePayloads(t *testing.T) {
	e := newEnv(t, nil)
	r := e.build(nil)
	defer r.close()
	e.startLookup(r)
	for _, c := range hostileRequests()[:6] {
		m, err := e.nc.RequestMsg(&nats.Msg{Subject: "orders.lookup.kuaishou.payment", Data: c.data, Header: c.hdr}, 10*time.Second)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if code := m.Header.Get("Nats-Service-Error-Code"); code != c.reason {
			t.Fatalf("%s: code %q, want %q", c.name, code, c.reason)
		}
	}
}

// StartLookup returns once the endpoints' subscriptions are in, so the first lookup never
// meets "no responders".
func TestLookupAnswersAsSoonAsStarted(t *testing.T) {
	e := newEnv(t, nil)
	r := e.build(nil)
	defer r.close()
	for i := range 50 {
		nc, err := nats.Connect(e.srv.url)
		if err != nil {
			t.Fatal(err)
		}
		svc, err := handlers.StartLookup(context.Background(), nc, r.h, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		m, err := e.nc.Request("orders.lookup.kuaishou.payment", []byte(`{"app_id":"`+demoApp+`","order_no":"`+demoOrder+`"}`), 10*time.Second)
		_ = svc.Stop()
		_ = nc.Flush() // the server has dropped this try's endpoints before the next try asks
		nc.Close()
		if err != nil {
			t.Fatalf("try %d: %v", i, err)
		}
		if code := m.Header.Get("Nats-Service-Error-Code"); code != "" {
			t.Fatalf("try %d: %s", i, code)
		}
	}
}

// A password in nats.url never reaches an error or a log line, while NATS is unreachable and
// the connection keeps trying.
func TestConnectHidesCredentials(t *testing.T) {
	cfg := config.Default()
	cfg.NATS.URL = "nats://alice:s3cret@127.0.0.1:1"
	var buf syncBuffer
	nc, err := natsinfra.Connect(cfg, slog.New(slog.NewTextHandler(&buf, nil)))
	if err != nil {
		if strings.Contains(err.Error(), "s3cret") || strings.Contains(err.Error(), "alice") {
			t.Fatalf("error %v", err)
		}
		return
	}
	defer nc.Close()
	natstest.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if !strings.Contains(buf.String(), "NATS unreachable") {
			return errors.New("no log line yet")
		}
		return nil
	})
	if log := buf.String(); strings.Contains(log, "s3cret") || strings.Contains(log, "alice") {
		t.Fatalf("credentials in the log:\n%s", log)
	}
}

// syncBuffer is a bytes.Buffer safe for a logger and the test at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
