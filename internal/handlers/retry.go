package handlers

import (
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/paystatus/orderstatus/internal/events"
	"github.com/paystatus/orderstatus/internal/orderstate"
	"github.com/paystatus/orderstatus/internal/providers"
)

// verdict is what becomes of a request after one step.
type verdict int

const (
	ack        verdict = iota // done: its event, if any, is stored
	requeue                   // the provider's credential was replaced: run again at once
	retryAfter                // retry in this process after delay
	redeliver                 // hand back to JetStream, to come again after delay
	deadLetter                // it can never succeed
	handBack                  // this process is stopping: for another replica, soon
)

func (v verdict) String() string {
	return [...]string{"ack", "requeue", "retry_after", "redeliver", "dead_letter", "hand_back"}[v]
}

// outcome is a verdict with what settling it needs.
type outcome struct {
	verdict      verdict
	delay        time.Duration           // retryAfter, redeliver
	reason, text string                  // deadLetter
	changed      bool                    // ack: an event was published
	pub          *orderstate.Publication // ack: the event, sent and not yet confirmed
	slowdown     bool                    // the provider refused for its rate limit: pause the app once
	err          error                   // the failure, for the log
}

// failure is what the retry policy knows of a failed attempt.
type failure struct {
	err       error
	rejected  *rejection // non-nil: the request itself can never succeed
	class     providers.Class
	recording bool          // the call succeeded; recording or publishing its answer failed
	stopping  bool          // the process is shutting down
	refreshed bool          // the credential was replaced once for this request already
	next      time.Duration // the next in-process wait, or backoff.Stop when they are spent
	atLeast   time.Duration // the provider's own Retry-After
	delivered uint64        // this delivery's number, from 1
	// maxDeliver is the last delivery allowed; on it a request that still fails is dead-lettered.
	maxDeliver uint64
}

// decide is the retry policy, one table: error class × delivery count × process state →
// outcome. It is pure, so the table is tested without NATS.
func decide(f failure) outcome {
	switch {
	case f.rejected != nil:
		return rejected(f.rejected)
	case f.stopping:
		return outcome{verdict: handBack, err: f.err}
	}
	slow := f.class == providers.RateLimited
	switch {
	case f.recording: // no in-process retry: it would ask the provider again
	case f.class == providers.TokenInvalid && !f.refreshed:
		return outcome{verdict: requeue, err: f.err}
	case f.next != backoff.Stop:
		return outcome{verdict: retryAfter, delay: max(f.next, f.atLeast), slowdown: slow, err: f.err}
	}
	if f.delivered >= f.maxDeliver {
		return outcome{verdict: deadLetter, reason: events.ReasonRetriesExhausted, slowdown: slow, err: f.err,
			text: fmt.Sprintf("gave up after %d deliveries: %v", f.delivered, f.err)}
	}
	return outcome{verdict: redeliver, delay: redeliveryDelay(f.delivered, f.atLeast), slowdown: slow, err: f.err}
}

// rejected is the dead-letter outcome of a request that can never succeed; err is a
// *rejection.
func rejected(err error) outcome {
	rej, ok := err.(*rejection)
	if !ok {
		rej = &rejection{reason: events.ReasonInvalidPayload, text: err.Error()}
	}
	return outcome{verdict: deadLetter, reason: rej.reason, text: rej.text, err: err}
}

// newRetries is the in-process retry schedule of one request: jittered, doubling from 200 ms
// to 2 s, for at most retryBudget.
func (h *Handler) newRetries() *backoff.ExponentialBackOff {
	return backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(200*time.Millisecond), backoff.WithMultiplier(2),
		backoff.WithRandomizationFactor(0.5), backoff.WithMaxInterval(2*time.Second),
		backoff.WithMaxElapsedTime(h.retryBudget))
}

// redeliveryDelay grows with each delivery (1 s, 2 s, 4 s, ... up to 5 min), with jitter so
// that requests that failed together do not come back together.
func redeliveryDelay(delivered uint64, atLeast time.Duration) time.Duration {
	d := time.Second << min(max(delivered, 1)-1, 9)
	d = min(d, 5*time.Minute)
	d = d/2 + rand.N(d/2+1)
	return max(d, atLeast)
}

// handBackDelay is short: the request is fine, only this process is going away.
const handBackDelay = 250 * time.Millisecond
