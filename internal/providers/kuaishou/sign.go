// Package kuaishou queries Kuaishou mini-program payments, settlements and refunds
// (providers/kuaishou-epay-query.md): signing, access tokens, the three query endpoints and the
// mapping of answers to the normalized status model. The sandbox that stands in for the API in
// development and tests is kuaishou/sandbox, which states the wire rules again on its own.
package kuaishou

import "github.com/paystatus/orderstatus/internal/providers"

// Sign is Kuaishou's request signature: the lowercase hex MD5 of every field except sign,
// access_token and empty values, sorted by key, joined k=v with &, the app secret appended
// directly (CONTRACT.md section 6).
func Sign(fields map[string]string, secret string) string {
	return providers.SortedMD5(fields, secret, "sign", "access_token")
}

// appendQuerySign appends to dst Sign of a query's fields: app_id and the merchant's number
// (access_token is not signed).
func appendQuerySign(dst []byte, secret, appID, noField, orderNo string) []byte {
	var textArray [128]byte
	text := providers.AppendSignField(textArray[:0], "app_id", appID) // before every out_*_no
	text = providers.AppendSignField(text, noField, orderNo)
	return providers.AppendSignature(dst, text, secret)
}
