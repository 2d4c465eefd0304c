package orderstate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/paystatus/orderstatus/internal/events"
	"github.com/paystatus/orderstatus/internal/kvcas"
)

// The sweep publishes, within the duplicate window, the event of a claim whose writer did not
// publish it or did not clear its mark (a failed publish, a crash, a lost clear): without it
// such an event would wait for the order's next answer, which for a terminal order never
// comes. One replica at a time sweeps, under a lease kept in ORDERS_STATE. The holder follows
// the bucket's writes, headers only, through the durable consumer an operator makes from
// deploy/nats (or the service provisions): binding to it needs no JetStream admin right. A
// claim's write stays unacknowledged until its mark is settled, so a replica that takes the
// sweep over is handed every claim still open. docs/sweep.md tells the protocol.

// sweepLeaseKey is the key of the sweep's lease in ORDERS_STATE: two tokens, so never an
// order's (Key makes four).
const sweepLeaseKey = "sweep.watermark"

type lease struct {
	Holder string    `json:"holder,omitempty"` // the replica sweeping
	Until  time.Time `json:"until,omitzero"`   // the holder's lease, on the server's clock
}

// sweeper is the sweep's state. The writes are taken as the server sends them, one by one, so
// a burst of writes never arrives as one block on the connection the live requests use.
type sweeper struct {
	id     string                   // this replica, as the lease's holder
	delay  time.Duration            // how old an uncleared mark is when its event is published
	cons   jetstream.Consumer       // the durable consumer of the bucket's writes; nil: no sweep
	follow jetstream.ConsumeContext // nil: not following; only the sweep's goroutine touches it
	up     atomic.Pointer[error]    // the last round's failure to run, nil when it ran
	failed atomic.Pointer[error]    // the following's failure, reported by the client

	mu      sync.Mutex
	pending map[string]pendingWrite // claims read and not yet followed by another write of their key
}

type pendingWrite struct {
	rev uint64
	at  time.Time     // when the server stored it
	msg jetstream.Msg // acknowledged once the mark is settled
}

// stop stops following the writes, and hands the claims it holds back to the consumer at
// once, for the next holder.
func (sw *sweeper) stop() {
	if sw.follow != nil {
		// Drained, not stopped: a claim already fetched is noted (read) and so handed back
		// below, rather than left to its ack wait.
		sw.follow.Drain()
		select {
		case <-sw.follow.Closed():
		case <-time.After(2 * time.Second):
			sw.follow.Stop()
		}
		sw.follow = nil
	}
	sw.mu.Lock()
	defer sw.mu.Unlock()
	for _, p := range sw.pending {
		_ = p.msg.Nak()
	}
	sw.pending = map[string]pendingWrite{}
}

// read notes one state write: a claim, or the end of one (a clear, a later state, a delete),
// which settles the key's open claim.
func (sw *sweeper) read(prefix string, msg jetstream.Msg) {
	meta, err := msg.Metadata()
	if err != nil {
		_ = msg.Term()
		return
	}
	key := strings.TrimPrefix(msg.Subject(), prefix)
	sw.mu.Lock()
	defer sw.mu.Unlock()
	old, had := sw.pending[key]
	switch {
	case had && old.rev > meta.Sequence.Stream: // a redelivery of a claim already superseded
		_ = msg.Ack()
		return
	case had && old.rev == meta.Sequence.Stream: // the same claim delivered again: keep the newer handle
		sw.pending[key] = pendingWrite{rev: old.rev, at: old.at, msg: msg}
		return
	case had:
		_ = old.msg.Ack()
		delete(sw.pending, key)
	}
	if msg.Headers().Get(events.HeaderPending) != "" && isKey(key) {
		sw.pending[key] = pendingWrite{rev: meta.Sequence.Stream, at: meta.Timestamp, msg: msg}
		return
	}
	_ = msg.Ack()
}

// settle acknowledges key's claim p, if it is still the one held.
func (sw *sweeper) settle(key string, p pendingWrite) {
	sw.mu.Lock()
	defer sw.mu.Unlock()
	if cur, ok := sw.pending[key]; ok && cur.rev == p.rev {
		_ = cur.msg.Ack()
		delete(sw.pending, key)
	}
}

// sweepEvery is the time between sweep rounds.
func (s *Store) sweepEvery() time.Duration {
	return min(max(s.sweep.delay/4, 100*time.Millisecond), time.Second)
}

// sweepLease is how long a replica that swept holds the sweep.
func (s *Store) sweepLease() time.Duration { return max(4*s.sweepEvery(), 2*time.Second) }

// SweepErr says why the sweep could not run in its last round, or nil.
func (s *Store) SweepErr() error {
	if p := s.sweep.up.Load(); p != nil {
		return *p
	}
	return nil
}

// Sweep runs sweep rounds until ctx ends; without a sweep consumer it does nothing.
func (s *Store) Sweep(ctx context.Context) {
	if s.sweep.cons == nil {
		return
	}
	t := time.NewTicker(s.sweepEvery())
	defer t.Stop()
	defer s.sweep.stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		err := s.sweepRound(ctx)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			s.sweep.up.Store(&err)
			s.metrics.SweepUp.Set(0)
			s.log.Warn("the sweep cannot run; trying again next round", "err", err)
			continue
		}
		s.sweep.up.Store(nil)
		s.metrics.SweepUp.Set(1)
	}
}

// sweepRound takes or renews the sweep's lease, unless another replica holds it, and while it
// holds it follows the state writes and publishes the events of the marks s.sweep.delay old.
// Its error is the sweep unable to run (the lease or the writes out of reach); a mark whose
// event cannot be published is logged and tried again next round, and the others go on.
func (s *Store) sweepRound(ctx context.Context) error {
	now := s.now(ctx)
	var l lease
	var rev uint64
	switch e, err := s.bucket.Get(ctx, sweepLeaseKey); {
	case errors.Is(err, jetstream.ErrKeyNotFound):
	case err != nil:
		return fmt.Errorf("read the sweep's lease: %w", err)
	default:
		rev = e.Revision()
		if json.Unmarshal(e.Value(), &l) != nil {
			l = lease{} // damaged: taken over
		}
	}
	// Another replica sweeps while its lease runs; a lease running further ahead than a holder
	// ever takes it (plus a second for the holders' readings of the server's clock) is forged
	// or damaged, and not honoured: it would stop every replica sweeping until it ran out.
	if l.Holder != "" && l.Holder != s.sweep.id && now.Before(l.Until) && l.Until.Sub(now) <= s.sweepLease()+time.Second {
		s.sweep.stop()
		return nil
	}
	b, _ := json.Marshal(lease{Holder: s.sweep.id, Until: now.Add(s.sweepLease())})
	var err error
	if rev == 0 {
		_, err = s.bucket.Create(ctx, sweepLeaseKey, b)
	} else {
		_, err = s.bucket.Update(ctx, sweepLeaseKey, b, rev)
	}
	if kvcas.Conflict(err) { // another replica took the sweep
		s.sweep.stop()
		return nil
	}
	if err != nil {
		return fmt.Errorf("write the sweep's lease: %w", err)
	}
	if p := s.sweep.failed.Swap(nil); p != nil { // following failed since the last round: start again
		s.sweep.stop()
		return fmt.Errorf("follow the state writes: %w", *p)
	}
	if s.sweep.follow == nil {
		prefix := s.subject("")
		// A pull expires every 6 s with a heartbeat every 2 s: a pull that never reaches the
		// server (a route down, a permission missing) is noticed within seconds.
		s.sweep.follow, err = s.sweep.cons.Consume(func(msg jetstream.Msg) { s.sweep.read(prefix, msg) },
			jetstream.PullMaxMessages(200), jetstream.PullExpiry(6*time.Second), jetstream.PullHeartbeat(2*time.Second),
			jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
				if last := s.js.Conn().LastError(); errors.Is(err, jetstream.ErrNoHeartbeat) && errors.Is(last, nats.ErrPermissionViolation) {
					err = fmt.Errorf("%w (%v)", err, last)
				}
				s.sweep.failed.Store(&err)
			}))
		if err != nil {
			return fmt.Errorf("follow the state writes: %w", err)
		}
	}
	s.sweepAged(ctx, now.Add(-s.sweep.delay))
	return nil
}

// sweepAged publishes and clears the pending marks written before cutoff that are still their
// order's state.
func (s *Store) sweepAged(ctx context.Context, cutoff time.Time) {
	s.sweep.mu.Lock()
	aged := map[string]pendingWrite{}
	for key, p := range s.sweep.pending {
		if !p.at.After(cutoff) {
			aged[key] = p
		}
	}
	s.sweep.mu.Unlock()
	for key, p := range aged {
		o := s.order(key)
		rec, rev, err := s.load(ctx, o)
		if err != nil {
			s.log.Warn("pending mark not read by the sweep; trying again next round", "key", key, "err", err)
			continue
		}
		if rev == p.rev && rec.Pending != nil {
			if _, err := s.publishPending(ctx, &Claim{order: o, rec: rec, rev: rev}); err != nil && !errors.Is(err, ErrConflict) {
				s.log.Warn("pending event not published by the sweep; trying again next round", "key", key, "event_id", rec.Pending.EventID, "err", err)
				continue
			} // a conflict: moved on meanwhile, by a reader that published it first
			s.metrics.Swept.Inc()
			s.log.Info("pending event published by the sweep", "key", key, "event_id", rec.Pending.EventID)
		}
		s.sweep.settle(key, p)
	}
}
