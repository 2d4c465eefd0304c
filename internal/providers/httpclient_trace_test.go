package providers

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace/noop"
)

// A provider call is a client span, child of the caller's span; the access token in the
// query string reaches the provider but never a span, and no trace header goes to the provider.
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
	if _, err := PostJSON(ctx, NewHTTPClient(2*time.Second), "p", srv.URL+"/q?app_id=a&access_token=ChFvSecret", []byte(`{}`)); err != nil {
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
	if call.Parent.SpanID() != parent.SpanContext().SpanID() || call.SpanKind.String() != "client" {
		t.Fatalf("call span %q: parent %s, kind %s", call.Name, call.Parent.SpanID(), call.SpanKind)
	}
	url := ""
	for _, a := range call.Attributes {
		if a.Key == "url.full" {
			url = a.Value.AsString()
		}
		if strings.Contains(a.Value.String(), "ChFvSecret") {
			t.Fatalf("the access token reached the span: %s=%s", a.Key, a.Value.String())
		}
	}
	if url != srv.URL+"/q" {
		t.Fatalf("url.full %q, want %q", url, srv.URL+"/q")
	}
}
