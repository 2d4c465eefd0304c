package providers

import (
	"crypto/md5"
	"encoding/hex"
	"slices"
)

// SortedMD5 is the signature both providers use: the lowercase hex MD5 of the fields, empty
// values and the skipped keys left out, sorted by key, joined k=v with &, the secret appended
// directly.
func SortedMD5(fields map[string]string, secret string, skip ...string) string {
	var keyArray [16]string // on the stack: a request has a handful of fields
	keys := keyArray[:0]
	for k := range fields {
		if !slices.Contains(skip, k) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	var textArray [512]byte
	text := textArray[:0]
	for _, k := range keys {
		text = AppendSignField(text, k, fields[k])
	}
	var sum [2 * md5.Size]byte
	return string(AppendSignature(sum[:0], text, secret))
}

// AppendSignField appends one field to text, the text SortedMD5 hashes ("k=v", joined with
// "&"; an empty value is left out). A client that knows its request's fields writes them in
// key order into a buffer of its own and signs with AppendSignature: neither a map nor an
// allocation.
func AppendSignField[V string | []byte](text []byte, key string, value V) []byte {
	if len(value) == 0 {
		return text
	}
	if len(text) > 0 {
		text = append(text, '&')
	}
	text = append(text, key...)
	text = append(text, '=')
	return append(text, value...)
}

// AppendSignature appends to dst the signature of text, written by AppendSignField: the
// lowercase hex MD5 of text with the secret appended. text is appended to.
func AppendSignature(dst, text []byte, secret string) []byte {
	sum := md5.Sum(append(text, secret...))
	return hex.AppendEncode(dst, sum[:])
}

// MD5Hex is the lowercase hex MD5 of s.
func MD5Hex(s string) string {
	sum := md5.Sum([]byte(s))
	return hex.EncodeToString(sum[:])
}
