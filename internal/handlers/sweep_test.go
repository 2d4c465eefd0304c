package handlers_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/paystatus/orderstatus/internal/app"
	"github.com/paystatus/orderstatus/internal/config"
	"github.com/paystatus/orderstatus/internal/events"
	"github.com/paystatus/orderstatus/internal/handlers"
	"github.com/paystatus/orderstatus/internal/natsinfra"
	"github.com/paystatus/orderstatus/internal/natstest"
	"github.com/paystatus/orderstatus/internal/providers/sandboxkit"
)

// failPublishing makes every publish of an event fail while the returned flag is set, as a
// NATS failure would: claims are stored, their events are not. The sweep runs a second after
// a claim.
func failPublishing() (func(*app.Options), *atomic.Bool, *atomic.Int32) {
	var on atomic.Bool
	var n atomic.Int32
	on.Store(true)
	return func(o *app.Options) {
		o.SweepDelay = time.Second
		o.StoreJS = func(js jetstream.JetStream) jetstream.JetStream { return eventsFailJS{js, &on, &n} }
	}, &on, &n
}

// eventsFailJS fails the publishes of status events while on is set, counting them in n.
type eventsFailJS struct {
	jetstream.JetStream
	on *atomic.Bool
	n  *atomic.Int32
}

func (js eventsFailJS) PublishMsgAsync(m *nats.Msg, opts ...jetstream.PublishOpt) (jetstream.PubAckFuture, error) {
	if strings.HasPrefix(m.Subject, "orders.status.") && js.on.Load() {
		js.n.Add(1)
		return nil, errors.New("publish failed")
	}
	return js.JetStream.PublishMsgAsync(m, opts...)
}

// loseClears makes the pipeline's clears of pending marks get lost, with the sweep delay d.
func loseClears(d time.Duration, lost *atomic.Int32) func(*app.Options) {
	fail := failing(func(step string) error {
		if step == "clearing" {
			if lost != nil {
				lost.Add(1)
			}
			return errors.New("clear lost")
		}
		return nil
	})
	return func(o *app.Options) {
		o.SweepDelay = d
		fail(o)
	}
}

func sweepAfter(d time.Duration) func(*app.Options) { return func(o *app.Options) { o.SweepDelay = d } }

// waitPublished waits for the one event of the demo order, and checks the state holds no
// pending mark any more.
func (e *env) waitPublished(t *testing.T, path string) {
	t.Helper()
	evs := e.waitEvents(1)
	if evs[0].OrderNo != demoOrder || evs[0].EventID != events.EventID("kuaishou", "payment", demoApp, demoOrder, 1) {
		t.Fatalf("event %+v", evs[0])
	}
	kv, _ := e.js.KeyValue(context.Background(), natsinfra.StateBucket)
	natstest.CheckFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		entry, err := kv.Get(context.Background(), "kuaishou.payment."+demoApp+"."+demoOrder)
		if err != nil {
			return err
		}
		if strings.Contains(string(entry.Value()), `"pending":`) {
			return fmt.Errorf("still pending")
		}
		return nil
	})
	t.Logf("figures: %s: events=1, published by the sweep", path)
}

// A lookup whose publish fails after the claim leaves its event pending: the sweep publishes
// it, even for a terminal order that is never queried again.
func TestSweepPublishesALookupsStrandedEvent(t *testing.T) {
	e := newEnv(t, nil)
	tweak, on, _ := failPublishing()
	r := e.build(tweak)
	defer r.close()
	e.startLookup(r)
	m, err := e.nc.Request("orders.lookup.kuaishou.payment", []byte(`{"app_id":"`+demoApp+`","order_no":"`+demoOrder+`"}`), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if code := m.Header.Get("Nats-Service-Error-Code"); code != handlers.CodeUnavailable {
		t.Fatalf("lookup answered %q", code)
	}
	on.Store(false)
	e.startReplica(sweepAfter(time.Second)) // its sweep publishes the stranded event when due
	e.waitPublished(t, "lookup publish failed after the claim")
}

// A failure after the claim on the last allowed delivery dead-letters the request; the sweep
// still publishes its pending event.
func TestSweepPublishesAfterTheLastDelivery(t *testing.T) {
	e := newEnv(t, func(c *config.Config) { c.Consumer.MaxDeliver = 1 })
	tweak, on, failed := failPublishing()
	e.startReplica(tweak)
	e.publish("orders.query.kuaishou.payment", []byte(`{"app_id":"`+demoApp+`","order_no":"`+demoOrder+`"}`), nil)
	e.waitDeadLetters(1)
	if n := len(e.events()); n != 0 || failed.Load() == 0 {
		t.Fatalf("%d events while publishing fails (%d publishes failed)", n, failed.Load())
	}
	on.Store(false)
	e.waitPublished(t, "failure after the claim on the last delivery")
}

// A failure after the claim, then a next delivery the provider rejects, dead-letters the
// request; the sweep still publishes its pending event.
func TestSweepPublishesWhenTheNextDeliveryIsRejected(t *testing.T) {
	e := newEnv(t, nil)
	tweak, on, failed := failPublishing()
	e.startReplica(tweak)
	e.publish("orders.query.kuaishou.payment", []byte(`{"app_id":"`+demoApp+`","order_no":"`+demoOrder+`"}`), nil)
	natstest.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if failed.Load() < 1 {
			return errors.New("not claimed yet")
		}
		return nil
	})
	e.sb.SetFault(demoApp, sandboxkit.NotFound, -1) // from now on the provider rejects the order
	e.waitDeadLetters(1)
	if n := len(e.events()); n != 0 {
		t.Fatalf("%d events while publishing fails", n)
	}
	on.Store(false)
	e.sb.SetFault(demoApp, sandboxkit.None, 0)
	e.waitPublished(t, "next delivery rejected after a failure after the claim")
}

// The clear of a pending mark is not waited for. One that is lost (a crash right after the
// event, a write the server refused) left the mark for the order's next reader, whose publish
// of the event again is a second copy once the duplicate window has passed. The sweep clears
// it, and the event stays one.
func TestSweepClearsALostClear(t *testing.T) {
	e := newEnv(t, nil)
	var skipped atomic.Int32
	e.startReplica(loseClears(time.Second, &skipped))
	e.publish("orders.query.kuaishou.payment", []byte(`{"app_id":"`+demoApp+`","order_no":"`+demoOrder+`"}`), nil)
	e.waitPublished(t, "clear of the pending mark lost")
	e.waitIdle()
	if skipped.Load() == 0 {
		t.Fatal("the clear was never skipped")
	}
	if n := len(e.events()); n != 1 {
		t.Fatalf("%d events, want 1", n)
	}
}

// The replica holding the sweep stops with a mark nobody cleared; another takes the sweep
// over once the lease runs out, reads again from the watermark, and publishes and clears it.
func TestSweepTakenOverFromAStoppedReplica(t *testing.T) {
	e := newEnv(t, nil)
	stopA := e.startReplica(loseClears(time.Minute, nil)) // A would sweep it a minute later: it is stopped first
	e.publish("orders.query.kuaishou.payment", []byte(`{"app_id":"`+demoApp+`","order_no":"`+demoOrder+`"}`), nil)
	e.waitEvents(1)
	e.waitIdle()
	kv, _ := e.js.KeyValue(context.Background(), natsinfra.StateBucket)
	natstest.CheckFor(t, 10*time.Second, 50*time.Millisecond, func() error { // A holds the sweep
		if _, err := kv.Get(context.Background(), "sweep.watermark"); err != nil {
			return err
		}
		return nil
	})
	stopA()
	e.startReplica(sweepAfter(time.Second))
	e.waitPublished(t, "sweep taken over from a stopped replica")
	if n := len(e.events()); n != 1 {
		t.Fatalf("%d events, want 1", n)
	}
}

// The sweep's lease is a value in ORDERS_STATE, which anyone who may write the bucket can
// forge: a holder that does not exist, with a lease running to 2100, would have stopped every
// replica from sweeping for ever. A lease longer than a holder ever takes is not honoured.
func TestForgedSweepLeaseIsNotHonoured(t *testing.T) {
	e := newEnv(t, nil)
	e.startReplica(loseClears(time.Second, nil))
	kv, err := e.js.KeyValue(context.Background(), natsinfra.StateBucket)
	if err != nil {
		t.Fatal(err)
	}
	forged := fmt.Sprintf(`{"seq":1,"holder":"nobody","until":%q}`, time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC).Format(time.RFC3339))
	if _, err := kv.Put(context.Background(), "sweep.watermark", []byte(forged)); err != nil {
		t.Fatal(err)
	}
	e.publish("orders.query.kuaishou.payment", []byte(`{"app_id":"`+demoApp+`","order_no":"`+demoOrder+`"}`), nil)
	e.waitPublished(t, "clear lost under a forged sweep lease")
}

// A failed write after a successful provider call is tried again with the answer in hand, not
// by handing the request back to ask the provider again: one provider call per request, even
// while stream leaders are re-elected.
func TestFailedWriteDoesNotAskTheProviderAgain(t *testing.T) {
	e := newEnv(t, nil)
	var fails atomic.Int32
	e.startReplica(failing(func(step string) error {
		if step == "publishing" && fails.Add(1) <= 2 { // the event publish fails twice
			return errors.New("publish failed")
		}
		return nil
	}))
	e.publish("orders.query.kuaishou.payment", []byte(`{"app_id":"`+demoApp+`","order_no":"`+demoOrder+`"}`), nil)
	e.waitEvents(1)
	e.waitIdle()
	calls := len(e.sb.Calls(demoApp, events.KindPayment))
	t.Logf("figures: failed_publishes=2 provider_calls=%d events=1", calls)
	if calls != 1 {
		t.Fatalf("%d provider calls for one request whose writes failed twice, want 1", calls)
	}
}

// The headers of a scheduled event check (not a feature of this service) are a request's
// like any other: a "check" forged with them, naming any key, is an ordinary request and ends
// as a dead letter, never acked silently nor redelivered for ever.
func TestForgedEventCheckEnds(t *testing.T) {
	e := newEnv(t, nil)
	e.startReplica(nil)
	for i, key := range []string{"kuaishou.payment.app.ordér", "a b", "kuaishou.payment", "x..y", strings.Repeat("k", 2000)} {
		e.publish("orders.query.kuaishou.payment", nil, nats.Header{
			"Nats-Scheduler":     {"orders.sweep.forged." + fmt.Sprint(i)},
			"Nats-Schedule-Next": {"purge"},
			"Orders-Sweep-Key":   {key},
		})
	}
	e.waitDeadLetters(5)
	e.waitIdle()
}
