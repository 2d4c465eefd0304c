// Package kvkey builds JetStream KV keys from free text (app ids, order numbers) so that a key
// stays readable when it can and is always valid.
package kvkey

import (
	"encoding/base64"
	"strings"
)

// Token is s as one token of a KV key: kept as it is when it holds only letters, digits, - and
// _ (so operators can read and type keys), else "=" and its unpadded base64url, which cannot
// collide with a plain token because a plain token never contains "=".
func Token(s string) string {
	if Plain(s) {
		return s
	}
	return "=" + base64.RawURLEncoding.EncodeToString([]byte(s))
}

// Plain reports whether s is a name as it is: not empty, and only ASCII letters, digits, -
// and _. Token keeps such a text as it is.
func Plain(s string) bool {
	return s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_')
	}) < 0
}

// Text is the text token was made of by Token; a token Token cannot have made comes back as
// it is.
func Text(token string) string {
	if enc, ok := strings.CutPrefix(token, "="); ok {
		if b, err := base64.RawURLEncoding.DecodeString(enc); err == nil {
			return string(b)
		}
	}
	return token
}

// Join makes a key of parts, each written as a Token, separated by dots.
func Join(parts ...string) string {
	for i, p := range parts {
		parts[i] = Token(p)
	}
	return strings.Join(parts, ".")
}

// Valid reports whether s can be a token Token made: letters, digits, -, _ and =.
func Valid(s string) bool {
	return s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '=')
	}) < 0
}
