package natstest

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// SlowKV is a KV bucket whose writes take Delay longer, as a loaded or distant server's would.
// Writes counts them.
type SlowKV struct {
	jetstream.KeyValue
	Delay  time.Duration
	Writes atomic.Int64
}

func (s *SlowKV) wait() {
	s.Writes.Add(1)
	time.Sleep(s.Delay)
}

// Put writes after Delay.
func (s *SlowKV) Put(ctx context.Context, key string, value []byte) (uint64, error) {
	s.wait()
	return s.KeyValue.Put(ctx, key, value)
}

// Create writes after Delay.
func (s *SlowKV) Create(ctx context.Context, key string, value []byte, opts ...jetstream.KVCreateOpt) (uint64, error) {
	s.wait()
	return s.KeyValue.Create(ctx, key, value, opts...)
}

// Update writes after Delay.
func (s *SlowKV) Update(ctx context.Context, key string, value []byte, revision uint64) (uint64, error) {
	s.wait()
	return s.KeyValue.Update(ctx, key, value, revision)
}
