package events

import (
	"strconv"
	"sync"
	"time"
	"unicode/utf16"
	"unicode/utf8"
)

// jsonReader reads a JSON payload token by token, so that nesting and counts are checked as
// they come and a string's own bytes can be checked for UTF-8 (encoding/json would quietly
// put U+FFFD in place of invalid bytes and of lone surrogate escapes). It takes the payload's
// tokens as encoding/json's Decoder.Token does, refusing what it refuses, but reads them in
// place: a string costs one allocation when kept and none when it is a field's name.
type jsonReader struct {
	data  []byte
	pos   int       // the next byte to read
	tok   jsonToken // the token peeked at, if has
	has   bool
	state jsonState
	// outer holds the states to go back to at the end of each array or object open; maps the
	// objects entered with mapStart. Nesting is bounded (MaxDepth) before either grows.
	outer  [MaxDepth + 1]jsonState
	nouter int
	maps   [MaxDepth]jsonMap
	nmaps  int
}

type jsonMap struct{ depth, n, max int }

// jsonState is what the next token may be, as encoding/json's Decoder tracks it.
type jsonState uint8

const (
	jsonTopValue jsonState = iota
	jsonArrayStart
	jsonArrayValue
	jsonArrayComma
	jsonObjectStart
	jsonObjectKey
	jsonObjectColon
	jsonObjectValue
	jsonObjectComma
)

// jsonToken is one token: a delimiter ({ } [ ]), a string ("), a number (0) or a literal
// (t, f, n), and its text data[start:end]. escaped says a string holds a backslash.
type jsonToken struct {
	t          byte
	start, end int
	escaped    bool
}

var jsonReaders = sync.Pool{New: func() any { return new(jsonReader) }}

func newJSONReader(data []byte) *jsonReader {
	j := jsonReaders.Get().(*jsonReader)
	*j = jsonReader{data: data}
	return j
}

// release gives j back for another payload.
func (j *jsonReader) release() {
	j.data = nil
	jsonReaders.Put(j)
}

func (j *jsonReader) next() (jsonToken, error) {
	if j.has {
		j.has = false
		return j.tok, nil
	}
	return j.token()
}

func (j *jsonReader) peekToken() (jsonToken, error) {
	if !j.has {
		t, err := j.token()
		if err != nil {
			return t, err
		}
		j.tok, j.has = t, true
	}
	return j.tok, nil
}

// skipSpace moves past white space and reports whether a byte follows.
func (j *jsonReader) skipSpace() bool {
	for ; j.pos < len(j.data); j.pos++ {
		switch j.data[j.pos] {
		case ' ', '\t', '\r', '\n':
		default:
			return true
		}
	}
	return false
}

// token reads the next token, checking it may come where it does.
func (j *jsonReader) token() (jsonToken, error) {
	for {
		if !j.skipSpace() {
			return jsonToken{}, invalidPayload("not valid JSON: unexpected end of data")
		}
		c := j.data[j.pos]
		switch c {
		case '[', '{':
			if !j.valueAllowed() {
				return jsonToken{}, j.unexpected(c)
			}
			if j.nouter == len(j.outer) {
				return jsonToken{}, depthError()
			}
			j.outer[j.nouter] = j.state
			j.nouter++
			j.state = jsonArrayStart
			if c == '{' {
				j.state = jsonObjectStart
			}
			j.pos++
			return jsonToken{t: c, start: j.pos - 1, end: j.pos}, nil
		case ']', '}':
			if c == ']' && j.state != jsonArrayStart && j.state != jsonArrayComma ||
				c == '}' && j.state != jsonObjectStart && j.state != jsonObjectComma {
				return jsonToken{}, j.unexpected(c)
			}
			j.nouter--
			j.state = j.outer[j.nouter]
			j.valueEnd()
			j.pos++
			return jsonToken{t: c, start: j.pos - 1, end: j.pos}, nil
		case ':':
			if j.state != jsonObjectColon {
				return jsonToken{}, j.unexpected(c)
			}
			j.state = jsonObjectValue
			j.pos++
			continue
		case ',':
			switch j.state {
			case jsonArrayComma:
				j.state = jsonArrayValue
			case jsonObjectComma:
				j.state = jsonObjectKey
			default:
				return jsonToken{}, j.unexpected(c)
			}
			j.pos++
			continue
		case '"':
			if j.state == jsonObjectStart || j.state == jsonObjectKey {
				t, err := j.scalar()
				j.state = jsonObjectColon
				return t, err
			}
		}
		if !j.valueAllowed() {
			return jsonToken{}, j.unexpected(c)
		}
		t, err := j.scalar()
		j.valueEnd()
		return t, err
	}
}

func (j *jsonReader) valueAllowed() bool {
	switch j.state {
	case jsonTopValue, jsonArrayStart, jsonArrayValue, jsonObjectValue:
		return true
	}
	return false
}

func (j *jsonReader) valueEnd() {
	switch j.state {
	case jsonArrayStart, jsonArrayValue:
		j.state = jsonArrayComma
	case jsonObjectValue:
		j.state = jsonObjectComma
	}
}

// unexpected is the refusal of c where it stands.
func (j *jsonReader) unexpected(c byte) error {
	where := "looking for beginning of value"
	switch j.state {
	case jsonArrayComma:
		where = "after array element"
	case jsonObjectKey:
		where = "looking for beginning of object key string"
	case jsonObjectColon:
		where = "after object key"
	case jsonObjectComma:
		where = "after object key:value pair"
	}
	return invalidPayload("not valid JSON: invalid character %s %s", quoteChar(c), where)
}

// quoteChar is c as encoding/json's errors show it.
func quoteChar(c byte) string {
	switch c {
	case '\'':
		return `'\''`
	case '"':
		return `'"'`
	}
	q := strconv.Quote(string(rune(c)))
	return "'" + q[1:len(q)-1] + "'"
}

// scalar reads the string, number or literal at j.pos, whole.
func (j *jsonReader) scalar() (jsonToken, error) {
	d, start := j.data, j.pos
	t := jsonToken{t: d[start], start: start}
	i := start
	switch c := d[i]; {
	case c == '"':
		for i++; ; i++ {
			if i >= len(d) {
				return t, invalidPayload("not valid JSON: unexpected end of data in a string")
			}
			c := d[i]
			if c == '"' {
				i++
				break
			}
			if c < 0x20 {
				return t, invalidPayload("not valid JSON: invalid character %s in string literal", quoteChar(c))
			}
			if c != '\\' {
				continue
			}
			t.escaped = true
			if i++; i >= len(d) {
				return t, invalidPayload("not valid JSON: unexpected end of data in a string")
			}
			switch d[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				for k := 1; k <= 4; k++ {
					if i+k >= len(d) {
						return t, invalidPayload("not valid JSON: unexpected end of data in a string")
					}
					if c := d[i+k]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
						return t, invalidPayload("not valid JSON: invalid character %s in \\u hexadecimal character escape", quoteChar(d[i+k]))
					}
				}
				i += 4
			default:
				return t, invalidPayload("not valid JSON: invalid character %s in string escape code", quoteChar(d[i]))
			}
		}
	case c == '-' || c >= '0' && c <= '9':
		t.t = '0'
		if c == '-' {
			i++
		}
		switch {
		case i < len(d) && d[i] == '0':
			i++
		case i < len(d) && d[i] >= '1' && d[i] <= '9':
			i = digits(d, i)
		default:
			return t, j.badNumber(i, "in numeric literal")
		}
		if i < len(d) && d[i] == '.' {
			if i++; i >= len(d) || d[i] < '0' || d[i] > '9' {
				return t, j.badNumber(i, "after decimal point in numeric literal")
			}
			i = digits(d, i)
		}
		if i < len(d) && (d[i] == 'e' || d[i] == 'E') {
			if i++; i < len(d) && (d[i] == '+' || d[i] == '-') {
				i++
			}
			if i >= len(d) || d[i] < '0' || d[i] > '9' {
				return t, j.badNumber(i, "in exponent of numeric literal")
			}
			i = digits(d, i)
		}
	default:
		var lit string
		switch c {
		case 't':
			lit = "true"
		case 'f':
			lit = "false"
		case 'n':
			lit = "null"
		default:
			return t, invalidPayload("not valid JSON: invalid character %s looking for beginning of value", quoteChar(c))
		}
		for k := 1; k < len(lit); k++ {
			if start+k >= len(d) {
				return t, invalidPayload("not valid JSON: unexpected end of data")
			}
			if d[start+k] != lit[k] {
				return t, invalidPayload("not valid JSON: invalid character %s in literal %s (expecting %s)", quoteChar(d[start+k]), lit, quoteChar(lit[k]))
			}
		}
		i = start + len(lit)
	}
	t.end = i
	j.pos = i
	return t, nil
}

func digits(d []byte, i int) int {
	for i < len(d) && d[i] >= '0' && d[i] <= '9' {
		i++
	}
	return i
}

func (j *jsonReader) badNumber(i int, where string) error {
	if i >= len(j.data) {
		return invalidPayload("not valid JSON: unexpected end of data")
	}
	return invalidPayload("not valid JSON: invalid character %s %s", quoteChar(j.data[i]), where)
}

func (j *jsonReader) peek() (kind, error) {
	t, err := j.peekToken()
	if err != nil {
		return 0, err
	}
	switch t.t {
	case 'n':
		return kindNull, nil
	case '"':
		return kindString, nil
	case 't', 'f':
		return kindBool, nil
	case '0':
		return kindNumber, nil
	case '{':
		return kindObject, nil
	case '[':
		return kindArray, nil
	}
	return 0, invalidPayload("not valid JSON: unexpected %c", t.t)
}

// text is the string token t's text, checked for UTF-8 and lone surrogate escapes.
func (j *jsonReader) text(t jsonToken) ([]byte, error) {
	if t.t != '"' {
		return nil, invalidPayload("not valid JSON: expected a string")
	}
	raw := j.data[t.start:t.end]
	if !validJSONText(raw) {
		return nil, errNotUTF8
	}
	return raw[1 : len(raw)-1], nil
}

func (j *jsonReader) str() (string, error) {
	t, err := j.next()
	if err != nil {
		return "", err
	}
	s, err := j.text(t)
	if err != nil {
		return "", err
	}
	if t.escaped {
		return unquote(s), nil
	}
	return string(s), nil
}

func (j *jsonReader) boolean() (bool, error) {
	t, err := j.next()
	if err != nil {
		return false, err
	}
	if t.t != 't' && t.t != 'f' {
		return false, invalidPayload("not valid JSON: expected a boolean")
	}
	return t.t == 't', nil
}

func (j *jsonReader) null() error {
	_, err := j.next()
	return err
}

func (j *jsonReader) timestamp() (time.Time, error) {
	return time.Time{}, invalidPayload("not valid JSON: no timestamp type")
}

func (j *jsonReader) mapStart(depth, max int) error {
	if depth > MaxDepth {
		return depthError()
	}
	if _, err := j.next(); err != nil { // the '{' peek saw
		return err
	}
	j.maps[j.nmaps] = jsonMap{depth: depth, max: max}
	j.nmaps++
	return nil
}

func (j *jsonReader) mapKey() (string, bool, error) {
	t, err := j.peekToken()
	if err != nil {
		return "", false, err
	}
	top := &j.maps[j.nmaps-1]
	if t.t == '}' {
		j.has = false
		j.nmaps--
		return "", false, nil
	}
	if top.n++; top.n > top.max {
		return "", false, fieldLimitError(top.depth, top.n, top.max)
	}
	j.has = false
	s, err := j.text(t)
	if err != nil {
		return "", false, err
	}
	if t.escaped {
		return unquote(s), true, nil
	}
	return fieldName(s), true, nil
}

func (j *jsonReader) skip(depth int) error {
	k, err := j.peek()
	if err != nil {
		return err
	}
	switch k {
	case kindObject:
		if err := j.mapStart(depth, MaxElements); err != nil {
			return err
		}
		for {
			_, more, err := j.mapKey()
			if err != nil || !more {
				return err
			}
			if err := j.skip(depth + 1); err != nil {
				return err
			}
		}
	case kindArray:
		if depth > MaxDepth {
			return depthError()
		}
		j.has = false // the '['
		for n := 0; ; n++ {
			t, err := j.peekToken()
			if err != nil {
				return err
			}
			if t.t == ']' {
				j.has = false
				return nil
			}
			if n == MaxElements {
				return fieldLimitError(depth, n+1, MaxElements)
			}
			if err := j.skip(depth + 1); err != nil {
				return err
			}
		}
	case kindString:
		t, _ := j.next()
		_, err := j.text(t)
		return err
	}
	_, err = j.next()
	return err
}

func (j *jsonReader) end() error {
	if j.skipSpace() {
		return invalidPayload("not valid JSON: data after the top-level object")
	}
	return nil
}

// unquote is the text of a JSON string holding escapes, checked already by validJSONText.
func unquote(s []byte) string {
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' {
			b = append(b, c)
			continue
		}
		i++
		switch s[i] {
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
		case 'u':
			r, _ := hex4(s[i+1:])
			i += 4
			if utf16.IsSurrogate(r) { // a high one, followed by its low one
				lo, _ := hex4(s[i+3:])
				r = utf16.DecodeRune(r, lo)
				i += 6
			}
			b = utf8.AppendRune(b, r)
		default: // " \ /
			b = append(b, s[i])
		}
	}
	return string(b)
}

// validJSONText reports whether the text of a JSON string token is valid UTF-8 and escapes
// no lone UTF-16 surrogate.
func validJSONText(raw []byte) bool {
	if !utf8.Valid(raw) {
		return false
	}
	for i := 0; i < len(raw); i++ {
		if raw[i] != '\\' {
			continue
		}
		i++
		if i >= len(raw) || raw[i] != 'u' {
			continue
		}
		r, ok := hex4(raw[i+1:])
		if !ok {
			return false
		}
		i += 4
		switch {
		case r >= 0xdc00 && r <= 0xdfff:
			return false // a low surrogate with no high one before it
		case r >= 0xd800 && r <= 0xdbff:
			if i+6 >= len(raw) || raw[i+1] != '\\' || raw[i+2] != 'u' {
				return false
			}
			lo, ok := hex4(raw[i+3:])
			if !ok || lo < 0xdc00 || lo > 0xdfff {
				return false
			}
			i += 6
		}
	}
	return true
}

func hex4(b []byte) (rune, bool) {
	if len(b) < 4 {
		return 0, false
	}
	var r rune
	for _, c := range b[:4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c -= 'a' - 10
		case c >= 'A' && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}
