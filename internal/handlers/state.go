package handlers

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/paystatus/orderstatus/internal/events"
	"github.com/paystatus/orderstatus/internal/kvcas"
	"github.com/paystatus/orderstatus/internal/kvkey"
	"github.com/paystatus/orderstatus/internal/providers"
)

// orderState is the last-known status of one order, the value in ORDERS_STATE. It is JSON so
// that `nats kv get ORDERS_STATE <key>` shows it to a person.
//
// Pending holds the event of a transition that was recorded but is not yet known to be
// published. Recording a transition and publishing its event are two writes; the transition is
// claimed first (compare-and-set on the key's revision, so of two replicas racing on one order
// only one records it), then the event is published, then Pending is cleared. Whoever reads a
// state with Pending set publishes that event before anything else: after a crash between any
// two steps the event still goes out, and its deterministic id makes JetStream drop a copy that
// had already gone out. As a new transition is claimed only once the last one's event is out,
// an order's events are published in the order of its transitions.
//
// Transition numbers the order's transitions from 1, and the event id is made of it, so the
// claim makes the number, and so the id, the same for every replica and after every crash.
// SentAt is when the query that set Status was sent: an answer to a query sent before it is
// stale and ignored, and so is a non-terminal answer once Status is terminal, so an order never
// moves backwards.
//
// Trace is the W3C trace context of the request that caused Pending (its consumer span's), kept
// beside it and not in the event's payload: whoever publishes the event puts it on as headers.
type orderState struct {
	Status         events.Status       `json:"status"`
	ProviderStatus string              `json:"provider_status"`
	Transition     uint64              `json:"transition"`
	EventID        string              `json:"event_id"`
	SentAt         string              `json:"sent_at,omitempty"`
	ObservedAt     string              `json:"observed_at"`
	Pending        *events.StatusEvent `json:"pending,omitempty"`
	Trace          traceContext        `json:"trace,omitzero"`
}

// decodeState reads a stored state. Numbers in a pending event's details come back as they
// went in: whole numbers as int64, exact beyond 2^53, as a provider's answer gives them.
func decodeState(b []byte) (orderState, error) {
	var s orderState
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	if err := d.Decode(&s); err != nil {
		return s, err
	}
	if s.Pending != nil && len(s.Pending.Details) > 0 {
		raw, err := json.Marshal(s.Pending.Details) // json.Number values: their text, unchanged
		if err != nil {
			return s, err
		}
		v, err := providers.DetailValue(raw)
		if err != nil {
			return s, err
		}
		s.Pending.Details, _ = v.(map[string]any)
	}
	return s, nil
}

// maxAnswerDelay bounds how much later than another a query's answer can be recorded: the
// provider call's time limit and its retries stay far below it.
const maxAnswerDelay = 10 * time.Minute

// ignored says why an answer to a query sent at sent must not change the state cur, or "".
func ignored(cur orderState, res providers.Result, sent time.Time) string {
	if at, err := time.Parse(time.RFC3339Nano, cur.SentAt); err == nil && sent.Before(at) && at.Sub(sent) <= maxAnswerDelay {
		return "stale" // a later query set the recorded status
	}
	if cur.Status.Terminal() && !res.Status.Terminal() {
		return "after_terminal"
	}
	return ""
}

func (s orderState) encode() []byte {
	b, _ := json.Marshal(s) // plain data: cannot fail
	return b
}

// stateKey is the KV key of an order: <provider>.<kind>.<app_id>.<order key>, readable when
// the parts allow it (see kvkey.Token).
func stateKey(provider, kind, appID, orderKey string) string {
	return kvkey.Join(provider, kind, appID, orderKey)
}

// record compares the answer to a query sent at sent with the last-known state and, on a
// change, claims the transition and sends its event (see orderState for why it is safe at
// every step). An answer that would move the order backwards is ignored.
//
// The claim is the one write record waits for. The event goes out without waiting: the
// returned publication is confirmed by the caller (confirm), and only then is the request
// acknowledged, so a request whose event is not stored is delivered again.
func (h *Handler) record(ctx context.Context, req events.Request, res providers.Result, sent time.Time) (ev events.StatusEvent, pub *publication, err error) {
	key := stateKey(req.Provider, req.Kind, req.AppID, res.OrderKey)
	for attempt := 0; attempt < 8; attempt++ {
		var cur orderState
		var rev uint64
		if attempt > 0 || h.seen.has(key) {
			if cur, rev, err = h.loadState(ctx, key); err != nil {
				return ev, nil, err
			}
		} // else never seen here: most likely new, and the Create below fails if it is not
		h.seen.add(key)
		if cur.Pending != nil {
			if rev, err = h.publishPending(ctx, key, cur, rev); errors.Is(err, errConflict) {
				continue
			} else if err != nil {
				return ev, nil, err
			}
			cur.Pending, cur.Trace = nil, traceContext{}
		}
		if rev != 0 {
			if why := ignored(cur, res, sent); why != "" {
				h.metrics.Ignored.WithLabelValues(req.Provider, req.Kind, why).Inc()
				h.log.Debug("answer ignored", "reason", why, "key", key, "status", string(res.Status), "recorded", string(cur.Status))
				return h.event(req, res, "", cur.Transition), nil, nil
			}
			if cur.Status == res.Status && cur.ProviderStatus == res.ProviderStatus {
				return h.event(req, res, "", cur.Transition), nil, nil // nothing new
			}
		}
		if rev == 0 {
			cur = orderState{} // new, or unreadable: this is its first observation
		}
		ev = h.event(req, res, cur.Status, cur.Transition+1)
		next := orderState{Status: res.Status, ProviderStatus: res.ProviderStatus, Transition: cur.Transition + 1,
			EventID: ev.EventID, SentAt: sent.UTC().Format(time.RFC3339Nano), ObservedAt: ev.ObservedAt, Pending: &ev,
			Trace: traceOf(ctx)}
		h.trips.claim.Inc()
		newRev, err := h.putState(ctx, key, next, rev)
		if errors.Is(err, errConflict) {
			continue // another replica moved this order on: look again
		}
		if err != nil {
			return ev, nil, err
		}
		err = h.step("claimed")
		if err == nil {
			pub, err = h.sendEvent(ctx, key, next, newRev)
		}
		if err != nil {
			return ev, nil, err // claimed, and the event perhaps not out: the sweep publishes it
		}
		return ev, pub, nil
	}
	return ev, nil, fmt.Errorf("order %s: too many concurrent updates", key)
}

// publication is a claimed transition's event on its way to the server.
type publication struct {
	key  string
	st   orderState // the claimed state: st.Pending is the event
	rev  uint64     // the claim's revision
	ack  jetstream.PubAckFuture
	span trace.Span // the publish span, ended when the server answers
}

// sendEvent publishes st.Pending without waiting for the server (see publication).
//
// The publish is a producer span, child of the trace context stored with the event (the
// request that caused it), whoever publishes it; the span that publishes it for another
// request, or for the sweep, is linked. The event carries the publish span's context, so a
// subscriber's span continues the request's trace.
func (h *Handler) sendEvent(ctx context.Context, key string, st orderState, rev uint64) (*publication, error) {
	ev := st.Pending
	pctx := ctx
	var opts []trace.SpanStartOption
	stored := trace.SpanContextFromContext(st.Trace.context(context.Background()))
	if cur := trace.SpanContextFromContext(ctx); stored.IsValid() && (stored.TraceID() != cur.TraceID() || stored.SpanID() != cur.SpanID()) {
		pctx = trace.ContextWithRemoteSpanContext(ctx, stored)
		if cur.IsValid() {
			opts = append(opts, trace.WithLinks(trace.Link{SpanContext: cur}))
		}
	}
	pctx, span := h.tracer.Start(pctx, "publish "+StatusStream, append(opts, trace.WithSpanKind(trace.SpanKindProducer))...)
	if span.IsRecording() {
		span.SetAttributes(attribute.String("messaging.system", "nats"), attribute.String("messaging.message.id", ev.EventID))
	}
	fail := func(err error) (*publication, error) {
		if span.IsRecording() {
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
		return nil, err
	}
	if err := h.step("publishing"); err != nil {
		return fail(err)
	}
	data, err := h.encoding.Marshal(*ev)
	if err != nil {
		return fail(fmt.Errorf("encode event: %w", err))
	}
	m := &nats.Msg{
		Subject: h.subjects.Status(ev.Provider, ev.Kind, ev.Status),
		Data:    data,
		Header:  nats.Header{events.HeaderMsgID: {ev.EventID}, events.HeaderContentType: {h.encoding.ContentType()}},
	}
	traceOf(pctx).setOn(m.Header)
	f, err := h.js.PublishMsgAsync(m)
	if err != nil {
		return fail(fmt.Errorf("publish event %s: %w", ev.EventID, err))
	}
	return &publication{key: key, st: st, rev: rev, ack: f, span: span}, nil
}

// confirm waits until the server has stored p's event, or says why it has not. Once the event
// is stored, the pending mark is cleared without waiting (see clearPending).
func (h *Handler) confirm(ctx context.Context, p *publication) error {
	err := h.await(ctx, p)
	if err == nil {
		h.clearPending(p.key, p.st, p.rev)
	}
	return err
}

// await waits for the server's answer to p's event, and ends its span.
func (h *Handler) await(ctx context.Context, p *publication) error {
	ev := p.st.Pending
	var err error
	select {
	case ack := <-p.ack.Ok():
		h.metrics.Events.WithLabelValues(ev.Provider, ev.Kind, string(ev.Status)).Inc()
		if h.log.Enabled(ctx, slog.LevelDebug) {
			h.log.Debug("status changed", "provider", ev.Provider, "kind", ev.Kind, "app_id", ev.AppID, "order_no", ev.OrderNo,
				"status", string(ev.Status), "previous_status", string(ev.PreviousStatus), "event_id", ev.EventID, "duplicate", ack.Duplicate)
		}
		err = h.step("published")
	case perr := <-p.ack.Err():
		err = fmt.Errorf("publish event %s: %w", ev.EventID, perr)
	case <-ctx.Done():
		err = fmt.Errorf("publish event %s: %w", ev.EventID, ctx.Err())
	}
	if err != nil && p.span.IsRecording() {
		p.span.SetStatus(codes.Error, err.Error())
	}
	p.span.End()
	return err
}

// clearPending removes the pending mark of st, stored at rev, now that its event is out. It
// does not wait for the server: a mark left behind (a failed write, a crash) is cleared by the
// sweep or by the order's next reader, who publishes the event again first, which the
// server drops as a duplicate. A KV write is a publish to the key's subject with the revision
// it must follow.
func (h *Handler) clearPending(key string, st orderState, rev uint64) {
	if h.step("clearing") != nil {
		return
	}
	st.Pending, st.Trace = nil, traceContext{}
	// A plain publish, with no reply subject: JetStream stores it (its subject is the
	// bucket's) after checking the revision, and sends no acknowledgement nobody would read.
	if err := h.js.Conn().PublishMsg(h.stateMsg(key, st, rev)); err != nil {
		h.log.Debug("pending mark not cleared; the sweep clears it", "key", key, "err", err)
	}
}

// publishPending publishes st.Pending, waits for it, then clears it with a compare-and-set,
// waiting too: the caller goes on from the new revision. errConflict from the clear means
// someone else already moved the order on, after publishing it too.
func (h *Handler) publishPending(ctx context.Context, key string, st orderState, rev uint64) (newRev uint64, err error) {
	p, err := h.sendEvent(ctx, key, st, rev)
	if err != nil {
		return rev, err
	}
	h.trips.event.Inc()
	if err := h.await(ctx, p); err != nil {
		return rev, err
	}
	st.Pending, st.Trace = nil, traceContext{}
	// The event is out: clearing the mark is worth a few tries, as a mark left behind makes a
	// later reader publish the event again (harmless inside the duplicate window only).
	err = backoff.Retry(func() error {
		var err error
		h.trips.clear.Inc()
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
	h.trips.read.Inc()
	stream, err := h.stateStream(ctx)
	if err != nil {
		return orderState{}, 0, fmt.Errorf("read state %s: %w", key, err)
	}
	// The key's last write, as the KV client's Get reads it (a direct get), but a delete marker
	// (`nats kv del`) comes back with its revision: the next write goes over it.
	m, err := stream.GetLastMsgForSubject(ctx, h.stateSubject(key))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return orderState{}, 0, nil
	}
	if err != nil {
		return orderState{}, 0, fmt.Errorf("read state %s: %w", key, err)
	}
	if op := m.Header.Get("KV-Operation"); op == "DEL" || op == "PURGE" {
		return orderState{}, m.Sequence, nil
	}
	st, err := decodeState(m.Data)
	if err != nil {
		// Not ours, or damaged: treat the order as never seen, and overwrite it on the next change.
		h.log.Warn("unreadable order state; treating the order as new", "key", key, "err", err)
		return orderState{}, m.Sequence, nil
	}
	return st, m.Sequence, nil
}

// stateStream is ORDERS_STATE's stream, looked up once.
func (h *Handler) stateStream(ctx context.Context) (jetstream.Stream, error) {
	if s := h.stream.Load(); s != nil {
		return *s, nil
	}
	s, err := h.js.Stream(ctx, "KV_"+h.state.Bucket())
	if err != nil {
		return nil, err
	}
	h.stream.Store(&s)
	return s, nil
}

// stateSubject is the subject of key's writes in ORDERS_STATE.
func (h *Handler) stateSubject(key string) string { return "$KV." + h.state.Bucket() + "." + key }

// putState writes st if the key is still at rev (0: the key must not exist), and waits for
// the server. The write is a publish to the key's subject with the revision it must follow,
// as the KV client's own Create and Update make it, sent on the asynchronous path: waiting for
// its future costs less than a request with a reply subject and a timer of its own.
func (h *Handler) putState(ctx context.Context, key string, st orderState, rev uint64) (uint64, error) {
	f, err := h.js.PublishMsgAsync(h.stateMsg(key, st, rev))
	if err != nil {
		return rev, fmt.Errorf("write state %s: %w", key, err)
	}
	select {
	case ack := <-f.Ok():
		return ack.Sequence, nil
	case err = <-f.Err():
	case <-ctx.Done():
		err = ctx.Err()
	}
	if kvcas.Conflict(err) {
		return rev, errConflict
	}
	return rev, fmt.Errorf("write state %s: %w", key, err)
}

// stateMsg is the write of st to key, if the key is still at rev (0: the key must not exist).
// A claim carries events.HeaderPending, which the sweep follows.
func (h *Handler) stateMsg(key string, st orderState, rev uint64) *nats.Msg {
	m := &nats.Msg{Subject: h.stateSubject(key), Data: st.encode(),
		Header: nats.Header{jetstream.ExpectedLastSubjSeqHeader: {strconv.FormatUint(rev, 10)}}}
	if st.Pending != nil {
		m.Header.Set(events.HeaderPending, st.Pending.EventID)
	}
	return m
}

// event is the event of the order's transition number transition to res, from previous
// ("" on the first observation).
func (h *Handler) event(req events.Request, res providers.Result, previous events.Status, transition uint64) events.StatusEvent {
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
		EventID:         events.EventID(req.Provider, req.Kind, req.AppID, res.OrderKey, transition),
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
