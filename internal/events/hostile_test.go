package events

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"
)

// allocated is how many bytes f allocates, measured over the whole heap.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// nestedMaps is n map16 headers, each declaring 0xFFFF entries, one inside the other.
func nestedMaps(n int) []byte {
	var b []byte
	for range n {
		b = append(b, 0xde, 0xff, 0xff, 0xa1, 'k')
	}
	return b
}

// hostilePayloads are the length bombs and shapes a publisher can send: each must be refused
// as invalid_payload, having allocated a few kilobytes at most: a decoder into any would
// allocate what the declared lengths claim, up to running out of memory.
var hostilePayloads = []struct {
	name string
	data []byte
}{
	{"map16 bomb", []byte{0xde, 0xff, 0xff}},
	{"map32 bomb", []byte{0xdf, 0xff, 0xff, 0xff, 0xff}},
	{"nested map16", nestedMaps(41)},
	{"array32 in a field", append([]byte{0x81, 0xa1, 'x', 0xdd}, 0xff, 0xff, 0xff, 0xff)},
	{"str32 in a field", append([]byte{0x81, 0xa1, 'x', 0xdb}, 0x7f, 0xff, 0xff, 0xff)},
	{"str32 app_id", append([]byte{0x81, 0xa6, 'a', 'p', 'p', '_', 'i', 'd', 0xdb}, 0x7f, 0xff, 0xff, 0xff)},
	{"bin32 in a field", append([]byte{0x81, 0xa1, 'x', 0xc6}, 0x7f, 0xff, 0xff, 0xff)},
	{"ext32 in a field", append([]byte{0x81, 0xa1, 'x', 0xc9}, 0x7f, 0xff, 0xff, 0xff, 0x01)},
	{"ext32 timestamp", append([]byte{0x81, 0xac, 'f', 'o', 'l', 'l', 'o', 'w', '_', 'u', 'n', 't', 'i', 'l', 0xc9}, 0x7f, 0xff, 0xff, 0xff, 0xff)},
	{"attributes map32", append([]byte{0x81, 0xaa, 'a', 't', 't', 'r', 'i', 'b', 'u', 't', 'e', 's', 0xdf}, 0xff, 0xff, 0xff, 0xff)},
	{"deep arrays", append([]byte{0x81, 0xa1, 'x'}, bytes.Repeat([]byte{0x91}, 60000)...)},
	{"deep json", []byte(`{"x":` + strings.Repeat("[", 60000) + strings.Repeat("]", 60000) + `}`)},
	{"deep json objects", []byte(`{"x":` + strings.Repeat(`{"a":`, 10000) + `1` + strings.Repeat("}", 10000) + `}`)},
	{"wide array", append([]byte{0x81, 0xa1, 'x', 0xdc, 0x10, 0x00}, bytes.Repeat([]byte{0xc0}, 4096)...)},
	{"wide json array", []byte(`{"x":[` + strings.Repeat("0,", 4096) + `0]}`)},
	{"many fields", []byte(`{` + strings.Repeat(`"a":1,`, 100) + `"app_id":"a","order_no":"o"}`)},
}

func TestDecodeRequestRefusesLengthBombs(t *testing.T) {
	for _, tc := range hostilePayloads {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			n := allocated(func() { _, err = DecodeRequest("", tc.data) })
			var pe *PayloadError
			if !errors.As(err, &pe) || pe.Reason != ReasonInvalidPayload {
				t.Fatalf("got %v, want invalid_payload", err)
			}
			// The readers take a few hundred bytes whatever the payload, reading strings in
			// place (the refusal's message is most of it); a decoder that trusted a header
			// would take megabytes, and one that made each JSON token a value 125 KB.
			if limit := uint64(16 << 10); n > limit {
				t.Fatalf("allocated %d bytes for a %d-byte payload (limit %d): %v", n, len(tc.data), limit, err)
			}
			t.Logf("%d bytes in, %d bytes allocated: %v", len(tc.data), n, err)
		})
	}
}

func pads(n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, `"pad%d":1,`, i)
	}
	return b.String()
}

// jsonToMsgpack re-encodes a JSON object as msgpack, so one table tests both encodings.
func jsonToMsgpack(t *testing.T, body string) []byte {
	t.Helper()
	var v map[string]any
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		t.Fatal(err)
	}
	return mustMsgpack(t, v)
}

func TestDecodeRequestShapeLimits(t *testing.T) {
	nest := func(levels int) string {
		return `{"app_id":"a","order_no":"o","x":` + strings.Repeat(`[`, levels) + strings.Repeat(`]`, levels) + `}`
	}
	for _, tc := range []struct {
		name string
		body string
		ok   bool
	}{
		{"nesting at the bound", nest(MaxDepth - 1), true},
		{"nesting past the bound", nest(MaxDepth), false},
		{"fields at the bound", `{` + pads(MaxFields-2) + `"app_id":"a","order_no":"o"}`, true},
		{"fields past the bound", `{` + pads(MaxFields-1) + `"app_id":"a","order_no":"o"}`, false},
		{"elements at the bound", `{"app_id":"a","order_no":"o","x":[` + strings.Repeat(`0,`, MaxElements-1) + `0]}`, true},
		{"elements past the bound", `{"app_id":"a","order_no":"o","x":[` + strings.Repeat(`0,`, MaxElements) + `0]}`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := DecodeRequest("", []byte(tc.body))
			if (err == nil) != tc.ok {
				t.Fatalf("err %v, want ok=%v", err, tc.ok)
			}
			mp := jsonToMsgpack(t, tc.body)
			_, err = DecodeRequest("", mp)
			if (err == nil) != tc.ok {
				t.Fatalf("msgpack: err %v, want ok=%v", err, tc.ok)
			}
		})
	}
}

// TestDecodeRequestRefusesInvalidUTF8: every string field, attribute key and value, and string
// in an ignored field is refused, with the field named, so invalid UTF-8 never reaches msgpack
// events (which strict decoders would refuse whole), JSON events and the state (as U+FFFD), or
// Kudian (as a changed out_trade_no).
func TestDecodeRequestRefusesInvalidUTF8(t *testing.T) {
	bad := "o\xffo"
	for _, tc := range []struct {
		name  string
		mp    map[string]any
		json  string
		field string
	}{
		{"order_no", map[string]any{"app_id": "a", "order_no": bad}, `{"app_id":"a","order_no":"o` + "\xff" + `o"}`, "order_no"},
		{"app_id", map[string]any{"app_id": bad, "order_no": "o"}, `{"app_id":"\ud800","order_no":"o"}`, "app_id"},
		{"request_id", map[string]any{"app_id": "a", "order_no": "o", "request_id": bad}, `{"app_id":"a","order_no":"o","request_id":"\udc00x"}`, "request_id"},
		{"provider_order_no", map[string]any{"app_id": "a", "provider_order_no": bad}, `{"app_id":"a","provider_order_no":"\ud800\u0041"}`, "provider_order_no"},
		{"attribute value", map[string]any{"app_id": "a", "order_no": "o", "attributes": map[string]string{"k": bad}}, `{"app_id":"a","order_no":"o","attributes":{"k":"\ud83d"}}`, "attributes.k"},
		{"attribute key", map[string]any{"app_id": "a", "order_no": "o", "attributes": map[string]string{bad: "v"}}, `{"app_id":"a","order_no":"o","attributes":{"\udfff":"v"}}`, "attributes"},
		{"ignored field", map[string]any{"app_id": "a", "order_no": "o", "note": []string{bad}}, `{"app_id":"a","order_no":"o","note":["` + "\xc3" + `"]}`, "note"},
		{"follow_until", map[string]any{"app_id": "a", "order_no": "o", "follow_until": bad}, `{"app_id":"a","order_no":"o","follow_until":"\ud800"}`, "follow_until"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for enc, data := range map[string][]byte{"msgpack": mustMsgpack(t, tc.mp), "json": []byte(tc.json)} {
				_, err := DecodeRequest("", data)
				var pe *PayloadError
				if !errors.As(err, &pe) || pe.Reason != ReasonInvalidField || pe.Field != tc.field || !strings.Contains(pe.Msg, "UTF-8") {
					t.Fatalf("%s: got %#v (%v), want invalid_field %s about UTF-8", enc, pe, err, tc.field)
				}
			}
		})
	}
	// A surrogate pair, and text that only looks like an escape, are fine.
	req, err := DecodeRequest("", []byte(`{"app_id":"a","order_no":"\ud83d\ude00 \\ud800 订单"}`))
	if err != nil || req.OrderNo != "😀 \\ud800 订单" {
		t.Fatalf("got %q, %v", req.OrderNo, err)
	}
}

// `consumer decode` shows any message to a person: the bombs are refused there too.
func TestDecodeAnyRefusesLengthBombs(t *testing.T) {
	for _, tc := range hostilePayloads[:10] {
		var err error
		n := allocated(func() { _, err = DecodeAny("application/msgpack", tc.data) })
		if err == nil || n > 1<<20 {
			t.Fatalf("%s: err %v, %d bytes allocated", tc.name, err, n)
		}
	}
	v, err := DecodeAny("", mustMsgpack(t, map[string]any{"a": []any{1, "x", map[string]any{"b": true}}}))
	if err != nil || v == nil {
		t.Fatalf("a plain message: %v", err)
	}
	// Within the bounds, but not what the library decodes (an integer key): its error stands.
	if v, err := DecodeAny("", []byte{0x81, 0x01, 0xa1, 'a'}); err == nil {
		t.Fatalf("an integer key decoded as %#v", v)
	}
}
