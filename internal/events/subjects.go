package events

import (
	"strings"

	"github.com/paystatus/orderstatus/internal/kvkey"
)

// Unknown stands for a subject token the consumer could not read or does not know.
const Unknown = "unknown"

// Subjects builds and parses the subjects under one prefix (CONTRACT.md section 1).
type Subjects struct {
	Prefix string
}

// QueryFilter is the wildcard the ORDERS_QUERY stream and the consumer capture.
func (s Subjects) QueryFilter() string { return s.Prefix + ".query.>" }

// FollowFilter is the wildcard of scheduled follow-up queries, held in ORDERS_QUERY until due.
func (s Subjects) FollowFilter() string { return s.Prefix + ".follow.>" }

// Query is the subject a request of provider and kind is published on.
func (s Subjects) Query(provider, kind string) string {
	return s.Prefix + ".query." + provider + "." + kind
}

// FollowPrefix starts every follow-up subject.
func (s Subjects) FollowPrefix() string { return s.Prefix + ".follow." }

// Follow is the subject a follow-up query of provider and kind waits on; id makes it unique.
func (s Subjects) Follow(provider, kind, id string) string {
	return s.FollowPrefix() + provider + "." + kind + "." + id
}

// CallbackFilter is the wildcard the ORDERS_CALLBACK stream captures: provider notifications.
func (s Subjects) CallbackFilter() string { return s.Prefix + ".callback.>" }

// CallbackPrefix starts every notification subject: <prefix>.callback.<provider>.
func (s Subjects) CallbackPrefix() string { return s.Prefix + ".callback." }

// Callback is the subject a notification of provider is stored on.
func (s Subjects) Callback(provider string) string { return s.CallbackPrefix() + provider }

// StatusFilter is the wildcard the ORDERS_STATUS stream captures.
func (s Subjects) StatusFilter() string { return s.Prefix + ".status.>" }

// DeadLetterFilter is the wildcard the ORDERS_DLQ stream captures.
func (s Subjects) DeadLetterFilter() string { return s.Prefix + ".dlq.>" }

// Status is the subject a status-changed event is published on.
func (s Subjects) Status(provider, kind string, status Status) string {
	return s.Prefix + ".status." + provider + "." + kind + "." + string(status)
}

// DeadLetter is the subject a dead letter is published on.
func (s Subjects) DeadLetter(provider, kind string) string {
	return s.Prefix + ".dlq." + provider + "." + kind
}

// ReadableToken reports whether a subject token names something: 1 to 64 ASCII letters,
// digits, '-' or '_' (kvkey.Plain). A dead letter's subject keeps such a token even when no
// provider or kind of that name is configured; any other token is Unknown there (CONTRACT.md
// section 4).
func ReadableToken(token string) bool { return len(token) <= 64 && kvkey.Plain(token) }

// ParseQuery reads provider and kind from a query subject. ok is false when the subject is
// not exactly <prefix>.query.<provider>.<kind>.
func (s Subjects) ParseQuery(subject string) (provider, kind string, ok bool) {
	rest, found := strings.CutPrefix(subject, s.Prefix+".query.")
	if !found {
		return "", "", false
	}
	provider, kind, found = strings.Cut(rest, ".")
	if !found || provider == "" || kind == "" || strings.Contains(kind, ".") {
		return "", "", false
	}
	return provider, kind, true
}
