package orderstate

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/paystatus/orderstatus/internal/events"
	"github.com/paystatus/orderstatus/internal/providers"
)

// BenchmarkClaimToClear is the store's part of a request that changes an order, one at a time,
// against an embedded server (whose own allocations count too): claim, publish, confirm, clear.
func BenchmarkClaimToClear(b *testing.B) {
	for _, enc := range []events.Encoding{events.Msgpack, events.JSON} {
		b.Run(string(enc), func(b *testing.B) {
			js, kv := testBucket(b)
			ctx := context.Background()
			if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "ORDERS_STATUS", Subjects: []string{"orders.status.>"}}); err != nil {
				b.Fatal(err)
			}
			st := newTestStore(js, kv)
			st.encoding = enc
			t0 := time.Now()
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				i++
				no := fmt.Sprintf("bench-%d", i)
				obs := Observation{Sent: t0,
					Request: events.Request{Provider: "kuaishou", Kind: "payment", AppID: "ks707065143182458884", OrderNo: no, RequestID: "r-1",
						Attributes: map[string]string{"tenant": "t1"}},
					Result: providers.Result{OrderKey: no, OrderNo: no, ProviderOrderNo: "121112500031787702250", Status: events.StatusSucceeded,
						ProviderStatus: "SUCCESS", Amount: 1200, PaidAt: t0, Channel: events.ChannelWechat, ObservedAt: t0,
						Details: map[string]any{"open_id": "5b748c61ef280130c0656638ebd4eaa6", "promotion_amount": int64(1)}}}
				_, c, err := st.Claim(ctx, obs)
				if err != nil {
					b.Fatal(err)
				}
				p, err := st.Publish(ctx, c)
				if err != nil {
					b.Fatal(err)
				}
				if err := st.Confirm(ctx, p); err != nil {
					b.Fatal(err)
				}
				st.Clear(p)
			}
		})
	}
}
