package kuaishou

import (
	"context"
	"encoding/json"
	"errors"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/paystatus/orderstatus/internal/config"
	"github.com/paystatus/orderstatus/internal/events"
	"github.com/paystatus/orderstatus/internal/providers"
	"github.com/paystatus/orderstatus/internal/providers/kuaishou/sandbox"
	"github.com/paystatus/orderstatus/internal/providers/providertest"
)

func TestSignContractVector(t *testing.T) {
	got := Sign(map[string]string{"app_id": "ks707065143182458884", "out_order_no": "1711619867139contractDemo",
		"access_token": "ignored", "sign": "ignored", "empty": ""}, "9VfzaT-7Jf1bBHv-veFZfg")
	if got != "360a9add284bb4e2050673132418a356" {
		t.Fatalf("sign = %s", got)
	}
}

// A query's body is, byte for byte, what encoding/json writes of a map of the merchant's number
// and its signature by Sign, and its URL carries the token and app as url.Values encodes them.
func TestRequestBodyAndURL(t *testing.T) {
	for _, v := range []string{"1711619867139contractDemo", `<a href="x">&amp;</a>`, "会员\u2028\t\x00\"\\", "\xff\xfe", "\x7f", ""} {
		a := &app{id: "ks" + v, secret: v + "s"}
		for kind, ep := range endpoints {
			want, _ := json.Marshal(map[string]string{ep.noField: v, "sign": Sign(map[string]string{"app_id": a.id, ep.noField: v}, a.secret)})
			if got := appendBody(nil, a, ep, v); string(got) != string(want) {
				t.Errorf("%s %q:\n body %s\n want %s", kind, v, got, want)
			}
			for _, token := range []string{"ChFvYXV0aC5hY2Nlc3NUb2tlbhJg", v + "+/= &"} {
				want := "http://p.invalid/base" + ep.path + "?" + url.Values{"access_token": {token}, "app_id": {a.id}}.Encode()
				if got := a.url("http://p.invalid/base", kind, token); got != want {
					t.Errorf("%s %q: url %s, want %s", kind, token, got, want)
				}
			}
		}
	}
}

func TestNormalizeStatusTable(t *testing.T) {
	for v, want := range map[string]events.Status{
		"PROCESSING": "pending", "SETTLE_PROCESSING": "pending", "REFUND_PROCESSING": "pending",
		"SUCCESS": "succeeded", "SETTLE_SUCCESS": "succeeded", "REFUND_SUCCESS": "succeeded",
		"FAILED": "failed", "SETTLE_FAILED": "failed", "REFUND_FAILED": "failed",
		"TIMEOUT": "timed_out", "UNKNOWN": "unknown", "UNKNOW": "unknown", "": "unknown", "weird": "unknown",
	} {
		if got := statuses.Normalize(v); got != want {
			t.Errorf("%q -> %q, want %q", v, got, want)
		}
	}
}

// docOrderNos are the developer's numbers that the document's example answers name, by kind:
// the parsing tests ask for these orders.
var docOrderNos = map[string]string{
	events.KindPayment: "1637808229728demo", events.KindSettlement: "234325456565", events.KindRefund: "1660811124083refund",
}

func mustParse(t *testing.T, kind, body string) providers.Result {
	t.Helper()
	c := mustNew(t, config.Provider{Timeout: time.Second})
	res, err := c.parseAnswer(providers.Query{Kind: kind, AppID: "a", OrderNo: docOrderNos[kind]}, endpoints[kind], []byte(body), time.Unix(100, 0))
	if err != nil {
		t.Fatalf("parseAnswer: %v", err)
	}
	return res
}

const docPayment = `{"total_amount": 1200, "pay_status": "SUCCESS", "pay_time": 1712753202906, "pay_channel": "WECHAT",
  "out_order_no": "1637808229728demo", "ks_order_no": "121112500031787702250",
  "extra_info":"{\"url\":\"\",\"item_type\":\"VIDEO\",\"item_id\":\"5239375269605736845\",\"author_id\":\"123\"}",
  "enable_promotion": true, "promotion_amount": 1, "open_id":"5b748c61ef280130c0656638ebd4eaa6", "order_status": 2}`

func TestParsePaymentObjectAndString(t *testing.T) {
	asString, _ := json.Marshal(docPayment)
	for name, body := range map[string]string{
		"object": `{"result":1,"error_msg":"","payment_info":` + docPayment + `}`,
		"string": `{"result":1,"error_msg":"","payment_info":` + string(asString) + `}`,
	} {
		t.Run(name, func(t *testing.T) {
			r := mustParse(t, events.KindPayment, body)
			if r.Status != events.StatusSucceeded || r.ProviderStatus != "SUCCESS" || r.Amount != 1200 ||
				r.Channel != events.ChannelWechat || r.ProviderOrderNo != "121112500031787702250" || r.ProviderRefNo != "" ||
				r.OrderKey != "1637808229728demo" || !r.PaidAt.Equal(time.UnixMilli(1712753202906)) || r.PaidAt.Location() != time.UTC {
				t.Fatalf("%+v", r)
			}
			extra, ok := r.Details["extra_info"].(map[string]any)
			if !ok || extra["item_id"] != "5239375269605736845" || extra["item_type"] != "VIDEO" {
				t.Fatalf("extra_info %#v", r.Details["extra_info"])
			}
			if r.Details["promotion_amount"] != int64(1) || r.Details["order_status"] != int64(2) || r.Details["enable_promotion"] != true ||
				r.Details["open_id"] != "5b748c61ef280130c0656638ebd4eaa6" {
				t.Fatalf("details %#v", r.Details)
			}
			for _, mapped := range []string{"pay_status", "total_amount", "out_order_no", "ks_order_no", "pay_time", "pay_channel"} {
				if _, ok := r.Details[mapped]; ok {
					t.Errorf("details repeats %s", mapped)
				}
			}
		})
	}
}

func TestParseSettlementAndRefund(t *testing.T) {
	s := mustParse(t, events.KindSettlement, `{"result":1,"settle_info":{"settle_no":"234325456565","total_amount":3234,"settle_amount":234,
		"settle_status":"SETTLE_PROCESSING","ks_order_no":"121120711774457276553","ks_settle_no":"321120700415719078553","promotion_amount":10,"developer_promotion_amount":20}}`)
	if s.Status != events.StatusPending || s.Amount != 234 || s.ProviderRefNo != "321120700415719078553" || s.Details["total_amount"] != int64(3234) ||
		s.Channel != events.ChannelUnknown || !s.PaidAt.IsZero() {
		t.Fatalf("%+v", s)
	}
	r := mustParse(t, events.KindRefund, `{"result":1,"refund_info":"{\"refund_no\":\"1660811124083refund\",\"refund_amount\":1,\"refund_status\":\"REFUND_SUCCESS\",\"ks_order_no\":\"122081801105480677436\",\"ks_refund_no\":\"222081811172813537436\",\"ks_refund_type\":\"保证金账户退款\"}"}`)
	if r.Status != events.StatusSucceeded || r.Amount != 1 || r.ProviderRefNo != "222081811172813537436" || r.Details["ks_refund_type"] != "保证金账户退款" {
		t.Fatalf("%+v", r)
	}
}

func TestAmountsToTheFen(t *testing.T) {
	for amount, want := range map[string]int64{`1200`: 1200, `"1200"`: 1200, `1200.0`: 1200, `0`: 0, `9007199254740991`: 9007199254740991, `123456789012345678`: 123456789012345678} {
		r := mustParse(t, events.KindPayment, `{"result":1,"payment_info":{"pay_status":"SUCCESS","total_amount":`+amount+`}}`)
		if r.Amount != want {
			t.Errorf("%s -> %d", amount, r.Amount)
		}
	}
}

func TestMalformedAnswersAreRetryable(t *testing.T) {
	c := mustNew(t, config.Provider{Timeout: time.Second})
	for name, body := range map[string]string{
		"not json":        `<html>`,
		"no info":         `{"result":1}`,
		"info not object": `{"result":1,"payment_info":[1]}`,
		"info bad string": `{"result":1,"payment_info":"{oops"}`,
		"no status":       `{"result":1,"payment_info":{"total_amount":1}}`,
		"fraction amount": `{"result":1,"payment_info":{"pay_status":"SUCCESS","total_amount":12.5}}`,
		"text amount":     `{"result":1,"payment_info":{"pay_status":"SUCCESS","total_amount":"12元"}}`,
		"status number":   `{"result":1,"payment_info":{"pay_status":{}}}`,
		"result text":     `{"result":"ok"}`,
	} {
		_, err := c.parseAnswer(providers.Query{Kind: events.KindPayment, OrderNo: "123456"}, endpoints[events.KindPayment], []byte(body), time.Now())
		var pe *providers.Error
		if !errors.As(err, &pe) || pe.Class != providers.Retryable || !strings.Contains(pe.Message, "malformed") {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestResultCodeClasses(t *testing.T) {
	c := mustNew(t, config.Provider{Timeout: time.Second, ResultCodes: map[string]string{"100200106": "permanent"}})
	for code, want := range map[string]providers.Class{
		"100200100": providers.Permanent, "100200102": providers.TokenInvalid, "100200104": providers.Permanent,
		"100200105": providers.RateLimited, "100200106": providers.Permanent, "999": providers.Retryable,
	} {
		_, err := c.parseAnswer(providers.Query{Kind: events.KindPayment}, endpoints[events.KindPayment], []byte(`{"result":`+code+`,"error_msg":"m"}`), time.Now())
		var pe *providers.Error
		if !errors.As(err, &pe) || pe.Class != want || pe.Code != code || pe.Message != "m" {
			t.Errorf("code %s: %v", code, err)
		}
	}
}

func startSandbox(t *testing.T, qps int) *sandbox.Sandbox {
	t.Helper()
	sb := sandbox.New(qps)
	sandbox.LoadDemo(sb)
	if err := sb.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sb.Close() })
	return sb
}

func mustNew(t testing.TB, cfg config.Provider, opts ...Option) *Client {
	t.Helper()
	c, err := New(cfg, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func newClient(t testing.TB, sb *sandbox.Sandbox, secret string, opts ...Option) *Client {
	return newClientTimeout(t, sb, secret, 2*time.Second, opts...)
}

func newClientTimeout(t testing.TB, sb *sandbox.Sandbox, secret string, timeout time.Duration, opts ...Option) *Client {
	return mustNew(t, config.Provider{BaseURL: sb.URL(), QPS: 1000, Timeout: timeout,
		Apps: []config.App{{AppID: sandbox.DemoAppID, AppSecret: config.Secret(secret)}}}, opts...)
}

// tokenClock is a client on a sandbox with 100 s tokens, on a clock the test moves, with a
// timeout long enough for the test to hold a token answer (sandbox.HoldTokenAnswers) for as
// long as a loaded machine needs.
type tokenClock struct {
	sb *sandbox.Sandbox
	c  *Client
	q  providers.Query

	mu  sync.Mutex
	now time.Time
}

func newTokenClock(t *testing.T) *tokenClock {
	tc := &tokenClock{sb: startSandbox(t, 0), now: time.Now(),
		q: providers.Query{Kind: events.KindPayment, AppID: sandbox.DemoAppID, OrderNo: sandbox.DemoOrderNo}}
	tc.sb.TokenTTL = 100 * time.Second
	tc.c = newClientTimeout(t, tc.sb, sandbox.DemoAppSecret, time.Minute, WithClock(func() time.Time {
		tc.mu.Lock()
		defer tc.mu.Unlock()
		return tc.now
	}))
	return tc
}

func (tc *tokenClock) advance(d time.Duration) {
	tc.mu.Lock()
	tc.now = tc.now.Add(d)
	tc.mu.Unlock()
}

// query makes one query and fails the test unless it succeeds.
func (tc *tokenClock) query(t *testing.T) {
	t.Helper()
	if _, err := tc.c.Query(context.Background(), tc.q); err != nil {
		t.Fatal(err)
	}
}

// served is the token the client hands a caller now (waiting, as a caller does, only if it
// has no valid one).
func (tc *tokenClock) served(t *testing.T) string {
	t.Helper()
	tok, err := tc.c.apps[sandbox.DemoAppID].tokens.get(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// fetches is how many tokens the sandbox issued.
func (tc *tokenClock) fetches() int { return tc.sb.TokenFetches(sandbox.DemoAppID) }

// tokenWait bounds the test's waits for a client or sandbox that is merely slow (a loaded
// machine): reaching it means the awaited thing is not coming.
const tokenWait = 30 * time.Second

func recvToken(t *testing.T, issued <-chan string, what string) string {
	t.Helper()
	select {
	case tok := <-issued:
		return tok
	case <-time.After(tokenWait):
		t.Fatalf("no token issued within %s: %s", tokenWait, what)
		return ""
	}
}

func TestQueryAgainstSandbox(t *testing.T) {
	sb := startSandbox(t, 0)
	c := newClient(t, sb, sandbox.DemoAppSecret)
	ctx := context.Background()
	for _, tc := range []struct {
		kind, no string
		status   events.Status
		amount   int64
	}{
		{events.KindPayment, sandbox.DemoOrderNo, events.StatusPending, 1200},
		{events.KindPayment, "1637808229728demo", events.StatusSucceeded, 990},
		{events.KindSettlement, sandbox.DemoOrderNo, events.StatusPending, 234},
		{events.KindRefund, "1660811124083refund", events.StatusPending, 1},
	} {
		res, err := c.Query(ctx, providers.Query{Kind: tc.kind, AppID: sandbox.DemoAppID, OrderNo: tc.no})
		if err != nil {
			t.Fatalf("%s %s: %v", tc.kind, tc.no, err)
		}
		if res.Status != tc.status || res.Amount != tc.amount {
			t.Errorf("%s %s: %+v", tc.kind, tc.no, res)
		}
	}
	sb.SetStatus(sandbox.DemoAppID, events.KindPayment, sandbox.DemoOrderNo, "SUCCESS")
	res, err := c.Query(ctx, providers.Query{Kind: events.KindPayment, AppID: sandbox.DemoAppID, OrderNo: sandbox.DemoOrderNo})
	if err != nil || res.Status != events.StatusSucceeded || res.Channel != events.ChannelWechat || res.PaidAt.IsZero() {
		t.Fatalf("after change: %v %+v", err, res)
	}
	_, err = c.Query(ctx, providers.Query{Kind: events.KindPayment, AppID: sandbox.DemoAppID, OrderNo: "no-such-order"})
	if pe := (*providers.Error)(nil); !errors.As(err, &pe) || pe.Class != providers.Permanent || pe.Code != "100200104" {
		t.Fatalf("unknown order: %v", err)
	}
	if n := sb.TokenFetches(sandbox.DemoAppID); n != 1 {
		t.Fatalf("token fetched %d times", n)
	}
}

func TestTokenOneFetchManyWaiters(t *testing.T) {
	sb := startSandbox(t, 0)
	c := newClient(t, sb, sandbox.DemoAppSecret)
	var wg sync.WaitGroup
	errs := make(chan error, 50)
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := c.Query(context.Background(), providers.Query{Kind: events.KindPayment, AppID: sandbox.DemoAppID, OrderNo: sandbox.DemoOrderNo})
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := sb.TokenFetches(sandbox.DemoAppID); n != 1 {
		t.Fatalf("50 concurrent calls fetched %d tokens", n)
	}
}

func TestTokenRefreshedBeforeExpiryAndAfterRefusal(t *testing.T) {
	tc := newTokenClock(t)
	tc.query(t)
	first := tc.served(t)
	tc.advance(79 * time.Second) // still inside 80% of the life
	tc.query(t)
	if n := tc.fetches(); n != 1 {
		t.Fatalf("fetches %d, want 1", n)
	}

	// Past 80%: refreshed in the background while the old one serves. The refresh's answer is
	// held until the query has returned: a query that waited for it would not return.
	tc.advance(2 * time.Second)
	issued, release := tc.sb.HoldTokenAnswers()
	defer release()
	done := make(chan error, 1)
	go func() { _, err := tc.c.Query(context.Background(), tc.q); done <- err }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(tokenWait):
		t.Fatal("the query waited for the refresh")
	}
	second := recvToken(t, issued, "the refresh past 80% of the life")
	if tok := tc.served(t); tok != first {
		t.Fatalf("while the refresh is held the client serves %q, want the old token", tok)
	}
	release()
	// The refresh is in once the client serves its token: the sandbox counting it says only
	// that it was issued, not that the client has read it.
	for deadline := time.Now().Add(tokenWait); tc.served(t) != second; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the client still serves the old token %s after the refresh was answered", tokenWait)
		}
	}
	if n := tc.fetches(); n != 2 {
		t.Fatalf("fetches %d, want 2", n)
	}

	tc.sb.ExpireTokens(sandbox.DemoAppID) // the provider refuses the cached token: it is dropped, the next query fetches one
	if _, err := tc.c.Query(context.Background(), tc.q); providers.Classify(err) != providers.TokenInvalid {
		t.Fatalf("refused token: %v", err)
	}
	tc.query(t)
	if n := tc.fetches(); n != 3 {
		t.Fatalf("fetches %d, want 3", n)
	}
}

// A refusal that lands while a refresh is under way: the token the refresh brings was issued
// before the refusal (here, revoked with the rest) and is not installed; the client fetches
// again and serves a token issued after the refusal, so the next query is not refused with the
// revoked token.
func TestRefusalDuringRefreshInstallsNoStaleToken(t *testing.T) {
	tc := newTokenClock(t)
	tc.query(t)
	tc.advance(81 * time.Second) // past 80% of the life: the next query starts a refresh
	issued, release := tc.sb.HoldTokenAnswers()
	defer release()
	tc.query(t) // served by the old token; the refresh's answer is held
	stale := recvToken(t, issued, "the refresh past 80% of the life")
	tc.sb.ExpireTokens(sandbox.DemoAppID) // revokes the old token and the one on its way
	if _, err := tc.c.Query(context.Background(), tc.q); providers.Classify(err) != providers.TokenInvalid {
		t.Fatalf("refused token: %v", err)
	}
	release() // the refresh now answers with the token issued before the refusal
	if tok := tc.served(t); tok == stale {
		t.Fatal("the client installed the token issued before the refusal")
	}
	tc.query(t)
	if n := tc.fetches(); n != 3 {
		t.Fatalf("fetches %d, want 3 (the first, the refresh, the one after the refusal)", n)
	}
}

func TestWrongSecret(t *testing.T) {
	sb := startSandbox(t, 0)
	c := newClient(t, sb, "wrong")
	_, err := c.Query(context.Background(), providers.Query{Kind: events.KindPayment, AppID: sandbox.DemoAppID, OrderNo: sandbox.DemoOrderNo})
	var pe *providers.Error
	if !errors.As(err, &pe) || pe.Code != "100200101" || pe.Class != providers.Retryable {
		t.Fatalf("%v", err)
	}
	if strings.Contains(err.Error(), "wrong") {
		t.Fatalf("secret in error: %v", err)
	}
}

func TestSandboxRateLimitAnswer(t *testing.T) {
	sb := startSandbox(t, 3)
	c := newClient(t, sb, sandbox.DemoAppSecret)
	limited := 0
	for range 10 {
		_, err := c.Query(context.Background(), providers.Query{Kind: events.KindPayment, AppID: sandbox.DemoAppID, OrderNo: sandbox.DemoOrderNo})
		if providers.Classify(err) == providers.RateLimited && err != nil {
			limited++
		}
	}
	if limited < 5 {
		t.Fatalf("only %d of 10 calls over a limit of 3 were refused", limited)
	}
}

func TestTransportErrorHidesToken(t *testing.T) {
	sb := startSandbox(t, 0)
	c := newClient(t, sb, sandbox.DemoAppSecret)
	if _, err := c.Query(context.Background(), providers.Query{Kind: events.KindPayment, AppID: sandbox.DemoAppID, OrderNo: sandbox.DemoOrderNo}); err != nil {
		t.Fatal(err)
	}
	sb.Close()
	_, err := c.Query(context.Background(), providers.Query{Kind: events.KindPayment, AppID: sandbox.DemoAppID, OrderNo: sandbox.DemoOrderNo})
	if err == nil || providers.Classify(err) != providers.Retryable || strings.Contains(err.Error(), "access_token") || strings.Contains(err.Error(), "ChFv") {
		t.Fatalf("%v", err)
	}
}

func TestValidate(t *testing.T) {
	c := mustNew(t, config.Provider{Timeout: time.Second})
	for no, ok := range map[string]bool{"1711619867139contractDemo": true, "ab*-_9": true, "short": false, "has space 1": false, strings.Repeat("1", 33): false, "": false} {
		err := c.Validate(providers.Query{OrderNo: no})
		if (err == nil) != ok {
			t.Errorf("%q: %v", no, err)
		}
	}
}

// Each app is limited on each endpoint, under a key naming both; an app not configured has
// its key too.
func TestRateLimitKeys(t *testing.T) {
	c := mustNew(t, config.Provider{Timeout: time.Second, QPS: 30, Apps: []config.App{{AppID: "ks1", AppSecret: "s"}}})
	for _, app := range []string{"ks1", "ks2"} {
		for kind, want := range map[string]string{events.KindPayment: "query_order", events.KindSettlement: "query_settle", events.KindRefund: "query_refund"} {
			if key, qps := c.RateLimit(providers.Query{Kind: kind, AppID: app}); key != "kuaishou/"+app+"/"+want || qps != 30 {
				t.Errorf("%s %s: %q %d", app, kind, key, qps)
			}
		}
	}
}

// FuzzParseAnswer: no answer panics the parser, and every failure is a classified error.
func FuzzParseAnswer(f *testing.F) {
	f.Add(`{"result":1,"payment_info":` + docPayment + `}`)
	f.Add(`{"result":1,"payment_info":"{\"pay_status\":\"SUCCESS\",\"total_amount\":\"1\"}"}`)
	f.Add(`{"result":100200104,"error_msg":"x"}`)
	f.Add(`{"result":1,"payment_info":{"pay_status":"SUCCESS","total_amount":1e400}}`)
	f.Add(`{"result":1,"payment_info":{"pay_status":"X","extra_info":"{\"a\":[1,{}]}"}}`)
	f.Add(`{"result":1,"payment_info":{"pay_status":"X","pay_status":"SUCCESS","PAY_STATUS":"FAILED","":1,"n":[9007199254740993,1e400,0.5]}}`)
	f.Add(`{"result":1,"payment_info":"{\"pay_status\":\"SUCCESS\"} trailing","refund_info":{"refund_status":"REFUND_SUCCESS"},"settle_info":"{}"}`)
	f.Add("{\"result\":1,\"payment_info\":{\"pay_status\":\"SUCC\xffESS\",\"k\xfe\":\"\\ud800\",\"extra_info\":\"{\\\"a\\\":1} x\"}}")
	f.Add(`{"result":1,"payment_info":{"pay_status":"SUCCESS","deep":` + strings.Repeat("[", 100) + strings.Repeat("]", 100) + `}} {"result":2}`)
	c := mustNew(f, config.Provider{Timeout: time.Second})
	f.Fuzz(func(t *testing.T, body string) {
		for kind, ep := range endpoints {
			res, err := c.parseAnswer(providers.Query{Kind: kind, OrderNo: "123456"}, ep, []byte(body), time.Now())
			if err != nil {
				var pe *providers.Error
				if !errors.As(err, &pe) {
					t.Fatalf("unclassified %v", err)
				}
				continue
			}
			if res.ProviderStatus == "" || res.Status == "" {
				t.Fatalf("accepted without status: %+v", res)
			}
			providertest.CheckDetails(t, res.Details)
		}
	})
}

// FuzzTokenAnswer: the access-token answer parser never panics and classifies every failure.
func FuzzTokenAnswer(f *testing.F) {
	f.Add(`{"result":1,"access_token":"tok","expires_in":172800,"token_type":"bearer"}`)
	f.Add(`{"result":100200101,"error_msg":"验证出错"}`)
	f.Add(`{"result":1,"access_token":"","expires_in":"x"}`)
	f.Add(`{"result":1,"access_token":"t","expires_in":99999999999999999999}`)
	f.Fuzz(func(t *testing.T, body string) {
		tok, life, err := parseTokenAnswer([]byte(body))
		if err != nil {
			var pe *providers.Error
			if !errors.As(err, &pe) {
				t.Fatalf("unclassified %v", err)
			}
			return
		}
		if tok == "" || life <= 0 {
			t.Fatalf("accepted %q %v", tok, life)
		}
	})
}
