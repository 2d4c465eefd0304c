package ratelimit

import (
	"slices"
	"time"
)

// MaxCallsPerWindow is the most calls that arrived within any window of length w: what the
// limit promises to keep at or below qps for w of one second, measured the one way that the
// limiter's own tests, the pipeline's fault tests and the benchmark all use.
func MaxCallsPerWindow(calls []time.Time, w time.Duration) int {
	calls = slices.Clone(calls)
	slices.SortFunc(calls, time.Time.Compare)
	best, lo := 0, 0
	for hi := range calls {
		for calls[hi].Sub(calls[lo]) >= w {
			lo++
		}
		best = max(best, hi-lo+1)
	}
	return best
}
