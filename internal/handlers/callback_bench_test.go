package handlers_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/paystatus/orderstatus/internal/events"
	"github.com/paystatus/orderstatus/internal/natstest"
	kssandbox "github.com/paystatus/orderstatus/internal/providers/kuaishou/sandbox"
)

// BenchmarkNotificationToEvent publishes signed notifications on orders.callback.kuaishou at
// 1,000 a second (each a new order, so each gives an event) and reports the latency from a
// notification's timestamp to its event's arrival here: p50_ms and p99_ms. Run it with
// -benchtime=3000x for three seconds of load.
func BenchmarkNotificationToEvent(b *testing.B) {
	e := newEnv(b, nil)
	e.startReplica(nil)
	sub, err := e.nc.SubscribeSync("orders.status.>")
	if err != nil {
		b.Fatal(err)
	}
	nos := make([]string, b.N)
	for i := range b.N {
		nos[i] = fmt.Sprintf("cb-bench-%07d", i)
	}
	b.ResetTimer()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	go func() {
		for i := range b.N {
			<-tick.C
			body := notice(fmt.Sprintf("bench-%d", i), demoApp, nos[i], "SUCCESS", 1, time.Now())
			_ = e.nc.PublishMsg(&nats.Msg{Subject: "orders.callback.kuaishou", Data: body,
				Header: nats.Header{"Kwaisign": {kwaisign(body, kssandbox.DemoAppSecret)}}})
		}
	}()
	lat := make([]time.Duration, 0, b.N)
	for range b.N {
		m, err := sub.NextMsg(30 * time.Second)
		if err != nil {
			b.Fatalf("after %d events: %v", len(lat), err)
		}
		ev, err := events.DecodeEvent(m.Header.Get("Content-Type"), m.Data)
		if err != nil {
			b.Fatal(err)
		}
		at, _ := time.Parse(time.RFC3339Nano, ev.ObservedAt)
		lat = append(lat, time.Since(at)) // the timestamp is in whole ms: up to 1 ms more
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50_ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99_ms")
}

// BenchmarkCallsPerSettledOrder follows orders until they end (pending, then succeeded 2 s
// after they are made) and reports the provider calls each took, with the sandbox's
// notifications off and on: a follow round for an order a notification saw end calls nobody.
// Each run takes seconds of follow rounds: make bench runs it with -benchtime 1x.
func BenchmarkCallsPerSettledOrder(b *testing.B) {
	for _, notify := range []bool{false, true} {
		b.Run(fmt.Sprintf("notifications=%v", notify), func(b *testing.B) {
			if b.N > 1 {
				b.Skip("seconds per run: use -benchtime 1x (make bench does)")
			}
			const orders = 20
			var calls int
			for range b.N {
				e := newEnv(b, fastFollow)
				e.startReplica(nil)
				if notify {
					url := e.startEndpoint()
					ctx, cancel := context.WithCancel(context.Background())
					defer cancel()
					go e.sb.Notify(ctx, kssandbox.NotifyOptions{URL: url, Every: 50 * time.Millisecond})
				}
				for i := range orders {
					no := fmt.Sprintf("cb-calls-%04d", i)
					e.sb.PutOrder(kssandbox.Order{AppID: demoApp, Kind: events.KindPayment, OrderNo: no, Amount: 1, KsOrderNo: "ks" + no,
						Steps: []kssandbox.Step{{Status: "PROCESSING"}, {After: 2 * time.Second, Status: "SUCCESS"}}})
					e.publish("orders.query.kuaishou.payment", []byte(`{"app_id":"`+demoApp+`","order_no":"`+no+`","follow":true}`), nil)
				}
				natstest.CheckFor(b, 60*time.Second, 100*time.Millisecond, func() error {
					done := 0
					for _, ev := range e.events() {
						if ev.Terminal && strings.HasPrefix(ev.OrderNo, "cb-calls-") { // not the demo orders
							done++
						}
					}
					if done != orders || len(e.queued()) != 0 {
						return fmt.Errorf("%d of %d orders ended, %d queued", done, orders, len(e.queued()))
					}
					return nil
				})
				calls += len(e.sb.Calls(demoApp, events.KindPayment))
			}
			b.ReportMetric(float64(calls)/float64(b.N*orders), "calls/order")
		})
	}
}
