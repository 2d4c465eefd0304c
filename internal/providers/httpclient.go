package providers

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/propagation"
)

// MaxAnswerSize bounds how much of a provider's answer is read.
const MaxAnswerSize = 1 << 20

// NewHTTPClient returns a client for provider APIs: one call may take at most timeout, and
// idle connections are kept per host in numbers that suit many calls at once (the default
// transport keeps two, which turns a busy service into a storm of new connections). Each call
// is a client span of the global OpenTelemetry tracer provider (a no-op unless tracing is on).
func NewHTTPClient(timeout time.Duration) *http.Client {
	return &http.Client{
		Timeout: timeout,
		Transport: traced(&http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           (&net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConns:          1024,
			MaxIdleConnsPerHost:   256,
			IdleConnTimeout:       90 * time.Second,
			TLSHandshakeTimeout:   timeout,
			ExpectContinueTimeout: time.Second,
			ForceAttemptHTTP2:     true,
		}),
	}
}

// traced wraps base in OpenTelemetry's HTTP client instrumentation. The spans never see a
// query string, which carries credentials (Kuaishou's access_token): it is taken off the URL
// before the instrumentation records it and put back after. No trace header is sent: the
// provider is a third party, not part of our traces.
func traced(base http.RoundTripper) http.RoundTripper {
	return hideQuery{otelhttp.NewTransport(restoreQuery{base}, otelhttp.WithPropagators(propagation.NewCompositeTextMapPropagator()))}
}

type hiddenQueryKey struct{}

// hideQuery takes the query string off a request's URL, keeping it in the request's context.
type hideQuery struct{ next http.RoundTripper }

func (t hideQuery) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.RawQuery == "" {
		return t.next.RoundTrip(r)
	}
	r2 := r.Clone(context.WithValue(r.Context(), hiddenQueryKey{}, r.URL.RawQuery))
	r2.URL.RawQuery = ""
	return t.next.RoundTrip(r2)
}

// restoreQuery puts back the query string hideQuery took off.
type restoreQuery struct{ next http.RoundTripper }

func (t restoreQuery) RoundTrip(r *http.Request) (*http.Response, error) {
	q, ok := r.Context().Value(hiddenQueryKey{}).(string)
	if !ok {
		return t.next.RoundTrip(r)
	}
	r2 := r.Clone(r.Context())
	r2.URL.RawQuery = q
	return t.next.RoundTrip(r2)
}

// PostJSON posts a JSON body to url and returns the answer's body, as Post does.
func PostJSON(ctx context.Context, client *http.Client, provider, url string, body []byte) ([]byte, error) {
	return Post(ctx, client, provider, url, "application/json", body)
}

// Post posts body of contentType to url and returns the answer's body, at most MaxAnswerSize of
// it. It is the one way provider clients reach a provider, so that its errors are classified
// where they are born, alike for every call: a transport failure or an HTTP status other than
// 200 is retryable (429 is a rate limit), and a URL never reaches the error with its query
// string, which carries credentials.
func Post(ctx context.Context, client *http.Client, provider, url, contentType string, body []byte) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, &Error{Provider: provider, Class: Permanent, Message: "building request", Err: stripQuery(err)}
	}
	req.Header.Set("Content-Type", contentType)
	resp, err := client.Do(req)
	if err != nil {
		return nil, TransportError(provider, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, MaxAnswerSize))
	if err != nil {
		return nil, TransportError(provider, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, HTTPStatusError(provider, resp.StatusCode)
	}
	return raw, nil
}
