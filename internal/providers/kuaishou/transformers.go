package kuaishou

import (
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

// mapped are the names of the fields that become event fields, and so are not details. The
// names a kind lacks are "" (a field named "" is not a detail either).
func (r recordFields) mapped() []string {
	return []string{r.status, r.amount, r.orderNo, r.providerOrderNo, r.refNo, r.channel, r.paidAt}
}

var records = map[string]recordFields{
	events.KindPayment:    {status: "pay_status", amount: "total_amount", orderNo: "out_order_no", providerOrderNo: "ks_order_no", channel: "pay_channel", paidAt: "pay_time"},
	events.KindSettlement: {status: "settle_status", amount: "settle_amount", orderNo: "settle_no", providerOrderNo: "ks_order_no", refNo: "ks_settle_no"},
	events.KindRefund:     {status: "refund_status", amount: "refund_amount", orderNo: "refund_no", providerOrderNo: "ks_order_no", refNo: "ks_refund_no"},
}

// record reads a *_info record, as the answer was decoded: a JSON object, or a JSON string
// holding one.
func record(info any) (providers.Fields, error) {
	if s, ok := info.(string); ok {
		return providers.Record([]byte(s))
	}
	return providers.RecordOf(info)
}

// transform turns a record into a Result. The kind is told by the query. The record's fields
// become the Result's details.
func transform(q providers.Query, fields providers.Fields) (providers.Result, error) {
	spec := records[q.Kind]
	res := providers.Result{OrderKey: q.OrderNo, OrderNo: q.OrderNo, Channel: events.ChannelUnknown}
	var err error
	if res.ProviderStatus, err = fields.String(spec.status); err != nil {
		return res, err
	}
	if res.ProviderStatus == "" {
		return res, fmt.Errorf("%s is missing", spec.status)
	}
	res.Status = statuses.Normalize(res.ProviderStatus)
	if res.Amount, err = fields.Int(spec.amount); err != nil {
		return res, err
	}
	if res.ProviderOrderNo, err = fields.String(spec.providerOrderNo); err != nil {
		return res, err
	}
	if spec.refNo != "" {
		if res.ProviderRefNo, err = fields.String(spec.refNo); err != nil {
			return res, err
		}
	}
	if spec.channel != "" {
		ch, err := fields.String(spec.channel)
		if err != nil {
			return res, err
		}
		res.Channel = channels.Normalize(ch)
	}
	if spec.paidAt != "" {
		ms, err := fields.Int(spec.paidAt) // an integer like any amount: milliseconds
		if err != nil {
			return res, err
		}
		if ms > 0 {
			res.PaidAt = time.UnixMilli(ms).UTC()
		}
	}
	res.Details = fields.Details(spec.mapped()...)
	// extra_info is a JSON object in a string ("" on old orders): details carry the object.
	if s, ok := res.Details["extra_info"].(string); ok {
		if obj, ok := providers.ParseJSONObject(s); ok {
			res.Details["extra_info"] = obj
		}
	}
	return res, nil
}
