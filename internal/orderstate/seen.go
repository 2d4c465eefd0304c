package orderstate

import (
	"hash/maphash"
	"sync"
)

// seenKeys remembers which order keys this process has read or written, in two generations of
// at most max keys each, so memory stays bounded. An order never seen here is most likely new:
// its first observation tries Create without reading first, and falls back to reading when
// the key exists after all.
//
// A key is remembered by its 64-bit hash, not its text: 100,000 keys take about 2 MB instead
// of about 12, and hold no pointer for the collector to follow. Two keys with one hash only
// make the second read before its first write, which is always safe.
type seenKeys struct {
	mu        sync.Mutex
	seed      maphash.Seed
	cur, prev map[uint64]struct{}
	max       int
}

func newSeenKeys(max int) *seenKeys {
	return &seenKeys{seed: maphash.MakeSeed(), cur: map[uint64]struct{}{}, prev: map[uint64]struct{}{}, max: max}
}

func (s *seenKeys) has(key string) bool {
	h := maphash.String(s.seed, key)
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.cur[h]
	if !ok {
		_, ok = s.prev[h]
	}
	return ok
}

func (s *seenKeys) add(key string) {
	h := maphash.String(s.seed, key)
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.cur) >= s.max {
		s.prev, s.cur = s.cur, make(map[uint64]struct{}, s.max)
	}
	s.cur[h] = struct{}{}
}
