package ratelimit

import (
	"context"
	"encoding/binary"
	"errors"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/paystatus/orderstatus/internal/kvcas"
)

// renewBefore is how long before its end a horizon in use is renewed (longer, up to half
// a horizon, when writes take over a quarter of it): the write returns long before the
// slots run out. A renewal made then extends the key's claim by the other three quarters.
const renewBefore = aheadHorizon / 4

// stopRenewal cancels a renewal that is due and not yet under way. Callers hold ks.mu.
func (ks *keyState) stopRenewal() {
	if ks.renewTimer != nil {
		ks.renewTimer.Stop()
		ks.renewTimer = nil
		ks.renewGen++
	}
}

// awaitRenewal waits, without holding ks.mu, for the renewal under way if there is one: the
// key's writes of this limiter are one at a time, so that a renewal's compare-and-set never
// races this replica's own write. Callers hold ks.mu.
func (ks *keyState) awaitRenewal(ctx context.Context) error {
	for ks.renewing != nil {
		ch := ks.renewing
		ks.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
		}
		ks.mu.Lock()
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	return nil
}

// scheduleRenewal has the key's horizon renewed in the background, renewBefore its end, if
// no renewal is due or under way and this limiter still holds the horizon (holdsHorizon). A
// call from the horizon schedules it, so a key renews only while it is used: an idle key
// claims at most one horizon more. Callers hold ks.mu; r is the reading the call's slot was
// taken with.
func (l *Limiter) scheduleRenewal(ks *keyState, key string, r reading) {
	if ks.renewTimer != nil || ks.renewing != nil || !ks.holdsHorizon() {
		return
	}
	before := max(renewBefore, min(4*l.lead.get(), aheadHorizon/2))
	gen := ks.renewGen
	ks.renewTimer = time.AfterFunc(max(r.localTime(ks.run.end.Add(-before)).Sub(l.now()), 0), func() {
		l.renew(ks, key, gen)
	})
}

// backgroundKey marks the context of a renewal's KV requests (see Background).
type backgroundKey struct{}

// Background reports whether ctx is that of a KV request the limiter makes in the background,
// renewing a horizon: no caller waits for its answer.
func Background(ctx context.Context) bool { return ctx.Value(backgroundKey{}) != nil }

// renewTimeout bounds a renewal's KV requests.
const renewTimeout = 2 * time.Second

// renew reserves the slots after the key's horizon, from its end up to as far ahead as a
// reservation from now would reach (so the key's last slot is never further ahead than a
// fresh horizon's), in one compare-and-set on the revision this replica wrote; callers keep
// spending the horizon meanwhile, and the new slots are added to it when the write returns.
// It renews only while the key still qualifies for reserving ahead (mayReserveAhead). If
// another replica wrote the key since, the renewal reads its write, as a conflict of reserve
// does, and reserves nothing: from then on the key reserves by demand (sharedUntil), so a
// renewal never makes another replica wait longer than a horizon. gen is the renewal's
// scheduleRenewal.
func (l *Limiter) renew(ks *keyState, key string, gen uint64) {
	ks.mu.Lock()
	if ks.renewGen != gen || ks.renewTimer == nil {
		ks.mu.Unlock()
		return // stopped
	}
	ks.renewTimer = nil
	ks.renewGen++
	r, ok := l.clock.current()
	now := r.serverTime(l.now())
	qps, spacing := ks.run.qps, ks.run.spacing
	if !ok || !ks.holdsHorizon() || !ks.mayReserveAhead(qps, ks.demand, ks.rateNow(now), now) {
		ks.mu.Unlock()
		return
	}
	horizon := horizonSlots(qps)
	last, rev := ks.last, ks.rev
	done := make(chan struct{})
	ks.renewing = done
	ks.mu.Unlock()

	ctx, cancel := context.WithTimeout(context.WithValue(context.Background(), backgroundKey{}, true), renewTimeout)
	defer cancel()
	k := kvKey(key)
	// As far ahead as a reservation from now reaches, on the horizon's grid of slots.
	now = r.serverTime(l.now())
	reach := now.Add(l.lead.get() + time.Duration(horizon-1)*spacing)
	end, newRev, err := time.Time{}, uint64(0), error(nil)
	var other jetstream.KeyValueEntry
	n := reach.Sub(last) / spacing
	if n >= 1 {
		end = last.Add(n * spacing)
		var buf [8]byte
		binary.BigEndian.PutUint64(buf[:], uint64(end.UnixNano()))
		sent := l.now()
		newRev, err = l.kv.Update(ctx, k, buf[:], rev)
		if err == nil || kvcas.Conflict(err) {
			l.lead.wrote(l.now().Sub(sent))
		}
		if kvcas.Conflict(err) {
			other, err = l.kv.Get(ctx, k)
			if err == nil || errors.Is(err, jetstream.ErrKeyNotFound) {
				l.counts.renewalConflicts.Add(1)
			}
		}
	}

	ks.mu.Lock()
	defer ks.mu.Unlock()
	defer close(done)
	ks.renewing = nil
	if ks.rev != rev { // cannot happen: the key's writes of this limiter wait for renewing
		return
	}
	switch {
	case n < 1:
	case other != nil || errors.Is(err, jetstream.ErrKeyNotFound):
		// Another replica wrote the key (or it was deleted): the horizon is spent as it is,
		// and the key reserves by demand from then on.
		ks.learn(other, err, l.sharedFor)
	case err != nil: // an outage: the next reservation tries again
	default:
		l.counts.renewals.Add(1)
		ks.last, ks.rev = end, newRev
		switch {
		case ks.run.spacing == spacing && ks.run.ahead && ks.run.end.Equal(last):
			ks.run.end = end
		case ks.run.spacing == 0: // spent meanwhile
			ks.run = run{next: last.Add(spacing), end: end, spacing: spacing, qps: qps, ahead: true}
		}
	}
}
