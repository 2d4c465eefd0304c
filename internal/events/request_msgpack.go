package events

import (
	"encoding/binary"
	"sync"
	"time"
	"unicode/utf8"
)

// msgpackReader reads a msgpack payload header by header, in place: every length is checked
// against the bytes that remain before anything is made for it, strings are copied out of the
// payload only when kept (a field's name is not), and nothing is skipped recursively without
// the nesting bound.
type msgpackReader struct {
	data []byte
	pos  int // the next byte to read
	// maps holds the entries left in each map entered; nesting is bounded (MaxDepth) before it
	// grows.
	maps  [MaxDepth]int
	nmaps int
}

var msgpackReaders = sync.Pool{New: func() any { return new(msgpackReader) }}

func newMsgpackReader(data []byte) *msgpackReader {
	m := msgpackReaders.Get().(*msgpackReader)
	*m = msgpackReader{data: data}
	return m
}

// release gives m back for another payload.
func (m *msgpackReader) release() {
	m.data = nil
	msgpackReaders.Put(m)
}

func msgpackEnd() error { return invalidPayload("not valid msgpack: unexpected end of data") }

// Msgpack's type codes (the format's specification).
const (
	mpNil      = 0xc0
	mpFalse    = 0xc2
	mpTrue     = 0xc3
	mpBin8     = 0xc4
	mpBin16    = 0xc5
	mpBin32    = 0xc6
	mpExt8     = 0xc7
	mpExt16    = 0xc8
	mpExt32    = 0xc9
	mpFloat    = 0xca
	mpInt64    = 0xd3
	mpFixExt1  = 0xd4
	mpFixExt16 = 0xd8
	mpStr8     = 0xd9
	mpStr16    = 0xda
	mpStr32    = 0xdb
	mpArray16  = 0xdc
	mpArray32  = 0xdd
	mpMap16    = 0xde
	mpMap32    = 0xdf
)

// timestampExt is the extension type of msgpack's timestamps.
const timestampExt = -1

func (m *msgpackReader) peekCode() (byte, error) {
	if m.pos >= len(m.data) {
		return 0, msgpackEnd()
	}
	return m.data[m.pos], nil
}

func (m *msgpackReader) peek() (kind, error) {
	c, err := m.peekCode()
	if err != nil {
		return 0, err
	}
	switch {
	case c == mpNil:
		return kindNull, nil
	case c == mpTrue || c == mpFalse:
		return kindBool, nil
	case c <= 0x7f || c >= 0xe0, c >= mpFloat && c <= mpInt64:
		return kindNumber, nil
	case c >= 0xa0 && c <= 0xbf, c >= mpStr8 && c <= mpStr32:
		return kindString, nil
	case c >= mpBin8 && c <= mpBin32:
		return kindBinary, nil
	case c >= 0x80 && c <= 0x8f, c == mpMap16, c == mpMap32:
		return kindObject, nil
	case c >= 0x90 && c <= 0x9f, c == mpArray16, c == mpArray32:
		return kindArray, nil
	case c >= mpExt8 && c <= mpExt32, c >= mpFixExt1 && c <= mpFixExt16:
		at := m.pos
		id, _, err := m.extHeader()
		m.pos = at
		if err == nil && id == timestampExt {
			return kindTime, nil
		}
		return kindOther, nil
	}
	return 0, invalidPayload("not valid msgpack: unknown code 0x%02x", c)
}

// uint reads a big-endian unsigned integer of n bytes (1, 2 or 4).
func (m *msgpackReader) uint(n int) (int, error) {
	if n > len(m.data)-m.pos {
		return 0, msgpackEnd()
	}
	b := m.data[m.pos : m.pos+n]
	m.pos += n
	switch n {
	case 1:
		return int(b[0]), nil
	case 2:
		return int(binary.BigEndian.Uint16(b)), nil
	}
	return int(binary.BigEndian.Uint32(b)), nil
}

// extHeader reads an extension's header: its type and the length of its data.
func (m *msgpackReader) extHeader() (id int8, n int, err error) {
	c := m.data[m.pos]
	m.pos++
	switch {
	case c >= mpFixExt1 && c <= mpFixExt16:
		n = 1 << (c - mpFixExt1)
	default:
		n, err = m.uint(1 << (c - mpExt8))
	}
	if err != nil {
		return 0, 0, err
	}
	if m.pos >= len(m.data) {
		return 0, 0, msgpackEnd()
	}
	id = int8(m.data[m.pos])
	m.pos++
	return id, n, nil
}

// take returns the next n bytes of the payload, refusing a length the payload cannot hold.
func (m *msgpackReader) take(n int) ([]byte, error) {
	if left := len(m.data) - m.pos; n > left {
		return nil, invalidPayload("not valid msgpack: a length of %d bytes is more than the %d that remain", n, left)
	}
	m.pos += n
	return m.data[m.pos-n : m.pos], nil
}

// bytesLen reads the header of a string or binary value: the length of its data.
func (m *msgpackReader) bytesLen() (int, error) {
	c := m.data[m.pos]
	m.pos++
	switch {
	case c >= 0xa0 && c <= 0xbf:
		return int(c & 0x1f), nil
	case c >= mpStr8 && c <= mpStr32:
		return m.uint(1 << (c - mpStr8))
	}
	return m.uint(1 << (c - mpBin8)) // bin8, bin16, bin32: peek told it
}

// text reads the string that comes next, checked for UTF-8.
func (m *msgpackReader) text() ([]byte, error) {
	n, err := m.bytesLen()
	if err != nil {
		return nil, err
	}
	b, err := m.take(n)
	if err != nil {
		return nil, err
	}
	if !utf8.Valid(b) {
		return nil, errNotUTF8
	}
	return b, nil
}

func (m *msgpackReader) str() (string, error) {
	b, err := m.text()
	return string(b), err
}

func (m *msgpackReader) boolean() (bool, error) {
	c := m.data[m.pos] // peek told it
	m.pos++
	return c == mpTrue, nil
}

func (m *msgpackReader) null() error {
	m.pos++ // peek told it
	return nil
}

func (m *msgpackReader) timestamp() (time.Time, error) {
	_, n, err := m.extHeader()
	if err != nil {
		return time.Time{}, err
	}
	if n != 4 && n != 8 && n != 12 || n > len(m.data)-m.pos {
		return time.Time{}, invalidPayload("not valid msgpack: a timestamp of %d bytes", n)
	}
	b, _ := m.take(n)
	var t time.Time
	switch n {
	case 4:
		t = time.Unix(int64(binary.BigEndian.Uint32(b)), 0)
	case 8:
		v := binary.BigEndian.Uint64(b)
		t = time.Unix(int64(v&(1<<34-1)), int64(v>>34))
	default:
		t = time.Unix(int64(binary.BigEndian.Uint64(b[4:])), int64(binary.BigEndian.Uint32(b)))
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
	c := m.data[m.pos] // peek told it
	m.pos++
	switch {
	case c >= 0x80 && c <= 0x8f:
		n, isMap = int(c&0x0f), true
	case c >= 0x90 && c <= 0x9f:
		n = int(c & 0x0f)
	case c == mpMap16 || c == mpMap32:
		n, err = m.uint(2 << (c - mpMap16))
		isMap = true
	default: // array16, array32
		n, err = m.uint(2 << (c - mpArray16))
	}
	if err != nil {
		return 0, false, err
	}
	per := 1
	if isMap {
		per = 2
	}
	if left := len(m.data) - m.pos; n > left/per {
		return 0, false, invalidPayload("not valid msgpack: %d entries declared, but only %d bytes remain", n, left)
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
	m.maps[m.nmaps] = n
	m.nmaps++
	return nil
}

func (m *msgpackReader) mapKey() (string, bool, error) {
	top := m.nmaps - 1
	if m.maps[top] == 0 {
		m.nmaps--
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
	b, err := m.text()
	if err != nil {
		return "", false, err
	}
	return fieldName(b), true, nil
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
		_, err := m.text()
		return err
	case kindBinary:
		n, err := m.bytesLen()
		if err != nil {
			return err
		}
		_, err = m.take(n)
		return err
	case kindTime, kindOther:
		_, n, err := m.extHeader()
		if err != nil {
			return err
		}
		_, err = m.take(n)
		return err
	}
	// nil, a boolean or a number: the code, and up to 8 bytes after it
	c := m.data[m.pos]
	size := 0
	switch {
	case c == mpFloat:
		size = 4
	case c > mpFloat && c <= mpInt64: // double, uint8..64, int8..64
		size = [...]int{8, 1, 2, 4, 8, 1, 2, 4, 8}[c-mpFloat-1]
	}
	if _, err := m.take(1 + size); err != nil {
		return msgpackEnd()
	}
	return nil
}

func (m *msgpackReader) end() error {
	if m.pos < len(m.data) {
		return invalidPayload("not valid msgpack: data after the top-level map")
	}
	return nil
}
