package providers

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
)

// Record reads a provider's record (the object holding one order's fields) by field, each
// field's value left raw for the reader that knows its type. Absent, null and anything but an
// object are errors: an answer without its record says nothing about the order.
func Record(raw json.RawMessage) (map[string]json.RawMessage, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return nil, errors.New("missing")
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil {
		return nil, fmt.Errorf("not an object: %v", err)
	}
	if fields == nil {
		return nil, errors.New("not an object")
	}
	return fields, nil
}

// Details is what an event's details hold of a record: every field that omit does not leave
// out (those that became event fields, and those the configuration keeps private), named as
// the provider names it and decoded by DetailValue. Without an error it is never nil, so an
// event's details are an object even when empty.
func Details(fields map[string]json.RawMessage, omit func(field string) bool) (map[string]any, error) {
	details := make(map[string]any, len(fields))
	for k, v := range fields {
		if omit(k) {
			continue
		}
		val, err := DetailValue(v)
		if err != nil {
			return nil, fmt.Errorf("%s: %v", k, err)
		}
		details[k] = val
	}
	return details, nil
}

// DetailValue decodes a provider's JSON value for an event's details: objects and arrays as
// maps and slices, and numbers as int64 when they are whole (amounts stay exact to the fen in
// both encodings), float64 otherwise.
func DetailValue(raw json.RawMessage) (any, error) {
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, err
	}
	return normalizeNumbers(v), nil
}

// ParseJSONObject parses s as a JSON object, for fields that carry one inside a string.
func ParseJSONObject(s string) (map[string]any, bool) {
	if len(s) == 0 || s[0] != '{' {
		return nil, false
	}
	v, err := DetailValue(json.RawMessage(s))
	if err != nil {
		return nil, false
	}
	m, ok := v.(map[string]any)
	return m, ok
}

func normalizeNumbers(v any) any {
	switch t := v.(type) {
	case json.Number:
		if i, err := strconv.ParseInt(string(t), 10, 64); err == nil {
			return i
		}
		if f, err := t.Float64(); err == nil {
			return f
		}
		return string(t)
	case map[string]any:
		for k, e := range t {
			t[k] = normalizeNumbers(e)
		}
	case []any:
		for i, e := range t {
			t[i] = normalizeNumbers(e)
		}
	}
	return v
}
