// Package sandbox is a stand-in for Kuaishou's epay query API (open.kuaishou.com) over real
// HTTP, for `consumer dev` and tests, with demo apps and orders.
//
// Its wire rules are stated here again from the documents (providers/kuaishou-epay-query.md
// and CONTRACT.md section 6), never taken from the client (package kuaishou), which this
// package does not import: a mistake in wire knowledge that both sides shared would be one no
// test could catch.
package sandbox

import (
	"regexp"

	"github.com/paystatus/orderstatus/internal/events"
	"github.com/paystatus/orderstatus/internal/providers/sandboxkit"
)

// tokenPath is getAccessToken: a form with app_id, app_secret and
// grant_type=client_credentials, answered {"result":1,"access_token":…,"expires_in":…}.
const tokenPath = "/oauth2/access_token"

// query is one documented query endpoint: its path, the body field holding the developer's
// number, and the answer field holding the record.
type query struct {
	path     string
	numField string
	info     string
}

// queries are the three documented endpoints (sections 2, 3 and 4 of the document), by the
// kind of order this project calls them for.
var queries = map[string]query{
	events.KindPayment:    {path: "/openapi/mp/developer/epay/query_order", numField: "out_order_no", info: "payment_info"},
	events.KindSettlement: {path: "/openapi/mp/developer/epay/query_settle", numField: "out_settle_no", info: "settle_info"},
	events.KindRefund:     {path: "/openapi/mp/developer/epay/query_refund", numField: "out_refund_no", info: "refund_info"},
}

// orderNoForm is the documented out_order_no ("[6,32] 只能是数字、大小写字母_-*"), which the
// documents give the settlement and refund numbers too.
var orderNoForm = regexp.MustCompile(`^[0-9A-Za-z_*-]{6,32}$`)

// sign is the documented request signature (附录): every query and body field but sign and
// access_token, empty values left out, sorted by key, joined k=v with &, app_secret appended
// directly, lowercase hex MD5.
func sign(fields map[string]string, secret string) string {
	return sandboxkit.SortedFieldsMD5(fields, secret, "sign", "access_token")
}

// Result codes. 1 is documented success, 100200100 and 100200101 are getAccessToken's
// documented codes; the others are this sandbox's own, chosen to be told apart (the client
// classifies them by configuration).
const (
	codeSuccess          = 1
	codeInvalidParam     = 100200100 // documented: a parameter is empty or wrong
	codeAuthFailed       = 100200101 // documented: app_id / app_secret do not verify
	codeTokenInvalid     = 100200102
	codeSignatureInvalid = 100200103
	codeOrderNotFound    = 100200104
	codeRateLimited      = 100200105
)
