package events

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

// PayloadError says why a request can never be processed. Reason is one of the Reason* codes.
type PayloadError struct {
	Reason string
	Field  string // the offending field, when there is one
	Msg    string
}

func (e *PayloadError) Error() string {
	if e.Field != "" {
		return e.Field + ": " + e.Msg
	}
	return e.Msg
}

func invalidPayload(format string, args ...any) *PayloadError {
	return &PayloadError{Reason: ReasonInvalidPayload, Msg: fmt.Sprintf(format, args...)}
}

func invalidField(field, format string, args ...any) *PayloadError {
	return &PayloadError{Reason: ReasonInvalidField, Field: field, Msg: fmt.Sprintf(format, args...)}
}

// Bounds on request fields: generous for any real order number, tight enough that garbage is
// refused before it reaches a provider, a KV key or a log line.
const (
	maxIDLen        = 128
	maxAttributes   = 64
	maxAttributeLen = 1024
)

// DecodeRequest decodes and checks a query request payload. Both encodings are read into the
// same generic form first, so a field of the wrong type gets the same error whatever the
// encoding. Unknown fields are ignored; null counts as absent. Provider and Kind are left for
// the caller, who reads them from the subject.
func DecodeRequest(contentType string, data []byte) (Request, error) {
	var req Request
	if len(data) > MaxRequestSize {
		return req, invalidPayload("payload is %d bytes, more than the %d allowed", len(data), MaxRequestSize)
	}
	enc, err := Detect(contentType, data)
	if err != nil {
		return req, invalidPayload("%v", err)
	}
	fields, err := decodeObject(enc, data)
	if err != nil {
		return req, err
	}

	if req.AppID, err = stringField(fields, "app_id"); err != nil {
		return req, err
	}
	if req.OrderNo, err = stringField(fields, "order_no"); err != nil {
		return req, err
	}
	if req.ProviderOrderNo, err = stringField(fields, "provider_order_no"); err != nil {
		return req, err
	}
	if req.RequestID, err = stringField(fields, "request_id"); err != nil {
		return req, err
	}
	if req.Refresh, err = boolField(fields, "refresh"); err != nil {
		return req, err
	}
	if req.Follow, err = boolField(fields, "follow"); err != nil {
		return req, err
	}
	if req.FollowUntil, err = timeField(fields, "follow_until"); err != nil {
		return req, err
	}
	if req.Attributes, err = attributesField(fields, "attributes"); err != nil {
		return req, err
	}

	if req.AppID == "" {
		return req, invalidField("app_id", "is required")
	}
	if req.OrderNo == "" && req.ProviderOrderNo == "" {
		return req, invalidField("order_no", "is required unless provider_order_no is given")
	}
	return req, nil
}

func decodeObject(enc Encoding, data []byte) (map[string]any, error) {
	var v any
	if enc == JSON {
		d := json.NewDecoder(bytes.NewReader(data))
		d.UseNumber()
		if err := d.Decode(&v); err != nil {
			return nil, invalidPayload("not valid JSON: %v", err)
		}
		if _, err := d.Token(); !errors.Is(err, io.EOF) {
			return nil, invalidPayload("not valid JSON: data after the top-level object")
		}
	} else {
		r := bytes.NewReader(data) // an io.ByteScanner, so the decoder reads it without buffering
		if err := msgpack.NewDecoder(r).Decode(&v); err != nil {
			return nil, invalidPayload("not valid msgpack: %v", err)
		}
		if r.Len() > 0 {
			return nil, invalidPayload("not valid msgpack: data after the top-level map")
		}
	}
	switch m := v.(type) {
	case map[string]any:
		return m, nil
	case map[any]any: // msgpack maps with non-string keys
		out := make(map[string]any, len(m))
		for k, val := range m {
			ks, ok := k.(string)
			if !ok {
				return nil, invalidPayload("map key %v is not a string", k)
			}
			out[ks] = val
		}
		return out, nil
	}
	return nil, invalidPayload("payload is not an object")
}

func stringField(fields map[string]any, name string) (string, error) {
	v, ok := fields[name]
	if !ok || v == nil {
		return "", nil
	}
	s, ok := v.(string)
	if !ok {
		return "", invalidField(name, "must be a string, got %s", typeName(v))
	}
	if len(s) > maxIDLen {
		return "", invalidField(name, "is %d bytes long, at most %d allowed", len(s), maxIDLen)
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return "", invalidField(name, "contains a control character")
		}
	}
	return s, nil
}

func boolField(fields map[string]any, name string) (bool, error) {
	v, ok := fields[name]
	if !ok || v == nil {
		return false, nil
	}
	b, ok := v.(bool)
	if !ok {
		return false, invalidField(name, "must be a boolean, got %s", typeName(v))
	}
	return b, nil
}

func timeField(fields map[string]any, name string) (time.Time, error) {
	v, ok := fields[name]
	if !ok || v == nil {
		return time.Time{}, nil
	}
	switch t := v.(type) {
	case time.Time: // msgpack timestamp extension
		return t.UTC(), nil
	case string:
		if t == "" {
			return time.Time{}, nil
		}
		parsed, err := time.Parse(time.RFC3339Nano, t)
		if err != nil {
			return time.Time{}, invalidField(name, "must be an RFC 3339 time such as 2026-01-02T15:04:05Z, got %q", truncate(t, 64))
		}
		return parsed.UTC(), nil
	}
	return time.Time{}, invalidField(name, "must be an RFC 3339 time string, got %s", typeName(v))
}

func attributesField(fields map[string]any, name string) (map[string]string, error) {
	v, ok := fields[name]
	if !ok || v == nil {
		return nil, nil
	}
	var m map[string]any
	switch t := v.(type) {
	case map[string]any:
		m = t
	case map[any]any:
		m = make(map[string]any, len(t))
		for k, val := range t {
			ks, ok := k.(string)
			if !ok {
				return nil, invalidField(name, "keys must be strings")
			}
			m[ks] = val
		}
	default:
		return nil, invalidField(name, "must be a map of strings, got %s", typeName(v))
	}
	if len(m) > maxAttributes {
		return nil, invalidField(name, "has %d entries, at most %d allowed", len(m), maxAttributes)
	}
	out := make(map[string]string, len(m))
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys) // so the error names the same key every time
	for _, k := range keys {
		s, ok := m[k].(string)
		if !ok {
			return nil, invalidField(name+"."+k, "must be a string, got %s", typeName(m[k]))
		}
		if len(s) > maxAttributeLen || len(k) > maxAttributeLen {
			return nil, invalidField(name+"."+k, "is longer than %d bytes", maxAttributeLen)
		}
		out[k] = s
	}
	return out, nil
}

func typeName(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case bool:
		return "a boolean"
	case json.Number, float64, float32, int, int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64:
		return "a number"
	case map[string]any, map[any]any:
		return "an object"
	case []any:
		return "an array"
	case []byte:
		return "binary data"
	}
	return fmt.Sprintf("%T", v)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
