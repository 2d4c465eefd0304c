package providers

import (
	"encoding/json"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
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
// for, nesting deeper than maxReadDepth. Once it has
// refused (Failed), every read fails, and the caller reads the input again with encoding/json,
// which gives the same result or the error it always gave: the reader is a faster path to the
// same outcome, never a second opinion.
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

func (r *JSONReader[T]) skipSpace() {
	for r.pos < len(r.data) {
		switch r.data[r.pos] {
		case ' ', '\t', '\n', '\r':
			r.pos++
		default:
			return
		}
	}
}

// next is the next byte after white space, not consumed; 0 at the end (and for a NUL byte,
// which is no more JSON than the end).
func (r *JSONReader[T]) next() byte {
	r.skipSpace()
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
	if r.skipSpace(); r.failed || r.pos != len(r.data) {
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
	case c == 't':
		return true, r.literal("true")
	case c == 'f':
		return false, r.literal("false")
	case c == 'n':
		return nil, r.literal("null")
	}
	return nil, r.fail()
}

// Skip reads a value of any type and keeps nothing of it.
func (r *JSONReader[T]) Skip() bool {
	if r.failed {
		return false
	}
	switch c := r.next(); {
	case c == '{' || c == '[':
		if r.depth++; r.depth > maxReadDepth {
			return r.fail()
		}
		r.pos++
		end := byte('}')
		if c == '[' {
			end = ']'
		}
		if r.next() == end {
			r.pos++
			r.depth--
			return true
		}
		for {
			if c == '{' {
				if r.next() != '"' {
					return r.fail()
				}
				if r.scanString(); r.failed || r.next() != ':' {
					return r.fail()
				}
				r.pos++
			}
			if !r.Skip() {
				return false
			}
			switch r.next() {
			case ',':
				r.pos++
			case end:
				r.pos++
				r.depth--
				return true
			default:
				return r.fail()
			}
		}
	case c == '"':
		r.scanString()
		return !r.failed
	case c == '-' || c >= '0' && c <= '9':
		_, ok := r.numberText()
		return ok
	case c == 't':
		return r.literal("true")
	case c == 'f':
		return r.literal("false")
	case c == 'n':
		return r.literal("null")
	}
	return r.fail()
}

func (r *JSONReader[T]) literal(word string) bool {
	if len(r.data)-r.pos < len(word) {
		return r.fail()
	}
	for i := 0; i < len(word); i++ {
		if r.data[r.pos+i] != word[i] {
			return r.fail()
		}
	}
	r.pos += len(word)
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
	r.pos++ // "
	start = r.pos
	ascii := true
	for r.pos < len(r.data) {
		switch c := r.data[r.pos]; {
		case c == '"':
			end = r.pos
			r.pos++
			if !ascii && !validUTF8(r.data[start:end]) {
				r.fail()
			}
			return start, end, escaped
		case c == '\\':
			escaped = true
			if r.pos+1 == len(r.data) {
				r.fail()
				return
			}
			switch r.data[r.pos+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				r.pos += 2
			case 'u':
				if _, ok := hex4(r.data, r.pos+2); !ok {
					r.fail()
					return
				}
				r.pos += 6
			default:
				r.fail()
				return
			}
		case c < 0x20:
			r.fail()
			return
		default:
			if c >= utf8.RuneSelf {
				ascii = false
			}
			r.pos++
		}
	}
	r.fail()
	return
}

// validUTF8 is utf8.Valid for either kind of text, without converting it.
func validUTF8[T ~string | ~[]byte](s T) bool {
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			i++
			continue
		}
		n, lo, hi := 0, byte(0x80), byte(0xBF) // continuation bytes, and the range of the first
		switch {
		case c >= 0xC2 && c <= 0xDF:
			n = 1
		case c == 0xE0:
			n, lo = 2, 0xA0
		case c == 0xED:
			n, hi = 2, 0x9F // no surrogates
		case c >= 0xE1 && c <= 0xEF:
			n = 2
		case c == 0xF0:
			n, lo = 3, 0x90
		case c >= 0xF1 && c <= 0xF3:
			n = 3
		case c == 0xF4:
			n, hi = 3, 0x8F // at most U+10FFFF
		default:
			return false
		}
		if len(s)-i <= n || s[i+1] < lo || s[i+1] > hi {
			return false
		}
		for j := 2; j <= n; j++ {
			if s[i+j] < 0x80 || s[i+j] > 0xBF {
				return false
			}
		}
		i += n + 1
	}
	return true
}

// hex4 is the value of the four hex digits at data[i:].
func hex4[T ~string | ~[]byte](data T, i int) (rune, bool) {
	if len(data)-i < 4 {
		return 0, false
	}
	v, err := strconv.ParseUint(string(data[i:i+4]), 16, 16)
	return rune(v), err == nil
}

// unescape is the text of a string scanned with escapes (data[start:end]). A \u escape of a
// surrogate is refused, paired or not: encoding/json's handling of those is left to it.
func (r *JSONReader[T]) unescape(start, end int) (string, bool) {
	var buf [256]byte
	b := buf[:0]
	for i := start; i < end; {
		c := r.data[i]
		if c != '\\' {
			b = append(b, c)
			i++
			continue
		}
		switch e := r.data[i+1]; e {
		case 'u':
			u, _ := hex4(r.data, i+2)
			if utf16.IsSurrogate(u) {
				return "", r.fail()
			}
			b = utf8.AppendRune(b, u)
			i += 6
			continue
		case 'b':
			b = append(b, '\b')
		case 'f':
			b = append(b, '\f')
		case 'n':
			b = append(b, '\n')
		case 'r':
			b = append(b, '\r')
		case 't':
			b = append(b, '\t')
		default: // " \ /
			b = append(b, e)
		}
		i += 2
	}
	return string(b), true
}

// number reads a number value; its text is taken from the input.
func (r *JSONReader[T]) number() (json.Number, bool) {
	text, ok := r.numberText()
	return json.Number(text), ok
}

// numberText reads a number as JSON writes it: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?
func (r *JSONReader[T]) numberText() (string, bool) {
	start := r.pos
	if r.at('-') {
		r.pos++
	}
	switch {
	case r.at('0'):
		r.pos++
	case r.digits() == 0:
		return "", r.fail()
	}
	if r.at('.') {
		r.pos++
		if r.digits() == 0 {
			return "", r.fail()
		}
	}
	if r.at('e') || r.at('E') {
		r.pos++
		if r.at('+') || r.at('-') {
			r.pos++
		}
		if r.digits() == 0 {
			return "", r.fail()
		}
	}
	return string(r.data[start:r.pos]), true
}

func (r *JSONReader[T]) at(c byte) bool { return r.pos < len(r.data) && r.data[r.pos] == c }

func (r *JSONReader[T]) digits() int {
	n := 0
	for r.pos < len(r.data) && r.data[r.pos] >= '0' && r.data[r.pos] <= '9' {
		r.pos++
		n++
	}
	return n
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
