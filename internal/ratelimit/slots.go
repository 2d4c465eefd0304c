package ratelimit

import (
	"time"
)

// Margin widens each one-second window a little: slots are (1s+Margin)/qps apart, so that
// calls made up to LateTolerance after their slots still arrive at most qps to a second after
// jitter on the way. What it leaves past LateTolerance (37.5 ms) is for that jitter and for
// how closely the replicas read the server's clock; the cost is that a backlog drains at
// qps/(1+Margin/1s), about 95% of the limit.
const Margin = 50 * time.Millisecond

// LateTolerance is how late a slot may still be spent. Calls at most Margin late would still
// put no more than qps in any one-second window; LateTolerance keeps most of Margin for jitter
// on the way and for how closely the replicas read the server's clock (see serverClock).
const LateTolerance = 12500 * time.Microsecond

// Spacing is the time between two slots of a key limited to qps calls a second.
func Spacing(qps int) time.Duration {
	return (time.Second + Margin) / time.Duration(max(qps, 1))
}

// run is a span of consecutive slots reserved by one write, in server time: next, next +
// spacing, … up to end. Those before next are spent or passed over.
type run struct {
	next, end time.Time
	spacing   time.Duration
	qps       int // the limit the slots were reserved under
	// ahead says the run was reserved ahead of demand: a call takes the latest slot not after
	// its time (or the next, if none is left before it). Otherwise it takes the first not yet
	// LateTolerance old, so that a backlog catches up after a late wake-up.
	ahead bool
}

// take hands out the run's slot for a call at server time now; false if it has none left.
// A slot is handed out once, and the slots before it are never handed out after it.
func (r *run) take(now time.Time) (time.Time, bool) {
	if r.spacing <= 0 {
		return time.Time{}, false
	}
	if d := now.Sub(r.next); r.ahead && d > 0 {
		// The latest slot not after now, if it is inside LateTolerance (a run ahead holds 50
		// slots in 250 ms at least, so it is under 5 ms late): the call leaves at once instead
		// of sleeping a few microseconds for the next slot (a timer, and a goroutine parked
		// and woken, a call). Else the first after now. The slots before it are thrown away.
		r.next = r.next.Add(d / r.spacing * r.spacing)
		if now.Sub(r.next) > LateTolerance {
			r.next = r.next.Add(r.spacing)
		}
	} else if d := now.Add(-LateTolerance).Sub(r.next); !r.ahead && d > 0 { // missed: thrown away, which only lowers the rate
		r.next = r.next.Add((d + r.spacing - 1) / r.spacing * r.spacing)
	}
	if r.next.After(r.end) {
		*r = run{}
		return time.Time{}, false
	}
	at := r.next
	r.next = at.Add(r.spacing)
	return at, true
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
