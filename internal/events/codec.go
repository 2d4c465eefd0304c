package events

import (
	"bytes"
	"encoding/json"
	"fmt"
	"mime"
	"sync"

	"github.com/vmihailenco/msgpack/v5"
)

// Encoding is a wire encoding of payloads.
type Encoding string

// The two encodings of CONTRACT.md sections 2 and 3.
const (
	JSON    Encoding = "json"
	Msgpack Encoding = "msgpack"
)

// Content types of the two encodings.
const (
	ContentTypeJSON    = "application/json"
	ContentTypeMsgpack = "application/msgpack"
)

// ContentType is the Content-Type header value for e.
func (e Encoding) ContentType() string {
	if e == JSON {
		return ContentTypeJSON
	}
	return ContentTypeMsgpack
}

// Marshal encodes v (a StatusEvent or a pointer to one, usually) in e. The bytes returned are
// the caller's alone: they may be held by a publish until the server answers.
func (e Encoding) Marshal(v any) ([]byte, error) {
	if e != JSON && e != Msgpack {
		return nil, fmt.Errorf("events: unknown encoding %q", string(e))
	}
	ev, _ := v.(*StatusEvent)
	if t, ok := v.(StatusEvent); ok {
		ev = &t
	}
	if e == JSON && ev == nil {
		return json.Marshal(v)
	}
	buf := scratch.Get().(*bytes.Buffer)
	defer func() {
		if buf.Cap() <= MaxRequestSize { // a rare large event's buffer is not kept
			scratch.Put(buf)
		}
	}()
	buf.Reset()
	if e == JSON {
		b, ok := ev.AppendJSON(buf.AvailableBuffer())
		if !ok {
			return json.Marshal(v)
		}
		buf.Write(b) // keeps the space for the next event when b outgrew it
		return bytes.Clone(b), nil
	}
	enc := msgpack.GetEncoder()
	enc.Reset(buf)
	var err error
	if ev != nil {
		err = encodeMsgpack(enc, ev)
	} else {
		err = enc.Encode(v)
	}
	msgpack.PutEncoder(enc)
	if err != nil {
		return nil, err
	}
	return bytes.Clone(buf.Bytes()), nil
}

// scratch holds the buffers encodings are written into before being copied out at their size.
var scratch = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// Detect tells the encoding of a payload from its Content-Type header or, when that is empty,
// from its first byte: '{' (after white space) is JSON, a msgpack map header is msgpack.
func Detect(contentType string, data []byte) (Encoding, error) {
	if contentType != "" {
		mt, _, err := mime.ParseMediaType(contentType)
		if err != nil {
			return "", fmt.Errorf("unreadable Content-Type %q", contentType)
		}
		switch mt {
		case ContentTypeJSON, "text/json":
			return JSON, nil
		case ContentTypeMsgpack, "application/x-msgpack", "application/vnd.msgpack":
			return Msgpack, nil
		}
		return "", fmt.Errorf("unsupported Content-Type %q (want %s or %s)", contentType, ContentTypeJSON, ContentTypeMsgpack)
	}
	trimmed := bytes.TrimLeft(data, " \t\r\n")
	if len(trimmed) == 0 {
		return "", fmt.Errorf("empty payload")
	}
	switch b := trimmed[0]; {
	case b == '{':
		return JSON, nil
	case b >= 0x80 && b <= 0x8f, b == 0xde, b == 0xdf: // fixmap, map16, map32
		return Msgpack, nil
	}
	return "", fmt.Errorf("payload is neither a JSON object nor a msgpack map (first byte 0x%02x)", data[0])
}

// DecodeEvent decodes a status event in either encoding, told apart as Detect does.
func DecodeEvent(contentType string, data []byte) (StatusEvent, error) {
	var ev StatusEvent
	enc, err := Detect(contentType, data)
	if err != nil {
		return ev, err
	}
	if enc == JSON {
		err = json.Unmarshal(data, &ev)
	} else {
		err = msgpack.Unmarshal(data, &ev)
	}
	return ev, err
}

// DecodeAny decodes any payload (request, event or dead letter body) into generic values, for
// tools that show a message to a person.
func DecodeAny(contentType string, data []byte) (any, error) {
	enc, err := Detect(contentType, data)
	if err != nil {
		return nil, err
	}
	var v any
	if enc == JSON {
		d := json.NewDecoder(bytes.NewReader(data))
		d.UseNumber()
		err = d.Decode(&v)
	} else {
		// Checked with the request decoder's bounds first: msgpack.Unmarshal allocates what a
		// header declares, and a few bytes can declare gigabytes.
		r := newMsgpackReader(data)
		err = r.skip(1)
		if err == nil {
			err = r.end()
		}
		r.release()
		if err != nil {
			return nil, err
		}
		err = msgpack.Unmarshal(data, &v)
	}
	return v, err
}
