// Package scheduler decides when accepted requests run: fairly, within their endpoints' QPS
// limits, with a bounded number of calls at a time and a bounded number of requests held.
//
// Each limited endpoint (provider, app, endpoint) has its own queue and one pacer goroutine,
// which takes a call slot, waits for a rate slot, then hands the job out on Ready. A job never
// holds a call slot while its app is over its limit, so one app's backlog cannot delay another
// app's request by more than that app's own limit. The scheduler decides when; what a job does
// and what becomes of it is its owner's business.
package scheduler

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/paystatus/orderstatus/internal/ratelimit"
	"github.com/paystatus/orderstatus/internal/telemetry"
)

// Job is one request to run.
type Job interface {
	// Endpoint is the rate-limited endpoint the job's call counts against, and its limit.
	Endpoint() (key string, qps int)
	// Prepare readies the call before a rate slot is taken for it (an access token), so a
	// slow preparation never bunches calls into one second.
	Prepare(ctx context.Context)
	// Waiting is told when the job starts waiting for its rate slot; the function it returns
	// when the wait ends.
	Waiting() (done func(error))
	// Parked is told when the job joins a queue already a second deep at its limit: it gives
	// its fetch budget token back (Release), so parked jobs never stop others being fetched.
	Parked()
}

// ErrClosed is returned by Enqueue once the scheduler stops taking jobs.
var ErrClosed = errors.New("scheduler closed")

// Scheduler runs jobs within their limits.
type Scheduler struct {
	lim   *ratelimit.Limiter
	log   *slog.Logger
	waits *prometheus.HistogramVec // time to a rate slot, by provider and endpoint
	slots chan struct{}            // call slots: a job handed out holds one until Done
	// budget bounds the jobs this process holds that are ready to run: a fetcher takes a token
	// before each message (Take), and gives it back when the job is settled or parked.
	budget chan struct{}
	ready  chan Job
	stop   context.Context // ends: start nothing more

	mu      sync.Mutex
	closed  bool
	queues  map[string]*queue
	delayed map[Job]*time.Timer
	left    []Job // jobs the pacers did not run
	pacers  sync.WaitGroup
	timers  sync.WaitGroup // EnqueueAfter's timers, scheduled and not yet done
}

type queue struct{ jobs []Job }

// New makes a scheduler with concurrency call slots; it starts nothing once stop ends.
func New(stop context.Context, lim *ratelimit.Limiter, concurrency int, log *slog.Logger, waits *prometheus.HistogramVec) *Scheduler {
	return &Scheduler{lim: lim, log: log, waits: waits, slots: make(chan struct{}, concurrency),
		budget: make(chan struct{}, 16*concurrency), ready: make(chan Job), stop: stop,
		queues: map[string]*queue{}, delayed: map[Job]*time.Timer{}}
}

// Ready hands out jobs whose call slot and rate slot are taken; the receiver runs the job,
// then calls Done. It is closed by Close once no pacer is left.
func (s *Scheduler) Ready() <-chan Job { return s.ready }

// Done frees the call slot of a job handed out by Ready.
func (s *Scheduler) Done() { <-s.slots }

// Take waits for a fetch budget token; false when the scheduler stops first.
func (s *Scheduler) Take() bool {
	select {
	case s.budget <- struct{}{}:
		return true
	case <-s.stop.Done():
		return false
	}
}

// TakeUpTo waits for a fetch budget token, then takes more of those free at that moment, up
// to n in all: a pull sized by it asks for no message the budget cannot hold. It returns how
// many it took; 0 when the scheduler stops first.
func (s *Scheduler) TakeUpTo(n int) int {
	if n < 1 || !s.Take() {
		return 0
	}
	return 1 + s.TakeFree(n-1)
}

// TakeFree takes the fetch budget tokens free now, up to n, without waiting, and returns how
// many it took.
func (s *Scheduler) TakeFree(n int) int {
	took := 0
	for took < n {
		select {
		case s.budget <- struct{}{}:
			took++
		default:
			return took
		}
	}
	return took
}

// Release gives a fetch budget token back.
func (s *Scheduler) Release() { <-s.budget }

// Enqueue puts j at the back of its endpoint's queue; ErrClosed once the scheduler stops.
func (s *Scheduler) Enqueue(j Job) error {
	key, qps := j.Endpoint()
	s.mu.Lock()
	if s.closed || s.stop.Err() != nil {
		s.mu.Unlock()
		return ErrClosed
	}
	q := s.queues[key]
	if q == nil {
		q = &queue{}
		s.queues[key] = q
		s.pacers.Add(1)
		go s.pace(key, q)
	}
	q.jobs = append(q.jobs, j)
	parked := len(q.jobs) > qps
	s.mu.Unlock()
	if parked {
		j.Parked()
	}
	return nil
}

// EnqueueAfter enqueues j after d; ErrClosed once the scheduler stops.
func (s *Scheduler) EnqueueAfter(j Job, d time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	s.timers.Add(1)
	s.delayed[j] = time.AfterFunc(d, func() {
		defer s.timers.Done()
		s.mu.Lock()
		delete(s.delayed, j)
		s.mu.Unlock()
		if s.Enqueue(j) != nil {
			s.mu.Lock()
			s.left = append(s.left, j)
			s.mu.Unlock()
		}
	})
	return nil
}

// Close stops taking jobs, waits for the pacers to stop (stop must have ended), closes Ready,
// and returns every job that was not handed out: the caller hands them back.
func (s *Scheduler) Close() []Job {
	s.mu.Lock()
	s.closed = true
	for j, t := range s.delayed {
		if t.Stop() {
			s.left = append(s.left, j)
			s.timers.Done()
		}
	}
	s.delayed = map[Job]*time.Timer{}
	s.mu.Unlock()
	s.timers.Wait()
	s.pacers.Wait()
	close(s.ready)
	s.mu.Lock()
	defer s.mu.Unlock()
	left := s.left
	s.left = nil
	return left
}

// slowSlots is the spacing of rate slots above which an app counts as having a low limit
// (about 500 QPS).
const slowSlots = 2 * time.Millisecond

func (s *Scheduler) pace(key string, q *queue) {
	defer s.pacers.Done()
	provider, endpoint := telemetry.EndpointOf(key)
	for {
		s.mu.Lock()
		if len(q.jobs) == 0 || s.closed || s.stop.Err() != nil {
			s.left = append(s.left, q.jobs...)
			q.jobs = nil
			delete(s.queues, key)
			s.mu.Unlock()
			return
		}
		head, demand := q.jobs[0], len(q.jobs)
		s.mu.Unlock()
		_, qps := head.Endpoint()

		// An app with a low limit (slots more than slowSlots apart) waits for its rate slot
		// first and takes a call slot at its time: its waits are long, and a call slot held
		// meanwhile is one other apps cannot use. If the call slot comes too late, the rate
		// slot is thrown away (which only lowers the rate). An app with a high limit waits
		// under a millisecond, so it takes the call slot first and spends its rate slots in turn.
		slotFirst := ratelimit.Spacing(qps) > slowSlots
		if !slotFirst && !s.takeSlot() {
			continue
		}
		head.Prepare(s.stop)
		waitStart := time.Now()
		done := head.Waiting()
		at, err := s.lim.Next(s.stop, key, qps, demand)
		if err == nil && !sleepUntil(s.stop, at) {
			err = s.stop.Err()
		}
		done(err)
		if err != nil {
			if !slotFirst {
				s.Done()
			}
			if s.stop.Err() == nil {
				s.log.Warn("rate limiter unavailable; waiting", "key", key, "err", err)
				sleepUntil(s.stop, time.Now().Add(time.Second))
			}
			continue
		}
		if slotFirst && !s.takeSlot() {
			continue
		}
		if time.Since(at) > ratelimit.LateTolerance {
			s.Done() // too late for this slot: the next round takes another
			continue
		}
		s.waits.WithLabelValues(provider, endpoint).Observe(time.Since(waitStart).Seconds())
		s.mu.Lock()
		q.jobs = q.jobs[1:] // only this pacer takes from q, so the head is still head
		s.mu.Unlock()
		s.ready <- head // a receiver is free: the call slot taken bounds the jobs handed out
	}
}

// takeSlot waits for a call slot; false when the scheduler stops first.
func (s *Scheduler) takeSlot() bool {
	select {
	case s.slots <- struct{}{}:
		return true
	case <-s.stop.Done():
		return false
	}
}

// sleepUntil waits until t; false when ctx ends first.
func sleepUntil(ctx context.Context, t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err() == nil
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-ctx.Done():
		return false
	}
}
