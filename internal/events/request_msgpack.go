package events

import (
	"bytes"
	"io"
	"time"
	"unicode/utf8"

	"github.com/vmihailenco/msgpack/v5"
	"github.com/vmihailenco/msgpack/v5/msgpcode"
)

// msgpackReader reads a msgpack payload with the library's decoder, but never lets it
// allocate what a header declares: every length is checked against the bytes that remain,
// strings are sliced from the payload itself, and nothing is skipped by the library's own
// recursive Skip.
type msgpackReader struct {
	data []byte
	r    *bytes.Reader // the decoder reads it directly (it is an io.ByteScanner), so r.Len() is exact
	d    *msgpack.Decoder
	maps []int // entries left in each map entered
}

func newMsgpackReader(data []byte) *msgpackReader {
	r := bytes.NewReader(data)
	return &msgpackReader{data: data, r: r, d: msgpack.NewDecoder(r)}
}

func notMsgpack(err error) error {
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return invalidPayload("not valid msgpack: unexpected end of data")
	}
	return invalidPayload("not valid msgpack: %v", err)
}

func (m *msgpackReader) peek() (kind, error) {
	c, err := m.d.PeekCode()
	if err != nil {
		return 0, notMsgpack(err)
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
func (m *msgpackReader) extHeader() (id int8, n int, err error) {
	at := m.r.Len()
	id, n, err = m.d.DecodeExtHeader()
	_, _ = m.r.Seek(int64(len(m.data)-at), io.SeekStart)
	return id, n, err
}

// take returns the next n bytes of the payload, refusing a length the payload cannot hold.
func (m *msgpackReader) take(n int) ([]byte, error) {
	if n < 0 || n > m.r.Len() {
		return nil, invalidPayload("not valid msgpack: a length of %d bytes is more than the %d that remain", n, m.r.Len())
	}
	at := len(m.data) - m.r.Len()
	_, _ = m.r.Seek(int64(n), io.SeekCurrent)
	return m.data[at : at+n], nil
}

func (m *msgpackReader) str() (string, error) {
	n, err := m.d.DecodeBytesLen()
	if err != nil {
		return "", notMsgpack(err)
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

func (m *msgpackReader) boolean() (bool, error) {
	b, err := m.d.DecodeBool()
	if err != nil {
		return false, notMsgpack(err)
	}
	return b, nil
}

func (m *msgpackReader) null() error {
	if err := m.d.DecodeNil(); err != nil {
		return notMsgpack(err)
	}
	return nil
}

func (m *msgpackReader) timestamp() (time.Time, error) {
	_, n, err := m.extHeader()
	if err != nil {
		return time.Time{}, notMsgpack(err)
	}
	if n != 4 && n != 8 && n != 12 || n > m.r.Len() {
		return time.Time{}, invalidPayload("not valid msgpack: a timestamp of %d bytes", n)
	}
	t, err := m.d.DecodeTime()
	if err != nil {
		return time.Time{}, notMsgpack(err)
	}
	return t, nil
}

// container reads a map or array header and checks its count: each entry takes at least one
// byte per value (two for a map entry), so a count the remaining bytes cannot hold is refused
// before anything is made for it.
func (m *msgpackReader) container(depth, max int) (n int, isMap bool, err error) {
	if depth > MaxDepth {
		return 0, false, depthError()
	}
	c, err := m.d.PeekCode()
	if err != nil {
		return 0, false, notMsgpack(err)
	}
	isMap = msgpcode.IsFixedMap(c) || c == msgpcode.Map16 || c == msgpcode.Map32
	if isMap {
		n, err = m.d.DecodeMapLen()
	} else {
		n, err = m.d.DecodeArrayLen()
	}
	if err != nil {
		return 0, false, notMsgpack(err)
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

func (m *msgpackReader) mapStart(depth, max int) error {
	n, _, err := m.container(depth, max)
	if err != nil {
		return err
	}
	m.maps = append(m.maps, n)
	return nil
}

func (m *msgpackReader) mapKey() (string, bool, error) {
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

func (m *msgpackReader) skip(depth int) error {
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
			return notMsgpack(err)
		}
		_, err = m.take(max(n, 0))
		return err
	case kindTime, kindOther:
		_, n, err := m.d.DecodeExtHeader()
		if err != nil {
			return notMsgpack(err)
		}
		_, err = m.take(n)
		return err
	}
	if err := m.d.Skip(); err != nil { // nil, a boolean or a number: at most 9 bytes
		return notMsgpack(err)
	}
	return nil
}

func (m *msgpackReader) end() error {
	if m.r.Len() > 0 {
		return invalidPayload("not valid msgpack: data after the top-level map")
	}
	return nil
}
