package handlers

import (
	"encoding/json"
	"sync"

	"github.com/paystatus/orderstatus/internal/events"
	"github.com/paystatus/orderstatus/internal/kvkey"
)

// orderState is the last-known status of one order, the value in ORDERS_STATE. It is JSON so
// that `nats kv get ORDERS_STATE <key>` shows it to a person.
//
// Pending holds the event of a transition that was recorded but is not yet known to be
// published. Recording a transition and publishing its event are two writes; the transition is
// claimed first (compare-and-set on the key's revision, so of two replicas racing on one order
// only one records it), then the event is published, then Pending is cleared. Whoever reads a
// state with Pending set publishes that event before anything else: after a crash between any
// two steps the event still goes out, and its deterministic id makes JetStream drop a copy that
// had already gone out.
type orderState struct {
	Status         events.Status       `json:"status"`
	ProviderStatus string              `json:"provider_status"`
	EventID        string              `json:"event_id"`
	ObservedAt     string              `json:"observed_at"`
	Pending        *events.StatusEvent `json:"pending,omitempty"`
}

func decodeState(b []byte) (orderState, error) {
	var s orderState
	err := json.Unmarshal(b, &s)
	return s, err
}

func (s orderState) encode() []byte {
	b, _ := json.Marshal(s) // plain data: cannot fail
	return b
}

// stateKey is the KV key of an order: <provider>.<kind>.<app_id>.<order key>, readable when
// the parts allow it (see kvkey.Token).
func stateKey(provider, kind, appID, orderKey string) string {
	return kvkey.Join(provider, kind, appID, orderKey)
}

// seenKeys remembers which order keys this process has read or written, in two generations of
// at most max keys each, so memory stays bounded. An order never seen here is most likely new:
// its first observation tries Create without reading first, and falls back to reading when
// the key exists after all.
type seenKeys struct {
	mu        sync.Mutex
	cur, prev map[string]struct{}
	max       int
}

func newSeenKeys(max int) *seenKeys {
	return &seenKeys{cur: map[string]struct{}{}, prev: map[string]struct{}{}, max: max}
}

func (s *seenKeys) has(key string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.cur[key]
	if !ok {
		_, ok = s.prev[key]
	}
	return ok
}

func (s *seenKeys) add(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.cur) >= s.max {
		s.prev, s.cur = s.cur, make(map[string]struct{}, s.max)
	}
	s.cur[key] = struct{}{}
}
