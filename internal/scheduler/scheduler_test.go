package scheduler

import (
	"context"
	"io"
	"log/slog"
	"sync"
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
// away for that write's latency, so requests run, and never more than qps in a second.
func TestSchedulerSlowRateWrites(t *testing.T) {
	const qps, replicas = 100, 3
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
	kv := &natstest.SlowKV{KeyValue: bucket, Delay: 15 * time.Millisecond}
	waits := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "wait"}, []string{"provider", "endpoint"})
	log := slog.New(slog.NewTextHandler(io.Discard, nil))

	var mu sync.Mutex
	var calls []time.Time
	stop, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for range replicas {
		s := New(stop, ratelimit.New(kv), 8, log, waits)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range s.Ready() {
				mu.Lock()
				calls = append(calls, time.Now())
				mu.Unlock()
				s.Done()
				_ = s.Enqueue(j) // the next request, once this one ran
			}
		}()
		if err := s.Enqueue(testJob{key: key, qps: qps}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
	}
	<-stop.Done()
	mu.Lock()
	defer mu.Unlock()
	m := ratelimit.MaxCallsPerWindow(calls, time.Second)
	t.Logf("figures: qps=%d replicas=%d demand=1 write_latency=%s writes=%d calls_in_2s=%d max_calls_per_window=%d",
		qps, replicas, kv.Delay, kv.Writes.Load(), len(calls), m)
	if m > qps {
		t.Fatalf("%d calls in one second, limit %d", m, qps)
	}
	if len(calls) < qps/2 {
		t.Fatalf("%d calls in 2 s after %d writes, at a limit of %d/s", len(calls), kv.Writes.Load(), qps)
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
