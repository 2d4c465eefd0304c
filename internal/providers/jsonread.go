package providers

import (
	"encoding/json"
	"unicode/utf8"

	"github.com/paystatus/orderstatus/internal/jsonscan"
)

// JSONReader reads a provider's JSON in one pass into the values encoding/json's Decoder with
// UseNumber makes of it (objects as map[string]any, arrays as []any, numbers as json.Number,
// their text), with fewer allocations: no reflection, no scanner state, the provider's known
// field names (Names) shared rather than copied, and, when the input is a string, its text
// taken as it is rather than copied (the values then share the input's memory). What it
// allocates is bounded by the input's length, which its callers bound.
//
// It reads only what it reads exactly as encoding/json does, and refuses the rest: a syntax
// error, a string with invalid UTF-8 or a surrogate escape (which encoding/json replaces or
// pairs in its own way), a key with escapes (Object), a value of another type than the one asked
// for, nesting deeper than maxReadDepth. Once it has refused (Failed), every read fails, and the
// caller reads the input again with encoding/json, which gives the same result or the error it
// always gave: the reader is a faster path to the same outcome, never a second opinion. Its
// tokens are read by jsonscan, as the request reader's in events are.
type JSONReader[T ~string | ~[]byte] struct {
	data   T
	pos    int
	depth  int
	failed bool
	names  Names
}

// Names are the field names a provider's records use, shared by every record read with them.
type Names map[string]string

// NewNames is the set of names.
func NewNames(names ...string) Names {
	n := make(Names, len(names))
	for _, name := range names {
		n[name] = name
	}
	return n
}

// maxReadDepth is the deepest nesting JSONReader reads; deeper input is left to encoding/json
// (whose own limit is 10000).
const maxReadDepth = 1000

// NewJSONReader reads data, taking object keys found in names from it.
func NewJSONReader[T ~string | ~[]byte](data T, names Names) JSONReader[T] {
	return JSONReader[T]{data: data, names: names}
}

// Failed reports whether the reader refused its input.
func (r *JSONReader[T]) Failed() bool { return r.failed }

func (r *JSONReader[T]) fail() bool {
	r.failed = true
	return false
}

// next is the next byte after white space, not consumed; 0 at the end (and for a NUL byte,
// which is no more JSON than the end).
func (r *JSONReader[T]) next() byte {
	r.pos = jsonscan.Space(r.data, r.pos)
	if r.pos == len(r.data) {
		return 0
	}
	return r.data[r.pos]
}

// Object reads an object as encoding/json reads one into a struct whose fields are names:
// field is called for each key with the index of its name, or -1 for a key that is none of
// them, and reads the key's value (String, Number, Value or Skip), reporting whether it could.
// Object is false when the reader refused the object, or a key that encoding/json might match
// to a name it does not equal (see matchKey), or a key with escapes. Of duplicate keys, field
// sees each, as encoding/json sets a field from each in turn.
func (r *JSONReader[T]) Object(names []string, field func(i int) bool) bool {
	if r.failed || r.next() != '{' {
		return r.fail()
	}
	r.pos++
	for first := true; ; first = false {
		key, more := r.key(first)
		if !more {
			return !r.failed
		}
		i, ok := matchKey(key, names)
		if !ok || !field(i) {
			return r.fail()
		}
	}
}

// key reads the next key of an object, and the colon after it; false at the object's end, or
// on failure. A key with escapes is refused: matchKey sees keys as they are written.
func (r *JSONReader[T]) key(first bool) (T, bool) {
	var none T
	c := r.next()
	switch {
	case c == '}':
		r.pos++
		return none, false
	case !first && c == ',':
		r.pos++
		c = r.next()
	case !first:
		return none, r.fail()
	}
	if c != '"' {
		return none, r.fail()
	}
	start, end, escaped := r.scanString()
	if r.failed || escaped {
		return none, r.fail()
	}
	if r.next() != ':' {
		return none, r.fail()
	}
	r.pos++
	return r.data[start:end], true
}

// End reports whether nothing but white space is left.
func (r *JSONReader[T]) End() bool {
	if r.pos = jsonscan.Space(r.data, r.pos); r.failed || r.pos != len(r.data) {
		return r.fail()
	}
	return true
}

// String reads a string value.
func (r *JSONReader[T]) String() (string, bool) {
	if r.failed || r.next() != '"' {
		return "", r.fail()
	}
	return r.stringValue()
}

// Number reads a number value, as its text.
func (r *JSONReader[T]) Number() (json.Number, bool) {
	if r.failed {
		return "", false
	}
	if c := r.next(); c != '-' && (c < '0' || c > '9') {
		return "", r.fail()
	}
	return r.number()
}

// Value reads any value.
func (r *JSONReader[T]) Value() (any, bool) {
	if r.failed {
		return nil, false
	}
	switch c := r.next(); {
	case c == '{':
		return r.object()
	case c == '[':
		return r.array()
	case c == '"':
		return r.stringValue()
	case c == '-' || c >= '0' && c <= '9':
		return r.number()
	case c == 'n':
		return nil, r.literal()
	case c == 't' || c == 'f':
		return c == 't', r.literal()
	}
	return nil, r.fail()
}

// Skip reads a value of any type and keeps nothing of it.
func (r *JSONReader[T]) Skip() bool {
	if r.failed {
		return false
	}
	end, ok := jsonscan.Skip(r.data, r.pos, maxReadDepth-r.depth)
	if !ok {
		return r.fail()
	}
	r.pos = end
	return true
}

// literal reads the true, false or null at r.pos.
func (r *JSONReader[T]) literal() bool {
	end, e := jsonscan.Literal(r.data, r.pos)
	if e.Kind != 0 {
		return r.fail()
	}
	r.pos = end
	return true
}

func (r *JSONReader[T]) object() (any, bool) {
	if r.depth++; r.depth > maxReadDepth {
		return nil, r.fail()
	}
	r.pos++ // {
	m := make(map[string]any)
	if r.next() == '}' {
		r.pos++
		r.depth--
		return m, true
	}
	for {
		if r.next() != '"' {
			return nil, r.fail()
		}
		key, ok := r.keyValue()
		if !ok || r.next() != ':' {
			return nil, r.fail()
		}
		r.pos++
		v, ok := r.Value()
		if !ok {
			return nil, false
		}
		m[key] = v // the last of duplicate keys, as encoding/json
		switch r.next() {
		case ',':
			r.pos++
		case '}':
			r.pos++
			r.depth--
			return m, true
		default:
			return nil, r.fail()
		}
	}
}

func (r *JSONReader[T]) array() (any, bool) {
	if r.depth++; r.depth > maxReadDepth {
		return nil, r.fail()
	}
	r.pos++             // [
	a := make([]any, 0) // [] is an empty array, not null
	if r.next() == ']' {
		r.pos++
		r.depth--
		return a, true
	}
	for {
		v, ok := r.Value()
		if !ok {
			return nil, false
		}
		a = append(a, v)
		switch r.next() {
		case ',':
			r.pos++
		case ']':
			r.pos++
			r.depth--
			return a, true
		default:
			return nil, r.fail()
		}
	}
}

// keyValue reads an object's key: one of names, shared, when it is one.
func (r *JSONReader[T]) keyValue() (string, bool) {
	start, end, escaped := r.scanString()
	if r.failed {
		return "", false
	}
	if escaped {
		return r.unescape(start, end)
	}
	if name, ok := r.names[string(r.data[start:end])]; ok {
		return name, true
	}
	return string(r.data[start:end]), true
}

func (r *JSONReader[T]) stringValue() (string, bool) {
	start, end, escaped := r.scanString()
	if r.failed {
		return "", false
	}
	if escaped {
		return r.unescape(start, end)
	}
	return string(r.data[start:end]), true
}

// scanString reads a string from its opening quote: its text is data[start:end], with
// escapes when escaped. Control characters, invalid escapes and invalid UTF-8 are refused.
func (r *JSONReader[T]) scanString() (start, end int, escaped bool) {
	start = r.pos + 1
	next, f, e := jsonscan.String(r.data, r.pos)
	if e.Kind != 0 || !jsonscan.Valid(r.data[start:next-1], f, false) {
		r.fail()
		return start, start, false
	}
	r.pos = next
	return start, next - 1, f&jsonscan.Escaped != 0
}

// unescape is the text of a string scanned with escapes (data[start:end]). A \u escape of a
// surrogate is refused, paired or not: encoding/json's handling of those is left to it.
func (r *JSONReader[T]) unescape(start, end int) (string, bool) {
	var buf [256]byte
	b, ok := jsonscan.Unquote(buf[:0], r.data[start:end], false)
	if !ok {
		return "", r.fail()
	}
	return string(b), true
}

// number reads a number value; its text is taken from the input.
func (r *JSONReader[T]) number() (json.Number, bool) {
	text, ok := r.numberText()
	return json.Number(text), ok
}

// numberText reads a number as JSON writes it.
func (r *JSONReader[T]) numberText() (string, bool) {
	end, e := jsonscan.Number(r.data, r.pos)
	if e.Kind != 0 {
		return "", r.fail()
	}
	start := r.pos
	r.pos = end
	return string(r.data[start:end]), true
}

// matchKey is the index in names of key, an object's key, as encoding/json matches a struct's
// fields: -1 for none. ok is false when encoding/json might match key to a name it does not
// equal (it matches keys in any case, by Unicode folding): such a key is for encoding/json to
// read.
func matchKey[T ~string | ~[]byte](key T, names []string) (i int, ok bool) {
	for i, name := range names {
		if string(key) == name {
			return i, true
		}
	}
	for i := 0; i < len(key); i++ {
		if key[i] >= utf8.RuneSelf {
			return -1, false
		}
	}
	for _, name := range names {
		if len(key) == len(name) && asciiEqualFold(key, name) {
			return -1, false
		}
	}
	return -1, true
}

func asciiEqualFold[T ~string | ~[]byte](a T, b string) bool {
	for i := 0; i < len(b); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}
