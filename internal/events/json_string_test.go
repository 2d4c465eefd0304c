package events

import (
	"encoding/json"
	"testing"
)

// AppendJSONString writes any text, valid UTF-8 or not, string or bytes, as encoding/json does.
func FuzzAppendJSONString(f *testing.F) {
	for _, s := range []string{"", "1711619867139contractDemo", `{"pay_no":"6002","is_fresh":false}`, `<a href="x">&amp;</a>`,
		"会员\u2028\u2029\t\x00\x1f\x7f\"\\/", "\xff\xfe\xed\xa0\x80"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want, _ := json.Marshal(s)
		if got := AppendJSONString([]byte("x"), s); string(got) != "x"+string(want) {
			t.Fatalf("%q: %s, want %s", s, got[1:], want)
		}
		if got := AppendJSONString(nil, []byte(s)); string(got) != string(want) {
			t.Fatalf("%q as bytes: %s, want %s", s, got, want)
		}
	})
}
