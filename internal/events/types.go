package events

import "time"

// MaxRequestSize is the largest request payload the consumer accepts (CONTRACT.md section 2).
const MaxRequestSize = 64 << 10

// Request is a query request (CONTRACT.md section 2). Provider and Kind come from the subject.
type Request struct {
	Provider        string
	Kind            string
	AppID           string
	OrderNo         string
	ProviderOrderNo string
	Refresh         bool
	Follow          bool
	// FollowUntil is zero when the request did not set it.
	FollowUntil time.Time
	RequestID   string
	Attributes  map[string]string
}

// StatusEvent is the status-changed event (CONTRACT.md section 3). Times are RFC 3339 strings
// in UTC so that both encodings carry the same text a person or another language reads.
type StatusEvent struct {
	EventID         string            `json:"event_id" msgpack:"event_id"`
	RequestID       string            `json:"request_id" msgpack:"request_id"`
	Provider        string            `json:"provider" msgpack:"provider"`
	Kind            string            `json:"kind" msgpack:"kind"`
	AppID           string            `json:"app_id" msgpack:"app_id"`
	OrderNo         string            `json:"order_no" msgpack:"order_no"`
	ProviderOrderNo string            `json:"provider_order_no" msgpack:"provider_order_no"`
	ProviderRefNo   string            `json:"provider_ref_no" msgpack:"provider_ref_no"`
	Status          Status            `json:"status" msgpack:"status"`
	PreviousStatus  Status            `json:"previous_status" msgpack:"previous_status"`
	ProviderStatus  string            `json:"provider_status" msgpack:"provider_status"`
	Terminal        bool              `json:"terminal" msgpack:"terminal"`
	Amount          int64             `json:"amount" msgpack:"amount"`
	Currency        string            `json:"currency" msgpack:"currency"`
	PaidAt          string            `json:"paid_at,omitempty" msgpack:"paid_at,omitempty"`
	Channel         Channel           `json:"channel" msgpack:"channel"`
	Details         map[string]any    `json:"details" msgpack:"details"`
	ObservedAt      string            `json:"observed_at" msgpack:"observed_at"`
	Attributes      map[string]string `json:"attributes" msgpack:"attributes"`
	// Source says what observed the change: SourceQuery or SourceCallback.
	Source string `json:"source" msgpack:"source"`
}

// Sources of an observation (an event's source).
const (
	SourceQuery    = "query"    // a provider query answered
	SourceCallback = "callback" // a verified provider notification (CONTRACT.md section 8)
)

// FormatTime renders t as the contract's RFC 3339 UTC text; the zero time renders as "".
func FormatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

// Dead-letter reasons: the stable codes carried in the Orders-Error-Reason header.
const (
	ReasonInvalidPayload   = "invalid_payload"   // undecodable, too large, unknown content type
	ReasonInvalidField     = "invalid_field"     // a field is missing, of the wrong type or malformed
	ReasonUnknownProvider  = "unknown_provider"  // the subject names no configured provider
	ReasonUnknownKind      = "unknown_kind"      // the provider has no such kind of query
	ReasonUnknownApp       = "unknown_app"       // app_id is not configured for the provider
	ReasonProviderRejected = "provider_rejected" // the provider says the request itself is wrong
	ReasonRetriesExhausted = "retries_exhausted" // every allowed delivery failed
	ReasonInvalidSignature = "invalid_signature" // a provider notification failed its signature check
)

// Headers the consumer reads and writes.
const (
	HeaderContentType   = "Content-Type"
	HeaderMsgID         = "Nats-Msg-Id"
	HeaderErrorReason   = "Orders-Error-Reason"
	HeaderError         = "Orders-Error"
	HeaderSubject       = "Orders-Subject"
	HeaderStreamSeq     = "Orders-Stream-Seq"
	HeaderDelivered     = "Orders-Delivered"
	HeaderOriginalMsgID = "Orders-Original-Msg-Id"
	HeaderRequestID     = "Orders-Request-Id"
	HeaderFollowRound   = "Orders-Follow-Round"
	HeaderFollowUntil   = "Orders-Follow-Until"
	// HeaderPending marks a write to ORDERS_STATE that claims a transition (its value holds
	// the pending event, whose id is the header's value): the sweep follows these headers.
	HeaderPending = "Orders-Pending"
	// HeaderOriginalSize and HeaderPayloadSeq are on a dead letter whose payload was too big
	// to carry whole: its size, and the ORDERS_DLQ sequence of the message holding all of it.
	HeaderOriginalSize = "Orders-Original-Size"
	HeaderPayloadSeq   = "Orders-Payload-Seq"
)
