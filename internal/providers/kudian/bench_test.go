package kudian

import (
	"context"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/paystatus/orderstatus/internal/config"
	"github.com/paystatus/orderstatus/internal/events"
	"github.com/paystatus/orderstatus/internal/providers"
	"github.com/paystatus/orderstatus/internal/providers/kudian/sandbox"
)

func BenchmarkSign(b *testing.B) {
	fields := map[string]string{"open_app_id": "kd100020200220", "timestamp": "1602558156", "sign_type": "MD5",
		"token": "UT89A6C01D2A704608808F4896369FE009", "biz_content": `{"pay_no":"600230547601422048","is_fresh":false}`}
	b.ReportAllocs()
	for b.Loop() {
		Sign(fields, secret)
	}
}

// BenchmarkRequest is the writing of a query's signed body.
func BenchmarkRequest(b *testing.B) {
	app := apps[0]
	q := providers.Query{Kind: events.KindPayment, ProviderOrderNo: "600230547601422048"}
	now := time.Unix(1602558156, 0)
	var body [512]byte
	b.ReportAllocs()
	for b.Loop() {
		appendBody(body[:0], app, q, now)
	}
}

// BenchmarkParseAnswer is the verification and normalization of the documents' answer.
func BenchmarkParseAnswer(b *testing.B) {
	c := client(b, false)
	body := signed(docResult)
	q := providers.Query{Kind: events.KindPayment, ProviderOrderNo: "600230547601422048"}
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.parseAnswer(q, secret, body, now); err != nil {
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
	c, err := New(config.Provider{BaseURL: sb.URL(), QPS: 1000, Timeout: 2 * time.Second, Apps: sandbox.DemoApps()})
	if err != nil {
		b.Fatal(err)
	}
	q := providers.Query{Kind: events.KindPayment, AppID: sandbox.DemoAppID, ProviderOrderNo: sandbox.DemoPayNo}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Query(ctx, q); err != nil {
			b.Fatal(err)
		}
	}
}
