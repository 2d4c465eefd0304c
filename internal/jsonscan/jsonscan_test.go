package jsonscan

import (
	"encoding/json"
	"errors"
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

// Skip accepts what encoding/json's scanner accepts, less strings that are not UTF-8 and
// nesting deeper than its bound; Message says of a refused string, number or literal what
// encoding/json says.
func FuzzSkip(f *testing.F) {
	for _, s := range []string{`{"a":[1,-0.5e+3,true,false,null,"\u00e9\ud83d\ude00\n"],"b":{}}`, `[]`, `"x`, `"\x"`, `"\u12g4"`, "\"\x01\"",
		`-`, `01`, `1.`, `1e`, `1e+`, `tru`, `nul`, `fals`, `[1,]`, `{"a" 1}`, `{"a":1,}`, `[[[[[[[[[[1]]]]]]]]]]`, "\"\xff\"", ` 1 `, `1 2`,
		`"\'"`, `"\u00E9"`, `-x`, `1.x`, `1e+x`, `trux`, `nulL`, `fa1se`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		end, ok := Skip(s, 0, 8)
		if ok {
			end = Space(s, end)
		}
		accepted := ok && end == len(s)
		valid := json.Valid([]byte(s))
		deep := strings.Count(s, "[")+strings.Count(s, "{") > 8
		if accepted && !valid || !accepted && valid && utf8.ValidString(s) && !deep {
			t.Fatalf("%q: Skip %v, encoding/json %v", s, accepted, valid)
		}
		if len(s) == 0 {
			return
		}
		var e Error
		switch c := s[0]; {
		case c == '"':
			_, _, e = String(s, 0)
		case c == '-' || c >= '0' && c <= '9':
			_, e = Number(s, 0)
		case c == 't' || c == 'f' || c == 'n':
			_, e = Literal(s, 0)
		default:
			return
		}
		var v any
		err := json.Unmarshal([]byte(s), &v)
		var syntax *json.SyntaxError
		switch {
		case e.Kind == 0:
			return
		case e.Pos >= len(s): // Unmarshal words the end of its input otherwise than Decoder.Token
			if err == nil {
				t.Fatalf("%q: %s, encoding/json %v", s, Message(s, e), err)
			}
		case !errors.As(err, &syntax) || syntax.Error() != Message(s, e) || syntax.Offset != int64(e.Pos)+1:
			t.Fatalf("%q: %s at %d, encoding/json %v", s, Message(s, e), e.Pos, err)
		}
	})
}

// Unquote decodes what encoding/json decodes, of a string Valid accepts; without pairs it
// refuses every surrogate escape.
func TestUnquote(t *testing.T) {
	for _, s := range []string{`"plain"`, `"\"\\\/\b\f\n\r\t"`, `"\u00e9\u4F60"`, `"\ud83d\ude00!"`, `"会员\u0041"`, `"\ud800"`, `"\udc00\ud800"`, `"\ud800\u0041"`, `"\ud800x"`} {
		in := s[1 : len(s)-1]
		end, f, e := String(s, 0)
		if e.Kind != 0 || end != len(s) {
			t.Fatalf("%s: String %d %v", s, end, e)
		}
		var want string
		if err := json.Unmarshal([]byte(s), &want); err != nil {
			t.Fatal(err)
		}
		surrogates := strings.Contains(strings.ToLower(in), `\ud`)
		if !Valid(in, f, true) {
			if !strings.Contains(want, "\ufffd") {
				t.Errorf("%s: refused, encoding/json %q", s, want)
			}
			continue
		}
		if got, ok := Unquote(nil, in, true); !ok || string(got) != want {
			t.Errorf("%s: %q %v, want %q", s, got, ok, want)
		}
		if got, ok := Unquote(nil, []byte(in), false); ok == surrogates || ok && string(got) != want {
			t.Errorf("%s without pairs: %q %v", s, got, ok)
		}
	}
}

// Skip refuses arrays and objects nested deeper than its bound, and only those.
func TestSkipDepth(t *testing.T) {
	for _, c := range []struct {
		s     string
		depth int
		ok    bool
	}{
		{`1`, 0, true}, {`[]`, 0, false}, {`[]`, 1, true}, {`{"a":{}}`, 1, false}, {`{"a":{}}`, 2, true},
		{strings.Repeat(`[`, 8) + strings.Repeat(`]`, 8), 8, true}, {strings.Repeat(`[`, 9) + strings.Repeat(`]`, 9), 8, false},
		{`[{"[":"{"},[1]]`, 3, true}, {`[{"[":"{"},[[[1]]]]`, 3, false},
	} {
		if end, ok := Skip(c.s, 0, c.depth); ok != c.ok || ok && end != len(c.s) {
			t.Errorf("%s at depth %d: %d %v, want %v", c.s, c.depth, end, ok, c.ok)
		}
	}
}
