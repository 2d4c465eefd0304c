package telemetry

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/contrib/exporters/autoexport"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/paystatus/orderstatus/internal/buildinfo"
)

// A request's W3C trace context (traceparent, tracestate) carries over to every event, dead
// letter and follow-up it causes. On its way it lives in three places: the request's headers,
// read once when the request is accepted (ReadTrace); the context of the request's consumer
// span, whose span context is what goes on (TraceOf); and, for an event recorded but not yet
// published, the order's record next to the pending event, so that whoever publishes it later
// (another replica, the sweep) puts the same trace on it.
//
// With tracing off the tracer is a no-op one: a no-op span keeps its parent's span context, so
// the request's own trace context passes through unchanged, at the cost of reading two headers.

// TracerName names the service's spans' instrumentation scope.
const TracerName = "github.com/paystatus/orderstatus"

// W3C Trace Context headers, and what of them a publisher may send: a traceparent is 55
// characters (version 00; later versions may add fields), and a tracestate is cut to the whole
// members that fit in 512 characters, the length the W3C asks every vendor to pass on.
const (
	headerTraceParent = "traceparent"
	headerTraceState  = "tracestate"
	maxTraceParent    = 256
	maxTraceState     = 512
)

// TraceContext is a W3C trace context as headers carry it; the zero value is none.
type TraceContext struct {
	Parent string `json:"traceparent,omitempty"`
	State  string `json:"tracestate,omitempty"`
}

// ReadTrace returns ctx carrying the trace context of hdr as its remote parent, when hdr holds
// a sound one. Anything else (malformed, oversized, repeated) is dropped: it is a publisher's
// input, and a trace is never a reason to refuse a request.
func ReadTrace(ctx context.Context, hdr nats.Header) context.Context {
	if len(hdr) == 0 {
		return ctx
	}
	parent := headerValues(hdr, headerTraceParent)
	if len(parent) != 1 || len(parent[0]) > maxTraceParent {
		return ctx
	}
	return TraceContext{Parent: parent[0], State: boundTraceState(headerValues(hdr, headerTraceState))}.Context(ctx)
}

// Context returns ctx carrying c as its remote parent, when c is sound (W3C rules, checked by
// OpenTelemetry's propagator: a stored state is outside input too).
func (c TraceContext) Context(ctx context.Context) context.Context {
	if c.Parent == "" || len(c.Parent) > maxTraceParent || len(c.State) > maxTraceState {
		return ctx
	}
	return propagation.TraceContext{}.Extract(ctx, c)
}

// TraceOf is the trace context of ctx's span: the span's own when tracing is on, else the
// request's, passed on.
func TraceOf(ctx context.Context) TraceContext {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return TraceContext{}
	}
	flags := "00"
	if sc.IsSampled() {
		flags = "01"
	}
	return TraceContext{Parent: "00-" + sc.TraceID().String() + "-" + sc.SpanID().String() + "-" + flags, State: sc.TraceState().String()}
}

// SetOn puts c on hdr, replacing any trace header hdr had, in whatever case.
func (c TraceContext) SetOn(hdr nats.Header) {
	dropTraceHeaders(hdr)
	if c.Parent != "" {
		hdr[headerTraceParent] = []string{c.Parent}
		if c.State != "" {
			hdr[headerTraceState] = []string{c.State}
		}
	}
}

// dropTraceHeaders removes traceparent and tracestate from hdr, in whatever case.
func dropTraceHeaders(hdr nats.Header) {
	for k := range hdr {
		if strings.EqualFold(k, headerTraceParent) || strings.EqualFold(k, headerTraceState) {
			delete(hdr, k)
		}
	}
}

// Get, Set and Keys make a TraceContext a propagation.TextMapCarrier.
func (c TraceContext) Get(key string) string {
	switch key {
	case headerTraceParent:
		return c.Parent
	case headerTraceState:
		return c.State
	}
	return ""
}
func (c TraceContext) Set(string, string) {}
func (c TraceContext) Keys() []string     { return []string{headerTraceParent, headerTraceState} }

// headerValues are hdr's values of key, whose case NATS keeps as the publisher sent it.
func headerValues(hdr nats.Header, key string) []string {
	if vs, ok := hdr[key]; ok {
		return vs
	}
	var out []string
	for k, vs := range hdr {
		if strings.EqualFold(k, key) {
			out = append(out, vs...)
		}
	}
	return out
}

// boundTraceState joins a tracestate's header values and keeps its leading members that fit in
// maxTraceState characters (the W3C lets a vendor drop members from the end).
func boundTraceState(vs []string) string {
	s := strings.Join(vs, ",")
	if len(s) <= maxTraceState {
		return s
	}
	cut := strings.LastIndexByte(s[:maxTraceState+1], ',')
	if cut < 0 {
		return ""
	}
	return strings.TrimRight(s[:cut], " \t,")
}

// StartTracing exports spans when the standard OpenTelemetry variables ask for it:
// OTEL_TRACES_EXPORTER (otlp, console; none), or, when it is unset, an OTLP endpoint
// (OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT); the exporter, its
// protocol and the sampler follow the other OTEL_* variables. Otherwise, or with
// OTEL_SDK_DISABLED=true, tracing is off and the global tracer provider a no-op one. stop
// flushes what is left to export.
func StartTracing(ctx context.Context, log *slog.Logger) (stop func(context.Context) error, err error) {
	off := func(context.Context) error { return nil }
	if strings.EqualFold(os.Getenv("OTEL_SDK_DISABLED"), "true") ||
		(os.Getenv("OTEL_TRACES_EXPORTER") == "" && os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") == "" && os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") == "") {
		otel.SetTracerProvider(noop.NewTracerProvider())
		return off, nil
	}
	exp, err := autoexport.NewSpanExporter(ctx)
	if err != nil {
		return off, fmt.Errorf("tracing: %w", err)
	}
	if autoexport.IsNoneSpanExporter(exp) {
		otel.SetTracerProvider(noop.NewTracerProvider())
		return off, nil
	}
	res, err := Resource(ctx)
	if err != nil {
		log.Warn("tracing: some resource attributes are missing", "err", err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	otel.SetTracerProvider(tp)
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) { log.Warn("tracing", "err", err) }))
	log.Info("tracing on", "exporter", fmt.Sprintf("%T", exp))
	return tp.Shutdown, nil
}

// ServiceName is service.name on the spans' resource, unless OTEL_SERVICE_NAME or
// OTEL_RESOURCE_ATTRIBUTES says otherwise.
const ServiceName = "order-status-consumer"

// Resource describes the process to the tracing backend: service.name and service.version
// (the build's version, as `consumer version` and orders_build_info show it), then what
// OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME say, which win, then the SDK's own. An error
// comes with a resource that lacks only what failed.
func Resource(ctx context.Context) (*resource.Resource, error) {
	return resource.New(ctx, resource.WithAttributes(semconv.ServiceName(ServiceName), semconv.ServiceVersion(buildinfo.Read().Version)),
		resource.WithFromEnv(), resource.WithTelemetrySDK())
}
