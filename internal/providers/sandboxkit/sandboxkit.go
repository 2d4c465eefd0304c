// Package sandboxkit is what the provider sandboxes are built from: fault modes that tests
// switch on per app, the log of calls that QPS enforcement and tests count, the loopback HTTP
// server and the status timeline of an order. It knows nothing of any provider's wire: each
// sandbox states that again from the provider's documents (see kuaishou/sandbox, kudian/sandbox).
package sandboxkit

import (
	"context"
	"io"
	"net"
	"net/http"
	"sort"
	"sync"
	"time"
)

// Fault is a way a provider can misbehave.
type Fault string

// The fault modes every sandbox supports.
const (
	None         Fault = ""
	HTTP500      Fault = "http_500"      // answer HTTP 500
	HTTP429      Fault = "http_429"      // answer HTTP 429, as a gateway in front of the API does (Retry-After: Controls.RetryAfter)
	Stall        Fault = "stall"         // hold the answer until the client gives up (or StallFor passes)
	Malformed    Fault = "malformed"     // answer truncated, unparseable JSON with HTTP 200
	RateLimit    Fault = "rate_limit"    // answer the provider's rate-limit refusal
	ExpiredToken Fault = "expired_token" // refuse the credential, as if it had expired
	BadSignature Fault = "bad_signature" // a signature that does not verify
	NotFound     Fault = "not_found"     // the provider's "no such order"
	WrongOrder   Fault = "wrong_order"   // a success answer about another order than the one asked for
)

// Faults lists every fault mode, for suites that try them all.
var Faults = []Fault{HTTP500, HTTP429, Stall, Malformed, RateLimit, ExpiredToken, BadSignature, NotFound, WrongOrder}

// Controls holds the QPS limit, the per-app fault modes and the call log of one sandbox.
type Controls struct {
	// QPS is the most calls a second the provider takes under one key (its unit of limiting:
	// app and endpoint, or app); 0 means no limit.
	QPS int
	// StallFor bounds a stalled answer (default one minute; the client's timeout ends it first).
	StallFor time.Duration
	// RetryAfter is the Retry-After header of an HTTP429 answer (seconds or an HTTP date); ""
	// sends none.
	RetryAfter string

	mu     sync.Mutex
	faults map[string]faultState
	calls  map[string][]time.Time
}

type faultState struct {
	fault     Fault
	remaining int // answers left with the fault; <0: until cleared
}

// callHistory is how long calls are remembered, so a long `consumer dev` run stays small.
const callHistory = 10 * time.Minute

// SetFault makes app's next n answers show fault (n < 0: every answer until cleared).
func (c *Controls) SetFault(appID string, fault Fault, n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.faults == nil {
		c.faults = map[string]faultState{}
	}
	if fault == None || n == 0 {
		delete(c.faults, appID)
		return
	}
	c.faults[appID] = faultState{fault: fault, remaining: n}
}

// TakeFault returns the fault the next answer to app must show, using one up.
func (c *Controls) TakeFault(appID string) Fault {
	c.mu.Lock()
	defer c.mu.Unlock()
	st, ok := c.faults[appID]
	if !ok {
		return None
	}
	if st.remaining > 0 {
		st.remaining--
		if st.remaining == 0 {
			delete(c.faults, appID)
		} else {
			c.faults[appID] = st
		}
	}
	return st.fault
}

// Record logs a call under key at now and reports how many calls under key arrived in the
// second up to and including now.
func (c *Controls) Record(key string, now time.Time) (inLastSecond int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.calls == nil {
		c.calls = map[string][]time.Time{}
	}
	calls := append(c.calls[key], now)
	if len(calls) > 4096 && now.Sub(calls[0]) > callHistory {
		i := sort.Search(len(calls), func(i int) bool { return now.Sub(calls[i]) <= callHistory })
		calls = append([]time.Time(nil), calls[i:]...)
	}
	c.calls[key] = calls
	since := now.Add(-time.Second)
	for i := len(calls) - 1; i >= 0 && calls[i].After(since); i-- {
		inLastSecond++
	}
	return inLastSecond
}

// Calls returns the arrival times of the calls logged under key.
func (c *Controls) Calls(key string) []time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]time.Time(nil), c.calls[key]...)
}

// Arrive is how every sandbox takes a call to app: it logs the call under key (the provider's
// unit of limiting) and plays the faults that every provider shows alike. HTTP 500 and 429 answer at
// once; Malformed answers the start of the provider's own answer (truncated, which the sandbox
// passes) with HTTP 200; Stall holds the call first. answered reports the call answered;
// otherwise fault is for the provider's own handling of the faults only it can show
// (ExpiredToken, BadSignature, NotFound, WrongOrder), and limited says its rate-limit refusal is due: more
// than QPS calls under key in the second up to now, or a RateLimit fault.
func (c *Controls) Arrive(w http.ResponseWriter, r *http.Request, appID, key, truncated string, now time.Time) (fault Fault, limited, answered bool) {
	limited = c.Record(key, now) > c.QPS && c.QPS > 0
	switch fault = c.TakeFault(appID); fault {
	case HTTP500:
		http.Error(w, "internal server error", http.StatusInternalServerError)
		return fault, limited, true
	case HTTP429:
		if c.RetryAfter != "" {
			w.Header().Set("Retry-After", c.RetryAfter)
		}
		http.Error(w, "too many requests", http.StatusTooManyRequests)
		return fault, limited, true
	case Malformed:
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, truncated)
		return fault, limited, true
	case Stall:
		c.StallAnswer(r)
	case RateLimit:
		limited = true
	}
	return fault, limited, false
}

// StallAnswer waits as a stalled provider does: until the client hangs up or StallFor passes.
func (c *Controls) StallAnswer(r *http.Request) {
	d := c.StallFor
	if d == 0 {
		d = time.Minute
	}
	ctx, cancel := context.WithTimeout(r.Context(), d)
	defer cancel()
	<-ctx.Done()
}

// Server serves a sandbox's handler over real HTTP on a loopback port. Sandboxes embed it.
type Server struct {
	srv *http.Server
	url string
}

// Serve serves h on addr ("127.0.0.1:0" for any free port) until Close.
func (s *Server) Serve(addr string, h http.Handler) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	s.url = "http://" + ln.Addr().String()
	s.srv = &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = s.srv.Serve(ln) }()
	return nil
}

// URL is the server's base URL.
func (s *Server) URL() string { return s.url }

// Close stops the server, cutting stalled answers short.
func (s *Server) Close() error {
	if s.srv == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := s.srv.Shutdown(ctx); err != nil {
		return s.srv.Close()
	}
	return nil
}

// Step is one point of an order's status timeline: the status holds from After (since the
// timeline started) until the next step's.
type Step struct {
	After  time.Duration
	Status string
}

// Clock is when an order's timeline starts: when the order was put, or, for a demo order that
// should move on while a person watches, at its first query.
type Clock struct {
	start   time.Time
	queried bool
}

// Put starts the timeline at now.
func (c *Clock) Put(now time.Time) { c.start, c.queried = now, false }

// Query notes a query at now; with fromFirstQuery the first one restarts the timeline.
func (c *Clock) Query(now time.Time, fromFirstQuery bool) {
	if fromFirstQuery && !c.queried {
		c.start = now
	}
	c.queried = true
}

// Since is how long the timeline has run at now.
func (c *Clock) Since(now time.Time) time.Duration { return now.Sub(c.start) }

// StatusAt is the status steps give at now, and when it began.
func (c *Clock) StatusAt(steps []Step, now time.Time) (string, time.Time) {
	st, at := steps[0].Status, c.start
	for _, step := range steps {
		if now.Sub(c.start) >= step.After {
			st, at = step.Status, c.start.Add(step.After)
		}
	}
	return st, at
}
