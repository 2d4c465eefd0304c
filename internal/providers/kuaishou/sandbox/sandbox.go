package sandbox

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/paystatus/orderstatus/internal/events"
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

func (s *Sandbox) serveToken(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		fail(w, codeInvalidParam, "参数有误")
		return
	}
	if s.TokenDelay > 0 {
		select {
		case <-time.After(s.TokenDelay):
		case <-r.Context().Done():
			return
		}
	}
	appID, secret := r.Form.Get("app_id"), r.Form.Get("app_secret")
	if appID == "" || secret == "" || r.Form.Get("grant_type") != "client_credentials" {
		fail(w, codeInvalidParam, "参数有误,需要检查参数是否为空或有误")
		return
	}
	s.mu.Lock()
	a := s.apps[appID]
	if a == nil || a.secret != secret {
		s.mu.Unlock()
		fail(w, codeAuthFailed, "验证出错,需要检查app_id和app_secret")
		return
	}
	var b [24]byte
	_, _ = rand.Read(b[:])
	token := "ChFvYXV0aC5hY2Nlc3NUb2tlbh" + hex.EncodeToString(b[:])
	a.tokens[token] = time.Now().Add(s.TokenTTL)
	s.tokenFetches[appID]++
	ttl := s.TokenTTL
	hold, held := s.tokenHold, s.tokenHeld
	s.mu.Unlock()
	if hold != nil {
		select {
		case held <- token:
		default:
		}
		select {
		case <-hold:
		case <-r.Context().Done():
			return
		}
	}
	writeJSON(w, map[string]any{"result": codeSuccess, "access_token": token, "expires_in": int64(ttl / time.Second), "token_type": "bearer"})
}

func (s *Sandbox) serveQuery(w http.ResponseWriter, r *http.Request, kind string, q query) {
	appID, token := r.URL.Query().Get("app_id"), r.URL.Query().Get("access_token")
	now := time.Now()
	fault, limited, answered := s.Arrive(w, r, appID, appID+q.path, `{"result":1,"`+q.info+`":{"pay_status":"SUCC`, now)
	switch {
	case answered:
		return
	case fault == sandboxkit.ExpiredToken:
		s.ExpireTokens(appID)
	case fault == sandboxkit.BadSignature:
		// Kuaishou's answers carry no signature; the request's is refused instead, as if the
		// secret had changed.
		fail(w, codeSignatureInvalid, "签名校验失败")
		return
	case fault == sandboxkit.NotFound:
		fail(w, codeOrderNotFound, "订单不存在")
		return
	}

	s.mu.Lock()
	a := s.apps[appID]
	var secret string
	tokenOK := false
	if a != nil {
		secret = a.secret
		exp, ok := a.tokens[token]
		tokenOK = ok && now.Before(exp)
	}
	s.mu.Unlock()

	switch {
	case !strings.HasPrefix(r.Header.Get("Content-Type"), "application/json"):
		fail(w, codeInvalidParam, "Content-Type must be application/json")
		return
	case a == nil:
		fail(w, codeInvalidParam, "app_id 不存在")
		return
	case !tokenOK:
		fail(w, codeTokenInvalid, "access_token 无效或已过期")
		return
	case limited:
		fail(w, codeRateLimited, "请求过于频繁")
		return
	}
	var body map[string]string
	raw, err := io.ReadAll(io.LimitReader(r.Body, 1<<16))
	if err != nil || json.Unmarshal(raw, &body) != nil {
		fail(w, codeInvalidParam, "body 不是合法的 JSON")
		return
	}
	no := body[q.numField]
	if !orderNoForm.MatchString(no) {
		fail(w, codeInvalidParam, q.numField+" 参数有误")
		return
	}
	fields := map[string]string{"app_id": appID}
	for k, v := range body {
		fields[k] = v
	}
	if body["sign"] == "" || sign(fields, secret) != body["sign"] {
		fail(w, codeSignatureInvalid, "签名校验失败")
		return
	}
	s.mu.Lock()
	o := s.orders[orderKey(appID, kind, no)]
	var record map[string]any
	if o != nil {
		o.clock.Query(now, o.ClockFromFirstQuery)
		record = o.record(now)
	}
	s.mu.Unlock()
	if o == nil {
		fail(w, codeOrderNotFound, "订单不存在")
		return
	}
	var info any = record
	if o.InfoAsJSONString {
		b, _ := json.Marshal(record)
		info = string(b)
	}
	writeJSON(w, map[string]any{"result": codeSuccess, "error_msg": "success", q.info: info})
}

// status is the order's status at now and when it took it.
func (o *Order) status(now time.Time) (string, time.Time) {
	return o.clock.StatusAt(o.Steps, now)
}

func (o *Order) record(now time.Time) map[string]any {
	st, since := o.status(now)
	rec := map[string]any{}
	for k, v := range o.Fields {
		rec[k] = v
	}
	rec["ks_order_no"] = o.KsOrderNo
	switch o.Kind {
	case events.KindPayment:
		rec["out_order_no"] = o.OrderNo
		rec["total_amount"] = o.Amount
		rec["pay_status"] = st
		rec["pay_time"] = int64(0)
		rec["pay_channel"] = "UNKNOWN"
		if st == "SUCCESS" {
			rec["pay_time"] = since.UnixMilli()
			rec["pay_channel"] = o.PayChannel
		}
		if _, ok := rec["extra_info"]; !ok {
			rec["extra_info"] = ""
		}
	case events.KindSettlement:
		rec["settle_no"] = o.OrderNo
		rec["settle_amount"] = o.Amount
		rec["settle_status"] = st
		rec["ks_settle_no"] = o.KsRefNo
	case events.KindRefund:
		rec["refund_no"] = o.OrderNo
		rec["refund_amount"] = o.Amount
		rec["refund_status"] = st
		rec["ks_refund_no"] = o.KsRefNo
	}
	return rec
}
