package ratelimit

import (
	"testing"
	"time"
)

func TestMaxCallsPerWindow(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(ms ...int) []time.Time {
		out := make([]time.Time, len(ms))
		for i, m := range ms {
			out[i] = t0.Add(time.Duration(m) * time.Millisecond)
		}
		return out
	}
	for _, tc := range []struct {
		name  string
		calls []time.Time
		want  int
	}{
		{"none", nil, 0},
		{"one", at(5), 1},
		{"a second apart is two windows", at(0, 1000), 1},
		{"just inside one window", at(0, 999), 2},
		{"unsorted", at(1500, 0, 900, 1800, 100), 3},
		{"same instant", at(7, 7, 7), 3},
	} {
		if got := MaxCallsPerWindow(tc.calls, time.Second); got != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, got, tc.want)
		}
	}
}
