package sandbox

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/paystatus/orderstatus/internal/events"
	"github.com/paystatus/orderstatus/internal/providers/sandboxkit"
)

func (s *Sandbox) serveToken(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		fail(w, codeInvalidParam, "参数有误")
		return
	}
	if s.TokenDelay > 0 {
		select {
		case <-time.After(s.TokenDelay):
		case <-r.Context().Done():
			return
		}
	}
	appID, secret := r.Form.Get("app_id"), r.Form.Get("app_secret")
	if appID == "" || secret == "" || r.Form.Get("grant_type") != "client_credentials" {
		fail(w, codeInvalidParam, "参数有误,需要检查参数是否为空或有误")
		return
	}
	s.mu.Lock()
	a := s.apps[appID]
	if a == nil || a.secret != secret {
		s.mu.Unlock()
		fail(w, codeAuthFailed, "验证出错,需要检查app_id和app_secret")
		return
	}
	var b [24]byte
	_, _ = rand.Read(b[:])
	token := "ChFvYXV0aC5hY2Nlc3NUb2tlbh" + hex.EncodeToString(b[:])
	a.tokens[token] = time.Now().Add(s.TokenTTL)
	s.tokenFetches[appID]++
	ttl := s.TokenTTL
	hold, held := s.tokenHold, s.tokenHeld
	s.mu.Unlock()
	if hold != nil {
		select {
		case held <- token:
		default:
		}
		select {
		case <-hold:
		case <-r.Context().Done():
			return
		}
	}
	writeJSON(w, map[string]any{"result": codeSuccess, "access_token": token, "expires_in": int64(ttl / time.Second), "token_type": "bearer"})
}

func (s *Sandbox) serveQuery(w http.ResponseWriter, r *http.Request, kind string, q query) {
	appID, token := r.URL.Query().Get("app_id"), r.URL.Query().Get("access_token")
	now := time.Now()
	fault, limited, answered := s.Arrive(w, r, appID, appID+q.path, `{"result":1,"`+q.info+`":{"pay_status":"SUCC`, now)
	switch {
	case answered:
		return
	case fault == sandboxkit.ExpiredToken:
		s.ExpireTokens(appID)
	case fault == sandboxkit.BadSignature:
		// Kuaishou's answers carry no signature; the request's is refused instead, as if the
		// secret had changed.
		fail(w, codeSignatureInvalid, "签名校验失败")
		return
	case fault == sandboxkit.NotFound:
		fail(w, codeOrderNotFound, "订单不存在")
		return
	}

	s.mu.Lock()
	a := s.apps[appID]
	var secret string
	tokenOK := false
	if a != nil {
		secret = a.secret
		exp, ok := a.tokens[token]
		tokenOK = ok && now.Before(exp)
	}
	s.mu.Unlock()

	switch {
	case !strings.HasPrefix(r.Header.Get("Content-Type"), "application/json"):
		fail(w, codeInvalidParam, "Content-Type must be application/json")
		return
	case a == nil:
		fail(w, codeInvalidParam, "app_id 不存在")
		return
	case !tokenOK:
		fail(w, codeTokenInvalid, "access_token 无效或已过期")
		return
	case limited:
		fail(w, codeRateLimited, "请求过于频繁")
		return
	}
	var body map[string]string
	raw, err := io.ReadAll(io.LimitReader(r.Body, 1<<16))
	if err != nil || json.Unmarshal(raw, &body) != nil {
		fail(w, codeInvalidParam, "body 不是合法的 JSON")
		return
	}
	no := body[q.numField]
	if !orderNoForm.MatchString(no) {
		fail(w, codeInvalidParam, q.numField+" 参数有误")
		return
	}
	fields := map[string]string{"app_id": appID}
	for k, v := range body {
		fields[k] = v
	}
	if body["sign"] == "" || sign(fields, secret) != body["sign"] {
		fail(w, codeSignatureInvalid, "签名校验失败")
		return
	}
	s.mu.Lock()
	o := s.orders[orderKey(appID, kind, no)]
	var record map[string]any
	if o != nil {
		o.clock.Query(now, o.ClockFromFirstQuery)
		record = o.record(now)
		if fault == sandboxkit.WrongOrder {
			anotherOrder(record)
		}
	}
	s.mu.Unlock()
	if o == nil {
		fail(w, codeOrderNotFound, "订单不存在")
		return
	}
	var info any = record
	if o.InfoAsJSONString {
		b, _ := json.Marshal(record)
		info = string(b)
	}
	writeJSON(w, map[string]any{"result": codeSuccess, "error_msg": "success", q.info: info})
}

// anotherOrder makes rec the record of another order than the one asked for, as a provider
// that mixes its answers up gives it: the numbers, the developer's and the platform's, are not
// the asked order's.
func anotherOrder(rec map[string]any) {
	for _, f := range []string{"out_order_no", "settle_no", "refund_no", "ks_order_no", "ks_settle_no", "ks_refund_no"} {
		if v, ok := rec[f].(string); ok {
			rec[f] = "other" + v
		}
	}
}

// status is the order's status at now and when it took it.
func (o *Order) status(now time.Time) (string, time.Time) {
	return o.clock.StatusAt(o.Steps, now)
}

func (o *Order) record(now time.Time) map[string]any {
	st, since := o.status(now)
	rec := map[string]any{}
	for k, v := range o.Fields {
		rec[k] = v
	}
	rec["ks_order_no"] = o.KsOrderNo
	switch o.Kind {
	case events.KindPayment:
		rec["out_order_no"] = o.OrderNo
		rec["total_amount"] = o.Amount
		rec["pay_status"] = st
		rec["pay_time"] = int64(0)
		rec["pay_channel"] = "UNKNOWN"
		if st == "SUCCESS" {
			rec["pay_time"] = since.UnixMilli()
			rec["pay_channel"] = o.PayChannel
		}
		if _, ok := rec["extra_info"]; !ok {
			rec["extra_info"] = ""
		}
	case events.KindSettlement:
		rec["settle_no"] = o.OrderNo
		rec["settle_amount"] = o.Amount
		rec["settle_status"] = st
		rec["ks_settle_no"] = o.KsRefNo
	case events.KindRefund:
		rec["refund_no"] = o.OrderNo
		rec["refund_amount"] = o.Amount
		rec["refund_status"] = st
		rec["ks_refund_no"] = o.KsRefNo
	}
	return rec
}
