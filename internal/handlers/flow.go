package handlers

import (
	"context"
	"sync"
	"time"

	"github.com/paystatus/orderstatus/internal/scheduler"
)

// flow is one Run's moving parts: the scheduler the requests wait in, the workers that run
// them, and the confirmations of their events, in the order the events were sent.
type flow struct {
	h         *Handler
	sched     *scheduler.Scheduler
	workers   sync.WaitGroup
	confirms  chan confirmation
	confirmed chan struct{}  // closed when the confirming goroutine has ended
	asides    sync.WaitGroup // work set aside from confirming (aside)
}

type confirmation struct {
	j *job
	o outcome
}

// recorders is how many workers there are beyond the call slots: a worker gives its slot back
// once the provider has answered (callSlot); the rest of its request, recording the answer
// and publishing its event, waits on NATS, not on the provider, so other workers make the
// slot's next calls meanwhile. Three per slot, at most 1,024.
func recorders(concurrency int) int { return min(3*concurrency, 1024) }

// newFlow starts the workers, which run the jobs the scheduler hands out on work (which
// outlives stop, for calls in flight at shutdown), at most concurrency provider calls at a
// time, and the confirming goroutine.
func (h *Handler) newFlow(stop, work context.Context, concurrency int) *flow {
	f := &flow{h: h, sched: scheduler.New(stop, h.lim, concurrency, h.log, h.metrics.LimiterWait),
		confirms: make(chan confirmation, 4*concurrency), confirmed: make(chan struct{})}
	for range concurrency + recorders(concurrency) {
		f.workers.Add(1)
		go func() {
			defer f.workers.Done()
			for sj := range f.sched.Ready() {
				j, slot := sj.(*job), callSlot{sched: f.sched, held: true}
				h.settle(work, j, h.execute(work, j, &slot))
				slot.end()
			}
		}()
	}
	go func() {
		defer close(f.confirmed)
		for c := range f.confirms {
			h.confirm(work, c.j, c.o)
		}
	}()
	return f
}

// confirmLater has j settled once the event its request sent is stored. The worker is not
// held meanwhile: it takes the next request at once.
func (f *flow) confirmLater(j *job, o outcome) { f.confirms <- confirmation{j, o} }

// aside runs fn on a goroutine of its own, which close waits for.
func (f *flow) aside(fn func()) {
	f.asides.Add(1)
	go func() {
		defer f.asides.Done()
		fn()
	}()
}

// close, once stop has ended, hands back what waits in the scheduler, and waits for calls in
// flight and their confirmations, for at most grace; then it abandons them (their requests
// are handed back too).
func (f *flow) close(grace time.Duration, abandon context.CancelFunc) {
	for _, j := range f.sched.Close() {
		f.h.settle(context.Background(), j.(*job), outcome{verdict: handBack})
	}
	done := make(chan struct{})
	go func() {
		f.workers.Wait() // no call in flight: nothing more to confirm
		close(f.confirms)
		<-f.confirmed
		f.asides.Wait()
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

// sleep waits for d; false when ctx ends first.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// callSlot is the call slot a worker took a job with, until end gives it back: once the
// provider has answered. It is the worker's, not the job's: settle may hand the job to the
// scheduler again, and another worker take it, before this one ends.
type callSlot struct {
	sched *scheduler.Scheduler
	held  bool
}

func (c *callSlot) end() {
	if c.held {
		c.held = false
		c.sched.Done()
	}
}
