package handlers_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/paystatus/orderstatus/internal/config"
	"github.com/paystatus/orderstatus/internal/events"
	"github.com/paystatus/orderstatus/internal/natsinfra"
	"github.com/paystatus/orderstatus/internal/natstest"
	kssandbox "github.com/paystatus/orderstatus/internal/providers/kuaishou/sandbox"
)

const (
	demoApp   = kssandbox.DemoAppID
	demoOrder = kssandbox.DemoOrderNo
)

func TestEachKindGivesItsEvent(t *testing.T) {
	e := newEnv(t, nil)
	e.startReplica(nil)

	e.publish("orders.query.kuaishou.payment",
		[]byte(`{"app_id":"`+demoApp+`","order_no":"`+demoOrder+`","attributes":{"tenant":"t-1"}}`),
		nats.Header{"Nats-Msg-Id": {"req-payment-1"}})
	settle, _ := msgpack.Marshal(map[string]any{"app_id": demoApp, "order_no": demoOrder, "request_id": "req-settle"})
	e.publish("orders.query.kuaishou.settlement", settle, nats.Header{"Content-Type": {"application/msgpack"}})
	e.publish("orders.query.kuaishou.refund", []byte(`{"app_id":"`+demoApp+`","order_no":"1660811124083refund"}`), nil)
	e.publish("orders.query.kuaishou.payment", []byte(`{"app_id":"`+demoApp+`","order_no":"1637808229728demo"}`), nil)

	evs := e.waitEvents(4)
	byKey := map[string]events.StatusEvent{}
	for _, ev := range evs {
		byKey[ev.Kind+"/"+ev.OrderNo] = ev
		if ev.ObservedAt == "" {
			t.Errorf("%s: no observed_at", ev.OrderNo)
		}
		if _, err := time.Parse(time.RFC3339Nano, ev.ObservedAt); err != nil {
			t.Errorf("observed_at %q: %v", ev.ObservedAt, err)
		}
		ev.ObservedAt = ""
		byKey[ev.Kind+"/"+ev.OrderNo] = ev
	}

	pay := byKey["payment/"+demoOrder]
	pay.Details = intsAsInt64(pay.Details).(map[string]any)
	want := events.StatusEvent{
		EventID:   events.EventID("kuaishou", "payment", demoApp, demoOrder, 1),
		RequestID: "req-payment-1", Provider: "kuaishou", Kind: "payment", AppID: demoApp, OrderNo: demoOrder,
		ProviderOrderNo: "121112500031787702250", ProviderRefNo: "", Status: events.StatusPending, PreviousStatus: "",
		ProviderStatus: "PROCESSING", Terminal: false, Amount: 1200, Currency: "CNY", PaidAt: "", Channel: events.ChannelUnknown,
		Details: map[string]any{
			"extra_info":       map[string]any{"url": "", "item_type": "VIDEO", "item_id": "5239375269605736845", "author_id": "123"},
			"enable_promotion": true, "promotion_amount": int64(1), "open_id": "5b748c61ef280130c0656638ebd4eaa6", "order_status": int64(2),
		},
		Attributes: map[string]string{"tenant": "t-1"}, Source: events.SourceQuery,
	}
	if !reflect.DeepEqual(pay, want) {
		t.Errorf("payment event\n got %#v\nwant %#v", pay, want)
	}

	st := byKey["settlement/"+demoOrder]
	if st.RequestID != "req-settle" || st.Status != events.StatusPending || st.ProviderStatus != "SETTLE_PROCESSING" ||
		st.Amount != 234 || st.ProviderRefNo != "321120700415719078553" || st.ProviderOrderNo != "121120711774457276553" ||
		intsAsInt64(st.Details["total_amount"]) != int64(3234) || st.Channel != events.ChannelUnknown || len(st.Attributes) != 0 {
		t.Errorf("settlement event %#v", st)
	}
	rf := byKey["refund/1660811124083refund"]
	if rf.Status != events.StatusPending || rf.ProviderStatus != "REFUND_PROCESSING" || rf.Amount != 1 ||
		rf.ProviderRefNo != "222081811172813537436" || rf.Details["ks_refund_type"] != "保证金账户退款" || rf.RequestID == "" {
		t.Errorf("refund event %#v", rf)
	}
	done := byKey["payment/1637808229728demo"]
	if done.Status != events.StatusSucceeded || !done.Terminal || done.Amount != 990 || done.Channel != events.ChannelAlipay ||
		done.PaidAt == "" || done.Details["extra_info"] != "" {
		t.Errorf("succeeded payment event %#v", done)
	}
	e.waitIdle()
}

func TestJSONEncodingOfEvents(t *testing.T) {
	e := newEnv(t, func(c *config.Config) { c.Events.Encoding = "json" })
	e.startReplica(nil)
	e.publish("orders.query.kuaishou.payment", []byte(`{"app_id":"`+demoApp+`","order_no":"`+demoOrder+`"}`), nil)
	e.waitEvents(1)
	m := e.streamMsgs(natsinfra.StatusStream)[0]
	if m.Header.Get("Content-Type") != "application/json" || m.Data[0] != '{' {
		t.Fatalf("content type %q, data %q", m.Header.Get("Content-Type"), m.Data)
	}
}

func TestSameStatusOnceThenChange(t *testing.T) {
	e := newEnv(t, nil)
	e.startReplica(nil)
	req := []byte(`{"app_id":"` + demoApp + `","order_no":"` + demoOrder + `"}`)

	e.publish("orders.query.kuaishou.payment", req, nil)
	e.waitEvents(1)
	e.waitIdle()
	e.publish("orders.query.kuaishou.payment", req, nil)
	e.waitIdle()
	if n := len(e.events()); n != 1 {
		t.Fatalf("the same status twice gave %d events", n)
	}

	e.sb.SetStatus(demoApp, events.KindPayment, demoOrder, "SUCCESS")
	e.publish("orders.query.kuaishou.payment", req, nil)
	evs := e.waitEvents(2)
	second := evs[1]
	if second.Status != events.StatusSucceeded || second.PreviousStatus != events.StatusPending || !second.Terminal ||
		second.ProviderStatus != "SUCCESS" || second.Channel != events.ChannelWechat || second.PaidAt == "" || second.Amount != 1200 {
		t.Fatalf("second event %#v", second)
	}
	if second.EventID == evs[0].EventID {
		t.Fatal("same event id for a change")
	}
	e.waitIdle()
}

func TestBadInputIsDeadLettered(t *testing.T) {
	e := newEnv(t, nil)
	e.startReplica(nil)
	cases := []struct {
		subject, body, dlq, reason string
		hdr                        nats.Header
	}{
		{"orders.query.kuaishou.payment", "not json at all", "orders.dlq.kuaishou.payment", events.ReasonInvalidPayload, nil},
		{"orders.query.kuaishou.payment", `{"app_id":`, "orders.dlq.kuaishou.payment", events.ReasonInvalidPayload, nil},
		{"orders.query.kuaishou.payment", `{"app_id":"a"}`, "orders.dlq.kuaishou.payment", events.ReasonInvalidPayload, nats.Header{"Content-Type": {"text/plain"}}},
		{"orders.query.kuaishou.payment", `{"app_id":123,"order_no":"123456"}`, "orders.dlq.kuaishou.payment", events.ReasonInvalidField, nil},
		{"orders.query.kuaishou.payment", `{"app_id":"` + demoApp + `","order_no":"abc"}`, "orders.dlq.kuaishou.payment", events.ReasonInvalidField, nil},
		{"orders.query.kuaishou.payment", `{"app_id":"` + demoApp + `","order_no":"1711619867139contractDemo","follow_until":"soon"}`, "orders.dlq.kuaishou.payment", events.ReasonInvalidField, nil},
		{"orders.query.paypal.payment", `{"app_id":"x","order_no":"123456"}`, "orders.dlq.paypal.payment", events.ReasonUnknownProvider, nil},
		{"orders.query.kuaishou.chargeback", `{"app_id":"x","order_no":"123456"}`, "orders.dlq.kuaishou.chargeback", events.ReasonUnknownKind, nil},
		{"orders.query.kuaishou.payment.extra", `{"app_id":"x","order_no":"123456"}`, "orders.dlq.unknown.unknown", events.ReasonUnknownProvider, nil},
		{"orders.query.kuaishou.payment", `{"app_id":"ks000","order_no":"123456"}`, "orders.dlq.kuaishou.payment", events.ReasonUnknownApp, nil},
		{"orders.query.kuaishou.refund", `{"app_id":"` + demoApp + `","order_no":"no-such-refund"}`, "orders.dlq.kuaishou.refund", events.ReasonProviderRejected, nil},
		{"orders.query.pay$pal.payment", `{"app_id":"x","order_no":"123456"}`, "orders.dlq.unknown.payment", events.ReasonUnknownProvider, nil},
		{"orders.query." + strings.Repeat("p", 65) + ".payment", `{"app_id":"x","order_no":"123456"}`, "orders.dlq.unknown.payment", events.ReasonUnknownProvider, nil},
		{"orders.query.kudian.refund", `{"app_id":"x","order_no":"123456"}`, "orders.dlq.kudian.refund", events.ReasonUnknownKind, nil},
	}
	for i, c := range cases {
		hdr := nats.Header{"X-Case": {fmt.Sprint(i)}, "Nats-Msg-Id": {fmt.Sprintf("bad-%d", i)}}
		for k, v := range c.hdr {
			hdr[k] = v
		}
		e.publish(c.subject, []byte(c.body), hdr)
	}
	// The consumer keeps going after all of them.
	e.publish("orders.query.kuaishou.payment", []byte(`{"app_id":"`+demoApp+`","order_no":"`+demoOrder+`"}`), nil)
	e.waitEvents(1)

	var dlq map[string]*struct{ subject, reason, text, data, origID, seq string }
	natstest.CheckFor(t, 15*time.Second, 20*time.Millisecond, func() error {
		msgs := e.streamMsgs(natsinfra.DLQStream)
		if len(msgs) != len(cases) {
			return fmt.Errorf("%d dead letters, want %d", len(msgs), len(cases))
		}
		dlq = map[string]*struct{ subject, reason, text, data, origID, seq string }{}
		for _, m := range msgs {
			dlq[m.Header.Get("X-Case")] = &struct{ subject, reason, text, data, origID, seq string }{
				m.Subject, m.Header.Get("Orders-Error-Reason"), m.Header.Get("Orders-Error"), string(m.Data),
				m.Header.Get("Orders-Original-Msg-Id"), m.Header.Get("Orders-Stream-Seq")}
		}
		return nil
	})
	for i, c := range cases {
		got := dlq[fmt.Sprint(i)]
		if got == nil {
			t.Errorf("case %d: no dead letter", i)
			continue
		}
		if got.subject != c.dlq || got.reason != c.reason || got.data != c.body || got.text == "" ||
			got.origID != fmt.Sprintf("bad-%d", i) || got.seq == "" {
			t.Errorf("case %d (%s %s): got %+v", i, c.subject, c.body, got)
		}
	}
	if r := dlq["10"]; r != nil && !strings.Contains(r.text, "100200104") {
		t.Errorf("provider_rejected text lacks the provider's code: %q", r.text)
	}
	e.waitIdle()
	if n := len(e.queued()); n != 0 {
		t.Fatalf("%d requests left in the work queue", n)
	}
}

// A crash between any two steps, simulated by failing right after the step, gives on
// redelivery exactly one event downstream.
func TestCrashBetweenStepsGivesNoSecondCopy(t *testing.T) {
	for _, step := range []string{"claimed", "published"} {
		t.Run(step, func(t *testing.T) {
			e := newEnv(t, nil)
			var failed atomic.Int32
			e.startReplica(failing(func(s string) error {
				if s == step && failed.Add(1) == 1 {
					return errors.New("crash after " + s)
				}
				return nil
			}))
			e.publish("orders.query.kuaishou.payment", []byte(`{"app_id":"`+demoApp+`","order_no":"`+demoOrder+`"}`), nil)
			e.waitEvents(1)
			e.waitIdle()
			if failed.Load() < 1 {
				t.Fatal("the failure was never injected")
			}
			if n := len(e.events()); n != 1 {
				t.Fatalf("%d events after a crash after %s", n, step)
			}
			kv, _ := e.js.KeyValue(context.Background(), natsinfra.StateBucket)
			entry, err := kv.Get(context.Background(), "kuaishou.payment."+demoApp+"."+demoOrder)
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(string(entry.Value()), `"pending":`) {
				t.Fatalf("state still holds a pending event: %s", entry.Value())
			}
		})
	}
}

// Two replicas racing on one order record one transition and publish one event.
func TestReplicasRacingRecordOneTransition(t *testing.T) {
	e := newEnv(t, nil)
	e.startReplica(nil)
	e.startReplica(nil)
	req := []byte(`{"app_id":"` + demoApp + `","order_no":"` + demoOrder + `"}`)
	for range 40 {
		e.publish("orders.query.kuaishou.payment", req, nil)
	}
	e.waitIdle()
	if n := len(e.events()); n != 1 {
		t.Fatalf("%d events from 40 racing queries of one unchanged order", n)
	}
	e.sb.SetStatus(demoApp, events.KindPayment, demoOrder, "SUCCESS")
	for range 40 {
		e.publish("orders.query.kuaishou.payment", req, nil)
	}
	e.waitIdle()
	evs := e.events()
	if len(evs) != 2 || evs[1].PreviousStatus != events.StatusPending || evs[1].Status != events.StatusSucceeded {
		t.Fatalf("events after the change: %+v", evs)
	}
}

// intsAsInt64 makes every integer in a decoded msgpack value an int64: msgpack keeps the
// smallest integer type that holds a value, and the test compares values, not widths.
func intsAsInt64(v any) any {
	switch t := v.(type) {
	case map[string]any:
		for k, e := range t {
			t[k] = intsAsInt64(e)
		}
	case []any:
		for i, e := range t {
			t[i] = intsAsInt64(e)
		}
	case int8:
		return int64(t)
	case int16:
		return int64(t)
	case int32:
		return int64(t)
	case uint8:
		return int64(t)
	case uint16:
		return int64(t)
	case uint32:
		return int64(t)
	case uint64:
		return int64(t)
	}
	return v
}

// A provider that cannot be reached is retried with delays, then dead-lettered.
func TestUnreachableProviderEndsAsRetriesExhausted(t *testing.T) {
	e := newEnv(t, func(c *config.Config) {
		p := c.Providers["kuaishou"]
		p.BaseURL = "http://127.0.0.1:1" // nothing listens there
		c.Providers["kuaishou"] = p
		c.Consumer.MaxDeliver = 2
	})
	e.startReplica(nil)
	body := []byte(`{"app_id":"` + demoApp + `","order_no":"` + demoOrder + `"}`)
	e.publish("orders.query.kuaishou.payment", body, nil)
	e.waitDeadLetters(1)
	m := e.streamMsgs(natsinfra.DLQStream)[0]
	if m.Header.Get("Orders-Error-Reason") != events.ReasonRetriesExhausted || m.Header.Get("Orders-Delivered") != "2" ||
		string(m.Data) != string(body) || !strings.Contains(m.Header.Get("Orders-Error"), "network error") {
		t.Fatalf("dead letter %v %q", m.Header, m.Data)
	}
	if len(e.events()) != 0 {
		t.Fatal("an event from an unreachable provider")
	}
}

// A request waiting for its app's limit longer than the ack wait stays this replica's: its
// delivery is kept alive, so JetStream does not hand it out again and the provider is asked
// once per request (without the keep-alive, the waiting requests would come back after 1 s and
// be asked about again).
func TestWaitLongerThanAckWaitIsOneCall(t *testing.T) {
	e := newEnv(t, func(c *config.Config) {
		c.Consumer.AckWait = time.Second
		p := c.Providers["kuaishou"]
		p.QPS = 1
		c.Providers["kuaishou"] = p
	})
	const n = 4 // the last waits about 3 s for its slot: three ack waits
	for i := range n {
		no := fmt.Sprintf("alive-%d", i)
		e.sb.PutOrder(kssandbox.Order{AppID: demoApp, Kind: events.KindPayment, OrderNo: no,
			Steps: []kssandbox.Step{{Status: "SUCCESS"}}, Amount: 1, KsOrderNo: "ks" + no})
	}
	e.startReplica(nil)
	for i := range n {
		e.publish("orders.query.kuaishou.payment", []byte(fmt.Sprintf(`{"app_id":"%s","order_no":"alive-%d"}`, demoApp, i)), nil)
	}
	e.waitEvents(n)
	e.waitIdle()
	c, err := e.js.Consumer(context.Background(), natsinfra.QueryStream, e.cfg.Consumer.Name)
	if err != nil {
		t.Fatal(err)
	}
	info, err := c.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	calls := len(e.sb.Calls(demoApp, events.KindPayment))
	t.Logf("figures: keep-alive: requests=%d waited_up_to=%dx_ack_wait deliveries=%d provider_calls=%d", n, n-1, info.Delivered.Consumer, calls)
	if info.Delivered.Consumer != n || calls != n {
		t.Fatalf("%d deliveries and %d provider calls for %d requests", info.Delivered.Consumer, calls, n)
	}
}

// A state written as a publish with the revision it must follow still writes over a key an
// operator deleted (`nats kv del` leaves a delete marker, which Create writes over): the order
// is recorded as first observed again, with no request redelivered or dead-lettered.
func TestOrderDeletedByAnOperatorIsRecordedAgain(t *testing.T) {
	e := newEnv(t, nil)
	e.startReplica(nil)
	req := []byte(`{"app_id":"` + demoApp + `","order_no":"` + demoOrder + `"}`)
	e.publish("orders.query.kuaishou.payment", req, nil)
	e.waitEvents(1)
	e.waitIdle()
	kv, err := e.js.KeyValue(context.Background(), natsinfra.StateBucket)
	if err != nil {
		t.Fatal(err)
	}
	key := "kuaishou.payment." + demoApp + "." + demoOrder
	if err := kv.Delete(context.Background(), key); err != nil {
		t.Fatal(err)
	}
	e.sb.SetStatus(demoApp, events.KindPayment, demoOrder, "SUCCESS")
	e.publish("orders.query.kuaishou.payment", req, nil)
	e.waitIdle()
	natstest.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		entry, err := kv.Get(context.Background(), key)
		if err != nil {
			return err
		}
		if !strings.Contains(string(entry.Value()), `"status":"succeeded"`) || strings.Contains(string(entry.Value()), `"pending":`) {
			return fmt.Errorf("state %s", entry.Value())
		}
		return nil
	})
	if n := len(e.streamMsgs(natsinfra.DLQStream)); n != 0 {
		t.Fatalf("%d dead letters", n)
	}
}

// A request holds its call slot for the provider call alone: while one request waits on NATS
// to record its answer, the next request's provider call goes ahead, even with one slot.
func TestRecordingHoldsNoCallSlot(t *testing.T) {
	e := newEnv(t, func(c *config.Config) { c.Consumer.Concurrency = 1 })
	for i := range 2 {
		no := fmt.Sprintf("slot-%d", i)
		e.sb.PutOrder(kssandbox.Order{AppID: demoApp, Kind: events.KindPayment, OrderNo: no,
			Steps: []kssandbox.Step{{Status: "SUCCESS"}}, Amount: 1, KsOrderNo: "ks" + no})
	}
	release := make(chan struct{})
	var claims atomic.Int32
	e.startReplica(failing(func(step string) error {
		if step == "claimed" && claims.Add(1) == 1 {
			<-release // the first request's claim is made and its recording held here
		}
		return nil
	}))
	var once sync.Once
	open := func() { once.Do(func() { close(release) }) }
	t.Cleanup(open) // before the replica stops
	for i := range 2 {
		e.publish("orders.query.kuaishou.payment", []byte(fmt.Sprintf(`{"app_id":"%s","order_no":"slot-%d"}`, demoApp, i)), nil)
	}
	natstest.CheckFor(t, 15*time.Second, 10*time.Millisecond, func() error {
		if n := len(e.sb.Calls(demoApp, events.KindPayment)); n != 2 {
			return fmt.Errorf("%d provider calls while the first request records its answer, want 2", n)
		}
		return nil
	})
	open()
	e.waitEvents(2)
}
