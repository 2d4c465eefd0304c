package providers

import (
	"context"
	"sync"
	"time"
)

// Limiter holds calls to a provider endpoint under its QPS limit.
type Limiter interface {
	// Wait blocks until a call under key may be made, or ctx ends.
	Wait(ctx context.Context, key string) error
}

// windowMargin widens the one-second window a little, so that calls that leave this process
// exactly one second apart but meet a little jitter on the way still arrive at most qps to a
// second at the provider. It costs at most 2.5% of the rate.
const windowMargin = 25 * time.Millisecond

// WindowLimiter allows at most qps calls per key in every window of one second: it remembers
// the time of the last qps calls granted, and grants the next one no sooner than one second
// after the oldest of them. Grants are reservations, handed out in order, so waiters do not
// wake together and race.
type WindowLimiter struct {
	qps    int
	window time.Duration
	mu     sync.Mutex
	keys   map[string]*grants
}

type grants struct {
	times []time.Time // ring of the last qps grants
	next  int
}

// NewWindowLimiter limits each key to qps calls in every second.
func NewWindowLimiter(qps int) *WindowLimiter {
	if qps < 1 {
		qps = 1
	}
	return &WindowLimiter{qps: qps, window: time.Second + windowMargin, keys: map[string]*grants{}}
}

// Wait implements Limiter.
func (l *WindowLimiter) Wait(ctx context.Context, key string) error {
	at := l.reserve(key, time.Now())
	d := time.Until(at)
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err() // the reservation is lost: that only lowers the rate
	}
}

func (l *WindowLimiter) reserve(key string, now time.Time) time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	g := l.keys[key]
	if g == nil {
		g = &grants{times: make([]time.Time, l.qps)}
		l.keys[key] = g
	}
	at := now
	if oldest := g.times[g.next]; !oldest.IsZero() {
		if earliest := oldest.Add(l.window); earliest.After(at) {
			at = earliest
		}
	}
	g.times[g.next] = at
	g.next = (g.next + 1) % l.qps
	return at
}
