package ratelimit

import (
	"math"
	"time"
)

const (
	// aheadHorizon is how far ahead a key far below its limit reserves. Another replica's call
	// may wait that much longer, once, so it is a quarter of what a reservation by demand may
	// hold already (qps slots, 1.05 s); at 50 calls a second it still saves 11 writes in 12.
	aheadHorizon = 250 * time.Millisecond
	// aheadDemand: a key reserves ahead only while this replica's rate and queue for it are at
	// most qps/aheadDemand, far from the limit, where slots passed over cost nobody anything.
	aheadDemand = 10
	// aheadMinSlots is the fewest slots a horizon worth reserving holds (slots at most 5 ms
	// apart): a call waits up to one spacing for its slot, which should cost less than the
	// write it saves.
	aheadMinSlots = 50
	// sharedFor is how long after another replica's last slot for a key this replica reserves
	// by demand only: the other may be calling the key too, and would wait for a horizon.
	sharedFor = 10 * time.Second
	// rateWindow is the time constant of a key's moving rate.
	rateWindow = time.Second
)

// horizonSlots is how many slots a reservation ahead holds at qps.
func horizonSlots(qps int) int { return min(qps, int(aheadHorizon/Spacing(qps))) }

// mayReserveAhead is the rule for reserving ahead of demand, the same for a reservation and
// for its renewal: the key is so far below its limit that slots passed over cost nobody
// anything, and no other replica is known to be calling it. That is, the horizon holds at least
// aheadMinSlots slots, this replica's queue (demand) and moving rate for the key are both at
// most qps/aheadDemand, and no other replica's write of the key was seen within sharedFor of
// server time now. Callers check besides that nobody holds slots after now, and hold ks.mu.
func (ks *keyState) mayReserveAhead(qps, demand int, rate float64, now time.Time) bool {
	return horizonSlots(qps) >= aheadMinSlots &&
		demand*aheadDemand <= qps && rate*aheadDemand <= float64(qps) &&
		!now.Before(ks.sharedUntil)
}

// holdsHorizon reports whether the key's run was reserved ahead and its end is still the
// key's last slot as this limiter last wrote or read it: as far as this limiter knows nobody
// wrote the key since, so a renewal's compare-and-set may extend the run. Callers hold ks.mu.
func (ks *keyState) holdsHorizon() bool {
	return ks.run.ahead && ks.rev != 0 && ks.run.end.Equal(ks.last)
}

// rateNow is the key's moving rate (calls a second) at server time now.
func (ks *keyState) rateNow(now time.Time) float64 {
	dt := now.Sub(ks.rateAt)
	if ks.rateAt.IsZero() || dt <= 0 {
		return ks.rate
	}
	return ks.rate * math.Exp(-dt.Seconds()/rateWindow.Seconds())
}

// called counts a call handed a slot at server time now into the key's moving rate.
func (ks *keyState) called(now time.Time) {
	ks.rate, ks.rateAt = ks.rateNow(now)+1/rateWindow.Seconds(), maxTime(ks.rateAt, now)
}
