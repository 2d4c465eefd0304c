package kudian

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/paystatus/orderstatus/internal/config"
	"github.com/paystatus/orderstatus/internal/events"
	"github.com/paystatus/orderstatus/internal/providers"
)

// Name is the provider's subject token.
const Name = "kudian"

// queryPath is the cashier query endpoint, below base_url.
const queryPath = "/api/v2/cashier/query"

// maxNoLen is the documented String(64) of pay_no and out_trade_no.
const maxNoLen = 64

// Client queries Kudian for the configured apps.
type Client struct {
	queryURL   string
	http       *providers.HTTPClient
	qps        int
	codes      providers.Codes
	apps       map[string]config.App
	rateKeys   map[string]string // by app, made once
	includePII bool
	now        func() time.Time
}

// Option changes a Client.
type Option func(*Client)

// WithPII puts member phone and name in event details (events.include_pii).
func WithPII(include bool) Option { return func(c *Client) { c.includePII = include } }

// New builds a client from the provider's configuration; every app needs its token.
func New(cfg config.Provider, opts ...Option) (*Client, error) {
	codes, err := providers.NewCodes(Name, CodeSuccess, DefaultCodeClasses, cfg.ResultCodes)
	if err != nil {
		return nil, err
	}
	c := &Client{
		queryURL: strings.TrimRight(cfg.BaseURL, "/") + queryPath, http: providers.NewHTTPClient(cfg.Timeout), qps: cfg.QPS,
		codes: codes, apps: map[string]config.App{}, rateKeys: map[string]string{}, now: time.Now,
	}
	for i, a := range cfg.Apps {
		if a.Token == "" {
			return nil, &config.Error{Key: fmt.Sprintf("providers.%s.apps[%d].token", Name, i), Msg: "is required"}
		}
		c.apps[a.AppID] = a
		c.rateKeys[a.AppID] = rateKey(a.AppID)
	}
	for _, o := range opts {
		o(c)
	}
	return c, nil
}

// Name implements providers.Provider.
func (c *Client) Name() string { return Name }

// SupportsKind implements providers.Provider: the cashier query knows payments only.
func (c *Client) SupportsKind(kind string) bool { return kind == events.KindPayment }

// HasApp implements providers.Provider.
func (c *Client) HasApp(appID string) bool { _, ok := c.apps[appID]; return ok }

// Validate implements providers.Provider.
func (c *Client) Validate(q providers.Query) error {
	for _, f := range [...]struct{ name, value string }{{"order_no", q.OrderNo}, {"provider_order_no", q.ProviderOrderNo}} {
		if len(f.value) > maxNoLen {
			return &events.PayloadError{Reason: events.ReasonInvalidField, Field: f.name, Msg: fmt.Sprintf("is longer than the %d characters kudian allows", maxNoLen)}
		}
	}
	return nil
}

// appendBizContent appends the query's inner payload to dst, as encoding/json writes
// {"pay_no"|"out_trade_no": …, "is_fresh": …}: pay_no is preferred, as the documents advise (an
// out_trade_no used for several orders finds only the latest); an empty number is left out.
func appendBizContent(dst []byte, q providers.Query) []byte {
	dst = append(dst, '{')
	switch {
	case q.ProviderOrderNo != "":
		dst = events.AppendJSONString(append(dst, `"pay_no":`...), q.ProviderOrderNo)
		dst = append(dst, ',')
	case q.OrderNo != "":
		dst = events.AppendJSONString(append(dst, `"out_trade_no":`...), q.OrderNo)
		dst = append(dst, ',')
	}
	dst = strconv.AppendBool(append(dst, `"is_fresh":`...), q.Refresh)
	return append(dst, '}')
}

// appendBody appends the query's body to dst, its fields in the order of their names (as
// encoding/json writes a map's), the timestamp a number; now is the timestamp.
func appendBody(dst []byte, app config.App, q providers.Query, now time.Time) []byte {
	var bizArray [192]byte
	var tsArray [20]byte
	biz := appendBizContent(bizArray[:0], q)
	ts := strconv.AppendInt(tsArray[:0], now.Unix(), 10)
	token := app.Token.Reveal()
	dst = events.AppendJSONString(append(dst, `{"biz_content":`...), biz)
	dst = events.AppendJSONString(append(dst, `,"open_app_id":`...), app.AppID)
	dst = append(dst, `,"sign":"`...)
	dst = appendQuerySign(dst, app.AppSecret.Reveal(), biz, app.AppID, ts, token)
	dst = append(dst, `","sign_type":"MD5","timestamp":`...)
	dst = append(dst, ts...)
	dst = events.AppendJSONString(append(dst, `,"token":`...), token)
	return append(dst, '}')
}

// RateLimit implements providers.Provider: one endpoint, limited per app.
func (c *Client) RateLimit(q providers.Query) (string, int) {
	if key, ok := c.rateKeys[q.AppID]; ok {
		return key, c.qps
	}
	return rateKey(q.AppID), c.qps
}

// rateKey is the key of an app's limit.
func rateKey(appID string) string { return Name + "/" + appID + "/query" }

// Query implements providers.Provider.
func (c *Client) Query(ctx context.Context, q providers.Query) (providers.Result, error) {
	app, ok := c.apps[q.AppID]
	if !ok || !c.SupportsKind(q.Kind) {
		return providers.Result{}, &providers.Error{Provider: Name, Class: providers.Permanent, Message: fmt.Sprintf("no app %q or kind %q", q.AppID, q.Kind)}
	}
	var bodyArray [512]byte // on the stack: Post copies the body
	body := appendBody(bodyArray[:0], app, q, c.now())
	return providers.PostJSON(ctx, c.http, Name, c.queryURL, body, func(answer []byte) (providers.Result, error) {
		return c.parseAnswer(q, app.AppSecret.Reveal(), answer, c.now())
	})
}

type envelope struct {
	Result string `json:"result"`
	Sign   string `json:"sign"`
}

// inner is the signed result inside the envelope, read in one pass with its data record
// (any, with numbers kept as their text).
type inner struct {
	Code json.Number `json:"code"`
	Msg  string      `json:"msg"`
	Data any         `json:"data"`
}

// parseAnswer verifies and reads an answer body. A signature that does not verify is an
// error, never data. Every failure is a classified *providers.Error.
func (c *Client) parseAnswer(q providers.Query, secret string, raw []byte, observed time.Time) (providers.Result, error) {
	env, ok := readEnvelope(raw)
	if !ok {
		var err error
		if env, err = decodeEnvelope(raw); err != nil {
			return providers.Result{}, providers.Malformed(Name, "not JSON: %v", err)
		}
	}
	if env.Result == "" {
		return providers.Result{}, providers.Malformed(Name, "no result")
	}
	if !answerSigned(env.Result, env.Sign, secret) {
		return providers.Result{}, &providers.Error{Provider: Name, Class: providers.Retryable, Message: "answer signature does not verify; answer discarded"}
	}
	in, ok := readInner(env.Result)
	if !ok {
		var err error
		if in, err = decodeInner(env.Result); err != nil {
			return providers.Result{}, providers.Malformed(Name, "result is not JSON: %v", err)
		}
	}
	if err := c.codes.Check(in.Code, in.Msg); err != nil {
		return providers.Result{}, err
	}
	res, err := transform(q, in.Data, c.includePII)
	if err != nil {
		return providers.Result{}, providers.Malformed(Name, "data: %v", err)
	}
	res.ObservedAt = observed.UTC()
	return res, nil
}

var (
	envelopeFields = []string{"result", "sign"}
	innerFields    = []string{"code", "msg", "data"}
)

// readEnvelope reads an answer's envelope in one pass (providers.JSONReader), as json.Unmarshal
// does (nothing but white space may follow it); ok is false for one it leaves to json.Unmarshal.
func readEnvelope(raw []byte) (env envelope, ok bool) {
	r := providers.NewJSONReader(raw, nil)
	ok = r.Object(envelopeFields, func(i int) (ok bool) {
		switch i {
		case 0:
			env.Result, ok = r.String()
		case 1:
			env.Sign, ok = r.String()
		default:
			ok = r.Skip()
		}
		return ok
	})
	return env, ok && r.End()
}

// decodeEnvelope reads an answer's envelope with encoding/json.
func decodeEnvelope(raw []byte) (envelope, error) {
	var env envelope
	err := json.Unmarshal(raw, &env)
	return env, err
}

// readInner reads the signed result in one pass, its data record with it, as decodeInner does;
// ok is false for a result it leaves to decodeInner. What follows the result is not read.
func readInner(result string) (in inner, ok bool) {
	r := providers.NewJSONReader(result, fieldNames)
	ok = r.Object(innerFields, func(i int) (ok bool) {
		switch i {
		case 0:
			in.Code, ok = r.Number()
		case 1:
			in.Msg, ok = r.String()
		case 2:
			in.Data, ok = r.Value()
		default:
			ok = r.Skip()
		}
		return ok
	})
	return in, ok
}

// decodeInner reads the signed result with encoding/json.
func decodeInner(result string) (inner, error) {
	var in inner
	d := json.NewDecoder(strings.NewReader(result))
	d.UseNumber()
	err := d.Decode(&in)
	return in, err
}
