package handlers_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/paystatus/orderstatus/internal/config"
	"github.com/paystatus/orderstatus/internal/events"
	"github.com/paystatus/orderstatus/internal/natsinfra"
	"github.com/paystatus/orderstatus/internal/natstest"
	kssandbox "github.com/paystatus/orderstatus/internal/providers/kuaishou/sandbox"
	kdsandbox "github.com/paystatus/orderstatus/internal/providers/kudian/sandbox"
	"github.com/paystatus/orderstatus/internal/providers/sandboxkit"
)

// A Kudian payment request gives the right event for each of the seven statuses.
func TestKudianEveryStatus(t *testing.T) {
	for _, pii := range []bool{false, true} {
		t.Run(fmt.Sprintf("include_pii=%v", pii), func(t *testing.T) {
			e := newEnv(t, func(c *config.Config) { c.Events.IncludePII = pii })
			e.startReplica(nil)
			paid := time.Date(2026, 11, 24, 21, 30, 15, 0, time.UTC)
			want := map[string]events.Status{"PAYING": "pending", "PAYED_SUCC": "succeeded", "PAYED_FAIL": "failed",
				"TIMEOUT": "timed_out", "CANCEL": "cancelled", "PAYED_REVERSAL": "reversed", "UNKNOW": "unknown"}
			i := 0
			for st := range want {
				i++
				payNo := fmt.Sprintf("80000000%02d", i)
				e.kd.PutOrder(kdsandbox.Order{AppID: kdsandbox.DemoAppID, PayNo: payNo, OutTradeNo: "out-" + payNo,
					Steps: []kdsandbox.Step{{Status: st}}, Fee: 12345, PaymentType: "ALIPAY", PaidAt: paid, ShortPayTime: i%2 == 0,
					Fields: map[string]any{"member_phone": "18826490000", "member_name": "Janus", "discount_info": map[string]any{"kd_discount_fee": 5}}})
				body := `{"app_id":"` + kdsandbox.DemoAppID + `","provider_order_no":"` + payNo + `","refresh":true}`
				if i%3 == 0 { // some by merchant number
					body = `{"app_id":"` + kdsandbox.DemoAppID + `","order_no":"out-` + payNo + `"}`
				}
				e.publish("orders.query.kudian.payment", []byte(body), nil)
			}
			evs := e.waitEvents(len(want))
			for _, ev := range evs {
				ws := want[ev.ProviderStatus]
				if ev.Provider != "kudian" || ev.Kind != "payment" || ev.Status != ws || ev.Terminal != ws.Terminal() ||
					ev.Channel != events.ChannelAlipay || ev.Currency != "CNY" || !strings.HasPrefix(ev.ProviderOrderNo, "80000000") ||
					ev.OrderNo != "out-"+ev.ProviderOrderNo || ev.PreviousStatus != "" {
					t.Errorf("%s: %+v", ev.ProviderStatus, ev)
				}
				succeededOrReversed := ev.ProviderStatus == "PAYED_SUCC" || ev.ProviderStatus == "PAYED_REVERSAL"
				if succeededOrReversed {
					// pay_time is Shanghai wall time to the second or the minute.
					if ev.Amount != 12345 || (ev.PaidAt != "2026-11-24T21:30:15Z" && ev.PaidAt != "2026-11-24T21:30:00Z") {
						t.Errorf("%s: amount %d paid_at %q", ev.ProviderStatus, ev.Amount, ev.PaidAt)
					}
				} else if ev.Amount != 0 || ev.PaidAt != "" {
					t.Errorf("%s: amount %d paid_at %q before payment", ev.ProviderStatus, ev.Amount, ev.PaidAt)
				}
				_, hasPhone := ev.Details["member_phone"]
				_, hasName := ev.Details["member_name"]
				if hasPhone != pii || hasName != pii {
					t.Errorf("%s: include_pii=%v but details %v", ev.ProviderStatus, pii, ev.Details)
				}
				if _, ok := ev.Details["discount_info"].(map[string]any); !ok {
					t.Errorf("%s: discount_info %#v", ev.ProviderStatus, ev.Details["discount_info"])
				}
			}
			e.waitIdle()
		})
	}
}

// Every fault mode of both sandboxes ends in an event or in a dead letter with the right
// reason: never a lost request, never a crash, and never an event made of an answer about
// another order than the one asked for.
func TestFaultModesEndInEventOrDeadLetter(t *testing.T) {
	type faultCase struct {
		provider string
		fault    sandboxkit.Fault
		times    int    // faulted answers in a row (-1: for ever)
		reason   string // "" when an event is due
	}
	cases := []faultCase{
		{"kuaishou", sandboxkit.HTTP500, 2, ""},
		{"kuaishou", sandboxkit.Stall, 2, ""},
		{"kuaishou", sandboxkit.Malformed, 2, ""},
		{"kuaishou", sandboxkit.RateLimit, 2, ""},
		{"kuaishou", sandboxkit.ExpiredToken, 2, ""},
		{"kuaishou", sandboxkit.BadSignature, 1, events.ReasonProviderRejected},
		{"kuaishou", sandboxkit.NotFound, 1, events.ReasonProviderRejected},
		{"kuaishou", sandboxkit.HTTP500, -1, events.ReasonRetriesExhausted},
		{"kuaishou", sandboxkit.WrongOrder, 2, ""},
		{"kuaishou", sandboxkit.WrongOrder, -1, events.ReasonRetriesExhausted},
		{"kudian", sandboxkit.HTTP500, 2, ""},
		{"kudian", sandboxkit.Stall, 2, ""},
		{"kudian", sandboxkit.Malformed, 2, ""},
		{"kudian", sandboxkit.RateLimit, 2, ""},
		{"kudian", sandboxkit.ExpiredToken, 2, ""},
		{"kudian", sandboxkit.BadSignature, 2, ""},
		{"kudian", sandboxkit.NotFound, 1, events.ReasonProviderRejected},
		{"kudian", sandboxkit.ExpiredToken, -1, events.ReasonRetriesExhausted},
		{"kudian", sandboxkit.WrongOrder, -1, events.ReasonRetriesExhausted},
	}
	appOf := func(i int) string { return fmt.Sprintf("fault-app-%02d", i) }
	e := newEnv(t, func(c *config.Config) {
		c.Consumer.MaxDeliver = 4
		for _, name := range []string{"kuaishou", "kudian"} {
			p := c.Providers[name]
			p.Timeout = 300 * time.Millisecond
			for i, fc := range cases {
				if fc.provider == name {
					p.Apps = append(p.Apps, config.App{AppID: appOf(i), AppSecret: "secret", Token: "token"})
				}
			}
			c.Providers[name] = p
		}
	})
	e.sb.StallFor = 5 * time.Second
	e.kd.StallFor = 5 * time.Second
	e.startReplica(nil)
	for i, fc := range cases {
		app, no := appOf(i), fmt.Sprintf("fault-order-%02d", i)
		if fc.provider == "kuaishou" {
			e.sb.AddApp(app, "secret")
			e.sb.PutOrder(kssandbox.Order{AppID: app, Kind: events.KindPayment, OrderNo: no,
				Steps: []kssandbox.Step{{Status: "SUCCESS"}}, Amount: 700, KsOrderNo: "ks-" + no, PayChannel: "ALIPAY"})
			e.sb.SetFault(app, fc.fault, fc.times)
		} else {
			e.kd.AddApp(app, "secret", "token")
			e.kd.PutOrder(kdsandbox.Order{AppID: app, PayNo: "pay-" + no, OutTradeNo: no,
				Steps: []kdsandbox.Step{{Status: "PAYED_SUCC"}}, Fee: 700, PaymentType: "WXPAY"})
			e.kd.SetFault(app, fc.fault, fc.times)
		}
		e.publish("orders.query."+fc.provider+".payment", []byte(`{"app_id":"`+app+`","order_no":"`+no+`","request_id":"`+no+`"}`), nil)
	}

	natstest.CheckFor(t, 60*time.Second, 100*time.Millisecond, func() error {
		evs, dlq := e.events(), e.streamMsgs(natsinfra.DLQStream)
		if got := len(evs) + len(dlq); got != len(cases) {
			return fmt.Errorf("%d events and %d dead letters for %d requests", len(evs), len(dlq), len(cases))
		}
		return nil
	})
	t.Logf("figures: requests=%d events=%d dead_letters=%d (every fault mode of both sandboxes)",
		len(cases), len(e.events()), len(e.streamMsgs(natsinfra.DLQStream)))
	outcome := map[string]string{}
	for _, ev := range e.events() {
		if ev.Status != events.StatusSucceeded || ev.Amount != 700 {
			t.Errorf("event %+v", ev)
		}
		outcome[ev.RequestID] = "event"
	}
	for _, m := range e.streamMsgs(natsinfra.DLQStream) {
		req, err := events.DecodeRequest("", m.Data)
		if err != nil {
			t.Fatalf("dead letter payload %q: %v", m.Data, err)
		}
		outcome[req.RequestID] = m.Header.Get("Orders-Error-Reason")
	}
	for i, fc := range cases {
		want := fc.reason
		if want == "" {
			want = "event"
		}
		if got := outcome[fmt.Sprintf("fault-order-%02d", i)]; got != want {
			t.Errorf("%s %s x%d: got %q, want %q", fc.provider, fc.fault, fc.times, got, want)
		}
	}
	e.waitIdle()
}
