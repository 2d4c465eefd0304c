package sandbox

import (
	"time"

	"github.com/paystatus/orderstatus/internal/config"
)

// The documents' own example app, used by `consumer dev` and the README.
const (
	DemoAppID     = "kd100020200220"
	DemoAppSecret = "kd-demo-secret"
	DemoToken     = "UT89A6C01D2A704608808F4896369FE009"
	DemoPayNo     = "600230547601422048"
	DemoOutTrade  = "300230547599788000"
)

// DemoApps are the apps LoadDemo registers, as configuration.
func DemoApps() []config.App {
	return []config.App{{AppID: DemoAppID, AppSecret: DemoAppSecret, Token: DemoToken}}
}

// LoadDemo fills the sandbox with the demo app and orders whose statuses move on over time,
// counted from each order's first query.
func LoadDemo(s *Sandbox) {
	for _, a := range DemoApps() {
		s.AddApp(a.AppID, a.AppSecret.Reveal(), a.Token.Reveal())
	}
	discount := map[string]any{"mch_discount_desc": "", "mch_discount_fee": 0, "kd_discount_desc": "", "kd_discount_fee": 0,
		"m_discount_fee": 0, "p_discount_fee": 0, "y_discount_fee": 0}
	put := func(o Order) {
		o.AppID = DemoAppID
		o.ClockFromFirstQuery = true
		s.PutOrder(o)
	}
	put(Order{PayNo: DemoPayNo, OutTradeNo: DemoOutTrade, PaymentType: "BALANCE", Fee: 100,
		Steps: []Step{{After: 0, Status: "PAYING"}, {After: 30 * time.Second, Status: "PAYED_SUCC"}}, ShortPayTime: true,
		Fields: map[string]any{"discount_info": discount, "member_name": "Janus", "member_phone": "18826490000",
			"user_no": "M0001", "shop_name": ""}})
	put(Order{PayNo: "600230547601422049", OutTradeNo: "300230547599788001", PaymentType: "WXPAY", Fee: 2590,
		Steps: []Step{{After: 0, Status: "PAYED_SUCC"}, {After: time.Minute, Status: "PAYED_REVERSAL"}}})
	put(Order{PayNo: "600230547601422050", OutTradeNo: "300230547599788002", PaymentType: "ALIPAY", Fee: 880,
		Steps: []Step{{After: 0, Status: "PAYING"}, {After: 20 * time.Second, Status: "CANCEL"}}})
}
