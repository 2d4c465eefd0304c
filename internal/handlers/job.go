package handlers

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/paystatus/orderstatus/internal/events"
	"github.com/paystatus/orderstatus/internal/natsinfra"
	"github.com/paystatus/orderstatus/internal/providers"
	"github.com/paystatus/orderstatus/internal/telemetry"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// job is one request on its way through the pipeline. It is the scheduler's Job.
type job struct {
	h         *Handler
	flow      *flow
	msg       jetstream.Msg
	meta      *jetstream.MsgMetadata
	req       events.Request // Provider and Kind are events.Unknown until the subject is read
	p         providers.Provider
	key       string // the rate-limited endpoint
	qps       int
	finished  atomic.Bool     // the message was acked, nacked or terminated
	released  atomic.Bool     // the fetch budget token was given back
	retries   backoff.BackOff // in-process retries, made on the first failure
	refreshed bool            // the provider's credential was replaced once already
	notified  time.Time       // a notification's timestamp, once it claimed a transition
	notice    string          // that notification's order kind (payment, settlement, refund)
	// span is the request's consumer span, child of the request's trace context; with
	// tracing off, a no-op span holding that context.
	span  trace.Span
	ended atomic.Bool // span was ended
}

// The span kinds as tracer.Start takes them, made once: options passed one by one are made
// anew for every span. Read only.
var (
	consumerSpan = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindConsumer)}
	internalSpan = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindInternal)}
)

// newJob starts keeping msg's delivery alive and opens its consumer span.
func (h *Handler) newJob(ctx context.Context, msg jetstream.Msg, meta *jetstream.MsgMetadata, f *flow) *job {
	j := &job{h: h, flow: f, msg: msg, meta: meta}
	j.req.Provider, j.req.Kind = events.Unknown, events.Unknown
	_, j.span = h.tracer.Start(telemetry.ReadTrace(ctx, msg.Headers()), "process "+natsinfra.QueryStream, consumerSpan...)
	if j.span.IsRecording() {
		j.span.SetAttributes(telemetry.MessagingNATS, semconv.MessagingDestinationName(msg.Subject()),
			semconv.MessagingMessageBodySize(len(msg.Data())),
			attribute.Int64("messaging.nats.stream_sequence", int64(meta.Sequence.Stream)), attribute.Int64("messaging.nats.delivered", int64(meta.NumDelivered)))
		j.span.SetAttributes(telemetry.OperationProcess...)
		if h.consumerName != "" {
			j.span.SetAttributes(semconv.MessagingConsumerGroupName(h.consumerName))
		}
		if id := msg.Headers().Get(events.HeaderMsgID); id != "" {
			j.span.SetAttributes(semconv.MessagingMessageID(id))
		}
	}
	h.metrics.InFlight.Inc()
	h.alive.add(j) // the message stays ours while it waits for its limit or a slow provider
	return j
}

// Endpoint is the rate-limited endpoint j's call counts against.
func (j *job) Endpoint() (string, int) { return j.key, j.qps }

// Prepare readies j's call before its rate slot is taken (see providers.Preparer).
func (j *job) Prepare(ctx context.Context) { j.h.prepare(j.traced(ctx), j.p, j.req) }

// Waiting opens the span of j's wait for a rate slot.
func (j *job) Waiting() func(error) {
	_, span := j.h.tracer.Start(j.traced(context.Background()), "ratelimit wait", internalSpan...)
	return func(err error) {
		if err != nil {
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
	}
}

// Parked gives j's fetch budget token back: it waits behind a second of its app's calls.
func (j *job) Parked() { j.releaseBudget() }

// traced returns ctx with j's consumer span in it.
func (j *job) traced(ctx context.Context) context.Context { return trace.ContextWithSpan(ctx, j.span) }

// endSpan ends j's consumer span, once, with the outcome of its request.
func (j *job) endSpan(o outcome) {
	if j.ended.Swap(true) {
		return
	}
	if j.span.IsRecording() {
		j.span.SetAttributes(attribute.String("orders.outcome", o.verdict.String()))
		switch {
		case o.verdict == deadLetter: // the reason, also when an error led to it
			j.span.SetAttributes(semconv.ErrorTypeKey.String(o.reason))
		case o.err != nil:
			j.span.SetAttributes(errorType(o.err))
		}
		if o.err != nil {
			j.span.SetStatus(codes.Error, o.err.Error())
		} else if o.verdict == deadLetter {
			j.span.SetStatus(codes.Error, o.reason)
		}
	}
	j.span.End()
}

// finish ends the job's keep-alive: its message is about to be settled.
func (j *job) finish() {
	if j.finished.Swap(true) {
		return
	}
	j.h.alive.remove(j)
	j.h.metrics.InFlight.Dec()
	j.releaseBudget()
}

// releaseBudget gives the job's fetch budget token back, once.
func (j *job) releaseBudget() {
	if !j.released.Swap(true) {
		j.flow.sched.Release()
	}
}

// errorType is error.type of a failed request or call: the dead-letter reason of a request
// that can never succeed, the class of a provider's failure ("retryable", "rate_limited",
// "token_invalid", "permanent"), or telemetry.ErrorType's guess.
func errorType(err error) attribute.KeyValue {
	var rej *rejection
	if errors.As(err, &rej) {
		return semconv.ErrorTypeKey.String(rej.reason)
	}
	var pe *providers.Error
	if errors.As(err, &pe) {
		return semconv.ErrorTypeKey.String(pe.Class.String())
	}
	return telemetry.ErrorType(err)
}
