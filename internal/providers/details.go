package providers

import (
	"bytes"
	"encoding/json"
	"strconv"
)

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
