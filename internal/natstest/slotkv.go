package natstest

import (
	"context"
	"encoding/binary"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// SlotKV records the rate-limit slots stored in the KV bucket it wraps, for tests that check
// what a limiter reserved rather than how many calls a wall-clock second saw. The rate limiter
// keeps a key's last reserved slot as Unix nanoseconds, big-endian: for every Create or Update
// that stores such a value, SlotKV keeps the slot and Now() as the write was sent. Now should
// be the writing limiter's reading of the server's clock (ratelimit.Limiter.ServerNow), the
// clock its slots are in; it is set once the limiter is made, before it is used.
type SlotKV struct {
	jetstream.KeyValue
	Now func() time.Time

	mu    sync.Mutex
	slots []SlotWrite
}

// SlotWrite is one slot stored, and when the write storing it was sent.
type SlotWrite struct {
	Slot, Sent time.Time
}

// Slots returns the slots stored so far, in the order their writes returned.
func (s *SlotKV) Slots() []SlotWrite {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.slots)
}

func (s *SlotKV) stored(sent time.Time, value []byte, err error) {
	if err != nil || len(value) != 8 {
		return
	}
	slot := time.Unix(0, int64(binary.BigEndian.Uint64(value)))
	s.mu.Lock()
	s.slots = append(s.slots, SlotWrite{Slot: slot, Sent: sent})
	s.mu.Unlock()
}

// Create records the slot it stores.
func (s *SlotKV) Create(ctx context.Context, key string, value []byte, opts ...jetstream.KVCreateOpt) (uint64, error) {
	sent := s.Now()
	rev, err := s.KeyValue.Create(ctx, key, value, opts...)
	s.stored(sent, value, err)
	return rev, err
}

// Update records the slot it stores.
func (s *SlotKV) Update(ctx context.Context, key string, value []byte, revision uint64) (uint64, error) {
	sent := s.Now()
	rev, err := s.KeyValue.Update(ctx, key, value, revision)
	s.stored(sent, value, err)
	return rev, err
}
