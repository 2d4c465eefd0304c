package bench

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/paystatus/orderstatus/internal/events"
	"github.com/paystatus/orderstatus/internal/natstest"
	kssandbox "github.com/paystatus/orderstatus/internal/providers/kuaishou/sandbox"
)

// Rows l and m: what Kuaishou's notifications (CONTRACT.md §8), POSTed to the consumer's
// callbacks.listen, save and how soon they become events. Each run is a consumer process on a
// fresh server and sandbox, so that no other phase's orders are notified or counted.

// followApps and followOrders are row l's workload: orders spread over apps.
const followApps, followOrders = 10, 200

// followRun is one run of row l.
type followRun struct {
	calls float64       // provider calls per order
	seen  time.Duration // from an order's end to its terminal event, mean
}

// callsPerSettledOrder is row l: the same workload followed until it ends, once without
// notifications and once with the sandbox sending them.
func (r *rig) callsPerSettledOrder() row {
	off, on := r.followUntilEnd(false), r.followUntilEnd(true)
	saved := off.calls - on.calls
	return row{"l. provider calls per settled order, notifications off / on",
		fmt.Sprintf("%.2f / %.2f (%.2f saved, %.0f%%); end seen after %.2f s / %.2f s",
			off.calls, on.calls, saved, 100*saved/off.calls, off.seen.Seconds(), on.seen.Seconds()),
		"fewer with notifications"}
}

// followUntilEnd is one run of row l: followOrders orders, PROCESSING when put and SUCCESS
// 2.5 s later, each requested with "follow": true and followed until it ends. The follow waits
// are 1 s, then 2 s, each ending on the next whole second (schedules count whole seconds), so
// the rounds come 1 to 2 s and 3 to 5 s after the request, and the end falls between them.
// With notify, the consumer serves callbacks.listen and the sandbox's Notify sends it every
// change; the round after the SUCCESS notification then ends without a call. It counts the
// sandbox's calls once every order has its terminal event and no follow-up is left.
func (r *rig) followUntilEnd(notify bool) followRun {
	fr := freshRig(r.t, followApps)
	defer fr.closeFresh()
	fr.bin, fr.dir = r.bin, r.t.TempDir()
	cc := consumerConfig{qps: 1000, follow: time.Second}
	if notify {
		cc.callbacks = fmt.Sprintf("127.0.0.1:%d", freePort(r.t))
	}
	c := fr.startConsumerWith(cc)
	defer c.stop()
	if notify {
		waitListening(r.t, cc.callbacks)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			fr.sb.Notify(ctx, kssandbox.NotifyOptions{URL: "http://" + cc.callbacks + "/callbacks/kuaishou", Every: 50 * time.Millisecond})
		}()
		defer func() { cancel(); <-done }()
	}

	var mu sync.Mutex
	ended := map[string]time.Time{} // order -> its terminal event's arrival
	sub, err := fr.nc.Subscribe("orders.status.>", func(m *nats.Msg) {
		now := time.Now()
		if ev, err := events.DecodeEvent(m.Header.Get("Content-Type"), m.Data); err == nil && ev.Terminal {
			mu.Lock()
			ended[ev.OrderNo] = now
			mu.Unlock()
		}
	})
	if err != nil {
		r.t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := fr.nc.Flush(); err != nil {
		r.t.Fatal(err)
	}

	const after = 2500 * time.Millisecond
	changed := map[string]time.Time{} // order -> when it turns SUCCESS
	for i := range followOrders {
		app, no := appID(i%followApps), fmt.Sprintf("follow-%04d", i)
		changed[no] = time.Now().Add(after)
		fr.sb.PutOrder(kssandbox.Order{AppID: app, Kind: events.KindPayment, OrderNo: no, Amount: int64(i + 1), KsOrderNo: "ks" + no, PayChannel: "WECHAT",
			Steps: []kssandbox.Step{{Status: "PROCESSING"}, {After: after, Status: "SUCCESS"}}})
		if _, err := fr.js.Publish(context.Background(), "orders.query.kuaishou.payment",
			[]byte(`{"app_id":"`+app+`","order_no":"`+no+`","follow":true}`)); err != nil {
			r.t.Fatal(err)
		}
	}
	natstest.CheckFor(r.t, 60*time.Second, 50*time.Millisecond, func() error {
		mu.Lock()
		n := len(ended)
		mu.Unlock()
		if n < followOrders {
			return fmt.Errorf("%d of %d orders ended", n, followOrders)
		}
		if q := fr.streamMsgs("ORDERS_QUERY"); q != 0 {
			return fmt.Errorf("%d requests or follow-ups left", q)
		}
		return nil
	})
	calls := 0
	for i := range followApps {
		calls += len(fr.sb.Calls(appID(i), events.KindPayment))
	}
	mu.Lock()
	defer mu.Unlock()
	var seen time.Duration
	for no, at := range ended {
		seen += at.Sub(changed[no])
	}
	return followRun{calls: float64(calls) / followOrders, seen: seen / followOrders}
}

// notificationToEvent is row m: signed notifications, each a new order's SUCCESS, POSTed over
// HTTP to the consumer's callbacks.listen at a steady 1,000 a second, as the sandbox signs
// them; the time from the start of each POST to its order's event arriving on
// orders.status.>. A first second of the same load warms the process and is not counted.
func (r *rig) notificationToEvent() row {
	const rate, warm, total = 1000, 1000, 5000
	fr := freshRig(r.t, 200)
	defer fr.closeFresh()
	fr.bin, fr.dir = r.bin, r.t.TempDir()
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(r.t))
	c := fr.startConsumerWith(consumerConfig{qps: 1000, callbacks: addr})
	defer c.stop()
	waitListening(r.t, addr)
	url := "http://" + addr + "/callbacks/kuaishou"
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 64
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}

	var first, last time.Time // the sends of the last call
	var posts sync.WaitGroup
	post := func(prefix string, n int) []time.Duration {
		orders := make([][2]string, n)
		for i := range orders {
			orders[i] = [2]string{appID(i % 200), fmt.Sprintf("%s-%07d", prefix, i)}
		}
		defer posts.Wait() // every answer read: none is cut off by the consumer's stop
		return fr.toEvent(orders, rate, func(i int) {
			now := time.Now()
			if i == 0 {
				first = now
			}
			last = now
			o := kssandbox.Order{AppID: orders[i][0], Kind: events.KindPayment, OrderNo: orders[i][1], Amount: int64(i + 1),
				KsOrderNo: "ks" + orders[i][1], PayChannel: "WECHAT"}
			note, ok := fr.sb.NotificationOf(o, "SUCCESS", now)
			if !ok {
				r.t.Fatalf("no notification for %s", o.AppID)
			}
			posts.Go(func() {
				if !note.Post(context.Background(), client, url) {
					r.t.Errorf("the notification of %s was not answered result 1", o.OrderNo)
				}
			})
		})
	}
	post("cbwarm", warm)
	lat := post("cblat", total)
	return row{"m. notification to event at 1,000 notifications/s, p50 / p99",
		fmt.Sprintf("%.2f ms / %.2f ms (sent at %.0f/s)", ms(lat[len(lat)/2]), ms(lat[len(lat)*99/100]), float64(total-1)/last.Sub(first).Seconds()), ""}
}

// waitListening waits until addr accepts connections.
func waitListening(t *testing.T, addr string) {
	natstest.CheckFor(t, 20*time.Second, 10*time.Millisecond, func() error {
		conn, err := net.Dial("tcp", addr)
		if err == nil {
			conn.Close()
		}
		return err
	})
}
