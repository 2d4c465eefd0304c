package events

// The request decoder's readers as they were when they read through encoding/json's Decoder and
// the msgpack library's: the reference the hand-written readers are compared with
// (TestReadersAgreeWithLibraryReaders, FuzzReadersAgreeWithLibraryReaders).

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"time"
	"unicode/utf8"

	"github.com/vmihailenco/msgpack/v5"
	"github.com/vmihailenco/msgpack/v5/msgpcode"

	"github.com/paystatus/orderstatus/internal/jsonscan"
)

// libJSONReader reads a JSON payload token by token, so that nesting and counts are checked as
// they come and a string's own bytes can be checked for UTF-8 (encoding/json would quietly
// put U+FFFD in place of invalid bytes and of lone surrogate escapes).
type libJSONReader struct {
	data []byte
	d    *json.Decoder
	tok  json.Token // the token peeked at, if has
	raw  []byte     // its text, with any separator before it
	has  bool
	maps []libJSONMap
}

type libJSONMap struct{ depth, n, max int }

func newLibJSONReader(data []byte) *libJSONReader {
	d := json.NewDecoder(bytes.NewReader(data))
	d.UseNumber()
	return &libJSONReader{data: data, d: d}
}

func (j *libJSONReader) next() (json.Token, error) {
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

func (j *libJSONReader) peekToken() (json.Token, error) {
	if !j.has {
		t, err := j.next()
		if err != nil {
			return nil, err
		}
		j.tok, j.has = t, true
	}
	return j.tok, nil
}

func (j *libJSONReader) peek() (kind, error) {
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

// validJSONText reports whether raw, a string token's text after what separates it from the
// token before, is valid UTF-8 and escapes no lone UTF-16 surrogate.
func validJSONText(raw []byte) bool {
	i := bytes.IndexByte(raw, '"')
	end, _, _ := jsonscan.String(raw, i)
	return utf8.Valid(raw) && jsonscan.Valid(raw[i+1:end-1], jsonscan.Escaped, true)
}

func (j *libJSONReader) str() (string, error) {
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

func (j *libJSONReader) boolean() (bool, error) {
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

func (j *libJSONReader) null() error {
	_, err := j.next()
	return err
}

func (j *libJSONReader) timestamp() (time.Time, error) {
	return time.Time{}, invalidPayload("not valid JSON: no timestamp type")
}

func (j *libJSONReader) mapStart(depth, max int) error {
	if depth > MaxDepth {
		return depthError()
	}
	if _, err := j.next(); err != nil { // the '{' peek saw
		return err
	}
	j.maps = append(j.maps, libJSONMap{depth: depth, max: max})
	return nil
}

func (j *libJSONReader) mapKey() (string, bool, error) {
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

func (j *libJSONReader) skip(depth int) error {
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

func (j *libJSONReader) end() error {
	if _, err := j.d.Token(); !errors.Is(err, io.EOF) {
		return invalidPayload("not valid JSON: data after the top-level object")
	}
	return nil
}

// libMsgpackReader reads a msgpack payload with the library's decoder, but never lets it
// allocate what a header declares: every length is checked against the bytes that remain,
// strings are sliced from the payload itself, and nothing is skipped by the library's own
// recursive Skip.
type libMsgpackReader struct {
	data []byte
	r    *bytes.Reader // the decoder reads it directly (it is an io.ByteScanner), so r.Len() is exact
	d    *msgpack.Decoder
	maps []int // entries left in each map entered
}

func newLibMsgpackReader(data []byte) *libMsgpackReader {
	r := bytes.NewReader(data)
	return &libMsgpackReader{data: data, r: r, d: msgpack.NewDecoder(r)}
}

func libNotMsgpack(err error) error {
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return invalidPayload("not valid msgpack: unexpected end of data")
	}
	return invalidPayload("not valid msgpack: %v", err)
}

func (m *libMsgpackReader) peek() (kind, error) {
	c, err := m.d.PeekCode()
	if err != nil {
		return 0, libNotMsgpack(err)
	}
	switch {
	case c == msgpcode.Nil:
		return kindNull, nil
	case c == msgpcode.True || c == msgpcode.False:
		return kindBool, nil
	case msgpcode.IsFixedNum(c), c >= msgpcode.Float && c <= msgpcode.Int64:
		return kindNumber, nil
	case msgpcode.IsString(c):
		return kindString, nil
	case msgpcode.IsBin(c):
		return kindBinary, nil
	case msgpcode.IsFixedMap(c), c == msgpcode.Map16, c == msgpcode.Map32:
		return kindObject, nil
	case msgpcode.IsFixedArray(c), c == msgpcode.Array16, c == msgpcode.Array32:
		return kindArray, nil
	case msgpcode.IsExt(c):
		if id, _, err := m.extHeader(); err == nil && id == -1 {
			return kindTime, nil
		}
		return kindOther, nil
	}
	return 0, invalidPayload("not valid msgpack: unknown code 0x%02x", c)
}

// extHeader reads the header of the extension value that comes next, then goes back to it.
func (m *libMsgpackReader) extHeader() (id int8, n int, err error) {
	at := m.r.Len()
	id, n, err = m.d.DecodeExtHeader()
	_, _ = m.r.Seek(int64(len(m.data)-at), io.SeekStart)
	return id, n, err
}

// take returns the next n bytes of the payload, refusing a length the payload cannot hold.
func (m *libMsgpackReader) take(n int) ([]byte, error) {
	if n < 0 || n > m.r.Len() {
		return nil, invalidPayload("not valid msgpack: a length of %d bytes is more than the %d that remain", n, m.r.Len())
	}
	at := len(m.data) - m.r.Len()
	_, _ = m.r.Seek(int64(n), io.SeekCurrent)
	return m.data[at : at+n], nil
}

func (m *libMsgpackReader) str() (string, error) {
	n, err := m.d.DecodeBytesLen()
	if err != nil {
		return "", libNotMsgpack(err)
	}
	b, err := m.take(max(n, 0))
	if err != nil {
		return "", err
	}
	if !utf8.Valid(b) {
		return "", errNotUTF8
	}
	return string(b), nil
}

func (m *libMsgpackReader) boolean() (bool, error) {
	b, err := m.d.DecodeBool()
	if err != nil {
		return false, libNotMsgpack(err)
	}
	return b, nil
}

func (m *libMsgpackReader) null() error {
	if err := m.d.DecodeNil(); err != nil {
		return libNotMsgpack(err)
	}
	return nil
}

func (m *libMsgpackReader) timestamp() (time.Time, error) {
	_, n, err := m.extHeader()
	if err != nil {
		return time.Time{}, libNotMsgpack(err)
	}
	if n != 4 && n != 8 && n != 12 || n > m.r.Len() {
		return time.Time{}, invalidPayload("not valid msgpack: a timestamp of %d bytes", n)
	}
	t, err := m.d.DecodeTime()
	if err != nil {
		return time.Time{}, libNotMsgpack(err)
	}
	return t, nil
}

// container reads a map or array header and checks its count: each entry takes at least one
// byte per value (two for a map entry), so a count the remaining bytes cannot hold is refused
// before anything is made for it.
func (m *libMsgpackReader) container(depth, max int) (n int, isMap bool, err error) {
	if depth > MaxDepth {
		return 0, false, depthError()
	}
	c, err := m.d.PeekCode()
	if err != nil {
		return 0, false, libNotMsgpack(err)
	}
	isMap = msgpcode.IsFixedMap(c) || c == msgpcode.Map16 || c == msgpcode.Map32
	if isMap {
		n, err = m.d.DecodeMapLen()
	} else {
		n, err = m.d.DecodeArrayLen()
	}
	if err != nil {
		return 0, false, libNotMsgpack(err)
	}
	per := 1
	if isMap {
		per = 2
	}
	if n > m.r.Len()/per {
		return 0, false, invalidPayload("not valid msgpack: %d entries declared, but only %d bytes remain", n, m.r.Len())
	}
	if n > max {
		return 0, false, fieldLimitError(depth, n, max)
	}
	return n, isMap, nil
}

func (m *libMsgpackReader) mapStart(depth, max int) error {
	n, _, err := m.container(depth, max)
	if err != nil {
		return err
	}
	m.maps = append(m.maps, n)
	return nil
}

func (m *libMsgpackReader) mapKey() (string, bool, error) {
	top := len(m.maps) - 1
	if m.maps[top] == 0 {
		m.maps = m.maps[:top]
		return "", false, nil
	}
	m.maps[top]--
	k, err := m.peek()
	if err != nil {
		return "", false, err
	}
	if k != kindString {
		return "", false, invalidPayload("a map key is %s, not a string", k)
	}
	s, err := m.str()
	return s, err == nil, err
}

func (m *libMsgpackReader) skip(depth int) error {
	k, err := m.peek()
	if err != nil {
		return err
	}
	switch k {
	case kindObject, kindArray:
		n, isMap, err := m.container(depth, MaxElements)
		if err != nil {
			return err
		}
		if isMap {
			n *= 2
		}
		for range n {
			if err := m.skip(depth + 1); err != nil {
				return err
			}
		}
		return nil
	case kindString:
		_, err := m.str()
		return err
	case kindBinary:
		n, err := m.d.DecodeBytesLen()
		if err != nil {
			return libNotMsgpack(err)
		}
		_, err = m.take(max(n, 0))
		return err
	case kindTime, kindOther:
		_, n, err := m.d.DecodeExtHeader()
		if err != nil {
			return libNotMsgpack(err)
		}
		_, err = m.take(n)
		return err
	}
	if err := m.d.Skip(); err != nil { // nil, a boolean or a number: at most 9 bytes
		return libNotMsgpack(err)
	}
	return nil
}

func (m *libMsgpackReader) end() error {
	if m.r.Len() > 0 {
		return invalidPayload("not valid msgpack: data after the top-level map")
	}
	return nil
}
