// Package jsonscan is the lexical layer of JSON, read in place: white space, strings (their
// escapes, UTF-8 and UTF-16 surrogate escapes), numbers, literals, and the skip of a whole value
// under a depth bound. Each function takes the input and the index to start at and gives the
// index after what it read, so the caller's text, a string or a []byte, is never copied.
//
// It accepts exactly what encoding/json's scanner accepts, and says why it refuses in
// encoding/json's words (Message). What a reader does with the tokens (the grammar around them,
// its bounds, what it keeps) is the reader's: events reads a query request with it, providers a
// provider's answer.
package jsonscan

import (
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// Text is the input: JSON as a string or as bytes.
type Text interface{ ~string | ~[]byte }

// Flags say what a string holds.
type Flags uint8

const (
	// Escaped says the string holds a backslash escape.
	Escaped Flags = 1 << iota
	// NonASCII says the string holds a byte of 0x80 or more, so its UTF-8 is to be checked.
	NonASCII
)

// Kind is what an Error refuses.
type Kind uint8

// The kinds of Error; the zero Kind is no error.
const (
	InString          Kind = iota + 1 // a control character in a string
	InEscape                          // a backslash followed by no escape
	InHexEscape                       // a \u escape without four hex digits
	InNumber                          // a number without its first digit
	AfterDecimalPoint                 // a decimal point without a digit after it
	InExponent                        // an exponent without a digit
	InLiteral                         // a misspelt true, false or null
)

// Error is a refusal: of the byte at Pos (or of the end of the input, when Pos is there), in the
// token that starts at Start. The zero Error is none.
type Error struct {
	Kind       Kind
	Pos, Start int
}

// Message is what encoding/json says of e in data.
func Message[T Text](data T, e Error) string {
	if e.Pos >= len(data) {
		switch e.Kind {
		case InString, InEscape, InHexEscape:
			return "unexpected end of data in a string"
		}
		return "unexpected end of data"
	}
	c := QuoteChar(data[e.Pos])
	switch e.Kind {
	case InString:
		return "invalid character " + c + " in string literal"
	case InEscape:
		return "invalid character " + c + " in string escape code"
	case InHexEscape:
		return "invalid character " + c + ` in \u hexadecimal character escape`
	case AfterDecimalPoint:
		return "invalid character " + c + " after decimal point in numeric literal"
	case InExponent:
		return "invalid character " + c + " in exponent of numeric literal"
	case InLiteral:
		lit := literal(data[e.Start])
		return "invalid character " + c + " in literal " + lit + " (expecting " + QuoteChar(lit[e.Pos-e.Start]) + ")"
	}
	return "invalid character " + c + " in numeric literal"
}

// QuoteChar is c as encoding/json's errors show it.
func QuoteChar(c byte) string {
	switch c {
	case '\'':
		return `'\''`
	case '"':
		return `'"'`
	}
	q := strconv.Quote(string(rune(c)))
	return "'" + q[1:len(q)-1] + "'"
}

// Space is the index of the first byte at or after i that is not white space (len(data) at the
// end).
func Space[T Text](data T, i int) int {
	for ; i < len(data); i++ {
		switch data[i] {
		case ' ', '\t', '\r', '\n':
		default:
			return i
		}
	}
	return i
}

// String reads the string whose opening quote is at data[i]: end is the index after its
// closing quote. Control characters and invalid escapes are refused; UTF-8 is not checked here
// (see Valid), so that each reader refuses it where encoding/json would.
func String[T Text](data T, i int) (end int, f Flags, e Error) {
	start := i
	for i++; ; i++ {
		if i >= len(data) {
			return i, f, Error{InString, i, start}
		}
		c := data[i]
		switch {
		case c == '"':
			return i + 1, f, Error{}
		case c < 0x20:
			return i, f, Error{InString, i, start}
		case c >= utf8.RuneSelf:
			f |= NonASCII
			continue
		case c != '\\':
			continue
		}
		f |= Escaped
		if i++; i >= len(data) {
			return i, f, Error{InEscape, i, start}
		}
		switch data[i] {
		case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
		case 'u':
			for k := 1; k <= 4; k++ {
				if i+k >= len(data) || !isHex(data[i+k]) {
					return i + k, f, Error{InHexEscape, i + k, start}
				}
			}
			i += 4
		default:
			return i, f, Error{InEscape, i, start}
		}
	}
}

// Valid reports whether s, a string's text between its quotes read by String with flags f, is
// valid UTF-8 and, when pairs, escapes no lone UTF-16 surrogate (encoding/json puts U+FFFD in
// place of either).
func Valid[T Text](s T, f Flags, pairs bool) bool {
	if f&NonASCII != 0 && !validUTF8(s) {
		return false
	}
	if !pairs || f&Escaped == 0 {
		return true
	}
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' {
			continue
		}
		if i++; s[i] != 'u' {
			continue
		}
		r := hex4(s, i+1)
		i += 4
		switch {
		case r >= 0xdc00 && r <= 0xdfff:
			return false // a low surrogate with no high one before it
		case r >= 0xd800 && r <= 0xdbff:
			if i+6 >= len(s) || s[i+1] != '\\' || s[i+2] != 'u' {
				return false
			}
			if lo := hex4(s, i+3); lo < 0xdc00 || lo > 0xdfff {
				return false
			}
			i += 6
		}
	}
	return true
}

// Unquote appends to b the text of s, a string's text between its quotes read by String, its
// escapes decoded. A \u escape of a UTF-16 surrogate is refused (ok false) unless pairs, when
// a high surrogate and the low one after it are one character (Valid with pairs has refused
// any other).
func Unquote[T Text](b []byte, s T, pairs bool) (out []byte, ok bool) {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' {
			b = append(b, c)
			continue
		}
		i++
		switch e := s[i]; e {
		case 'b':
			b = append(b, '\b')
		case 'f':
			b = append(b, '\f')
		case 'n':
			b = append(b, '\n')
		case 'r':
			b = append(b, '\r')
		case 't':
			b = append(b, '\t')
		case 'u':
			r := hex4(s, i+1)
			i += 4
			if utf16.IsSurrogate(r) {
				if !pairs || i+6 >= len(s) {
					return b, false
				}
				r = utf16.DecodeRune(r, hex4(s, i+3))
				i += 6
			}
			b = utf8.AppendRune(b, r)
		default: // " \ /
			b = append(b, e)
		}
	}
	return b, true
}

// Number reads the number that starts at data[i] (a '-' or a digit):
// -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?
func Number[T Text](data T, i int) (end int, e Error) {
	start := i
	if i < len(data) && data[i] == '-' {
		i++
	}
	switch {
	case i < len(data) && data[i] == '0':
		i++
	case i < len(data) && data[i] >= '1' && data[i] <= '9':
		i = digits(data, i)
	default:
		return i, Error{InNumber, i, start}
	}
	if i < len(data) && data[i] == '.' {
		if i++; i >= len(data) || data[i] < '0' || data[i] > '9' {
			return i, Error{AfterDecimalPoint, i, start}
		}
		i = digits(data, i)
	}
	if i < len(data) && (data[i] == 'e' || data[i] == 'E') {
		if i++; i < len(data) && (data[i] == '+' || data[i] == '-') {
			i++
		}
		if i >= len(data) || data[i] < '0' || data[i] > '9' {
			return i, Error{InExponent, i, start}
		}
		i = digits(data, i)
	}
	return i, Error{}
}

func digits[T Text](data T, i int) int {
	for i < len(data) && data[i] >= '0' && data[i] <= '9' {
		i++
	}
	return i
}

// Literal reads the true, false or null whose first letter is data[i] (a 't', 'f' or 'n').
func Literal[T Text](data T, i int) (end int, e Error) {
	lit := literal(data[i])
	for k := 1; k < len(lit); k++ {
		if i+k >= len(data) || data[i+k] != lit[k] {
			return i + k, Error{InLiteral, i + k, i}
		}
	}
	return i + len(lit), Error{}
}

func literal(c byte) string {
	switch c {
	case 't':
		return "true"
	case 'f':
		return "false"
	}
	return "null"
}

// Skip reads the value that starts at data[i] (after white space), and nothing of it is kept:
// end is the index after it. It refuses (ok false) a syntax error, a string that is not valid
// UTF-8, and arrays and objects nested more than depth deep.
func Skip[T Text](data T, i, depth int) (end int, ok bool) {
	i = Space(data, i)
	if i == len(data) {
		return i, false
	}
	switch c := data[i]; {
	case c == '{' || c == '[':
		if depth--; depth < 0 {
			return i, false
		}
		closing := byte('}')
		if c == '[' {
			closing = ']'
		}
		if i = Space(data, i+1); i < len(data) && data[i] == closing {
			return i + 1, true
		}
		for {
			if c == '{' {
				if i = Space(data, i); i == len(data) || data[i] != '"' {
					return i, false
				}
				if i, ok = skipString(data, i); !ok {
					return i, false
				}
				if i = Space(data, i); i == len(data) || data[i] != ':' {
					return i, false
				}
				i++
			}
			if i, ok = Skip(data, i, depth); !ok {
				return i, false
			}
			if i = Space(data, i); i == len(data) {
				return i, false
			}
			switch data[i] {
			case ',':
				i++
			case closing:
				return i + 1, true
			default:
				return i, false
			}
		}
	case c == '"':
		return skipString(data, i)
	case c == '-' || c >= '0' && c <= '9':
		end, e := Number(data, i)
		return end, e.Kind == 0
	case c == 't' || c == 'f' || c == 'n':
		end, e := Literal(data, i)
		return end, e.Kind == 0
	}
	return i, false
}

// skipString reads a string, refusing invalid UTF-8.
func skipString[T Text](data T, i int) (int, bool) {
	end, f, e := String(data, i)
	return end, e.Kind == 0 && Valid(data[i+1:end-1], f, false)
}

// validUTF8 is utf8.Valid for either kind of text, without converting it.
func validUTF8[T Text](s T) bool {
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			i++
			continue
		}
		n, lo, hi := 0, byte(0x80), byte(0xBF) // continuation bytes, and the range of the first
		switch {
		case c >= 0xC2 && c <= 0xDF:
			n = 1
		case c == 0xE0:
			n, lo = 2, 0xA0
		case c == 0xED:
			n, hi = 2, 0x9F // no surrogates
		case c >= 0xE1 && c <= 0xEF:
			n = 2
		case c == 0xF0:
			n, lo = 3, 0x90
		case c >= 0xF1 && c <= 0xF3:
			n = 3
		case c == 0xF4:
			n, hi = 3, 0x8F // at most U+10FFFF
		default:
			return false
		}
		if len(s)-i <= n || s[i+1] < lo || s[i+1] > hi {
			return false
		}
		for j := 2; j <= n; j++ {
			if s[i+j] < 0x80 || s[i+j] > 0xBF {
				return false
			}
		}
		i += n + 1
	}
	return true
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// hex4 is the value of the four hex digits at s[i:], which String has checked; 0 past the end.
func hex4[T Text](s T, i int) rune {
	if len(s)-i < 4 {
		return 0
	}
	var r rune
	for _, c := range []byte{s[i], s[i+1], s[i+2], s[i+3]} {
		switch {
		case c <= '9':
			c -= '0'
		case c >= 'a':
			c -= 'a' - 10
		default:
			c -= 'A' - 10
		}
		r = r<<4 | rune(c)
	}
	return r
}
