// Package handlers is the pipeline: a query request's whole path, from the JetStream message to
// the status event, the dead letter or the retry, reads top to bottom in Handle.
package handlers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/paystatus/orderstatus/internal/events"
	"github.com/paystatus/orderstatus/internal/providers"
)

// Handler processes query requests.
type Handler struct {
	js         jetstream.JetStream
	state      jetstream.KeyValue
	subjects   events.Subjects
	providers  map[string]providers.Provider
	encoding   events.Encoding
	ackWait    time.Duration
	maxDeliver int
	// retryBudget bounds a request's in-process retries, well below the ack wait.
	retryBudget time.Duration
	// followDelay and followMaxDelay shape the waits of follow requests.
	followDelay, followMaxDelay time.Duration
	log                         *slog.Logger
	metrics                     *Metrics
	seen                        *seenKeys
	now                         func() time.Time

	// failAfter, in tests only, fails the named step once it is done, as a crash there would.
	failAfter func(step string) error
}

// Options configure a Handler.
type Options struct {
	JS         jetstream.JetStream
	State      jetstream.KeyValue
	Subjects   events.Subjects
	Providers  []providers.Provider
	Encoding   events.Encoding
	AckWait    time.Duration
	MaxDeliver int
	// FollowDelay is the first wait of a follow request, growing threefold up to FollowMaxDelay.
	FollowDelay, FollowMaxDelay time.Duration
	Log                         *slog.Logger
	// Metrics receive the pipeline's measurements; nil makes a set of its own.
	Metrics *Metrics
}

// NewHandler builds a Handler.
func NewHandler(o Options) *Handler {
	h := &Handler{
		js: o.JS, state: o.State, subjects: o.Subjects, providers: map[string]providers.Provider{},
		encoding: o.Encoding, ackWait: o.AckWait, maxDeliver: o.MaxDeliver, log: o.Log, now: time.Now,
		retryBudget: min(o.AckWait/3, 10*time.Second),
		followDelay: o.FollowDelay, followMaxDelay: o.FollowMaxDelay, metrics: o.Metrics,
		seen: newSeenKeys(50000),
	}
	if h.metrics == nil {
		h.metrics = NewMetrics(prometheus.NewRegistry())
	}
	for _, p := range o.Providers {
		h.providers[p.Name()] = p
	}
	return h
}

// rejection is a request that can never succeed: it goes to the dead-letter subject.
type rejection struct {
	reason string
	text   string
}

func (r *rejection) Error() string { return r.reason + ": " + r.text }

func reject(reason, format string, args ...any) error {
	return &rejection{reason: reason, text: fmt.Sprintf(format, args...)}
}

// job is one request on its way through the pipeline.
type job struct {
	msg       jetstream.Msg
	meta      *jetstream.MsgMetadata
	req       events.Request
	p         providers.Provider
	key       string // the rate-limited endpoint
	qps       int
	keepAlive *time.Timer
	finished  atomic.Bool // the message was acked, nacked or terminated
	inFlight  prometheus.Gauge
	budget    func()          // gives the scheduler's fetch budget token back
	released  atomic.Bool     // budget was called
	retries   backoff.BackOff // in-process retries, made on the first failure
	refreshed bool            // the provider's credential was replaced once already
}

// finish ends the job's keep-alive: its message is about to be settled.
func (j *job) finish() {
	if j.finished.Swap(true) {
		return
	}
	j.keepAlive.Stop()
	j.inFlight.Dec()
	j.releaseBudget()
}

// releaseBudget gives the job's fetch budget token back, once.
func (j *job) releaseBudget() {
	if j.budget != nil && !j.released.Swap(true) {
		j.budget()
	}
}

// accept starts a request message on its way: the subject and payload are read and checked
// (a request that can never succeed is dead-lettered here), and the request is queued for its
// provider endpoint. Accepting is quick, so the consumer keeps fetching while apps wait for
// their limits.
func (h *Handler) accept(ctx context.Context, msg jetstream.Msg, sched *scheduler) {
	meta, err := msg.Metadata()
	if err != nil { // not a JetStream message: cannot happen on a consumer
		h.log.Error("message without JetStream metadata", "subject", msg.Subject(), "err", err)
		sched.release()
		return
	}
	j := &job{msg: msg, meta: meta, inFlight: h.metrics.InFlight, budget: sched.release}
	j.inFlight.Inc()
	// Keep the message ours while it waits for its limit or a slow provider.
	j.keepAlive = time.AfterFunc(h.ackWait/3, func() {
		if j.finished.Load() {
			return // a Stop raced with this run: do not arm again
		}
		_ = msg.InProgress()
		j.keepAlive.Reset(h.ackWait / 3)
	})
	provider, kind := events.Unknown, events.Unknown
	j.req, j.p, err = h.route(msg, &provider, &kind)
	if err != nil {
		var rej *rejection
		errors.As(err, &rej)
		h.deadLetter(ctx, j, provider, kind, rej.reason, rej.text)
		return
	}
	j.key, j.qps = j.p.RateLimit(queryOf(j.req))
	sched.enqueue(j)
}

// execute makes one call for j, in its rate slot, and takes the request to its end: an event
// (or none, when nothing changed) and an ack; a dead letter; an in-process retry; or a delayed
// redelivery once in-process retries are spent.
func (h *Handler) execute(ctx context.Context, j *job, sched *scheduler) {
	res, err := h.query(ctx, j.p, j.req, j.key)
	var rej *rejection
	switch {
	case errors.As(err, &rej):
		h.deadLetter(ctx, j, j.req.Provider, j.req.Kind, rej.reason, rej.text)
		return
	case err != nil && ctx.Err() != nil:
		h.handBack(j)
		return
	case err != nil:
		switch providers.Classify(err) {
		case providers.TokenInvalid:
			if !j.refreshed { // the credential is replaced already: go again at once
				j.refreshed = true
				sched.enqueue(j)
				return
			}
		case providers.RateLimited:
			if serr := sched.lim.Slowdown(ctx, j.key); serr != nil {
				h.log.Warn("could not slow the app down", "key", j.key, "err", serr)
			}
		}
		if j.retries == nil {
			j.retries = h.newRetries()
		}
		if d := j.retries.NextBackOff(); d != backoff.Stop {
			d = max(d, providers.RetryAfter(err))
			h.metrics.Retries.WithLabelValues(j.req.Provider, j.req.Kind).Inc()
			h.log.Debug("query failed; retrying", "key", j.key, "order_no", j.req.OrderNo, "retry_in", d.String(), "err", err)
			sched.retryLater(j, d)
			return
		}
		h.giveUp(ctx, j, err)
		return
	}
	_, changed, err := h.record(ctx, j.req, res)
	if err == nil && j.req.Follow && !res.Status.Terminal() {
		err = h.scheduleFollow(ctx, j)
	}
	if err != nil {
		if ctx.Err() != nil {
			h.handBack(j)
		} else {
			h.giveUp(ctx, j, err)
		}
		return
	}
	j.finish()
	if err := j.msg.Ack(); err != nil {
		h.log.Warn("ack failed; the request will be redelivered and find nothing new", "err", err)
	}
	outcome := "unchanged"
	if changed {
		outcome = "event"
	}
	h.metrics.Requests.WithLabelValues(j.req.Provider, j.req.Kind, outcome).Inc()
}

// scheduleFollow asks JetStream to deliver the request again later, as a message schedule in
// ORDERS_QUERY: the follow-up lives in the stream, not in this process, so it survives
// restarts, and it takes no ack-pending slot while it waits. Waits grow threefold from
// follow_delay up to follow_max_delay; the last one ends by follow_until (default: 24 h after
// the first request).
func (h *Handler) scheduleFollow(ctx context.Context, j *job) error {
	hdr := j.msg.Headers()
	round, until := h.followState(j)
	delay := h.followDelay
	for range min(round, maxFollowRounds) {
		delay = min(delay*3, h.followMaxDelay)
	}
	at := h.now().Add(delay).Truncate(time.Second).Add(time.Second) // schedules count whole seconds
	if at.After(until) {
		h.log.Info("follow ended: follow_until passed", "app_id", j.req.AppID, "order_no", j.req.OrderNo, "rounds", round)
		return nil
	}
	m := &nats.Msg{
		Subject: h.subjects.Follow(j.req.Provider, j.req.Kind, strconv.FormatUint(j.meta.Sequence.Stream, 10)),
		Data:    j.msg.Data(),
		Header: nats.Header{
			"Nats-Schedule":          {"@at " + at.UTC().Format(time.RFC3339)},
			"Nats-Schedule-Target":   {j.msg.Subject()},
			events.HeaderMsgID:       {"follow-" + strconv.FormatUint(j.meta.Sequence.Stream, 10)},
			events.HeaderFollowRound: {strconv.Itoa(round + 1)},
			events.HeaderFollowUntil: {until.UTC().Format(time.RFC3339)},
			events.HeaderRequestID:   {j.req.RequestID},
			events.HeaderContentType: hdr.Values(events.HeaderContentType),
		},
	}
	if len(m.Header[events.HeaderContentType]) == 0 {
		delete(m.Header, events.HeaderContentType)
	}
	if _, err := h.js.PublishMsg(ctx, m); err != nil {
		return fmt.Errorf("schedule follow-up: %w", err)
	}
	h.log.Debug("follow-up scheduled", "app_id", j.req.AppID, "order_no", j.req.OrderNo, "at", at.UTC().Format(time.RFC3339), "round", round+1)
	return nil
}

// maxFollowRounds bounds the round a follow-up counts, whatever its header says: by then
// the wait has long reached follow_max_delay.
const maxFollowRounds = 64

// scheduled reports whether msg is a follow-up this service scheduled: the server marks a
// message its scheduler fired with Nats-Scheduler, naming the schedule's subject. Only then
// are the Orders-* headers on a request the service's own; a publisher's are ignored. A
// publisher can forge the mark too (the server accepts it alongside a schedule purge), so
// what those headers may say is bounded as well (followState).
func (h *Handler) scheduled(msg jetstream.Msg) bool {
	return strings.HasPrefix(msg.Headers().Get("Nats-Scheduler"), h.subjects.FollowPrefix())
}

// followState is the round and deadline of a follow request: from the service's own headers
// on a follow-up, else the first round. The deadline is the request's follow_until, or 24 h
// after the request, and never more than 30 days from now.
func (h *Handler) followState(j *job) (round int, until time.Time) {
	hdr := j.msg.Headers()
	trusted := h.scheduled(j.msg)
	if trusted {
		if n, err := strconv.Atoi(hdr.Get(events.HeaderFollowRound)); err == nil && n > 0 {
			round = min(n, maxFollowRounds)
		}
	}
	until = j.req.FollowUntil
	if until.IsZero() {
		until = j.meta.Timestamp.Add(24 * time.Hour)
		if t, err := time.Parse(time.RFC3339, hdr.Get(events.HeaderFollowUntil)); err == nil && trusted {
			until = t
		}
	}
	if latest := h.now().Add(events.MaxFollow); until.After(latest) {
		until = latest
	}
	return round, until
}

// newRetries is the in-process retry schedule of one request: jittered, doubling from 200 ms
// to 2 s, for at most retryBudget.
func (h *Handler) newRetries() *backoff.ExponentialBackOff {
	return backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(200*time.Millisecond), backoff.WithMultiplier(2),
		backoff.WithRandomizationFactor(0.5), backoff.WithMaxInterval(2*time.Second),
		backoff.WithMaxElapsedTime(h.retryBudget))
}

// giveUp ends this delivery of a request that keeps failing: redelivered later with a
// growing delay, freeing the worker, or dead-lettered on the last allowed delivery.
func (h *Handler) giveUp(ctx context.Context, j *job, err error) {
	if j.meta.NumDelivered >= uint64(h.maxDeliver) {
		h.deadLetter(ctx, j, j.req.Provider, j.req.Kind, events.ReasonRetriesExhausted,
			fmt.Sprintf("gave up after %d deliveries: %v", j.meta.NumDelivered, err))
		return
	}
	j.finish()
	h.metrics.Requests.WithLabelValues(j.req.Provider, j.req.Kind, "redelivery").Inc()
	delay := redeliveryDelay(j.meta.NumDelivered, providers.RetryAfter(err))
	h.log.Warn("query failed; will retry", "subject", j.msg.Subject(), "app_id", j.req.AppID, "order_no", j.req.OrderNo,
		"delivered", j.meta.NumDelivered, "retry_in", delay.Round(time.Millisecond).String(), "err", err)
	_ = j.msg.NakWithDelay(delay)
}

// handBack returns a request JetStream delivered to this process but that it will not finish
// (it is shutting down), for another replica to take soon.
func (h *Handler) handBack(j *job) {
	j.finish()
	h.metrics.Requests.WithLabelValues(j.req.Provider, j.req.Kind, "handed_back").Inc()
	_ = j.msg.NakWithDelay(handBackDelay)
}

// handBackDelay is short: the request is fine, only this process is going away.
const handBackDelay = 250 * time.Millisecond

// route reads provider and kind from the subject and the request from the payload, and checks
// both against the configuration.
func (h *Handler) route(msg jetstream.Msg, provider, kind *string) (events.Request, providers.Provider, error) {
	var req events.Request
	pName, kName, ok := h.subjects.ParseQuery(msg.Subject())
	if !ok {
		return req, nil, reject(events.ReasonUnknownProvider, "subject %q is not %s.query.<provider>.<kind>", msg.Subject(), h.subjects.Prefix)
	}
	p := h.providers[pName]
	if p == nil {
		return req, nil, reject(events.ReasonUnknownProvider, "no provider %q is configured (known: %s)", pName, h.providerNames())
	}
	*provider = pName
	if !p.SupportsKind(kName) {
		return req, nil, reject(events.ReasonUnknownKind, "provider %s has no query kind %q", pName, kName)
	}
	*kind = kName
	req, err := events.DecodeRequest(msg.Headers().Get(events.HeaderContentType), msg.Data())
	if err != nil {
		var pe *events.PayloadError
		errors.As(err, &pe)
		return req, nil, reject(pe.Reason, "%s", pe.Error())
	}
	req.Provider, req.Kind = pName, kName
	if err := checkRequest(p, req); err != nil {
		return req, nil, err
	}
	if meta, err := msg.Metadata(); err == nil && req.FollowUntil.After(meta.Timestamp.Add(events.MaxFollow)) {
		return req, nil, reject(events.ReasonInvalidField, "follow_until: %s is more than %s after the request",
			events.FormatTime(req.FollowUntil), events.MaxFollow)
	}
	if req.RequestID == "" && h.scheduled(msg) { // a follow-up keeps the id of the request it follows
		req.RequestID = msg.Headers().Get(events.HeaderRequestID)
	}
	if req.RequestID == "" {
		req.RequestID = msg.Headers().Get(events.HeaderMsgID)
	}
	if req.RequestID == "" {
		req.RequestID = nuid.Next()
	}
	return req, p, nil
}

// checkRequest checks a decoded request against the provider: its app and its fields.
func checkRequest(p providers.Provider, req events.Request) error {
	if !p.HasApp(req.AppID) {
		return reject(events.ReasonUnknownApp, "app_id %q is not configured for %s", req.AppID, p.Name())
	}
	if err := p.Validate(queryOf(req)); err != nil {
		var pe *events.PayloadError
		if errors.As(err, &pe) {
			return reject(pe.Reason, "%s", pe.Error())
		}
		return reject(events.ReasonInvalidField, "%v", err)
	}
	return nil
}

func queryOf(req events.Request) providers.Query {
	return providers.Query{Kind: req.Kind, AppID: req.AppID, OrderNo: req.OrderNo, ProviderOrderNo: req.ProviderOrderNo, Refresh: req.Refresh}
}

// query asks the provider; key is the rate-limited endpoint the caller took its slot under. A
// permanent refusal becomes a dead letter carrying the provider's code and message; anything
// else is retried.
func (h *Handler) query(ctx context.Context, p providers.Provider, req events.Request, key string) (providers.Result, error) {
	q := queryOf(req)
	provider, endpoint := endpointOf(key)
	started := time.Now()
	res, err := p.Query(ctx, q)
	h.metrics.CallDuration.WithLabelValues(provider, endpoint).Observe(time.Since(started).Seconds())
	outcome := "ok"
	if err != nil {
		outcome = providers.Classify(err).String()
	}
	h.metrics.ProviderCalls.WithLabelValues(provider, endpoint, outcome).Inc()
	if err == nil {
		return res, nil
	}
	var pe *providers.Error
	if errors.As(err, &pe) && pe.Class == providers.Permanent {
		return res, reject(events.ReasonProviderRejected, "%s refused the query: code %s: %s", p.Name(), pe.Code, pe.Message)
	}
	return res, err
}

// record compares the answer with the last-known state and, on a change, records the
// transition and publishes its event (see orderState for why it is safe at every step).
func (h *Handler) record(ctx context.Context, req events.Request, res providers.Result) (ev events.StatusEvent, changed bool, err error) {
	key := stateKey(req.Provider, req.Kind, req.AppID, res.OrderKey)
	for attempt := 0; attempt < 8; attempt++ {
		var cur orderState
		var rev uint64
		if attempt > 0 || h.seen.has(key) {
			if cur, rev, err = h.loadState(ctx, key); err != nil {
				return ev, false, err
			}
		} // else never seen here: most likely new, and the Create below fails if it is not
		h.seen.add(key)
		if cur.Pending != nil {
			if rev, err = h.publishPending(ctx, key, cur, rev); errors.Is(err, errConflict) {
				continue
			} else if err != nil {
				return ev, false, err
			}
			cur.Pending = nil
		}
		if rev != 0 && cur.Status == res.Status && cur.ProviderStatus == res.ProviderStatus {
			return h.event(req, res, "", true), false, nil // nothing new
		}
		ev = h.event(req, res, cur.Status, rev == 0)
		next := orderState{Status: res.Status, ProviderStatus: res.ProviderStatus, EventID: ev.EventID,
			ObservedAt: ev.ObservedAt, Pending: &ev}
		newRev, err := h.putState(ctx, key, next, rev)
		if errors.Is(err, errConflict) {
			continue // another replica moved this order on: look again
		}
		if err != nil {
			return ev, false, err
		}
		if err := h.step("claimed"); err != nil {
			return ev, false, err
		}
		if _, err := h.publishPending(ctx, key, next, newRev); err != nil && !errors.Is(err, errConflict) {
			return ev, false, err
		}
		return ev, true, nil
	}
	return ev, false, fmt.Errorf("order %s: too many concurrent updates", key)
}

// publishPending publishes st.Pending, then clears it with a compare-and-set. errConflict from
// the clear means someone else already moved the order on, after publishing it too.
func (h *Handler) publishPending(ctx context.Context, key string, st orderState, rev uint64) (uint64, error) {
	ev := *st.Pending
	data, err := h.encoding.Marshal(ev)
	if err != nil {
		return rev, fmt.Errorf("encode event: %w", err)
	}
	m := &nats.Msg{
		Subject: h.subjects.Status(ev.Provider, ev.Kind, ev.Status),
		Data:    data,
		Header:  nats.Header{events.HeaderMsgID: {ev.EventID}, events.HeaderContentType: {h.encoding.ContentType()}},
	}
	ack, err := h.js.PublishMsg(ctx, m)
	if err != nil {
		return rev, fmt.Errorf("publish event %s: %w", ev.EventID, err)
	}
	h.metrics.Events.WithLabelValues(ev.Provider, ev.Kind, string(ev.Status)).Inc()
	if err := h.step("published"); err != nil {
		return rev, err
	}
	if h.log.Enabled(ctx, slog.LevelDebug) {
		h.log.Debug("status changed", "provider", ev.Provider, "kind", ev.Kind, "app_id", ev.AppID, "order_no", ev.OrderNo,
			"status", string(ev.Status), "previous_status", string(ev.PreviousStatus), "event_id", ev.EventID, "duplicate", ack.Duplicate)
	}
	st.Pending = nil
	// The event is out: clearing the mark is worth a few tries, as a mark left behind makes a
	// later reader publish the event again (harmless inside the duplicate window only).
	var newRev uint64
	err = backoff.Retry(func() error {
		var err error
		newRev, err = h.putState(ctx, key, st, rev)
		if errors.Is(err, errConflict) {
			return backoff.Permanent(err)
		}
		return err
	}, backoff.WithContext(backoff.WithMaxRetries(backoff.NewConstantBackOff(100*time.Millisecond), 3), ctx))
	var perm *backoff.PermanentError
	if errors.As(err, &perm) {
		err = perm.Err
	}
	return newRev, err
}

var errConflict = errors.New("state changed concurrently")

func (h *Handler) loadState(ctx context.Context, key string) (orderState, uint64, error) {
	e, err := h.state.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return orderState{}, 0, nil
	}
	if err != nil {
		return orderState{}, 0, fmt.Errorf("read state %s: %w", key, err)
	}
	st, err := decodeState(e.Value())
	if err != nil {
		// Not ours, or damaged: treat the order as never seen, and overwrite it on the next change.
		h.log.Warn("unreadable order state; treating the order as new", "key", key, "err", err)
		return orderState{}, e.Revision(), nil
	}
	return st, e.Revision(), nil
}

// putState writes st if the key is still at rev (0: the key must not exist).
func (h *Handler) putState(ctx context.Context, key string, st orderState, rev uint64) (uint64, error) {
	var newRev uint64
	var err error
	if rev == 0 {
		newRev, err = h.state.Create(ctx, key, st.encode())
	} else {
		newRev, err = h.state.Update(ctx, key, st.encode(), rev)
	}
	var apiErr *jetstream.APIError
	switch {
	case err == nil:
		return newRev, nil
	case errors.Is(err, jetstream.ErrKeyExists),
		errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence:
		return rev, errConflict
	}
	return rev, fmt.Errorf("write state %s: %w", key, err)
}

func (h *Handler) event(req events.Request, res providers.Result, previous events.Status, first bool) events.StatusEvent {
	if first {
		previous = ""
	}
	attrs := req.Attributes
	if attrs == nil {
		attrs = map[string]string{}
	}
	details := res.Details
	if details == nil {
		details = map[string]any{}
	}
	orderNo := req.OrderNo
	if orderNo == "" {
		orderNo = res.OrderNo
	}
	return events.StatusEvent{
		EventID:         events.EventID(req.Provider, req.Kind, req.AppID, res.OrderKey, res.Status, res.ProviderStatus),
		RequestID:       req.RequestID,
		Provider:        req.Provider,
		Kind:            req.Kind,
		AppID:           req.AppID,
		OrderNo:         orderNo,
		ProviderOrderNo: res.ProviderOrderNo,
		ProviderRefNo:   res.ProviderRefNo,
		Status:          res.Status,
		PreviousStatus:  previous,
		ProviderStatus:  res.ProviderStatus,
		Terminal:        res.Status.Terminal(),
		Amount:          res.Amount,
		Currency:        "CNY",
		PaidAt:          events.FormatTime(res.PaidAt),
		Channel:         res.Channel,
		Details:         details,
		ObservedAt:      events.FormatTime(res.ObservedAt),
		Attributes:      attrs,
	}
}

// deadLetter publishes the original payload, byte for byte, with the reason, then terminates
// the message. If the dead letter cannot be stored the message is redelivered later instead:
// nothing is dropped.
func (h *Handler) deadLetter(ctx context.Context, j *job, provider, kind, reason, text string) {
	j.finish()
	msg, meta := j.msg, j.meta
	hdr := nats.Header{}
	for k, vs := range msg.Headers() {
		if !strings.HasPrefix(k, "Nats-") && !strings.HasPrefix(k, "Orders-") {
			hdr[k] = append([]string(nil), vs...)
		}
	}
	if id := msg.Headers().Get(events.HeaderMsgID); id != "" {
		hdr.Set(events.HeaderOriginalMsgID, id)
	}
	hdr.Set(events.HeaderErrorReason, reason)
	hdr.Set(events.HeaderError, text)
	hdr.Set(events.HeaderSubject, msg.Subject())
	hdr.Set(events.HeaderStreamSeq, strconv.FormatUint(meta.Sequence.Stream, 10))
	hdr.Set(events.HeaderDelivered, strconv.FormatUint(meta.NumDelivered, 10))
	// One dead letter per request, however often this runs for it.
	hdr.Set(events.HeaderMsgID, "dlq-"+meta.Stream+"-"+strconv.FormatUint(meta.Sequence.Stream, 10))
	m := &nats.Msg{Subject: h.subjects.DeadLetter(provider, kind), Data: msg.Data(), Header: hdr}
	err := h.fitDeadLetter(ctx, m, meta)
	if err == nil {
		_, err = h.js.PublishMsg(ctx, m)
	}
	if err != nil {
		h.log.Error("dead letter not stored; will retry", "reason", reason, "subject", msg.Subject(), "err", err)
		_ = msg.NakWithDelay(redeliveryDelay(meta.NumDelivered, 0))
		return
	}
	h.metrics.DeadLetters.WithLabelValues(provider, kind, reason).Inc()
	h.metrics.Requests.WithLabelValues(provider, kind, "dead_letter").Inc()
	h.log.Warn("request dead-lettered", "reason", reason, "error", text, "subject", msg.Subject(), "stream_seq", meta.Sequence.Stream)
	if err := msg.TermWithReason(reason); err != nil {
		h.log.Warn("terminate failed; the request will come back and be dead-lettered again (deduplicated)", "err", err)
	}
}

// fitDeadLetter makes m fit the server's max_payload. A request the server accepted may not
// fit once the dead letter's headers are added: its payload is then stored alone first, on
// <dead letter subject>.payload in ORDERS_DLQ, and the dead letter carries as much of it as
// fits, with Orders-Original-Size and Orders-Payload-Seq (that message's sequence in ORDERS_DLQ).
// Nothing is lost, and nothing stays in ORDERS_QUERY for ever.
func (h *Handler) fitDeadLetter(ctx context.Context, m *nats.Msg, meta *jetstream.MsgMetadata) error {
	limit := int(h.js.Conn().MaxPayload())
	if limit <= 0 || len(m.Data)+headerSize(m.Header) <= limit {
		return nil
	}
	whole := &nats.Msg{Subject: m.Subject + ".payload", Data: m.Data}
	id := nats.Header{events.HeaderMsgID: {"dlq-payload-" + meta.Stream + "-" + strconv.FormatUint(meta.Sequence.Stream, 10)}}
	if len(m.Data)+headerSize(id) <= limit {
		whole.Header = id // deduplicated; without it, a redelivery may store the payload twice
	}
	ack, err := h.js.PublishMsg(ctx, whole)
	if err != nil {
		return fmt.Errorf("store the whole payload (%d bytes): %w", len(m.Data), err)
	}
	m.Header.Set(events.HeaderOriginalSize, strconv.Itoa(len(m.Data)))
	m.Header.Set(events.HeaderPayloadSeq, strconv.FormatUint(ack.Sequence, 10))
	keep := max(limit-headerSize(m.Header)-64, 0) // 64: room for the client's own framing
	m.Data = m.Data[:min(keep, len(m.Data))]
	h.log.Warn("request too big for its dead letter; its payload is stored alone", "bytes", m.Header.Get(events.HeaderOriginalSize),
		"payload_seq", ack.Sequence, "stream_seq", meta.Sequence.Stream)
	return nil
}

// headerSize is how many bytes hdr takes on the wire (NATS/1.0 header block).
func headerSize(hdr nats.Header) int {
	if len(hdr) == 0 {
		return 0
	}
	n := len("NATS/1.0\r\n") + 2
	for k, vs := range hdr {
		for _, v := range vs {
			n += len(k) + 2 + len(v) + 2
		}
	}
	return n
}

func (h *Handler) providerNames() string {
	names := make([]string, 0, len(h.providers))
	for n := range h.providers {
		names = append(names, n)
	}
	return strings.Join(names, ", ")
}

func (h *Handler) step(name string) error {
	if h.failAfter == nil {
		return nil
	}
	return h.failAfter(name)
}

// redeliveryDelay grows with each delivery (1 s, 2 s, 4 s, ... up to 5 min), with jitter so
// that requests that failed together do not come back together.
func redeliveryDelay(delivered uint64, atLeast time.Duration) time.Duration {
	d := time.Second << min(delivered-1, 9)
	d = min(d, 5*time.Minute)
	d = d/2 + rand.N(d/2+1)
	return max(d, atLeast)
}
