package ratelimit

import "sync/atomic"

// Stats counts what a limiter has done since New, over all its keys. Waits beyond
// Reservations are calls that waited for a renewal running late; Ahead, Renewals and
// RenewalConflicts show how much of the reserving is done ahead of demand, and how often
// another replica's write ends it.
type Stats struct {
	// Reservations is the reservations of slots written for callers, by demand or ahead.
	Reservations int64
	// Ahead is the reservations that reserved a horizon ahead of demand.
	Ahead int64
	// Waits is the times a Next call found no slot at hand and waited for the bucket: for a
	// reservation, or for a renewal under way.
	Waits int64
	// Renewals is the horizons renewed in the background.
	Renewals int64
	// RenewalConflicts is the renewals that met another replica's write and reserved nothing.
	RenewalConflicts int64
}

type counts struct {
	reservations, ahead, waits, renewals, renewalConflicts atomic.Int64
}

// Stats returns the limiter's counts so far.
func (l *Limiter) Stats() Stats {
	return Stats{
		Reservations:     l.counts.reservations.Load(),
		Ahead:            l.counts.ahead.Load(),
		Waits:            l.counts.waits.Load(),
		Renewals:         l.counts.renewals.Load(),
		RenewalConflicts: l.counts.renewalConflicts.Load(),
	}
}
