package providers

import (
	"net"
	"net/http"
	"time"
)

// MaxAnswerSize bounds how much of a provider's answer is read.
const MaxAnswerSize = 1 << 20

// NewHTTPClient returns a client for provider APIs: one call may take at most timeout, and
// idle connections are kept per host in numbers that suit many calls at once (the default
// transport keeps two, which turns a busy service into a storm of new connections).
func NewHTTPClient(timeout time.Duration) *http.Client {
	return &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           (&net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConns:          1024,
			MaxIdleConnsPerHost:   256,
			IdleConnTimeout:       90 * time.Second,
			TLSHandshakeTimeout:   timeout,
			ExpectContinueTimeout: time.Second,
			ForceAttemptHTTP2:     true,
		},
	}
}
