package orderstate

import (
	"fmt"
	"runtime"
	"testing"
)

func seenKey(i int) string {
	return Key("kuaishou", "payment", "ks-app-0001", fmt.Sprintf("order-%032d", i))
}

// A key is seen once added, in the current generation and the one before; two generations
// back it is forgotten.
func TestSeenKeysGenerations(t *testing.T) {
	s := newSeenKeys(3)
	if s.has(seenKey(0)) {
		t.Fatal("a key never added is seen")
	}
	for i := range 6 {
		s.add(seenKey(i))
	}
	for i := range 6 {
		if !s.has(seenKey(i)) {
			t.Errorf("key %d added in the last two generations is not seen", i)
		}
	}
	s.add(seenKey(6)) // a third generation: 0, 1 and 2 are forgotten
	for i := range 3 {
		if s.has(seenKey(i)) {
			t.Errorf("key %d from two generations back is still seen", i)
		}
	}
	for i := 3; i < 7; i++ {
		if !s.has(seenKey(i)) {
			t.Errorf("key %d is not seen", i)
		}
	}
}

// The keys a full set remembers (two generations of 50,000, as the store keeps) take a few
// MB, whatever the keys' length: their text is not kept.
func TestSeenKeysMemory(t *testing.T) {
	heap := func() int64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return int64(m.HeapAlloc)
	}
	before := heap()
	s := newSeenKeys(50000)
	for i := range 100000 {
		s.add(seenKey(i))
	}
	used := heap() - before
	runtime.KeepAlive(s)
	t.Logf("100,000 keys hold %.1f MB", float64(used)/(1<<20))
	if used > 4<<20 {
		t.Fatalf("100,000 keys of %d bytes hold %.1f MB", len(seenKey(0)), float64(used)/(1<<20))
	}
}
