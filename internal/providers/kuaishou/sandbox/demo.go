package sandbox

import (
	"time"

	"github.com/paystatus/orderstatus/internal/config"
	"github.com/paystatus/orderstatus/internal/events"
)

// The documents' own example app, used by `consumer dev` and the README.
const (
	DemoAppID     = "ks707065143182458884"
	DemoAppSecret = "9VfzaT-7Jf1bBHv-veFZfg"
	DemoOrderNo   = "1711619867139contractDemo"
)

// DemoApps are the apps LoadDemo registers, as configuration.
func DemoApps() []config.App {
	return []config.App{
		{AppID: DemoAppID, AppSecret: DemoAppSecret},
		{AppID: "ks700000000000000002", AppSecret: "demo-secret-2"},
	}
}

// LoadDemo fills the sandbox with the demo apps and orders whose statuses move on over time,
// counted from each order's first query.
func LoadDemo(s *Sandbox) {
	for _, a := range DemoApps() {
		s.AddApp(a.AppID, a.AppSecret.Reveal())
	}
	extra := `{"url":"","item_type":"VIDEO","item_id":"5239375269605736845","author_id":"123"}`
	put := func(o Order) {
		o.ClockFromFirstQuery = true
		s.PutOrder(o)
	}
	put(Order{
		AppID: DemoAppID, Kind: events.KindPayment, OrderNo: DemoOrderNo,
		Steps:  []Step{{After: 0, Status: "PROCESSING"}, {After: 30 * time.Second, Status: "SUCCESS"}},
		Amount: 1200, KsOrderNo: "121112500031787702250", PayChannel: "WECHAT",
		Fields: map[string]any{"extra_info": extra, "enable_promotion": true, "promotion_amount": 1,
			"open_id": "5b748c61ef280130c0656638ebd4eaa6", "order_status": 2},
	})
	put(Order{
		AppID: DemoAppID, Kind: events.KindPayment, OrderNo: "1637808229728demo",
		Steps: []Step{{After: 0, Status: "SUCCESS"}}, Amount: 990, KsOrderNo: "121112500031787709999", PayChannel: "ALIPAY",
		InfoAsJSONString: true, Fields: map[string]any{"extra_info": ""},
	})
	put(Order{
		AppID: DemoAppID, Kind: events.KindPayment, OrderNo: "demo-failing-01",
		Steps: []Step{{After: 0, Status: "PROCESSING"}, {After: time.Minute, Status: "FAILED"}}, Amount: 5000, KsOrderNo: "121112500031787700001",
	})
	put(Order{
		AppID: DemoAppID, Kind: events.KindPayment, OrderNo: "demo-timeout-01",
		Steps: []Step{{After: 0, Status: "TIMEOUT"}}, Amount: 300, KsOrderNo: "121112500031787700002",
	})
	put(Order{
		AppID: DemoAppID, Kind: events.KindSettlement, OrderNo: DemoOrderNo,
		Steps:  []Step{{After: 0, Status: "SETTLE_PROCESSING"}, {After: 45 * time.Second, Status: "SETTLE_SUCCESS"}},
		Amount: 234, KsOrderNo: "121120711774457276553", KsRefNo: "321120700415719078553",
		Fields: map[string]any{"total_amount": 3234, "promotion_amount": 10, "developer_promotion_amount": 20},
	})
	put(Order{
		AppID: DemoAppID, Kind: events.KindRefund, OrderNo: "1660811124083refund",
		Steps:  []Step{{After: 0, Status: "REFUND_PROCESSING"}, {After: 20 * time.Second, Status: "REFUND_SUCCESS"}},
		Amount: 1, KsOrderNo: "122081801105480677436", KsRefNo: "222081811172813537436",
		Fields:           map[string]any{"ks_refund_type": "保证金账户退款", "apply_refund_reason": "用户申请退款"},
		InfoAsJSONString: true,
	})
}
