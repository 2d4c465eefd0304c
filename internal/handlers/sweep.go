package handlers

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/paystatus/orderstatus/internal/events"
	"github.com/paystatus/orderstatus/internal/kvcas"
)

// The sweep makes sure that a claimed transition's event is published within the duplicate
// window, whatever becomes of the request that claimed it. Without it, a claim whose event was
// not published (a lookup whose publish failed, a failure after the claim on the last allowed
// delivery, a crash followed by a delivery the provider rejects) waited for the order's next
// successful query, which for a terminal order never comes; and a pending mark whose clear was
// lost (the clear is not waited for) made the order's next reader publish the event again,
// which outside the duplicate window is a second copy.
//
// It reads the writes to ORDERS_STATE in the order the bucket stored them, from a watermark
// (a stream sequence kept in the bucket under sweepWatermark), up to those sweepDelay old: a
// write still there is its key's latest (the bucket keeps one revision), so a pending mark in
// it is one nobody cleared. Each is published (its id makes a copy that already went out a
// duplicate) and cleared with compare-and-set. Then the watermark moves on, by compare-and-set
// too: the replica that moves it holds the sweep for sweepLease, and the others leave it
// alone meanwhile; when it stops, another takes over from where it left. The sweep costs no
// write per change: one watermark write a round, and one read of each state write, streamed.
//
// The release before this one scheduled an event check with every claim instead (a message
// schedule on <prefix>.sweep.<state key>); a check it left is still handled (sweepKey).

// sweepWatermark is the key of the sweep's watermark in ORDERS_STATE: two tokens, so never an
// order's (stateKey makes four).
const sweepWatermark = "sweep.watermark"

// sweepBatch bounds the writes one round reads before it moves the watermark.
const sweepBatch = 10000

type watermark struct {
	Seq    uint64    `json:"seq"`              // the first state write not swept yet
	Holder string    `json:"holder,omitempty"` // the replica sweeping
	Until  time.Time `json:"until,omitzero"`   // the holder's lease, on the server's clock
}

// sweepEvery is the time between sweep rounds.
func (h *Handler) sweepEvery() time.Duration {
	return min(max(h.sweepDelay/4, 100*time.Millisecond), 5*time.Second)
}

// sweepLease is how long a replica that swept holds the sweep.
func (h *Handler) sweepLease() time.Duration { return 4 * h.sweepEvery() }

// sweepLoop runs sweep rounds until ctx ends.
func (h *Handler) sweepLoop(ctx context.Context) {
	t := time.NewTicker(h.sweepEvery())
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if _, err := h.sweepRound(ctx); err != nil && ctx.Err() == nil {
			h.log.Warn("sweeping pending events; trying again next round", "err", err)
		}
	}
}

// sweepRound sweeps the state writes from the watermark up to those sweepDelay old, if no
// other replica holds the sweep, and says how many it read.
func (h *Handler) sweepRound(ctx context.Context) (int, error) {
	now := h.serverNow(ctx)
	var wm watermark
	var rev uint64
	switch e, err := h.state.Get(ctx, sweepWatermark); {
	case errors.Is(err, jetstream.ErrKeyNotFound):
	case err != nil:
		return 0, err
	default:
		rev = e.Revision()
		if json.Unmarshal(e.Value(), &wm) != nil {
			wm = watermark{} // damaged: sweep from the start
		}
	}
	if wm.Holder != "" && wm.Holder != h.id && now.Before(wm.Until) {
		return 0, nil // another replica sweeps
	}
	stream, err := h.js.Stream(ctx, "KV_"+h.state.Bucket())
	if err != nil {
		return 0, err
	}
	info, err := stream.Info(ctx)
	if err != nil {
		return 0, err
	}
	if wm.Seq < info.State.FirstSeq || wm.Seq > info.State.LastSeq+1 {
		wm.Seq = info.State.FirstSeq // the start, or a bucket made again
	}
	next, read, err := h.sweepFrom(ctx, wm.Seq, info.State.LastSeq, now.Add(-h.sweepDelay))
	wm = watermark{Seq: next, Holder: h.id, Until: now.Add(h.sweepLease())}
	b, _ := json.Marshal(wm)
	var werr error
	if rev == 0 {
		_, werr = h.state.Create(ctx, sweepWatermark, b)
	} else {
		_, werr = h.state.Update(ctx, sweepWatermark, b, rev)
	}
	if werr != nil && !kvcas.Conflict(werr) { // a conflict: another replica swept the same writes
		err = errors.Join(err, werr)
	}
	return read, err
}

// sweepFrom reads the state writes from seq on, up to last and none newer than cutoff, and
// publishes each pending event still there. It returns the sequence to go on from.
func (h *Handler) sweepFrom(ctx context.Context, seq, last uint64, cutoff time.Time) (next uint64, read int, err error) {
	if seq > last {
		return seq, 0, nil
	}
	prefix := "$KV." + h.state.Bucket() + "."
	cons, err := h.js.OrderedConsumer(ctx, "KV_"+h.state.Bucket(), jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{prefix + ">"}, DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: seq,
		InactiveThreshold: max(time.Second, 2*h.sweepEvery())}) // gone soon after the round
	if err != nil {
		return seq, 0, err
	}
	next = seq
	for read < sweepBatch {
		batch, err := cons.Fetch(min(500, sweepBatch-read), jetstream.FetchMaxWait(time.Second))
		if err != nil {
			return next, read, err
		}
		got := 0
		for msg := range batch.Messages() {
			got++
			meta, err := msg.Metadata()
			if err != nil {
				return next, read, err
			}
			if meta.Timestamp.After(cutoff) {
				return next, read, nil // not sweepDelay old yet: the next round
			}
			read++
			if err := h.sweepWrite(ctx, strings.TrimPrefix(msg.Subject(), prefix), msg, meta.Sequence.Stream); err != nil {
				return next, read, err
			}
			next = meta.Sequence.Stream + 1
			if meta.NumPending == 0 || next > last {
				return next, read, nil
			}
		}
		if err := batch.Error(); err != nil {
			return next, read, err
		}
		if got == 0 {
			return next, read, nil
		}
	}
	return next, read, nil
}

// sweepWrite publishes and clears the pending event of one state write, at revision rev, if it
// has one.
func (h *Handler) sweepWrite(ctx context.Context, key string, msg jetstream.Msg, rev uint64) error {
	if !isStateKey(key) || msg.Headers().Get("KV-Operation") != "" || !bytes.Contains(msg.Data(), []byte(`"pending":{`)) {
		return nil // not an order, a delete, or nothing pending
	}
	st, err := decodeState(msg.Data())
	if err != nil || st.Pending == nil {
		return nil // unreadable: the order's next change overwrites it
	}
	if _, err := h.publishPending(ctx, key, st, rev); err != nil && !errors.Is(err, errConflict) {
		return err // a conflict: moved on meanwhile, by a reader that published it first
	}
	h.metrics.Swept.Inc()
	h.log.Info("pending event published by the sweep", "key", key, "event_id", st.Pending.EventID)
	return nil
}

// serverNow is the NATS server's time, as the limiter reads it.
func (h *Handler) serverNow(ctx context.Context) time.Time {
	if h.lim == nil {
		return h.now()
	}
	return h.lim.ServerNow(ctx)
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

// sweep publishes the pending event of the order at key, if one is still there: an event
// check left by the release before this one.
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
