package providers

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Record decodes a record carried as text (a JSON string holding an object), its keys found in
// names taken from there. Empty text, null and anything but one object are errors: an answer
// without its record says nothing about the order.
func Record[T ~string | ~[]byte](raw T, names Names) (Fields, error) {
	r := NewJSONReader(raw, names)
	if r.next() == '{' {
		if v, ok := r.Value(); ok && r.End() {
			return v.(map[string]any), nil
		}
	}
	return decodeRecord(raw) // the reader's refusals, and every error
}

// decodeRecord is Record by encoding/json.
func decodeRecord[T ~string | ~[]byte](raw T) (Fields, error) {
	d := json.NewDecoder(textReader(raw))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err == io.EOF {
		return nil, errors.New("missing") // nothing but white space
	} else if err != nil {
		return nil, fmt.Errorf("not an object: %v", err)
	}
	if _, err := d.Token(); err != io.EOF {
		return nil, errors.New("not an object: more text after it")
	}
	return RecordOf(v)
}

// textReader reads text of either kind.
func textReader[T ~string | ~[]byte](text T) io.Reader {
	switch t := any(text).(type) {
	case string:
		return strings.NewReader(t)
	case []byte:
		return bytes.NewReader(t)
	}
	return strings.NewReader(string(text))
}

// RecordOf is the record v, a value decoded with json.Decoder.UseNumber (a struct's field of
// type any, which takes the record in the same pass as the answer around it). Absent, null and
// anything but an object are errors, as for Record.
func RecordOf(v any) (Fields, error) {
	switch v := v.(type) {
	case nil:
		return nil, errors.New("missing")
	case map[string]any:
		return v, nil
	}
	return nil, fmt.Errorf("not an object: %s", kindOf(v))
}

// Details is what an event's details hold of the record: every field but those named in omit
// (those that became event fields, and those the configuration keeps private), named as the
// provider names it, with numbers as DetailValue makes them. It is made of f, which is not to
// be read after. It is never nil, so an event's details are an object even when empty.
func (f Fields) Details(omit ...string) map[string]any {
	for _, k := range omit {
		delete(f, k)
	}
	for k, v := range f {
		f[k] = normalizeNumbers(v)
	}
	if f == nil {
		return map[string]any{}
	}
	return f
}

// DetailValue decodes a provider's JSON value for an event's details: objects and arrays as
// maps and slices, and numbers as int64 when they are whole (amounts stay exact to the fen in
// both encodings), float64 otherwise. Anything after the value is not read.
func DetailValue(raw json.RawMessage) (any, error) {
	return detailValue(bytes.NewReader(raw))
}

func detailValue(r io.Reader) (any, error) {
	d := json.NewDecoder(r)
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, err
	}
	return normalizeNumbers(v), nil
}

// ParseJSONObject parses s as a JSON object, for fields that carry one inside a string, its
// keys found in names taken from there. Anything after the object is not read.
func ParseJSONObject(s string, names Names) (map[string]any, bool) {
	if len(s) == 0 || s[0] != '{' {
		return nil, false
	}
	r := NewJSONReader(s, names)
	if v, ok := r.Value(); ok {
		return normalizeNumbers(v).(map[string]any), true
	}
	v, err := detailValue(strings.NewReader(s)) // the reader's refusals, and every error
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
