package kuaishou

import "github.com/paystatus/orderstatus/internal/providers"

// Result codes. Kuaishou publishes only the access-token codes (100200100, 100200101); the
// others are the ones this project's sandbox answers with, chosen to be told apart, and the
// class of every code can be changed in configuration once the real ones are known.
const (
	CodeSuccess          = 1
	CodeInvalidParam     = 100200100 // documented: a parameter is empty or wrong
	CodeAuthFailed       = 100200101 // documented: app_id / app_secret do not verify
	CodeTokenInvalid     = 100200102 // sandbox: access_token unknown or expired
	CodeSignatureInvalid = 100200103 // sandbox: sign does not verify
	CodeOrderNotFound    = 100200104 // sandbox: no such order for this app
	CodeRateLimited      = 100200105 // sandbox: over the QPS limit of app and endpoint
	CodeSystemBusy       = 100200106 // sandbox: internal error, try again
)

// DefaultCodeClasses is how result codes are classified unless configured otherwise. A code
// not listed is retryable, within the retry budget.
var DefaultCodeClasses = map[int64]providers.Class{
	CodeInvalidParam:     providers.Permanent,
	CodeAuthFailed:       providers.Retryable, // a credential problem, not the request's: fixable by an operator
	CodeTokenInvalid:     providers.TokenInvalid,
	CodeSignatureInvalid: providers.Permanent,
	CodeOrderNotFound:    providers.Permanent,
	CodeRateLimited:      providers.RateLimited,
	CodeSystemBusy:       providers.Retryable,
}
