package providers

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace/noop"
)

// A provider call is a client span named by the HTTP conventions, child of the caller's span,
// with the request's method, server, status and URL; the access token in the query string
// reaches the provider but never a span (url.full shows it REDACTED), and no trace header goes
// to the provider.
func TestProviderCallSpan(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	otel.SetTracerProvider(tp)
	t.Cleanup(func() { otel.SetTracerProvider(noop.NewTracerProvider()); _ = tp.Shutdown(context.Background()) })

	var query, traceparent string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		query, traceparent = r.URL.RawQuery, r.Header.Get("traceparent")
		_, _ = io.WriteString(w, "{}")
	}))
	defer srv.Close()
	ctx, parent := tp.Tracer("test").Start(context.Background(), "caller")
	if _, err := Post(ctx, NewHTTPClient(2*time.Second), "p", srv.URL+"/q?app_id=a&access_token=ChFvSecret", "application/json", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	parent.End()
	if query != "app_id=a&access_token=ChFvSecret" {
		t.Fatalf("the provider got the query %q", query)
	}
	if traceparent != "" {
		t.Fatalf("a trace header went to the provider: %q", traceparent)
	}
	spans := exp.GetSpans()
	if len(spans) != 2 {
		t.Fatalf("%d spans, want the call's and its caller's", len(spans))
	}
	call := spans[0]
	if call.Name != "POST" || call.Parent.SpanID() != parent.SpanContext().SpanID() || call.SpanKind.String() != "client" {
		t.Fatalf("call span %q: parent %s, kind %s; want POST, client", call.Name, call.Parent.SpanID(), call.SpanKind)
	}
	for _, a := range call.Attributes {
		if strings.Contains(a.Value.String(), "ChFvSecret") {
			t.Fatalf("the access token reached the span: %s=%s", a.Key, a.Value.String())
		}
	}
	want := map[string]string{
		"url.full":                  srv.URL + "/q?app_id=a&access_token=REDACTED",
		"http.request.method":       "POST",
		"server.address":            "127.0.0.1",
		"http.response.status_code": "200",
	}
	checkAttrs(t, call, want)
	if _, ok := attrOf(call, "error.type"); ok {
		t.Errorf("error.type on a call that succeeded")
	}
}

// A call the provider fails is an error span whose error.type is the HTTP status, as the HTTP
// conventions say.
func TestProviderCallSpanFailed(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "down", http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	ctx, parent := tp.Tracer("test").Start(context.Background(), "caller")
	_, err := Post(ctx, NewHTTPClient(2*time.Second), "p", srv.URL+"/q?access_token=ChFvSecret", "application/json", []byte(`{}`))
	parent.End()
	if Classify(err) != Retryable {
		t.Fatalf("err %v, want a retryable one", err)
	}
	call := exp.GetSpans()[0]
	if call.Name != "POST" || call.Status.Code != codes.Error {
		t.Fatalf("call span %q, status %v", call.Name, call.Status)
	}
	checkAttrs(t, call, map[string]string{"error.type": "503", "http.response.status_code": "503",
		"url.full": srv.URL + "/q?access_token=REDACTED"})
}

// Only the values of keys known not to be secret stay in url.full.
func TestRedactQuery(t *testing.T) {
	for raw, want := range map[string]string{
		"access_token=ChFvSecret&app_id=ks1": "access_token=REDACTED&app_id=ks1",
		"app%5Fid=ks1&sign=abc&flag":         "app%5Fid=ks1&sign=REDACTED&flag",
		"a=1&&b=":                            "a=REDACTED&&b=REDACTED",
		"%zz=1":                              "%zz=REDACTED",
	} {
		if got := redactQuery(raw); got != want {
			t.Errorf("redactQuery(%q) = %q, want %q", raw, got, want)
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

// instrumentedCalls is a transport that answers at once and counts the calls that reached it
// through the instrumentation, and those that came straight.
type instrumentedCalls struct{ instrumented, straight int }

func (c *instrumentedCalls) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.RawQuery != "access_token=ChFvSecret" {
		return nil, errors.New("the query string did not reach the transport: " + r.URL.RawQuery)
	}
	if _, ok := r.Context().Value(hiddenQueryKey{}).(string); ok {
		c.instrumented++
	} else {
		c.straight++
	}
	return answerAtOnce(`{}`).RoundTrip(r)
}

// A call is a span whenever the tracer provider the instrumentation takes (that of the caller's
// span, else the global one) can make one, however late tracing was started; with the no-op
// one it does not go through the instrumentation at all.
func TestProviderCallInstrumentedOnlyWhenTraced(t *testing.T) {
	otel.SetTracerProvider(noop.NewTracerProvider()) // tracing off, as StartTracing leaves it
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { otel.SetTracerProvider(noop.NewTracerProvider()); _ = tp.Shutdown(context.Background()) })
	calls := &instrumentedCalls{}
	client := newHTTPClient(2*time.Second, calls) // made before tracing starts
	post := func(ctx context.Context) {
		t.Helper()
		if _, err := Post(ctx, client, "p", "http://provider.invalid/q?access_token=ChFvSecret", "application/json", []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
	}

	post(context.Background())
	if calls.straight != 1 || calls.instrumented != 0 || len(exp.GetSpans()) != 0 {
		t.Fatalf("tracing off: %+v, %d spans", *calls, len(exp.GetSpans()))
	}

	ctx, parent := tp.Tracer("test").Start(context.Background(), "caller") // a caller's span of its own provider
	post(ctx)
	parent.End()
	if spans := exp.GetSpans(); calls.instrumented != 1 || len(spans) != 2 || spans[0].Parent.SpanID() != parent.SpanContext().SpanID() {
		t.Fatalf("caller's provider: %+v, spans %v", *calls, spanNames(spans))
	}

	exp.Reset()
	otel.SetTracerProvider(tp) // tracing started after the client was made
	post(context.Background())
	if spans := exp.GetSpans(); calls.instrumented != 2 || calls.straight != 1 || len(spans) != 1 || spans[0].SpanKind.String() != "client" {
		t.Fatalf("tracing on: %+v, spans %v", *calls, spanNames(spans))
	}
}

func spanNames(spans tracetest.SpanStubs) []string {
	var names []string
	for _, s := range spans {
		names = append(names, s.Name+" ("+s.SpanKind.String()+")")
	}
	return names
}
