// Package ratelimit keeps every provider endpoint under its QPS limit across all replicas of
// the consumer together.
//
// Each limited key (provider, app, endpoint) has one value in a JetStream KV bucket: the time
// of the last call slot handed out. Slots are spaced Spacing(qps) apart, so any window of one
// second holds at most qps of them, whichever replica made the calls; a backlog drains at
// qps/(1+margin) (95.2%) of the limit. A replica reserves the slots its queued work needs in one
// compare-and-set, then spends each at its time. A slot that cannot be spent on time is thrown
// away, never spent late: late calls could crowd a later window. So that a slow KV write does
// not make the slot it reserves late by the time it returns, a slot is reserved no sooner than
// the time writes take from now.
//
// # Reserving ahead
//
// A key whose limit is far above what this replica asks of it (an app at 50 calls a second
// under a limit of 100000) would cost a write for every call, each waited for. Instead the
// replica reserves every slot of the next aheadHorizon (250 ms) in that one write, and the
// calls after it take, each, the first slot at or after their time, with no write; slots
// passed over are never spent, which only lowers the rate. This is as safe as reserving by
// demand: the slots are consecutive slots of the shared schedule, and any subset of them,
// each spent within LateTolerance of its time, holds the limit. It is done when all of these
// hold (see reserve):
//   - the key's recent rate from this replica (a moving rate over about a second) and its
//     queue are both at most qps/aheadDemand (a tenth): well away from the limit, where
//     unspent slots cost nobody anything; a key nearer its limit, or with a backlog, reserves
//     by demand as before and drains at 95% of qps;
//   - the horizon holds at least aheadMinSlots (50) slots, i.e. slots at most 5 ms apart
//     (qps of 210 or more): a call waits for the next slot, up to one spacing, which should
//     cost no more than the write it saves;
//   - the key's last slot is not ahead of now: nobody, this replica included, holds future
//     slots, so the horizon runs from now (plus the write time) to aheadHorizon later;
//   - this replica has not seen another's write of the key (a compare-and-set conflict reads
//     one) whose last slot is less than sharedFor (10 s) old.
//
// While the key is used, its horizon is renewed in the background before it runs out (see
// renew): about renewBefore its end, one compare-and-set on the revision this replica wrote
// (the stored last slot is still the horizon's end) reserves the slots after it, up to as far
// as a reservation from now would reach, and callers spend the current slots meanwhile, so a
// call does not wait for the write. It is renewed only while the key still qualifies as above,
// and only after a call from the horizon, so an idle key claims at most one more horizon.
//
// The bound for other replicas: slots reserved ahead and not spent still move the shared
// schedule on, so a call of another replica for the key may wait up to aheadHorizon longer
// than it would have (plus one write time, as every reservation waits): it is reserved after
// the horizon and never later. A renewal does not lengthen that: it never puts the key's last
// slot further ahead of now than a fresh horizon (aheadHorizon plus the write time), and a
// renewal that finds another replica's write (its compare-and-set fails) reads it and
// reserves nothing, as a conflict does. Renewing back to back keeps the key claimed for as
// long as this replica uses it; another replica's call then waits at most one horizon plus a
// write, once: the reserving replica's next write (a renewal, or a reservation at most
// aheadHorizon later) meets the other's write, and from then on both reserve by demand, for as
// long as either writes the key at least every sharedFor. A key several replicas call steadily
// thus reserves by demand, as before; the saving is for keys one replica calls at a time. It also means a rate-limit answer (Slowdown) elsewhere leaves
// this replica's horizon to be spent, at most aheadHorizon of slots at under a tenth of qps,
// as a reservation by demand (up to qps slots) would be.
//
// Slot times are times of the NATS server's clock, read from the Created time of a KV entry
// (see serverClock), never of a replica's own: replicas whose clocks disagree by any amount
// still agree on the slots to within the round trip of that reading. Each replica turns a
// slot into a time of its own clock only to wait for it.
package ratelimit

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/paystatus/orderstatus/internal/kvcas"
	"github.com/paystatus/orderstatus/internal/kvkey"
)

// Margin widens each one-second window a little, so that calls that leave replicas one
// second apart but meet jitter on the way still arrive at most qps to a second. On a loaded
// machine a call can reach the provider 25 ms after its slot: 50 ms leaves 37.5 ms for the
// way, past LateTolerance, at the cost of draining a backlog at 95.2% of qps.
const Margin = 50 * time.Millisecond

// LateTolerance is how late a slot may still be spent. Calls at most Margin late still put no
// more than qps in any one-second window (slots are (1s+Margin)/qps apart); what Margin leaves
// beyond it is for jitter on the way and for how closely the replicas read the server's clock
// (see serverClock).
const LateTolerance = 12500 * time.Microsecond

// Spacing is the time between two slots of a key limited to qps calls a second.
func Spacing(qps int) time.Duration {
	return (time.Second + Margin) / time.Duration(max(qps, 1))
}

const (
	// aheadHorizon is how far ahead a key far below its limit reserves (see the package
	// comment): another replica's call may wait that much longer once. 250 ms turns a write a
	// call into one per 12 calls at 50 calls a second; it is a quarter of what a reservation
	// by demand may already hold (qps slots, 1.05 s).
	aheadHorizon = 250 * time.Millisecond
	// aheadDemand: a key reserves ahead while this replica's rate and queue for it are at most
	// qps/aheadDemand.
	aheadDemand = 10
	// aheadMinSlots is the fewest slots a horizon worth reserving holds.
	aheadMinSlots = 50
	// sharedFor is how long after another replica's last slot for a key this replica keeps
	// reserving by demand.
	sharedFor = 10 * time.Second
	// rateWindow is the time constant of a key's moving rate.
	rateWindow = time.Second
	// renewBefore is how long before its end a horizon in use is renewed (longer, up to half
	// a horizon, when writes take over a quarter of it): the write returns long before the
	// slots run out. A renewal made then extends the key's claim by the other three quarters.
	renewBefore = aheadHorizon / 4
)

// Limiter hands out call slots.
type Limiter struct {
	kv    jetstream.KeyValue
	now   func() time.Time // the local clock
	clock *serverClock
	// lead is how long writes to kv take, recently (nanoseconds): a slot is reserved at
	// least that far from now, to be on time when the write reserving it returns.
	lead atomic.Int64

	// sharedFor is sharedFor, but for tests.
	sharedFor time.Duration
	// aheadClaims counts reservations ahead of demand, for tests.
	aheadClaims atomic.Int64
	// waited counts the Next calls that waited for a KV round trip of the key (a reservation,
	// or a renewal under way), for tests.
	waited atomic.Int64
	// renewed and renewConflicts count the renewals of a horizon in the background, and those
	// that met another replica's write, for tests.
	renewed, renewConflicts atomic.Int64

	mu   sync.Mutex
	keys map[string]*keyState
}

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

// Option configures a Limiter.
type Option func(*Limiter)

// WithClock makes the limiter read the local time from now instead of time.Now, as if its
// machine's clock said so: a test gives replicas clocks that disagree this way.
func WithClock(now func() time.Time) Option {
	return func(l *Limiter) { l.now = now }
}

// New returns a limiter keeping its state in kv.
func New(kv jetstream.KeyValue, opts ...Option) *Limiter {
	l := &Limiter{kv: kv, now: time.Now, sharedFor: sharedFor, keys: map[string]*keyState{}}
	for _, o := range opts {
		o(l)
	}
	l.clock = &serverClock{kv: kv, now: l.now, wrote: l.wrote}
	return l
}

func (l *Limiter) state(key string) *keyState {
	l.mu.Lock()
	defer l.mu.Unlock()
	ks := l.keys[key]
	if ks == nil {
		ks = &keyState{}
		l.keys[key] = ks
	}
	return ks
}

// Wait returns at the time of a call slot for key, or when ctx ends. demand is how many calls
// the caller has waiting (it reserves that many slots at once, up to qps).
func (l *Limiter) Wait(ctx context.Context, key string, qps, demand int) error {
	for {
		at, err := l.Next(ctx, key, qps, demand)
		if err != nil {
			return err
		}
		if d := at.Sub(l.now()); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			}
		}
		if l.now().Sub(at) <= LateTolerance {
			return nil
		}
		// Woke too late (a pause, a busy machine): the slot is thrown away.
	}
}

// Next hands out the time of the next call slot for key without waiting for it, as a time
// of the limiter's local clock (time.Now unless WithClock says otherwise); the caller must
// make its call at that time and no later than LateTolerance after it, or not at all.
func (l *Limiter) Next(ctx context.Context, key string, qps, demand int) (time.Time, error) {
	ks := l.state(key)
	ks.mu.Lock()
	defer ks.mu.Unlock()
	for {
		r, err := l.clock.reading(ctx)
		if err != nil {
			return time.Time{}, fmt.Errorf("rate limit %s: %w", key, err)
		}
		now := r.serverTime(l.now())
		if ks.run.qps != qps {
			ks.run = run{} // the limit changed: slots of the old spacing are not spent
		}
		if at, ok := ks.run.take(now); ok {
			ks.rate, ks.rateAt = ks.rateNow(now)+1/rateWindow.Seconds(), maxTime(ks.rateAt, now)
			ks.demand = demand
			if ks.run.ahead {
				l.scheduleRenewal(ks, key, r)
			}
			return r.localTime(at), nil
		}
		// No slot left. A renewal under way brings more (it was late): wait for it, then
		// take again. Otherwise reserve now, and a renewal due is not needed any more.
		l.waited.Add(1)
		if ks.renewing != nil {
			if err := ks.awaitRenewal(ctx); err != nil {
				return time.Time{}, err
			}
			continue
		}
		ks.stopRenewal()
		if err := l.reserve(ctx, ks, key, qps, demand, now); err != nil {
			return time.Time{}, err
		}
	}
}

// rateNow is the key's moving rate (calls a second) at server time now.
func (ks *keyState) rateNow(now time.Time) float64 {
	dt := now.Sub(ks.rateAt)
	if ks.rateAt.IsZero() || dt <= 0 {
		return ks.rate
	}
	return ks.rate * math.Exp(-dt.Seconds()/rateWindow.Seconds())
}

// run is a span of consecutive slots reserved by one write, in server time: next, next +
// spacing, … up to end. Those before next are spent or passed over.
type run struct {
	next, end time.Time
	spacing   time.Duration
	qps       int // the limit the slots were reserved under
	// ahead says the run was reserved ahead of demand: a call takes the latest slot not after
	// its time (or the next, if none is left before it). Otherwise it takes the first not yet
	// LateTolerance old, so that a backlog catches up after a late wake-up.
	ahead bool
}

// take hands out the run's slot for a call at server time now; false if it has none left.
// A slot is handed out once, and the slots before it are never handed out after it.
func (r *run) take(now time.Time) (time.Time, bool) {
	if r.spacing <= 0 {
		return time.Time{}, false
	}
	if d := now.Sub(r.next); r.ahead && d > 0 {
		// The latest slot not after now, if it is inside LateTolerance (a run ahead holds 50
		// slots in 250 ms at least, so it is under 5 ms late): the call leaves at once instead
		// of sleeping a few microseconds for the next slot (a timer, and a goroutine parked
		// and woken, a call). Else the first after now. The slots before it are thrown away.
		r.next = r.next.Add(d / r.spacing * r.spacing)
		if now.Sub(r.next) > LateTolerance {
			r.next = r.next.Add(r.spacing)
		}
	} else if d := now.Add(-LateTolerance).Sub(r.next); !r.ahead && d > 0 { // missed: thrown away, which only lowers the rate
		r.next = r.next.Add((d + r.spacing - 1) / r.spacing * r.spacing)
	}
	if r.next.After(r.end) {
		*r = run{}
		return time.Time{}, false
	}
	at := r.next
	r.next = at.Add(r.spacing)
	return at, true
}

// Slowdown pauses key for a second across all replicas: the provider said the app is over
// its quota, so someone else shares it. The pause runs to a second from now, not a second
// past the last slot: the refusals of the calls already under way (up to qps of them, from
// every replica) all answer the same overload and pause the app once together.
func (l *Limiter) Slowdown(ctx context.Context, key string) error {
	ks := l.state(key)
	ks.mu.Lock()
	defer ks.mu.Unlock()
	if err := ks.awaitRenewal(ctx); err != nil {
		return err
	}
	ks.stopRenewal()
	ks.run = run{}
	_, err := l.update(ctx, ks, key, func(last time.Time, now time.Time) time.Time {
		return maxTime(last, now.Add(time.Second))
	})
	return err
}

// reserve reserves the key's next run of slots, for demand calls waiting at server time
// now: as many as are wanted (a slot reserved and not spent still moves the schedule on, and
// later calls would wait for time nobody used), up to qps; or, for a key far below its limit,
// the slots of aheadHorizon (see the package comment). Callers hold ks.mu.
func (l *Limiter) reserve(ctx context.Context, ks *keyState, key string, qps, demand int, now time.Time) error {
	spacing := Spacing(qps)
	n := min(max(demand, 1), qps)
	horizon := min(qps, int(aheadHorizon/spacing))
	mayAhead := horizon >= aheadMinSlots && demand*aheadDemand <= qps && ks.rateNow(now)*aheadDemand <= float64(qps)
	var r run
	end, err := l.update(ctx, ks, key, func(last, now time.Time) time.Time {
		m := n
		// Decided on the value this write replaces: a conflict reads the key again, and may
		// find another replica's write (sharedUntil) or slots ahead of now.
		ahead := mayAhead && !last.After(now) && !now.Before(ks.sharedUntil)
		if ahead {
			m = max(n, horizon)
		}
		first := maxTime(now.Add(time.Duration(l.lead.Load())), last.Add(spacing))
		r = run{next: first, spacing: spacing, qps: qps, ahead: ahead}
		return first.Add(time.Duration(m-1) * spacing)
	})
	if err != nil {
		return err
	}
	r.end = end
	if r.ahead {
		l.aheadClaims.Add(1)
	}
	ks.run = r
	return nil
}

// scheduleRenewal has the key's horizon renewed in the background, renewBefore its end, if
// no renewal is due or under way and the key's stored last slot is still the horizon's end
// (this replica wrote it last, as far as it knows). A call from the horizon schedules it, so a
// key renews only while it is used: an idle key claims at most one horizon more. Callers hold
// ks.mu; r is the reading the call's slot was taken with.
func (l *Limiter) scheduleRenewal(ks *keyState, key string, r reading) {
	if ks.renewTimer != nil || ks.renewing != nil || ks.rev == 0 || !ks.run.end.Equal(ks.last) {
		return
	}
	before := max(renewBefore, min(4*time.Duration(l.lead.Load()), aheadHorizon/2))
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
// It renews only while the key still qualifies for reserving ahead (see reserve). If another
// replica wrote the key since, the renewal reads its write, as a conflict of reserve does, and
// reserves nothing: from then on the key reserves by demand (sharedUntil), so a renewal never
// makes another replica wait longer than a horizon. gen is the renewal's scheduleRenewal.
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
	horizon := 0
	if spacing > 0 {
		horizon = min(qps, int(aheadHorizon/spacing))
	}
	ok = ok && ks.run.ahead && ks.rev != 0 && ks.run.end.Equal(ks.last) && horizon >= aheadMinSlots &&
		ks.demand*aheadDemand <= qps && ks.rateNow(now)*aheadDemand <= float64(qps) && !now.Before(ks.sharedUntil)
	if !ok {
		ks.mu.Unlock()
		return
	}
	last, rev := ks.last, ks.rev
	done := make(chan struct{})
	ks.renewing = done
	ks.mu.Unlock()

	ctx, cancel := context.WithTimeout(context.WithValue(context.Background(), backgroundKey{}, true), renewTimeout)
	defer cancel()
	k := kvKey(key)
	// As far ahead as a reservation from now reaches, on the horizon's grid of slots.
	now = r.serverTime(l.now())
	reach := now.Add(time.Duration(l.lead.Load()) + time.Duration(horizon-1)*spacing)
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
			l.wrote(l.now().Sub(sent))
		}
		if kvcas.Conflict(err) {
			other, err = l.kv.Get(ctx, k)
			if err == nil || errors.Is(err, jetstream.ErrKeyNotFound) {
				l.renewConflicts.Add(1)
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
		l.renewed.Add(1)
		ks.last, ks.rev = end, newRev
		switch {
		case ks.run.spacing == spacing && ks.run.ahead && ks.run.end.Equal(last):
			ks.run.end = end
		case ks.run.spacing == 0: // spent meanwhile
			ks.run = run{next: last.Add(spacing), end: end, spacing: spacing, qps: qps, ahead: true}
		}
	}
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
			l.wrote(l.now().Sub(sent))
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

// maxLead bounds how far ahead of now a slot is reserved: writes slower than that are an
// outage, and a slot further ahead would keep callers idle long after it.
const maxLead = time.Second

// wrote learns from a write to kv that took d. A slower write raises the lead at once (the
// next slot must not be late); faster ones lower it a quarter of the way each, so one slow
// write does not delay calls for long.
func (l *Limiter) wrote(d time.Duration) {
	d = min(max(d, 0), maxLead)
	for {
		old := l.lead.Load()
		next := int64(d)
		if next < old {
			next = old - (old-next)/4
		}
		if l.lead.CompareAndSwap(old, next) {
			return
		}
	}
}

func kvKey(key string) string { return kvkey.Join(strings.Split(key, "/")...) }

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// ServerNow is the NATS server's time now, as this limiter reads it: a clock every replica
// shares, so that times taken by different replicas compare truly whatever their own clocks
// say. When the server's clock cannot be read it falls back to the local clock.
//
// A caller reads it between its slot and its call (a query's sent time), so it uses the
// reading it has and never waits for a new one: a refresh is a KV write and read, slower
// than LateTolerance on a slow bucket, and a call held back that long after its slot lets
// qps+1 calls into one second. Next refreshes the reading; only before the first one does
// ServerNow read the server's clock itself.
func (l *Limiter) ServerNow(ctx context.Context) time.Time {
	now := l.now()
	r, ok := l.clock.current()
	if !ok {
		var err error
		if r, err = l.clock.reading(ctx); err != nil {
			return now
		}
	}
	return r.serverTime(now)
}
