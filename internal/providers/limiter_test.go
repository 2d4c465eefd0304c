package providers

import (
	"context"
	"sort"
	"testing"
	"time"
)

func maxInWindow(ts []time.Time, w time.Duration) int {
	sort.Slice(ts, func(i, j int) bool { return ts[i].Before(ts[j]) })
	best, lo := 0, 0
	for hi := range ts {
		for ts[hi].Sub(ts[lo]) >= w {
			lo++
		}
		best = max(best, hi-lo+1)
	}
	return best
}

func TestWindowLimiterReservations(t *testing.T) {
	l := NewWindowLimiter(30)
	start := time.Unix(1000, 0)
	var grants []time.Time
	// 300 callers arriving at once, then stragglers: grants must never exceed 30 a second.
	for i := range 300 {
		grants = append(grants, l.reserve("k", start.Add(time.Duration(i)*time.Millisecond)))
	}
	if m := maxInWindow(grants, time.Second); m != 30 {
		t.Fatalf("max %d grants in a second, want 30", m)
	}
	// A backlog drains at no less than 95% of the limit: count the grants of the first 5 s.
	n := 0
	for _, g := range grants {
		if g.Before(start.Add(5 * time.Second)) {
			n++
		}
	}
	if float64(n) < 0.95*30*5 || n > 30*5 {
		t.Fatalf("%d grants in 5 s", n)
	}
	// Keys are independent.
	if at := l.reserve("other", start); !at.Equal(start) {
		t.Fatalf("other key waited until %v", at)
	}
}

func TestWindowLimiterWaitHonoursContext(t *testing.T) {
	l := NewWindowLimiter(1)
	if err := l.Wait(context.Background(), "k"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := l.Wait(ctx, "k"); err == nil {
		t.Fatal("second call within the second did not wait")
	}
}
