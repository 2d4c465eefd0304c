package events

import (
	"sync"
	"time"

	"github.com/paystatus/orderstatus/internal/jsonscan"
)

// jsonReader reads a JSON payload token by token, so that nesting and counts are checked as
// they come and a string's own bytes can be checked for UTF-8 (encoding/json would quietly
// put U+FFFD in place of invalid bytes and of lone surrogate escapes). It takes the payload's
// tokens as encoding/json's Decoder.Token does, refusing what it refuses in its words, but reads
// them in place (with jsonscan): a string costs one allocation when kept and none when it is a
// field's name.
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
// (t, f, n), and its text data[start:end]; flags say what a string holds.
type jsonToken struct {
	t          byte
	start, end int
	flags      jsonscan.Flags
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
	j.pos = jsonscan.Space(j.data, j.pos)
	return j.pos < len(j.data)
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
	return invalidPayload("not valid JSON: invalid character %s %s", jsonscan.QuoteChar(c), where)
}

// scalar reads the string, number or literal at j.pos, whole.
func (j *jsonReader) scalar() (jsonToken, error) {
	start := j.pos
	t := jsonToken{t: j.data[start], start: start}
	var e jsonscan.Error
	switch c := t.t; {
	case c == '"':
		t.end, t.flags, e = jsonscan.String(j.data, start)
	case c == '-' || c >= '0' && c <= '9':
		t.t = '0'
		t.end, e = jsonscan.Number(j.data, start)
	case c == 't' || c == 'f' || c == 'n':
		t.end, e = jsonscan.Literal(j.data, start)
	default:
		return t, invalidPayload("not valid JSON: invalid character %s looking for beginning of value", jsonscan.QuoteChar(c))
	}
	if e.Kind != 0 {
		return t, invalidPayload("not valid JSON: %s", jsonscan.Message(j.data, e))
	}
	j.pos = t.end
	return t, nil
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
	s := j.data[t.start+1 : t.end-1]
	if !jsonscan.Valid(s, t.flags, true) {
		return nil, errNotUTF8
	}
	return s, nil
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
	if t.flags&jsonscan.Escaped != 0 {
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
	if t.flags&jsonscan.Escaped != 0 {
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

// unquote is the text of a JSON string holding escapes, checked already by jsonscan.Valid.
func unquote(s []byte) string {
	var buf [64]byte
	b, _ := jsonscan.Unquote(buf[:0], s, true)
	return string(b)
}
