package handlers_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	natsserver "github.com/nats-io/nats-server/v2/test"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/paystatus/orderstatus/internal/app"
	"github.com/paystatus/orderstatus/internal/config"
	"github.com/paystatus/orderstatus/internal/events"
	"github.com/paystatus/orderstatus/internal/natsinfra"
	"github.com/paystatus/orderstatus/internal/natstest"
	"github.com/paystatus/orderstatus/internal/providers/registry"
)

// serve runs the service as the consumer command does (app.Serve: probes, metrics, lookup)
// on a connection of its own until the test ends, and returns the base URL of its HTTP
// endpoints.
func (e *env) serve() string {
	e.t.Helper()
	addr := freeAddr(e.t.(*testing.T))
	cfg := *e.cfg
	cfg.HTTP.Listen = addr
	nc, err := natsinfra.Connect(&cfg, e.log)
	if err != nil {
		e.t.Fatal(err)
	}
	provs, err := registry.Build(&cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- app.Serve(ctx, &cfg, nc, provs, e.log) }()
	e.t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			e.t.Errorf("Serve: %v", err)
		}
		nc.Close()
	})
	return "http://" + addr
}

// waitReady waits until base's /readyz answers 200; when says after what.
func waitReady(t *testing.T, base, when string) {
	t.Helper()
	natstest.CheckFor(t, 20*time.Second, 100*time.Millisecond, func() error {
		if code, body := probe(base + "/readyz"); code != 200 {
			return fmt.Errorf("/readyz %d %q %s", code, body, when)
		}
		return nil
	})
}

// probe GETs url: its status and body, or 0 and the error while nothing answers.
func probe(url string) (int, string) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// JetStream out of storage (the server's max_file_store reached: every write refused with
// "insufficient resources") while requests wait: none is acked without its event, /readyz
// says why, and once space is freed every request gets its event, once, by itself.
func TestStorageFullThenFreedLosesNothing(t *testing.T) {
	const requests = 20
	opts := natsserver.DefaultTestOptions
	opts.Port, opts.JetStream, opts.StoreDir = -1, true, t.TempDir()
	opts.JetStreamMaxStore = 8 << 20
	s := natsserver.RunServer(&opts)
	t.Cleanup(s.Shutdown)
	e := newEnvOn(t, &serverCtl{url: s.ClientURL()}, func(c *config.Config) { c.Consumer.MaxDeliver = 10 })
	ctx := context.Background()
	if _, err := natsinfra.Provision(ctx, e.js, e.cfg, e.log); err != nil {
		t.Fatal(err)
	}
	nos := putOrders(e.sb, "full", requests)
	for _, no := range nos {
		e.publish("orders.query.kuaishou.payment", []byte(`{"app_id":"`+demoApp+`","order_no":"`+no+`"}`), nil)
	}
	// Fill the rest of the store, up to the first refusal.
	if _, err := e.js.CreateStream(ctx, jetstream.StreamConfig{Name: "FILLER", Subjects: []string{"filler"}}); err != nil {
		t.Fatal(err)
	}
	block := make([]byte, 256<<10)
	for i := 0; ; i++ {
		_, err := e.js.Publish(ctx, "filler", block)
		if err != nil {
			if !strings.Contains(err.Error(), "insufficient resources") {
				t.Fatalf("filling the store: %v", err)
			}
			break
		}
		if i > 100 {
			t.Fatal("the store never filled up")
		}
	}

	base := e.serve()
	natstest.CheckFor(t, 20*time.Second, 100*time.Millisecond, func() error {
		code, body := probe(base + "/readyz")
		if code != 503 || !strings.Contains(body, "insufficient resources") {
			return fmt.Errorf("/readyz %d %q, want 503 naming insufficient resources", code, body)
		}
		return nil
	})
	if n := len(e.events()); n != 0 {
		t.Fatalf("%d events stored on a full store", n)
	}
	if n := len(e.queued()); n != requests {
		t.Fatalf("%d of %d requests left in %s while nothing can be stored", n, requests, natsinfra.QueryStream)
	}

	filler, err := e.js.Stream(ctx, "FILLER")
	if err != nil {
		t.Fatal(err)
	}
	if err := filler.Purge(ctx); err != nil {
		t.Fatal(err)
	}
	e.expectEventEach(requests)
	waitReady(t, base, "after space was freed")
}

// ORDERS_STATUS refusing events (an operator gave it max_bytes with discard new, and it is
// full) while the state bucket takes writes: changes are claimed, their events refused. No
// request is acked without its event, and once the stream has room each order has its event,
// once.
func TestEventsStreamFullThenFreedLosesNothing(t *testing.T) {
	const requests = 20
	e := newEnv(t, func(c *config.Config) { c.Consumer.MaxDeliver = 10 })
	ctx := context.Background()
	if _, err := natsinfra.Provision(ctx, e.js, e.cfg, e.log); err != nil {
		t.Fatal(err)
	}
	status, err := e.js.Stream(ctx, natsinfra.StatusStream)
	if err != nil {
		t.Fatal(err)
	}
	full := status.CachedInfo().Config
	full.MaxBytes, full.Discard = 1, jetstream.DiscardNew
	if _, err := e.js.UpdateStream(ctx, full); err != nil {
		t.Fatal(err)
	}
	nos := putOrders(e.sb, "statusfull", requests)
	for _, no := range nos {
		e.publish("orders.query.kuaishou.payment", []byte(`{"app_id":"`+demoApp+`","order_no":"`+no+`"}`), nil)
	}
	base := e.serve()
	natstest.CheckFor(t, 20*time.Second, 100*time.Millisecond, func() error {
		info, err := e.queryConsumerInfo(ctx)
		if err != nil {
			return err
		}
		if info.NumRedelivered < requests {
			return fmt.Errorf("%d requests redelivered", info.NumRedelivered)
		}
		return nil
	})
	_, page := get(t, base+"/metrics")
	if v := sample(page, `orders_requests_total{kind="payment",outcome="redelivery",provider="kuaishou"}`); v < requests {
		t.Fatalf("orders_requests_total redelivery %v, want at least %d", v, requests)
	}
	if n := len(e.events()); n != 0 {
		t.Fatalf("%d events stored in a full stream", n)
	}
	if n := len(e.queued()); n != requests {
		t.Fatalf("%d of %d requests left in %s while no event can be stored", n, requests, natsinfra.QueryStream)
	}
	full.MaxBytes = -1
	if _, err := e.js.UpdateStream(ctx, full); err != nil {
		t.Fatal(err)
	}
	e.expectEventEach(requests)
}

// The server closes the replica's connection again and again during a burst (a flapping
// link, a server kicking a client it deems slow): no request is lost, no event is stored
// twice, and once the replica stops its goroutines are gone.
func TestFlappingConnectionLosesNothing(t *testing.T) {
	const requests, kicks = 100, 8
	s := natstest.RunServer(t)
	e := newEnvOn(t, &serverCtl{url: s.ClientURL()}, func(c *config.Config) {
		p := c.Providers["kuaishou"]
		p.QPS = 40
		c.Providers["kuaishou"] = p
	})
	nos := putOrders(e.sb, "flap", requests)
	before := serviceGoroutines() // another test's still ending: not this one's
	stop := e.startReplica(nil)
	for _, no := range nos {
		e.publish("orders.query.kuaishou.payment", []byte(`{"app_id":"`+demoApp+`","order_no":"`+no+`"}`), nil)
	}
	kicked := 0
	for kicked < kicks {
		connz, err := s.Connz(&server.ConnzOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range connz.Conns {
			if c.Name == "order-status-consumer" && s.DisconnectClientByID(c.Cid) == nil {
				kicked++
			}
		}
		time.Sleep(300 * time.Millisecond)
	}
	evs, dups := e.countEvents(requests, 30*time.Second)
	t.Logf("figures: requests=%d events=%d duplicates=%d (connection closed by the server %d times)", requests, evs, dups, kicked)
	if evs != requests || dups != 0 {
		t.Fatalf("%d events for %d requests, %d duplicates", evs, requests, dups)
	}
	e.waitIdle()
	stop()
	natstest.CheckFor(t, 15*time.Second, 100*time.Millisecond, func() error {
		var left []string
		for id, g := range serviceGoroutines() {
			if _, ok := before[id]; !ok {
				left = append(left, g)
			}
		}
		if len(left) > 0 {
			return fmt.Errorf("%d goroutines of the service left after it stopped:\n%s", len(left), strings.Join(left, "\n\n"))
		}
		return nil
	})
}

// expectEventEach waits for one event for each of requests, with no duplicate, no dead letter
// and nothing left in the queue.
func (e *env) expectEventEach(requests int) {
	e.t.Helper()
	evs, dups := e.countEvents(requests, 30*time.Second)
	if evs != requests || dups != 0 {
		e.t.Fatalf("%d events for %d requests, %d duplicates", evs, requests, dups)
	}
	e.waitIdle()
	if n := len(e.streamMsgs(natsinfra.DLQStream)); n != 0 {
		e.t.Fatalf("%d dead letters", n)
	}
}

// serviceGoroutines are the stacks of the running goroutines in the service's own packages
// (not the tests', the sandboxes' or the embedded server's), by their first line ("goroutine
// N [state]:" without the state, which names each goroutine once).
func serviceGoroutines() map[string]string {
	buf := make([]byte, 8<<20)
	out := map[string]string{}
	for _, g := range strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n") {
		if strings.Contains(g, "orderstatus/internal/") && !strings.Contains(g, "_test.go") &&
			!strings.Contains(g, "/sandbox") && !strings.Contains(g, "/natstest") {
			id, _, _ := strings.Cut(g, " [")
			out[id] = g
		}
	}
	return out
}

// An operator removes an order's record below the KV API, leaving no delete marker (`nats
// stream purge KV_ORDERS_STATE --subject '$KV.ORDERS_STATE.<key>'`, or the whole bucket), and
// the order then changes: its next event is stored, not dropped as a copy of the order's first
// event (the record's transition numbers start again).
func TestOrderPurgedWithoutMarkerStillGetsItsNextEvent(t *testing.T) {
	e := newEnv(t, nil)
	e.startReplica(nil)
	req := []byte(`{"app_id":"` + demoApp + `","order_no":"` + demoOrder + `"}`)
	e.publish("orders.query.kuaishou.payment", req, nil)
	e.waitEvents(1)
	e.waitIdle()
	ctx := context.Background()
	st, err := e.js.Stream(ctx, "KV_"+natsinfra.StateBucket)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Purge(ctx, jetstream.WithPurgeSubject("$KV."+natsinfra.StateBucket+".kuaishou.payment."+demoApp+"."+demoOrder)); err != nil {
		t.Fatal(err)
	}
	e.sb.SetStatus(demoApp, events.KindPayment, demoOrder, "SUCCESS")
	e.publish("orders.query.kuaishou.payment", req, nil)
	e.waitIdle()
	evs := e.waitEvents(2)
	if evs[1].Status != events.StatusSucceeded || evs[1].EventID == evs[0].EventID {
		t.Fatalf("second event %+v after %+v", evs[1], evs[0])
	}
	kv, err := e.js.KeyValue(ctx, natsinfra.StateBucket)
	if err != nil {
		t.Fatal(err)
	}
	natstest.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		entry, err := kv.Get(ctx, "kuaishou.payment."+demoApp+"."+demoOrder)
		if err != nil {
			return err
		}
		if v := string(entry.Value()); !strings.Contains(v, `"event_id":"`+evs[1].EventID+`"`) || strings.Contains(v, `"pending":`) {
			return fmt.Errorf("state %s", v)
		}
		return nil
	})
}
