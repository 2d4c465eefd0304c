package providers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/paystatus/orderstatus/internal/config"
)

// Class says what to do about a failed provider call. It is decided once, where the error is
// born, and read everywhere else with Classify.
type Class int

const (
	// Retryable: try again later (network errors, timeouts, HTTP 5xx, unknown result codes).
	Retryable Class = iota
	// RateLimited: the provider says the app is over its quota; retry later, and slower.
	RateLimited
	// TokenInvalid: the credential was refused; refresh it once and retry.
	TokenInvalid
	// Permanent: the provider says the request itself is wrong; retrying cannot help.
	Permanent
)

func (c Class) String() string {
	switch c {
	case Retryable:
		return "retryable"
	case RateLimited:
		return "rate_limited"
	case TokenInvalid:
		return "token_invalid"
	case Permanent:
		return "permanent"
	}
	return fmt.Sprintf("class(%d)", int(c))
}

// ParseClass reads a class by its name (as Class.String writes it).
func ParseClass(name string) (Class, bool) {
	for _, c := range []Class{Retryable, RateLimited, TokenInvalid, Permanent} {
		if c.String() == name {
			return c, true
		}
	}
	return 0, false
}

// Codes is how a provider's own result codes read: the one that means success, and the class
// of every other. The provider package knows its codes' default classes; operators can change
// them (providers.<name>.result_codes) once the real meaning of a code is known.
type Codes struct {
	provider string
	success  int64
	classes  map[int64]Class
}

// NewCodes merges the configured classes of result codes (code -> class name) over the
// provider's defaults. A bad entry is a configuration error naming its key.
func NewCodes(provider string, success int64, defaults map[int64]Class, configured map[string]string) (Codes, error) {
	key := "providers." + provider + ".result_codes"
	classes := make(map[int64]Class, len(defaults)+len(configured))
	for k, v := range defaults {
		classes[k] = v
	}
	for code, name := range configured {
		n, err := strconv.ParseInt(code, 10, 64)
		if err != nil {
			return Codes{}, &config.Error{Key: key + "." + code, Msg: "a result code must be a whole number"}
		}
		c, ok := ParseClass(name)
		if !ok {
			return Codes{}, &config.Error{Key: key + "." + code, Msg: fmt.Sprintf("%q is not retryable, rate_limited, token_invalid or permanent", name)}
		}
		classes[n] = c
	}
	return Codes{provider: provider, success: success, classes: classes}, nil
}

// Check reads a result code from an answer: nil for success, otherwise an *Error of the code's
// class carrying the provider's code and text. A code nobody classified is retryable (the
// retry budget bounds it); a code that is not a whole number makes the answer malformed.
func (c Codes) Check(code json.Number, msg string) error {
	n, err := code.Int64()
	if err != nil {
		return Malformed(c.provider, "result code %q is not a whole number", code.String())
	}
	if n == c.success {
		return nil
	}
	class, ok := c.classes[n]
	if !ok {
		class = Retryable
	}
	return &Error{Provider: c.provider, Class: class, Code: code.String(), Message: msg}
}

// Malformed is the error for an answer that cannot be read. It is retryable: a provider that
// answered garbage once may answer properly next time, and the retry budget bounds it.
func Malformed(provider, format string, args ...any) error {
	return &Error{Provider: provider, Class: Retryable, Message: "malformed answer: " + fmt.Sprintf(format, args...)}
}

// Error is a classified provider failure.
type Error struct {
	Provider string
	Class    Class
	// Code and Message are the provider's own result code and text, when it gave them.
	Code    string
	Message string
	// Err is the underlying cause (network error, decode error), if any.
	Err error
	// RetryAfter is the provider's own advice on when to ask again (an HTTP Retry-After), at
	// most MaxRetryAfter; zero when it gave none.
	RetryAfter time.Duration
}

func (e *Error) Error() string {
	s := e.Provider + ": " + e.Class.String()
	if e.Code != "" {
		s += " (code " + e.Code + ")"
	}
	if e.Message != "" {
		s += ": " + e.Message
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *Error) Unwrap() error { return e.Err }

// Classify returns the class of err. An error nobody classified (a bug, most likely) counts
// as retryable: the retry budget bounds it, and it ends as a dead letter, never silently.
func Classify(err error) Class {
	var pe *Error
	if errors.As(err, &pe) {
		return pe.Class
	}
	return Retryable
}

// TransportError classifies an error from an HTTP round trip: always retryable. The URL in a
// *url.Error is cut to its path, so a credential in the query string never reaches a log.
func TransportError(provider string, err error) error {
	err = stripQuery(err)
	msg := "network error"
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		msg = "timeout"
	}
	return &Error{Provider: provider, Class: Retryable, Message: msg, Err: err}
}

// stripQuery cuts the URL in a *url.Error to its path: query strings carry credentials.
func stripQuery(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		if u, perr := url.Parse(ue.URL); perr == nil {
			u.RawQuery = ""
			ue.URL = u.String()
		} else {
			ue.URL = "(unreadable URL)"
		}
	}
	return err
}

// HTTPStatusError classifies a non-200 HTTP answer: 429 is a rate limit, 5xx and anything
// else unexpected is retryable. retryAfter is the answer's Retry-After header, kept as the
// error's advice (see ParseRetryAfter); now reads an HTTP date in it.
func HTTPStatusError(provider string, status int, retryAfter string, now time.Time) error {
	class := Retryable
	if status == 429 {
		class = RateLimited
	}
	return &Error{Provider: provider, Class: class, Message: fmt.Sprintf("HTTP %d", status), RetryAfter: ParseRetryAfter(retryAfter, now)}
}

// MaxRetryAfter bounds a provider's Retry-After advice: a larger one (a mistake, or hostile)
// would stop an app's calls for longer than any request waits.
const MaxRetryAfter = 5 * time.Minute

// ParseRetryAfter reads a Retry-After header: whole seconds, or an HTTP date (from now), at
// most MaxRetryAfter. Anything else, and a time already past, is no advice (zero).
func ParseRetryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	var d time.Duration
	if secs, err := strconv.ParseUint(v, 10, 32); err == nil {
		d = time.Duration(secs) * time.Second
	} else if at, err := http.ParseTime(v); err == nil {
		d = at.Sub(now)
	}
	return min(max(d, 0), MaxRetryAfter)
}

// RetryAfter is how long a caller should wait after err before trying the same app again: the
// provider's own advice when it gave one, and at least a second after a rate limit; zero means
// no advice.
func RetryAfter(err error) time.Duration {
	var advised time.Duration
	var pe *Error
	if errors.As(err, &pe) {
		advised = pe.RetryAfter
	}
	if Classify(err) == RateLimited {
		return max(advised, time.Second)
	}
	return advised
}
