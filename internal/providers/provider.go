// Package providers holds what every payment provider shares: the Provider interface the
// pipeline calls, the query and result types, the error classes and result codes, the HTTP
// client and Post, and the reading of a provider's record into an event's fields and details.
// Each provider lives in its own folder below this one, holding only its wire specifics, and
// registers itself in the pipeline's wiring with one line; nothing provider-specific leaks out
// of its folder.
package providers

import (
	"context"
	"time"

	"github.com/paystatus/orderstatus/internal/events"
)

// Query is one status query, as the request asked for it.
type Query struct {
	Kind            string
	AppID           string
	OrderNo         string
	ProviderOrderNo string
	Refresh         bool
}

// Result is a provider's answer, normalized.
type Result struct {
	// OrderKey identifies the order at the provider, stable across queries however the order
	// was asked for; it keys the last-known state and goes into the event id.
	OrderKey        string
	OrderNo         string // merchant order number, as the provider returned it or as asked
	ProviderOrderNo string
	ProviderRefNo   string
	ProviderStatus  string
	Status          events.Status
	Amount          int64 // fen
	PaidAt          time.Time
	Channel         events.Channel
	Details         map[string]any
	ObservedAt      time.Time
}

// Provider is one payment platform.
type Provider interface {
	// Name is the provider's subject token, e.g. "kuaishou".
	Name() string
	// SupportsKind reports whether the provider answers queries of this kind.
	SupportsKind(kind string) bool
	// HasApp reports whether app_id is configured for the provider.
	HasApp(appID string) bool
	// Validate checks the provider's own rules on a query's fields; its error is an
	// *events.PayloadError.
	Validate(q Query) error
	// RateLimit names the endpoint q calls, as the key its QPS limit is kept under, and that
	// limit. The caller takes one slot under key before each Query.
	RateLimit(q Query) (key string, qps int)
	// Query makes one call to the provider and normalizes the answer. Its errors are
	// classified (see Classify); after a TokenInvalid error the credential is already
	// replaced, and the query may be made again at once.
	Query(ctx context.Context, q Query) (Result, error)
}

// OrderKeyer is a Provider that knows an order's key (Result.OrderKey) from the query alone,
// before asking: a follow round can then see in the store that the order already ended.
type OrderKeyer interface {
	OrderKey(q Query) string
}

// Preparer is a Provider with work to do before a query can be sent, such as fetching an access
// token. The pipeline calls Prepare before it takes the query's rate slot, so that the slot is
// spent on the call and never held while the credential is fetched: calls that waited for it
// would otherwise leave together and break the limit. An error is not final: Query reports it.
type Preparer interface {
	Prepare(ctx context.Context, q Query) error
}
