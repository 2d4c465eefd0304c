package kudian

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/paystatus/orderstatus/internal/events"
	"github.com/paystatus/orderstatus/internal/providers"
)

// statuses maps every documented status to the normalized model (CONTRACT.md section 3).
// Anything else, UNKNOW included, is unknown.
var statuses = providers.Statuses{
	"PAYING":         events.StatusPending,
	"PAYED_SUCC":     events.StatusSucceeded,
	"PAYED_FAIL":     events.StatusFailed,
	"TIMEOUT":        events.StatusTimedOut,
	"CANCEL":         events.StatusCancelled,
	"PAYED_REVERSAL": events.StatusReversed,
	"UNKNOW":         events.StatusUnknown,
}

// channels maps payment_type to the normalized channel.
var channels = providers.Channels{
	"WXPAY":   events.ChannelWechat,
	"ALIPAY":  events.ChannelAlipay,
	"BALANCE": events.ChannelBalance,
}

// shanghai is Asia/Shanghai: UTC+8 all year since 1991, so a fixed zone is exact and needs
// no time zone database on the machine.
var shanghai = time.FixedZone("CST", 8*60*60)

// ParsePayTime reads pay_time, Asia/Shanghai wall time as "yyyy-MM-dd HH:mm:ss" or, as some
// answers have it, "yyyy-MM-dd HH:mm". An empty value is no time.
func ParsePayTime(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	layouts := [...]string{time.DateTime, "2006-01-02 15:04"}
	if strings.Count(s, ":") < 2 {
		// Only the form with as many colons can match: it goes first, sparing the other's error.
		layouts[0], layouts[1] = layouts[1], layouts[0]
	}
	for _, layout := range layouts {
		if t, err := time.ParseInLocation(layout, s, shanghai); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("pay_time %q is neither yyyy-MM-dd HH:mm:ss nor yyyy-MM-dd HH:mm", s)
}

// fieldNames are the documented field names of the result and its data, which the records read
// share rather than copy.
var fieldNames = providers.NewNames(
	"attach", "can_refund", "discount_info", "fee", "kd_discount_desc", "kd_discount_fee", "m_discount_fee", "mch_discount_desc",
	"mch_discount_fee", "member_name", "member_phone", "order_no", "origin_fee", "out_trade_no", "p_discount_fee", "pay_no",
	"pay_time", "payment", "payment_type", "received_fee", "refunded_fee", "shop_name", "status", "status_name", "user_no",
	"user_pay_fee", "y_discount_fee")

// mapped are the fields that become top-level event fields, and so are not details; pii are
// the fields only events.include_pii lets into details.
var (
	mapped       = []string{"pay_no", "status", "fee", "pay_time", "payment_type", "out_trade_no", "order_no"}
	pii          = []string{"member_phone", "member_name"}
	mappedAndPII = slices.Concat(mapped, pii)
)

// transform turns the data record, as the result was decoded, into a Result. Its fields
// become the Result's details. A record naming another order than the one asked for (another
// pay_no or out_trade_no) is refused, never taken for the asked order's status.
func transform(q providers.Query, data any, includePII bool) (providers.Result, error) {
	fields, err := providers.RecordOf(data)
	if err != nil {
		return providers.Result{}, err
	}
	var res providers.Result
	if res.ProviderStatus, err = fields.String("status"); err != nil {
		return res, err
	}
	if res.ProviderStatus == "" {
		return res, errors.New("status is missing")
	}
	res.Status = statuses.Normalize(res.ProviderStatus)
	if res.ProviderOrderNo, err = fields.String("pay_no"); err != nil {
		return res, err
	}
	if err := providers.SameOrder("pay_no", res.ProviderOrderNo, q.ProviderOrderNo); err != nil {
		return res, err
	}
	if res.ProviderOrderNo == "" {
		res.ProviderOrderNo = q.ProviderOrderNo
	}
	if res.Amount, err = fields.Amount("fee"); err != nil {
		return res, err
	}
	payTime, err := fields.String("pay_time")
	if err != nil {
		return res, err
	}
	if res.PaidAt, err = ParsePayTime(payTime); err != nil {
		return res, err
	}
	paymentType, err := fields.String("payment_type")
	if err != nil {
		return res, err
	}
	res.Channel = channels.Normalize(paymentType)
	res.OrderNo = q.OrderNo
	for _, f := range []string{"out_trade_no", "order_no"} {
		no, err := fields.String(f)
		if err != nil {
			return res, err
		}
		if err := providers.SameOrder(f, no, q.OrderNo); err != nil {
			return res, err
		}
		if res.OrderNo == "" {
			res.OrderNo = no
		}
	}
	// pay_no is the order's identity at Kudian: an out_trade_no may be reused.
	switch {
	case res.ProviderOrderNo != "":
		res.OrderKey = res.ProviderOrderNo
	default:
		res.OrderKey = "out_trade_no:" + res.OrderNo
	}
	if includePII {
		res.Details = fields.Details(mapped...)
	} else {
		res.Details = fields.Details(mappedAndPII...)
	}
	return res, nil
}
