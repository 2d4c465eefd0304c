package scheduler

import (
	"context"
	"io"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/paystatus/orderstatus/internal/natstest"
	"github.com/paystatus/orderstatus/internal/ratelimit"
)

// Three replicas' schedulers with one request queued at a time each, on a rate bucket whose
// writes take longer than ratelimit.LateTolerance: the slot a write reserves is not thrown
// away for that write's latency, so requests run. What guards that is the limiter's lead: each
// slot is reserved at least the recent write time ahead of when its write is sent, so it is
// still on time when the write returns. The test checks that lead on every slot stored, that
// the slots (whichever replica reserved them) are a spacing apart, so never more than qps in a
// second, and that each request ran in a slot of its own, until enough requests ran.
func TestSchedulerSlowRateWrites(t *testing.T) {
	const qps, replicas, want = 100, 3, 50
	const key = "kuaishou/ks700000000000000001/query_order"
	nc, err := nats.Connect(natstest.RunServer(t).ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, _ := jetstream.New(nc)
	bucket, err := js.CreateKeyValue(context.Background(), jetstream.KeyValueConfig{Bucket: "ORDERS_RATE"})
	if err != nil {
		t.Fatal(err)
	}
	slow := &natstest.SlowKV{KeyValue: bucket, Delay: 15 * time.Millisecond}
	waits := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "wait"}, []string{"provider", "endpoint"})
	log := slog.New(slog.NewTextHandler(io.Discard, nil))

	var calls atomic.Int64
	ran := make(chan struct{}) // closed when want requests ran
	stop, cancel := context.WithCancel(context.Background())
	defer cancel()
	var kvs []*natstest.SlotKV
	var scheds []*Scheduler
	var workers sync.WaitGroup
	start := time.Now()
	for range replicas {
		kv := &natstest.SlotKV{KeyValue: slow}
		lim := ratelimit.New(kv)
		kv.Now = func() time.Time { return lim.ServerNow(context.Background()) }
		kvs = append(kvs, kv)
		s := New(stop, lim, 8, log, waits)
		workers.Add(1)
		go func() {
			defer workers.Done()
			for j := range s.Ready() {
				if calls.Add(1) == want {
					close(ran)
				}
				s.Done()
				_ = s.Enqueue(j) // the next request, once this one ran
			}
		}()
		if err := s.Enqueue(testJob{key: key, qps: qps}); err != nil {
			t.Fatal(err)
		}
		scheds = append(scheds, s)
	}
	// A deadline for a broken limiter, not a speed target: want requests take half a second
	// at the limit.
	const deadline = 30 * time.Second
	select {
	case <-ran:
	case <-time.After(deadline):
	}
	took := time.Since(start)
	cancel()
	for _, s := range scheds {
		s.Close() // the pacers have ended: no more writes
	}
	workers.Wait()

	var slots []natstest.SlotWrite
	for _, kv := range kvs {
		slots = append(slots, kv.Slots()...)
	}
	// The lead: a slot on time when a write of Delay returns was reserved at least Delay less
	// LateTolerance after the write was sent.
	least := slow.Delay - ratelimit.LateTolerance
	leanest := time.Hour
	for _, w := range slots {
		leanest = min(leanest, w.Slot.Sub(w.Sent))
	}
	slices.SortFunc(slots, func(a, b natstest.SlotWrite) int { return a.Slot.Compare(b.Slot) })
	closest := time.Hour
	for i := 1; i < len(slots); i++ {
		closest = min(closest, slots[i].Slot.Sub(slots[i-1].Slot))
	}
	n := calls.Load()
	t.Logf("figures: qps=%d replicas=%d demand=1 write_latency=%s writes=%d slots=%d calls=%d took=%s least_slot_lead=%s closest_slots=%s spacing=%s",
		qps, replicas, slow.Delay, slow.Writes.Load(), len(slots), n, took.Round(time.Millisecond), leanest, closest, ratelimit.Spacing(qps))
	if len(slots) == 0 {
		t.Fatal("no slot reserved")
	}
	if leanest < least {
		t.Fatalf("a slot reserved %s after its write was sent, on writes of %s: late when the write returns (at least %s wanted)", leanest, slow.Delay, least)
	}
	if closest < ratelimit.Spacing(qps) {
		t.Fatalf("two slots %s apart, spacing %s", closest, ratelimit.Spacing(qps))
	}
	if n > int64(len(slots)) {
		t.Fatalf("%d requests ran on %d slots", n, len(slots))
	}
	if n < want {
		t.Fatalf("%d requests ran in %s on %d slots reserved, %d writes", n, deadline, len(slots), slow.Writes.Load())
	}
}

// testJob is a job that only counts against its endpoint.
type testJob struct {
	key string
	qps int
}

func (j testJob) Endpoint() (string, int) { return j.key, j.qps }
func (j testJob) Prepare(context.Context) {}
func (j testJob) Waiting() func(error)    { return func(error) {} }
func (j testJob) Parked()                 {}

// TakeUpTo takes what is free, up to its n, waits while nothing is, and takes nothing once
// the scheduler stops; TakeFree never waits.
func TestTakeUpTo(t *testing.T) {
	stop, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := New(stop, nil, 1, slog.New(slog.NewTextHandler(io.Discard, nil)), nil) // a budget of 16
	for _, tc := range []struct{ n, want int }{{5, 5}, {0, 0}, {8, 8}, {10, 3}} {
		if got := s.TakeUpTo(tc.n); got != tc.want {
			t.Fatalf("TakeUpTo(%d) = %d, want %d", tc.n, got, tc.want)
		}
	}
	took := make(chan int)
	go func() { took <- s.TakeUpTo(4) }()
	select {
	case n := <-took:
		t.Fatalf("TakeUpTo(4) took %d of a spent budget", n)
	case <-time.After(20 * time.Millisecond):
	}
	s.Release()
	s.Release()
	n := <-took
	if n < 1 || n > 2 {
		t.Fatalf("TakeUpTo(4) took %d with 2 freed", n)
	}
	if free := s.TakeFree(4); free != 2-n {
		t.Fatalf("TakeFree(4) took %d, want the %d left", free, 2-n)
	}
	cancel()
	for s.TakeUpTo(1) != 0 { // a free token may still win the race with stop
	}
}
