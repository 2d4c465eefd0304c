// Package ratelimit keeps every provider endpoint under its QPS limit across all replicas of
// the consumer together. Each limited key's last reserved call slot lives in a JetStream KV
// bucket; replicas reserve slots from it by compare-and-set, in the NATS server's time, and
// spend each slot on time or not at all. docs/limiter.md explains the design and its bound.
package ratelimit

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Limiter hands out call slots.
type Limiter struct {
	kv    jetstream.KeyValue
	now   func() time.Time // the local clock
	clock *serverClock
	lead  writeLead
	// sharedFor is how long the limiter reserves a key by demand only after another
	// replica's write of it: the sharedFor constant, unless a test shortens it.
	sharedFor time.Duration
	counts    counts

	mu   sync.Mutex
	keys map[string]*keyState
}

// Option configures a Limiter.
type Option func(*Limiter)

// WithClock makes the limiter read the local time from now instead of time.Now, as if its
// machine's clock said so: a test gives replicas clocks that disagree this way.
func WithClock(now func() time.Time) Option {
	return func(l *Limiter) { l.now = now }
}

// New returns a limiter keeping its state in kv.
func New(kv jetstream.KeyValue, opts ...Option) *Limiter {
	l := &Limiter{kv: kv, now: time.Now, sharedFor: sharedFor, keys: map[string]*keyState{}}
	for _, o := range opts {
		o(l)
	}
	l.clock = &serverClock{kv: kv, now: l.now, wrote: l.lead.wrote}
	return l
}

func (l *Limiter) state(key string) *keyState {
	l.mu.Lock()
	defer l.mu.Unlock()
	ks := l.keys[key]
	if ks == nil {
		ks = &keyState{}
		l.keys[key] = ks
	}
	return ks
}

// Wait returns at the time of a call slot for key, or when ctx ends. demand is how many calls
// the caller has waiting (it reserves that many slots at once, up to qps).
func (l *Limiter) Wait(ctx context.Context, key string, qps, demand int) error {
	_, err := l.wait(ctx, key, qps, demand)
	return err
}

// wait is Wait, and returns the slot it returned at, in server time.
func (l *Limiter) wait(ctx context.Context, key string, qps, demand int) (time.Time, error) {
	for {
		slot, r, err := l.next(ctx, key, qps, demand)
		if err != nil {
			return time.Time{}, err
		}
		at := r.localTime(slot)
		if d := at.Sub(l.now()); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return time.Time{}, ctx.Err()
			}
		}
		if l.now().Sub(at) <= LateTolerance {
			return slot, nil
		}
		// Woke too late (a pause, a busy machine): the slot is thrown away.
	}
}

// Next hands out the time of the next call slot for key without waiting for it, as a time
// of the limiter's local clock (time.Now unless WithClock says otherwise); the caller must
// make its call at that time and no later than LateTolerance after it, or not at all.
func (l *Limiter) Next(ctx context.Context, key string, qps, demand int) (time.Time, error) {
	slot, r, err := l.next(ctx, key, qps, demand)
	if err != nil {
		return time.Time{}, err
	}
	return r.localTime(slot), nil
}

// next is Next, and returns the slot in server time with the reading of the server's clock it
// was taken with, which turns it into local time.
func (l *Limiter) next(ctx context.Context, key string, qps, demand int) (time.Time, reading, error) {
	ks := l.state(key)
	ks.mu.Lock()
	defer ks.mu.Unlock()
	for {
		r, err := l.clock.reading(ctx)
		if err != nil {
			return time.Time{}, reading{}, fmt.Errorf("rate limit %s: %w", key, err)
		}
		now := r.serverTime(l.now())
		if ks.run.qps != qps {
			ks.run = run{} // the limit changed: slots of the old spacing are not spent
		}
		if slot, ok := ks.run.take(now); ok {
			ks.called(now)
			ks.demand = demand
			if ks.run.ahead {
				l.scheduleRenewal(ks, key, r)
			}
			return slot, r, nil
		}
		// No slot left. A renewal under way brings more (it was late): wait for it, then
		// take again. Otherwise reserve now, and a renewal due is not needed any more.
		l.counts.waits.Add(1)
		if ks.renewing != nil {
			if err := ks.awaitRenewal(ctx); err != nil {
				return time.Time{}, reading{}, err
			}
			continue
		}
		ks.stopRenewal()
		if err := l.reserve(ctx, ks, key, qps, demand, now); err != nil {
			return time.Time{}, reading{}, err
		}
	}
}

// Slowdown pauses key across all replicas for pause, or a second when pause is shorter (the
// provider's Retry-After, when it gave one): the provider said the app is over its quota, so
// someone else shares it. The pause runs from now, not from the last slot: the refusals of the
// calls already under way (up to qps of them, from every replica) all answer the same overload
// and pause the app once together.
func (l *Limiter) Slowdown(ctx context.Context, key string, pause time.Duration) error {
	pause = max(pause, time.Second)
	ks := l.state(key)
	ks.mu.Lock()
	defer ks.mu.Unlock()
	if err := ks.awaitRenewal(ctx); err != nil {
		return err
	}
	ks.stopRenewal()
	ks.run = run{}
	_, err := l.update(ctx, ks, key, func(last time.Time, now time.Time) time.Time {
		return maxTime(last, now.Add(pause))
	})
	return err
}

// ServerNow is the NATS server's time now, as this limiter reads it: a clock every replica
// shares, so that times taken by different replicas compare truly whatever their own clocks
// say. When the server's clock cannot be read it falls back to the local clock.
//
// A caller reads it between its slot and its call (a query's sent time), so it uses the
// reading it has and never waits for a new one: a refresh is a KV write and read, slower
// than LateTolerance on a slow bucket, and a call held back that long after its slot lets
// qps+1 calls into one second. Next refreshes the reading; only before the first one does
// ServerNow read the server's clock itself.
func (l *Limiter) ServerNow(ctx context.Context) time.Time {
	now := l.now()
	r, ok := l.clock.current()
	if !ok {
		var err error
		if r, err = l.clock.reading(ctx); err != nil {
			return now
		}
	}
	return r.serverTime(now)
}
