package handlers

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/paystatus/orderstatus/internal/ratelimit"
)

// fetchers is how many goroutines take messages from the consumer; accepting a request is
// quick, so a few keep any number of calls fed.
const fetchers = 4

// Service pulls requests from the durable consumer, accepts them, and runs them through a
// scheduler with at most Concurrency provider calls at a time.
type Service struct {
	Consumer    jetstream.Consumer
	Handler     *Handler
	Limiter     *ratelimit.Limiter
	Concurrency int
	// Grace is how long calls in flight may run on after shutdown starts; then they are
	// abandoned and their requests handed back to JetStream for another replica.
	Grace time.Duration
	Log   *slog.Logger
}

// Run processes requests until ctx ends, then stops fetching, hands back what has not
// started, lets calls in flight finish within Grace, and returns.
func (s *Service) Run(ctx context.Context) error {
	// 64 messages of prefetch: fewer makes pulling the bottleneck (a 100,000 backlog drained
	// at 900-2,000 req/s with 16, at 4,800 with 64). A prefetched message has no keep-alive yet;
	// it waits at most until a budget token frees, which in-process retries bound to about
	// 10 s, well inside the ack wait.
	it, err := s.Consumer.Messages(jetstream.PullMaxMessages(64))
	if err != nil {
		return err
	}
	work, abandon := context.WithCancel(context.WithoutCancel(ctx))
	defer abandon()
	sched := newScheduler(s.Handler, s.Limiter, s.Concurrency, ctx, work)

	var wg sync.WaitGroup
	for range fetchers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				taken := sched.take()
				msg, err := it.Next()
				if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
					if taken {
						sched.release()
					}
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
	<-ctx.Done()
	it.Drain() // fetch no more; what was already fetched comes out of Next and is handed back
	wg.Wait()
	sched.close(s.Grace, abandon)
	return nil
}
