package handlers_test

// Guards for the move of the order state, the dead letters and the connection into packages
// of their own: each test here failed on a one-line change that no other test caught.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	natsserver "github.com/nats-io/nats-server/v2/test"
	"github.com/nats-io/nats.go"

	"github.com/paystatus/orderstatus/internal/config"
	"github.com/paystatus/orderstatus/internal/events"
	"github.com/paystatus/orderstatus/internal/natsinfra"
	"github.com/paystatus/orderstatus/internal/natstest"
	kssandbox "github.com/paystatus/orderstatus/internal/providers/kuaishou/sandbox"
	"github.com/paystatus/orderstatus/internal/providers/sandboxkit"
)

// storedRecord is a Kuaishou order's record as ORDERS_STATE holds it.
type storedRecord struct {
	Status     string `json:"status"`
	Transition uint64 `json:"transition"`
	SentAt     string `json:"sent_at"` // when the observation that set it was made
}

// storedState is a Kuaishou order's record as ORDERS_STATE holds it.
func (e *env) storedState(kind, orderNo string) storedRecord {
	e.t.Helper()
	kv, err := e.js.KeyValue(context.Background(), natsinfra.StateBucket)
	if err != nil {
		e.t.Fatal(err)
	}
	entry, err := kv.Get(context.Background(), "kuaishou."+kind+"."+demoApp+"."+orderNo)
	if err != nil {
		e.t.Fatal(err)
	}
	var rec storedRecord
	if err := json.Unmarshal(entry.Value(), &rec); err != nil {
		e.t.Fatal(err)
	}
	return rec
}

// Two queries of one order overlap: the first is sent and answered 1.5 s later (pending); the
// second is sent 0.5 s after it and answered 1.5 s later (succeeded), after the first's answer
// was recorded. The second was sent later, so its answer wins: answers are ordered by when
// their query was sent. Ordered by when they were observed, the second's answer (observed
// after the first's, but sent before the first was observed) would be ignored as stale and the
// order would stay pending. (TestSlowStaleAnswerIsIgnored is the other order: the later query
// answered first.)
func TestLaterSentQueryWinsWhenAnsweredLast(t *testing.T) {
	e := newEnv(t, nil)
	e.startReplica(nil)
	const no = "overlap-0002"
	e.sb.PutOrder(kssandbox.Order{AppID: demoApp, Kind: events.KindPayment, OrderNo: no, Amount: 900, KsOrderNo: "ks-" + no,
		PayChannel: "ALIPAY", Steps: []kssandbox.Step{{Status: "PROCESSING"}}})
	e.sb.StallFor = 1500 * time.Millisecond
	e.sb.SetFault(demoApp, sandboxkit.Stall, 2) // both answers come 1.5 s after their call arrives
	body := []byte(`{"app_id":"` + demoApp + `","order_no":"` + no + `"}`)
	calls := func(n int) {
		natstest.CheckFor(t, 10*time.Second, 5*time.Millisecond, func() error {
			if got := len(e.sb.Calls(demoApp, events.KindPayment)); got < n {
				return fmt.Errorf("%d provider calls, want %d", got, n)
			}
			return nil
		})
	}
	e.publish("orders.query.kuaishou.payment", body, nil)
	calls(1) // the first query is at the provider: its answer is PROCESSING, 1.5 s from now
	e.sb.SetStatus(demoApp, events.KindPayment, no, "SUCCESS")
	time.Sleep(500 * time.Millisecond)
	e.publish("orders.query.kuaishou.payment", body, nil)
	calls(2) // sent while the first is in flight; answered SUCCESS about 0.5 s after it
	e.waitIdle()
	evs := e.events()
	var got []string
	for _, ev := range evs {
		got = append(got, string(ev.PreviousStatus)+">"+string(ev.Status))
	}
	if len(evs) == 0 || evs[len(evs)-1].Status != events.StatusSucceeded {
		t.Fatalf("events %v: the later query's answer (succeeded) was not published", got)
	}
	for _, ev := range evs {
		if ev.PreviousStatus.Terminal() && !ev.Status.Terminal() {
			t.Fatalf("events %v: the order moved back", got)
		}
	}
	if st := e.storedState(events.KindPayment, no).Status; st != string(events.StatusSucceeded) {
		t.Fatalf("ORDERS_STATE at %s (events %v), want succeeded", st, got)
	}
	t.Logf("events %v", got)
}

// A claim is a write at the revision its replica read, and the server refuses it once the
// order has moved on. A replica that never saw an order claims its first transition at
// revision 0 (it skips the read); when another replica already recorded one, that claim is a
// conflict and the replica reads the order and claims the next transition. Written
// unconditionally, it overwrote transition 1 with a new status under transition 1's event id,
// which JetStream dropped as a duplicate: the order's state moved to succeeded and no event
// ever said so.
func TestClaimAtAStaleRevisionIsAConflict(t *testing.T) {
	e := newEnv(t, nil)
	const no = "stale-rev-001"
	e.sb.PutOrder(kssandbox.Order{AppID: demoApp, Kind: events.KindPayment, OrderNo: no, Amount: 700, KsOrderNo: "ks-" + no,
		PayChannel: "WECHAT", Steps: []kssandbox.Step{{Status: "PROCESSING"}}})
	body := []byte(`{"app_id":"` + demoApp + `","order_no":"` + no + `"}`)

	stop := e.startReplica(nil)
	e.publish("orders.query.kuaishou.payment", body, nil)
	e.waitEvents(1)
	e.waitIdle()
	stop()

	e.sb.SetStatus(demoApp, events.KindPayment, no, "SUCCESS")
	e.startReplica(nil) // a second replica: it has never seen the order
	e.publish("orders.query.kuaishou.payment", body, nil)
	evs := e.waitEvents(2)
	e.waitIdle()
	for i, ev := range evs {
		if want := events.EventID("kuaishou", "payment", demoApp, no, uint64(i+1)); ev.EventID != want {
			t.Errorf("event %d: id %s, want transition %d's %s", i, ev.EventID, i+1, want)
		}
	}
	if evs[1].Status != events.StatusSucceeded || evs[1].PreviousStatus != events.StatusPending {
		t.Errorf("second event %s > %s, want pending > succeeded", evs[1].PreviousStatus, evs[1].Status)
	}
	if rec := e.storedState(events.KindPayment, no); rec.Status != string(events.StatusSucceeded) || rec.Transition != 2 {
		t.Fatalf("ORDERS_STATE at %s, transition %d; want succeeded, transition 2", rec.Status, rec.Transition)
	}
}

// A dead letter carries the request's payload byte for byte: white space, key order, number
// forms and escapes as the publisher sent them, not the payload decoded and encoded again.
func TestDeadLetterKeepsThePayloadByteForByte(t *testing.T) {
	e := newEnv(t, nil)
	e.startReplica(nil)
	cases := []struct{ body, reason string }{
		{`{ "app_id": "x" }`, events.ReasonInvalidField}, // no order_no
		{"{\n\t\"order_no\" : \"123456\",\n\t\"app_id\" : \"ks000\"\n}\n", events.ReasonUnknownApp},
		{`{"app_id":"` + demoApp + `","order_no":"abc","amount":1.50,"note":"caf\u00e9 \/"}`, events.ReasonInvalidField},
	}
	for i, c := range cases {
		e.publish("orders.query.kuaishou.payment", []byte(c.body), nats.Header{"Nats-Msg-Id": {fmt.Sprintf("ws-%d", i)}})
	}
	e.waitDeadLetters(len(cases))
	e.waitIdle()
	for _, m := range e.streamMsgs(natsinfra.DLQStream) {
		i := -1
		fmt.Sscanf(m.Header.Get("Orders-Original-Msg-Id"), "ws-%d", &i)
		if i < 0 || i >= len(cases) {
			t.Fatalf("dead letter without its original id: %v", m.Header)
		}
		c := cases[i]
		if !bytes.Equal(m.Data, []byte(c.body)) {
			t.Errorf("case %d: dead letter payload\n got %q\nwant %q", i, m.Data, c.body)
		}
		if got := m.Header.Get("Orders-Error-Reason"); got != c.reason {
			t.Errorf("case %d: reason %q (%s), want %q", i, got, m.Header.Get("Orders-Error"), c.reason)
		}
	}
}

// authServer runs a NATS server on port whose one user is orders with password pw.
func authServer(t *testing.T, port int, pw string) *server.Server {
	t.Helper()
	opts := natsserver.DefaultTestOptions
	opts.Port = port
	opts.Users = []*server.User{{Username: "orders", Password: pw}}
	s := natsserver.RunServer(&opts)
	t.Cleanup(s.Shutdown)
	return s
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// The server accepts the replica's credentials (user and password in nats.url), then comes
// back with other credentials and refuses every reconnect: the password never reaches the
// log, the URL shows redacted.
func TestRefusedReconnectLogHidesThePassword(t *testing.T) {
	const pw = "pw-first-4711"
	port := freePort(t)
	s := authServer(t, port, pw)
	cfg := config.Default()
	cfg.NATS.URL = fmt.Sprintf("nats://orders:%s@127.0.0.1:%d", pw, port)
	var logs syncBuffer
	nc, err := natsinfra.Connect(cfg, slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	s.Shutdown()
	s.WaitForShutdown()
	authServer(t, port, "pw-rotated-0815")
	natstest.CheckFor(t, 15*time.Second, 20*time.Millisecond, func() error {
		if err := nc.LastError(); !errors.Is(err, nats.ErrAuthorization) {
			return fmt.Errorf("last error %v, status %v: no reconnect refused yet", err, nc.Status())
		}
		return nil
	})
	time.Sleep(1500 * time.Millisecond) // another try or two, each refused
	if nc.Status() == nats.CONNECTED {
		t.Fatal("reconnected with the old password")
	}
	l := logs.String()
	if strings.Contains(l, pw) {
		t.Fatalf("the password in the log:\n%s", l)
	}
	if want := fmt.Sprintf("xxxxx@127.0.0.1:%d", port); !strings.Contains(l, want) {
		t.Fatalf("no %s in the log:\n%s", want, l)
	}
	t.Logf("log:\n%s", l)
}

// dropFirst forwards TCP connections to target, except the first, which it closes at once:
// a network that fails the first try.
func dropFirst(t *testing.T, target string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for n := 0; ; n++ {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if n == 0 {
				c.Close()
				continue
			}
			up, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, c, up)
			mu.Unlock()
			wg.Add(2)
			go func() { defer wg.Done(); _, _ = io.Copy(up, c); up.Close() }()
			go func() { defer wg.Done(); _, _ = io.Copy(c, up); c.Close() }()
		}
	}()
	return ln.Addr().String()
}

// The first try to reach NATS fails on the network; the retry reaches a server that refuses
// the credentials of nats.url. The refusal is logged (the replica keeps trying) with the URL
// redacted, never with its password.
func TestRefusalOnRetryLogsTheURLRedacted(t *testing.T) {
	const pw = "pw-wrong-0815"
	s := authServer(t, -1, "pw-right-4711")
	addr := dropFirst(t, strings.TrimPrefix(s.ClientURL(), "nats://"))
	cfg := config.Default()
	cfg.NATS.URL = "nats://orders:" + pw + "@" + addr
	var logs syncBuffer
	nc, err := natsinfra.Connect(cfg, slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatalf("the first try's failure is not a refusal, and the retry's refusal is logged, not returned: %v", err)
	}
	defer nc.Close()
	natstest.CheckFor(t, 15*time.Second, 20*time.Millisecond, func() error {
		if !strings.Contains(logs.String(), "NATS refuses this replica") {
			return errors.New("no refusal logged yet")
		}
		return nil
	})
	l := logs.String()
	if strings.Contains(l, pw) {
		t.Fatalf("the password in the log:\n%s", l)
	}
	if want := "url=nats://xxxxx@" + addr; !strings.Contains(l, want) {
		t.Fatalf("no %s in the log:\n%s", want, l)
	}
	t.Logf("log:\n%s", l)
}

// The headers of a scheduled event check (Nats-Scheduler on <prefix>.sweep.*, beside a
// schedule purge and Orders-Sweep-Key) carry no meaning: a message with them, on any subject,
// is handled as what it is, a request (an event, or a dead letter for its payload or its
// subject), never acked without a trace.
func TestForgedEventCheckIsNotAckedSilently(t *testing.T) {
	e := newEnv(t, nil)
	e.startReplica(nil)
	forged := func(id string) nats.Header {
		return nats.Header{
			"Nats-Scheduler":     {"orders.sweep.x"},
			"Nats-Schedule-Next": {"purge"},
			"Orders-Sweep-Key":   {"kuaishou.payment.app.order1"},
			"Nats-Msg-Id":        {id},
		}
	}
	body := []byte(`{"app_id":"` + demoApp + `","order_no":"` + demoOrder + `"}`)
	e.publish("orders.query.kuaishou.payment", body, forged("forged-known"))
	e.publish("orders.query.nosuch.payment", body, forged("forged-unknown"))
	e.waitIdle()
	natstest.CheckFor(t, 15*time.Second, 20*time.Millisecond, func() error {
		dead := map[string]string{}
		for _, m := range e.streamMsgs(natsinfra.DLQStream) {
			dead[m.Header.Get("Orders-Original-Msg-Id")] = m.Header.Get("Orders-Error-Reason")
		}
		answered := false
		for _, ev := range e.events() {
			answered = answered || ev.RequestID == "forged-known"
		}
		if dead["forged-known"] == "" && !answered {
			return errors.New("the forged check on orders.query.kuaishou.payment was neither answered nor dead-lettered")
		}
		if r := dead["forged-unknown"]; r != events.ReasonUnknownProvider {
			return fmt.Errorf("the forged check on orders.query.nosuch.payment: dead letter reason %q, want %s", r, events.ReasonUnknownProvider)
		}
		return nil
	})
}
