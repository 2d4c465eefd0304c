package handlers_test

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/paystatus/orderstatus/internal/app"
	"github.com/paystatus/orderstatus/internal/config"
	"github.com/paystatus/orderstatus/internal/natsinfra"
	"github.com/paystatus/orderstatus/internal/natstest"
	"github.com/paystatus/orderstatus/internal/telemetry"
)

// fuzzSubjects are the subjects a fuzzed request is published on: every configured route,
// and ones no route matches.
var fuzzSubjects = []string{
	"orders.query.kuaishou.payment", "orders.query.kuaishou.settlement", "orders.query.kuaishou.refund",
	"orders.query.kudian.payment", "orders.query.kudian.refund", "orders.query.nope.payment",
	"orders.query.kuaishou", "orders.query.kuaishou.payment.extra",
}

// fuzzHeaders reads "Name: value" lines into headers; Nats-* lines are left out (the server's
// own, tested on their own), and so is anything nats.go would refuse to send.
func fuzzHeaders(text string) nats.Header {
	hdr := nats.Header{}
	for _, line := range strings.Split(text, "\n") {
		k, v, ok := strings.Cut(line, ":")
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if !ok || k == "" || strings.HasPrefix(strings.ToLower(k), "nats-") || strings.ContainsAny(k+v, "\r\x00") ||
			strings.ContainsAny(k, " \t:") {
			continue
		}
		hdr.Add(k, v)
	}
	return hdr
}

// outcomeCounts sums orders_requests_total by outcome.
func outcomeCounts(t testing.TB, g prometheus.Gatherer) map[string]float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "orders_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "outcome" {
					out[l.GetValue()] += m.GetCounter().GetValue()
				}
			}
		}
	}
	return out
}

// FuzzPipeline sends random payloads and headers through the real pipeline (decode, route,
// provider call, state, event or dead letter) against an embedded server, and checks that each
// input the server accepts ends in exactly one outcome (an event, no change, or one dead
// letter), never a redelivery, and that the heap stays bounded. Its seeds are the hostile
// inputs of the other tests.
func FuzzPipeline(f *testing.F) {
	e := newEnv(f, func(c *config.Config) {
		c.Consumer.FollowDelay = time.Hour // follow-ups must not fire during the run
		c.Consumer.FollowMaxDelay = time.Hour
	})
	reg := prometheus.NewRegistry()
	e.metrics = telemetry.NewMetrics(reg)
	e.startReplica(func(o *app.Options) { o.SweepDelay = time.Hour }) // the sweep must not publish during the run

	headerText := func(h nats.Header) string {
		var b strings.Builder
		for k, vs := range h {
			for _, v := range vs {
				fmt.Fprintf(&b, "%s: %s\n", k, v)
			}
		}
		return b.String()
	}
	for _, c := range hostileRequests() {
		for i, s := range fuzzSubjects {
			if s == c.subject {
				f.Add(uint8(i), c.data, headerText(c.hdr))
			}
		}
	}
	forged := "Orders-Follow-Round: 9223372036854775807\nOrders-Follow-Until: 2999-01-01T00:00:00Z\nOrders-Request-Id: forged\n"
	f.Add(uint8(0), []byte(`{"app_id":"`+demoApp+`","order_no":"`+demoOrder+`","follow":true}`), forged)
	f.Add(uint8(0), []byte(`{"app_id":"`+demoApp+`","order_no":"`+demoOrder+`"}`), "Orders-Error-Reason: forged\ntraceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
	f.Add(uint8(3), []byte(`{"app_id":"kd100020200220","order_no":"KD20240301001"}`), "")
	f.Add(uint8(1), []byte("\x82\xa6app_id\xb4"+demoApp+"\xa8order_no\xd9\x19"+demoOrder), "Content-Type: application/msgpack")
	f.Add(uint8(2), []byte(`{"app_id":"`+demoApp+`","order_no":"no-such-order-1"}`), "")
	f.Add(uint8(0), []byte(`{"app_id":"`+demoApp+`","order_no":"`+demoOrder+`","x":`+strings.Repeat("[", 5000)+strings.Repeat("]", 5000)+`}`), "")
	f.Add(uint8(0), make([]byte, 70000), "")

	var seq atomic.Int64
	f.Fuzz(func(t *testing.T, subject uint8, data []byte, headers string) {
		e := *e // the same set-up, failing this input's test
		e.t = t
		hdr := fuzzHeaders(headers)
		hdr.Set("Nats-Msg-Id", fmt.Sprintf("fuzz-%d-%d", time.Now().UnixNano(), seq.Add(1)))
		before := outcomeCounts(t, reg)
		dlqBefore := len(e.streamMsgs(natsinfra.DLQStream))
		var alloc0 runtime.MemStats
		runtime.ReadMemStats(&alloc0)

		ack, err := e.js.PublishMsg(context.Background(), &nats.Msg{Subject: fuzzSubjects[int(subject)%len(fuzzSubjects)], Data: data, Header: hdr})
		if err != nil || ack.Duplicate {
			return // the server did not take it: nothing to end
		}
		var after map[string]float64
		natstest.CheckFor(t, 15*time.Second, 5*time.Millisecond, func() error {
			after = outcomeCounts(t, reg)
			settled := 0.0
			for _, o := range []string{"event", "unchanged", "dead_letter"} {
				settled += after[o] - before[o]
			}
			if settled < 1 {
				return fmt.Errorf("not settled yet: %v", after)
			}
			return nil
		})
		e.waitIdle()
		after = outcomeCounts(t, reg)
		total := 0.0
		for o, n := range after {
			total += n - before[o]
		}
		if total != 1 {
			t.Fatalf("%v outcomes for one input (before %v, after %v)", total, before, after)
		}
		dlq := len(e.streamMsgs(natsinfra.DLQStream)) - dlqBefore
		if want := int(after["dead_letter"] - before["dead_letter"]); dlq != want && !(want == 1 && dlq == 2) { // 2: an oversized payload stored alone
			t.Fatalf("%d dead letters stored, %d counted", dlq, want)
		}

		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		// Server and client together: no input, whatever lengths it declares, allocates much.
		if d := ms.TotalAlloc - alloc0.TotalAlloc; d > 64<<20 {
			t.Fatalf("%d MB allocated for one %d-byte input", d>>20, len(data))
		}
		if ms.HeapAlloc > 512<<20 {
			t.Fatalf("heap at %d MB", ms.HeapAlloc>>20)
		}
	})
}
