package ratelimit

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/paystatus/orderstatus/internal/natstest"
)

// A key in the reserve-ahead regime renews its horizon in the background before it runs out:
// a caller making about a call a millisecond for 2 s at qps 100000 waits for a KV write once,
// for the first reservation, and never again while it keeps calling (one write in 250 ms
// before, each waited for). A caller that was away longer than the renewal's lead (a loaded
// machine did not run it) finds its horizon spent, as an idle key's is: such a call's wait is
// not counted, and the run is made again, up to three times, if none renewed.
func TestRenewingAheadNeverWaits(t *testing.T) {
	const qps = 100000
	const key = "kuaishou/app-1/query_order"
	for attempt := 1; ; attempt++ {
		kv := &natstest.SlowKV{KeyValue: bucket(t), Delay: 2 * time.Millisecond}
		l := New(kv)
		ctx := context.Background()
		var prev, returned time.Time
		calls, active, excused := 0, 0, 0
		start := time.Now()
		for time.Since(start) < 2*time.Second {
			away := calls > 0 && time.Since(returned) > renewBefore/2
			waits := l.Stats().Waits
			at, err := l.Next(ctx, key, qps, 1)
			if err != nil {
				t.Fatal(err)
			}
			returned = time.Now()
			switch waited := l.Stats().Waits > waits; {
			case waited && away:
				excused++
			case waited && calls > 0:
				active++
			}
			if calls > 0 && at.Sub(prev) < Spacing(qps) {
				t.Fatalf("call %d: slot %s after the last, spacing %s", calls, at.Sub(prev), Spacing(qps))
			}
			prev = at
			calls++
			sleepTo(at)
			time.Sleep(time.Millisecond)
		}
		renewals := l.Stats().Renewals
		t.Logf("figures: qps=%d calls=%d run=%s waits_while_calling=%d waits_after_an_absence=%d kv_writes=%d background_renewals=%d",
			qps, calls, time.Since(start).Round(time.Millisecond), active, excused, kv.Writes.Load(), renewals)
		if active != 0 {
			t.Fatalf("%d Next calls of a caller that kept calling waited for a KV round trip after the first reservation; want 0", active)
		}
		if renewals > 0 {
			return
		}
		if attempt == 3 {
			t.Fatal("no renewal in three runs: the test does not test it")
		}
	}
}

// slotOf waits for a slot as Wait does and returns it in server time.
func slotOf(ctx context.Context, l *Limiter, key string, qps, demand int) (time.Time, error) {
	for {
		at, err := l.Next(ctx, key, qps, demand)
		if err != nil {
			return time.Time{}, err
		}
		r, _ := l.clock.current()
		sleepTo(at)
		if ctx.Err() != nil {
			return time.Time{}, ctx.Err()
		}
		if l.now().Sub(at) <= LateTolerance {
			return r.serverTime(at), nil
		}
	}
}

// Replicas with clocks 500 ms apart take turns on one key far below its limit, each for
// 300 ms at a call every 40 ms, so that each one's last renewal is still in flight when the
// next starts; each also bursts at the limit once. No one-second window holds more than qps
// calls, counted in real time, and no slot is handed out twice: the slots of all replicas, in
// server time, are at least a spacing apart.
func TestRenewalsWithReplicasTakingTurns(t *testing.T) {
	const qps = 300
	const key = "kuaishou/app-1/query_order"
	for _, shared := range []time.Duration{sharedFor, 0} {
		t.Run(fmt.Sprintf("sharedFor=%s", shared), func(t *testing.T) {
			for attempt := 1; ; attempt++ {
				kv := &natstest.SlowKV{KeyValue: bucket(t), Delay: time.Millisecond}
				skews := []time.Duration{-250 * time.Millisecond, 0, 250 * time.Millisecond}
				const run, turn = 3300 * time.Millisecond, 300 * time.Millisecond
				ctx, cancel := context.WithTimeout(context.Background(), run)
				defer cancel()
				start := time.Now()
				var mu sync.Mutex
				var calls, slots []time.Time
				record := func(slot time.Time) {
					mu.Lock()
					calls, slots = append(calls, time.Now()), append(slots, slot)
					mu.Unlock()
				}
				var wg sync.WaitGroup
				var limiters []*Limiter
				for i, skew := range skews {
					l := New(kv, WithClock(skewed(skew)))
					l.sharedFor = shared
					limiters = append(limiters, l)
					wg.Go(func() {
						for k := 0; ; k++ {
							from := start.Add(time.Duration(k*len(skews)+i) * turn)
							if !from.Before(start.Add(run)) {
								return
							}
							sleepTo(from)
							for time.Since(from) < turn {
								slot, err := slotOf(ctx, l, key, qps, 1)
								if err != nil {
									return
								}
								record(slot)
								time.Sleep(40 * time.Millisecond)
							}
						}
					})
					// A burst at the limit, 4 callers, each replica at its own time.
					burst := start.Add(700*time.Millisecond + time.Duration(i)*700*time.Millisecond)
					for range 4 {
						wg.Go(func() {
							sleepTo(burst)
							bctx, bcancel := context.WithDeadline(ctx, burst.Add(500*time.Millisecond))
							defer bcancel()
							for {
								slot, err := slotOf(bctx, l, key, qps, 4)
								if err != nil {
									return
								}
								record(slot)
							}
						})
					}
				}
				wg.Wait()
				var renewed, conflicts, claims int64
				for _, l := range limiters {
					renewed += l.Stats().Renewals
					conflicts += l.Stats().RenewalConflicts
					claims += l.Stats().Ahead
				}
				slices.SortFunc(slots, time.Time.Compare)
				closest := time.Hour
				for i := 1; i < len(slots); i++ {
					closest = min(closest, slots[i].Sub(slots[i-1]))
				}
				m := MaxCallsPerWindow(calls, time.Second)
				t.Logf("figures: qps=%d replicas=%d shared_for=%s calls=%d reservations_ahead=%d renewals=%d renewals_meeting_another_write=%d closest_slots=%s spacing=%s max_calls_per_window=%d",
					qps, len(skews), shared, len(calls), claims, renewed, conflicts, closest, Spacing(qps), m)
				if m > qps {
					t.Fatalf("%d calls in one second, limit %d", m, qps)
				}
				if closest < Spacing(qps) {
					t.Fatalf("two slots %s apart, spacing %s", closest, Spacing(qps))
				}
				if renewed == 0 && attempt < 3 {
					continue // a loaded machine kept every renewal from running: run it again
				}
				if renewed == 0 {
					t.Fatal("no renewal in three runs: the test does not test it")
				}
				break
			}
		})
	}
}

// gatedKV holds the limiter's background writes until open is closed; arrived is closed when
// the first reaches the gate.
type gatedKV struct {
	*natstest.SlowKV
	open, arrived chan struct{}
	once          sync.Once
}

func (g *gatedKV) Update(ctx context.Context, key string, value []byte, rev uint64) (uint64, error) {
	if Background(ctx) {
		g.once.Do(func() { close(g.arrived) })
		<-g.open
	}
	return g.SlowKV.Update(ctx, key, value, rev)
}

// A renewal in flight when another replica writes the key does not make the other wait longer:
// the other's slot follows the current horizon (at most aheadHorizon plus a write from its
// now), the renewal meets its write and reserves nothing, and from then on the first replica
// reserves by demand.
func TestRenewalInFlightMeetsAnotherReplica(t *testing.T) {
	const qps = 100000
	const key = "kuaishou/app-1/query_order"
	base := &natstest.SlowKV{KeyValue: bucket(t)}
	gated := &gatedKV{SlowKV: base, open: make(chan struct{}), arrived: make(chan struct{})}
	ctx := context.Background()
	a := New(gated)
	b := New(base, WithClock(skewed(300*time.Millisecond)))
	// a calls until its renewal is under way (held at the gate). A call made once the horizon
	// is spent (a loaded machine was late) waits for that renewal: it is left waiting, and
	// collected once the gate opens.
	var end time.Time
	var pending chan error
	for pending == nil {
		called := make(chan error, 1)
		var at time.Time
		go func() {
			var err error
			at, err = a.Next(ctx, key, qps, 1)
			called <- err
		}()
		select {
		case err := <-called:
			if err != nil {
				t.Fatal(err)
			}
			select {
			case <-gated.arrived:
				pending = called // answered
				pending <- nil
			default:
				sleepTo(at)
				time.Sleep(time.Millisecond)
			}
		case <-gated.arrived:
			pending = called
		}
	}
	ks := a.state(key)
	ks.mu.Lock()
	if ks.renewing == nil {
		ks.mu.Unlock()
		t.Fatal("a write reached the gate with no renewal under way")
	}
	end = ks.run.end
	ks.mu.Unlock()
	atB, err := b.Next(ctx, key, qps, 1)
	if err != nil {
		t.Fatal(err)
	}
	r, _ := b.clock.current()
	slotB, nowB := r.serverTime(atB), b.ServerNow(ctx)
	close(gated.open)
	if err := <-pending; err != nil {
		t.Fatal(err)
	}
	// a calls on past its horizon: the renewal has met b's write, so a reserves by demand. It
	// calls until its horizon is spent and it reserves again (a fixed time, once, could end
	// before that on a loaded machine); the renewal is done by then, as a's writes wait for it.
	var aheadA bool
	var untilA time.Time
	for deadline := time.Now().Add(10 * time.Second); ; {
		at, err := a.Next(ctx, key, qps, 1)
		if err != nil {
			t.Fatal(err)
		}
		ks.mu.Lock()
		aheadA, untilA = ks.run.ahead, ks.sharedUntil
		past := ks.run.end.After(end) || !aheadA // a run after the horizon
		ks.mu.Unlock()
		if past {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the first replica still spends its horizon 10 s on")
		}
		sleepTo(at)
		time.Sleep(time.Millisecond)
	}
	wait := slotB.Sub(nowB)
	t.Logf("figures: horizon=%s second_replica_wait=%s renewals=%d renewals_meeting_another_write=%d first_replica_ahead_after=%v",
		aheadHorizon, wait.Round(time.Millisecond), a.Stats().Renewals, a.Stats().RenewalConflicts, aheadA)
	if !slotB.After(end) {
		t.Fatalf("second replica's slot %s before the first's horizon ends (%s)", slotB, end)
	}
	if wait > aheadHorizon+50*time.Millisecond {
		t.Fatalf("second replica waits %s, horizon %s", wait, aheadHorizon)
	}
	if a.Stats().Renewals != 0 || a.Stats().RenewalConflicts != 1 {
		t.Fatalf("renewals %d, meeting another write %d; want 0 and 1", a.Stats().Renewals, a.Stats().RenewalConflicts)
	}
	if aheadA || !untilA.After(a.ServerNow(ctx)) {
		t.Fatalf("first replica still reserves ahead (%v) or did not learn the other's write (shared until %s)", aheadA, untilA)
	}
}
