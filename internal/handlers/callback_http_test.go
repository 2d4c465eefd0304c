package handlers_test

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/paystatus/orderstatus/internal/callbacks"
	"github.com/paystatus/orderstatus/internal/events"
	"github.com/paystatus/orderstatus/internal/natsinfra"
	"github.com/paystatus/orderstatus/internal/natstest"
	kssandbox "github.com/paystatus/orderstatus/internal/providers/kuaishou/sandbox"
	"github.com/paystatus/orderstatus/internal/providers/registry"
	"github.com/paystatus/orderstatus/internal/telemetry"
)

// startEndpoint serves the callback endpoint on e's NATS, as Serve does with callbacks.listen.
func (e *env) startEndpoint() string {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := natsinfra.Provision(ctx, e.js, e.cfg, e.log); err != nil {
		e.t.Fatal(err)
	}
	provs, err := registry.Build(e.cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	metrics := e.metrics // when set, the replicas' and the endpoint's measurements are in one place
	if metrics == nil {
		metrics = telemetry.NewMetrics(prometheus.NewRegistry())
	}
	sctx, stop := context.WithCancel(context.Background())
	e.t.Cleanup(stop)
	addr, err := callbacks.Start(sctx, "127.0.0.1:0", callbacks.Options{JS: e.js, Subjects: events.Subjects{Prefix: "orders"},
		Notifiers: callbacks.NotifiersOf(provs), MaxConcurrent: 16, Log: e.log, Metrics: metrics})
	if err != nil {
		e.t.Fatal(err)
	}
	return "http://" + addr.String() + "/callbacks/kuaishou"
}

func postNotice(t *testing.T, url string, body []byte, sign string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	req.Header.Set("kwaisign", sign)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	return res.StatusCode
}

// Over HTTP, a notification answered 200 is stored: with no replica running (one crashed
// between storing and processing) it waits in ORDERS_CALLBACK, and a replica started later
// processes it. Resends and notifications out of order give one event per change, in order.
func TestCallbacksOverHTTPSurviveACrash(t *testing.T) {
	e := newEnv(t, nil)
	url := e.startEndpoint()
	order := "cb-http-0001"
	t0 := time.Now().Add(-time.Minute)
	pending := notice("h-1", demoApp, order, "PROCESSING", 1200, t0)
	paid := notice("h-2", demoApp, order, "SUCCESS", 1200, t0.Add(time.Second))
	// Disorder and resends: the later one first, each twice, then the earlier one.
	for _, b := range [][]byte{paid, paid, pending, pending} {
		if code := postNotice(t, url, b, kwaisign(b, kssandbox.DemoAppSecret)); code != 200 {
			t.Fatalf("answered %d", code)
		}
	}
	forged := notice("h-3", demoApp, order, "FAILED", 1200, t0.Add(2*time.Second))
	if code := postNotice(t, url, forged, kwaisign(forged, "not-the-secret")); code != 401 {
		t.Fatalf("forged answered %d", code)
	}
	if n := len(e.streamMsgs(natsinfra.CallbackStream)); n != 2 {
		t.Fatalf("%d notifications stored, want 2 (resends inside the duplicate window stored once, forged never)", n)
	}
	e.startReplica(nil)
	e.waitCallbacksIdle()
	// The two are processed concurrently: the earlier one either comes first (two events, in
	// order) or after the later one (stale: one event). Never backwards, never twice.
	evs := e.events()
	last := evs[len(evs)-1]
	if len(evs) > 2 || last.Status != events.StatusSucceeded || last.Source != events.SourceCallback {
		t.Fatalf("events %+v", evs)
	}
	if len(evs) == 2 && (evs[0].Status != events.StatusPending || last.PreviousStatus != events.StatusPending) {
		t.Fatalf("events out of order: %+v", evs)
	}
	if n := len(e.streamMsgs(natsinfra.DLQStream)); n != 0 {
		t.Fatalf("%d dead letters", n)
	}
}

// The sandbox notifies over HTTP with duplicates and reordering at high rates, while payments,
// refunds and settlements step from PROCESSING to SUCCESS: each order ends succeeded, with one
// event per transition, in transition order, never backwards; every notification stored and
// not applied is counted stale, and every copy of one already stored is counted duplicate.
func TestCallbacksInDisorder(t *testing.T) {
	e := newEnv(t, nil)
	e.metrics = telemetry.NewMetrics(prometheus.NewRegistry())
	e.startReplica(nil)
	url := e.startEndpoint()
	type order struct{ kind, no, processing, success string }
	var orders []order
	for i := range 6 {
		orders = append(orders, order{events.KindPayment, fmt.Sprintf("disorder-pay-%02d", i), "PROCESSING", "SUCCESS"},
			order{events.KindRefund, fmt.Sprintf("disorder-ref-%02d", i), "REFUND_PROCESSING", "REFUND_SUCCESS"},
			order{events.KindSettlement, fmt.Sprintf("disorder-set-%02d", i), "SETTLE_PROCESSING", "SETTLE_SUCCESS"})
	}
	for _, o := range orders {
		e.sb.PutOrder(kssandbox.Order{AppID: demoApp, Kind: o.kind, OrderNo: o.no, Amount: 500, KsOrderNo: "ks-" + o.no,
			KsRefNo: "ref-" + o.no, Steps: []kssandbox.Step{{Status: o.processing}}})
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		e.sb.Notify(ctx, kssandbox.NotifyOptions{URL: url, Every: 20 * time.Millisecond, DuplicateRate: 0.8, ReorderRate: 0.8,
			DuplicateWithin: 100 * time.Millisecond, HoldFor: 3 * time.Second, Rand: rand.New(rand.NewPCG(19, 19))})
	}()
	t.Cleanup(func() { cancel(); <-done }) // before the endpoint stops
	// Every order's PROCESSING is made (held back or sent) before it moves on.
	natstest.CheckFor(t, 20*time.Second, 20*time.Millisecond, func() error {
		notices := e.sb.Notices()
		for _, o := range orders {
			if !slices.ContainsFunc(notices, func(n kssandbox.Notice) bool { return n.OrderNo == o.no && n.Kind == o.kind }) {
				return fmt.Errorf("no notification of %s %s", o.kind, o.no)
			}
		}
		return nil
	})
	for _, o := range orders {
		e.sb.SetStatus(demoApp, o.kind, o.no, o.success)
	}
	overHTTP := func(outcome string) float64 {
		return testutil.ToFloat64(e.metrics.Notifications.WithLabelValues("kuaishou", "http", outcome))
	}
	// Every copy sent is answered: the first of each notification stored, the others duplicates.
	var notices []kssandbox.Notice
	var heldBack, copies int
	natstest.CheckFor(t, 30*time.Second, 20*time.Millisecond, func() error {
		notices = e.sb.Notices()
		heldBack, copies = 0, 0
		for _, n := range notices {
			copies += 1 + btoi(n.Duplicate)
			heldBack += btoi(n.HeldBack)
		}
		if len(notices) < 2*len(orders) || int(overHTTP("stored")+overHTTP("duplicate")) != copies {
			return fmt.Errorf("%d notifications made, %v stored and %v duplicates of %d copies",
				len(notices), overHTTP("stored"), overHTTP("duplicate"), copies)
		}
		return nil
	})
	e.waitCallbacksIdle()

	all := e.events()
	for _, o := range orders {
		var evs []events.StatusEvent
		for _, ev := range all {
			if ev.OrderNo == o.no && ev.Kind == o.kind {
				evs = append(evs, ev)
			}
		}
		if len(evs) == 0 || len(evs) > 2 {
			t.Errorf("%s %s: %d events, want 1 or 2 (pending, then succeeded): %+v", o.kind, o.no, len(evs), evs)
			continue
		}
		prev := events.Status("")
		for i, ev := range evs { // in the stream's order: transitions 1, 2, ..., each once
			if ev.EventID != events.EventID("kuaishou", o.kind, demoApp, o.no, uint64(i+1)) || ev.PreviousStatus != prev ||
				ev.Source != events.SourceCallback || (i < len(evs)-1) == ev.Terminal {
				t.Errorf("%s %s: event %d of %d out of order, backwards or twice: %+v", o.kind, o.no, i+1, len(evs), evs)
				break
			}
			prev = ev.Status
		}
		last := evs[len(evs)-1]
		if last.Status != events.StatusSucceeded {
			t.Errorf("%s %s ends %s, want succeeded", o.kind, o.no, last.Status)
		}
		// Recorded as observed at the notification's timestamp (its event's observed_at), which
		// orders it against the others, whenever it was processed.
		rec := e.storedState(o.kind, o.no)
		sent, _ := time.Parse(time.RFC3339Nano, rec.SentAt)
		observed, _ := time.Parse(time.RFC3339Nano, last.ObservedAt)
		if rec.Status != string(events.StatusSucceeded) || rec.Transition != uint64(len(evs)) || !sent.Equal(observed) {
			t.Errorf("%s %s: ORDERS_STATE at %s, transition %d, observed at %s; want succeeded, %d, %s",
				o.kind, o.no, rec.Status, rec.Transition, rec.SentAt, len(evs), last.ObservedAt)
		}
	}
	// Each notification stored is processed once: applied (an event) or stale (an older one,
	// or after the order ended); none is unchanged, each of an order's notifications being of
	// another status.
	nats := func(outcome string) float64 { return notifications(e.metrics, outcome) }
	stored, dups, applied, stale := overHTTP("stored"), overHTTP("duplicate"), nats("applied"), nats("stale")
	if int(stored) != len(notices) || int(applied) != len(all) || applied+stale != stored || nats("unchanged") != 0 || nats("duplicate") != 0 {
		t.Errorf("%d notifications: %v stored; applied %v for %d events, stale %v, unchanged %v, duplicate %v",
			len(notices), stored, applied, len(all), stale, nats("unchanged"), nats("duplicate"))
	}
	if int(dups) != copies-len(notices) || dups == 0 {
		t.Errorf("%v duplicates counted, %d sent", dups, copies-len(notices))
	}
	if n := len(e.streamMsgs(natsinfra.DLQStream)); n != 0 {
		t.Errorf("%d dead letters", n)
	}
	t.Logf("figures: orders=%d notifications=%d held_back=%d duplicates=%v events=%d stale=%v",
		len(orders), len(notices), heldBack, dups, len(all), stale)
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
