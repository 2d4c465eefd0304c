package orderstate

import "sync"

// seenKeys remembers which order keys this process has read or written, in two generations of
// at most max keys each, so memory stays bounded. An order never seen here is most likely new:
// its first observation tries Create without reading first, and falls back to reading when
// the key exists after all.
type seenKeys struct {
	mu        sync.Mutex
	cur, prev map[string]struct{}
	max       int
}

func newSeenKeys(max int) *seenKeys {
	return &seenKeys{cur: map[string]struct{}{}, prev: map[string]struct{}{}, max: max}
}

func (s *seenKeys) has(key string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.cur[key]
	if !ok {
		_, ok = s.prev[key]
	}
	return ok
}

func (s *seenKeys) add(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.cur) >= s.max {
		s.prev, s.cur = s.cur, make(map[string]struct{}, s.max)
	}
	s.cur[key] = struct{}{}
}
