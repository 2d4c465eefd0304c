package ratelimit

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// clockKey is the key the limiter writes to read the NATS server's clock. It is no key a
// limited endpoint can have: kvkey writes a token starting with "=" as base64, whose length is
// never one more than a multiple of four.
const clockKey = "=clock"

const (
	// clockRefresh is how old a reading of the server's clock may grow before the limiter
	// reads it again: the two clocks drift apart by well under a millisecond in that time.
	clockRefresh = 5 * time.Second
	// clockRetry is how long after a failed reading the limiter tries again, meanwhile
	// keeping the reading it has.
	clockRetry = time.Second
	// clockDrift bounds how fast the local clock and the server's may drift apart (500 ppm):
	// it ages a reading, so that a newer one with a longer round trip eventually replaces it.
	clockDrift = 2000
	// clockTries is how many times a reading is tried while other replicas' readings
	// overwrite it.
	clockTries = 5
	// clockStep is the most a new reading may move the mapping from local to server time:
	// slots after it move that much closer to the slots before it at worst, well inside
	// Margin together with LateTolerance.
	clockStep = time.Millisecond
)

// reading pairs a time of the server's clock with the local time it was at. Local times
// read through it keep their monotonic reading when the local clock has one, so that steps
// of the local wall clock change nothing.
type reading struct {
	server, local time.Time
	// uncertainty is half the round trip the reading took: the server's time was read
	// somewhere within it.
	uncertainty time.Duration
}

// serverTime is the server's time at local time t.
func (r reading) serverTime(t time.Time) time.Time { return r.server.Add(t.Sub(r.local)) }

// localTime is the local time at server time t.
func (r reading) localTime(t time.Time) time.Time { return r.local.Add(t.Sub(r.server)) }

// serverClock reads the NATS server's clock, which every replica shares: a KV entry's
// Created time is the time the server stored it. A replica puts a small entry, reads its
// Created time back, and takes it for the server's time at the midpoint of the put's round
// trip. Replicas' own clocks may be wrong by any amount; only the round trip limits how well
// two replicas agree on the server's time (a millisecond or so).
type serverClock struct {
	kv  jetstream.KeyValue
	now func() time.Time
	// wrote learns how long a write took.
	wrote func(time.Duration)

	mu      sync.Mutex
	r       reading
	checked time.Time // local time of the last attempt to read the server's clock
	// latest is r, for callers that must not wait while mu is held for a new reading.
	latest atomic.Pointer[reading]
}

// reading returns the latest reading of the server's clock, reading it again first if it is
// older than clockRefresh.
func (c *serverClock) reading(ctx context.Context) (reading, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	if !c.r.server.IsZero() && now.Sub(c.checked) < clockRefresh {
		return c.r, nil
	}
	r, err := c.read(ctx)
	switch {
	case err != nil && c.r.server.IsZero():
		return reading{}, fmt.Errorf("read the NATS server's clock: %w", err)
	case err != nil:
		c.checked = now.Add(clockRetry - clockRefresh) // keep the old reading a little longer
		return c.r, nil
	}
	c.checked = now
	// A reading with a longer round trip than the last is taken only once the last has aged
	// as uncertain.
	if c.r.server.IsZero() || r.uncertainty <= c.r.uncertainty+r.local.Sub(c.r.local)/clockDrift {
		if !c.r.server.IsZero() {
			r = c.r.toward(r, clockStep)
		}
		c.r = r
		c.latest.Store(&r)
	}
	return c.r, nil
}

// toward is r, moved so that the server time it gives differs from old's by at most step at
// r's local time. Slots are kept in server time and waited for in local time: a reading that
// moved the mapping by d would bring the slots after it d closer to those before it, and could
// let more than qps calls into a second. Moving at most step per reading (every clockRefresh)
// keeps that within the spacing's margin; a larger error is worked off over several readings.
func (old reading) toward(r reading, step time.Duration) reading {
	want := old.serverTime(r.local)
	d := r.server.Sub(want)
	if d > step {
		r.server = want.Add(step)
		r.uncertainty = max(r.uncertainty, old.uncertainty)
	} else if d < -step {
		r.server = want.Add(-step)
		r.uncertainty = max(r.uncertainty, old.uncertainty)
	}
	return r
}

// current returns the latest reading at once, never reading the server's clock again nor
// waiting for a reading under way; ok is false before the first reading.
func (c *serverClock) current() (r reading, ok bool) {
	if p := c.latest.Load(); p != nil {
		return *p, true
	}
	return reading{}, false
}

// read puts an entry and reads the time the server stored it.
func (c *serverClock) read(ctx context.Context) (reading, error) {
	for try := 1; ; try++ {
		var buf [8]byte
		sent := c.now()
		binary.BigEndian.PutUint64(buf[:], uint64(sent.UnixNano())) // for whoever looks: this replica's clock
		rev, err := c.kv.Put(ctx, clockKey, buf[:])
		if err != nil {
			return reading{}, err
		}
		rtt := c.now().Sub(sent)
		c.wrote(rtt)
		// By its revision: the bucket keeps one per key, so this fails when another replica
		// has put the key since, and is tried again.
		e, err := c.kv.GetRevision(ctx, clockKey, rev)
		if errors.Is(err, jetstream.ErrKeyNotFound) && try < clockTries {
			continue
		}
		if err != nil {
			return reading{}, err
		}
		return reading{server: e.Created(), local: sent.Add(rtt / 2), uncertainty: rtt / 2}, nil
	}
}
