package events

import (
	"errors"
	"fmt"
	"testing"
)

// truncatedMsgpack are msgpack requests whose last value declares more bytes (or entries) than
// remain, after a prefix already read: each length must be checked against the bytes left, not
// against the whole payload. Checked against the whole payload, "str8 past the end" (hex 81 a1
// 78 d9 05 61 62) sliced the payload beyond its end and panicked with "slice bounds out of range".
var truncatedMsgpack = []struct {
	name string
	data []byte
}{
	{"str8 past the end", []byte{0x81, 0xa1, 'x', 0xd9, 0x05, 'a', 'b'}},
	{"str16 past the end", []byte{0x81, 0xa1, 'x', 0xda, 0x00, 0x08, 'a', 'b'}},
	{"str8 app_id past the end", []byte{0x81, 0xa6, 'a', 'p', 'p', '_', 'i', 'd', 0xd9, 0x0a, 'a'}},
	{"str8 key past the end", []byte{0x82, 0xa6, 'a', 'p', 'p', '_', 'i', 'd', 0xa1, 'a', 0xd9, 0x05, 'o'}},
	{"bin8 past the end", []byte{0x81, 0xa1, 'x', 0xc4, 0x05, 'a', 'b'}},
	{"bin16 past the end", []byte{0x81, 0xa1, 'x', 0xc5, 0x00, 0x07, 'a', 'b'}},
	{"ext8 past the end", []byte{0x81, 0xa1, 'x', 0xc7, 0x05, 0x01, 'a'}},
	{"str8 in an array past the end", []byte{0x81, 0xa1, 'x', 0x92, 0xd9, 0x05, 'a'}},
	{"str8 in a map past the end", []byte{0x81, 0xa1, 'x', 0x81, 0xa1, 'k', 0xd9, 0x04, 'a'}},
	{"str8 attribute past the end", []byte{0x81, 0xaa, 'a', 't', 't', 'r', 'i', 'b', 'u', 't', 'e', 's', 0x81, 0xa1, 'k', 0xd9, 0x0c, 'v'}},
	{"array16 past the end", []byte{0x81, 0xa1, 'x', 0xdc, 0x00, 0x08, 0xc0, 0xc0}},
	{"map16 past the end", []byte{0x81, 0xa1, 'x', 0xde, 0x00, 0x05, 0xa1, 'k', 0xc0}},
	{"fixarray past the end", []byte{0x81, 0xa1, 'x', 0x95, 0xc0}},
	{"fixmap past the end", []byte{0x82, 0xa1, 'x', 0xc0, 0xa1, 'y', 0x83, 0xa1, 'k'}},
}

// A declared length past the end, after some bytes were read, is refused as invalid_payload;
// it never panics.
func TestDecodeRequestRefusesLengthsPastTheEnd(t *testing.T) {
	for _, tc := range truncatedMsgpack {
		t.Run(tc.name, func(t *testing.T) {
			_, err := decodeNoPanic(tc.data)
			var pe *PayloadError
			if !errors.As(err, &pe) || pe.Reason != ReasonInvalidPayload {
				t.Fatalf("% x: got %v, want invalid_payload", tc.data, err)
			}
			t.Logf("% x: %v", tc.data, err)
		})
	}
}

// decodeNoPanic is DecodeRequest of a msgpack payload, with a panic turned into an error.
func decodeNoPanic(data []byte) (req Request, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panicked: %v", p)
		}
	}()
	return DecodeRequest(ContentTypeMsgpack, data)
}
