package handlers_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/paystatus/orderstatus/internal/natsinfra"
	"github.com/paystatus/orderstatus/internal/natstest"
)

const (
	reqTraceID  = "0af7651916cd43dd8448eb211c80319c"
	reqParent   = "00-" + reqTraceID + "-b7ad6b7169203331-01"
	reqState    = "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"
	queryDemo   = `{"app_id":"` + demoApp + `","order_no":"` + demoOrder + `"}`
	unknownApp  = `{"app_id":"ks-not-configured","order_no":"x"}`
	subjectDemo = "orders.query.kuaishou.payment"
)

// traced makes the global tracer provider (the replica's, and the provider clients') record
// into an in-memory exporter for the test's length.
func traced(t *testing.T) *tracetest.InMemoryExporter {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	otel.SetTracerProvider(tp)
	t.Cleanup(func() { otel.SetTracerProvider(noop.NewTracerProvider()); _ = tp.Shutdown(context.Background()) })
	return exp
}

func traceHeaders() nats.Header {
	return nats.Header{"traceparent": {reqParent}, "tracestate": {reqState}}
}

// spanContextOf reads a message's traceparent.
func spanContextOf(t *testing.T, hdr nats.Header) (traceID, spanID string) {
	t.Helper()
	parts := strings.Split(hdr.Get("traceparent"), "-")
	if len(parts) != 4 {
		t.Fatalf("traceparent %q", hdr.Get("traceparent"))
	}
	return parts[1], parts[2]
}

// A request's trace goes on through the consumer: its span is a child of the request's
// traceparent; the limiter wait, the provider query (and its HTTP call) and the event publish
// are its children; the event carries the publish span's context and the request's tracestate.
func TestTraceContextReachesTheEvent(t *testing.T) {
	exp := traced(t)
	e := newEnv(t, nil)
	e.startReplica(nil)
	e.publish(subjectDemo, []byte(queryDemo), traceHeaders())
	e.waitEvents(1)
	msgs := e.streamMsgs(natsinfra.StatusStream)
	tid, sid := spanContextOf(t, msgs[0].Header)
	if tid != reqTraceID || msgs[0].Header.Get("tracestate") != reqState {
		t.Fatalf("event headers %v", msgs[0].Header)
	}
	e.waitIdle()

	byName := map[string]tracetest.SpanStub{}
	var httpCall *tracetest.SpanStub
	natstest.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		for _, s := range exp.GetSpans() {
			if s.SpanContext.TraceID().String() != reqTraceID {
				continue
			}
			if s.SpanKind == trace.SpanKindClient {
				httpCall = &s
			} else {
				byName[s.Name] = s
			}
		}
		if len(byName) < 4 || httpCall == nil {
			return errors.New("spans not all ended")
		}
		return nil
	})
	consumer, wait := byName["process "+natsinfra.QueryStream], byName["ratelimit wait"]
	query, publish := byName["query kuaishou query_order"], byName["publish "+natsinfra.StatusStream]
	if consumer.Parent.SpanID().String() != "b7ad6b7169203331" || !consumer.Parent.IsRemote() || consumer.SpanKind != trace.SpanKindConsumer {
		t.Fatalf("consumer span %q: parent %v", consumer.Name, consumer.Parent)
	}
	for _, child := range []tracetest.SpanStub{wait, query, publish} {
		if child.Parent.SpanID() != consumer.SpanContext.SpanID() {
			t.Errorf("span %q: parent %s, want the consumer span %s", child.Name, child.Parent.SpanID(), consumer.SpanContext.SpanID())
		}
	}
	if httpCall.Parent.SpanID() != query.SpanContext.SpanID() {
		t.Errorf("HTTP call span %q: parent %s, want the query span", httpCall.Name, httpCall.Parent.SpanID())
	}
	if sid != publish.SpanContext.SpanID().String() {
		t.Errorf("event traceparent span %s, want the publish span %s", sid, publish.SpanContext.SpanID())
	}
}

// A dead letter carries the consumer span's trace context in place of the request's; a trace
// header that is not a sound W3C one is dropped, and never stops a request.
func TestTraceContextReachesTheDeadLetter(t *testing.T) {
	exp := traced(t)
	e := newEnv(t, nil)
	e.startReplica(nil)
	var members []string
	for i := range 1000 {
		members = append(members, "k"+strconv.Itoa(i)+"=v")
	}
	big := strings.Join(members, ",")
	cases := []struct {
		name      string
		hdr       nats.Header
		wantTrace bool
	}{
		{"sound", traceHeaders(), true},
		{"lower and upper case", nats.Header{"Traceparent": {reqParent}}, true},
		{"garbage", nats.Header{"traceparent": {"not-a-trace"}}, false},
		{"all-zero trace id", nats.Header{"traceparent": {"00-00000000000000000000000000000000-b7ad6b7169203331-01"}}, false},
		{"version ff", nats.Header{"traceparent": {"ff-" + reqTraceID + "-b7ad6b7169203331-01"}}, false},
		{"oversized", nats.Header{"traceparent": {reqParent + strings.Repeat("-x", 8000)}}, false},
		{"twice", nats.Header{"traceparent": {reqParent, reqParent}}, false},
		{"oversized tracestate", nats.Header{"traceparent": {reqParent}, "tracestate": {big}}, true},
	}
	for _, c := range cases {
		e.publish("orders.query.kuaishou.payment", []byte(unknownApp), c.hdr)
	}
	dls := map[int]nats.Header{} // by the request's sequence: case i is request i+1
	natstest.CheckFor(t, 15*time.Second, 20*time.Millisecond, func() error {
		for _, m := range e.streamMsgs(natsinfra.DLQStream) {
			seq, _ := strconv.Atoi(m.Header.Get("Orders-Stream-Seq"))
			dls[seq-1] = m.Header
		}
		if len(dls) != len(cases) {
			return errors.New("dead letters not all stored")
		}
		return nil
	})
	for i, c := range cases {
		hdr := dls[i]
		n := 0
		for k := range hdr {
			if strings.EqualFold(k, "traceparent") {
				n++
			}
		}
		tid, sid := spanContextOf(t, hdr)
		if !c.wantTrace { // dropped: the consumer span starts a trace of its own
			if n != 1 || tid == reqTraceID || len(hdr.Get("traceparent")) != 55 {
				t.Errorf("%s: dead letter headers %v", c.name, hdr)
			}
			continue
		}
		if n != 1 || tid != reqTraceID || sid == "b7ad6b7169203331" {
			t.Errorf("%s: dead letter traceparent %q (%d), want the consumer span's in trace %s", c.name, hdr.Get("traceparent"), n, reqTraceID)
		}
		if ts := hdr.Get("tracestate"); len(ts) > 512 {
			t.Errorf("%s: tracestate of %d characters", c.name, len(ts))
		}
	}
	if hdr := dls[0]; hdr.Get("tracestate") != reqState {
		t.Errorf("tracestate %q, want %q", hdr.Get("tracestate"), reqState)
	}
	found := false
	for _, s := range exp.GetSpans() {
		found = found || (s.SpanContext.TraceID().String() == reqTraceID && s.Name == "process "+natsinfra.QueryStream)
	}
	if !found {
		t.Error("no consumer span in the request's trace")
	}
}

// An event published later from the order's state (its first publish failed after the
// claim) still carries the request's trace: the trace context is stored with the pending event.
func TestTraceContextSurvivesInThePendingState(t *testing.T) {
	e := newEnv(t, nil)
	tweak, on, failed := failPublishing()
	e.startReplica(tweak)
	e.publish(subjectDemo, []byte(queryDemo), traceHeaders())
	natstest.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if failed.Load() < 1 {
			return errors.New("not claimed yet")
		}
		return nil
	})
	kv, _ := e.js.KeyValue(context.Background(), natsinfra.StateBucket)
	entry, err := kv.Get(context.Background(), "kuaishou.payment."+demoApp+"."+demoOrder)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(entry.Value()), `"traceparent":"00-`+reqTraceID) {
		t.Fatalf("state %s holds no trace context", entry.Value())
	}
	on.Store(false)
	e.waitPublished(t, "published from the pending state")
	msgs := e.streamMsgs(natsinfra.StatusStream)
	if tid, _ := spanContextOf(t, msgs[0].Header); tid != reqTraceID || msgs[0].Header.Get("tracestate") != reqState {
		t.Fatalf("event headers %v, want trace %s", msgs[0].Header, reqTraceID)
	}
}
