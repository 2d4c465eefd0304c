package ratelimit

import (
	"context"
	"testing"
	"time"

	"github.com/paystatus/orderstatus/internal/natstest"
)

// A key in the reserve-ahead regime renews its horizon in the background before it runs out:
// a caller making about a call a millisecond for 2 s at qps 100000 waits for a KV write once,
// for the first reservation, and never again (one write in 250 ms before, each waited for).
func TestRenewingAheadNeverWaits(t *testing.T) {
	const qps = 100000
	const key = "kuaishou/app-1/query_order"
	kv := &natstest.SlowKV{KeyValue: bucket(t), Delay: 2 * time.Millisecond}
	l := New(kv)
	ctx := context.Background()
	var prev time.Time
	calls := 0
	start := time.Now()
	for time.Since(start) < 2*time.Second {
		at, err := l.Next(ctx, key, qps, 1)
		if err != nil {
			t.Fatal(err)
		}
		if calls > 0 && at.Sub(prev) < Spacing(qps) {
			t.Fatalf("call %d: slot %s after the last, spacing %s", calls, at.Sub(prev), Spacing(qps))
		}
		prev = at
		calls++
		sleepTo(at)
		time.Sleep(time.Millisecond)
	}
	waited, writes := l.waited.Load(), kv.Writes.Load()
	t.Logf("figures: qps=%d calls=%d run=%s next_calls_waiting_for_kv=%d kv_writes=%d",
		qps, calls, time.Since(start).Round(time.Millisecond), waited, writes)
	if waited != 1 {
		t.Fatalf("%d Next calls waited for a KV round trip; want 1 (the first reservation)", waited)
	}
}
