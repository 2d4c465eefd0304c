package handlers

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
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
// One replica at a time sweeps: it holds a lease in ORDERS_STATE (the key sweepWatermark),
// renewed every round. It follows the writes to ORDERS_STATE as the bucket stores them, with
// an ordered consumer that sends headers only: a claim carries the header
// events.HeaderPending (stateMsg puts it there), a clear does not. So the sweeper knows, in
// memory, the pending marks not yet followed by another write of their key; one still there
// sweepDelay after it was written is one nobody cleared: its event is published (its id makes
// a copy that already went out a duplicate) and the mark cleared with compare-and-set.
//
// The watermark kept with the lease is the sequence of the oldest write the sweeper still has
// to settle (or the next to read): a replica that takes the sweep over, after the holder
// stopped or crashed, reads again from there, so no claim is missed. The sweep costs no write
// per change and no read of stored messages in the normal case: the writes are followed as
// they are made (from the server's memory), a hundred-odd header bytes each, and one lease
// write a round. (An earlier version read every write 10 s after it was made, from disk: it
// took 8% of the throughput and, catching up after a burst, held up live requests, p99 14 ms
// at 1,000 req/s instead of 3 ms.)
//
// The release before this one scheduled an event check with every claim instead (a message
// schedule on <prefix>.sweep.<state key>); a check it left is still handled (sweepKey).

// sweepWatermark is the key of the sweep's lease and watermark in ORDERS_STATE: two tokens, so
// never an order's (stateKey makes four).
const sweepWatermark = "sweep.watermark"

type watermark struct {
	Seq    uint64    `json:"seq"`              // the first state write not settled yet
	Holder string    `json:"holder,omitempty"` // the replica sweeping
	Until  time.Time `json:"until,omitzero"`   // the holder's lease, on the server's clock
}

// sweeper is the sweep's state in the replica holding it. The writes are taken as the server
// sends them, one by one: read in rounds, a second's writes came in one block, thousands of
// messages on the connection the live requests use, and held their answers up (p99 12 ms at
// 1,000 req/s instead of 3 ms).
type sweeper struct {
	follow jetstream.ConsumeContext // nil: not following

	mu      sync.Mutex
	next    uint64                  // the first write not read yet
	pending map[string]pendingWrite // marks read and not yet followed by another write of their key
}

// stop stops following the writes.
func (sw *sweeper) stop() {
	if sw.follow != nil {
		sw.follow.Stop()
		sw.follow = nil
	}
}

// read notes one state write: a claim's mark, or the end of one.
func (sw *sweeper) read(prefix string, msg jetstream.Msg) {
	meta, err := msg.Metadata()
	if err != nil {
		return
	}
	key := strings.TrimPrefix(msg.Subject(), prefix)
	sw.mu.Lock()
	defer sw.mu.Unlock()
	if msg.Headers().Get(events.HeaderPending) != "" && isStateKey(key) {
		sw.pending[key] = pendingWrite{rev: meta.Sequence.Stream, at: meta.Timestamp}
	} else {
		delete(sw.pending, key) // a clear, a later state, a delete: the mark is gone
	}
	sw.next = meta.Sequence.Stream + 1
}

type pendingWrite struct {
	rev uint64
	at  time.Time // when the server stored it
}

// sweepEvery is the time between sweep rounds.
func (h *Handler) sweepEvery() time.Duration {
	return min(max(h.sweepDelay/4, 100*time.Millisecond), time.Second)
}

// sweepLease is how long a replica that swept holds the sweep.
func (h *Handler) sweepLease() time.Duration { return max(4*h.sweepEvery(), 2*time.Second) }

// sweepLoop runs sweep rounds until ctx ends.
func (h *Handler) sweepLoop(ctx context.Context) {
	t := time.NewTicker(h.sweepEvery())
	defer t.Stop()
	defer h.sw.stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := h.sweepRound(ctx); err != nil && ctx.Err() == nil {
			h.log.Warn("sweeping pending events; trying again next round", "err", err)
		}
	}
}

// sweepRound takes or renews the sweep's lease, unless another replica holds it (and then
// follows the state writes from the watermark); publishes the events of the marks sweepDelay
// old; and moves the watermark on.
func (h *Handler) sweepRound(ctx context.Context) error {
	now := h.serverNow(ctx)
	var wm watermark
	var rev uint64
	switch e, err := h.state.Get(ctx, sweepWatermark); {
	case errors.Is(err, jetstream.ErrKeyNotFound):
	case err != nil:
		return err
	default:
		rev = e.Revision()
		if json.Unmarshal(e.Value(), &wm) != nil {
			wm = watermark{} // damaged: sweep from the start
		}
	}
	// Another replica sweeps while its lease runs; a lease running further ahead than a holder
	// ever takes it (plus a second for the holders' readings of the server's clock) is forged
	// or damaged, and not honoured: it would stop every replica sweeping until it ran out.
	if wm.Holder != "" && wm.Holder != h.id && now.Before(wm.Until) && wm.Until.Sub(now) <= h.sweepLease()+time.Second {
		h.sw.stop()
		return nil
	}
	if wm.Holder != h.id || h.sw.follow == nil { // taking the sweep over: from the watermark
		h.sw.stop()
		if err := h.sweepFrom(ctx, wm.Seq); err != nil {
			return err
		}
	}
	err := h.sweepAged(ctx, now.Add(-h.sweepDelay))
	h.sw.mu.Lock()
	wm = watermark{Seq: h.sw.next, Holder: h.id, Until: now.Add(h.sweepLease())}
	for _, p := range h.sw.pending {
		wm.Seq = min(wm.Seq, p.rev)
	}
	h.sw.mu.Unlock()
	b, _ := json.Marshal(wm)
	var werr error
	if rev == 0 {
		_, werr = h.state.Create(ctx, sweepWatermark, b)
	} else {
		_, werr = h.state.Update(ctx, sweepWatermark, b, rev)
	}
	if kvcas.Conflict(werr) { // another replica took the sweep: it reads again from the watermark
		h.sw.stop()
		werr = nil
	}
	return errors.Join(err, werr)
}

// sweepFrom starts following the state writes at seq (0, or a sequence the bucket no longer
// has: its first).
func (h *Handler) sweepFrom(ctx context.Context, seq uint64) error {
	stream, err := h.stateStream(ctx)
	if err != nil {
		return err
	}
	info, err := stream.Info(ctx)
	if err != nil {
		return err
	}
	if seq < info.State.FirstSeq || seq > info.State.LastSeq+1 {
		seq = info.State.FirstSeq // the start, or a bucket made again
	}
	cons, err := h.js.OrderedConsumer(ctx, "KV_"+h.state.Bucket(), jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{h.stateSubject(">")}, DeliverPolicy: jetstream.DeliverByStartSequencePolicy,
		OptStartSeq: max(seq, 1), HeadersOnly: true, InactiveThreshold: 2 * h.sweepLease()})
	if err != nil {
		return err
	}
	h.sw.mu.Lock()
	h.sw.next, h.sw.pending = seq, map[string]pendingWrite{}
	h.sw.mu.Unlock()
	prefix := h.stateSubject("")
	h.sw.follow, err = cons.Consume(func(msg jetstream.Msg) { h.sw.read(prefix, msg) }, jetstream.PullMaxMessages(200))
	return err
}

// sweepAged publishes and clears the pending marks written before cutoff that are still
// their order's state.
func (h *Handler) sweepAged(ctx context.Context, cutoff time.Time) error {
	h.sw.mu.Lock()
	var aged []string
	for key, p := range h.sw.pending {
		if !p.at.After(cutoff) {
			aged = append(aged, key)
		}
	}
	h.sw.mu.Unlock()
	for _, key := range aged {
		h.sw.mu.Lock()
		p, ok := h.sw.pending[key]
		h.sw.mu.Unlock()
		if !ok {
			continue // cleared meanwhile
		}
		st, rev, err := h.loadState(ctx, key)
		if err != nil {
			return err
		}
		if rev == p.rev && st.Pending != nil {
			if _, err := h.publishPending(ctx, key, st, rev); err != nil && !errors.Is(err, errConflict) {
				return err // tried again next round
			} // a conflict: moved on meanwhile, by a reader that published it first
			h.metrics.Swept.Inc()
			h.log.Info("pending event published by the sweep", "key", key, "event_id", st.Pending.EventID)
		}
		h.sw.mu.Lock()
		if h.sw.pending[key] == p {
			delete(h.sw.pending, key)
		}
		h.sw.mu.Unlock()
	}
	return nil
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

// serverNow is the NATS server's time, as the limiter reads it.
func (h *Handler) serverNow(ctx context.Context) time.Time {
	if h.lim == nil {
		return h.now()
	}
	return h.lim.ServerNow(ctx)
}
