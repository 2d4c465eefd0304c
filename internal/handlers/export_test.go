package handlers

import "time"

// SetFailAfter makes the handler fail after the named step, as a crash there would.
func (h *Handler) SetFailAfter(f func(step string) error) { h.failAfter = f }

// SetSweepDelay sets how old a pending mark is when the sweep publishes its event.
func (h *Handler) SetSweepDelay(d time.Duration) { h.sweepDelay = d }
