package providers

import (
	"crypto/md5"
	"encoding/hex"
	"slices"
	"strings"
)

// SortedMD5 is the signature both providers use: the lowercase hex MD5 of the fields, empty
// values and the skipped keys left out, sorted by key, joined k=v with &, the secret appended
// directly.
func SortedMD5(fields map[string]string, secret string, skip ...string) string {
	keys := make([]string, 0, len(fields))
	for k, v := range fields {
		if v == "" || slices.Contains(skip, k) {
			continue
		}
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteByte('&')
		}
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(fields[k])
	}
	b.WriteString(secret)
	return MD5Hex(b.String())
}

// MD5Hex is the lowercase hex MD5 of s.
func MD5Hex(s string) string {
	sum := md5.Sum([]byte(s))
	return hex.EncodeToString(sum[:])
}
