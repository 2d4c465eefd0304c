package handlers_test

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/paystatus/orderstatus/internal/events"
	"github.com/paystatus/orderstatus/internal/natsinfra"
	"github.com/paystatus/orderstatus/internal/natstest"
	kssandbox "github.com/paystatus/orderstatus/internal/providers/kuaishou/sandbox"
	"github.com/paystatus/orderstatus/internal/telemetry"
)

// notice is a Kuaishou payment notification body, written out as the provider document
// gives it (not with the service's parser), and its kwaisign.
func notice(messageID, appID, orderNo, status string, amount int64, at time.Time) []byte {
	return []byte(`{"data":{"channel":"WECHAT","out_order_no":"` + orderNo + `","attach":"","status":"` + status +
		`","ks_order_no":"121112500031787702250","order_amount":` + strconv.FormatInt(amount, 10) +
		`,"trade_no":"t-1","extra_info":"","enable_promotion":false,"promotion_amount":0},"biz_type":"PAYMENT","message_id":"` +
		messageID + `","app_id":"` + appID + `","timestamp":` + strconv.FormatInt(at.UnixMilli(), 10) + `}`)
}

func kwaisign(body []byte, secret string) string {
	sum := md5.Sum(append(append([]byte{}, body...), secret...))
	return hex.EncodeToString(sum[:])
}

// publishNotice stores a notification on the NATS way in, as a gateway would.
func (e *env) publishNotice(body []byte, sign string) {
	e.t.Helper()
	e.publish("orders.callback.kuaishou", body, nats.Header{"Kwaisign": {sign}})
}

// waitCallbacksIdle waits until ORDERS_CALLBACK holds nothing: every notification settled.
func (e *env) waitCallbacksIdle() {
	e.t.Helper()
	natstest.CheckFor(e.t, 20*time.Second, 20*time.Millisecond, func() error {
		if n := len(e.streamMsgs(natsinfra.CallbackStream)); n != 0 {
			return fmt.Errorf("%d notifications not settled", n)
		}
		return nil
	})
}

func notifications(m *telemetry.Metrics, outcome string) float64 {
	return testutil.ToFloat64(m.Notifications.WithLabelValues("kuaishou", "nats", outcome))
}

// CONTRACT.md section 8 on the NATS way in: a verified notification becomes an event with
// source callback; a resend (same message_id) changes nothing; an older one arriving late is
// stale; a query seeing the same change gives no second event; forged, tampered and
// unknown-app notifications are dead-lettered as invalid_signature, payload byte for byte, and
// a body that is not a notification as invalid_payload.
func TestCallbacksOverNATS(t *testing.T) {
	e := newEnv(t, nil)
	e.metrics = telemetry.NewMetrics(prometheus.NewRegistry())
	e.startReplica(nil)
	order := "cb-order-0001"
	e.sb.PutOrder(kssandbox.Order{AppID: demoApp, Kind: events.KindPayment, OrderNo: order, Amount: 1200,
		KsOrderNo: "121112500031787702250", Steps: []kssandbox.Step{{Status: "SUCCESS"}}})
	t0 := time.Now().Add(-time.Second)
	paid := notice("m-paid", demoApp, order, "SUCCESS", 1200, t0.Add(500*time.Millisecond))
	e.publishNotice(paid, kwaisign(paid, kssandbox.DemoAppSecret))
	evs := e.waitEvents(1)
	if ev := evs[0]; ev.Source != events.SourceCallback || ev.Status != events.StatusSucceeded || ev.OrderNo != order ||
		ev.Amount != 1200 || ev.RequestID != "m-paid" || ev.EventID != events.EventID("kuaishou", "payment", demoApp, order, 1) {
		t.Fatalf("event %+v", ev)
	}
	// Resent, byte for byte (a new Nats-Msg-Id, as a gateway past the duplicate window sends it).
	e.publish("orders.callback.kuaishou", paid, nats.Header{"kwaisign": {kwaisign(paid, kssandbox.DemoAppSecret)}, "Nats-Msg-Id": {"resend-1"}})
	// Disorder: the PROCESSING notification, sent before, arrives after.
	early := notice("m-early", demoApp, order, "PROCESSING", 1200, t0)
	e.publishNotice(early, kwaisign(early, kssandbox.DemoAppSecret))
	// A query sees the same change: no second event.
	e.publish("orders.query.kuaishou.payment", []byte(`{"app_id":"`+demoApp+`","order_no":"`+order+`"}`), nil)
	e.waitCallbacksIdle()
	e.waitIdle()
	if evs := e.events(); len(evs) != 1 {
		t.Fatalf("%d events after a resend, a late notification and a query, want 1: %+v", len(evs), evs)
	}
	if d, s := notifications(e.metrics, "duplicate"), notifications(e.metrics, "stale"); d != 1 || s != 1 {
		t.Fatalf("duplicate %v, stale %v, want 1 and 1", d, s)
	}

	// Hostile: each dead-lettered on orders.dlq.kuaishou.callback, nothing else changes.
	tampered := bytes.Replace(paid, []byte(`"SUCCESS"`), []byte(`"FAILED"`), 1)
	other := notice("m-other", "ks000000000000000001", order, "FAILED", 1200, t0.Add(time.Second))
	for _, h := range []struct {
		body   []byte
		sign   string
		reason string
	}{
		{paid, kwaisign(paid, "a-guessed-secret"), events.ReasonInvalidSignature},
		{tampered, kwaisign(paid, kssandbox.DemoAppSecret), events.ReasonInvalidSignature},
		{paid, "", events.ReasonInvalidSignature},
		{other, kwaisign(other, kssandbox.DemoAppSecret), events.ReasonInvalidSignature},
		{[]byte(`{"hello":"world"}`), kwaisign([]byte(`{"hello":"world"}`), kssandbox.DemoAppSecret), events.ReasonInvalidPayload},
	} {
		e.publishNotice(h.body, h.sign)
	}
	e.waitDeadLetters(5)
	// The notifications are processed concurrently: their dead letters come in any order.
	reasons := map[string]int{}
	tamperedKept := false
	for i, m := range e.streamMsgs(natsinfra.DLQStream) {
		reasons[m.Header.Get(events.HeaderErrorReason)]++
		if m.Subject != "orders.dlq.kuaishou.callback" {
			t.Errorf("dead letter %d on %s", i, m.Subject)
		}
		tamperedKept = tamperedKept || bytes.Equal(m.Data, tampered)
		for _, v := range m.Header {
			for _, s := range v {
				if bytes.Contains([]byte(s), []byte(kssandbox.DemoAppSecret)) || s == kwaisign(tampered, kssandbox.DemoAppSecret) {
					t.Errorf("dead letter carries a secret or a computed signature: %q", s)
				}
			}
		}
	}
	if reasons[events.ReasonInvalidSignature] != 4 || reasons[events.ReasonInvalidPayload] != 1 {
		t.Errorf("dead letter reasons %v, want 4 invalid_signature and 1 invalid_payload", reasons)
	}
	if !tamperedKept {
		t.Error("the tampered notification's dead letter does not carry its body byte for byte")
	}
	if n := len(e.events()); n != 1 {
		t.Fatalf("%d events after hostile notifications", n)
	}
	if b, m := notifications(e.metrics, "bad_signature"), notifications(e.metrics, "malformed"); b != 4 || m != 1 {
		t.Fatalf("bad_signature %v, malformed %v", b, m)
	}
}

// A notification whose amount differs from the recorded one is not applied: the order is
// queried instead, and the provider's answer decides.
func TestCallbackAmountMismatchQueriesTheOrder(t *testing.T) {
	e := newEnv(t, nil)
	e.metrics = telemetry.NewMetrics(prometheus.NewRegistry())
	e.startReplica(nil)
	order := "cb-order-0002"
	e.sb.PutOrder(kssandbox.Order{AppID: demoApp, Kind: events.KindPayment, OrderNo: order, Amount: 1200,
		KsOrderNo: "121112500031787702250", Steps: []kssandbox.Step{{Status: "PROCESSING"}}})
	t0 := time.Now()
	first := notice("m-1", demoApp, order, "PROCESSING", 1200, t0)
	e.publishNotice(first, kwaisign(first, kssandbox.DemoAppSecret))
	e.waitEvents(1)
	calls := len(e.sb.Calls(demoApp, events.KindPayment))
	lie := notice("m-2", demoApp, order, "SUCCESS", 1, t0.Add(time.Second))
	e.publishNotice(lie, kwaisign(lie, kssandbox.DemoAppSecret))
	e.waitCallbacksIdle()
	natstest.CheckFor(t, 15*time.Second, 20*time.Millisecond, func() error {
		if n := len(e.sb.Calls(demoApp, events.KindPayment)); n <= calls {
			return fmt.Errorf("the order was not queried")
		}
		return nil
	})
	e.waitIdle()
	if evs := e.events(); len(evs) != 1 || evs[0].Status != events.StatusPending {
		t.Fatalf("events %+v: the mismatched notification changed the order", evs)
	}
	if n := notifications(e.metrics, "amount_mismatch"); n != 1 {
		t.Fatalf("amount_mismatch %v", n)
	}
}

// A notification stored while no replica runs (one crashed between storing and processing)
// is processed by a replica started later.
func TestStoredNotificationOutlivesTheReplica(t *testing.T) {
	e := newEnv(t, nil)
	stop := e.startReplica(nil)
	stop()
	order := "cb-order-0003"
	body := notice("m-crash", demoApp, order, "SUCCESS", 1200, time.Now())
	e.publishNotice(body, kwaisign(body, kssandbox.DemoAppSecret))
	if n := len(e.streamMsgs(natsinfra.CallbackStream)); n != 1 {
		t.Fatalf("%d notifications stored", n)
	}
	e.startReplica(nil)
	if evs := e.waitEvents(1); evs[0].Source != events.SourceCallback || evs[0].OrderNo != order {
		t.Fatalf("event %+v", evs[0])
	}
	e.waitCallbacksIdle()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	kv, err := e.js.KeyValue(ctx, natsinfra.SeenBucket)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Get(ctx, "kuaishou."+demoApp+".m-crash"); err != nil {
		t.Fatalf("message id not kept: %v", err)
	}
}

// A follow round whose order is already terminal in the store (a notification saw it end)
// ends without calling the provider; the notification's latency to its event is measured.
func TestFollowRoundEndsWithoutACallOnceTerminal(t *testing.T) {
	e := newEnv(t, fastFollow)
	e.metrics = telemetry.NewMetrics(prometheus.NewRegistry())
	e.startReplica(nil)
	order := "cb-follow-0001"
	e.sb.PutOrder(kssandbox.Order{AppID: demoApp, Kind: events.KindPayment, OrderNo: order, Amount: 1200,
		KsOrderNo: "121112500031787702250", Steps: []kssandbox.Step{{Status: "PROCESSING"}}})
	e.publish("orders.query.kuaishou.payment", []byte(`{"app_id":"`+demoApp+`","order_no":"`+order+`","follow":true}`), nil)
	e.waitEvents(1)
	paid := notice("m-follow", demoApp, order, "SUCCESS", 1200, time.Now())
	e.publishNotice(paid, kwaisign(paid, kssandbox.DemoAppSecret))
	if evs := e.waitEvents(2); evs[1].Source != events.SourceCallback || evs[1].Status != events.StatusSucceeded {
		t.Fatalf("event %+v", evs[1])
	}
	natstest.CheckFor(t, 15*time.Second, 50*time.Millisecond, func() error {
		if n := testutil.ToFloat64(e.metrics.FollowsEnded.WithLabelValues("kuaishou", "payment")); n != 1 {
			return fmt.Errorf("follow rounds ended early: %v", n)
		}
		if n := len(e.queued()); n != 0 {
			return fmt.Errorf("%d messages left in %s", n, natsinfra.QueryStream)
		}
		return nil
	})
	if n := len(e.sb.Calls(demoApp, events.KindPayment)); n != 1 {
		t.Fatalf("%d provider calls, want 1: the follow round asked about an order that had ended", n)
	}
	var m dto.Metric
	if err := e.metrics.NotificationLatency.WithLabelValues("kuaishou", events.KindPayment).(prometheus.Histogram).Write(&m); err != nil {
		t.Fatal(err)
	}
	if n := m.GetHistogram().GetSampleCount(); n != 1 {
		t.Fatalf("latency samples %d, want 1", n)
	}
}

// A notification on the subject of a provider that sends none here is dead-lettered as
// unknown_provider under that provider's name when it is readable, and under unknown when not
// (CONTRACT.md section 4).
func TestCallbackForAnUnknownProvider(t *testing.T) {
	e := newEnv(t, nil)
	e.startReplica(nil)
	body := notice("m-1", kssandbox.DemoAppID, demoOrder, "SUCCESS", 1200, time.Now())
	e.publish("orders.callback.paypal", body, nats.Header{"Kwaisign": {kwaisign(body, kssandbox.DemoAppSecret)}})
	e.publish("orders.callback.pay.pal", body, nats.Header{"Kwaisign": {kwaisign(body, kssandbox.DemoAppSecret)}})
	e.waitDeadLetters(2)
	got := map[string]string{}
	for _, m := range e.streamMsgs(natsinfra.DLQStream) {
		got[m.Subject] = m.Header.Get(events.HeaderErrorReason)
	}
	want := map[string]string{"orders.dlq.paypal.callback": events.ReasonUnknownProvider, "orders.dlq.unknown.callback": events.ReasonUnknownProvider}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("dead letters %v, want %v", got, want)
	}
}

// A settlement or refund seen by a notification and by a query is one event, in either order:
// the notification says SUCCESS where query_settle and query_refund say SETTLE_SUCCESS and
// REFUND_SUCCESS, the same status in the provider's two vocabularies. The event keeps the raw
// value of the source that saw the change first.
func TestCallbackAndQueryOfSettlementAndRefundAreOneEvent(t *testing.T) {
	e := newEnv(t, nil)
	e.startReplica(nil)
	t0 := time.Now().Add(-time.Minute)
	type order struct {
		kind, orderNo, processing, success string
		callbackFirst                      bool
	}
	orders := []order{
		{events.KindSettlement, "cb-settle-0001", "SETTLE_PROCESSING", "SETTLE_SUCCESS", true},
		{events.KindSettlement, "cb-settle-0002", "SETTLE_PROCESSING", "SETTLE_SUCCESS", false},
		{events.KindRefund, "cb-refund-0001", "REFUND_PROCESSING", "REFUND_SUCCESS", true},
		{events.KindRefund, "cb-refund-0002", "REFUND_PROCESSING", "REFUND_SUCCESS", false},
	}
	want := 0
	for i, o := range orders {
		so := kssandbox.Order{AppID: demoApp, Kind: o.kind, OrderNo: o.orderNo, Amount: 234,
			KsOrderNo: "121120711774457276553", KsRefNo: "321120700415719078553",
			Steps: []kssandbox.Step{{Status: o.success}}}
		e.sb.PutOrder(so)
		query := func() {
			e.publish("orders.query.kuaishou."+o.kind, []byte(`{"app_id":"`+demoApp+`","order_no":"`+o.orderNo+`"}`), nil)
		}
		notify := func(status string, at time.Time) {
			n, ok := e.sb.NotificationOf(so, status, at)
			if !ok {
				t.Fatalf("no notification of %s", status)
			}
			e.publishNotice(n.Body, n.Kwaisign)
		}
		if o.callbackFirst {
			notify(o.processing, t0.Add(time.Duration(i)*time.Second))
			want++
			e.waitEvents(want)
			notify(o.success, t0.Add(time.Duration(i)*time.Second+time.Millisecond))
			want++
			e.waitEvents(want)
			query()
		} else {
			query()
			want++
			e.waitEvents(want)
			notify(o.success, time.Now().Add(time.Second))
		}
		e.waitCallbacksIdle()
		e.waitIdle()
		if evs := e.events(); len(evs) != want {
			t.Fatalf("%s %s: %d events, want %d (a change seen both ways is one event): %+v", o.kind, o.orderNo, len(evs), want, evs[len(evs)-1])
		}
		last, raw := e.events()[want-1], o.success
		if o.callbackFirst {
			raw = "SUCCESS" // the notification's own word
		}
		if last.Status != events.StatusSucceeded || last.ProviderStatus != raw {
			t.Fatalf("%s %s: last event %s/%s, want succeeded/%s", o.kind, o.orderNo, last.Status, last.ProviderStatus, raw)
		}
	}
}

// A notification is told from its replay by its message_id for as long as the ids are kept
// (natsinfra.CallbackSeenFor). One whose signed timestamp is older than that may have been
// processed already, its id since forgotten: it changes nothing and is counted stale, whatever
// it says. A younger one, never processed, is applied.
func TestNotificationOlderThanTheIdsKeptChangesNothing(t *testing.T) {
	e := newEnv(t, nil)
	e.metrics = telemetry.NewMetrics(prometheus.NewRegistry())
	e.startReplica(nil)
	replayed := notice("m-replayed", demoApp, "cb-replay-0001", "SUCCESS", 1200, time.Now().Add(-natsinfra.CallbackSeenFor-time.Hour))
	e.publishNotice(replayed, kwaisign(replayed, kssandbox.DemoAppSecret))
	late := notice("m-late", demoApp, "cb-replay-0002", "SUCCESS", 1200, time.Now().Add(-natsinfra.CallbackSeenFor+time.Hour))
	e.publishNotice(late, kwaisign(late, kssandbox.DemoAppSecret))
	e.waitCallbacksIdle()
	e.waitIdle()
	evs := e.events()
	if len(evs) != 1 || evs[0].OrderNo != "cb-replay-0002" {
		t.Fatalf("events %+v, want the younger notification's alone", evs)
	}
	if s := notifications(e.metrics, "stale"); s != 1 {
		t.Fatalf("stale %v, want 1", s)
	}
	if dl, err := e.tryStreamMsgs(natsinfra.DLQStream); err == nil && len(dl) != 0 {
		t.Fatalf("%d dead letters: a verified notification is no dead letter", len(dl))
	}
}

// A notification on a subject whose provider is configured but sends none (Kudian) is dead-
// lettered under that provider's name, as one naming no configured provider is
// (TestCallbackForAnUnknownProvider; CONTRACT.md sections 4 and 8).
func TestCallbackOfAProviderWithoutNotifications(t *testing.T) {
	e := newEnv(t, nil)
	e.startReplica(nil)
	body := notice("m-kd", demoApp, "cb-kudian-0001", "SUCCESS", 1200, time.Now())
	e.publish("orders.callback.kudian", body, nats.Header{"Kwaisign": {kwaisign(body, kssandbox.DemoAppSecret)}})
	e.publish("orders.callback.nobody", body, nats.Header{"Kwaisign": {kwaisign(body, kssandbox.DemoAppSecret)}})
	e.waitDeadLetters(2)
	subjects := map[string]string{}
	for _, m := range e.streamMsgs(natsinfra.DLQStream) {
		subjects[m.Header.Get(events.HeaderSubject)] = m.Subject
		if r := m.Header.Get(events.HeaderErrorReason); r != events.ReasonUnknownProvider || !bytes.Equal(m.Data, body) {
			t.Errorf("dead letter of %s: reason %s, body kept %v", m.Header.Get(events.HeaderSubject), r, bytes.Equal(m.Data, body))
		}
	}
	if s := subjects["orders.callback.kudian"]; s != "orders.dlq.kudian.callback" {
		t.Errorf("kudian's notification dead-lettered on %q", s)
	}
	if s := subjects["orders.callback.nobody"]; s != "orders.dlq.nobody.callback" {
		t.Errorf("an unknown provider's notification dead-lettered on %q", s)
	}
	if n := len(e.events()); n != 0 {
		t.Fatalf("%d events", n)
	}
}
