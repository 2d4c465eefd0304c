package ratelimit

import (
	"sync/atomic"
	"time"
)

// maxLead bounds how far ahead of now a slot is reserved: writes slower than that are an
// outage, and a slot further ahead would keep callers idle long after it.
const maxLead = time.Second

// writeLead is how long writes to the bucket take, recently. A slot is reserved at least that
// far from now, so that it is still on time when the write reserving it returns, however slow
// the bucket. It is safe for concurrent use.
type writeLead struct{ ns atomic.Int64 }

// get is the current estimate.
func (w *writeLead) get() time.Duration { return time.Duration(w.ns.Load()) }

// wrote learns from a write to the bucket that took d. A slower write raises the lead at once
// (the next slot must not be late); faster ones lower it a quarter of the way each, so one
// slow write does not delay calls for long.
func (w *writeLead) wrote(d time.Duration) {
	d = min(max(d, 0), maxLead)
	for {
		old := w.ns.Load()
		next := int64(d)
		if next < old {
			next = old - (old-next)/4
		}
		if w.ns.CompareAndSwap(old, next) {
			return
		}
	}
}
