package handlers_test

import (
	"bytes"
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/paystatus/orderstatus/internal/callbacks"
	"github.com/paystatus/orderstatus/internal/events"
	"github.com/paystatus/orderstatus/internal/natsinfra"
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
	sctx, stop := context.WithCancel(context.Background())
	e.t.Cleanup(stop)
	addr, err := callbacks.Start(sctx, "127.0.0.1:0", callbacks.Options{JS: e.js, Subjects: events.Subjects{Prefix: "orders"},
		Notifiers: callbacks.NotifiersOf(provs), MaxConcurrent: 16, Log: e.log, Metrics: telemetry.NewMetrics(prometheus.NewRegistry())})
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
