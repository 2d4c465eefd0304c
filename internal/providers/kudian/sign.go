// Package kudian queries Kudian (酷点) cashier payments (providers/kudian-cashier-query.md):
// the signed request, verification of the signed answer and the mapping of answers to the
// normalized status model. The sandbox that stands in for the API in development and tests is
// kudian/sandbox, which states the wire rules again on its own.
package kudian

import "github.com/paystatus/orderstatus/internal/providers"

// ASSUMPTION: Kudian's public documents do not state how requests and answers are signed.
// This project signs as Kuaishou does and verifies answers as below (CONTRACT.md section 6).
// Both rules live here and nowhere else, so that the real rule, once known, is a change to
// these two functions.

// Sign is the request signature: the lowercase hex MD5 of every non-empty field but sign,
// sorted by key, joined k=v with &, the app secret appended directly.
func Sign(fields map[string]string, secret string) string {
	return providers.SortedMD5(fields, secret, "sign")
}

// appendQuerySign appends to dst Sign of a query's fields, written in the order of their keys.
func appendQuerySign(dst []byte, secret string, bizContent []byte, appID string, timestamp []byte, token string) []byte {
	var textArray [512]byte
	text := providers.AppendSignField(textArray[:0], "biz_content", bizContent)
	text = providers.AppendSignField(text, "open_app_id", appID)
	text = providers.AppendSignField(text, "sign_type", "MD5")
	text = providers.AppendSignField(text, "timestamp", timestamp)
	text = providers.AppendSignField(text, "token", token)
	return providers.AppendSignature(dst, text, secret)
}

// AnswerSign is the answer signature: the lowercase hex MD5 of the result string with the app
// secret appended.
func AnswerSign(result, secret string) string {
	return providers.MD5Hex(result + secret)
}

// answerSigned reports whether sign is AnswerSign(result, secret), written on the stack.
func answerSigned(result, sign, secret string) bool {
	var textArray [1024]byte
	var sum [32]byte
	return string(providers.AppendSignature(sum[:0], append(textArray[:0], result...), secret)) == sign
}
