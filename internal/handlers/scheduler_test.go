package handlers

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
	bucket, err := js.CreateKeyValue(context.Background(), jetstream.KeyValueConfig{Bucket: RateBucket})
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
	for range replicas {
		s := newScheduler(ratelimit.New(kv), 8, stop, context.Background(), log, waits)
		s.run = func(context.Context, *job) {
			mu.Lock()
			calls = append(calls, time.Now())
			mu.Unlock()
			s.enqueue(&job{key: key, qps: qps}) // the next request, once this one ran
		}
		s.handBack = func(*job) {}
		s.enqueue(&job{key: key, qps: qps})
		t.Cleanup(func() { s.close(time.Second, func() {}) })
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
