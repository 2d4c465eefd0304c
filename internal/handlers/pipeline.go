// Package handlers is the pipeline. What happens to a query request reads top to bottom in
// this file:
//
//   - accept: the subject and payload are read and checked (request.go). A request that can
//     never succeed is settled at once as a dead letter; the rest joins its endpoint's queue in
//     the scheduler (internal/scheduler), where it waits for a call slot and its QPS slot. A
//     provider notification, from the callback consumer, is verified and recorded at once
//     instead (callback.go: no provider call), and settled below like a request.
//   - execute: in its slots, the provider is called (call.go); the answer goes to the order
//     store (internal/orderstate), which claims a change and sends its event; a follow request
//     is scheduled again (follow.go). A failure becomes what to do next through the retry
//     table (retry.go). execute decides; it does not act.
//   - settle: the one place that acts on the outcome: ack (once the event is stored, in the
//     order the events were sent), an in-process retry, a delayed redelivery, a dead letter or
//     a hand-back, with the metrics and logs.
//
// service.go pulls the messages and runs the workers; lookup.go serves the same intake, call,
// retry table and store synchronously.
package handlers

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/trace"

	"github.com/paystatus/orderstatus/internal/dlq"
	"github.com/paystatus/orderstatus/internal/events"
	"github.com/paystatus/orderstatus/internal/orderstate"
	"github.com/paystatus/orderstatus/internal/providers"
	"github.com/paystatus/orderstatus/internal/ratelimit"
	"github.com/paystatus/orderstatus/internal/telemetry"
)

// Store is the order state as the pipeline writes it: *orderstate.Store, or a test's wrapper
// of it that fails on purpose.
type Store interface {
	Claim(ctx context.Context, obs orderstate.Observation) (events.StatusEvent, *orderstate.Claim, error)
	Publish(ctx context.Context, c *orderstate.Claim) (*orderstate.Publication, error)
	Confirm(ctx context.Context, p *orderstate.Publication) error
	Clear(p *orderstate.Publication)
	Republish(ctx context.Context, c *orderstate.Claim) error
	// Observe is Claim, saying also why an observation was ignored (a notification's outcome).
	Observe(ctx context.Context, obs orderstate.Observation) (orderstate.Observed, error)
	// Terminal reports whether the order's recorded status is terminal.
	Terminal(ctx context.Context, provider, kind, appID, orderKey string) bool
}

// Handler processes query requests.
type Handler struct {
	js         jetstream.JetStream
	store      Store
	deadLetter *dlq.Writer
	lim        *ratelimit.Limiter
	subjects   events.Subjects
	providers  map[string]providers.Provider
	ackWait    time.Duration
	maxDeliver int
	// retryBudget bounds a request's in-process retries, well below the ack wait.
	retryBudget time.Duration
	// followDelay and followMaxDelay shape the waits of follow requests.
	followDelay, followMaxDelay time.Duration
	log                         *slog.Logger
	metrics                     *telemetry.Metrics
	alive                       *keepAlive // the deliveries of the requests in flight
	now                         func() time.Time
	tracer                      trace.Tracer
	consumerName                string // the durable consumer's, for the process spans
	seen                        jetstream.KeyValue
}

// Options configure a Handler.
type Options struct {
	JS         jetstream.JetStream
	Store      Store
	DeadLetter *dlq.Writer
	Limiter    *ratelimit.Limiter
	Subjects   events.Subjects
	Providers  []providers.Provider
	AckWait    time.Duration
	MaxDeliver int
	// FollowDelay is the first wait of a follow request, growing threefold up to FollowMaxDelay.
	FollowDelay, FollowMaxDelay time.Duration
	Log                         *slog.Logger
	Metrics                     *telemetry.Metrics
	Tracer                      trace.Tracer
	// ConsumerName is the durable consumer's name (consumer.name), the
	// messaging.consumer.group.name of the process spans.
	ConsumerName string
	// Seen is ORDERS_CALLBACK_SEEN, for a handler of provider notifications (callback.go).
	Seen jetstream.KeyValue
}

// NewHandler builds a Handler.
func NewHandler(o Options) *Handler {
	h := &Handler{
		js: o.JS, store: o.Store, deadLetter: o.DeadLetter, lim: o.Limiter, subjects: o.Subjects,
		providers: map[string]providers.Provider{}, ackWait: o.AckWait, maxDeliver: o.MaxDeliver,
		retryBudget: min(o.AckWait/3, 10*time.Second), followDelay: o.FollowDelay, followMaxDelay: o.FollowMaxDelay,
		log: o.Log, metrics: o.Metrics, alive: newKeepAlive(o.AckWait / 3), now: time.Now, tracer: o.Tracer,
		consumerName: o.ConsumerName, seen: o.Seen,
	}
	for _, p := range o.Providers {
		h.providers[p.Name()] = p
	}
	return h
}

// accept starts a request message on its way. Accepting is quick, so the consumer keeps
// fetching while apps wait for their limits.
func (h *Handler) accept(ctx context.Context, msg jetstream.Msg, f *flow) {
	meta, err := msg.Metadata()
	if err != nil { // not a JetStream message: cannot happen on a consumer
		h.log.Error("message without JetStream metadata", "subject", msg.Subject(), "err", err)
		f.sched.Release()
		return
	}
	if strings.HasPrefix(msg.Subject(), h.subjects.CallbackPrefix()) { // a provider notification
		h.acceptCallback(ctx, msg, meta, f)
		return
	}
	j := h.newJob(ctx, msg, meta, f)
	if err := h.route(msg, meta, j); err != nil {
		h.settle(ctx, j, rejected(err))
		return
	}
	if h.followEnded(ctx, j) { // a notification saw the order end: no call is needed
		h.metrics.FollowsEnded.WithLabelValues(j.req.Provider, j.req.Kind).Inc()
		h.settle(ctx, j, outcome{verdict: ack})
		return
	}
	j.key, j.qps = j.p.RateLimit(queryOf(j.req))
	h.enqueue(j)
}

// execute makes one call for j, in its slots, and says what should become of the request. It
// changes nothing but the order's state and the events. The call slot is given back once the
// provider has answered. The event it sends is not waited for here: the outcome carries it,
// for settle to confirm before the ack.
func (h *Handler) execute(ctx context.Context, j *job, slot *callSlot) outcome {
	ctx = j.traced(ctx)
	res, sent, err := h.query(ctx, j.p, j.req, j.key)
	slot.end()
	if err != nil {
		return decide(h.failure(ctx, j, err, false))
	}
	pub, err := h.record(ctx, j, orderstate.Observation{Request: j.req, Result: res, Sent: sent})
	if err != nil {
		return decide(h.failure(ctx, j, err, true))
	}
	return outcome{verdict: ack, changed: pub != nil, pub: pub}
}

// record gives the answer to the store and, for a follow request, schedules the next round. A
// write that fails is tried again with the answer in hand, for up to retryBudget: provider
// calls are the scarce resource, so a failed write never costs a second call in this delivery.
func (h *Handler) record(ctx context.Context, j *job, obs orderstate.Observation) (pub *orderstate.Publication, err error) {
	err = backoff.Retry(func() error {
		var err error
		if pub == nil { // a claim already made is not made again: its event is on its way
			var c *orderstate.Claim
			// A claim whose publish fails stays pending: the next try's Claim publishes it
			// first, and so do the order's next reader and the sweep.
			if _, c, err = h.store.Claim(ctx, obs); err == nil && c != nil {
				pub, err = h.store.Publish(ctx, c)
			}
		}
		if err == nil && j.req.Follow && !obs.Result.Status.Terminal() {
			err = h.scheduleFollow(ctx, j)
		}
		if err != nil {
			h.metrics.WriteRetries.Inc()
		}
		return err
	}, h.writeRetries(ctx))
	if err != nil && pub != nil { // the follow failed: the event is settled here, the request redelivered
		if h.store.Confirm(ctx, pub) == nil {
			h.store.Clear(pub)
		}
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

// failure gathers what the retry table needs to know about j's failed attempt.
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
func (h *Handler) settle(ctx context.Context, j *job, o outcome) {
	r := j.req
	if o.verdict != requeue && o.verdict != retryAfter && o.pub == nil {
		defer j.endSpan(o)
	}
	if o.slowdown {
		if err := h.lim.Slowdown(j.traced(ctx), j.key, providers.RetryAfter(o.err)); err != nil {
			h.log.Warn("could not slow the app down", "key", j.key, "err", err)
		}
	}
	switch o.verdict {
	case ack:
		if o.pub != nil { // settled once its event is stored (confirm)
			j.flow.confirmLater(j, o)
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
		h.metrics.Requests.WithLabelValues(r.Provider, r.Kind, result).Inc()
	case requeue: // the credential is replaced already: go again at once
		j.refreshed = true
		h.enqueue(j)
	case retryAfter:
		h.metrics.Retries.WithLabelValues(r.Provider, r.Kind).Inc()
		h.log.Debug("query failed; retrying", "key", j.key, "order_no", r.OrderNo, "retry_in", o.delay.String(), "err", o.err)
		if j.flow.sched.EnqueueAfter(j, o.delay) != nil {
			h.settle(ctx, j, outcome{verdict: handBack, err: o.err})
		}
	case redeliver:
		j.finish()
		h.metrics.Requests.WithLabelValues(r.Provider, r.Kind, "redelivery").Inc()
		h.log.Warn("query failed; will retry", "subject", j.msg.Subject(), "app_id", r.AppID, "order_no", r.OrderNo,
			"delivered", j.meta.NumDelivered, "retry_in", o.delay.Round(time.Millisecond).String(), "err", o.err)
		_ = j.msg.NakWithDelay(o.delay)
	case deadLetter:
		j.finish()
		provider, kind := h.deadLetterTokens(j)
		if err := h.deadLetter.Store(j.traced(ctx), j.msg, j.meta, provider, kind, o.reason, o.text); err != nil {
			h.log.Error("dead letter not stored; will retry", "reason", o.reason, "subject", j.msg.Subject(), "err", err)
			_ = j.msg.NakWithDelay(redeliveryDelay(j.meta.NumDelivered, 0))
			return
		}
		h.metrics.Requests.WithLabelValues(r.Provider, r.Kind, "dead_letter").Inc()
	case handBack:
		j.finish()
		h.metrics.Requests.WithLabelValues(r.Provider, r.Kind, "handed_back").Inc()
		_ = j.msg.NakWithDelay(handBackDelay)
	}
}

// deadLetterTokens are the provider and kind of j's dead-letter subject: its request's, or,
// where a token of the subject names no configured provider or kind (Unknown in the request),
// the subject's own token when it is readable (events.ReadableToken). The request keeps
// Unknown for metrics and spans: a subject's tokens are anyone's, and label values must stay
// few.
func (h *Handler) deadLetterTokens(j *job) (provider, kind string) {
	provider, kind = j.req.Provider, j.req.Kind
	var named, namedKind string
	if name, ok := strings.CutPrefix(j.msg.Subject(), h.subjects.CallbackPrefix()); ok {
		named = name
	} else {
		named, namedKind, _ = h.subjects.ParseQuery(j.msg.Subject())
	}
	if provider == events.Unknown && events.ReadableToken(named) {
		provider = named
	}
	if kind == events.Unknown && events.ReadableToken(namedKind) {
		kind = namedKind
	}
	return provider, kind
}

// enqueue puts j in its endpoint's queue; a scheduler that stopped taking requests has it
// handed back.
func (h *Handler) enqueue(j *job) {
	if j.flow.sched.Enqueue(j) != nil {
		h.settle(context.Background(), j, outcome{verdict: handBack})
	}
}

// confirm finishes j, whose request claimed a transition and sent its event (o.pub): once
// the server has stored the event, its mark is cleared and the request acknowledged. It runs
// on the flow's one confirming goroutine, in the order the events were sent, and never blocks
// it for longer than the server takes to answer: an event not stored is published again on a
// goroutine of its own.
func (h *Handler) confirm(ctx context.Context, j *job, o outcome) {
	if err := h.store.Confirm(j.traced(ctx), o.pub); err != nil {
		h.metrics.WriteRetries.Inc()
		failed := o // the goroutine's copy: o itself stays on the stack
		j.flow.aside(func() { h.republish(ctx, j, failed) })
		return
	}
	h.store.Clear(o.pub)
	o.pub = nil
	if !j.notified.IsZero() {
		h.metrics.NotificationLatency.WithLabelValues(j.req.Provider, j.notice).Observe(time.Since(j.notified).Seconds())
	}
	h.settle(ctx, j, o)
}

// republish publishes o.pub's event again with the answer in hand, as record does, and
// settles j by how that went.
func (h *Handler) republish(ctx context.Context, j *job, o outcome) {
	c := o.pub.Claim()
	err := backoff.Retry(func() error {
		err := h.store.Republish(j.traced(ctx), c)
		if err != nil {
			h.metrics.WriteRetries.Inc()
		}
		return err
	}, h.writeRetries(ctx))
	o.pub = nil
	if err != nil {
		o = decide(h.failure(ctx, j, err, true))
	}
	h.settle(ctx, j, o)
}
