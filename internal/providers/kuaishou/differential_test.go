package kuaishou

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/paystatus/orderstatus/internal/config"
	"github.com/paystatus/orderstatus/internal/events"
	"github.com/paystatus/orderstatus/internal/providers"
	"github.com/paystatus/orderstatus/internal/providers/kuaishou/sandbox"
	"github.com/paystatus/orderstatus/internal/providers/providertest"
	"github.com/paystatus/orderstatus/internal/providers/sandboxkit"
)

// oldParseAnswer is the answer parser before the one-pass reader, encoding/json alone, kept as
// the reference parseAnswer is held to: the answer and a record in an object by a Decoder with
// UseNumber, a record in a string and extra_info by a Decoder each.
func (c *Client) oldParseAnswer(q providers.Query, ep endpoint, raw []byte, observed time.Time) (providers.Result, error) {
	var ans answer
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	if err := d.Decode(&ans); err != nil {
		return providers.Result{}, providers.Malformed(Name, "not JSON: %v", err)
	}
	if err := c.codes.Check(ans.Result, ans.ErrorMsg); err != nil {
		return providers.Result{}, err
	}
	info := map[string]any{"payment_info": ans.Payment, "settle_info": ans.Settle, "refund_info": ans.Refund}[ep.infoField]
	var fields providers.Fields
	var err error
	if s, ok := info.(string); ok {
		fields, err = providertest.RecordByEncodingJSON([]byte(s))
	} else {
		fields, err = providers.RecordOf(info)
	}
	if err != nil {
		return providers.Result{}, providers.Malformed(Name, "%s: %v", ep.infoField, err)
	}
	res, err := transform(q, fields)
	if err != nil {
		return providers.Result{}, providers.Malformed(Name, "%s: %v", ep.infoField, err)
	}
	if s, ok := res.Details["extra_info"].(string); ok && len(s) > 0 && s[0] == '{' {
		if v, err := providers.DetailValue(json.RawMessage(s)); err == nil {
			if obj, ok := v.(map[string]any); ok {
				res.Details["extra_info"] = obj
			}
		}
	}
	res.ObservedAt = observed.UTC()
	return res, nil
}

// sameAsBefore fails t unless parseAnswer and oldParseAnswer give the same outcome for body,
// for every kind: the same result to the Go type of every detail, or the same error, class,
// code and text.
func sameAsBefore(t *testing.T, c *Client, body []byte) {
	t.Helper()
	observed := time.Date(2026, 11, 24, 10, 0, 0, 5, time.UTC)
	for kind, ep := range endpoints {
		q := providers.Query{Kind: kind, AppID: "a", OrderNo: "1637808229728demo"}
		got := providertest.Describe(c.parseAnswer(q, ep, body, observed))
		want := providertest.Describe(c.oldParseAnswer(q, ep, body, observed))
		if got != want {
			t.Fatalf("%s answer %q:\n got: %s\nwant: %s", kind, body, got, want)
		}
	}
}

// conformanceAnswers are the sandbox's answers to the conformance suite's queries: every status
// of every kind, the suite's amounts, records as objects and as strings, and every fault.
func conformanceAnswers(t *testing.T) [][]byte {
	sb := sandbox.New(0)
	sb.AddApp(sandbox.DemoAppID, sandbox.DemoAppSecret)
	if err := sb.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sb.Close() })
	sb.StallFor = time.Millisecond
	c := newClient(t, sb, sandbox.DemoAppSecret)
	a := c.apps[sandbox.DemoAppID]
	token, err := a.tokens.get(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var answers [][]byte
	ask := func(kind, no string) {
		req := httptest.NewRequest(http.MethodPost, a.url(c.baseURL, kind, token), bytes.NewReader(appendBody(nil, a, endpoints[kind], no)))
		req.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		sb.Handler().ServeHTTP(w, req)
		answers = append(answers, w.Body.Bytes())
	}
	n := 0
	statuses := map[string][]string{
		events.KindPayment:    {"PROCESSING", "SUCCESS", "FAILED", "TIMEOUT", "UNKNOWN", "SOMETHING_NEW"},
		events.KindSettlement: {"SETTLE_PROCESSING", "SETTLE_SUCCESS", "SETTLE_FAILED", "SOMETHING_NEW"},
		events.KindRefund:     {"REFUND_PROCESSING", "REFUND_SUCCESS", "REFUND_FAILED", "SOMETHING_NEW"},
	}
	for kind, list := range statuses {
		for _, status := range list {
			for _, amount := range []int64{1, 99, 1200, 123456789, 9007199254740993} {
				for _, asString := range []bool{false, true} {
					n++
					no := fmt.Sprintf("diff-%08d", n)
					sb.PutOrder(sandbox.Order{AppID: sandbox.DemoAppID, Kind: kind, OrderNo: no, Steps: []sandbox.Step{{Status: status}},
						Amount: amount, KsOrderNo: "ks-" + no, KsRefNo: "ref-" + no, PayChannel: "WECHAT", InfoAsJSONString: asString,
						Fields: map[string]any{"extra_info": `{"url":"","item_type":"VIDEO","item_id":"5239375269605736845","author_id":"123"}`,
							"open_id": "5b748c61ef280130c0656638ebd4eaa6", "enable_promotion": true, "promotion_amount": 1}})
					ask(kind, no)
				}
			}
		}
	}
	sb.PutOrder(sandbox.Order{AppID: sandbox.DemoAppID, Kind: events.KindPayment, OrderNo: "diff-faults", Steps: []sandbox.Step{{Status: "SUCCESS"}}})
	for _, fault := range sandboxkit.Faults {
		sb.SetFault(sandbox.DemoAppID, fault, 1)
		ask(events.KindPayment, "diff-faults")
	}
	return answers
}

// The one-pass reader changes no outcome: the golden answers, the sandbox's answers to the
// conformance suite and random mutations of them all parse as they did with encoding/json alone.
// The answers the documents and the sandbox give are read by the reader itself, not left to
// encoding/json.
func TestParseSameAsBefore(t *testing.T) {
	c := mustNew(t, config.Provider{Timeout: time.Second})
	var seeds [][]byte
	for _, a := range goldenAnswers(t) {
		seeds = append(seeds, []byte(a[1]))
	}
	conformance := conformanceAnswers(t)
	seeds = append(seeds, conformance...)
	read := append(conformance[:len(conformance)-len(sandboxkit.Faults):len(conformance)-len(sandboxkit.Faults)], seeds[:5]...) // and the documents'
	for i, body := range read {
		for kind, ep := range endpoints {
			if _, ok := readAnswer(body, ep); !ok {
				t.Errorf("answer %d, read for %s, left to encoding/json: %s", i, kind, body)
			}
		}
	}

	providertest.CheckMutations(t, seeds, 20, func(body []byte) { sameAsBefore(t, c, body) })
}

// FuzzParseSameAsBefore is TestParseSameAsBefore's check on any answer.
func FuzzParseSameAsBefore(f *testing.F) {
	f.Add(`{"result":1,"error_msg":"","payment_info":` + docPayment + `}`)
	f.Add(`{"result":1,"refund_info":"{\"refund_no\":\"1660811124083refund\",\"refund_amount\":1,\"refund_status\":\"REFUND_SUCCESS\",\"ks_refund_type\":\"保证金账户退款\"}"}`)
	f.Add(`{"result":1,"payment_info":{"pay_status":"X","pay_status":"SUCCESS","PAY_STATUS":"FAILED","":1,"n":[9007199254740993,1e400,0.5,-0,{}]}}`)
	f.Add("{\"Result\":1,\"payment_info\":{\"pay_status\":\"SUCC\xffESS\",\"k\\u00e9\":\"\\ud83d\\ude00\",\"extra_info\":\"{\\\"a\\\":1} x\"}} x")
	f.Add(`{"result":"1","error_msg":null,"settle_info":{"settle_status":"SETTLE_SUCCESS","settle_amount":"12"},"payment_info":[1,{"a":null}]}`)
	c := mustNew(f, config.Provider{Timeout: time.Second})
	f.Fuzz(func(t *testing.T, body string) {
		sameAsBefore(t, c, []byte(body))
	})
}
