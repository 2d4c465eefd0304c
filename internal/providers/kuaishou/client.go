package kuaishou

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"path"
	"strings"
	"sync/atomic"
	"time"

	"github.com/paystatus/orderstatus/internal/config"
	"github.com/paystatus/orderstatus/internal/events"
	"github.com/paystatus/orderstatus/internal/providers"
)

// Name is the provider's subject token.
const Name = "kuaishou"

// endpoint is one query endpoint and the names of its fields.
type endpoint struct {
	path      string // below base_url
	noField   string // request field carrying the merchant number
	infoField string // answer field carrying the record
}

var endpoints = map[string]endpoint{
	events.KindPayment:    {"/openapi/mp/developer/epay/query_order", "out_order_no", "payment_info"},
	events.KindSettlement: {"/openapi/mp/developer/epay/query_settle", "out_settle_no", "settle_info"},
	events.KindRefund:     {"/openapi/mp/developer/epay/query_refund", "out_refund_no", "refund_info"},
}

// validOrderNo reports whether s has the documented form of out_order_no / out_settle_no /
// out_refund_no: 6 to 32 of [0-9A-Za-z_*-]. (A loop, not a regexp: it runs on every request.)
func validOrderNo(s string) bool {
	if len(s) < 6 || len(s) > 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' || c == '*' || c == '-') {
			return false
		}
	}
	return true
}

// Client queries Kuaishou for the configured apps.
type Client struct {
	baseURL string
	http    *providers.HTTPClient
	qps     int
	codes   providers.Codes
	apps    map[string]*app
	now     func() time.Time
}

type app struct {
	id     string
	secret string
	tokens *tokenSource
	urls   atomic.Pointer[queryURLs]
	// rateKeys are the app's rate-limit keys by kind, made once.
	rateKeys map[string]string
}

// queryURLs are an app's query URLs, by kind, with one access token in their query strings.
type queryURLs struct {
	token  string
	byKind map[string]string
}

// url is the URL of the app's query of kind with token: the query string as url.Values
// encodes it (keys sorted). The URLs are made again only when the token changes.
func (a *app) url(base, kind, token string) string {
	u := a.urls.Load()
	if u == nil || u.token != token {
		u = &queryURLs{token: token, byKind: make(map[string]string, len(endpoints))}
		for k, ep := range endpoints {
			u.byKind[k] = base + ep.path + "?access_token=" + url.QueryEscape(token) + "&app_id=" + url.QueryEscape(a.id)
		}
		a.urls.Store(u)
	}
	return u.byKind[kind]
}

// appendBody appends a query's body to dst: the merchant's number and the signature, as
// encoding/json writes a map of the two (keys sorted).
func appendBody(dst []byte, a *app, ep endpoint, orderNo string) []byte {
	dst = append(dst, `{"`...)
	dst = append(dst, ep.noField...)
	dst = append(dst, `":`...)
	dst = events.AppendJSONString(dst, orderNo)
	dst = append(dst, `,"sign":"`...)
	dst = appendQuerySign(dst, a.secret, a.id, ep.noField, orderNo)
	return append(dst, `"}`...)
}

// Option changes a Client.
type Option func(*Client)

// WithClock sets the clock (tests).
func WithClock(now func() time.Time) Option { return func(c *Client) { c.now = now } }

// New builds a client from the provider's configuration.
func New(cfg config.Provider, opts ...Option) (*Client, error) {
	codes, err := providers.NewCodes(Name, CodeSuccess, DefaultCodeClasses, cfg.ResultCodes)
	if err != nil {
		return nil, err
	}
	c := &Client{
		baseURL: strings.TrimRight(cfg.BaseURL, "/"),
		http:    providers.NewHTTPClient(cfg.Timeout),
		qps:     cfg.QPS,
		codes:   codes,
		apps:    map[string]*app{},
		now:     time.Now,
	}
	for _, o := range opts {
		o(c)
	}
	for _, a := range cfg.Apps {
		keys := make(map[string]string, len(endpoints))
		for kind := range endpoints {
			keys[kind] = rateKey(a.AppID, kind)
		}
		c.apps[a.AppID] = &app{
			id:       a.AppID,
			secret:   a.AppSecret.Reveal(),
			tokens:   &tokenSource{client: c.http, baseURL: c.baseURL, appID: a.AppID, secret: a.AppSecret.Reveal(), now: c.now},
			rateKeys: keys,
		}
	}
	return c, nil
}

// Name implements providers.Provider.
func (c *Client) Name() string { return Name }

// SupportsKind implements providers.Provider.
func (c *Client) SupportsKind(kind string) bool { _, ok := endpoints[kind]; return ok }

// HasApp implements providers.Provider.
func (c *Client) HasApp(appID string) bool { _, ok := c.apps[appID]; return ok }

// Validate implements providers.Provider: Kuaishou finds orders by the merchant's number only.
func (c *Client) Validate(q providers.Query) error {
	if q.OrderNo == "" {
		return &events.PayloadError{Reason: events.ReasonInvalidField, Field: "order_no", Msg: "is required for kuaishou (provider_order_no cannot be queried)"}
	}
	if !validOrderNo(q.OrderNo) {
		return &events.PayloadError{Reason: events.ReasonInvalidField, Field: "order_no", Msg: "must be 6 to 32 letters, digits, _, - or * for kuaishou"}
	}
	return nil
}

// OrderKey implements providers.OrderKeyer: Kuaishou's orders are keyed by the merchant's
// number, which every query carries.
func (c *Client) OrderKey(q providers.Query) string { return q.OrderNo }

// RateLimit implements providers.Provider: Kuaishou limits each app on each endpoint.
func (c *Client) RateLimit(q providers.Query) (string, int) {
	if a := c.apps[q.AppID]; a != nil {
		if key, ok := a.rateKeys[q.Kind]; ok {
			return key, c.qps
		}
	}
	return rateKey(q.AppID, q.Kind), c.qps
}

// rateKey is the key of an app's limit on the endpoint of kind.
func rateKey(appID, kind string) string {
	return Name + "/" + appID + "/" + path.Base(endpoints[kind].path)
}

// Prepare implements providers.Preparer: it has the app's access token fetched, if there is
// no valid one, before the caller takes a rate slot for the query.
func (c *Client) Prepare(ctx context.Context, q providers.Query) error {
	a := c.apps[q.AppID]
	if a == nil {
		return nil // Query says what is wrong
	}
	_, err := a.tokens.get(ctx)
	return err
}

// Query implements providers.Provider. A refused access token is forgotten, so the next
// query fetches a new one.
func (c *Client) Query(ctx context.Context, q providers.Query) (providers.Result, error) {
	a, ok := c.apps[q.AppID]
	ep, known := endpoints[q.Kind]
	if !ok || !known {
		return providers.Result{}, &providers.Error{Provider: Name, Class: providers.Permanent, Message: fmt.Sprintf("no app %q or kind %q", q.AppID, q.Kind)}
	}
	token, err := a.tokens.get(ctx)
	if err != nil {
		return providers.Result{}, err
	}
	res, err := c.call(ctx, a, ep, q, token)
	if err != nil && providers.Classify(err) == providers.TokenInvalid {
		a.tokens.invalidate(token)
	}
	return res, err
}

// answer is an answer of the query endpoints, decoded in one pass with its record. The record
// arrives as a JSON object or as a JSON string holding one; as an object it is decoded with the
// answer (any, with numbers kept as their text), as a string it is decoded after.
type answer struct {
	Result   json.Number `json:"result"`
	ErrorMsg string      `json:"error_msg"`
	Payment  any         `json:"payment_info"`
	Settle   any         `json:"settle_info"`
	Refund   any         `json:"refund_info"`
}

func (c *Client) call(ctx context.Context, a *app, ep endpoint, q providers.Query, token string) (providers.Result, error) {
	var bodyArray [256]byte // on the stack: Post copies the body
	body := appendBody(bodyArray[:0], a, ep, q.OrderNo)
	return providers.PostJSON(ctx, c.http, Name, a.url(c.baseURL, q.Kind, token), body, func(answer []byte) (providers.Result, error) {
		return c.parseAnswer(q, ep, answer, c.now())
	})
}

// parseAnswer reads an answer body. Every failure is a classified *providers.Error.
func (c *Client) parseAnswer(q providers.Query, ep endpoint, raw []byte, observed time.Time) (providers.Result, error) {
	ans, ok := readAnswer(raw, ep)
	if !ok {
		var err error
		if ans, err = decodeAnswer(raw); err != nil {
			return providers.Result{}, providers.Malformed(Name, "not JSON: %v", err)
		}
	}
	if err := c.codes.Check(ans.Result, ans.ErrorMsg); err != nil {
		return providers.Result{}, err
	}
	var info any
	switch ep.infoField {
	case "payment_info":
		info = ans.Payment
	case "settle_info":
		info = ans.Settle
	default:
		info = ans.Refund
	}
	fields, err := record(info)
	if err != nil {
		return providers.Result{}, providers.Malformed(Name, "%s: %v", ep.infoField, err)
	}
	res, err := transform(q, fields)
	if err != nil {
		return providers.Result{}, providers.Malformed(Name, "%s: %v", ep.infoField, err)
	}
	expandExtraInfo(res.Details)
	res.ObservedAt = observed.UTC()
	return res, nil
}

// answerFields are the answer's fields, in the order of answer's.
var answerFields = []string{"result", "error_msg", "payment_info", "settle_info", "refund_info"}

// readAnswer reads an answer in one pass (providers.JSONReader), the record of ep's kind with
// it, as decodeAnswer does; ok is false for an answer it leaves to decodeAnswer. The records
// of the other kinds are checked and skipped; what follows the answer is not read.
func readAnswer(raw []byte, ep endpoint) (ans answer, ok bool) {
	r := providers.NewJSONReader(raw, fieldNames)
	ok = r.Object(answerFields, func(i int) (ok bool) {
		switch {
		case i == 0:
			ans.Result, ok = r.Number()
		case i == 1:
			ans.ErrorMsg, ok = r.String()
		case i == 2 && ep.infoField == "payment_info":
			ans.Payment, ok = r.Value()
		case i == 3 && ep.infoField == "settle_info":
			ans.Settle, ok = r.Value()
		case i == 4 && ep.infoField == "refund_info":
			ans.Refund, ok = r.Value()
		default:
			ok = r.Skip()
		}
		return ok
	})
	return ans, ok
}

// decodeAnswer reads an answer with encoding/json.
func decodeAnswer(raw []byte) (answer, error) {
	var ans answer
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	err := d.Decode(&ans)
	return ans, err
}
