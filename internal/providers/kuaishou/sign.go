// Package kuaishou queries Kuaishou mini-program payments, settlements and refunds
// (providers/kuaishou-epay-query.md): signing, access tokens, the three query endpoints, the
// mapping of answers to the normalized status model, and a sandbox server that behaves like the
// documented API for development and tests.
package kuaishou

import (
	"crypto/md5"
	"encoding/hex"
	"sort"
	"strings"
)

// Sign is Kuaishou's request signature: the lowercase hex MD5 of every field except sign,
// access_token and empty values, sorted by key, joined k=v with &, the app secret appended
// directly (CONTRACT.md section 6).
func Sign(fields map[string]string, secret string) string {
	keys := make([]string, 0, len(fields))
	for k, v := range fields {
		if k == "sign" || k == "access_token" || v == "" {
			continue
		}
		keys = append(keys, k)
	}
	sort.Strings(keys)
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
	sum := md5.Sum([]byte(b.String()))
	return hex.EncodeToString(sum[:])
}
