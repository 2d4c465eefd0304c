package events

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"time"
	"unicode/utf8"
)

// jsonReader reads a JSON payload token by token, so that nesting and counts are checked as
// they come and a string's own bytes can be checked for UTF-8 (encoding/json would quietly
// put U+FFFD in place of invalid bytes and of lone surrogate escapes).
type jsonReader struct {
	data []byte
	d    *json.Decoder
	tok  json.Token // the token peeked at, if has
	raw  []byte     // its text, with any separator before it
	has  bool
	maps []jsonMap
}

type jsonMap struct{ depth, n, max int }

func newJSONReader(data []byte) *jsonReader {
	d := json.NewDecoder(bytes.NewReader(data))
	d.UseNumber()
	return &jsonReader{data: data, d: d}
}

func (j *jsonReader) next() (json.Token, error) {
	if j.has {
		j.has = false
		return j.tok, nil
	}
	before := j.d.InputOffset()
	t, err := j.d.Token()
	if err == io.EOF {
		return nil, invalidPayload("not valid JSON: unexpected end of data")
	}
	if err != nil {
		return nil, invalidPayload("not valid JSON: %v", err)
	}
	j.raw = j.data[before:j.d.InputOffset()]
	return t, nil
}

func (j *jsonReader) peekToken() (json.Token, error) {
	if !j.has {
		t, err := j.next()
		if err != nil {
			return nil, err
		}
		j.tok, j.has = t, true
	}
	return j.tok, nil
}

func (j *jsonReader) peek() (kind, error) {
	t, err := j.peekToken()
	if err != nil {
		return 0, err
	}
	switch v := t.(type) {
	case nil:
		return kindNull, nil
	case string:
		return kindString, nil
	case bool:
		return kindBool, nil
	case json.Number:
		return kindNumber, nil
	case json.Delim:
		switch v {
		case '{':
			return kindObject, nil
		case '[':
			return kindArray, nil
		}
	}
	return 0, invalidPayload("not valid JSON: unexpected %v", t)
}

func (j *jsonReader) str() (string, error) {
	t, err := j.next()
	if err != nil {
		return "", err
	}
	s, ok := t.(string)
	if !ok {
		return "", invalidPayload("not valid JSON: expected a string")
	}
	if !validJSONText(j.raw) {
		return "", errNotUTF8
	}
	return s, nil
}

func (j *jsonReader) boolean() (bool, error) {
	t, err := j.next()
	if err != nil {
		return false, err
	}
	b, ok := t.(bool)
	if !ok {
		return false, invalidPayload("not valid JSON: expected a boolean")
	}
	return b, nil
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
	j.maps = append(j.maps, jsonMap{depth: depth, max: max})
	return nil
}

func (j *jsonReader) mapKey() (string, bool, error) {
	t, err := j.peekToken()
	if err != nil {
		return "", false, err
	}
	top := &j.maps[len(j.maps)-1]
	if t == json.Delim('}') {
		j.has = false
		j.maps = j.maps[:len(j.maps)-1]
		return "", false, nil
	}
	if top.n++; top.n > top.max {
		return "", false, fieldLimitError(top.depth, top.n, top.max)
	}
	s, err := j.str()
	return s, err == nil, err
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
			if t == json.Delim(']') {
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
		_, err := j.str()
		return err
	}
	_, err = j.next()
	return err
}

func (j *jsonReader) end() error {
	if _, err := j.d.Token(); !errors.Is(err, io.EOF) {
		return invalidPayload("not valid JSON: data after the top-level object")
	}
	return nil
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
