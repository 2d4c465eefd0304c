package ratelimit

import (
	"time"
)

// maxLead bounds how far ahead of now a slot is reserved: writes slower than that are an
// outage, and a slot further ahead would keep callers idle long after it.
const maxLead = time.Second

// wrote learns from a write to kv that took d. A slower write raises the lead at once (the
// next slot must not be late); faster ones lower it a quarter of the way each, so one slow
// write does not delay calls for long.
func (l *Limiter) wrote(d time.Duration) {
	d = min(max(d, 0), maxLead)
	for {
		old := l.lead.Load()
		next := int64(d)
		if next < old {
			next = old - (old-next)/4
		}
		if l.lead.CompareAndSwap(old, next) {
			return
		}
	}
}
