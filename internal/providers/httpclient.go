package providers

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// MaxAnswerSize bounds how much of a provider's answer is read.
const MaxAnswerSize = 1 << 20

// HTTPClient is the client provider calls are made with (NewHTTPClient, Post).
type HTTPClient struct {
	client  *http.Client
	timeout time.Duration
}

// NewHTTPClient returns a client for provider APIs: one call may take at most timeout, and
// idle connections are kept per host in numbers that suit many calls at once (the default
// transport keeps two, which turns a busy service into a storm of new connections). Each call
// is a client span of the OpenTelemetry tracer provider of the caller's span, or else of the
// global one, when that is not the no-op one (tracing is on).
//
// The time limit is each call's context deadline, set by Post, not http.Client.Timeout: with a
// Timeout, and a transport that net/http does not know (the tracing wrapper), every call would
// start a goroutine and a timer of its own to cancel itself, and the transport another.
func NewHTTPClient(timeout time.Duration) *HTTPClient {
	return newHTTPClient(timeout, &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   timeout,
		ExpectContinueTimeout: time.Second,
		ForceAttemptHTTP2:     true,
	})
}

func newHTTPClient(timeout time.Duration, base http.RoundTripper) *HTTPClient {
	return &HTTPClient{timeout: timeout, client: &http.Client{Transport: traced(base)}}
}

// Timeout is how long one call may take.
func (c *HTTPClient) Timeout() time.Duration { return c.timeout }

// traced wraps base in OpenTelemetry's HTTP client instrumentation, for the calls it makes a
// span of (see untraced). A call's span is named by its method, as the HTTP semantic
// conventions name a client span whose URL template is unknown ("POST"). The spans never see a
// query string's values, which carry credentials (Kuaishou's access_token): the query is
// redacted before the instrumentation records url.full and put back after. No trace header is
// sent: the provider is a third party, not part of our traces.
func traced(base http.RoundTripper) http.RoundTripper {
	return tracedTransport{
		plain: base,
		traced: hideQuery{otelhttp.NewTransport(restoreQuery{base},
			otelhttp.WithPropagators(propagation.NewCompositeTextMapPropagator()), otelhttp.WithSpanNameFormatter(spanName))},
	}
}

// spanName is an HTTP client span's name: its method when the conventions know it, else
// "HTTP", as http.request.method is then "_OTHER".
func spanName(_ string, r *http.Request) string {
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodConnect, http.MethodOptions, http.MethodTrace:
		return r.Method
	}
	return "HTTP"
}

// tracedTransport sends a call through the instrumentation (traced) or straight on (plain).
type tracedTransport struct{ plain, traced http.RoundTripper }

func (t tracedTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if untraced(r.Context()) {
		return t.plain.RoundTrip(r)
	}
	return t.traced.RoundTrip(r)
}

// untraced reports whether the instrumentation would make no span of a call with ctx: the
// tracer provider it takes (that of ctx's span, else the global one) is the no-op one, as
// StartTracing leaves it when tracing is off. Such a call goes straight on, for the
// instrumentation is not free even then (two copies of the request, attributes, a no-op span:
// some 35 allocations a call); the metrics it would record go to the global meter provider,
// which this service never sets. It is decided call by call, not once when the client is
// made: clients are made before tracing is started.
func untraced(ctx context.Context) bool {
	tp := otel.GetTracerProvider()
	if span := trace.SpanFromContext(ctx); span.SpanContext().IsValid() {
		tp = span.TracerProvider()
	}
	_, off := tp.(noop.TracerProvider)
	return off
}

type hiddenQueryKey struct{}

// hideQuery redacts the query string of a request's URL, keeping the whole one in the request's
// context.
type hideQuery struct{ next http.RoundTripper }

func (t hideQuery) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.RawQuery == "" {
		return t.next.RoundTrip(r)
	}
	r2 := r.Clone(context.WithValue(r.Context(), hiddenQueryKey{}, r.URL.RawQuery))
	r2.URL.RawQuery = redactQuery(r.URL.RawQuery)
	return t.next.RoundTrip(r2)
}

// redacted stands for a query value a span must not show.
const redacted = "REDACTED"

// shownQueryKeys are the query keys whose values are not secret. Any other key's value may be
// a credential or a signature, as access_token is Kuaishou's.
var shownQueryKeys = map[string]bool{"app_id": true}

// redactQuery is a raw query string with each value replaced by REDACTED, but those of
// shownQueryKeys: keys and their order stay, as the semantic conventions ask of url.full
// ("?access_token=REDACTED&app_id=ks1").
func redactQuery(raw string) string {
	var b strings.Builder
	b.Grow(len(raw))
	for i, part := range strings.Split(raw, "&") {
		if i > 0 {
			b.WriteByte('&')
		}
		key, _, hasValue := strings.Cut(part, "=")
		b.WriteString(key)
		if !hasValue {
			continue
		}
		b.WriteByte('=')
		if k, err := url.QueryUnescape(key); err == nil && shownQueryKeys[k] {
			b.WriteString(part[len(key)+1:])
		} else {
			b.WriteString(redacted)
		}
	}
	return b.String()
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

// PostJSON posts a JSON body to url and returns what read makes of the answer's body, as
// PostRead does.
func PostJSON[T any](ctx context.Context, c *HTTPClient, provider, url string, body []byte, read func(answer []byte) (T, error)) (T, error) {
	return PostRead(ctx, c, provider, url, "application/json", body, read)
}

// Post posts body of contentType to url and returns the answer's body, as PostRead reads it.
func Post(ctx context.Context, c *HTTPClient, provider, url, contentType string, body []byte) ([]byte, error) {
	return PostRead(ctx, c, provider, url, contentType, body, func(answer []byte) ([]byte, error) {
		return bytes.Clone(answer), nil
	})
}

// PostRead posts body of contentType to url and returns what read makes of the answer's body,
// at most MaxAnswerSize of it. It is the one way provider clients reach a provider, so that
// its errors are classified where they are born, alike for every call: a transport failure or
// an HTTP status other than 200 is retryable (429 is a rate limit; a Retry-After is kept as
// the error's advice), and a URL never reaches the error with its query string, which carries
// credentials.
//
// body is copied, and answer is a buffer reused once read returns: read keeps nothing of it
// (copies what it keeps, as a string conversion or encoding/json does).
func PostRead[T any](ctx context.Context, c *HTTPClient, provider, url, contentType string, body []byte, read func(answer []byte) (T, error)) (T, error) {
	var zero T
	ctx, cancel := context.WithTimeout(ctx, c.timeout) // until the answer is read
	defer cancel()
	// A *bytes.Reader body is one net/http knows to be in memory: it writes the headers and the
	// body in one write (any other reader has its headers flushed in a write of their own). The
	// copy is the request's own, as the transport may read it after the call has returned.
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(bytes.Clone(body)))
	if err != nil {
		return zero, &Error{Provider: provider, Class: Permanent, Message: "building request", Err: stripQuery(err)}
	}
	req.Header.Set("Content-Type", contentType)
	resp, err := c.client.Do(req)
	if err != nil {
		return zero, TransportError(provider, err)
	}
	defer resp.Body.Close()
	answer := answerBuffers.Get().(*answerBuffer)
	defer answer.release()
	if err := answer.readFrom(resp.Body); err != nil {
		return zero, TransportError(provider, err)
	}
	if resp.StatusCode != http.StatusOK {
		return zero, HTTPStatusError(provider, resp.StatusCode, resp.Header.Get("Retry-After"), time.Now())
	}
	return read(answer.b)
}

// answerBuffer is a buffer an answer is read into, whole, and kept in one copy of its size.
type answerBuffer struct{ b []byte }

// answerBuffers are the answer buffers, reused. A buffer grown past maxPooledAnswer is let go.
var answerBuffers = sync.Pool{New: func() any { return &answerBuffer{b: make([]byte, 0, 4<<10)} }}

const maxPooledAnswer = 64 << 10

// readFrom reads r to its end, or to MaxAnswerSize.
func (a *answerBuffer) readFrom(r io.Reader) error {
	for len(a.b) < MaxAnswerSize {
		if len(a.b) == cap(a.b) {
			a.b = slices.Grow(a.b, min(cap(a.b), MaxAnswerSize-len(a.b)))
		}
		n, err := r.Read(a.b[len(a.b):min(cap(a.b), MaxAnswerSize)])
		a.b = a.b[:len(a.b)+n]
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// release puts the buffer back for the next answer, emptied: a reader that kept a piece of an
// answer (it must not) then sees zeros rather than another call's answer, and the race
// detector sees the write.
func (a *answerBuffer) release() {
	if cap(a.b) > maxPooledAnswer {
		return
	}
	clear(a.b)
	a.b = a.b[:0]
	answerBuffers.Put(a)
}
