package kvkey

import (
	"regexp"
	"testing"
)

var validKey = regexp.MustCompile(`^[-/_=\.a-zA-Z0-9]+$`)

func TestJoin(t *testing.T) {
	for _, tc := range []struct {
		parts []string
		want  string
	}{
		{[]string{"kuaishou", "payment", "ks707065143182458884", "1711619867139contractDemo"}, "kuaishou.payment.ks707065143182458884.1711619867139contractDemo"},
		{[]string{"kuaishou", "a*b"}, "kuaishou.=YSpi"},
		{[]string{"x", "a.b"}, "x.=YS5i"},
		{[]string{"x", ""}, "x.="},
		{[]string{"x", "订单"}, "x.=6K6i5Y2V"},
	} {
		if got := Join(tc.parts...); got != tc.want || !validKey.MatchString(got) {
			t.Errorf("%q -> %q, want %q", tc.parts, got, tc.want)
		}
	}
	if Token("=YSpi") == Token("a*b") {
		t.Fatal("an encoded token collides with a plain one")
	}
}

func FuzzToken(f *testing.F) {
	f.Add("1711619867139contractDemo")
	f.Add("a.b*c")
	f.Fuzz(func(t *testing.T, s string) {
		if k := Token(s); !validKey.MatchString(k) {
			t.Fatalf("%q -> invalid key %q", s, k)
		}
		if got := Text(Token(s)); got != s {
			t.Fatalf("%q -> %q -> %q", s, Token(s), got)
		}
	})
}
