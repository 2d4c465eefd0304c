package kuaishou

import (
	"context"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/paystatus/orderstatus/internal/config"
	"github.com/paystatus/orderstatus/internal/events"
	"github.com/paystatus/orderstatus/internal/providers"
	"github.com/paystatus/orderstatus/internal/providers/kuaishou/sandbox"
)

func BenchmarkSign(b *testing.B) {
	fields := map[string]string{"app_id": "ks707065143182458884", "out_order_no": "1711619867139contractDemo"}
	b.ReportAllocs()
	for b.Loop() {
		Sign(fields, "9VfzaT-7Jf1bBHv-veFZfg")
	}
}

// BenchmarkRequest is the writing of a query's signed body and its URL.
func BenchmarkRequest(b *testing.B) {
	c := mustNew(b, config.Provider{Timeout: time.Second, Apps: []config.App{{AppID: "ks707065143182458884", AppSecret: "9VfzaT-7Jf1bBHv-veFZfg"}}})
	a, ep := c.apps["ks707065143182458884"], endpoints[events.KindPayment]
	var body [256]byte
	b.ReportAllocs()
	for b.Loop() {
		appendBody(body[:0], a, ep, "1711619867139contractDemo")
		a.url(c.baseURL, events.KindPayment, "ChFvYXV0aC5hY2Nlc3NUb2tlbhJg")
	}
}

// BenchmarkParseAnswer is the normalization of a payment answer: JSON to the status model.
func BenchmarkParseAnswer(b *testing.B) {
	c := mustNew(b, config.Provider{Timeout: time.Second})
	body := []byte(`{"result":1,"error_msg":"","payment_info":` + docPayment + `}`)
	q := providers.Query{Kind: events.KindPayment, AppID: "a", OrderNo: "1637808229728demo"}
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.parseAnswer(q, endpoints[events.KindPayment], body, now); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkQuery is one whole call, request to Result, against the sandbox over loopback, with
// tracing off as StartTracing leaves it without OTEL_* settings: the sandbox's own work is in
// the figures too, and the same before and after a client change.
func BenchmarkQuery(b *testing.B) {
	otel.SetTracerProvider(noop.NewTracerProvider())
	sb := sandbox.New(0)
	sandbox.LoadDemo(sb)
	if err := sb.Start("127.0.0.1:0"); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { sb.Close() })
	c := newClient(b, sb, sandbox.DemoAppSecret)
	q := providers.Query{Kind: events.KindPayment, AppID: sandbox.DemoAppID, OrderNo: sandbox.DemoOrderNo}
	ctx := context.Background()
	if _, err := c.Query(ctx, q); err != nil { // the access token, fetched once
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Query(ctx, q); err != nil {
			b.Fatal(err)
		}
	}
}
