package kuaishou

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"

	"github.com/paystatus/orderstatus/internal/events"
	"github.com/paystatus/orderstatus/internal/providers"
)

// statuses maps every documented pay_status / settle_status / refund_status to the normalized
// model (CONTRACT.md section 3). Anything else is unknown.
var statuses = providers.Statuses{
	"PROCESSING":        events.StatusPending,
	"SETTLE_PROCESSING": events.StatusPending,
	"REFUND_PROCESSING": events.StatusPending,
	"SUCCESS":           events.StatusSucceeded,
	"SETTLE_SUCCESS":    events.StatusSucceeded,
	"REFUND_SUCCESS":    events.StatusSucceeded,
	"FAILED":            events.StatusFailed,
	"SETTLE_FAILED":     events.StatusFailed,
	"REFUND_FAILED":     events.StatusFailed,
	"TIMEOUT":           events.StatusTimedOut,
	"UNKNOWN":           events.StatusUnknown,
}

// channels maps pay_channel to the normalized channel.
var channels = providers.Channels{
	"WECHAT":    events.ChannelWechat,
	"ALIPAY":    events.ChannelAlipay,
	"APPLE_PAY": events.ChannelApplePay,
}

// recordFields names, per kind, the fields of the record that become top-level event fields;
// every other field goes to details.
type recordFields struct {
	status, amount, orderNo, providerOrderNo, refNo, channel, paidAt string
}

var records = map[string]recordFields{
	events.KindPayment:    {status: "pay_status", amount: "total_amount", orderNo: "out_order_no", providerOrderNo: "ks_order_no", channel: "pay_channel", paidAt: "pay_time"},
	events.KindSettlement: {status: "settle_status", amount: "settle_amount", orderNo: "settle_no", providerOrderNo: "ks_order_no", refNo: "ks_settle_no"},
	events.KindRefund:     {status: "refund_status", amount: "refund_amount", orderNo: "refund_no", providerOrderNo: "ks_order_no", refNo: "ks_refund_no"},
}

// decodeInfo reads a *_info record, which arrives as a JSON object or as a JSON string
// holding one.
func decodeInfo(raw json.RawMessage) (map[string]json.RawMessage, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) > 0 && raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, err
		}
		raw = []byte(s)
	}
	return providers.Record(raw)
}

// transform turns a record into a Result. The kind is told by the query.
func transform(q providers.Query, fields map[string]json.RawMessage) (providers.Result, error) {
	spec := records[q.Kind]
	res := providers.Result{OrderKey: q.OrderNo, OrderNo: q.OrderNo, Channel: events.ChannelUnknown}
	var err error
	if res.ProviderStatus, err = providers.StringField(fields, spec.status); err != nil {
		return res, err
	}
	if res.ProviderStatus == "" {
		return res, fmt.Errorf("%s is missing", spec.status)
	}
	res.Status = statuses.Normalize(res.ProviderStatus)
	if res.Amount, err = providers.IntField(fields, spec.amount); err != nil {
		return res, err
	}
	if res.ProviderOrderNo, err = providers.StringField(fields, spec.providerOrderNo); err != nil {
		return res, err
	}
	if spec.refNo != "" {
		if res.ProviderRefNo, err = providers.StringField(fields, spec.refNo); err != nil {
			return res, err
		}
	}
	if spec.channel != "" {
		ch, err := providers.StringField(fields, spec.channel)
		if err != nil {
			return res, err
		}
		res.Channel = channels.Normalize(ch)
	}
	if spec.paidAt != "" {
		ms, err := providers.IntField(fields, spec.paidAt) // an integer like any amount: milliseconds
		if err != nil {
			return res, err
		}
		if ms > 0 {
			res.PaidAt = time.UnixMilli(ms).UTC()
		}
	}
	mapped := map[string]bool{spec.status: true, spec.amount: true, spec.orderNo: true, spec.providerOrderNo: true,
		spec.refNo: true, spec.channel: true, spec.paidAt: true}
	if res.Details, err = providers.Details(fields, func(k string) bool { return mapped[k] }); err != nil {
		return res, err
	}
	// extra_info is a JSON object in a string ("" on old orders): details carry the object.
	if s, ok := res.Details["extra_info"].(string); ok {
		if obj, ok := providers.ParseJSONObject(s); ok {
			res.Details["extra_info"] = obj
		}
	}
	return res, nil
}
