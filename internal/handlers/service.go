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
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// fetchers is how many goroutines pull requests from the consumer; accepting a request is
// quick, so a few keep any number of calls fed.
const fetchers = 4

// A pull asks for at most pullBatch requests, and only for as many as the fetch budget has
// room for at that moment: every request it brings is read and accepted at once, so none
// waits in the client unread. The server sends a heartbeat every pullHeartbeat while a pull
// waits, and ends it after pullExpiry; a dead route (a node gone, a partition) is noticed
// after two missed heartbeats, 4 s, and the pull made again.
const (
	pullBatch     = 64
	pullExpiry    = 6 * time.Second
	pullHeartbeat = 2 * time.Second
)

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
	ctx, stop := context.WithCancel(ctx)
	f := s.Handler.newFlow(ctx, work, s.Concurrency)
	defer func() { stop(); f.close(s.Grace, abandon) }()
	go s.Handler.alive.run(work) // until the last call in flight is settled or abandoned
	for {
		lost, err := s.consume(ctx, f)
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
func (s *Service) consume(ctx context.Context, f *flow) (lost error, err error) {
	s.Consuming.Store(true)
	defer s.Consuming.Store(false)
	pulling, stopPulls := context.WithCancel(ctx) // ends with ctx, or when the consumer is lost
	defer stopPulls()
	gone := make(chan error, fetchers+1)
	var gathering sync.Mutex // one fetcher at a time takes room for its pull
	var wg sync.WaitGroup
	for range fetchers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for pulling.Err() == nil {
				err := s.pull(pulling, ctx, f, &gathering)
				switch {
				case err == nil || pulling.Err() != nil:
				case errors.Is(err, jetstream.ErrConsumerDeleted) || errors.Is(err, jetstream.ErrConsumerNotFound) ||
					errors.Is(err, nats.ErrConnectionClosed):
					gone <- err
					return
				case errors.Is(err, jetstream.ErrNoHeartbeat):
					s.Handler.metrics.PullsRemade.Inc()
					s.Log.Warn("fetching requests", "err", err)
				default: // no responders, a server going away: the next pull may do better
					s.Log.Warn("fetching requests", "err", err)
					sleep(pulling, pullRetryPause)
				}
			}
		}()
	}
	watch, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	go s.watch(watch, gone)
	select {
	case <-ctx.Done():
	case lost = <-gone:
		if ctx.Err() != nil { // the pull failed because we are stopping
			lost = nil
		}
	}
	stopPulls()
	wg.Wait()
	return lost, nil
}

// pullRetryPause spaces pulls that fail outright, which they do at once.
const pullRetryPause = 250 * time.Millisecond

// budgetRefill is how long a pull that found little room in the fetch budget waits for more.
const budgetRefill = 2 * time.Millisecond

// pull takes room for up to pullBatch requests from the fetch budget (waiting for room for
// one), asks the consumer for that many, and accepts each on ctx as it comes, each with one
// token; the tokens of requests that did not come go back. Pulling ends with pulling;
// requests that come after are handed back.
func (s *Service) pull(pulling, ctx context.Context, f *flow, gathering *sync.Mutex) error {
	room := s.room(pulling, f, gathering)
	if room == 0 {
		return nil // stopping
	}
	came := 0
	defer func() {
		for range room - came {
			f.sched.Release()
		}
	}()
	if pulling.Err() != nil { // the consumer was lost while this waited for room
		return nil
	}
	// The context's deadline sets the pull's expiry: nats.go asks the server for nine tenths
	// of the time left, so the pull expires after pullExpiry.
	pctx, cancel := context.WithTimeout(pulling, pullExpiry*10/9)
	defer cancel()
	batch, err := s.Consumer.Fetch(room, jetstream.FetchContext(pctx), jetstream.FetchHeartbeat(pullHeartbeat))
	if err != nil {
		return err
	}
	for msg := range batch.Messages() {
		came++
		if pulling.Err() != nil { // fetched as shutdown began: hand it back
			_ = msg.NakWithDelay(handBackDelay)
			f.sched.Release()
			continue
		}
		s.Handler.accept(ctx, msg, f) // the request gives the token back
	}
	if err := batch.Error(); err != nil && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// room takes room for a pull from the fetch budget: up to pullBatch, at least one (0 when the
// scheduler stops). One fetcher at a time takes room (gathering): when the budget is nearly
// spent it comes back as requests settle, one by one, and fetchers all waiting for it would
// share it out one pull per request. A moment (budgetRefill) lets a few more come back.
func (s *Service) room(pulling context.Context, f *flow, gathering *sync.Mutex) int {
	gathering.Lock()
	defer gathering.Unlock()
	room := f.sched.TakeUpTo(pullBatch)
	if room > 0 && room < pullBatch/4 {
		sleep(pulling, budgetRefill)
		room += f.sched.TakeFree(pullBatch - room)
	}
	return room
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
