package handlers_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/paystatus/orderstatus/internal/events"
	"github.com/paystatus/orderstatus/internal/natsinfra"
	"github.com/paystatus/orderstatus/internal/natstest"
	"github.com/paystatus/orderstatus/internal/providers/sandboxkit"
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

	// The messaging semantic conventions.
	checkAttrs(t, consumer, map[string]string{
		"messaging.system": "nats", "messaging.operation.type": "process", "messaging.operation.name": "process",
		"messaging.consumer.group.name": e.cfg.Consumer.Name, "messaging.destination.name": subjectDemo,
	})
	checkAttrs(t, publish, map[string]string{
		"messaging.system": "nats", "messaging.operation.type": "send", "messaging.operation.name": "publish",
		"messaging.destination.name": msgs[0].Subject, "messaging.message.id": msgs[0].Header.Get("Nats-Msg-Id"),
	})
	if publish.SpanKind != trace.SpanKindProducer {
		t.Errorf("publish span kind %s", publish.SpanKind)
	}
	for _, s := range []tracetest.SpanStub{consumer, publish, query} {
		if v, ok := attrOf(s, "error.type"); ok {
			t.Errorf("span %q: error.type %q on a success", s.Name, v)
		}
	}
	// The provider call, by the HTTP conventions, its access token redacted.
	if httpCall.Name != "POST" {
		t.Errorf("HTTP call span %q, want POST", httpCall.Name)
	}
	checkAttrs(t, *httpCall, map[string]string{"http.request.method": "POST", "server.address": "127.0.0.1", "http.response.status_code": "200"})
	if u, _ := attrOf(*httpCall, "url.full"); !strings.Contains(u, "access_token=REDACTED") || !strings.Contains(u, "app_id="+demoApp) {
		t.Errorf("HTTP call url.full %q, want its access token redacted", u)
	}
}

// A failed provider call, a request the provider rejects and one dead-lettered before any call
// say why on their spans (error.type): the provider's error class on the query span and the
// HTTP status on the HTTP span; the dead-letter reason on the process span; and the dead
// letter's publish is a producer span "publish ORDERS_DLQ" whose context the letter carries.
func TestSpanErrorTypes(t *testing.T) {
	exp := traced(t)
	e := newEnv(t, nil)
	e.startReplica(nil)
	parent := func(n int) (nats.Header, string) {
		tid := fmt.Sprintf("%032x", 0xabc0+n)
		return nats.Header{"traceparent": {"00-" + tid + "-b7ad6b7169203331-01"}}, tid
	}
	// Traced by trace id, each span by its name (an HTTP call by its kind and status).
	spansOf := func(tid string) map[string]tracetest.SpanStub {
		out := map[string]tracetest.SpanStub{}
		for _, s := range exp.GetSpans() {
			if s.SpanContext.TraceID().String() != tid {
				continue
			}
			name := s.Name
			if s.SpanKind == trace.SpanKindClient {
				code, _ := attrOf(s, "http.response.status_code")
				name += " " + code
			}
			out[name] = s
		}
		return out
	}

	// The provider fails once (HTTP 500), then answers: the request still ends in an event.
	e.sb.SetFault(demoApp, sandboxkit.HTTP500, 1)
	hdr, failedCall := parent(1)
	e.publish(subjectDemo, []byte(queryDemo), hdr)
	e.waitEvents(1)
	// The provider rejects the order; the app is unknown.
	hdr, rejectedTid := parent(2)
	e.publish(subjectDemo, []byte(`{"app_id":"`+demoApp+`","order_no":"no-such-order"}`), hdr)
	hdr, unknownTid := parent(3)
	e.publish(subjectDemo, []byte(unknownApp), hdr)
	e.waitDeadLetters(2)
	e.waitIdle()

	var failed, rejected, unknown map[string]tracetest.SpanStub
	natstest.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		failed, rejected, unknown = spansOf(failedCall), spansOf(rejectedTid), spansOf(unknownTid)
		for _, set := range []struct {
			spans map[string]tracetest.SpanStub
			names []string
		}{
			{failed, []string{"process ORDERS_QUERY", "query kuaishou query_order", "POST 500", "POST 200", "publish ORDERS_STATUS"}},
			{rejected, []string{"process ORDERS_QUERY", "query kuaishou query_order", "POST 200", "publish ORDERS_DLQ"}},
			{unknown, []string{"process ORDERS_QUERY", "publish ORDERS_DLQ"}},
		} {
			for _, n := range set.names {
				if _, ok := set.spans[n]; !ok {
					return fmt.Errorf("no span %q yet", n)
				}
			}
		}
		return nil
	})

	// The failed call: its HTTP span and the query span it ended; the request went on.
	checkAttrs(t, failed["POST 500"], map[string]string{"error.type": "500"})
	var queryErrors []string
	for _, s := range exp.GetSpans() {
		if s.SpanContext.TraceID().String() == failedCall && s.Name == "query kuaishou query_order" {
			v, _ := attrOf(s, "error.type")
			queryErrors = append(queryErrors, v)
		}
	}
	if strings.Join(queryErrors, ",") != "retryable," {
		t.Errorf("query spans' error.type %q, want retryable on the failed call, none on the next", queryErrors)
	}
	if v, ok := attrOf(failed["process ORDERS_QUERY"], "error.type"); ok {
		t.Errorf("process span of a request that ended in an event: error.type %q", v)
	}

	// The rejected order: the provider's class on the query, the reason on the process span.
	checkAttrs(t, rejected["query kuaishou query_order"], map[string]string{"error.type": "permanent"})
	checkAttrs(t, rejected["process ORDERS_QUERY"], map[string]string{"error.type": events.ReasonProviderRejected,
		"messaging.consumer.group.name": e.cfg.Consumer.Name})
	checkAttrs(t, unknown["process ORDERS_QUERY"], map[string]string{"error.type": events.ReasonUnknownApp})
	for _, s := range []tracetest.SpanStub{rejected["process ORDERS_QUERY"], unknown["process ORDERS_QUERY"]} {
		if s.Status.Code != codes.Error {
			t.Errorf("dead-lettered request's span status %v", s.Status)
		}
	}

	// The dead letters' producer spans.
	letters := map[string]nats.Header{}
	for _, m := range e.streamMsgs(natsinfra.DLQStream) {
		tid, _ := spanContextOf(t, m.Header)
		letters[tid] = m.Header
	}
	for tid, spans := range map[string]map[string]tracetest.SpanStub{rejectedTid: rejected, unknownTid: unknown} {
		dl, process := spans["publish ORDERS_DLQ"], spans["process ORDERS_QUERY"]
		hdr := letters[tid]
		if dl.SpanKind != trace.SpanKindProducer || dl.Parent.SpanID() != process.SpanContext.SpanID() {
			t.Errorf("dead letter span: kind %s, parent %s, want a producer child of the process span", dl.SpanKind, dl.Parent.SpanID())
		}
		checkAttrs(t, dl, map[string]string{
			"messaging.system": "nats", "messaging.operation.type": "send", "messaging.operation.name": "publish",
			"messaging.destination.name": "orders.dlq.kuaishou.payment", "messaging.message.id": hdr.Get("Nats-Msg-Id"),
			"orders.dead_letter.reason": hdr.Get("Orders-Error-Reason"),
		})
		if _, sid := spanContextOf(t, hdr); sid != dl.SpanContext.SpanID().String() {
			t.Errorf("dead letter traceparent span %s, want its publish span %s", sid, dl.SpanContext.SpanID())
		}
		if v, ok := attrOf(dl, "error.type"); ok {
			t.Errorf("dead letter stored, yet its span has error.type %q", v)
		}
	}
}

func attrOf(s tracetest.SpanStub, key string) (string, bool) {
	for _, a := range s.Attributes {
		if string(a.Key) == key {
			return a.Value.String(), true
		}
	}
	return "", false
}

func checkAttrs(t *testing.T, s tracetest.SpanStub, want map[string]string) {
	t.Helper()
	for k, v := range want {
		if got, ok := attrOf(s, k); !ok || got != v {
			t.Errorf("span %q: %s = %q (set: %v), want %q", s.Name, k, got, ok, v)
		}
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
