package handlers

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/paystatus/orderstatus/internal/events"
)

// The sweep makes sure that a claimed transition's event is published within the duplicate
// window, whatever becomes of the request that claimed it. Without it, a claim whose event was
// not published (a lookup whose publish failed, a failure after the claim on the last allowed
// delivery, a crash followed by a delivery the provider rejects) waited for the order's next
// successful query, which for a terminal order never comes.
//
// Before each claim, an event check is scheduled in ORDERS_QUERY, sweepDelay later, on
// <prefix>.sweep.<state key>. When it is due the server delivers it to the consumer like a
// request; whichever replica takes it reads the order's state and, if the claim's event is
// still pending there, publishes it (its id makes a copy that already went out a duplicate)
// and clears the mark with compare-and-set. Nothing scans ORDERS_STATE: the check costs one
// stored message per change, for sweepDelay, and one read when it is due, however many orders
// are stored.

// scheduleSweep schedules the event check of the transition ev of the order at key. It does not
// wait for the server: the caller waits for the returned future only when it ends without the
// event published.
func (h *Handler) scheduleSweep(key string, ev *events.StatusEvent) (jetstream.PubAckFuture, error) {
	at := h.now().Add(h.sweepDelay).Truncate(time.Second).Add(time.Second) // schedules count whole seconds
	return h.js.PublishMsgAsync(&nats.Msg{
		Subject: h.subjects.SweepPrefix() + key,
		Header: nats.Header{
			"Nats-Schedule":        {"@at " + at.UTC().Format(time.RFC3339)},
			"Nats-Schedule-Target": {h.subjects.Query(ev.Provider, ev.Kind)},
			events.HeaderMsgID:     {"sweep-" + ev.EventID},
			events.HeaderSweepKey:  {key},
		},
	})
}

// awaitSweep waits until the event check f is stored, so that it outlives this process.
func awaitSweep(ctx context.Context, f jetstream.PubAckFuture) error {
	select {
	case <-f.Ok():
		return nil
	case err := <-f.Err():
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// sweepKey is the state key an event check names, when hdr is that of a message the server's
// scheduler fired from a sweep schedule.
func (h *Handler) sweepKey(hdr nats.Header) (string, bool) {
	if !strings.HasPrefix(hdr.Get("Nats-Scheduler"), h.subjects.SweepPrefix()) {
		return "", false
	}
	key := hdr.Get(events.HeaderSweepKey)
	return key, isStateKey(key)
}

// isStateKey reports whether key has the shape of the keys stateKey makes: four kvkey tokens.
// The mark of an event check can be forged; a key the bucket would refuse must not make a
// check that is redelivered for ever.
func isStateKey(key string) bool {
	if len(key) > 1024 {
		return false
	}
	parts := strings.Split(key, ".")
	if len(parts) != 4 {
		return false
	}
	for _, p := range parts {
		if p == "" || strings.IndexFunc(p, func(r rune) bool {
			return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '=')
		}) >= 0 {
			return false
		}
	}
	return true
}

// sweep publishes the pending event of the order at key, if one is still there.
func (h *Handler) sweep(ctx context.Context, key string) outcome {
	cur, rev, err := h.loadState(ctx, key)
	if err == nil && cur.Pending != nil {
		_, err = h.publishPending(ctx, key, cur, rev)
		if errors.Is(err, errConflict) {
			err = nil // moved on meanwhile, by a reader that published it first
		}
		if err == nil {
			h.metrics.Swept.Inc()
			h.log.Info("pending event published by its check", "key", key, "event_id", cur.Pending.EventID)
		}
	}
	if err != nil {
		return outcome{verdict: redeliver, delay: redeliveryDelay(1, 0), err: err}
	}
	return outcome{verdict: ack, check: true}
}
