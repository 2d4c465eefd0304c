package providers

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/trace/noop"
)

func TestPost(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		switch r.URL.Path {
		case "/echo":
			_, _ = io.WriteString(w, r.Method+" "+r.Header.Get("Content-Type")+" "+string(body))
		case "/busy":
			w.WriteHeader(http.StatusTooManyRequests)
		case "/broken":
			w.WriteHeader(http.StatusBadGateway)
		case "/big":
			_, _ = w.Write(make([]byte, MaxAnswerSize+10))
		case "/moved":
			http.Redirect(w, r, "/echo", http.StatusTemporaryRedirect) // POSTed again, with its body
		}
	}))
	defer srv.Close()
	client := NewHTTPClient(2 * time.Second)
	ctx := context.Background()

	raw, err := Post(ctx, client, "p", srv.URL+"/echo?token=secret", "application/x-www-form-urlencoded", []byte("a=1"))
	if err != nil || string(raw) != "POST application/x-www-form-urlencoded a=1" {
		t.Fatalf("%q %v", raw, err)
	}
	raw, err = Post(ctx, client, "p", srv.URL+"/echo", "application/json", []byte(`{}`))
	if err != nil || string(raw) != "POST application/json {}" {
		t.Fatalf("%q %v", raw, err)
	}
	raw, err = Post(ctx, client, "p", srv.URL+"/moved", "application/json", []byte(`{"a":1}`))
	if err != nil || string(raw) != `POST application/json {"a":1}` {
		t.Fatalf("redirected: %q %v", raw, err)
	}
	if raw, err = Post(ctx, client, "p", srv.URL+"/big", "text/plain", nil); err != nil || len(raw) != MaxAnswerSize {
		t.Fatalf("answer of %d bytes read as %d (%v)", MaxAnswerSize+10, len(raw), err)
	}

	for _, tc := range []struct {
		url   string
		class Class
	}{
		{srv.URL + "/busy", RateLimited},
		{srv.URL + "/broken", Retryable},
		{"http://127.0.0.1:1/refused?access_token=ChFvSecret", Retryable},
		{"http://[::1/bad?access_token=ChFvSecret", Permanent},
	} {
		_, err := Post(ctx, client, "p", tc.url, "application/json", nil)
		if Classify(err) != tc.class || err == nil {
			t.Errorf("%s: %v, want %s", tc.url, err, tc.class)
		}
		if err != nil && strings.Contains(err.Error(), "ChFvSecret") {
			t.Errorf("%s: the query string reached the error: %v", tc.url, err)
		}
	}
}

// Calls at once each send their own body and read their own answer, however the buffers they
// are written into and read into are reused (bodies of every size, answers past the buffers'
// first size).
func TestPostBuffersAreNotShared(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		_, _ = w.Write(body)
		_, _ = w.Write(body)
	}))
	defer srv.Close()
	client := NewHTTPClient(10 * time.Second)
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for g := range 16 {
		wg.Go(func() {
			for i := range 50 {
				body := []byte(strings.Repeat(fmt.Sprintf("%d-%d;", g, i), 1+(g*50+i)%300))
				raw, err := Post(context.Background(), client, "p", srv.URL, "text/plain", body)
				if err != nil || string(raw) != string(body)+string(body) {
					errs <- fmt.Errorf("call %d-%d: sent %d bytes, answer %.40q… (%d bytes), %v", g, i, len(body), raw, len(raw), err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// deadlineChecked is a transport that answers at once when a call arrives with its time limit
// on its context.
type deadlineChecked struct{}

func (deadlineChecked) RoundTrip(r *http.Request) (*http.Response, error) {
	if _, ok := r.Context().Deadline(); !ok {
		return nil, errors.New("no deadline on the call's context")
	}
	return answerAtOnce(`{}`).RoundTrip(r)
}

// A call's time limit is its context's deadline, which net/http's transport watches itself:
// with http.Client.Timeout and the tracing wrapper, net/http would cancel each call its legacy
// way, with a goroutine and a timer of its own per call (and a goroutine more in the transport).
func TestPostTimeLimitOnContext(t *testing.T) {
	if c := NewHTTPClient(time.Second); c.client.Timeout != 0 {
		t.Fatalf("http.Client.Timeout %v", c.client.Timeout)
	}
	client := newHTTPClient(time.Second, deadlineChecked{})
	if _, err := Post(context.Background(), client, "p", "http://provider.invalid/q", "application/json", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
}

// The time limit covers the whole call: an answer that stalls before its headers or in the
// middle of its body ends the call as a retryable timeout.
func TestPostTimeout(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/body" {
			_, _ = io.WriteString(w, `{"result":`)
			w.(http.Flusher).Flush()
		}
		select {
		case <-release:
		case <-time.After(time.Minute):
		}
		_, _ = io.WriteString(w, `1}`)
	}))
	defer srv.Close()
	defer close(release)
	client := NewHTTPClient(200 * time.Millisecond)
	for _, path := range []string{"/headers", "/body"} {
		_, err := Post(context.Background(), client, "p", srv.URL+path, "application/json", []byte(`{}`))
		var pe *Error
		if !errors.As(err, &pe) || pe.Class != Retryable || pe.Message != "timeout" {
			t.Errorf("%s: %v, want a retryable timeout", path, err)
		}
	}
}

// Connections are kept for the next calls: calls at once open about as many connections as
// there are calls in flight, however many calls follow (a transport that keeps two idle
// connections per host opens one for nearly every call).
func TestPostReusesConnections(t *testing.T) {
	var opened atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, `{"result":1}`)
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			opened.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	client := NewHTTPClient(10 * time.Second)
	const inFlight, each = 16, 30
	var wg sync.WaitGroup
	for range inFlight {
		wg.Go(func() {
			for range each {
				if _, err := Post(context.Background(), client, "p", srv.URL, "application/json", []byte(`{}`)); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if n := opened.Load(); n > 2*inFlight {
		t.Fatalf("%d calls, %d at a time, opened %d connections", inFlight*each, inFlight, n)
	}
}

// countedConn counts the writes made on a connection.
type countedConn struct {
	net.Conn
	writes *atomic.Int64
}

func (c countedConn) Write(b []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(b)
}

// A call's request goes out in one write, headers and body together: a body net/http does not
// know to be in memory has its headers flushed in a write of their own, a packet more each way.
// Tracing is off, as StartTracing leaves it without OTEL_* settings (the instrumentation wraps
// the body when it is on).
func TestPostWritesTheRequestOnce(t *testing.T) {
	otel.SetTracerProvider(noop.NewTracerProvider())
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = io.WriteString(w, `{"result":1}`)
	}))
	defer srv.Close()
	var writes atomic.Int64
	dialer := &net.Dialer{}
	client := newHTTPClient(10*time.Second, &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dialer.DialContext(ctx, network, addr)
		return countedConn{Conn: c, writes: &writes}, err
	}})
	const calls = 20
	for i := range calls {
		body := []byte(fmt.Sprintf(`{"out_order_no":"order-%d","sign":"%s"}`, i, strings.Repeat("a", 32)))
		if _, err := Post(context.Background(), client, "p", srv.URL+"/q?app_id=a&access_token=t", "application/json", body); err != nil {
			t.Fatal(err)
		}
	}
	if n := writes.Load(); n != calls {
		t.Fatalf("%d calls made %d writes", calls, n)
	}
}
