package handlers

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/paystatus/orderstatus/internal/events"
	"github.com/paystatus/orderstatus/internal/providers"
	"github.com/paystatus/orderstatus/internal/telemetry"
)

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
	telemetry.TraceOf(ctx).SetOn(m.Header) // the follow-up's events belong to the request's trace
	if _, err := h.js.PublishMsg(ctx, m); err != nil {
		return fmt.Errorf("schedule follow-up: %w", err)
	}
	h.log.Debug("follow-up scheduled", "app_id", j.req.AppID, "order_no", j.req.OrderNo, "at", at.UTC().Format(time.RFC3339), "round", round+1)
	return nil
}

// maxFollowRounds bounds the round a follow-up counts, whatever its header says: by then
// the wait has long reached follow_max_delay.
const maxFollowRounds = 64

// scheduled reports whether a message with headers hdr is a follow-up this service scheduled: the server marks a
// message its scheduler fired with Nats-Scheduler, naming the schedule's subject. Only then
// are the Orders-* headers on a request the service's own; a publisher's are ignored. A
// publisher can forge the mark too (the server accepts it alongside a schedule purge), so
// what those headers may say is bounded as well (followState).
func (h *Handler) scheduled(hdr nats.Header) bool {
	return strings.HasPrefix(hdr.Get("Nats-Scheduler"), h.subjects.FollowPrefix())
}

// followState is the round and deadline of a follow request: from the service's own headers
// on a follow-up, else the first round. The deadline is the request's follow_until, or 24 h
// after the request, and never more than 30 days from now.
func (h *Handler) followState(j *job) (round int, until time.Time) {
	hdr := j.msg.Headers()
	trusted := h.scheduled(hdr)
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

// followEnded reports whether j is a follow round (a follow-up this service scheduled) for an
// order whose recorded status is already terminal: the round ends without calling the
// provider. A provider that cannot name the order's key before asking always gets its call.
func (h *Handler) followEnded(ctx context.Context, j *job) bool {
	keyer, ok := j.p.(providers.OrderKeyer)
	if !ok || !j.req.Follow || !h.scheduled(j.msg.Headers()) {
		return false
	}
	q := queryOf(j.req)
	if h.store.Terminal(ctx, j.req.Provider, j.req.Kind, j.req.AppID, keyer.OrderKey(q)) {
		h.log.Debug("follow ended: the order is terminal in the store", "app_id", j.req.AppID, "order_no", j.req.OrderNo)
		return true
	}
	return false
}
