package ratelimit

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/paystatus/orderstatus/internal/natstest"
)

// sleepTo waits until t on the local clock.
func sleepTo(t time.Time) { time.Sleep(time.Until(t)) }

// A key whose limit is far above its demand (qps 100000, a call about every millisecond, one
// at a time, as a pacer with a queue of one makes them) costs a handful of KV writes, not one
// per call: the limiter reserves a horizon of slots ahead in one write and spends them locally.
// The writes grow with the run's time (a reservation, then a renewal about every three
// quarters of a horizon), not with its calls: the bound is taken from the run's length, as a
// loaded machine stretches it (it was a fixed 10 writes, about 2 s of a horizon's renewals).
func TestHighLimitLowDemandWritesLittle(t *testing.T) {
	const qps, calls = 100000, 200
	kv := &natstest.SlowKV{KeyValue: bucket(t)}
	l := New(kv)
	ctx := context.Background()
	var prev time.Time
	start := time.Now()
	for i := range calls {
		at, err := l.Next(ctx, "kuaishou/app-1/query_order", qps, 1)
		if err != nil {
			t.Fatal(err)
		}
		if i > 0 && at.Sub(prev) < Spacing(qps) {
			t.Fatalf("call %d: slot %s after the last, spacing %s", i, at.Sub(prev), Spacing(qps))
		}
		prev = at
		sleepTo(at)
		time.Sleep(time.Millisecond)
	}
	w, run := kv.Writes.Load(), time.Since(start)
	// One clock reading, one reservation, a renewal a horizon at most (they come every three
	// quarters of one), and one spare for a renewal under way when the run ends.
	bound := 3 + 2*int64((run+aheadHorizon-1)/aheadHorizon)
	t.Logf("figures: qps=%d calls=%d run=%s kv_writes=%d bound=%d writes_per_call=%.3f (one write a call before reserving ahead)",
		qps, calls, run.Round(time.Millisecond), w, bound, float64(w)/calls)
	if w > bound {
		t.Fatalf("%d KV writes for %d calls in %s: more than a horizon's worth", w, calls, run)
	}
}

// A run hands each slot out once, in order: reserved ahead, the latest slot not after the
// call's time (at most one spacing late), or the next; reserved by demand, the first not yet
// LateTolerance old (a backlog catches up).
func TestRunTake(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	take := func(r *run, now time.Time) time.Duration {
		t.Helper()
		at, ok := r.take(now)
		if !ok {
			return -1
		}
		return at.Sub(t0)
	}

	sp := Spacing(100000)
	ahead := run{next: t0, end: t0.Add(99 * sp), spacing: sp, qps: 100000, ahead: true}
	for _, step := range []struct {
		now  time.Time
		want time.Duration
	}{
		{t0.Add(-time.Millisecond), 0},  // early: waits for the first slot
		{t0.Add(5*sp + sp/2), 5 * sp},   // the latest not after now: half a spacing late
		{t0.Add(5*sp + sp/2), 6 * sp},   // the same time again: the next, never the same
		{t0.Add(6 * sp), 7 * sp},        // a slot handed out is not handed out again
		{t0.Add(99 * sp), 99 * sp},      // the last
		{t0.Add(99 * sp), -1},           // none left
		{t0.Add(-time.Millisecond), -1}, // nor after
	} {
		if got := take(&ahead, step.now); got != step.want {
			t.Fatalf("ahead, call at %s: slot %s, want %s", step.now.Sub(t0), got, step.want)
		}
	}

	// Ahead, the latest slot not after now is taken only if it is inside LateTolerance: a run
	// ahead whose spacing is wider (never made so today: it holds 50 slots in 250 ms at least)
	// must not hand out a slot 19 ms late.
	wide := run{next: t0, end: t0.Add(10 * 20 * time.Millisecond), spacing: 20 * time.Millisecond, qps: 50, ahead: true}
	if got := take(&wide, t0.Add(19*time.Millisecond)); got != 20*time.Millisecond {
		t.Fatalf("ahead, spacing 20 ms, call at 19 ms: slot %s, want 20ms", got)
	}

	sp = Spacing(30)
	demand := run{next: t0, end: t0.Add(3 * sp), spacing: sp, qps: 30}
	for _, step := range []struct {
		now  time.Time
		want time.Duration
	}{
		{t0.Add(LateTolerance), 0},               // late, but within tolerance
		{t0.Add(sp + LateTolerance + 1), 2 * sp}, // too late for the second: thrown away
		{t0.Add(2 * sp), 3 * sp},                 // catching up: the next, though ahead
		{t0.Add(2 * sp), -1},
	} {
		if got := take(&demand, step.now); got != step.want {
			t.Fatalf("by demand, call at %s: slot %s, want %s", step.now.Sub(t0), got, step.want)
		}
	}
}

// The limit holds while replicas with clocks 500 ms apart switch a key between calls far below
// its limit (reserved ahead) and bursts at it (reserved by demand), counted in real time. With
// sharedFor 0 the replicas reserve ahead whenever nobody holds future slots, however often they
// meet each other's writes: the most reserving ahead the design allows.
func TestReservingAheadKeepsTheLimit(t *testing.T) {
	const qps = 300 // the smallest limits that reserve ahead: slots 3.5 ms apart, 71 in a horizon
	const key = "kuaishou/app-1/query_order"
	if h := int(aheadHorizon / Spacing(qps)); h < aheadMinSlots {
		t.Fatalf("qps %d reserves %d slots ahead, fewer than %d: raise it", qps, h, aheadMinSlots)
	}
	for _, shared := range []time.Duration{sharedFor, 0} {
		t.Run(fmt.Sprintf("sharedFor=%s", shared), func(t *testing.T) {
			kv := bucket(t)
			skews := []time.Duration{-250 * time.Millisecond, 0, 250 * time.Millisecond}
			const run = 3200 * time.Millisecond
			ctx, cancel := context.WithTimeout(context.Background(), run)
			defer cancel()
			start := time.Now()
			var mu sync.Mutex
			var calls []time.Time
			record := func() {
				mu.Lock()
				calls = append(calls, time.Now())
				mu.Unlock()
			}
			// Calls each caller made: every one of them must have been served, the slow ones
			// (reserving ahead) and the bursts (by demand, with the others' horizons about).
			var slowCalls [3]atomic.Int64
			var burstCalls [3][4]atomic.Int64
			var wg sync.WaitGroup
			var limiters []*Limiter
			for i, skew := range skews {
				l := New(kv, WithClock(skewed(skew)))
				l.sharedFor = shared
				limiters = append(limiters, l)
				// Far below the limit all along: a call every 40 ms.
				wg.Go(func() {
					for l.Wait(ctx, key, qps, 1) == nil {
						record()
						slowCalls[i].Add(1)
						time.Sleep(40 * time.Millisecond)
					}
				})
				// A burst at the limit, each replica at its own time, overlapping the next
				// replica's so that the limit binds from 0.6 s to 2.5 s: 4 callers, demand 4.
				burst := start.Add(600*time.Millisecond + time.Duration(i)*500*time.Millisecond)
				for j := range 4 {
					wg.Go(func() {
						sleepTo(burst)
						bctx, bcancel := context.WithDeadline(ctx, burst.Add(900*time.Millisecond))
						defer bcancel()
						for l.Wait(bctx, key, qps, 4) == nil {
							record()
							burstCalls[i][j].Add(1)
						}
					})
				}
			}
			wg.Wait()
			var claims int64
			for _, l := range limiters {
				claims += l.Stats().Ahead
			}
			m := MaxCallsPerWindow(calls, time.Second)
			t.Logf("figures: qps=%d replicas=%d skews=%v shared_for=%s calls=%d reservations_ahead=%d max_calls_per_window=%d",
				qps, len(skews), skews, shared, len(calls), claims, m)
			if m > qps {
				t.Fatalf("%d calls in one second, limit %d", m, qps)
			}
			if claims == 0 {
				t.Fatal("no reservation ahead: the test does not test it")
			}
			// Every caller served, rather than a count of calls in the run (a loaded machine
			// makes fewer calls whatever the limiter does): a replica's horizon that kept
			// another's burst waiting, or a burst that kept the slow callers out, leaves one
			// with none.
			for i := range skews {
				if slowCalls[i].Load() == 0 {
					t.Fatalf("replica %d's slow caller made no call", i)
				}
				for j := range burstCalls[i] {
					if burstCalls[i][j].Load() == 0 {
						t.Fatalf("replica %d's burst caller %d made no call", i, j)
					}
				}
			}
		})
	}
}

// A second replica calling a key the first has reserved ahead waits for the first's horizon
// and no longer: its slot follows the horizon's last, at most aheadHorizon (plus a write) from
// its now, in server time. Then each has met the other's write, and neither reserves ahead.
func TestOtherReplicaWaitsAtMostTheHorizon(t *testing.T) {
	const qps = 100000
	const key = "kuaishou/app-1/query_order"
	kv := bucket(t)
	ctx := context.Background()
	a := New(kv)
	b := New(kv, WithClock(skewed(300*time.Millisecond))) // its own clock says nothing
	snapshot := func(l *Limiter) (run, time.Time) {
		ks := l.state(key)
		ks.mu.Lock()
		defer ks.mu.Unlock()
		return ks.run, ks.sharedUntil
	}

	if _, err := a.Next(ctx, key, qps, 1); err != nil {
		t.Fatal(err)
	}
	ra, _ := snapshot(a)
	if !ra.ahead || a.Stats().Ahead != 1 {
		t.Fatalf("the first replica did not reserve ahead: %+v", ra)
	}
	atB, err := b.Next(ctx, key, qps, 1)
	if err != nil {
		t.Fatal(err)
	}
	r, _ := b.clock.current()
	slotB, nowB := r.serverTime(atB), b.ServerNow(ctx)
	wait := slotB.Sub(nowB)
	t.Logf("figures: horizon=%s first_replica_horizon_left=%s second_replica_wait=%s",
		aheadHorizon, ra.end.Sub(nowB).Round(time.Millisecond), wait.Round(time.Millisecond))
	if !slotB.After(ra.end) {
		t.Fatalf("second replica's slot %s before the first's horizon ends (%s)", slotB, ra.end)
	}
	if wait > aheadHorizon+300*time.Millisecond {
		t.Fatalf("second replica waits %s, horizon %s", wait, aheadHorizon)
	}
	if rb, until := snapshot(b); rb.ahead || !until.After(nowB) {
		t.Fatalf("second replica reserved ahead (%v) or did not see the first's write (shared until %s)", rb.ahead, until)
	}

	// The first replica calls on, past its horizon: its next write meets the second's, and
	// from then on it reserves by demand; so does the second. It calls until that write is
	// made (a fixed time, once, could end before it on a loaded machine).
	for deadline := time.Now().Add(10 * time.Second); ; {
		at, err := a.Next(ctx, key, qps, 1)
		if err != nil {
			t.Fatal(err)
		}
		if ra, until := snapshot(a); !ra.ahead && until.After(a.ServerNow(ctx)) {
			break
		}
		if time.Now().After(deadline) {
			ra, until := snapshot(a)
			t.Fatalf("the first replica still reserves ahead (%v, shared until %s) 10 s on", ra.ahead, until)
		}
		sleepTo(at)
		time.Sleep(time.Millisecond)
	}
	if _, err := b.Next(ctx, key, qps, 1); err != nil {
		t.Fatal(err)
	}
	ra, untilA := snapshot(a)
	rb, _ := snapshot(b)
	if ra.ahead || rb.ahead || !untilA.After(a.ServerNow(ctx)) {
		t.Fatalf("after meeting: first ahead=%v (shared until %s), second ahead=%v", ra.ahead, untilA, rb.ahead)
	}
	if n, m := a.Stats().Ahead, b.Stats().Ahead; n != 1 || m != 0 {
		t.Fatalf("reservations ahead: first %d, second %d; want 1 and 0", n, m)
	}
}
