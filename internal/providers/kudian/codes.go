package kudian

import "github.com/paystatus/orderstatus/internal/providers"

// Inner result codes. Kudian documents only 0 (success); the others are the ones this
// project's sandbox answers with, and the class of every code can be changed in configuration
// (providers.kudian.result_codes) once the real ones are known.
const (
	CodeSuccess          = 0
	CodeInvalidParam     = 40000 // sandbox: a parameter is missing or wrong
	CodeTokenInvalid     = 40001 // sandbox: the merchant token is unknown or expired
	CodeSignatureInvalid = 40002 // sandbox: sign does not verify
	CodeOrderNotFound    = 40004 // sandbox: no such order
	CodeRateLimited      = 40029 // sandbox: over the QPS limit
	CodeSystemBusy       = 50000 // sandbox: internal error, try again
)

// DefaultCodeClasses is how inner codes are classified unless configured otherwise. A code not
// listed is retryable, within the retry budget. Kudian's token is the merchant's own, set in
// configuration: a refused token is an operator's to fix, so it is retried, not refreshed.
var DefaultCodeClasses = map[int64]providers.Class{
	CodeInvalidParam:     providers.Permanent,
	CodeTokenInvalid:     providers.Retryable,
	CodeSignatureInvalid: providers.Permanent,
	CodeOrderNotFound:    providers.Permanent,
	CodeRateLimited:      providers.RateLimited,
	CodeSystemBusy:       providers.Retryable,
}
