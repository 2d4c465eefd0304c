package kudian_test

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/paystatus/orderstatus/internal/config"
	"github.com/paystatus/orderstatus/internal/events"
	"github.com/paystatus/orderstatus/internal/providers"
	"github.com/paystatus/orderstatus/internal/providers/kudian"
	"github.com/paystatus/orderstatus/internal/providers/kudian/sandbox"
	"github.com/paystatus/orderstatus/internal/providers/providertest"
	"github.com/paystatus/orderstatus/internal/providers/sandboxkit"
)

func startSandbox(t *testing.T) *sandbox.Sandbox {
	t.Helper()
	sb := sandbox.New(0)
	sandbox.LoadDemo(sb)
	if err := sb.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sb.Close() })
	return sb
}

func newClient(t *testing.T, sb *sandbox.Sandbox, timeout time.Duration, opts ...kudian.Option) *kudian.Client {
	t.Helper()
	p, err := kudian.New(config.Provider{BaseURL: sb.URL(), QPS: 1000, Timeout: timeout, Apps: sandbox.DemoApps()}, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestConformance(t *testing.T) {
	providertest.Run(t, func(t *testing.T, timeout time.Duration) *providertest.Fixture {
		sb := startSandbox(t)
		var n atomic.Int64
		return &providertest.Fixture{
			Provider: newClient(t, sb, timeout),
			AppID:    sandbox.DemoAppID,
			Sign:     kudian.Sign,
			SignVectors: []providertest.SignVector{{
				// Computed apart from this code (Python's hashlib) by the rule the README states.
				Fields: map[string]string{"open_app_id": "kd100020200220", "timestamp": "1602558156", "sign_type": "MD5",
					"token": "UT89A6C01D2A704608808F4896369FE009", "biz_content": `{"out_trade_no":"300230547599788000","is_fresh":false}`, "sign": "ignored", "empty": ""},
				Secret: "kd-demo-secret", Want: "acd16ad95a0e5107593faa6d18ef23c6",
			}},
			Statuses: map[string]map[string]events.Status{
				events.KindPayment: {"PAYING": events.StatusPending, "PAYED_SUCC": events.StatusSucceeded, "PAYED_FAIL": events.StatusFailed,
					"TIMEOUT": events.StatusTimedOut, "CANCEL": events.StatusCancelled, "PAYED_REVERSAL": events.StatusReversed,
					"UNKNOW": events.StatusUnknown},
			},
			Put: func(kind, status string, amount int64) providers.Query {
				i := n.Add(1)
				payNo, out := fmt.Sprintf("7000%08d", i), fmt.Sprintf("out-%08d", i)
				sb.PutOrder(sandbox.Order{AppID: sandbox.DemoAppID, PayNo: payNo, OutTradeNo: out,
					Steps: []sandbox.Step{{Status: status}}, Fee: amount, PaymentType: "WXPAY"})
				if i%2 == 0 { // half by pay_no, half by out_trade_no
					return providers.Query{Kind: kind, AppID: sandbox.DemoAppID, ProviderOrderNo: payNo}
				}
				return providers.Query{Kind: kind, AppID: sandbox.DemoAppID, OrderNo: out}
			},
			SetFault: func(f sandboxkit.Fault, n int) { sb.SetFault(sandbox.DemoAppID, f, n) },
			Faults: map[sandboxkit.Fault]providertest.Outcome{
				sandboxkit.ExpiredToken: {Class: providers.Retryable}, // the merchant's token: an operator's to fix
				sandboxkit.BadSignature: {Class: providers.Retryable}, // an answer that does not verify is never data
				sandboxkit.NotFound:     {Class: providers.Permanent},
			},
		}
	})
}
