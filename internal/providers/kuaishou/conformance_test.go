package kuaishou_test

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/paystatus/orderstatus/internal/config"
	"github.com/paystatus/orderstatus/internal/events"
	"github.com/paystatus/orderstatus/internal/providers"
	"github.com/paystatus/orderstatus/internal/providers/kuaishou"
	"github.com/paystatus/orderstatus/internal/providers/kuaishou/sandbox"
	"github.com/paystatus/orderstatus/internal/providers/providertest"
	"github.com/paystatus/orderstatus/internal/providers/sandboxkit"
)

func TestConformance(t *testing.T) {
	providertest.Run(t, func(t *testing.T, timeout time.Duration) *providertest.Fixture {
		sb := sandbox.New(0)
		sb.AddApp(sandbox.DemoAppID, sandbox.DemoAppSecret)
		if err := sb.Start("127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { sb.Close() })
		p, err := kuaishou.New(config.Provider{BaseURL: sb.URL(), QPS: 1000, Timeout: timeout,
			Apps: []config.App{{AppID: sandbox.DemoAppID, AppSecret: sandbox.DemoAppSecret}}})
		if err != nil {
			t.Fatal(err)
		}
		var n atomic.Int64
		put := func(asString bool) func(kind, status string, amount int64) providers.Query {
			return func(kind, status string, amount int64) providers.Query {
				no := fmt.Sprintf("conf-%08d", n.Add(1))
				sb.PutOrder(sandbox.Order{AppID: sandbox.DemoAppID, Kind: kind, OrderNo: no,
					Steps: []sandbox.Step{{Status: status}}, Amount: amount, KsOrderNo: "ks-" + no, KsRefNo: "ref-" + no,
					PayChannel: "WECHAT", InfoAsJSONString: asString})
				return providers.Query{Kind: kind, AppID: sandbox.DemoAppID, OrderNo: no}
			}
		}
		return &providertest.Fixture{
			Provider: p,
			AppID:    sandbox.DemoAppID,
			Sign:     kuaishou.Sign,
			SignVectors: []providertest.SignVector{{
				Fields: map[string]string{"app_id": "ks707065143182458884", "out_order_no": "1711619867139contractDemo", "access_token": "x", "sign": "y"},
				Secret: "9VfzaT-7Jf1bBHv-veFZfg", Want: "360a9add284bb4e2050673132418a356",
			}},
			Statuses: map[string]map[string]events.Status{
				events.KindPayment: {"PROCESSING": events.StatusPending, "SUCCESS": events.StatusSucceeded,
					"FAILED": events.StatusFailed, "TIMEOUT": events.StatusTimedOut, "UNKNOWN": events.StatusUnknown},
				events.KindSettlement: {"SETTLE_PROCESSING": events.StatusPending, "SETTLE_SUCCESS": events.StatusSucceeded,
					"SETTLE_FAILED": events.StatusFailed},
				events.KindRefund: {"REFUND_PROCESSING": events.StatusPending, "REFUND_SUCCESS": events.StatusSucceeded,
					"REFUND_FAILED": events.StatusFailed},
			},
			Put:         put(false),
			PutAsString: put(true),
			SetFault:    func(f sandboxkit.Fault, n int) { sb.SetFault(sandbox.DemoAppID, f, n) },
			Faults: map[sandboxkit.Fault]providertest.Outcome{
				sandboxkit.ExpiredToken: {Class: providers.TokenInvalid}, // the token is dropped; the next query fetches one
				sandboxkit.BadSignature: {Class: providers.Permanent},
				sandboxkit.NotFound:     {Class: providers.Permanent},
			},
		}
	})
}
