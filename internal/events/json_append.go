package events

import (
	"math"
	"slices"
	"strconv"
	"unicode/utf8"
)

// The JSON of a status event is written by hand, without reflection, byte for byte as
// encoding/json's Marshal writes it: records already stored and other replicas read these bytes,
// and a test compares the two over random events. A value Marshal would refuse or that a
// provider's answer never decodes to (AppendJSON's false) is left to encoding/json.

// maxDetailDepth bounds how deeply AppendJSON follows nested details; deeper (or cyclic)
// details are left to encoding/json, which refuses a cycle.
const maxDetailDepth = 64

// AppendJSON appends ev as encoding/json's Marshal writes it. It returns false, with b's
// contents past its length undefined, when ev's details hold a value other than nil, a bool, a
// string, an int64, a finite float64, a map[string]any or a []any, or nest deeper than 64.
func (ev *StatusEvent) AppendJSON(b []byte) ([]byte, bool) {
	b = append(b, `{"event_id":`...)
	b = AppendJSONString(b, ev.EventID)
	b = append(b, `,"request_id":`...)
	b = AppendJSONString(b, ev.RequestID)
	b = append(b, `,"provider":`...)
	b = AppendJSONString(b, ev.Provider)
	b = append(b, `,"kind":`...)
	b = AppendJSONString(b, ev.Kind)
	b = append(b, `,"app_id":`...)
	b = AppendJSONString(b, ev.AppID)
	b = append(b, `,"order_no":`...)
	b = AppendJSONString(b, ev.OrderNo)
	b = append(b, `,"provider_order_no":`...)
	b = AppendJSONString(b, ev.ProviderOrderNo)
	b = append(b, `,"provider_ref_no":`...)
	b = AppendJSONString(b, ev.ProviderRefNo)
	b = append(b, `,"status":`...)
	b = AppendJSONString(b, string(ev.Status))
	b = append(b, `,"previous_status":`...)
	b = AppendJSONString(b, string(ev.PreviousStatus))
	b = append(b, `,"provider_status":`...)
	b = AppendJSONString(b, ev.ProviderStatus)
	b = append(b, `,"terminal":`...)
	b = strconv.AppendBool(b, ev.Terminal)
	b = append(b, `,"amount":`...)
	b = strconv.AppendInt(b, ev.Amount, 10)
	b = append(b, `,"currency":`...)
	b = AppendJSONString(b, ev.Currency)
	if ev.PaidAt != "" {
		b = append(b, `,"paid_at":`...)
		b = AppendJSONString(b, ev.PaidAt)
	}
	b = append(b, `,"channel":`...)
	b = AppendJSONString(b, string(ev.Channel))
	b = append(b, `,"details":`...)
	b, ok := appendJSONObject(b, ev.Details, 1)
	if !ok {
		return b, false
	}
	b = append(b, `,"observed_at":`...)
	b = AppendJSONString(b, ev.ObservedAt)
	b = append(b, `,"attributes":`...)
	b = appendJSONStrings(b, ev.Attributes)
	b = append(b, `,"source":`...)
	b = AppendJSONString(b, ev.Source)
	return append(b, '}'), true
}

// AppendJSONString appends s as a JSON string as encoding/json's Marshal writes it: HTML's
// <, > and & escaped, U+2028 and U+2029 escaped, and each byte of invalid UTF-8 as U+FFFD.
func AppendJSONString[S string | []byte](b []byte, s S) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '\\', '"':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := decodeRune(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xf])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// decodeRune is utf8.DecodeRune of a string or a byte slice.
func decodeRune[S string | []byte](s S) (rune, int) {
	if b, ok := any(s).([]byte); ok {
		return utf8.DecodeRune(b)
	}
	return utf8.DecodeRuneInString(string(s))
}

// appendJSONStrings appends m with its keys in order, null when m is nil.
func appendJSONStrings(b []byte, m map[string]string) []byte {
	b, _ = appendJSONMap(b, m, func(b []byte, v string) ([]byte, bool) { return AppendJSONString(b, v), true })
	return b
}

// appendJSONObject appends m, at nesting level depth, with its keys in order, null when m is
// nil.
func appendJSONObject(b []byte, m map[string]any, depth int) ([]byte, bool) {
	if m != nil && depth > maxDetailDepth {
		return b, false
	}
	return appendJSONMap(b, m, func(b []byte, v any) ([]byte, bool) { return appendJSONValue(b, v, depth) })
}

// appendJSONMap appends m with its keys in order, each value by value, null when m is nil.
func appendJSONMap[V any](b []byte, m map[string]V, value func([]byte, V) ([]byte, bool)) ([]byte, bool) {
	if m == nil {
		return append(b, "null"...), true
	}
	var buf [16]string
	keys := buf[:0]
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	b = append(b, '{')
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = AppendJSONString(b, k)
		b = append(b, ':')
		var ok bool
		if b, ok = value(b, m[k]); !ok {
			return b, false
		}
	}
	return append(b, '}'), true
}

// appendJSONValue appends v, a value inside details at nesting level depth.
func appendJSONValue(b []byte, v any, depth int) ([]byte, bool) {
	switch v := v.(type) {
	case nil:
		return append(b, "null"...), true
	case string:
		return AppendJSONString(b, v), true
	case bool:
		return strconv.AppendBool(b, v), true
	case int64:
		return strconv.AppendInt(b, v, 10), true
	case float64:
		return appendJSONFloat(b, v)
	case map[string]any:
		return appendJSONObject(b, v, depth+1)
	case []any:
		if v == nil {
			return append(b, "null"...), true
		}
		if depth+1 > maxDetailDepth {
			return b, false
		}
		b = append(b, '[')
		for i, e := range v {
			if i > 0 {
				b = append(b, ',')
			}
			var ok bool
			if b, ok = appendJSONValue(b, e, depth+1); !ok {
				return b, false
			}
		}
		return append(b, ']'), true
	}
	return b, false
}

// appendJSONFloat appends f as encoding/json does (ES6's number to string): 'e' notation below
// 1e-6 and from 1e21, with the exponent unpadded.
func appendJSONFloat(b []byte, f float64) ([]byte, bool) {
	if math.IsInf(f, 0) || math.IsNaN(f) {
		return b, false
	}
	format := byte('f')
	if abs := math.Abs(f); abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if n := len(b); format == 'e' && n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
		b[n-2] = b[n-1]
		b = b[:n-1]
	}
	return b, true
}
