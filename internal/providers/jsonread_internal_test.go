package providers

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"
)

// validUTF8 is utf8.Valid, for either kind of text.
func FuzzValidUTF8(f *testing.F) {
	for _, s := range []string{"", "ascii", "会员", "\xff", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xf0\x9f\x98\x80", "\xe0\x80\xaf", "\xc3", "\xc0\xaf", "a\xe4\xbd"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := validUTF8(s), utf8.ValidString(s); got != want || validUTF8([]byte(s)) != want {
			t.Fatalf("%q: %v, want %v", s, got, want)
		}
	})
}

// answerFields is an answer as encoding/json reads one into a struct.
type answerFields struct {
	Result  any `json:"result"`
	Msg     any `json:"error_msg"`
	Payment any `json:"payment_info"`
}

// matchKey never matches a key to another field than encoding/json does, nor to none where
// encoding/json matches one (in any case, by Unicode folding): such keys it leaves to
// encoding/json.
func FuzzMatchKey(f *testing.F) {
	for _, k := range []string{"result", "RESULT", "Result", "error_msg", "ERROR_msg", "payment_info", "paymentinfo", "reſult", "ıd",
		"payment_\u212anfo", "resulT ", "", "x", "结果"} {
		f.Add(k)
	}
	f.Fuzz(func(t *testing.T, key string) {
		if strings.ContainsAny(key, "\"\\") || strings.ContainsFunc(key, func(r rune) bool { return r < 0x20 }) {
			return // Object refuses keys with escapes
		}
		var got answerFields
		if err := json.Unmarshal([]byte(`{"`+key+`":1}`), &got); err != nil {
			return
		}
		want := -1
		for i, v := range []any{got.Result, got.Msg, got.Payment} {
			if v != nil {
				want = i
			}
		}
		if i, ok := matchKey(key, []string{"result", "error_msg", "payment_info"}); ok && i != want {
			t.Fatalf("%q: matchKey %d, encoding/json %d", key, i, want)
		}
	})
}
