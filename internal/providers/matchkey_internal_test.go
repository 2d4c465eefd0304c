package providers

import (
	"encoding/json"
	"strings"
	"testing"
)

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
