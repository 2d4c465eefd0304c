// Package sandbox is a stand-in for Kudian's (酷点) cashier query API over real HTTP, for
// `consumer dev` and tests, with a demo app and orders.
//
// Its wire rules are stated here again from the documents (providers/kudian-cashier-query.md
// and CONTRACT.md section 6), never taken from the client (package kudian), which this package
// does not import: a mistake in wire knowledge that both sides shared would be one no test
// could catch.
package sandbox

import (
	"crypto/md5"
	"fmt"
	"time"

	"github.com/paystatus/orderstatus/internal/providers/sandboxkit"
)

// queryPath is the documented 查询订单信息 endpoint, below the base URL.
const queryPath = "/api/v2/cashier/query"

// bizContent is the query's inner payload, a JSON string in biz_content: one of pay_no and
// out_trade_no (String(64) each), and is_fresh.
type bizContent struct {
	PayNo      string `json:"pay_no"`
	OutTradeNo string `json:"out_trade_no"`
	IsFresh    bool   `json:"is_fresh"`
}

// ASSUMPTION (CONTRACT.md section 6): Kudian's documents do not state how requests and answers
// are signed. This project assumes requests are signed as Kuaishou signs them, and answers as
// MD5(result + secret).

// sign is the assumed request signature: every non-empty field but sign (open_app_id,
// timestamp, sign_type, token, biz_content), sorted by key, joined k=v with &, the app secret
// appended directly, lowercase hex MD5.
func sign(fields map[string]string, secret string) string {
	return sandboxkit.SortedFieldsMD5(fields, secret, "sign")
}

// answerSign is the assumed answer signature: lowercase hex MD5 of the result string, the app
// secret appended.
func answerSign(result, secret string) string {
	return fmt.Sprintf("%x", md5.Sum([]byte(result+secret)))
}

// Inner result codes. Kudian documents only 0 (success); the others are this sandbox's own
// (the client classifies them by configuration).
const (
	codeSuccess          = 0
	codeInvalidParam     = 40000
	codeTokenInvalid     = 40001
	codeSignatureInvalid = 40002
	codeOrderNotFound    = 40004
	codeRateLimited      = 40029
)

// payTimeLayout is pay_time's documented form, "yyyy-MM-dd HH:mm:ss"; payTimeShortLayout is
// the "yyyy-MM-dd HH:mm" of the document's raw example.
const (
	payTimeLayout      = "2006-01-02 15:04:05"
	payTimeShortLayout = "2006-01-02 15:04"
)

// beijing is the wall time pay_time is written in: Asia/Shanghai, UTC+8 with no daylight
// saving since 1991, so a fixed zone needs no time zone database.
var beijing = time.FixedZone("CST", 8*60*60)
