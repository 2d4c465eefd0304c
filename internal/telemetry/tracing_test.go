package telemetry

import (
	"context"
	"io"
	"log/slog"
	"testing"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/paystatus/orderstatus/internal/buildinfo"
)

func resourceValue(res *resource.Resource, key string) string {
	v, _ := res.Set().Value(attribute.Key(key))
	return v.String()
}

// The spans' resource names the service and its build; OTEL_SERVICE_NAME and
// OTEL_RESOURCE_ATTRIBUTES still win.
func TestResourceNamesTheService(t *testing.T) {
	t.Setenv("OTEL_SERVICE_NAME", "")
	t.Setenv("OTEL_RESOURCE_ATTRIBUTES", "")
	res, err := Resource(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got := resourceValue(res, "service.name"); got != ServiceName {
		t.Errorf("service.name %q, want %q", got, ServiceName)
	}
	if got, want := resourceValue(res, "service.version"), buildinfo.Read().Version; got != want || got == "" {
		t.Errorf("service.version %q, want %q", got, want)
	}
	if got := resourceValue(res, "telemetry.sdk.name"); got != "opentelemetry" {
		t.Errorf("telemetry.sdk.name %q", got)
	}

	t.Setenv("OTEL_RESOURCE_ATTRIBUTES", "service.version=9.9.9,deployment.environment.name=test")
	t.Setenv("OTEL_SERVICE_NAME", "orders-eu")
	if res, err = Resource(context.Background()); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]string{"service.name": "orders-eu", "service.version": "9.9.9", "deployment.environment.name": "test"} {
		if got := resourceValue(res, k); got != want {
			t.Errorf("with the environment: %s %q, want %q", k, got, want)
		}
	}
}

// StartTracing's spans carry that resource.
func TestStartTracingResource(t *testing.T) {
	t.Setenv("OTEL_SDK_DISABLED", "")
	t.Setenv("OTEL_SERVICE_NAME", "")
	t.Setenv("OTEL_RESOURCE_ATTRIBUTES", "")
	t.Setenv("OTEL_TRACES_EXPORTER", "console")
	stop, err := StartTracing(context.Background(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { otel.SetTracerProvider(noop.NewTracerProvider()) })
	_, span := otel.Tracer(TracerName).Start(context.Background(), "probe")
	// Not ended: the console exporter would print it.
	ro, ok := span.(sdktrace.ReadOnlySpan)
	if !ok {
		t.Fatalf("span %T: tracing is not on", span)
	}
	if got := resourceValue(ro.Resource(), "service.name"); got != ServiceName {
		t.Errorf("service.name %q", got)
	}
	if got := resourceValue(ro.Resource(), "service.version"); got != buildinfo.Read().Version {
		t.Errorf("service.version %q", got)
	}
	if err := stop(context.Background()); err != nil {
		t.Fatal(err)
	}
}
