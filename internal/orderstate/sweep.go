package orderstate

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/paystatus/orderstatus/internal/events"
	"github.com/paystatus/orderstatus/internal/kvcas"
)

// The sweep publishes, within the duplicate window, the event of a claim whose writer did not
// publish it or did not clear its mark (a failed publish, a crash, a lost clear): without it
// such an event would wait for the order's next answer, which for a terminal order never
// comes. One replica at a time sweeps, under a lease kept in ORDERS_STATE with the watermark
// it reads the bucket's writes from; docs/sweep.md tells the protocol.

// sweepWatermark is the key of the sweep's lease and watermark in ORDERS_STATE: two tokens, so
// never an order's (stateKey makes four).
const sweepWatermark = "sweep.watermark"

type watermark struct {
	Seq    uint64    `json:"seq"`              // the first state write not settled yet
	Holder string    `json:"holder,omitempty"` // the replica sweeping
	Until  time.Time `json:"until,omitzero"`   // the holder's lease, on the server's clock
}

// sweeper is the sweep's state. The writes are taken as the server sends them, one by one, so
// a burst of writes never arrives as one block on the connection the live requests use.
type sweeper struct {
	id     string                   // this replica, as the lease's holder
	delay  time.Duration            // how old an uncleared mark is when its event is published
	follow jetstream.ConsumeContext // nil: not following; only the sweep's goroutine touches it

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
	if msg.Headers().Get(events.HeaderPending) != "" && isKey(key) {
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
func (s *Store) sweepEvery() time.Duration {
	return min(max(s.sweep.delay/4, 100*time.Millisecond), time.Second)
}

// sweepLease is how long a replica that swept holds the sweep.
func (s *Store) sweepLease() time.Duration { return max(4*s.sweepEvery(), 2*time.Second) }

// Sweep runs sweep rounds until ctx ends.
func (s *Store) Sweep(ctx context.Context) {
	t := time.NewTicker(s.sweepEvery())
	defer t.Stop()
	defer s.sweep.stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := s.sweepRound(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("sweeping pending events; trying again next round", "err", err)
		}
	}
}

// sweepRound takes or renews the sweep's lease, unless another replica holds it (and then
// follows the state writes from the watermark); publishes the events of the marks sweepDelay
// old; and moves the watermark on.
func (s *Store) sweepRound(ctx context.Context) error {
	now := s.now(ctx)
	var wm watermark
	var rev uint64
	switch e, err := s.bucket.Get(ctx, sweepWatermark); {
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
	if wm.Holder != "" && wm.Holder != s.sweep.id && now.Before(wm.Until) && wm.Until.Sub(now) <= s.sweepLease()+time.Second {
		s.sweep.stop()
		return nil
	}
	if wm.Holder != s.sweep.id || s.sweep.follow == nil { // taking the sweep over: from the watermark
		s.sweep.stop()
		if err := s.sweepFrom(ctx, wm.Seq); err != nil {
			return err
		}
	}
	err := s.sweepAged(ctx, now.Add(-s.sweep.delay))
	s.sweep.mu.Lock()
	wm = watermark{Seq: s.sweep.next, Holder: s.sweep.id, Until: now.Add(s.sweepLease())}
	for _, p := range s.sweep.pending {
		wm.Seq = min(wm.Seq, p.rev)
	}
	s.sweep.mu.Unlock()
	b, _ := json.Marshal(wm)
	var werr error
	if rev == 0 {
		_, werr = s.bucket.Create(ctx, sweepWatermark, b)
	} else {
		_, werr = s.bucket.Update(ctx, sweepWatermark, b, rev)
	}
	if kvcas.Conflict(werr) { // another replica took the sweep: it reads again from the watermark
		s.sweep.stop()
		werr = nil
	}
	return errors.Join(err, werr)
}

// sweepFrom starts following the state writes at seq (0, or a sequence the bucket no longer
// has: its first).
func (s *Store) sweepFrom(ctx context.Context, seq uint64) error {
	stream, err := s.bucketStream(ctx)
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
	cons, err := s.js.OrderedConsumer(ctx, "KV_"+s.bucket.Bucket(), jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{s.subject(">")}, DeliverPolicy: jetstream.DeliverByStartSequencePolicy,
		OptStartSeq: max(seq, 1), HeadersOnly: true, InactiveThreshold: 2 * s.sweepLease()})
	if err != nil {
		return err
	}
	s.sweep.mu.Lock()
	s.sweep.next, s.sweep.pending = seq, map[string]pendingWrite{}
	s.sweep.mu.Unlock()
	prefix := s.subject("")
	s.sweep.follow, err = cons.Consume(func(msg jetstream.Msg) { s.sweep.read(prefix, msg) }, jetstream.PullMaxMessages(200))
	return err
}

// sweepAged publishes and clears the pending marks written before cutoff that are still
// their order's state.
func (s *Store) sweepAged(ctx context.Context, cutoff time.Time) error {
	s.sweep.mu.Lock()
	var aged []string
	for key, p := range s.sweep.pending {
		if !p.at.After(cutoff) {
			aged = append(aged, key)
		}
	}
	s.sweep.mu.Unlock()
	var errs []error
	for _, key := range aged {
		s.sweep.mu.Lock()
		p, ok := s.sweep.pending[key]
		s.sweep.mu.Unlock()
		if !ok {
			continue // cleared meanwhile
		}
		rec, rev, err := s.load(ctx, key)
		if err != nil {
			errs = append(errs, err) // tried again next round; the other marks go on
			continue
		}
		if rev == p.rev && rec.Pending != nil {
			if _, err := s.publishPending(ctx, &Claim{key: key, rec: rec, rev: rev}); err != nil && !errors.Is(err, ErrConflict) {
				s.log.Warn("pending event not published by the sweep; trying again next round", "key", key, "event_id", rec.Pending.EventID, "err", err)
				errs = append(errs, err)
				continue
			} // a conflict: moved on meanwhile, by a reader that published it first
			s.metrics.Swept.Inc()
			s.log.Info("pending event published by the sweep", "key", key, "event_id", rec.Pending.EventID)
		}
		s.sweep.mu.Lock()
		if s.sweep.pending[key] == p {
			delete(s.sweep.pending, key)
		}
		s.sweep.mu.Unlock()
	}
	return errors.Join(errs...)
}
