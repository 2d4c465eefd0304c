package telemetry

import (
	"context"
	"errors"
	"sync/atomic"
	"time"
)

// Readiness is a readiness check run in the background, every so often, and served from its
// last result: a probe, however often it is called (and by whom: the port may be reachable
// from the whole cluster), costs the NATS server nothing.
type Readiness struct {
	check func(context.Context) error
	every time.Duration
	last  atomic.Pointer[error]
}

var errNotChecked = errors.New("not checked yet")

// NewReadiness makes a Readiness that runs check every every, once Run is called.
func NewReadiness(check func(context.Context) error, every time.Duration) *Readiness {
	r := &Readiness{check: check, every: every}
	r.last.Store(&errNotChecked)
	return r
}

// Run checks at once, then every r.every, until ctx ends.
func (r *Readiness) Run(ctx context.Context) {
	t := time.NewTicker(r.every)
	defer t.Stop()
	for {
		err := r.check(ctx)
		r.last.Store(&err)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Err is the last check's result: nil when ready.
func (r *Readiness) Err(context.Context) error { return *r.last.Load() }
