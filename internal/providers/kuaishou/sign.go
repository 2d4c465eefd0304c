// Package kuaishou queries Kuaishou mini-program payments, settlements and refunds
// (providers/kuaishou-epay-query.md): signing, access tokens, the three query endpoints, the
// mapping of answers to the normalized status model, and a sandbox server that behaves like the
// documented API for development and tests.
package kuaishou

import "github.com/paystatus/orderstatus/internal/providers"

// Sign is Kuaishou's request signature: the lowercase hex MD5 of every field except sign,
// access_token and empty values, sorted by key, joined k=v with &, the app secret appended
// directly (CONTRACT.md section 6).
func Sign(fields map[string]string, secret string) string {
	return providers.SortedMD5(fields, secret, "sign", "access_token")
}
