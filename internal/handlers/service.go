package handlers

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Service pulls requests from the durable consumer and hands them to a Handler, at most
// concurrency at a time.
type Service struct {
	Consumer    jetstream.Consumer
	Handler     *Handler
	Concurrency int
	// Grace is how long in-flight requests may run on after shutdown starts; then they are
	// cancelled and handed back to JetStream for another replica.
	Grace time.Duration
	Log   *slog.Logger
}

// Run processes requests until ctx ends, then stops fetching, lets in-flight requests finish
// within Grace, and returns.
func (s *Service) Run(ctx context.Context) error {
	it, err := s.Consumer.Messages(jetstream.PullMaxMessages(s.Concurrency))
	if err != nil {
		return err
	}
	// Requests run on a context that outlives ctx by Grace, so a shutdown lets them finish.
	work, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		<-ctx.Done()
		it.Drain() // fetch no more; what was already fetched is handed back by the workers
		t := time.NewTimer(s.Grace)
		defer t.Stop()
		select {
		case <-t.C:
			cancelWork()
		case <-work.Done():
		}
	}()

	var wg sync.WaitGroup
	for range s.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				msg, err := it.Next()
				if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
					return
				}
				if err != nil {
					s.Log.Warn("fetching requests", "err", err)
					continue
				}
				if ctx.Err() != nil { // fetched just as shutdown began: hand it back at once
					_ = msg.Nak()
					continue
				}
				s.Handler.Handle(work, msg)
			}
		}()
	}
	wg.Wait()
	cancelWork()
	<-stopped
	return nil
}
