package handlers_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/paystatus/orderstatus/internal/events"
	"github.com/paystatus/orderstatus/internal/natsinfra"
	"github.com/paystatus/orderstatus/internal/natstest"
	kssandbox "github.com/paystatus/orderstatus/internal/providers/kuaishou/sandbox"
	"github.com/paystatus/orderstatus/internal/providers/sandboxkit"
	"github.com/paystatus/orderstatus/internal/telemetry"
)

// counterSum is the sum of a counter vector's series whose labels include want.
func counterSum(t *testing.T, g prometheus.Gatherer, name string, want map[string]string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			for k, v := range want {
				if labels[k] != v {
					continue series
				}
			}
			sum += m.GetCounter().GetValue()
		}
	}
	return sum
}

// A slow answer never un-pays a paid order: answers are ordered by when their query was sent,
// so the first request's answer (PROCESSING), arriving after the second's (SUCCESS), is ignored
// as stale: one event (succeeded), and ORDERS_STATE stays succeeded.
func TestSlowStaleAnswerIsIgnored(t *testing.T) {
	e := newEnv(t, nil)
	reg := prometheus.NewRegistry()
	e.metrics = telemetry.NewMetrics(reg)
	e.startReplica(nil)
	const no = "overlap-0001"
	e.sb.PutOrder(kssandbox.Order{AppID: demoApp, Kind: events.KindPayment, OrderNo: no, Amount: 900, KsOrderNo: "ks-" + no,
		PayChannel: "ALIPAY", Steps: []kssandbox.Step{{Status: "PROCESSING"}, {After: 300 * time.Millisecond, Status: "SUCCESS"}}})
	e.sb.StallFor = 1500 * time.Millisecond
	e.sb.SetFault(demoApp, sandboxkit.Stall, 1) // the first answer (PROCESSING) comes 1.5 s late
	body := []byte(`{"app_id":"` + demoApp + `","order_no":"` + no + `"}`)
	e.publish("orders.query.kuaishou.payment", body, nil)
	time.Sleep(400 * time.Millisecond) // the second request, 400 ms later, is answered at once: SUCCESS
	e.publish("orders.query.kuaishou.payment", body, nil)
	e.waitEvents(1)
	e.waitIdle() // the stale answer has been handled too
	evs := e.events()
	if len(evs) != 1 || evs[0].Status != events.StatusSucceeded {
		for _, ev := range evs {
			t.Logf("event %s previous %s", ev.Status, ev.PreviousStatus)
		}
		t.Fatalf("%d events; want only succeeded", len(evs))
	}
	kv, _ := e.js.KeyValue(context.Background(), natsinfra.StateBucket)
	entry, err := kv.Get(context.Background(), "kuaishou.payment."+demoApp+"."+no)
	if err != nil {
		t.Fatal(err)
	}
	var st struct{ Status string }
	json.Unmarshal(entry.Value(), &st)
	if st.Status != string(events.StatusSucceeded) {
		t.Fatalf("ORDERS_STATE at %s", st.Status)
	}
	stale := counterSum(t, reg, "orders_answers_ignored_total", map[string]string{"reason": "stale"})
	if stale != 1 {
		t.Fatalf("%v stale answers counted, want 1", stale)
	}
	// A later glitch of the provider back to PROCESSING is not a move back either.
	e.sb.SetStatus(demoApp, events.KindPayment, no, "PROCESSING")
	e.publish("orders.query.kuaishou.payment", body, nil)
	natstest.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if n := counterSum(t, reg, "orders_answers_ignored_total", map[string]string{"reason": "after_terminal"}); n != 1 {
			return fmt.Errorf("%v after_terminal answers", n)
		}
		return nil
	})
	e.waitIdle()
	if n := len(e.events()); n != 1 {
		t.Fatalf("%d events after a non-terminal answer for a paid order", n)
	}
	t.Logf("figures: requests=3 events=1 (succeeded) ignored_stale=%v ignored_after_terminal=1 (requests 400 ms apart, the first's answer 1.5 s late)", stale)
}

// An order going A -> B -> A gives three events: each transition has its own id, so the
// duplicate window does not drop the second A.
func TestABAGivesThreeEvents(t *testing.T) {
	e := newEnv(t, nil)
	e.startReplica(nil)
	const no = "aba-000001"
	e.sb.PutOrder(kssandbox.Order{AppID: demoApp, Kind: events.KindPayment, OrderNo: no, Amount: 100, KsOrderNo: "ks-" + no,
		PayChannel: "WECHAT", Steps: []kssandbox.Step{{Status: "PROCESSING"}}})
	body := []byte(`{"app_id":"` + demoApp + `","order_no":"` + no + `"}`)
	for i, status := range []string{"PROCESSING", "UNKNOW", "PROCESSING"} {
		e.sb.SetStatus(demoApp, events.KindPayment, no, status)
		e.publish("orders.query.kuaishou.payment", body, nil)
		e.waitEvents(i + 1)
		e.waitIdle()
	}
	evs := e.events()
	var got []string
	for i, ev := range evs {
		if want := events.EventID("kuaishou", "payment", demoApp, no, uint64(i+1)); ev.EventID != want {
			t.Fatalf("event %d id %s, want transition %d's %s", i, ev.EventID, i+1, want)
		}
		got = append(got, string(ev.PreviousStatus)+">"+string(ev.Status))
	}
	if strings.Join(got, " ") != ">pending pending>unknown unknown>pending" {
		t.Fatalf("transitions %v", got)
	}
}
