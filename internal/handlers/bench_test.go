package handlers_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/paystatus/orderstatus/internal/events"
	kssandbox "github.com/paystatus/orderstatus/internal/providers/kuaishou/sandbox"
)

// BenchmarkHandlerPath is one request's whole path, one at a time: publish the request, the
// consumer queries the sandbox over HTTP, records the change and publishes its event, which
// arrives here. Tracing is off, as the service runs by default (otel's global provider is not
// the no-op one until set, and spans and the HTTP instrumentation would be made).
func BenchmarkHandlerPath(b *testing.B) {
	otel.SetTracerProvider(noop.NewTracerProvider())
	e := newEnv(b, nil)
	e.startReplica(nil)
	sub, err := e.nc.SubscribeSync("orders.status.>")
	if err != nil {
		b.Fatal(err)
	}
	nos := make([]string, 0, b.N)
	for i := 0; i < b.N+1; i++ {
		no := fmt.Sprintf("bench-%07d", i)
		e.sb.PutOrder(kssandbox.Order{AppID: demoApp, Kind: events.KindPayment, OrderNo: no,
			Steps: []kssandbox.Step{{Status: "SUCCESS"}}, Amount: 1, KsOrderNo: "ks" + no})
		nos = append(nos, no)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		e.publish("orders.query.kuaishou.payment", []byte(`{"app_id":"`+demoApp+`","order_no":"`+nos[i]+`"}`), nats.Header{})
		if _, err := sub.NextMsg(5 * time.Second); err != nil {
			b.Fatal(err)
		}
	}
}
