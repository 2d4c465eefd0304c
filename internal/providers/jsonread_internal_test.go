package providers

import (
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
