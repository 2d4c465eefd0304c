package handlers

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/paystatus/orderstatus/internal/ratelimit"
)

// scheduler runs accepted requests fairly and within their providers' limits. Each limited
// endpoint (provider, app, endpoint) has its own queue and one pacer goroutine, which takes a
// concurrency slot, then waits for a rate slot, then starts the call: a request never holds a
// worker while its app is over its limit, so one app's backlog cannot delay another app's
// request by more than that app's own limit. Requests waiting in a queue keep their JetStream
// delivery alive with InProgress.
type scheduler struct {
	// run executes j in its slot and settles it; handBack settles a job the scheduler will not
	// run (it is stopping). They are the scheduler's only ways back to the handler: it decides
	// when, never what.
	run      func(ctx context.Context, j *job)
	handBack func(j *job)
	// confirm settles j once the event its request sent is stored (or not); it runs on one
	// goroutine, confirming in the order the events were sent.
	confirm func(ctx context.Context, j *job, o outcome)
	// prepare readies j's call (an access token) before a rate slot is taken for it.
	prepare func(ctx context.Context, j *job)
	// traceWait, if set, starts the span of j's wait for a rate slot; the pacer ends it.
	traceWait func(j *job) trace.Span
	lim       *ratelimit.Limiter
	log       *slog.Logger
	waits     *prometheus.HistogramVec // time to a rate slot, by provider and endpoint
	sem       chan struct{}
	// budget bounds the requests this process holds that are ready to run: a fetcher takes a
	// token before each message, and the request gives it back when it is settled, or as soon
	// as it joins a queue already a second deep at its app's limit. Memory stays bounded however
	// big the backlog, while requests parked behind a rate limit never stop others being fetched.
	budget chan struct{}
	stop   context.Context // ends: start nothing more
	work   context.Context // ends: abandon calls in flight

	// calls hands a job whose slots are taken to one of the workers: as many long-lived
	// goroutines as call slots, whose stacks have grown to what a call needs (a goroutine a
	// call grew its stack on every call: 7% of the CPU).
	calls     chan *job
	confirms  chan confirmation
	confirmed chan struct{}  // closed when the confirming goroutine has ended
	asides    sync.WaitGroup // work set aside from confirming (see aside)

	mu      sync.Mutex
	closed  bool
	queues  map[string]*queue
	delayed map[*job]*time.Timer
	wg      sync.WaitGroup
}

type queue struct{ jobs []*job }

type confirmation struct {
	j *job
	o outcome
}

func newScheduler(lim *ratelimit.Limiter, concurrency int, stop, work context.Context, log *slog.Logger, waits *prometheus.HistogramVec) *scheduler {
	s := &scheduler{lim: lim, log: log, waits: waits, sem: make(chan struct{}, concurrency), budget: make(chan struct{}, 16*concurrency),
		stop: stop, work: work, queues: map[string]*queue{}, delayed: map[*job]*time.Timer{},
		confirms: make(chan confirmation, 4*concurrency), confirmed: make(chan struct{})}
	s.calls = make(chan *job)
	for range concurrency {
		go s.working()
	}
	go s.confirming()
	return s
}

// working runs the calls it is handed, until close.
func (s *scheduler) working() {
	for j := range s.calls {
		s.run(s.work, j)
		<-s.sem
		s.wg.Done()
	}
}

// confirming runs the confirmations, one after another, until close.
func (s *scheduler) confirming() {
	defer close(s.confirmed)
	for c := range s.confirms {
		s.confirm(s.work, c.j, c.o)
	}
}

// confirmLater has j settled once the event its request sent is stored. The calls that wait
// for the server are not held meanwhile: the next request takes the call slot at once.
func (s *scheduler) confirmLater(j *job, o outcome) { s.confirms <- confirmation{j, o} }

// aside runs f on a goroutine of its own, which close waits for.
func (s *scheduler) aside(f func()) {
	s.asides.Add(1)
	go func() {
		defer s.asides.Done()
		f()
	}()
}

// slowSlots is the spacing of rate slots above which an app counts as having a low limit
// (about 500 QPS).
const slowSlots = 2 * time.Millisecond

// take waits for a budget token; false when the scheduler stops first.
func (s *scheduler) take() bool {
	select {
	case s.budget <- struct{}{}:
		return true
	case <-s.stop.Done():
		return false
	}
}

// release gives a budget token back.
func (s *scheduler) release() { <-s.budget }

// enqueue puts j at the back of its endpoint's queue.
func (s *scheduler) enqueue(j *job) {
	s.mu.Lock()
	if s.closed || s.stop.Err() != nil {
		s.mu.Unlock()
		s.handBack(j)
		return
	}
	q := s.queues[j.key]
	if q == nil {
		q = &queue{}
		s.queues[j.key] = q
		s.wg.Add(1)
		go s.pace(j.key, q)
	}
	q.jobs = append(q.jobs, j)
	parked := len(q.jobs) > j.qps
	s.mu.Unlock()
	if parked {
		j.releaseBudget()
	}
}

// retryLater enqueues j again after d.
func (s *scheduler) retryLater(j *job, d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		go s.handBack(j)
		return
	}
	s.delayed[j] = time.AfterFunc(d, func() {
		s.mu.Lock()
		delete(s.delayed, j)
		s.mu.Unlock()
		s.enqueue(j)
	})
}

func (s *scheduler) pace(key string, q *queue) {
	defer s.wg.Done()
	for {
		s.mu.Lock()
		if len(q.jobs) == 0 || s.closed || s.stop.Err() != nil {
			left := q.jobs
			q.jobs = nil
			delete(s.queues, key)
			s.mu.Unlock()
			for _, j := range left {
				s.handBack(j)
			}
			return
		}
		head, demand := q.jobs[0], len(q.jobs)
		s.mu.Unlock()

		// An app with a low limit (slots more than slowSlots apart) waits for its rate slot
		// first and takes a call slot at its time: its waits are long, and a call slot held
		// meanwhile is one other apps cannot use. If the call slot comes too late, the rate
		// slot is thrown away (which only lowers the rate). An app with a high limit waits
		// under a millisecond, so it takes the call slot first and spends its rate slots in turn.
		slotFirst := ratelimit.Spacing(head.qps) > slowSlots
		if !slotFirst {
			select {
			case s.sem <- struct{}{}:
			case <-s.stop.Done():
				continue
			}
		}
		if s.prepare != nil {
			s.prepare(s.stop, head)
		}
		waitStart := time.Now()
		var span trace.Span
		if s.traceWait != nil {
			span = s.traceWait(head)
		}
		at, err := s.lim.Next(s.stop, key, head.qps, demand)
		if err == nil && !sleepUntil(s.stop, at) {
			err = s.stop.Err()
		}
		if span != nil {
			if err != nil {
				span.SetStatus(codes.Error, err.Error())
			}
			span.End()
		}
		if err != nil {
			if !slotFirst {
				<-s.sem
			}
			if s.stop.Err() == nil {
				s.log.Warn("rate limiter unavailable; waiting", "key", key, "err", err)
				sleep(s.stop, time.Second)
			}
			continue
		}
		if slotFirst {
			select {
			case s.sem <- struct{}{}:
			case <-s.stop.Done():
				continue
			}
		}
		if time.Since(at) > ratelimit.LateTolerance {
			<-s.sem // too late for this slot: the next round takes another
			continue
		}
		provider, endpoint := endpointOf(key)
		s.waits.WithLabelValues(provider, endpoint).Observe(time.Since(waitStart).Seconds())
		s.mu.Lock()
		q.jobs = q.jobs[1:] // only this pacer takes from q, so the head is still head
		s.mu.Unlock()
		s.wg.Add(1)
		s.calls <- head // a worker is free: the call slot taken bounds the calls to the workers
	}
}

// close stops starting work, hands back what waits, and waits for calls in flight, for at
// most grace; then it abandons them (their requests are handed back too).
func (s *scheduler) close(grace time.Duration, abandon context.CancelFunc) {
	s.mu.Lock()
	s.closed = true
	var waiting []*job
	for j, t := range s.delayed {
		if t.Stop() {
			waiting = append(waiting, j)
		}
	}
	s.delayed = map[*job]*time.Timer{}
	s.mu.Unlock()
	for _, j := range waiting {
		s.handBack(j)
	}
	done := make(chan struct{})
	go func() {
		s.wg.Wait() // no call in flight: nothing more to confirm
		close(s.calls)
		close(s.confirms)
		<-s.confirmed
		s.asides.Wait()
		close(done)
	}()
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		abandon()
		<-done
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

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
