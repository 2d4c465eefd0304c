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
// every other field goes to details. asked is the field the document calls the developer's
// own number, the one a query asks for: an answer naming another is about another order.
// A refund's refund_no is not checked: the document calls it the platform's refund number
// (小程序平台的退款单号), and its examples answer with another value than the one asked.
type recordFields struct {
	status, amount, orderNo, providerOrderNo, refNo, channel, paidAt string
	asked                                                            string
}

// mapped are the names of the fields that become event fields, and so are not details. The
// names a kind lacks are "" (a field named "" is not a detail either).
func (r recordFields) mapped() []string {
	return []string{r.status, r.amount, r.orderNo, r.providerOrderNo, r.refNo, r.channel, r.paidAt}
}

var records = map[string]recordFields{
	events.KindPayment:    {status: "pay_status", amount: "total_amount", orderNo: "out_order_no", providerOrderNo: "ks_order_no", channel: "pay_channel", paidAt: "pay_time", asked: "out_order_no"},
	events.KindSettlement: {status: "settle_status", amount: "settle_amount", orderNo: "settle_no", providerOrderNo: "ks_order_no", refNo: "ks_settle_no", asked: "settle_no"},
	events.KindRefund:     {status: "refund_status", amount: "refund_amount", orderNo: "refund_no", providerOrderNo: "ks_order_no", refNo: "ks_refund_no"},
}

// fieldNames are the documented field names of the records, of extra_info and of
// notifications, which the records read share rather than copy.
var fieldNames = providers.NewNames(
	"total_amount", "pay_status", "pay_time", "pay_channel", "out_order_no", "ks_order_no", "extra_info", "enable_promotion",
	"promotion_amount", "developer_promotion_amount", "open_id", "order_status",
	"settle_no", "settle_amount", "settle_status", "ks_settle_no",
	"refund_no", "refund_amount", "refund_status", "ks_refund_no", "ks_refund_type", "ks_refund_fail_reason", "apply_refund_reason",
	"url", "item_type", "item_id", "author_id", "trade_no",
	"data", "biz_type", "message_id", "app_id", "timestamp", "channel", "attach", "status", "order_amount", "out_settle_no", "out_refund_no")

// record reads a *_info record, as the answer was read: a JSON object, or a JSON string
// holding one.
func record(info any) (providers.Fields, error) {
	if s, ok := info.(string); ok {
		return providers.Record(s, fieldNames)
	}
	return providers.RecordOf(info)
}

// transform turns a record into a Result. The kind is told by the query. The record's fields
// become the Result's details (extra_info as it came: see expandExtraInfo). A record that
// names another developer's number than the one asked for (recordFields.asked) is about
// another order: it is refused, never taken for the asked order's status.
func transform(q providers.Query, fields providers.Fields) (providers.Result, error) {
	spec := records[q.Kind]
	res := providers.Result{OrderKey: q.OrderNo, OrderNo: q.OrderNo, Channel: events.ChannelUnknown}
	no, err := fields.String(spec.asked)
	if err != nil {
		return res, err
	}
	if err := providers.SameOrder(spec.asked, no, q.OrderNo); err != nil {
		return res, err
	}
	if res.ProviderStatus, err = fields.String(spec.status); err != nil {
		return res, err
	}
	if res.ProviderStatus == "" {
		return res, fmt.Errorf("%s is missing", spec.status)
	}
	res.Status = statuses.Normalize(res.ProviderStatus)
	if res.Amount, err = fields.Amount(spec.amount); err != nil {
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
	return res, nil
}

// expandExtraInfo puts in details the object extra_info carries as JSON text ("" on old
// orders), when it carries one.
func expandExtraInfo(details map[string]any) {
	if s, ok := details["extra_info"].(string); ok {
		if obj, ok := providers.ParseJSONObject(s, fieldNames); ok {
			details["extra_info"] = obj
		}
	}
}
