package sandbox

import (
	"encoding/json"
	"net/http"
	"sync"
	"time"

	"github.com/paystatus/orderstatus/internal/providers/sandboxkit"
)

// Sandbox is a stand-in for open.kuaishou.com. It behaves like the documented API: it issues
// access tokens (a new one leaves the old valid), checks the access token, the signature and
// the order number of every query, enforces the QPS limit per app and endpoint, and answers
// with orders whose status moves on over time. It records every call so tests can count them.
type Sandbox struct {
	// TokenTTL is the life of an access token (default 48h).
	TokenTTL time.Duration
	// TokenDelay holds every access-token answer this long, as a slow token endpoint does.
	TokenDelay time.Duration

	// Controls holds the QPS limit (per app and endpoint; 0 means none), switches fault modes
	// on per app and logs calls.
	sandboxkit.Controls
	// Server serves the API over HTTP: URL and Close come from it.
	sandboxkit.Server

	mu           sync.Mutex
	apps         map[string]*app
	orders       map[string]*Order
	tokenFetches map[string]int
	// tokenHold, while set, holds every access-token answer after the token is issued, until
	// it is closed; tokenHeld is told each token held (see HoldTokenAnswers).
	tokenHold chan struct{}
	tokenHeld chan string
	notices   []Notice // the notifications Notify made, in order
}

type app struct {
	secret string
	tokens map[string]time.Time // token -> expiry
}

// Order is one payment, settlement or refund in the sandbox.
type Order struct {
	AppID   string
	Kind    string // events.KindPayment, KindSettlement or KindRefund
	OrderNo string // out_order_no / out_settle_no / out_refund_no
	// Steps is the status timeline: each status holds from its After (since the order was put)
	// until the next step's. The first step should have After 0.
	Steps []Step
	// Amount is total_amount (payment), settle_amount (settlement) or refund_amount (refund).
	Amount           int64
	KsOrderNo        string
	KsRefNo          string // ks_settle_no / ks_refund_no
	PayChannel       string // shown once the payment succeeded; UNKNOWN before
	InfoAsJSONString bool   // answer the record as a JSON string rather than an object
	// ClockFromFirstQuery starts the timeline at the order's first query rather than when it
	// was put, so a demo order moves on while a person watches.
	ClockFromFirstQuery bool
	// Fields are further record fields, as the provider names them (extra_info, open_id, ...).
	Fields map[string]any

	clock sandboxkit.Clock
}

// Step is one point of an order's status timeline.
type Step = sandboxkit.Step

// New returns an empty sandbox limited to qps calls per app and endpoint.
func New(qps int) *Sandbox {
	return &Sandbox{
		Controls:     sandboxkit.Controls{QPS: qps},
		TokenTTL:     48 * time.Hour,
		apps:         map[string]*app{},
		orders:       map[string]*Order{},
		tokenFetches: map[string]int{},
	}
}

// AddApp registers an app and its secret.
func (s *Sandbox) AddApp(appID, secret string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.apps[appID] = &app{secret: secret, tokens: map[string]time.Time{}}
}

// PutOrder adds or replaces an order; its timeline starts now.
func (s *Sandbox) PutOrder(o Order) {
	s.mu.Lock()
	defer s.mu.Unlock()
	o.clock.Put(time.Now())
	if len(o.Steps) == 0 {
		o.Steps = []Step{{Status: "PROCESSING"}}
	}
	s.orders[orderKey(o.AppID, o.Kind, o.OrderNo)] = &o
}

// SetStatus moves an order to status from now on.
func (s *Sandbox) SetStatus(appID, kind, orderNo, status string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if o := s.orders[orderKey(appID, kind, orderNo)]; o != nil {
		o.Steps = append(o.Steps, Step{After: o.clock.Since(time.Now()), Status: status})
	}
}

// ExpireTokens makes every access token issued to appID invalid, as if they had expired.
func (s *Sandbox) ExpireTokens(appID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if a := s.apps[appID]; a != nil {
		a.tokens = map[string]time.Time{}
	}
}

// TokenFetches is how many access tokens appID was issued.
func (s *Sandbox) TokenFetches(appID string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tokenFetches[appID]
}

// HoldTokenAnswers makes the access-token endpoint issue (and count) each access token as
// before but hold its answer until release is called, so a test can act between the issue of
// a token and the client's receipt of it (expire the tokens, say, as the provider would while
// the answer is on its way). Each token held is sent on issued (buffered; a token that does
// not fit is not sent). After release, answers go out at once again. The client's timeout
// still applies to a held answer.
func (s *Sandbox) HoldTokenAnswers() (issued <-chan string, release func()) {
	hold, held := make(chan struct{}), make(chan string, 64)
	s.mu.Lock()
	s.tokenHold, s.tokenHeld = hold, held
	s.mu.Unlock()
	var once sync.Once
	return held, func() {
		once.Do(func() {
			s.mu.Lock()
			if s.tokenHold == hold {
				s.tokenHold, s.tokenHeld = nil, nil
			}
			s.mu.Unlock()
			close(hold)
		})
	}
}

// Calls returns the arrival times of every query call for appID and kind, in order.
func (s *Sandbox) Calls(appID, kind string) []time.Time {
	return s.Controls.Calls(appID + queries[kind].path)
}

func orderKey(appID, kind, no string) string { return appID + "|" + kind + "|" + no }

// Start serves the sandbox on addr ("127.0.0.1:0" for any free port).
func (s *Sandbox) Start(addr string) error { return s.Serve(addr, s.Handler()) }

// Handler serves the sandbox's API.
func (s *Sandbox) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc(tokenPath, s.serveToken)
	for kind, q := range queries {
		mux.HandleFunc("POST "+q.path, func(w http.ResponseWriter, r *http.Request) { s.serveQuery(w, r, kind, q) })
	}
	return mux
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json;charset=UTF-8")
	_ = json.NewEncoder(w).Encode(v)
}

func fail(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, map[string]any{"result": code, "error_msg": msg})
}
