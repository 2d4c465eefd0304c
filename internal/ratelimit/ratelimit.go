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
// The bound for other replicas: slots reserved ahead and not spent still move the shared
// schedule on, so a call of another replica for the key may wait up to aheadHorizon longer
// than it would have (plus one write time, as every reservation waits): it is reserved after
// the horizon and never later. That happens only until the reserving replica's next write of
// the key, at most aheadHorizon later, which meets the other's write; from then on both
// reserve by demand, for as long as either writes the key at least every sharedFor. A key
// several replicas call steadily thus reserves by demand, as before; the saving is for keys
// one replica calls at a time. It also means a rate-limit answer (Slowdown) elsewhere leaves
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
// second apart but meet jitter on the way still arrive at most qps to a second. It was 25 ms;
// on a loaded machine a call now and then reached the provider 25 ms after its slot, and 41
// calls arrived within one second at qps 40: 50 ms leaves 37.5 ms for the way, past
// LateTolerance, at the cost of draining a backlog at 95.2% of qps rather than 97.5%.
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
			return r.localTime(at), nil
		}
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
	// ahead says the run was reserved ahead of demand: a call takes the first slot at or
	// after its time. Otherwise it takes the first not yet LateTolerance old, so that a
	// backlog catches up after a late wake-up.
	ahead bool
}

// take hands out the run's slot for a call at server time now; false if it has none left.
// A slot is handed out once, and the slots before it are never handed out after it.
func (r *run) take(now time.Time) (time.Time, bool) {
	if r.spacing <= 0 {
		return time.Time{}, false
	}
	from := now.Add(-LateTolerance)
	if r.ahead {
		from = now
	}
	if d := from.Sub(r.next); d > 0 { // missed: thrown away, which only lowers the rate
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

// update moves the key's last slot time by f with compare-and-set, trying again while other
// replicas move it first. f is given the last slot time and the time now, both in server
// time. Callers hold ks.mu.
func (l *Limiter) update(ctx context.Context, ks *keyState, key string, f func(last, now time.Time) time.Time) (time.Time, error) {
	k := kvKey(key)
	known := ks.rev != 0 // try the cached value first
	for {
		if !known {
			e, err := l.kv.Get(ctx, k)
			switch {
			case errors.Is(err, jetstream.ErrKeyNotFound):
				ks.last, ks.rev = time.Time{}, 0
			case err != nil:
				return time.Time{}, fmt.Errorf("rate limit %s: %w", key, err)
			default:
				ks.last, ks.rev = time.Time{}, e.Revision()
				if v := e.Value(); len(v) == 8 {
					ks.last = time.Unix(0, int64(binary.BigEndian.Uint64(v)))
				}
				// Another replica's write (or an earlier run of this one's): it may be
				// calling the key too, and would wait for slots reserved ahead.
				ks.sharedUntil = maxTime(ks.sharedUntil, ks.last.Add(l.sharedFor))
			}
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
