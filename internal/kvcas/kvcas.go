// Package kvcas tells a compare-and-set conflict on a JetStream KV bucket from any other
// failure, the same way for every writer (the order state and the rate limiter).
package kvcas

import (
	"errors"

	"github.com/nats-io/nats.go/jetstream"
)

// Conflict reports whether err says that a Create or an Update lost a race: the key exists
// already, or is no longer at the revision the writer read. The server says so with API error
// 10071 on a single replica and 10164 on a replicated (R3) stream, and nats.go wraps them as
// ErrKeyExists (Create) or ErrKeyRevisionMismatch (Update); all four are recognised, so a
// conflict is re-read at once, never taken for an outage.
func Conflict(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return true
	}
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}
