package handlers

import (
	"context"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// keepAlive keeps the deliveries of the requests in flight ours while they wait for their
// limit or a slow provider: each is told InProgress once it has gone every without a word. One
// ticker serves them all; a timer each cost an allocation and two timer operations a request.
type keepAlive struct {
	every time.Duration
	mu    sync.Mutex
	due   map[*job]time.Time
}

func newKeepAlive(every time.Duration) *keepAlive {
	return &keepAlive{every: every, due: map[*job]time.Time{}}
}

// add starts keeping j's delivery.
func (k *keepAlive) add(j *job) {
	now := time.Now()
	k.mu.Lock()
	k.due[j] = now.Add(k.every)
	k.mu.Unlock()
}

// remove stops keeping j's delivery: it is about to be settled.
func (k *keepAlive) remove(j *job) {
	k.mu.Lock()
	delete(k.due, j)
	k.mu.Unlock()
}

// run tells the deliveries that are due, every quarter of every, until ctx ends: a delivery
// goes at most every*5/4 without a word, well inside the ack wait (every is a third of it).
func (k *keepAlive) run(ctx context.Context) {
	if k.every <= 0 {
		return // no ack wait to keep inside (a handler built without one)
	}
	t := time.NewTicker(k.every / 4)
	defer t.Stop()
	var msgs []jetstream.Msg
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			msgs = msgs[:0]
			k.mu.Lock()
			for j, at := range k.due {
				if !now.Before(at) {
					msgs = append(msgs, j.msg)
					k.due[j] = now.Add(k.every)
				}
			}
			k.mu.Unlock()
			for _, m := range msgs {
				_ = m.InProgress()
			}
		}
	}
}
