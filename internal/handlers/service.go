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
	// A small prefetch: a message waiting in the client's buffer has no keep-alive yet, so the
	// buffer must drain long before the ack wait even when the fetch budget is spent.
	it, err := s.Consumer.Messages(jetstream.PullMaxMessages(4 * fetchers))
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
