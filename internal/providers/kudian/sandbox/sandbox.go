package sandbox

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/paystatus/orderstatus/internal/providers/sandboxkit"
)

// Sandbox is a stand-in for the Kudian cashier API. It checks the merchant token, the
// timestamp and the request signature (by the rule this project assumes, see sign), signs its
// answers, enforces the QPS limit per app, and answers with orders whose status moves on over
// time.
type Sandbox struct {
	// Controls holds the QPS limit (per app; 0 means none), switches fault modes on per app
	// and logs calls.
	sandboxkit.Controls
	// Server serves the API over HTTP: URL and Close come from it.
	sandboxkit.Server

	mu     sync.Mutex
	apps   map[string]credentials
	orders map[string]*Order // by pay_no
	byOut  map[string]string // app|out_trade_no -> latest pay_no
}

type credentials struct{ secret, token string }

// Order is one cashier payment in the sandbox.
type Order struct {
	AppID      string
	PayNo      string
	OutTradeNo string
	// Steps is the status timeline, as in the Kuaishou sandbox.
	Steps       []Step
	Fee         int64  // fen; answered once the payment succeeded
	PaymentType string // WXPAY, ALIPAY, BALANCE
	// ShortPayTime answers pay_time as "yyyy-MM-dd HH:mm", as some answers do.
	ShortPayTime bool
	// PaidAt is the payment time answered (default: when the order reached PAYED_SUCC).
	PaidAt time.Time
	// Fields are further data fields, as Kudian names them.
	Fields map[string]any
	// ClockFromFirstQuery starts the timeline at the first query.
	ClockFromFirstQuery bool

	clock sandboxkit.Clock
}

// Step is one point of an order's status timeline.
type Step = sandboxkit.Step

// New returns an empty sandbox limited to qps calls per app.
func New(qps int) *Sandbox {
	return &Sandbox{Controls: sandboxkit.Controls{QPS: qps}, apps: map[string]credentials{}, orders: map[string]*Order{}, byOut: map[string]string{}}
}

// AddApp registers an app with its secret and merchant token.
func (s *Sandbox) AddApp(appID, secret, token string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.apps[appID] = credentials{secret: secret, token: token}
}

// PutOrder adds or replaces an order; its timeline starts now.
func (s *Sandbox) PutOrder(o Order) {
	s.mu.Lock()
	defer s.mu.Unlock()
	o.clock.Put(time.Now())
	if len(o.Steps) == 0 {
		o.Steps = []Step{{Status: "PAYING"}}
	}
	s.orders[o.PayNo] = &o
	if o.OutTradeNo != "" {
		s.byOut[o.AppID+"|"+o.OutTradeNo] = o.PayNo
	}
}

// SetStatus moves an order to status from now on.
func (s *Sandbox) SetStatus(payNo, status string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if o := s.orders[payNo]; o != nil {
		o.Steps = append(o.Steps, Step{After: o.clock.Since(time.Now()), Status: status})
	}
}

// Calls returns the arrival times of every query call for appID.
func (s *Sandbox) Calls(appID string) []time.Time { return s.Controls.Calls(appID) }

// Start serves the sandbox on addr ("127.0.0.1:0" for any free port).
func (s *Sandbox) Start(addr string) error { return s.Serve(addr, s.Handler()) }

// Handler serves the sandbox's API.
func (s *Sandbox) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+queryPath, s.serveQuery)
	return mux
}

// answer writes a signed answer holding code, msg and data.
func answer(w http.ResponseWriter, secret string, code int, msg string, data any, badSign bool) {
	result, _ := json.Marshal(map[string]any{"code": code, "msg": msg, "data": data, "succeed": code == codeSuccess})
	sign := answerSign(string(result), secret)
	if badSign {
		sign = answerSign(string(result), secret+"-not-the-secret")
	}
	w.Header().Set("Content-Type", "application/json;charset=UTF-8")
	_ = json.NewEncoder(w).Encode(map[string]string{"result": string(result), "sign": sign})
}

func (s *Sandbox) serveQuery(w http.ResponseWriter, r *http.Request) {
	now := time.Now()
	raw, err := io.ReadAll(io.LimitReader(r.Body, 1<<16))
	var body map[string]any
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	if err != nil || d.Decode(&body) != nil {
		http.Error(w, `{"code":40000,"msg":"body is not JSON"}`, http.StatusBadRequest)
		return
	}
	fields := map[string]string{}
	for k, v := range body {
		switch t := v.(type) {
		case string:
			fields[k] = t
		case json.Number:
			fields[k] = t.String()
		case bool:
			fields[k] = strconv.FormatBool(t)
		}
	}
	appID := fields["open_app_id"]
	fault, limited, answered := s.Arrive(w, r, appID, appID, `{"result":"{\"code\":0,\"data\":{\"status\":`, now)
	if answered {
		return
	}
	s.mu.Lock()
	app, known := s.apps[appID]
	s.mu.Unlock()
	if !known {
		answer(w, "", codeInvalidParam, "open_app_id 不存在", nil, false)
		return
	}
	switch fault {
	case sandboxkit.ExpiredToken:
		answer(w, app.secret, codeTokenInvalid, "token 无效或已过期", nil, false)
		return
	case sandboxkit.NotFound:
		answer(w, app.secret, codeOrderNotFound, "订单不存在", nil, false)
		return
	}
	badSign := fault == sandboxkit.BadSignature

	ts, _ := strconv.ParseInt(fields["timestamp"], 10, 64)
	switch {
	case !strings.HasPrefix(r.Header.Get("Content-Type"), "application/json"):
		answer(w, app.secret, codeInvalidParam, "Content-Type must be application/json", nil, badSign)
		return
	case fields["token"] != app.token:
		answer(w, app.secret, codeTokenInvalid, "token 无效或已过期", nil, badSign)
		return
	case fields["sign_type"] != "MD5" || ts == 0 || now.Sub(time.Unix(ts, 0)).Abs() > 5*time.Minute:
		answer(w, app.secret, codeInvalidParam, "sign_type 或 timestamp 有误", nil, badSign)
		return
	case fields["sign"] == "" || sign(fields, app.secret) != fields["sign"]:
		answer(w, app.secret, codeSignatureInvalid, "签名错误", nil, badSign)
		return
	case limited:
		answer(w, app.secret, codeRateLimited, "请求过于频繁", nil, badSign)
		return
	}
	var biz bizContent
	if err := json.Unmarshal([]byte(fields["biz_content"]), &biz); err != nil || (biz.PayNo == "" && biz.OutTradeNo == "") {
		answer(w, app.secret, codeInvalidParam, "biz_content 需要 pay_no 或 out_trade_no", nil, badSign)
		return
	}
	s.mu.Lock()
	payNo := biz.PayNo
	if payNo == "" {
		payNo = s.byOut[appID+"|"+biz.OutTradeNo]
	}
	o := s.orders[payNo]
	var data map[string]any
	if o != nil && o.AppID == appID {
		o.clock.Query(now, o.ClockFromFirstQuery)
		data = o.data(now)
		if fault == sandboxkit.WrongOrder { // another order's record, as a provider mixing answers up gives it
			data["pay_no"], data["order_no"] = "other"+o.PayNo, "other"+o.OutTradeNo
		}
	}
	s.mu.Unlock()
	if data == nil {
		answer(w, app.secret, codeOrderNotFound, "订单不存在", nil, badSign)
		return
	}
	answer(w, app.secret, codeSuccess, "success", data, badSign)
}

var statusNames = map[string]string{
	"PAYED_SUCC": "支付成功", "PAYING": "支付中", "PAYED_REVERSAL": "已撤销", "PAYED_FAIL": "支付失败",
	"CANCEL": "已取消", "TIMEOUT": "已超时", "UNKNOW": "未知",
}

var paymentNames = map[string]string{"WXPAY": "微信支付", "ALIPAY": "支付宝支付", "BALANCE": "会员钱包支付"}

func (o *Order) data(now time.Time) map[string]any {
	st, since := o.clock.StatusAt(o.Steps, now)
	d := map[string]any{}
	for k, v := range o.Fields {
		d[k] = v
	}
	d["pay_no"] = o.PayNo
	d["order_no"] = o.OutTradeNo
	d["status"] = st
	d["status_name"] = statusNames[st]
	d["payment_type"] = o.PaymentType
	d["payment"] = paymentNames[o.PaymentType]
	if _, ok := d["attach"]; !ok {
		d["attach"] = ""
	}
	if st == "PAYED_SUCC" || st == "PAYED_REVERSAL" {
		paid := o.PaidAt
		if paid.IsZero() {
			paid = since
		}
		layout := payTimeLayout
		if o.ShortPayTime {
			layout = payTimeShortLayout
		}
		d["pay_time"] = paid.In(beijing).Format(layout)
		d["fee"] = o.Fee
		for _, k := range []string{"origin_fee", "received_fee", "user_pay_fee"} {
			if _, ok := d[k]; !ok {
				d[k] = o.Fee
			}
		}
		if _, ok := d["refunded_fee"]; !ok {
			d["refunded_fee"] = 0
		}
		d["can_refund"] = st == "PAYED_SUCC"
	}
	return d
}
