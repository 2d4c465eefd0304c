package handlers_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/paystatus/orderstatus/internal/events"
	"github.com/paystatus/orderstatus/internal/handlers"
)

func TestLookupService(t *testing.T) {
	e := newEnv(t, nil)
	r := e.build(nil)
	defer r.close()
	e.startLookup(r)

	ask := func(subject, body string) *nats.Msg {
		t.Helper()
		m, err := e.nc.Request(subject, []byte(body), 5*time.Second)
		if err != nil {
			t.Fatalf("%s: %v", subject, err)
		}
		return m
	}
	reply := func(m *nats.Msg) handlers.LookupReply {
		t.Helper()
		if code := m.Header.Get("Nats-Service-Error-Code"); code != "" {
			t.Fatalf("error %s: %s", code, m.Header.Get("Nats-Service-Error"))
		}
		var r handlers.LookupReply
		if err := json.Unmarshal(m.Data, &r); err != nil {
			t.Fatalf("%v: %s", err, m.Data)
		}
		return r
	}
	req := `{"app_id":"` + demoApp + `","order_no":"` + demoOrder + `","request_id":"look-1"}`
	first := reply(ask("orders.lookup.kuaishou.payment", req))
	if !first.Changed || first.Status != events.StatusPending || first.Amount != 1200 || first.RequestID != "look-1" ||
		first.EventID != events.EventID("kuaishou", "payment", demoApp, demoOrder, 1) {
		t.Fatalf("first lookup %+v", first)
	}
	if evs := e.waitEvents(1); evs[0].EventID != first.EventID {
		t.Fatalf("published %+v", evs[0])
	}
	again := reply(ask("orders.lookup.kuaishou.payment", req))
	if again.Changed || again.Status != events.StatusPending {
		t.Fatalf("second lookup %+v", again)
	}
	e.sb.SetStatus(demoApp, events.KindPayment, demoOrder, "SUCCESS")
	changed := reply(ask("orders.lookup.kuaishou.payment", req))
	if !changed.Changed || changed.Status != events.StatusSucceeded || changed.PreviousStatus != events.StatusPending {
		t.Fatalf("after the change %+v", changed)
	}
	e.waitEvents(2)
	kd := reply(ask("orders.lookup.kudian.payment", `{"app_id":"kd100020200220","provider_order_no":"600230547601422048"}`))
	if kd.Provider != "kudian" || kd.Status != events.StatusPending {
		t.Fatalf("kudian %+v", kd)
	}

	for body, code := range map[string]string{
		`not json`:                              events.ReasonInvalidPayload,
		`{"app_id":"` + demoApp + `"}`:          events.ReasonInvalidField,
		`{"app_id":"nope","order_no":"123456"}`: events.ReasonUnknownApp,
		`{"app_id":"` + demoApp + `","order_no":"no-such-order"}`: events.ReasonProviderRejected,
	} {
		m := ask("orders.lookup.kuaishou.payment", body)
		if got := m.Header.Get("Nats-Service-Error-Code"); got != code {
			t.Errorf("%s: code %q (%s), want %q", body, got, m.Header.Get("Nats-Service-Error"), code)
		}
	}

	var info struct {
		Name      string `json:"name"`
		Endpoints []struct {
			Subject string `json:"subject"`
		} `json:"endpoints"`
	}
	m := ask("$SRV.INFO."+handlers.LookupService, "")
	if err := json.Unmarshal(m.Data, &info); err != nil {
		t.Fatal(err)
	}
	subjects := map[string]bool{}
	for _, ep := range info.Endpoints {
		subjects[ep.Subject] = true
	}
	for _, s := range []string{"orders.lookup.kuaishou.payment", "orders.lookup.kuaishou.settlement", "orders.lookup.kuaishou.refund", "orders.lookup.kudian.payment"} {
		if !subjects[s] {
			t.Errorf("no endpoint %s in %v", s, subjects)
		}
	}
	if subjects["orders.lookup.kudian.refund"] {
		t.Error("kudian has no refund lookup")
	}
	var stats struct {
		Endpoints []struct {
			Subject     string `json:"subject"`
			NumRequests int    `json:"num_requests"`
			NumErrors   int    `json:"num_errors"`
		} `json:"endpoints"`
	}
	if err := json.Unmarshal(ask("$SRV.STATS."+handlers.LookupService, "").Data, &stats); err != nil {
		t.Fatal(err)
	}
	for _, ep := range stats.Endpoints {
		if ep.Subject == "orders.lookup.kuaishou.payment" && (ep.NumRequests != 7 || ep.NumErrors != 4) {
			t.Errorf("stats %+v", ep)
		}
	}
}
