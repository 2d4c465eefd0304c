package events

import (
	"encoding/json"
	"errors"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"
)

// decodeWithLibraries is DecodeRequest reading through encoding/json's Decoder and the msgpack
// library's, as it did before its readers were written by hand (libreaders_test.go).
func decodeWithLibraries(contentType string, data []byte) (Request, error) {
	enc, err := requestEncoding(contentType, data)
	if err != nil {
		return Request{}, err
	}
	if enc == JSON {
		return decodeRequest(newLibJSONReader(data))
	}
	return decodeRequest(newLibMsgpackReader(data))
}

// checkSameOutcome fails when the hand-written readers and the library readers tell data
// apart: the same request, or the same refusal (reason, field and message; for a payload that
// is not JSON or msgpack at all, the words after "not valid JSON:" are encoding/json's own and
// only the prefix must agree).
func checkSameOutcome(t *testing.T, ct string, data []byte) {
	t.Helper()
	got, err := DecodeRequest(ct, data)
	want, wantErr := decodeWithLibraries(ct, data)
	if !got.FollowUntil.Equal(want.FollowUntil) || got.FollowUntil.Location() != want.FollowUntil.Location() {
		t.Fatalf("%q % x:\nfollow_until %v, the libraries %v", ct, data, got.FollowUntil, want.FollowUntil)
	}
	got.FollowUntil, want.FollowUntil = time.Time{}, time.Time{}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%q % x:\n got %#v\nwant %#v", ct, data, got, want)
	}
	if (err == nil) != (wantErr == nil) {
		t.Fatalf("%q % x:\n got error %v\nthe libraries %v", ct, data, err, wantErr)
	}
	if err == nil {
		return
	}
	var pe, wpe *PayloadError
	if !errors.As(err, &pe) || !errors.As(wantErr, &wpe) {
		t.Fatalf("%q % x: unclassified: %v / %v", ct, data, err, wantErr)
	}
	gotMsg, wantMsg := pe.Msg, wpe.Msg
	for _, prefix := range []string{"not valid JSON:", "not valid msgpack:"} {
		if strings.HasPrefix(wantMsg, prefix) && !strings.Contains(wantMsg, "after the top-level") && !strings.Contains(wantMsg, "remain") {
			gotMsg, _, _ = strings.Cut(gotMsg, ":")
			wantMsg, _, _ = strings.Cut(wantMsg, ":")
		}
	}
	if pe.Reason != wpe.Reason || pe.Field != wpe.Field || gotMsg != wantMsg {
		t.Fatalf("%q % x:\n got %s %s %q\nwant %s %s %q", ct, data, pe.Reason, pe.Field, pe.Msg, wpe.Reason, wpe.Field, wpe.Msg)
	}
}

// readerSeeds are requests of every shape the decoder knows, valid and not.
func readerSeeds(t testing.TB) [][]byte {
	seeds := [][]byte{
		[]byte(`{"app_id":"ks707065143182458884","order_no":"1711619867139contractDemo","request_id":"r-1","attributes":{"tenant":"t1"}}`),
		[]byte(` {"app_id":"a","provider_order_no":"p","order_no":null,"attributes":null,"follow":true,"refresh":false,` +
			`"follow_until":"2026-11-25T16:00:00+08:00","x":[1,-2.5e-3,{"y":[true,null,"z"]},[]],"y":{}}` + "\n"),
		[]byte(`{"app\u005fid":"\u00e9\ud83d\ude00","order_no":"a\"b\\c\/d\b\f\n\r\t","attributes":{"\u0041":"\u2028"}}`),
		[]byte("{\r\n\t \"app_id\"\t:\r\"a\" ,\n\"order_no\" : \"o\" ,\"attributes\":{\"k\":\"a\\\"b\\\\c\\/d\\b\\f\\n\\r\\t\\u00e9\"}}\r\n"),
		[]byte(`{"app_id":"a","order_no":"\ud800"}`),
		[]byte(`{"app_id":"a","order_no":"o` + "\xff" + `"}`),
		[]byte(`{"app_id":1,"order_no":0.5e+10,"follow":-0,"refresh":"x","follow_until":5,"attributes":[1]}`),
		[]byte(`{"a":1x}`), []byte(`{"app_id":truex,"order_no":"o"}`), []byte(`{"a" 1}`), []byte(`{"a":1,}`), []byte(`{"a":[1,]}`),
		[]byte(`{"a":01}`), []byte(`{"a":1.}`), []byte(`{"a":-}`), []byte(`{"a":1e}`), []byte(`{"a":"\x"}`), []byte(`{"a":"\u12"}`),
		[]byte(`{"app_id":"a","order_no":"o"} {}`), []byte(`{"app_id":"a","order_no":"o"}x`), []byte(`{1:2}`), []byte(`{,}`),
		[]byte(`{"a":tru}`), []byte(`{"a":nul`), []byte(`{"a":"` + "\x01" + `"}`), []byte(`{"a"`), []byte(`{"a":`), []byte(`{`),
		mustMsgpack(t, map[string]any{"app_id": "a", "order_no": "o", "request_id": "r", "attributes": map[string]string{"k": "v"},
			"follow": true, "refresh": false, "follow_until": time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC), "provider_order_no": nil}),
		mustMsgpack(t, map[string]any{"app_id": "a", "order_no": "o", "x": []any{int64(-1), uint64(1 << 40), 1.5, float32(2), []byte("b"), map[string]any{"k": nil}},
			"follow_until": "2026-01-02T03:04:05Z"}),
		mustMsgpack(t, map[string]any{"app_id": []byte("a"), "order_no": 5, "attributes": map[string]any{"k": 1}}),
		[]byte("\x81\xa6app_id\xd6\xff\x00\x00\x00\x01"),                                                          // fixext4 timestamp
		[]byte("\x82\xa6app_id\xa1a\xacfollow_until\xd7\xff\x00\x00\x00\x04\x00\x00\x00\x01"),                     // fixext8 timestamp
		[]byte("\x82\xa6app_id\xa1a\xacfollow_until\xc7\x0c\xff\x00\x00\x00\x07\x00\x00\x00\x00\x00\x00\x00\x01"), // ext8 timestamp
		[]byte("\x82\xa6app_id\xa1a\xa1x\xd5\x05\x00\x00"),                                                        // fixext2 of another type
		[]byte("\x82\xa6app_id\xa1a\xa1x\xc1"),                                                                    // an unused code
		[]byte("\x82\x01\xa1a\xa1x\xc0"),                                                                          // an int key
		[]byte("\x83\xa6app_id\xa1a\xa8order_no\xa1o\xa1x\xcb\x00"),                                               // a double cut short
	}
	for _, h := range hostilePayloads {
		seeds = append(seeds, h.data)
	}
	for _, tc := range truncatedMsgpack {
		seeds = append(seeds, tc.data)
	}
	return seeds
}

// jsonPieces and msgpackPieces are what random payloads are strung together from.
var jsonPieces = []string{"{", "}", "[", "]", ":", ",", " ", "\n", "\r", "\t", `"app_id"`, `"order_no"`, `"provider_order_no"`, `"attributes"`,
	`"follow_until"`, `"follow"`, `"refresh"`, `"request_id"`, `"a"`, `"\u00e9"`, `"\ud83d\ude00"`, `"\ud800"`, `"\udc00"`, `"\x"`,
	`"\u12g4"`, `"` + "\xff" + `"`, `"` + "\x01" + `"`, `"2026-01-02T03:04:05Z"`, `"a\nb"`, "1", "-0", "1.5e3", "01", "1.", "-", "2E+", "0.0e-0",
	"true", "tru", "false", "null", "nul", "x", `"`, `\`, "\xef\xbb\xbf"}

var msgpackPieces = []string{"\x80", "\x81", "\x82", "\x8f", "\x90", "\x91", "\x9f", "\xde\x00\x02", "\xde\xff\xff", "\xdf\x00\x00\x00\x01",
	"\xdc\x00\x01", "\xdd\xff\xff\xff\xff", "\xa6app_id", "\xa8order_no", "\xaaattributes", "\xacfollow_until", "\xa6follow",
	"\xa1a", "\xa0", "\xa2\xc3\x28", "\xd9\x01a", "\xda\x00\x01a", "\xdb\x00\x00\x00\x01a", "\xd9\xff", "\xc4\x01b", "\xc5\x00\x01b",
	"\xc6\xff\xff\xff\xff", "\xc0", "\xc2", "\xc3", "\x05", "\xe0", "\xca\x00\x00\x00\x00", "\xcb\x00\x00\x00\x00\x00\x00\x00\x00",
	"\xcc\x01", "\xd1\x00\x01", "\xd3\x00\x00\x00\x00\x00\x00\x00\x01", "\xd6\xff\x00\x00\x00\x01", "\xd7\xff", "\xd4\x01\x00",
	"\xc7\x01\x02\x00", "\xc7\x0c\xff", "\xc8\x00\x04\xff\x00\x00\x00\x01", "\xc9\xff\xff\xff\xff\xff", "\xc1"}

// requestFields are the names a random request's fields take.
var requestFields = []string{"app_id", "order_no", "provider_order_no", "request_id", "refresh", "follow", "follow_until", "attributes", "x", "é"}

// randomValue is a value of any kind a payload can hold, up to depth levels deep.
func randomValue(r *rand.Rand, depth int) any {
	switch r.IntN(11) {
	case 0:
		return nil
	case 1:
		return r.IntN(2) == 0
	case 2:
		return r.Int64N(1<<40) - 1<<39
	case 3:
		return r.NormFloat64()
	case 4:
		return time.Unix(r.Int64N(1<<35), r.Int64N(2e9)).UTC()
	case 5:
		return []byte("bin")
	case 6, 7:
		if depth > 0 {
			m := map[string]any{}
			for range r.IntN(4) {
				m[requestFields[r.IntN(len(requestFields))]] = randomValue(r, depth-1)
			}
			return m
		}
	case 8:
		if depth > 0 {
			l := make([]any, r.IntN(4))
			for i := range l {
				l[i] = randomValue(r, depth-1)
			}
			return l
		}
	}
	return []string{"a", "ks707065143182458884", "2026-01-02T03:04:05Z", "é\n", "", "a\x01", "😀\xff"}[r.IntN(7)]
}

// randomRequest is a request of random fields of random kinds, in either encoding.
func randomRequest(t testing.TB, r *rand.Rand) []byte {
	m := map[string]any{}
	for range r.IntN(9) {
		v := randomValue(r, 3)
		if r.IntN(3) > 0 {
			v = []any{"a", "o-1", true, map[string]any{"k": "v"}}[r.IntN(4)]
		}
		m[requestFields[r.IntN(len(requestFields))]] = v
	}
	if r.IntN(2) == 0 {
		return mustMsgpack(t, m)
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// randomPayload is a random request or seed, mutated a few times, or pieces strung together.
func randomPayload(t testing.TB, r *rand.Rand, seeds [][]byte) []byte {
	if r.IntN(4) == 0 {
		pieces, b := jsonPieces, []byte("{")
		if r.IntN(2) == 0 {
			pieces, b = msgpackPieces, []byte{byte(0x80 + r.IntN(16))}
		}
		for range r.IntN(24) {
			b = append(b, pieces[r.IntN(len(pieces))]...)
		}
		return b
	}
	seed := seeds[r.IntN(len(seeds))]
	if r.IntN(2) == 0 {
		seed = randomRequest(t, r)
	}
	if len(seed) > 4096 {
		seed = seed[:4096+r.IntN(64)]
	}
	b := append([]byte(nil), seed...)
	for range r.IntN(3) {
		i := 0
		if len(b) > 0 {
			i = r.IntN(len(b))
		}
		switch r.IntN(5) {
		case 0:
			if len(b) > 0 {
				b[i] = byte(r.IntN(256))
			}
		case 1:
			if len(b) > 0 {
				b = append(b[:i], b[i+1:]...)
			}
		case 2:
			b = b[:i]
		case 3:
			p := jsonPieces[r.IntN(len(jsonPieces))]
			if r.IntN(2) == 0 {
				p = msgpackPieces[r.IntN(len(msgpackPieces))]
			}
			b = append(b[:i], append([]byte(p), b[i:]...)...)
		default:
			if len(b) > 0 {
				b[i] ^= 1 << r.IntN(8)
			}
		}
	}
	return b
}

// The hand-written readers read every payload as the library readers did: valid and broken
// requests of both encodings, and a hundred thousand random ones made from them.
func TestReadersAgreeWithLibraryReaders(t *testing.T) {
	seeds := readerSeeds(t)
	for _, s := range seeds {
		for _, ct := range []string{"", ContentTypeJSON, ContentTypeMsgpack} {
			checkSameOutcome(t, ct, s)
		}
	}
	n := 100000
	if testing.Short() {
		n = 10000
	}
	r := rand.New(rand.NewPCG(7, 8))
	for range n {
		checkSameOutcome(t, "", randomPayload(t, r, seeds))
	}
}

// FuzzReadersAgreeWithLibraryReaders is the same comparison for go test -fuzz.
func FuzzReadersAgreeWithLibraryReaders(f *testing.F) {
	for _, s := range readerSeeds(f) {
		f.Add("", s)
	}
	f.Fuzz(func(t *testing.T, ct string, data []byte) {
		checkSameOutcome(t, ct, data)
	})
}
