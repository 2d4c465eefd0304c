package orderstate

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/paystatus/orderstatus/internal/events"
	"github.com/paystatus/orderstatus/internal/kvkey"
	"github.com/paystatus/orderstatus/internal/providers"
	"github.com/paystatus/orderstatus/internal/telemetry"
)

// Record is the last-known status of one order, the value in ORDERS_STATE. It is JSON so that
// `nats kv get ORDERS_STATE <key>` shows it to a person.
//
// Pending holds the event of a transition that is recorded but not yet known to be published
// (see docs/delivery.md). Transition numbers the order's transitions from 1, and the event id
// is made of it, so every replica, after every crash, gives a transition the same id. SentAt is
// when the query that set Status was sent: it orders observations (Ignored).
//
// Amount is the amount (fen) of the observation that set Status, 0 when unknown: a
// notification with another amount is checked by a query before it is believed.
//
// Trace is the W3C trace context of the request that caused Pending, kept beside it and not in
// the event's payload: whoever publishes the event puts it on as headers.
type Record struct {
	Status         events.Status          `json:"status"`
	ProviderStatus string                 `json:"provider_status"`
	Transition     uint64                 `json:"transition"`
	EventID        string                 `json:"event_id"`
	SentAt         string                 `json:"sent_at,omitempty"`
	Amount         int64                  `json:"amount,omitempty"`
	ObservedAt     string                 `json:"observed_at"`
	Pending        *events.StatusEvent    `json:"pending,omitempty"`
	Trace          telemetry.TraceContext `json:"trace,omitzero"`
}

// Bounds on a stored record: it is read back from a bucket anyone with write access can
// change, so it is outside input. A pending event carries a request's attributes (at most a
// 64 KiB request) and the provider's details.
const (
	maxRecordBytes = 256 << 10
	maxTextField   = 1024
)

// errDamaged marks a record that does not decode or breaks its domain.
var errDamaged = errors.New("damaged order record")

// decodeRecord reads a stored record and checks every field against its domain. Numbers in a
// pending event's details come back as they went in: whole numbers as int64, exact beyond
// 2^53, as a provider's answer gives them.
func decodeRecord(b []byte) (Record, error) {
	var r Record
	if len(b) > maxRecordBytes {
		return r, fmt.Errorf("%w: %d bytes, at most %d", errDamaged, len(b), maxRecordBytes)
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	if err := d.Decode(&r); err != nil {
		return r, fmt.Errorf("%w: %v", errDamaged, err)
	}
	if err := r.validate(); err != nil {
		return r, fmt.Errorf("%w: %v", errDamaged, err)
	}
	if r.Pending != nil && len(r.Pending.Details) > 0 {
		raw, err := json.Marshal(r.Pending.Details) // json.Number values: their text, unchanged
		if err != nil {
			return r, fmt.Errorf("%w: %v", errDamaged, err)
		}
		v, err := providers.DetailValue(raw)
		if err != nil {
			return r, fmt.Errorf("%w: %v", errDamaged, err)
		}
		r.Pending.Details, _ = v.(map[string]any)
	}
	return r, nil
}

// validate checks r's fields against their domains.
func (r Record) validate() error {
	if !knownStatus(r.Status) {
		return fmt.Errorf("status %q is not a normalized status", truncate(string(r.Status)))
	}
	if r.Transition == 0 {
		return errors.New("transition is 0")
	}
	for name, v := range map[string]string{"provider_status": r.ProviderStatus, "event_id": r.EventID, "observed_at": r.ObservedAt, "sent_at": r.SentAt} {
		if err := text(name, v); err != nil {
			return err
		}
	}
	if r.EventID == "" {
		return errors.New("event_id is empty")
	}
	if r.SentAt != "" {
		if _, err := time.Parse(time.RFC3339Nano, r.SentAt); err != nil {
			return fmt.Errorf("sent_at: %v", err)
		}
	}
	if p := r.Pending; p != nil {
		if p.EventID != r.EventID || p.Status != r.Status || p.ProviderStatus != r.ProviderStatus {
			return errors.New("pending event is not the recorded transition's")
		}
		if p.Source != "" && p.Source != events.SourceQuery && p.Source != events.SourceCallback {
			return fmt.Errorf("pending source %q is not query or callback", truncate(p.Source))
		}
		if p.PreviousStatus != "" && !knownStatus(p.PreviousStatus) {
			return fmt.Errorf("pending previous_status %q is not a normalized status", truncate(string(p.PreviousStatus)))
		}
		for name, v := range map[string]string{"provider": p.Provider, "kind": p.Kind} {
			if !kvkey.Valid(v) || strings.Contains(v, "=") {
				return fmt.Errorf("pending %s %q cannot be a subject token", name, truncate(v))
			}
		}
		for name, v := range map[string]string{"app_id": p.AppID, "order_no": p.OrderNo, "request_id": p.RequestID} {
			if err := text(name, v); err != nil {
				return err
			}
		}
	}
	return nil
}

func knownStatus(s events.Status) bool { return slices.Contains(events.Statuses, s) }

func text(name, v string) error {
	if len(v) > maxTextField || !utf8.ValidString(v) {
		return fmt.Errorf("%s: longer than %d bytes or not UTF-8", name, maxTextField)
	}
	return nil
}

func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

// encode is r's stored form, the caller's to keep: its JSON, byte for byte as encoding/json's
// Marshal writes it, since records already stored and other replicas read it. It is written
// by hand into reused space and copied out at its size; a pending event whose details hold a
// value only encoding/json writes is left to it.
func (r *Record) encode() []byte {
	sp := encodeScratch.Get().(*[]byte)
	b, ok := r.appendJSON((*sp)[:0])
	if cap(b) <= maxRecordBytes {
		*sp = b[:0]
		defer encodeScratch.Put(sp)
	}
	if !ok {
		b, _ = json.Marshal(*r) // plain data: cannot fail
		return b
	}
	return bytes.Clone(b)
}

var encodeScratch = sync.Pool{New: func() any { return new([]byte) }}

// appendJSON appends r as encoding/json's Marshal writes it; false when its pending event's
// details hold a value events.StatusEvent.AppendJSON leaves to encoding/json.
func (r *Record) appendJSON(b []byte) ([]byte, bool) {
	b = append(b, `{"status":`...)
	b = events.AppendJSONString(b, string(r.Status))
	b = append(b, `,"provider_status":`...)
	b = events.AppendJSONString(b, r.ProviderStatus)
	b = append(b, `,"transition":`...)
	b = strconv.AppendUint(b, r.Transition, 10)
	b = append(b, `,"event_id":`...)
	b = events.AppendJSONString(b, r.EventID)
	if r.SentAt != "" {
		b = append(b, `,"sent_at":`...)
		b = events.AppendJSONString(b, r.SentAt)
	}
	if r.Amount != 0 {
		b = append(b, `,"amount":`...)
		b = strconv.AppendInt(b, r.Amount, 10)
	}
	b = append(b, `,"observed_at":`...)
	b = events.AppendJSONString(b, r.ObservedAt)
	if r.Pending != nil {
		b = append(b, `,"pending":`...)
		var ok bool
		if b, ok = r.Pending.AppendJSON(b); !ok {
			return b, false
		}
	}
	if r.Trace != (telemetry.TraceContext{}) {
		b = append(b, `,"trace":{`...)
		if r.Trace.Parent != "" {
			b = append(b, `"traceparent":`...)
			b = events.AppendJSONString(b, r.Trace.Parent)
		}
		if r.Trace.State != "" {
			if r.Trace.Parent != "" {
				b = append(b, ',')
			}
			b = append(b, `"tracestate":`...)
			b = events.AppendJSONString(b, r.Trace.State)
		}
		b = append(b, '}')
	}
	return append(b, '}'), true
}

// Key is the KV key of an order: <provider>.<kind>.<app_id>.<order key>, readable when the
// parts allow it (see kvkey.Token).
func Key(provider, kind, appID, orderKey string) string {
	return kvkey.Join(provider, kind, appID, orderKey)
}

// isKey reports whether key has the shape of the keys Key makes: four kvkey tokens.
func isKey(key string) bool {
	if len(key) > 1024 {
		return false
	}
	parts := strings.Split(key, ".")
	if len(parts) != 4 {
		return false
	}
	for _, p := range parts {
		if !kvkey.Valid(p) {
			return false
		}
	}
	return true
}

// maxAnswerDelay bounds how much later than another a query's answer can be recorded: the
// provider call's time limit and its retries stay far below it.
const maxAnswerDelay = 10 * time.Minute

// Ignored says why an observation made at sent must not change the record cur, or "": an
// order never moves backwards. An answer to a query sent before the one that set the record is
// stale; a non-terminal answer once the order is terminal comes after its end.
func Ignored(cur Record, status events.Status, sent time.Time) string {
	if at, err := time.Parse(time.RFC3339Nano, cur.SentAt); err == nil && sent.Before(at) && at.Sub(sent) <= maxAnswerDelay {
		return "stale"
	}
	if cur.Status.Terminal() && !status.Terminal() {
		return "after_terminal"
	}
	return ""
}
