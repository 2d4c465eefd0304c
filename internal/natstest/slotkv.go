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
// that stores such a value, SlotKV keeps the slot, Now() as the write was sent, and the longest
// write (Put, Create or Update) it had seen return by then. Now should be the writing limiter's
// reading of the server's clock (ratelimit.Limiter.ServerNow), the clock its slots are in; it
// is set once the limiter is made, before it is used. One SlotKV per limiter: the longest write
// bounds that limiter's lead (it reserves no further ahead than its recent writes took).
type SlotKV struct {
	jetstream.KeyValue
	Now func() time.Time

	mu      sync.Mutex
	slots   []SlotWrite
	longest time.Duration
}

// SlotWrite is one slot stored.
type SlotWrite struct {
	Slot time.Time // the slot stored
	Sent time.Time // Now() as the write storing it was sent
	// Longest is the longest write through the SlotKV that had returned when this one was
	// sent, as the wrapper timed it.
	Longest time.Duration
}

// Slots returns the slots stored so far, in the order their writes returned.
func (s *SlotKV) Slots() []SlotWrite {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.slots)
}

func (s *SlotKV) longestNow() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.longest
}

func (s *SlotKV) wrote(d time.Duration) {
	s.mu.Lock()
	s.longest = max(s.longest, d)
	s.mu.Unlock()
}

func (s *SlotKV) stored(w SlotWrite, value []byte, err error) {
	if err != nil || len(value) != 8 {
		return
	}
	w.Slot = time.Unix(0, int64(binary.BigEndian.Uint64(value)))
	s.mu.Lock()
	s.slots = append(s.slots, w)
	s.mu.Unlock()
}

// Put times the write (the limiter reads the server's clock with it).
func (s *SlotKV) Put(ctx context.Context, key string, value []byte) (uint64, error) {
	start := time.Now()
	rev, err := s.KeyValue.Put(ctx, key, value)
	s.wrote(time.Since(start))
	return rev, err
}

// Create records the slot it stores.
func (s *SlotKV) Create(ctx context.Context, key string, value []byte, opts ...jetstream.KVCreateOpt) (uint64, error) {
	w := SlotWrite{Sent: s.Now(), Longest: s.longestNow()}
	start := time.Now()
	rev, err := s.KeyValue.Create(ctx, key, value, opts...)
	s.wrote(time.Since(start))
	s.stored(w, value, err)
	return rev, err
}

// Update records the slot it stores.
func (s *SlotKV) Update(ctx context.Context, key string, value []byte, revision uint64) (uint64, error) {
	w := SlotWrite{Sent: s.Now(), Longest: s.longestNow()}
	start := time.Now()
	rev, err := s.KeyValue.Update(ctx, key, value, revision)
	s.wrote(time.Since(start))
	s.stored(w, value, err)
	return rev, err
}
