package providers

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/trace/noop"
)

// answerAtOnce is a transport that answers every request with body, without a network.
type answerAtOnce []byte

func (a answerAtOnce) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body != nil {
		_, _ = io.Copy(io.Discard, r.Body)
		_ = r.Body.Close()
	}
	return &http.Response{StatusCode: http.StatusOK, Header: http.Header{}, Body: io.NopCloser(bytes.NewReader(a)),
		ContentLength: int64(len(a)), Request: r}, nil
}

// BenchmarkPost is the client side of one provider call (request, the transport wrappers,
// reading the answer) with tracing off, as StartTracing leaves it without OTEL_* settings:
// the network is left out.
func BenchmarkPost(b *testing.B) {
	otel.SetTracerProvider(noop.NewTracerProvider())
	answer := answerAtOnce(`{"result":1,"error_msg":"","payment_info":{"total_amount":1200,` + strings.Repeat(`"field":"value",`, 30) + `"pay_status":"SUCCESS"}}`)
	client := newHTTPClient(time.Second, answer)
	ctx := context.Background()
	body := []byte(`{"out_order_no":"1711619867139contractDemo","sign":"360a9add284bb4e2050673132418a356"}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Post(ctx, client, "p", "http://provider.invalid/q?app_id=a&access_token=t", "application/json", body); err != nil {
			b.Fatal(err)
		}
	}
}
