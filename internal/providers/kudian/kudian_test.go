package kudian

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/paystatus/orderstatus/internal/config"
	"github.com/paystatus/orderstatus/internal/events"
	"github.com/paystatus/orderstatus/internal/providers"
	"github.com/paystatus/orderstatus/internal/providers/providertest"
)

const secret = "kd-demo-secret"

// apps is the documents' example app, with this project's demo secret.
var apps = []config.App{{AppID: "kd100020200220", AppSecret: secret, Token: "UT89A6C01D2A704608808F4896369FE009"}}

// docResult is the documents' own answer (the raw tab), signed by the assumed rule.
const docResult = `{"code":0,"data":{"attach":"","discount_info":{"kd_discount_fee":0,"m_discount_fee":0,"p_discount_fee":0,"y_discount_fee":0},"fee":100,"member_name":"Janus","member_phone":"18826490000","order_no":"300230547599788000","origin_fee":100,"pay_no":"600230547601422048","pay_time":"2020-10-13 11:00","payment":"会员钱包支付","received_fee":100,"shop_name":"","status":"PAYED_SUCC","user_pay_fee":100},"msg":"success","succeed":true}`

func signed(result string) []byte {
	b, _ := json.Marshal(map[string]string{"result": result, "sign": AnswerSign(result, secret)})
	return b
}

func client(t testing.TB, pii bool) *Client {
	t.Helper()
	c, err := New(config.Provider{Timeout: time.Second, Apps: apps}, WithPII(pii))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestAnswerSignVector(t *testing.T) {
	// Computed apart from this code (Python's hashlib): MD5(result + secret).
	if got := AnswerSign(`{"code":0,"data":{"status":"PAYED_SUCC"},"msg":"success"}`, secret); got != "26ced40619c60cdfd2065943f39e266d" {
		t.Fatal(got)
	}
}

func TestDocumentAnswer(t *testing.T) {
	observed := time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC)
	res, err := client(t, false).parseAnswer(providers.Query{Kind: events.KindPayment, ProviderOrderNo: "600230547601422048"}, secret, signed(docResult), observed)
	if err != nil {
		t.Fatal(err)
	}
	wantPaid := time.Date(2020, 10, 13, 3, 0, 0, 0, time.UTC) // 11:00 in Asia/Shanghai
	if res.Status != events.StatusSucceeded || res.ProviderStatus != "PAYED_SUCC" || res.Amount != 100 ||
		res.ProviderOrderNo != "600230547601422048" || res.OrderKey != "600230547601422048" || res.OrderNo != "300230547599788000" ||
		!res.PaidAt.Equal(wantPaid) || res.Channel != events.ChannelUnknown || !res.ObservedAt.Equal(observed) {
		t.Fatalf("%+v", res)
	}
	disc, ok := res.Details["discount_info"].(map[string]any)
	if !ok || disc["kd_discount_fee"] != int64(0) || res.Details["origin_fee"] != int64(100) || res.Details["received_fee"] != int64(100) ||
		res.Details["payment"] != "会员钱包支付" {
		t.Fatalf("details %#v", res.Details)
	}
	for _, k := range []string{"member_phone", "member_name", "fee", "status", "pay_no", "pay_time", "order_no"} {
		if _, ok := res.Details[k]; ok {
			t.Errorf("details has %s", k)
		}
	}
	withPII, err := client(t, true).parseAnswer(providers.Query{Kind: events.KindPayment, OrderNo: "300230547599788000"}, secret, signed(docResult), observed)
	if err != nil {
		t.Fatal(err)
	}
	if withPII.Details["member_phone"] != "18826490000" || withPII.Details["member_name"] != "Janus" {
		t.Fatalf("include_pii: %#v", withPII.Details)
	}
}

func TestPayTimeForms(t *testing.T) {
	for in, want := range map[string]time.Time{
		"2020-10-13 11:00:00": time.Date(2020, 10, 13, 3, 0, 0, 0, time.UTC),
		"2020-10-13 11:00":    time.Date(2020, 10, 13, 3, 0, 0, 0, time.UTC),
		"2021-01-01 07:59:59": time.Date(2020, 12, 31, 23, 59, 59, 0, time.UTC),
		"":                    {},
	} {
		got, err := ParsePayTime(in)
		if err != nil || !got.Equal(want) {
			t.Errorf("%q: %v %v", in, got, err)
		}
	}
	for _, bad := range []string{"2020/10/13 11:00", "13-10-2020 11:00", "yesterday", "2020-10-13T11:00:00Z"} {
		if _, err := ParsePayTime(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestChannels(t *testing.T) {
	for in, want := range map[string]events.Channel{"WXPAY": "wechat", "ALIPAY": "alipay", "BALANCE": "balance", "UNIONPAY": "unknown", "": "unknown"} {
		if got := channels.Normalize(in); got != want {
			t.Errorf("%s: %s", in, got)
		}
	}
}

func TestAnswerErrors(t *testing.T) {
	c := client(t, false)
	q := providers.Query{Kind: events.KindPayment, OrderNo: "x"}
	bad, _ := json.Marshal(map[string]string{"result": docResult, "sign": "0000"})
	for name, tc := range map[string]struct {
		body  []byte
		class providers.Class
		code  string
	}{
		"wrong signature":  {bad, providers.Retryable, ""},
		"not json":         {[]byte("<html>"), providers.Retryable, ""},
		"no result":        {[]byte(`{"sign":"x"}`), providers.Retryable, ""},
		"result not json":  {signed("oops"), providers.Retryable, ""},
		"not found":        {signed(`{"code":40004,"msg":"订单不存在"}`), providers.Permanent, "40004"},
		"rate limited":     {signed(`{"code":40029,"msg":"slow down"}`), providers.RateLimited, "40029"},
		"unknown code":     {signed(`{"code":12345,"msg":"?"}`), providers.Retryable, "12345"},
		"no data":          {signed(`{"code":0}`), providers.Retryable, ""},
		"no status":        {signed(`{"code":0,"data":{"fee":1}}`), providers.Retryable, ""},
		"fractional fee":   {signed(`{"code":0,"data":{"status":"PAYED_SUCC","fee":1.5}}`), providers.Retryable, ""},
		"garbage pay_time": {signed(`{"code":0,"data":{"status":"PAYED_SUCC","pay_time":"soon"}}`), providers.Retryable, ""},
	} {
		_, err := c.parseAnswer(q, secret, tc.body, time.Now())
		var pe *providers.Error
		if !errors.As(err, &pe) || pe.Class != tc.class || pe.Code != tc.code {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// The request body is, byte for byte, what encoding/json writes of a map of its fields (keys in
// order, text escaped alike), signed by Sign over the same map, with the inner payload as
// encoding/json writes it: whatever the text in the numbers, app and token.
func TestRequestBody(t *testing.T) {
	type bizContent struct {
		PayNo      string `json:"pay_no,omitempty"`
		OutTradeNo string `json:"out_trade_no,omitempty"`
		IsFresh    bool   `json:"is_fresh"`
	}
	now := time.Unix(1602558156, 0)
	for _, v := range []string{"kd100020200220", `<a href="x">&amp;</a>`, "会员\u2028\t\x00\"\\", "\xff\xfe", "\x7f", ""} {
		app := config.App{AppID: v, AppSecret: config.Secret(v + "s"), Token: config.Secret(v + "t")}
		for _, q := range []providers.Query{{ProviderOrderNo: v}, {OrderNo: v, Refresh: true}, {OrderNo: "o" + v, ProviderOrderNo: "p" + v}, {}} {
			biz := bizContent{PayNo: q.ProviderOrderNo, IsFresh: q.Refresh}
			if biz.PayNo == "" {
				biz.OutTradeNo = q.OrderNo
			}
			bizJSON, _ := json.Marshal(biz)
			fields := map[string]string{"open_app_id": app.AppID, "timestamp": "1602558156", "sign_type": "MD5",
				"token": app.Token.Reveal(), "biz_content": string(bizJSON)}
			want, _ := json.Marshal(map[string]any{"open_app_id": app.AppID, "timestamp": json.Number("1602558156"), "sign_type": "MD5",
				"token": app.Token.Reveal(), "biz_content": string(bizJSON), "sign": Sign(fields, app.AppSecret.Reveal())})
			if got := appendBody(nil, app, q, now); string(got) != string(want) {
				t.Errorf("%+v:\n body %s\n want %s", q, got, want)
			}
		}
	}
}

func TestConfiguredCodeClasses(t *testing.T) {
	c, err := New(config.Provider{Timeout: time.Second, Apps: apps, ResultCodes: map[string]string{"12345": "permanent"}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.parseAnswer(providers.Query{}, secret, signed(`{"code":12345,"msg":"?"}`), time.Now())
	if providers.Classify(err) != providers.Permanent {
		t.Fatal(err)
	}
	for _, bad := range []map[string]string{{"x": "permanent"}, {"1": "fatal"}} {
		_, err := New(config.Provider{Timeout: time.Second, ResultCodes: bad})
		var ce *config.Error
		if !errors.As(err, &ce) {
			t.Errorf("%v: %v", bad, err)
		}
	}
	_, err = New(config.Provider{Timeout: time.Second, Apps: []config.App{{AppID: "a", AppSecret: "s"}}})
	if err == nil || err.Error() != "config: providers.kudian.apps[0].token: is required" {
		t.Fatalf("missing token: %v", err)
	}
}

// The numbers are at most the documented 64 characters, and the error names the field.
func TestValidate(t *testing.T) {
	c := client(t, false)
	long := strings.Repeat("1", maxNoLen+1)
	for _, tc := range []struct {
		q     providers.Query
		field string
	}{
		{providers.Query{OrderNo: strings.Repeat("1", maxNoLen), ProviderOrderNo: strings.Repeat("2", maxNoLen)}, ""},
		{providers.Query{OrderNo: long}, "order_no"},
		{providers.Query{ProviderOrderNo: long}, "provider_order_no"},
		{providers.Query{OrderNo: long, ProviderOrderNo: long}, "order_no"},
	} {
		err := c.Validate(tc.q)
		var pe *events.PayloadError
		if tc.field == "" && err != nil || tc.field != "" && (!errors.As(err, &pe) || pe.Field != tc.field) {
			t.Errorf("%d and %d characters: %v, want field %q", len(tc.q.OrderNo), len(tc.q.ProviderOrderNo), err, tc.field)
		}
	}
}

// Each app is limited on the one endpoint, under a key naming it; an app not configured has
// its key too.
func TestRateLimitKey(t *testing.T) {
	c := client(t, false)
	for _, app := range []string{"kd100020200220", "kd2"} {
		if key, _ := c.RateLimit(providers.Query{Kind: events.KindPayment, AppID: app}); key != "kudian/"+app+"/query" {
			t.Errorf("%s: %q", app, key)
		}
	}
}

// FuzzParseAnswer: no answer panics the parser, and every failure is a classified error.
func FuzzParseAnswer(f *testing.F) {
	f.Add(string(signed(docResult)))
	f.Add(string(signed(`{"code":0,"data":{"status":"PAYING","pay_time":"","fee":"12"}}`)))
	f.Add(string(signed(`{"code":"x"}`)))
	f.Add(`{"result":"{}","sign":"` + AnswerSign("{}", secret) + `"}`)
	f.Add(`{"result":1}`)
	c := client(f, false)
	f.Fuzz(func(t *testing.T, body string) {
		res, err := c.parseAnswer(providers.Query{Kind: events.KindPayment, OrderNo: "o"}, secret, []byte(body), time.Now())
		if err != nil {
			var pe *providers.Error
			if !errors.As(err, &pe) {
				t.Fatalf("unclassified %v", err)
			}
			return
		}
		if res.ProviderStatus == "" || res.OrderKey == "" {
			t.Fatalf("accepted without status or key: %+v", res)
		}
	})
}

// FuzzAnswerField fuzzes the signed inner result, past the signature check.
func FuzzAnswerField(f *testing.F) {
	f.Add(docResult)
	f.Add(`{"code":0,"data":{"status":"PAYED_SUCC","fee":9007199254740993,"pay_time":"2020-10-13 11:00"}}`)
	f.Add(`{"code":0,"data":{"status":["x"]}}`)
	f.Add(`{"code":0,"data":{"status":"PAYING","status":"PAYED_SUCC","STATUS":"X","":1,"member_phone":"1","n":[1e400,0.5,-0]}} trailing`)
	f.Add(`{"code":"0","Data":"{\"status\":\"PAYED_SUCC\"}","data":null}`)
	f.Add("{\"code\":0,\"data\":{\"status\":\"PAYED\xff\",\"pay_no\":600230547601422048,\"k\xfe\":\"\\ud800\",\"fee\":\"9007199254740993\"}}")
	c := client(f, true)
	f.Fuzz(func(t *testing.T, result string) {
		res, err := c.parseAnswer(providers.Query{Kind: events.KindPayment, ProviderOrderNo: "p"}, secret, signed(result), time.Now())
		if err != nil {
			var pe *providers.Error
			if !errors.As(err, &pe) {
				t.Fatalf("unclassified %v", err)
			}
			return
		}
		providertest.CheckDetails(t, res.Details)
	})
}

// FuzzParsePayTime: any text either parses to a time that formats back to it, or errs.
func FuzzParsePayTime(f *testing.F) {
	for _, s := range []string{"2020-10-13 11:00:00", "2020-10-13 11:00", "", "2020-02-30 25:61", "0000-01-01 00:00", "2020-10-13 11:00:00:00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParsePayTime(s)
		// The same as trying the forms in their order, whichever is tried first.
		want, wantErr := time.Time{}, s != ""
		for _, layout := range []string{time.DateTime, "2006-01-02 15:04"} {
			if t, err := time.ParseInLocation(layout, s, shanghai); err == nil && wantErr {
				want, wantErr = t.UTC(), false
			}
		}
		if (err != nil) != wantErr || !got.Equal(want) {
			t.Fatalf("%q: %v %v, want %v (error %v)", s, got, err, want, wantErr)
		}
		if err != nil || s == "" {
			return
		}
		if back := got.In(shanghai).Format(time.DateTime); back != s && back[:16] != s {
			t.Fatalf("%q parsed as %v, which is %q", s, got, back)
		}
	})
}
