package handlers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/trace"
)

// fetchers is how many goroutines take messages from the consumer; accepting a request is
// quick, so a few keep any number of calls fed.
const fetchers = 4

// Service pulls requests from the durable consumer, accepts them, and runs them through a
// scheduler with at most Concurrency provider calls at a time.
type Service struct {
	Consumer    jetstream.Consumer
	Handler     *Handler
	Concurrency int
	// Grace is how long calls in flight may run on after shutdown starts; then they are
	// abandoned and their requests handed back to JetStream for another replica.
	Grace time.Duration
	// Rebind gets the consumer again when it is lost (deleted, or its message iterator closed
	// under the service); nil means a lost consumer ends Run with an error.
	Rebind func(context.Context) (jetstream.Consumer, error)
	// RebindFor is how long Rebind is retried before Run gives up (default 30 s).
	RebindFor time.Duration
	// CheckEvery is how often the consumer is looked up, to notice it is gone even when no
	// pull tells (default 5 s).
	CheckEvery time.Duration
	Log        *slog.Logger

	// Consuming is true while the service takes requests: readiness.
	Consuming atomic.Bool
}

// ErrConsumerLost is returned by Run when the consumer is gone and cannot be had again: the
// process should exit non-zero so that it is restarted, never sit on as a replica that
// consumes nothing.
var ErrConsumerLost = errors.New("consumer lost")

// Run processes requests until ctx ends, then stops fetching, hands back what has not
// started, lets calls in flight finish within Grace, and returns. A consumer deleted under it
// is made again (Rebind) and consuming goes on; if that fails, Run returns ErrConsumerLost.
func (s *Service) Run(ctx context.Context) error {
	work, abandon := context.WithCancel(context.WithoutCancel(ctx))
	defer abandon()
	sched := s.Handler.newScheduler(s.Concurrency, ctx, work)
	defer sched.close(s.Grace, abandon)
	sweeping, stopSweep := context.WithCancel(ctx)
	swept := make(chan struct{})
	go func() { defer close(swept); s.Handler.sweepLoop(sweeping) }()
	go s.Handler.alive.run(work) // until the last call in flight is settled or abandoned
	defer func() { stopSweep(); <-swept }()
	for {
		lost, err := s.consume(ctx, sched)
		if err != nil {
			return err
		}
		if ctx.Err() != nil {
			return nil
		}
		s.Log.Error("the consumer is gone; making it again", "consumer", s.consumerName(), "err", lost)
		if err := s.rebind(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("%w: %v (after: %v)", ErrConsumerLost, err, lost)
		}
		s.Log.Info("consuming again", "consumer", s.consumerName())
	}
}

func (s *Service) consumerName() string {
	if s.Consumer == nil {
		return ""
	}
	return s.Consumer.CachedInfo().Name
}

// consume fetches and accepts requests until ctx ends (lost is nil) or the consumer is lost.
func (s *Service) consume(ctx context.Context, sched *scheduler) (lost error, err error) {
	// 64 messages of prefetch: fewer makes pulling the bottleneck (a 100,000 backlog drained
	// at 900-2,000 req/s with 16, at 4,800 with 64). A prefetched message has no keep-alive yet;
	// it waits at most until a budget token frees, which in-process retries bound to about
	// 10 s, well inside the ack wait.
	// A pull expires every 6 s with a heartbeat every 2 s, so a dead route (a node gone, a
	// partition) is noticed after two missed heartbeats, 4 s, and the pull is made again;
	// nats.go's defaults (30 s, 15 s) noticed it after about 21 s.
	it, err := s.Consumer.Messages(jetstream.PullMaxMessages(64), jetstream.PullExpiry(6*time.Second), jetstream.PullHeartbeat(2*time.Second))
	if err != nil {
		return nil, err
	}
	s.Consuming.Store(true)
	defer s.Consuming.Store(false)
	gone := make(chan error, fetchers+1)
	var wg sync.WaitGroup
	for range fetchers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				taken := sched.take()
				msg, err := it.Next()
				if errors.Is(err, jetstream.ErrMsgIteratorClosed) || errors.Is(err, jetstream.ErrConsumerDeleted) ||
					errors.Is(err, jetstream.ErrConsumerNotFound) {
					if taken {
						sched.release()
					}
					gone <- err
					return
				}
				if err != nil || !taken || ctx.Err() != nil {
					if taken {
						sched.release()
					}
					if err != nil {
						s.Log.Warn("fetching requests", "err", err)
					} else { // fetched as shutdown began: hand it back
						_ = msg.NakWithDelay(handBackDelay)
					}
					continue
				}
				s.Handler.accept(ctx, msg, sched) // the request gives the token back
			}
		}()
	}
	watch, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	go s.watch(watch, gone)
	select {
	case <-ctx.Done():
		it.Drain() // fetch no more; what was already fetched comes out of Next and is handed back
	case lost = <-gone:
		if ctx.Err() != nil { // the iterator closed because we are stopping
			lost = nil
		}
		it.Stop()
	}
	wg.Wait()
	return lost, nil
}

// watch looks the consumer up now and then, and reports on gone when it no longer exists.
func (s *Service) watch(ctx context.Context, gone chan<- error) {
	every := s.CheckEvery
	if every <= 0 {
		every = 5 * time.Second
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		lctx, cancel := context.WithTimeout(ctx, every)
		_, err := s.Consumer.Info(lctx)
		cancel()
		if errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrConsumerDeleted) {
			gone <- err
			return
		}
	}
}

// rebind gets the consumer again, retrying with backoff for at most RebindFor.
func (s *Service) rebind(ctx context.Context) error {
	if s.Rebind == nil {
		return errors.New("no way to make the consumer again")
	}
	limit := s.RebindFor
	if limit <= 0 {
		limit = 30 * time.Second
	}
	bo := backoff.NewExponentialBackOff(backoff.WithInitialInterval(100*time.Millisecond),
		backoff.WithMaxInterval(5*time.Second), backoff.WithMaxElapsedTime(limit))
	return backoff.Retry(func() error {
		c, err := s.Rebind(ctx)
		if err != nil {
			s.Log.Warn("making the consumer again failed; retrying", "err", err)
			return err
		}
		s.Consumer = c
		return nil
	}, backoff.WithContext(bo, ctx))
}

// newScheduler makes the scheduler that runs h's accepted requests: in its slot, a request is
// executed and its outcome settled; one the scheduler will not run is handed back.
func (h *Handler) newScheduler(concurrency int, stop, work context.Context) *scheduler {
	s := newScheduler(h.lim, concurrency, stop, work, h.log, h.metrics.LimiterWait)
	s.run = func(ctx context.Context, j *job) { h.settle(ctx, j, h.execute(ctx, j), s) }
	s.handBack = func(j *job) { h.settle(context.Background(), j, outcome{verdict: handBack}, s) }
	s.confirm = func(ctx context.Context, j *job, o outcome) { h.confirmed(ctx, j, o, s) }
	s.prepare = func(ctx context.Context, j *job) { h.prepare(j.traced(ctx), j.p, j.req) }
	s.traceWait = func(j *job) trace.Span {
		_, span := h.startSpan(j.traced(context.Background()), "ratelimit wait", trace.SpanKindInternal)
		return span
	}
	return s
}
