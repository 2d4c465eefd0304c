package kudian

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/paystatus/orderstatus/internal/events"
	"github.com/paystatus/orderstatus/internal/providers"
	"github.com/paystatus/orderstatus/internal/providers/kudian/sandbox"
	"github.com/paystatus/orderstatus/internal/providers/providertest"
	"github.com/paystatus/orderstatus/internal/providers/sandboxkit"
)

// oldParseAnswer is the answer parser before the one-pass reader, encoding/json alone, kept as
// the reference parseAnswer is held to: the envelope by json.Unmarshal, the signed result and
// its data by a Decoder with UseNumber.
func (c *Client) oldParseAnswer(q providers.Query, secret string, raw []byte, observed time.Time) (providers.Result, error) {
	var env envelope
	if err := json.Unmarshal(raw, &env); err != nil {
		return providers.Result{}, providers.Malformed(Name, "not JSON: %v", err)
	}
	if env.Result == "" {
		return providers.Result{}, providers.Malformed(Name, "no result")
	}
	if env.Sign != AnswerSign(env.Result, secret) {
		return providers.Result{}, &providers.Error{Provider: Name, Class: providers.Retryable, Message: "answer signature does not verify; answer discarded"}
	}
	var in inner
	d := json.NewDecoder(strings.NewReader(env.Result))
	d.UseNumber()
	if err := d.Decode(&in); err != nil {
		return providers.Result{}, providers.Malformed(Name, "result is not JSON: %v", err)
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

// sameAsBefore fails t unless parseAnswer and oldParseAnswer give the same outcome for body,
// with and without include_pii and however the order was asked for: the same result to the Go
// type of every detail, or the same error, class, code and text.
func sameAsBefore(t *testing.T, clients [2]*Client, body []byte) {
	t.Helper()
	observed := time.Date(2026, 11, 24, 10, 0, 0, 5, time.UTC)
	for i, q := range []providers.Query{
		{Kind: events.KindPayment, AppID: "kd100020200220", ProviderOrderNo: "600230547601422048"},
		{Kind: events.KindPayment, AppID: "kd100020200220", OrderNo: "300230547599788000"},
	} {
		c := clients[i]
		got := providertest.Describe(c.parseAnswer(q, secret, body, observed))
		want := providertest.Describe(c.oldParseAnswer(q, secret, body, observed))
		if got != want {
			t.Fatalf("answer %q:\n got: %s\nwant: %s", body, got, want)
		}
	}
}

// conformanceAnswers are the sandbox's answers to the conformance suite's queries: every
// status, the suite's amounts, by pay_no and by out_trade_no, and every fault.
func conformanceAnswers(t *testing.T) [][]byte {
	sb := sandbox.New(0)
	sandbox.LoadDemo(sb)
	sb.StallFor = time.Millisecond
	app := sandbox.DemoApps()[0]
	var answers [][]byte
	ask := func(q providers.Query) {
		req := httptest.NewRequest(http.MethodPost, queryPath, bytes.NewReader(appendBody(nil, app, q, time.Now())))
		req.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		sb.Handler().ServeHTTP(w, req)
		answers = append(answers, w.Body.Bytes())
	}
	n := 0
	for _, status := range []string{"PAYING", "PAYED_SUCC", "PAYED_FAIL", "TIMEOUT", "CANCEL", "PAYED_REVERSAL", "UNKNOW", "SOMETHING_NEW"} {
		for _, amount := range []int64{1, 99, 1200, 123456789, 9007199254740993} {
			n++
			payNo, out := fmt.Sprintf("7000%08d", n), fmt.Sprintf("out-%08d", n)
			sb.PutOrder(sandbox.Order{AppID: sandbox.DemoAppID, PayNo: payNo, OutTradeNo: out, Steps: []sandbox.Step{{Status: status}},
				Fee: amount, PaymentType: "WXPAY", ShortPayTime: n%2 == 0,
				Fields: map[string]any{"member_name": "Janus", "member_phone": "18826490000", "discount_info": map[string]any{"kd_discount_fee": 0}}})
			ask(providers.Query{Kind: events.KindPayment, AppID: sandbox.DemoAppID, ProviderOrderNo: payNo})
			ask(providers.Query{Kind: events.KindPayment, AppID: sandbox.DemoAppID, OrderNo: out, Refresh: true})
		}
	}
	for _, fault := range sandboxkit.Faults {
		sb.SetFault(sandbox.DemoAppID, fault, 1)
		ask(providers.Query{Kind: events.KindPayment, AppID: sandbox.DemoAppID, ProviderOrderNo: sandbox.DemoPayNo})
	}
	return answers
}

// The one-pass reader changes no outcome: the golden answers, the sandbox's answers to the
// conformance suite and random mutations of them (of the whole answer, and of the signed result,
// signed again) all parse as they did with encoding/json alone. The answers the documents and
// the sandbox give are read by the reader itself, not left to encoding/json.
func TestParseSameAsBefore(t *testing.T) {
	clients := [2]*Client{client(t, false), client(t, true)}
	var answers, results [][]byte
	for _, r := range goldenResults(t) {
		results = append(results, []byte(r[1]))
		answers = append(answers, signedAsRead(r[1]))
	}
	for _, e := range goldenEnvelopes(t) {
		answers = append(answers, []byte(e[1]))
	}
	conformance := conformanceAnswers(t)
	answers = append(answers, conformance...)
	for i, body := range append(conformance[:len(conformance)-len(sandboxkit.Faults)], signed(docResult)) {
		env, ok := readEnvelope(body)
		if !ok {
			t.Errorf("answer %d left to encoding/json: %s", i, body)
		}
		if _, ok := readInner(env.Result); !ok {
			t.Errorf("answer %d: result left to encoding/json: %s", i, env.Result)
		}
	}

	providertest.CheckMutations(t, answers, 20, func(body []byte) { sameAsBefore(t, clients, body) })
	providertest.CheckMutations(t, results, 20, func(result []byte) { sameAsBefore(t, clients, signedAsRead(string(result))) })
}

// FuzzParseSameAsBefore is TestParseSameAsBefore's check on any signed result, and on any
// answer.
func FuzzParseSameAsBefore(f *testing.F) {
	f.Add(docResult, false)
	f.Add(`{"code":0,"data":{"status":"PAYING","status":"PAYED_SUCC","STATUS":"X","":1,"member_phone":"1","n":[1e400,0.5,-0]}} trailing`, false)
	f.Add(`{"code":"0","Data":"{\"status\":\"PAYED_SUCC\"}","data":null}`, false)
	f.Add("{\"code\":0,\"data\":{\"status\":\"PAYED\xff\",\"pay_no\":600230547601422048,\"k\\u00e9\":\"\\ud800\",\"fee\":\"9007199254740993\"}}", false)
	f.Add(string(signed(docResult)), true)
	f.Add(`{"result":"{\"code\":0}","sign":"x","RESULT":"y"} `, true)
	clients := [2]*Client{client(f, false), client(f, true)}
	f.Fuzz(func(t *testing.T, text string, whole bool) {
		if whole {
			sameAsBefore(t, clients, []byte(text))
		} else {
			sameAsBefore(t, clients, signedAsRead(text))
		}
	})
}
