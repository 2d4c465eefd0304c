// Package handlers is the pipeline. What happens to a query request reads top to bottom in
// this file, in three steps:
//
//   - accept: the subject and payload are read and checked (request.go); a request that can
//     never succeed is dead-lettered (deadletter.go); the rest joins its endpoint's queue,
//     where it waits for its QPS slot (scheduler.go).
//   - execute: in its slot, the provider is called; an answer is compared with the order's
//     last-known status, and a change is recorded and published as an event (state.go); a
//     follow request is scheduled again (follow.go). A failure is turned into what to do next
//     by the retry policy (retry.go). execute decides; it does not act.
//   - settle: the one place that acts on the outcome: ack, an in-process retry, a delayed
//     redelivery, a dead letter or a hand-back, with the keep-alive, metrics and logs.
//
// The lookup service (lookup.go) takes the same intake, call, retry policy and state.
package handlers

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/paystatus/orderstatus/internal/events"
	"github.com/paystatus/orderstatus/internal/providers"
	"github.com/paystatus/orderstatus/internal/ratelimit"
)

// Handler processes query requests.
type Handler struct {
	js         jetstream.JetStream
	state      jetstream.KeyValue
	lim        *ratelimit.Limiter
	subjects   events.Subjects
	providers  map[string]providers.Provider
	encoding   events.Encoding
	ackWait    time.Duration
	maxDeliver int
	// retryBudget bounds a request's in-process retries, well below the ack wait.
	retryBudget time.Duration
	// followDelay and followMaxDelay shape the waits of follow requests.
	followDelay, followMaxDelay time.Duration
	// sweepDelay is how old a pending mark is when the sweep publishes its event (sweep.go).
	sweepDelay time.Duration
	// id names this replica as the sweep's holder; sw is the sweep's state while it holds it
	// (only the sweep's goroutine touches it).
	id      string
	sw      sweeper
	log     *slog.Logger
	metrics *Metrics
	seen    *seenKeys
	alive   *keepAlive                       // the deliveries of the requests in flight
	stream  atomic.Pointer[jetstream.Stream] // ORDERS_STATE's stream, once looked up (stateStream)
	// trips count the JetStream round trips waited for, by op (Metrics.RoundTrips).
	trips  struct{ read, claim, event, clear prometheus.Counter }
	now    func() time.Time
	tracer trace.Tracer

	// failAfter, in tests only, fails the named step once it is done, as a crash there would.
	failAfter func(step string) error
}

// Options configure a Handler.
type Options struct {
	JS         jetstream.JetStream
	State      jetstream.KeyValue
	Limiter    *ratelimit.Limiter
	Subjects   events.Subjects
	Providers  []providers.Provider
	Encoding   events.Encoding
	AckWait    time.Duration
	MaxDeliver int
	// FollowDelay is the first wait of a follow request, growing threefold up to FollowMaxDelay.
	FollowDelay, FollowMaxDelay time.Duration
	// SweepDelay is how old a pending mark is when the sweep publishes its event; 0 means 10 s.
	SweepDelay time.Duration
	Log        *slog.Logger
	// Metrics receive the pipeline's measurements; nil makes a set of its own.
	Metrics *Metrics
	// TracerProvider makes the pipeline's spans; nil means OpenTelemetry's global one.
	TracerProvider trace.TracerProvider
}

// NewHandler builds a Handler.
func NewHandler(o Options) *Handler {
	h := &Handler{
		js: o.JS, state: o.State, lim: o.Limiter, subjects: o.Subjects, providers: map[string]providers.Provider{},
		encoding: o.Encoding, ackWait: o.AckWait, maxDeliver: o.MaxDeliver, log: o.Log, now: time.Now,
		retryBudget: min(o.AckWait/3, 10*time.Second),
		followDelay: o.FollowDelay, followMaxDelay: o.FollowMaxDelay, metrics: o.Metrics,
		seen: newSeenKeys(50000), alive: newKeepAlive(o.AckWait / 3), sweepDelay: o.SweepDelay, id: nuid.Next(),
	}
	if h.sweepDelay <= 0 {
		h.sweepDelay = 10 * time.Second
	}
	if h.metrics == nil {
		h.metrics = NewMetrics(prometheus.NewRegistry())
	}
	h.trips.read, h.trips.claim = h.metrics.RoundTrips.WithLabelValues("state_read"), h.metrics.RoundTrips.WithLabelValues("claim")
	h.trips.event, h.trips.clear = h.metrics.RoundTrips.WithLabelValues("event"), h.metrics.RoundTrips.WithLabelValues("clear")
	for _, p := range o.Providers {
		h.providers[p.Name()] = p
	}
	tp := o.TracerProvider
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	h.tracer = tp.Tracer(tracerName)
	return h
}

// job is one request on its way through the pipeline.
type job struct {
	msg       jetstream.Msg
	meta      *jetstream.MsgMetadata
	req       events.Request // Provider and Kind are events.Unknown until the subject is read
	p         providers.Provider
	key       string // the rate-limited endpoint
	qps       int
	alive     *keepAlive
	finished  atomic.Bool // the message was acked, nacked or terminated
	inFlight  prometheus.Gauge
	budget    func()          // gives the scheduler's fetch budget token back
	released  atomic.Bool     // budget was called
	retries   backoff.BackOff // in-process retries, made on the first failure
	refreshed bool            // the provider's credential was replaced once already
	// span is the request's consumer span, child of the request's trace context; with
	// tracing off, a no-op span holding that context (see tracing.go).
	span  trace.Span
	ended atomic.Bool // span was ended
}

// traced returns ctx with j's consumer span in it.
func (j *job) traced(ctx context.Context) context.Context {
	return trace.ContextWithSpan(ctx, j.span)
}

// endSpan ends j's consumer span, once, with the outcome of its request.
func (j *job) endSpan(o outcome) {
	if j.ended.Swap(true) {
		return
	}
	if j.span.IsRecording() {
		j.span.SetAttributes(attribute.String("orders.outcome", o.verdict.String()))
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
	j.alive.remove(j)
	j.inFlight.Dec()
	j.releaseBudget()
}

// releaseBudget gives the job's fetch budget token back, once.
func (j *job) releaseBudget() {
	if j.budget != nil && !j.released.Swap(true) {
		j.budget()
	}
}

// accept starts a request message on its way. Accepting is quick, so the consumer keeps
// fetching while apps wait for their limits.
func (h *Handler) accept(ctx context.Context, msg jetstream.Msg, sched *scheduler) {
	meta, err := msg.Metadata()
	if err != nil { // not a JetStream message: cannot happen on a consumer
		h.log.Error("message without JetStream metadata", "subject", msg.Subject(), "err", err)
		sched.release()
		return
	}
	j := &job{msg: msg, meta: meta, inFlight: h.metrics.InFlight, budget: sched.release}
	_, j.span = h.startSpan(readTrace(ctx, msg.Headers()), "process "+QueryStream, trace.SpanKindConsumer)
	if j.span.IsRecording() {
		j.span.SetAttributes(attribute.String("messaging.system", "nats"), attribute.String("messaging.destination.name", msg.Subject()),
			attribute.Int64("messaging.nats.stream_sequence", int64(meta.Sequence.Stream)), attribute.Int64("messaging.nats.delivered", int64(meta.NumDelivered)))
	}
	j.inFlight.Inc()
	// Keep the message ours while it waits for its limit or a slow provider.
	j.alive = h.alive
	j.alive.add(j)
	j.req.Provider, j.req.Kind = events.Unknown, events.Unknown
	if key, ok := h.sweepKey(msg.Headers()); ok { // an event check: no provider call
		if p, k, ok := h.subjects.ParseQuery(msg.Subject()); ok {
			j.req.Provider, j.req.Kind = p, k
		}
		h.settle(ctx, j, h.sweep(ctx, key), sched)
		return
	}
	if err := h.route(msg, meta, j); err != nil {
		h.settle(ctx, j, rejected(err), sched)
		return
	}
	j.key, j.qps = j.p.RateLimit(queryOf(j.req))
	sched.enqueue(j)
}

// execute makes one call for j, in its rate slot, and says what should become of the
// request. It changes nothing but the order's state and the events. An event it sends is not
// waited for here: the outcome carries it, for settle to confirm before the ack.
func (h *Handler) execute(ctx context.Context, j *job) outcome {
	ctx = j.traced(ctx)
	res, sent, err := h.query(ctx, j.p, j.req, j.key)
	if err != nil {
		return decide(h.failure(ctx, j, err, false))
	}
	pub, err := h.keep(ctx, j, res, sent)
	if err != nil {
		return decide(h.failure(ctx, j, err, true))
	}
	return outcome{verdict: ack, changed: pub != nil, pub: pub}
}

// keep records the answer and, for a follow request, schedules the next round. A write that
// fails is tried again with the answer in hand, for up to retryBudget: provider calls are the
// scarce resource, so a failed write never costs a second call in this delivery.
func (h *Handler) keep(ctx context.Context, j *job, res providers.Result, sent time.Time) (pub *publication, err error) {
	err = backoff.Retry(func() error {
		var err error
		if pub == nil { // a claim already made is not made again: its event is on its way
			_, pub, err = h.record(ctx, j.req, res, sent)
		}
		if err == nil && j.req.Follow && !res.Status.Terminal() {
			err = h.scheduleFollow(ctx, j)
		}
		if err != nil {
			h.metrics.WriteRetries.Inc()
		}
		return err
	}, h.writeRetries(ctx))
	if err != nil && pub != nil { // the follow failed: the event is settled here, the request redelivered
		_ = h.confirm(ctx, pub)
		pub = nil
	}
	return pub, err
}

// writeRetries paces the tries of a write made again with the provider's answer in hand:
// 100 ms doubling to 1 s, for up to retryBudget.
func (h *Handler) writeRetries(ctx context.Context) backoff.BackOff {
	return backoff.WithContext(backoff.NewExponentialBackOff(backoff.WithInitialInterval(100*time.Millisecond),
		backoff.WithMaxInterval(time.Second), backoff.WithMaxElapsedTime(h.retryBudget)), ctx)
}

// confirmed finishes j, whose request claimed a transition and sent its event (o.pub): once
// the server has stored the event, the request is acknowledged. It runs on the scheduler's
// one confirming goroutine, in the order the events were sent, and never blocks it for
// longer than the server takes to answer: an event not stored is published again on a
// goroutine of its own (republish).
func (h *Handler) confirmed(ctx context.Context, j *job, o outcome, sched *scheduler) {
	if err := h.confirm(j.traced(ctx), o.pub); err != nil {
		h.metrics.WriteRetries.Inc()
		sched.aside(func() { h.republish(ctx, j, o, sched) })
		return
	}
	o.pub = nil
	h.settle(ctx, j, o, sched)
}

// republish publishes o.pub's event again with the answer in hand, as keep does, and settles
// j by how that went.
func (h *Handler) republish(ctx context.Context, j *job, o outcome, sched *scheduler) {
	p := o.pub
	err := backoff.Retry(func() error {
		_, err := h.publishPending(j.traced(ctx), p.key, p.st, p.rev)
		if errors.Is(err, errConflict) {
			return nil // the order moved on, after its reader published this event
		}
		if err != nil {
			h.metrics.WriteRetries.Inc()
		}
		return err
	}, h.writeRetries(ctx))
	o.pub = nil
	if err != nil {
		o = decide(h.failure(ctx, j, err, true))
	}
	h.settle(ctx, j, o, sched)
}

// failure gathers what the retry policy needs to know about j's failed attempt.
func (h *Handler) failure(ctx context.Context, j *job, err error, recording bool) failure {
	f := failure{err: err, recording: recording, stopping: ctx.Err() != nil, refreshed: j.refreshed,
		class: providers.Classify(err), atLeast: providers.RetryAfter(err), next: backoff.Stop,
		delivered: j.meta.NumDelivered, maxDeliver: uint64(h.maxDeliver)}
	errors.As(err, &f.rejected)
	if !recording && f.rejected == nil && !f.stopping {
		if j.retries == nil {
			j.retries = h.newRetries()
		}
		f.next = j.retries.NextBackOff()
	}
	return f
}

// settle acts on the outcome of j's latest step: it is the only place that acks, retries,
// naks or dead-letters a request.
func (h *Handler) settle(ctx context.Context, j *job, o outcome, sched *scheduler) {
	r := j.req
	ctx = j.traced(ctx)
	if o.verdict != requeue && o.verdict != retryAfter && o.pub == nil {
		defer j.endSpan(o)
	}
	if o.slowdown {
		if err := h.lim.Slowdown(ctx, j.key); err != nil {
			h.log.Warn("could not slow the app down", "key", j.key, "err", err)
		}
	}
	switch o.verdict {
	case ack:
		if o.pub != nil { // settled once its event is stored
			sched.confirmLater(j, o)
			return
		}
		j.finish()
		if err := j.msg.Ack(); err != nil {
			h.log.Warn("ack failed; the request will be redelivered and find nothing new", "err", err)
		}
		result := "unchanged"
		if o.changed {
			result = "event"
		}
		if !o.check { // checks are counted by orders_events_swept_total, not as requests
			h.metrics.Requests.WithLabelValues(r.Provider, r.Kind, result).Inc()
		}
	case requeue: // the credential is replaced already: go again at once
		j.refreshed = true
		sched.enqueue(j)
	case retryAfter:
		h.metrics.Retries.WithLabelValues(r.Provider, r.Kind).Inc()
		h.log.Debug("query failed; retrying", "key", j.key, "order_no", r.OrderNo, "retry_in", o.delay.String(), "err", o.err)
		sched.retryLater(j, o.delay)
	case redeliver:
		j.finish()
		h.metrics.Requests.WithLabelValues(r.Provider, r.Kind, "redelivery").Inc()
		h.log.Warn("query failed; will retry", "subject", j.msg.Subject(), "app_id", r.AppID, "order_no", r.OrderNo,
			"delivered", j.meta.NumDelivered, "retry_in", o.delay.Round(time.Millisecond).String(), "err", o.err)
		_ = j.msg.NakWithDelay(o.delay)
	case deadLetter:
		j.finish()
		if err := h.deadLetter(ctx, j, o.reason, o.text); err != nil {
			h.log.Error("dead letter not stored; will retry", "reason", o.reason, "subject", j.msg.Subject(), "err", err)
			_ = j.msg.NakWithDelay(redeliveryDelay(j.meta.NumDelivered, 0))
		}
	case handBack:
		j.finish()
		h.metrics.Requests.WithLabelValues(r.Provider, r.Kind, "handed_back").Inc()
		_ = j.msg.NakWithDelay(handBackDelay)
	}
}

func (h *Handler) step(name string) error {
	if h.failAfter == nil {
		return nil
	}
	return h.failAfter(name)
}
