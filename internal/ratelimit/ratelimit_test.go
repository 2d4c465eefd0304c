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
// no one-second window holds more than qps calls, and the backlog drains at the limit. The
// drain is checked on what the limiters reserved, not on calls per wall-clock second (floors
// of 95%, then 75%, of qps in the first 2 s were missed, or nearly, on a loaded 2-core machine
// with the race detector: 33 calls of 30): each reservation takes the slots right after the
// last one reserved, by whichever replica, unless the schedule had run dry (checkSchedule);
// and the callers get 2*qps calls, before a deadline for a limiter that starves them.
func TestSharedAcrossReplicas(t *testing.T) {
	kv := bucket(t)
	const qps, demand, want = 20, 4, 40
	var mu sync.Mutex
	var calls []time.Time
	ctx, cancel := context.WithTimeout(context.Background(), starveDeadline)
	defer cancel()
	var wg sync.WaitGroup
	var recs []*natstest.SlotKV
	for range 3 {
		l, rec := recorded(kv)
		recs = append(recs, rec)
		for range 4 {
			wg.Go(func() {
				for l.Wait(ctx, "kuaishou/app-1/query_order", qps, demand) == nil {
					mu.Lock()
					if calls = append(calls, time.Now()); len(calls) == want {
						cancel()
					}
					mu.Unlock()
				}
			})
		}
	}
	wg.Wait()
	slots := allSlots(recs...)
	m := MaxCallsPerWindow(calls, time.Second)
	t.Logf("figures: qps=%d replicas=3 callers=12 calls=%d reservations=%d max_calls_per_window=%d", qps, len(calls), len(slots), m)
	if len(calls) < want {
		t.Fatalf("%d calls in %s at a limit of %d/s", len(calls), starveDeadline, qps)
	}
	if m > qps {
		t.Fatalf("%d calls in one second, limit %d", m, qps)
	}
	dry := checkSchedule(t, slots, time.Time{}, Spacing(qps), min(demand, qps))
	t.Logf("figures: reservations finding the schedule dry=%d of %d", dry, len(slots))
}

func TestKeysAreIndependentAndSlowdownPauses(t *testing.T) {
	kv := bucket(t)
	l := New(kv)
	ctx := context.Background()
	atA, err := l.Next(ctx, "a/x", 1, 1)
	if err != nil {
		t.Fatal(err)
	}
	// At qps 1 slots are 1.05 s apart: keys sharing one schedule would put b's slot that far
	// after a's. (Compared as slots, not as the time a Wait took: a loaded machine makes the
	// wait longer, never the slot later by a second.)
	atB, err := l.Next(ctx, "b/x", 1, 1)
	if err != nil {
		t.Fatal(err)
	}
	if !atB.Before(atA.Add(Spacing(1))) {
		t.Fatalf("another key's slot is %s after the first key's, spacing %s: it waited for it", atB.Sub(atA), Spacing(1))
	}
	before := time.Now()
	if err := l.Slowdown(ctx, "c/x", 0); err != nil {
		t.Fatal(err)
	}
	other := New(kv) // another replica sees the pause
	at, err := other.Next(ctx, "c/x", 100, 1)
	if err != nil {
		t.Fatal(err)
	}
	if at.Sub(before) < time.Second/2 { // the pause runs a second; half of it is room for the clocks' readings
		t.Fatalf("no pause after a rate-limit answer: the other replica's slot is %s after it", at.Sub(before))
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
// once: the key's last slot ends up a second after the last answer at most (one second added
// per answer would pause it for thirty), no call comes in the second after the first answer,
// and reservations then go on right after the pause: calls come at the limit again. (It once
// counted the calls in the two seconds after the pause: on a loaded machine the answers
// themselves take a while, and the count says more about the machine than the pause.)
func TestRateLimitAnswersPauseOnce(t *testing.T) {
	kv := bucket(t)
	const qps, answers, demand = 20, 30, 4
	const key = "kuaishou/app-1/query_order"
	var replicas []*Limiter
	var recs []*natstest.SlotKV
	for range 3 {
		l, rec := recorded(kv)
		replicas, recs = append(replicas, l), append(recs, rec)
	}
	ctx, cancel := context.WithTimeout(context.Background(), starveDeadline)
	defer cancel()
	first := time.Now()
	var wg sync.WaitGroup
	for i := range answers {
		wg.Go(func() {
			if err := replicas[i%len(replicas)].Slowdown(ctx, key, 0); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	last := time.Now()
	pauses := allSlots(recs...)
	if len(pauses) == 0 {
		t.Fatal("no pause stored")
	}
	var pause, earliest, latest time.Time
	for i, w := range pauses {
		pause = maxTime(pause, w.Slot)
		latest = maxTime(latest, w.Sent)
		if i == 0 || w.Sent.Before(earliest) {
			earliest = w.Sent
		}
	}
	if pause.Before(earliest.Add(time.Second)) {
		t.Fatalf("paused until %s after the first answer, want a second", pause.Sub(earliest))
	}
	if pause.After(latest.Add(time.Second + LateTolerance)) {
		t.Fatalf("paused until %s after the last answer, want a second: the answers added up", pause.Sub(latest))
	}
	stored := make([]int, len(recs))
	for i, r := range recs {
		stored[i] = len(r.Slots())
	}

	const want = qps
	var mu sync.Mutex
	var calls []time.Time
	for _, l := range replicas {
		for range 4 {
			wg.Go(func() {
				for l.Wait(ctx, key, qps, demand) == nil {
					mu.Lock()
					if calls = append(calls, time.Now()); len(calls) == want {
						cancel()
					}
					mu.Unlock()
				}
			})
		}
	}
	wg.Wait()
	var after []natstest.SlotWrite
	for i, r := range recs {
		after = append(after, r.Slots()[stored[i]:]...)
	}
	slices.SortFunc(after, func(a, b natstest.SlotWrite) int { return a.Slot.Compare(b.Slot) })
	paused := 0
	for _, c := range calls {
		if c.Before(first.Add(time.Second)) {
			paused++
		}
	}
	pauseFor := "none"
	if len(calls) > 0 {
		pauseFor = slices.MinFunc(calls, time.Time.Compare).Sub(last).Round(time.Millisecond).String()
	}
	t.Logf("figures: qps=%d rate_limit_answers=%d replicas=3 pause_writes=%d pause_past_last_answer=%s first_call_after_last_answer=%s calls_in_1st_s=%d calls=%d max_per_window=%d",
		qps, answers, len(pauses), pause.Sub(latest).Round(time.Millisecond), pauseFor, paused, len(calls), MaxCallsPerWindow(calls, time.Second))
	if paused > 0 {
		t.Fatalf("%d calls within a second of a rate-limit answer", paused)
	}
	if len(calls) < want {
		t.Fatalf("%d calls in %s after a one-second pause, at a limit of %d/s", len(calls), starveDeadline, qps)
	}
	if m := MaxCallsPerWindow(calls, time.Second); m > qps {
		t.Fatalf("%d calls in one second, limit %d", m, qps)
	}
	checkSchedule(t, after, pause, Spacing(qps), min(demand, qps)) // right after the pause, then at the limit
}

// skewed is a wall clock off by d, as a replica's clock would be; without a monotonic reading,
// so every duration the limiter measures on it is one of its own wall clock too.
func skewed(d time.Duration) func() time.Time {
	return func() time.Time { return time.Now().Round(0).Add(d) }
}

// Item 8: replicas whose clocks disagree by up to 500 ms hold the limit together, counted in
// real time: slots are times of the NATS server's clock, which every replica reads the same.
// The callers get 2*qps calls (once counted in a 3 s window; now before a deadline for a
// limiter that starves them), on reservations checked by checkSchedule.
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
			const demand, want = 4, 2 * qps
			var mu sync.Mutex
			var calls []time.Time
			ctx, cancel := context.WithTimeout(context.Background(), starveDeadline)
			defer cancel()
			var wg sync.WaitGroup
			var recs []*natstest.SlotKV
			for _, skew := range tc.skews {
				l, rec := recorded(kv, WithClock(skewed(skew)))
				recs = append(recs, rec)
				for range 4 {
					wg.Go(func() {
						for l.Wait(ctx, "kuaishou/app-1/query_order", qps, demand) == nil {
							mu.Lock()
							if calls = append(calls, time.Now()); len(calls) == want {
								cancel()
							}
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
			if len(calls) < want {
				t.Fatalf("%d calls in %s at a limit of %d/s", len(calls), starveDeadline, qps)
			}
			// The reservations, in server time, are a spacing apart and leave no gap nobody
			// needed, whatever the replicas' clocks say.
			checkSchedule(t, allSlots(recs...), time.Time{}, Spacing(qps), demand)
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
// holds. What makes it so is the lead: every slot is reserved at least the recent write time
// ahead of when its write is sent, checked on each slot stored; and the callers get qps/2
// calls before a deadline for a limiter whose slots all come too late. (It once counted the
// calls in 2 s, which a loaded machine makes fewer whatever the limiter does.)
func TestSlowWritesStillGiveSlots(t *testing.T) {
	const qps = 100
	const want = qps / 2
	for _, replicas := range []int{1, 3} {
		t.Run(fmt.Sprintf("%d replicas", replicas), func(t *testing.T) {
			kv := &natstest.SlowKV{KeyValue: bucket(t), Delay: 15 * time.Millisecond}
			var mu sync.Mutex
			var calls []time.Time
			ctx, cancel := context.WithTimeout(context.Background(), starveDeadline)
			defer cancel()
			start := time.Now()
			var wg sync.WaitGroup
			var recs []*natstest.SlotKV
			for range replicas {
				l, rec := recorded(kv)
				recs = append(recs, rec)
				wg.Go(func() {
					for l.Wait(ctx, "kuaishou/app-1/query_order", qps, 1) == nil {
						mu.Lock()
						if calls = append(calls, time.Now()); len(calls) == want {
							cancel()
						}
						mu.Unlock()
					}
				})
			}
			wg.Wait()
			slots := allSlots(recs...)
			leanest := time.Hour
			for _, w := range slots {
				leanest = min(leanest, w.Slot.Sub(w.Sent))
			}
			m := MaxCallsPerWindow(calls, time.Second)
			t.Logf("figures: qps=%d replicas=%d demand=1 write_latency=%s writes=%d slots=%d calls=%d took=%s least_slot_lead=%s max_calls_per_window=%d",
				qps, replicas, kv.Delay, kv.Writes.Load(), len(slots), len(calls), time.Since(start).Round(time.Millisecond), leanest, m)
			if len(slots) == 0 {
				t.Fatal("no slot reserved")
			}
			// A slot on time when a write of Delay returns was reserved at least Delay less
			// LateTolerance after the write was sent.
			if least := kv.Delay - LateTolerance; leanest < least {
				t.Fatalf("a slot reserved %s after its write was sent, on writes of %s: late when the write returns (at least %s wanted)", leanest, kv.Delay, least)
			}
			checkSchedule(t, slots, time.Time{}, Spacing(qps), 1)
			if m > qps {
				t.Fatalf("%d calls in one second, limit %d", m, qps)
			}
			if len(calls) < want {
				t.Fatalf("%d calls in %s after %d writes, at a limit of %d/s", len(calls), starveDeadline, kv.Writes.Load(), qps)
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
	var written int64       // KV writes made while ServerNow ran
	var readAt []time.Time  // when the limiter read the server's clock, after each call
	checked := func() time.Time {
		l.clock.mu.Lock()
		defer l.clock.mu.Unlock()
		return l.clock.checked
	}
	for l.Wait(ctx, "kuaishou/app-1/query_order", qps, qps) == nil {
		w := kv.Writes.Load()
		start := time.Now()
		l.ServerNow(ctx)
		worst = max(worst, time.Since(start))
		written += kv.Writes.Load() - w
		calls = append(calls, time.Now())
		if c := checked(); len(readAt) == 0 || !c.Equal(readAt[len(readAt)-1]) {
			readAt = append(readAt, c)
		}
	}
	m := MaxCallsPerWindow(calls, time.Second)
	t.Logf("figures: qps=%d write_latency=%s run=%s calls=%d clock_readings=%d kv_writes_in_server_now=%d slowest_server_now=%s max_calls_per_window=%d",
		qps, kv.Delay, clockRefresh+2*time.Second, len(calls), len(readAt), written, worst, m)
	if len(readAt) < 2 {
		t.Fatal("the server's clock was not read again during the run: the test does not test a refresh due")
	}
	// The mechanism, rather than how long ServerNow took (a loaded machine may hold any call
	// up that long): it made no KV round trip, a refresh due or not.
	if written != 0 {
		t.Fatalf("ServerNow wrote to the KV %d times (took up to %s): it waited for a reading of the server's clock", written, worst)
	}
	if m > qps {
		t.Fatalf("%d calls in one second, limit %d (ServerNow took up to %s)", m, qps, worst)
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
