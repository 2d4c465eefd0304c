package handlers

// SetFailAfter makes the handler fail after the named step, as a crash there would.
func (h *Handler) SetFailAfter(f func(step string) error) { h.failAfter = f }
