package events

import (
	"errors"
	"fmt"
	"time"
	"unicode/utf8"
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

// Bounds on a payload's shape, checked before anything is allocated for it. A request is two
// levels deep (the request, its attributes) with eight fields of its own; the bounds leave
// room for a publisher's own fields, which are ignored, and refuse what no request can be.
const (
	// MaxDepth is how deeply maps and arrays may nest, the request itself being level 1.
	MaxDepth = 8
	// MaxFields is how many entries the request's top-level map may have, unknown ones included.
	MaxFields = 64
	// MaxElements is how many entries a map or array inside an ignored field may have.
	MaxElements = 1024
	// MaxFollow is how far after the request follow_until may lie (CONTRACT.md section 2).
	MaxFollow = 30 * 24 * time.Hour
)

// kind is the type of the next value in a payload, as the error messages name it.
type kind int

const (
	kindNull kind = iota
	kindString
	kindBool
	kindNumber
	kindObject
	kindArray
	kindBinary
	kindTime  // msgpack timestamp extension
	kindOther // another msgpack extension
)

func (k kind) String() string {
	return [...]string{"null", "a string", "a boolean", "a number", "an object", "an array", "binary data", "a timestamp", "an extension value"}[k]
}

// errNotUTF8 is what a tokenReader returns for a string that is not valid UTF-8 (a lone UTF-16
// surrogate escape in JSON counts): DecodeRequest names the field.
var errNotUTF8 = errors.New("not valid UTF-8")

// tokenReader is one encoding's view of a payload, read one value at a time. Each
// implementation checks a declared length against the bytes that remain before it allocates,
// and counts depth and elements while it skips, so decoding costs at most the payload's size.
// Errors other than errNotUTF8 are *PayloadError.
type tokenReader interface {
	peek() (kind, error)
	str() (string, error)
	boolean() (bool, error)
	null() error
	timestamp() (time.Time, error)
	// mapStart enters a map of at most max entries at nesting level depth.
	mapStart(depth, max int) error
	// mapKey reads the next key of the map entered last; more is false at its end.
	mapKey() (key string, more bool, err error)
	// skip passes over the next value, nested at level depth.
	skip(depth int) error
	// end checks that nothing follows the top-level value.
	end() error
}

// DecodeRequest decodes and checks a query request payload, straight into the request's
// fields: a field of the wrong type gets the same error whatever the encoding. Unknown fields
// are ignored; null counts as absent; a field given twice keeps its last value. Provider and
// Kind are left for the caller, who reads them from the subject.
func DecodeRequest(contentType string, data []byte) (Request, error) {
	enc, err := requestEncoding(contentType, data)
	if err != nil {
		return Request{}, err
	}
	if enc == JSON {
		r := newJSONReader(data)
		defer r.release()
		return decodeRequest(r)
	}
	r := newMsgpackReader(data)
	defer r.release()
	return decodeRequest(r)
}

// requestEncoding checks a request payload's size and tells its encoding.
func requestEncoding(contentType string, data []byte) (Encoding, error) {
	if len(data) > MaxRequestSize {
		return "", invalidPayload("payload is %d bytes, more than the %d allowed", len(data), MaxRequestSize)
	}
	enc, err := Detect(contentType, data)
	if err != nil {
		return "", invalidPayload("%v", err)
	}
	return enc, nil
}

// decodeRequest reads a request with r and checks its ids.
func decodeRequest(r tokenReader) (Request, error) {
	var req Request
	if err := readRequest(r, &req); err != nil {
		return Request{}, err
	}
	if req.AppID == "" {
		return req, invalidField("app_id", "is required")
	}
	if req.OrderNo == "" && req.ProviderOrderNo == "" {
		return req, invalidField("order_no", "is required unless provider_order_no is given")
	}
	return req, nil
}

// fieldName is name as a string, the request's own field names without an allocation.
func fieldName(name []byte) string {
	switch string(name) {
	case "app_id":
		return "app_id"
	case "order_no":
		return "order_no"
	case "provider_order_no":
		return "provider_order_no"
	case "request_id":
		return "request_id"
	case "refresh":
		return "refresh"
	case "follow":
		return "follow"
	case "follow_until":
		return "follow_until"
	case "attributes":
		return "attributes"
	}
	return string(name)
}

func readRequest(r tokenReader, req *Request) error {
	k, err := r.peek()
	if err != nil {
		return err
	}
	if k != kindObject {
		return invalidPayload("payload is not an object")
	}
	if err := r.mapStart(1, MaxFields); err != nil {
		return err
	}
	for {
		name, more, err := r.mapKey()
		if errors.Is(err, errNotUTF8) {
			return invalidPayload("a field name is not valid UTF-8")
		}
		if err != nil || !more {
			if err == nil {
				err = r.end()
			}
			return err
		}
		switch name {
		case "app_id":
			req.AppID, err = stringField(r, name)
		case "order_no":
			req.OrderNo, err = stringField(r, name)
		case "provider_order_no":
			req.ProviderOrderNo, err = stringField(r, name)
		case "request_id":
			req.RequestID, err = stringField(r, name)
		case "refresh":
			req.Refresh, err = boolField(r, name)
		case "follow":
			req.Follow, err = boolField(r, name)
		case "follow_until":
			req.FollowUntil, err = timeField(r, name)
		case "attributes":
			req.Attributes, err = attributesField(r, name)
		default:
			if err = r.skip(2); errors.Is(err, errNotUTF8) {
				err = invalidField(truncate(name, 64), "holds a string that is not valid UTF-8")
			}
		}
		if err != nil {
			return err
		}
	}
}

// isNull consumes a null and reports true, or reports false and leaves the value.
func isNull(r tokenReader) (kind, bool, error) {
	k, err := r.peek()
	if err != nil || k != kindNull {
		return k, false, err
	}
	return k, true, r.null()
}

func readString(r tokenReader, field string) (string, error) {
	s, err := r.str()
	if errors.Is(err, errNotUTF8) {
		return "", invalidField(field, "is not valid UTF-8")
	}
	return s, err
}

func stringField(r tokenReader, name string) (string, error) {
	k, null, err := isNull(r)
	if err != nil || null {
		return "", err
	}
	if k != kindString {
		return "", invalidField(name, "must be a string, got %s", k)
	}
	s, err := readString(r, name)
	if err != nil {
		return "", err
	}
	if len(s) > maxIDLen {
		return "", invalidField(name, "is %d bytes long, at most %d allowed", len(s), maxIDLen)
	}
	for _, c := range s {
		if c < 0x20 || c == 0x7f {
			return "", invalidField(name, "contains a control character")
		}
	}
	return s, nil
}

func boolField(r tokenReader, name string) (bool, error) {
	k, null, err := isNull(r)
	if err != nil || null {
		return false, err
	}
	if k != kindBool {
		return false, invalidField(name, "must be a boolean, got %s", k)
	}
	return r.boolean()
}

func timeField(r tokenReader, name string) (time.Time, error) {
	k, null, err := isNull(r)
	if err != nil || null {
		return time.Time{}, err
	}
	switch k {
	case kindTime:
		t, err := r.timestamp()
		return t.UTC(), err
	case kindString:
		s, err := readString(r, name)
		if err != nil || s == "" {
			return time.Time{}, err
		}
		parsed, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return time.Time{}, invalidField(name, "must be an RFC 3339 time such as 2026-01-02T15:04:05Z, got %q", truncate(s, 64))
		}
		return parsed.UTC(), nil
	}
	return time.Time{}, invalidField(name, "must be an RFC 3339 time string, got %s", k)
}

func attributesField(r tokenReader, name string) (map[string]string, error) {
	k, null, err := isNull(r)
	if err != nil || null {
		return nil, err
	}
	if k != kindObject {
		return nil, invalidField(name, "must be a map of strings, got %s", k)
	}
	if err := r.mapStart(2, maxAttributes); err != nil {
		return nil, err
	}
	out := map[string]string{}
	for {
		key, more, err := r.mapKey()
		if errors.Is(err, errNotUTF8) {
			return nil, invalidField(name, "a key is not valid UTF-8")
		}
		if err != nil {
			return nil, err
		}
		if !more {
			return out, nil
		}
		field := func() string { return name + "." + truncate(key, 64) } // made for a refusal only
		vk, err := r.peek()
		if err != nil {
			return nil, err
		}
		if vk != kindString {
			return nil, invalidField(field(), "must be a string, got %s", vk)
		}
		v, err := r.str()
		if errors.Is(err, errNotUTF8) {
			return nil, invalidField(field(), "is not valid UTF-8")
		}
		if err != nil {
			return nil, err
		}
		if len(v) > maxAttributeLen || len(key) > maxAttributeLen {
			return nil, invalidField(field(), "is longer than %d bytes", maxAttributeLen)
		}
		out[key] = v
	}
}

// fieldLimitError is the refusal of a map or array with too many entries.
func fieldLimitError(depth, n, max int) error {
	if depth == 1 {
		return invalidPayload("the request has %d or more fields, at most %d allowed", n, max)
	}
	if depth == 2 && max == maxAttributes {
		return invalidField("attributes", "has %d entries, at most %d allowed", n, max)
	}
	return invalidPayload("a map or array has %d or more entries, at most %d allowed", n, max)
}

func depthError() error {
	return invalidPayload("values nest more than %d levels deep", MaxDepth)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
