package providers_test

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/paystatus/orderstatus/internal/providers"
	"github.com/paystatus/orderstatus/internal/providers/providertest"
)

// readerTexts are JSON texts of the kinds providers send, and of the kinds they should not.
var readerTexts = []string{
	`{"total_amount": 1200, "pay_status": "SUCCESS", "pay_time": 1712753202906, "pay_channel": "WECHAT", "out_order_no": "1637808229728demo",
	  "extra_info":"{\"url\":\"\",\"item_type\":\"VIDEO\",\"item_id\":\"5239375269605736845\",\"author_id\":\"123\"}", "enable_promotion": true}`,
	`{"attach":"","discount_info":{"kd_discount_fee":0,"m_discount_fee":0},"fee":100,"member_name":"Janus","pay_time":"2020-10-13 11:00","payment":"会员钱包支付","status":"PAYED_SUCC"}`,
	`{"a":[],"b":{},"c":[1,-1,0.25,1e400,-0,1E+2,12345678901234567890123,{"d":null}],"e":"\u00e9\t\"\\\/\b\f\n\r","f":false,"":1,"a":2}`,
	`{"s":"\ud83d\ude00","t":"\ud800","u":"\u0000","k\u0065y":1}`,
	"{\"bad\":\"\xff\",\"k\xfe\":1,\"ok\":\"\xe4\xbd\xa0\"}",
	`  [1, "x", {"y": [true, null]}]  trailing`, `"text"`, `12.5e-3`, `null`, `true`, ``, ` `, `{`, `{"a":1,}`, `[1,]`, `{"a" 1}`,
	`{"a":01}`, `{"a":1.}`, `{"a":.5}`, `{"a":+1}`, `{"a":tru}`, `{"a":"x` + "\x01" + `"}`, `{"a":"\x"}`, `{"a":"\u12"}`,
	`{"a":1}{"b":2}`, "{}\x00", `{"deep":` + strings.Repeat("[", 1500) + strings.Repeat("]", 1500) + `}`,
}

// decodeAny is encoding/json's reading of text into any, with UseNumber.
func decodeAny(text string) (any, error) {
	d := json.NewDecoder(strings.NewReader(text))
	d.UseNumber()
	var v any
	err := d.Decode(&v)
	return v, err
}

// readerAgrees fails t where JSONReader reads text otherwise than encoding/json: a value it
// reads must be encoding/json's to the last type, and it may refuse anything, never accept
// what encoding/json refuses.
func readerAgrees(t *testing.T, text string) {
	t.Helper()
	want, wantErr := decodeAny(text)
	for _, kind := range []string{"string", "bytes"} {
		var got any
		var ok bool
		if kind == "string" {
			r := providers.NewJSONReader(text, providers.NewNames("pay_status", "a"))
			got, ok = r.Value()
		} else {
			r := providers.NewJSONReader([]byte(text), nil)
			got, ok = r.Value()
		}
		switch {
		case ok && wantErr != nil:
			t.Fatalf("%q as %s: read %#v, encoding/json: %v", text, kind, got, wantErr)
		case ok && !reflect.DeepEqual(got, want):
			t.Fatalf("%q as %s: read %#v, encoding/json %#v", text, kind, got, want)
		}
	}
}

// oldParseJSONObject is ParseJSONObject before the one-pass reader.
func oldParseJSONObject(s string) (map[string]any, bool) {
	if len(s) == 0 || s[0] != '{' {
		return nil, false
	}
	v, err := providers.DetailValue(json.RawMessage(s))
	if err != nil {
		return nil, false
	}
	m, ok := v.(map[string]any)
	return m, ok
}

// sameAsBefore fails t unless Record and ParseJSONObject give for text what they gave with
// encoding/json alone, errors to the letter.
func sameAsBefore(t *testing.T, text string) {
	t.Helper()
	names := providers.NewNames("pay_status", "a", "url")
	want, wantErr := providertest.RecordByEncodingJSON([]byte(text))
	for _, kind := range []string{"string", "bytes"} {
		var got providers.Fields
		var err error
		if kind == "string" {
			got, err = providers.Record(text, names)
		} else {
			got, err = providers.Record([]byte(text), names)
		}
		if fmt.Sprint(err) != fmt.Sprint(wantErr) || !reflect.DeepEqual(got, want) {
			t.Fatalf("Record(%q) as %s: %#v, %v; before: %#v, %v", text, kind, got, err, want, wantErr)
		}
	}
	got, ok := providers.ParseJSONObject(text, names)
	if want, wantOK := oldParseJSONObject(text); ok != wantOK || !reflect.DeepEqual(got, want) {
		t.Fatalf("ParseJSONObject(%q): %#v, %v; before: %#v, %v", text, got, ok, want, wantOK)
	}
}

// JSONReader reads as encoding/json does, or leaves the text to it; Record and ParseJSONObject,
// which read with it first, give what they gave before it: over texts of every kind and random
// mutations of them.
func TestJSONReaderSameAsEncodingJSON(t *testing.T) {
	var seeds [][]byte
	for _, text := range readerTexts {
		seeds = append(seeds, []byte(text))
	}
	providertest.CheckMutations(t, seeds, 200, func(text []byte) {
		readerAgrees(t, string(text))
		sameAsBefore(t, string(text))
	})
}

func FuzzJSONReader(f *testing.F) {
	for _, text := range readerTexts {
		f.Add(text)
	}
	f.Fuzz(func(t *testing.T, text string) {
		readerAgrees(t, text)
		sameAsBefore(t, text)
	})
}
