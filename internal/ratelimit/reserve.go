package ratelimit

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/paystatus/orderstatus/internal/kvcas"
	"github.com/paystatus/orderstatus/internal/kvkey"
)

// keyState is what a limiter knows of one key; mu guards it.
type keyState struct {
	mu   sync.Mutex
	run  run // the slots reserved and not yet spent
	rate float64
	// rateAt is the server time rate was last brought up to date; rate is the calls a
	// second this limiter handed out for the key then (moving, rateWindow time constant).
	rateAt time.Time
	// sharedUntil is the server time until which the key reserves by demand only: another
	// replica wrote it.
	sharedUntil time.Time
	// last and rev are the key's value and revision as this limiter last wrote or read them:
	// the next compare-and-set tries them first, and reads again only if another replica
	// moved the key since. last is in server time.
	last time.Time
	rev  uint64
	// demand is the demand of the key's last call, for a renewal to decide on.
	demand int
	// renewTimer is set while a renewal of the horizon is due (see scheduleRenewal), renewing
	// while one is under way; at most one of them, so a key has one renewal at a time.
	// renewGen tells a timer that fires after it was stopped from the current one.
	renewTimer *time.Timer
	renewGen   uint64
	renewing   chan struct{} // closed when the renewal under way is done
}

// reserve reserves the key's next run of slots, for demand calls waiting at server time
// now: as many as are wanted (a slot reserved and not spent still moves the schedule on, and
// later calls would wait for time nobody used), up to qps; or, for a key far below its limit,
// the slots of aheadHorizon (see mayReserveAhead). The first slot is at least the write lead
// from now, so that it is still on time when the write returns. Callers hold ks.mu.
func (l *Limiter) reserve(ctx context.Context, ks *keyState, key string, qps, demand int, now time.Time) error {
	spacing := Spacing(qps)
	n := min(max(demand, 1), qps)
	horizon := horizonSlots(qps)
	rate := ks.rateNow(now)
	var r run
	end, err := l.update(ctx, ks, key, func(last, now time.Time) time.Time {
		m := n
		// Decided on the value this write replaces: a conflict reads the key again, and may
		// find another replica's write (sharedUntil) or slots ahead of now.
		ahead := !last.After(now) && ks.mayReserveAhead(qps, demand, rate, now)
		if ahead {
			m = max(n, horizon)
		}
		first := maxTime(now.Add(l.lead.get()), last.Add(spacing))
		r = run{next: first, spacing: spacing, qps: qps, ahead: ahead}
		return first.Add(time.Duration(m-1) * spacing)
	})
	if err != nil {
		return err
	}
	r.end = end
	l.counts.reservations.Add(1)
	if r.ahead {
		l.counts.ahead.Add(1)
	}
	ks.run = r
	return nil
}

// learn takes the key's value and revision from a read of the key (e, or err
// jetstream.ErrKeyNotFound). Callers hold ks.mu.
func (ks *keyState) learn(e jetstream.KeyValueEntry, err error, sharedFor time.Duration) {
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		ks.last, ks.rev = time.Time{}, 0
		return
	}
	ks.last, ks.rev = time.Time{}, e.Revision()
	if v := e.Value(); len(v) == 8 {
		ks.last = time.Unix(0, int64(binary.BigEndian.Uint64(v)))
	}
	// Another replica's write (or an earlier run of this one's): it may be calling the key
	// too, and would wait for slots reserved ahead.
	ks.sharedUntil = maxTime(ks.sharedUntil, ks.last.Add(sharedFor))
}

// update moves the key's last slot time by f with compare-and-set, trying again while other
// replicas move it first. f is given the last slot time and the time now, both in server
// time. Callers hold ks.mu.
func (l *Limiter) update(ctx context.Context, ks *keyState, key string, f func(last, now time.Time) time.Time) (time.Time, error) {
	k := kvKey(key)
	known := ks.rev != 0 // try the cached value first
	for {
		if !known {
			e, err := l.kv.Get(ctx, k)
			if err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
				return time.Time{}, fmt.Errorf("rate limit %s: %w", key, err)
			}
			ks.learn(e, err, l.sharedFor)
		}
		r, err := l.clock.reading(ctx)
		if err != nil {
			return time.Time{}, fmt.Errorf("rate limit %s: %w", key, err)
		}
		next := f(ks.last, r.serverTime(l.now()))
		var buf [8]byte
		binary.BigEndian.PutUint64(buf[:], uint64(next.UnixNano()))
		var rev uint64
		sent := l.now()
		if ks.rev == 0 {
			rev, err = l.kv.Create(ctx, k, buf[:])
		} else {
			rev, err = l.kv.Update(ctx, k, buf[:], ks.rev)
		}
		if err == nil || kvcas.Conflict(err) { // a failed write's time tells nothing
			l.lead.wrote(l.now().Sub(sent))
		}
		if err == nil {
			ks.last, ks.rev = next, rev
			return next, nil
		}
		if !kvcas.Conflict(err) {
			return time.Time{}, fmt.Errorf("rate limit %s: %w", key, err)
		}
		if ctx.Err() != nil {
			return time.Time{}, ctx.Err()
		}
		known = false // another replica moved it: read it again
	}
}

func kvKey(key string) string { return kvkey.Join(strings.Split(key, "/")...) }
