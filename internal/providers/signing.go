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
	for k, v := range fields {
		if v == "" || slices.Contains(skip, k) {
			continue
		}
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var textArray [512]byte
	text := textArray[:0]
	for i, k := range keys {
		if i > 0 {
			text = append(text, '&')
		}
		text = append(text, k...)
		text = append(text, '=')
		text = append(text, fields[k]...)
	}
	text = append(text, secret...)
	return md5Hex(text)
}

// MD5Hex is the lowercase hex MD5 of s.
func MD5Hex(s string) string {
	return md5Hex([]byte(s))
}

func md5Hex(b []byte) string {
	sum := md5.Sum(b)
	return hex.EncodeToString(sum[:])
}
