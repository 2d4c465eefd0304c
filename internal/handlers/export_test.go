package handlers

import "time"

// SetFailAfter makes the handler fail after the named step, as a crash there would.
func (h *Handler) SetFailAfter(f func(step string) error) { h.failAfter = f }

// SetSweepDelay sets how long after a claim its event check is due.
func (h *Handler) SetSweepDelay(d time.Duration) { h.sweepDelay = d }
