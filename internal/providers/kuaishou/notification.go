package kuaishou

import (
	"crypto/md5"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/paystatus/orderstatus/internal/events"
	"github.com/paystatus/orderstatus/internal/providers"
)

// MaxNotificationSize bounds a notification body (CONTRACT.md section 8): anything longer is
// refused before a byte of it is decoded.
const MaxNotificationSize = 64 << 10

// maxMessageID bounds message_id, which becomes a KV key and a Nats-Msg-Id.
const maxMessageID = 128

// Errors of a notification (providers.Notifier's).
var (
	ErrMalformed    = providers.ErrNotNotification
	ErrBadSignature = providers.ErrBadSignature
	ErrUnknownApp   = providers.ErrUnknownApp
)

// notificationFields names, per biz_type, the data fields that become event fields.
type notificationFields struct {
	kind, orderNo, amount, refNo, channel string
}

var bizTypes = map[string]notificationFields{
	"PAYMENT": {kind: events.KindPayment, orderNo: "out_order_no", amount: "order_amount", channel: "channel"},
	"SETTLE":  {kind: events.KindSettlement, orderNo: "out_settle_no", amount: "settle_amount", refNo: "ks_settle_no"},
	"REFUND":  {kind: events.KindRefund, orderNo: "out_refund_no", amount: "refund_amount", refNo: "ks_refund_no"},
}

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
}

// ParseNotification reads a notification body of Kuaishou's epay
// (providers/kuaishou-epay-callback.md): biz_type gives the kind, data.out_*_no the order,
// timestamp the time it was sent. It checks the form only; whether Kuaishou sent it is
// Client.Notification's to say, and nothing of an unverified body may be acted on.
func ParseNotification(body []byte) (providers.Notification, error) {
	var n providers.Notification
	if len(body) > MaxNotificationSize {
		return n, malformed("%d bytes, at most %d", len(body), MaxNotificationSize)
	}
	top, err := providers.Record(body, fieldNames)
	if err != nil {
		return n, malformed("%v", err)
	}
	if n.MessageID, err = top.String("message_id"); err != nil {
		return n, malformed("%v", err)
	}
	if n.MessageID == "" || len(n.MessageID) > maxMessageID || !printable(n.MessageID) {
		return n, malformed("message_id must be 1 to %d printable ASCII characters", maxMessageID)
	}
	if n.AppID, err = top.String("app_id"); err != nil {
		return n, malformed("%v", err)
	}
	if n.AppID == "" || len(n.AppID) > 64 || !printable(n.AppID) {
		return n, malformed("app_id must be 1 to 64 printable ASCII characters")
	}
	bizType, err := top.String("biz_type")
	if err != nil {
		return n, malformed("%v", err)
	}
	spec, ok := bizTypes[bizType]
	if !ok {
		return n, malformed("biz_type %.32q is not PAYMENT, SETTLE or REFUND", bizType)
	}
	n.Kind = spec.kind
	ms, err := top.Int("timestamp")
	if err != nil {
		return n, malformed("%v", err)
	}
	if ms <= 0 || ms > 1<<50 {
		return n, malformed("timestamp %d is not a time in milliseconds", ms)
	}
	n.Sent = time.UnixMilli(ms).UTC()
	data, err := providers.RecordOf(top["data"])
	if err != nil {
		return n, malformed("data: %v", err)
	}
	if n.Result, err = transformNotification(spec, data); err != nil {
		return n, malformed("data: %v", err)
	}
	n.Result.ObservedAt = n.Sent
	return n, nil
}

// transformNotification turns a notification's data into a Result, as transform does a
// query's record; data.status is normalized by the same table.
func transformNotification(spec notificationFields, data providers.Fields) (providers.Result, error) {
	res := providers.Result{Channel: events.ChannelUnknown}
	var err error
	if res.OrderNo, err = data.String(spec.orderNo); err != nil {
		return res, err
	}
	if !validOrderNo(res.OrderNo) {
		return res, fmt.Errorf("%s must be 6 to 32 letters, digits, _, - or *", spec.orderNo)
	}
	res.OrderKey = res.OrderNo
	if res.ProviderStatus, err = data.String("status"); err != nil {
		return res, err
	}
	if res.ProviderStatus == "" || len(res.ProviderStatus) > 64 {
		return res, errors.New("status is missing or too long")
	}
	res.Status = statuses.Normalize(res.ProviderStatus)
	if res.Amount, err = data.Amount(spec.amount); err != nil {
		return res, err
	}
	if res.Amount < 0 {
		return res, fmt.Errorf("%s is negative", spec.amount)
	}
	if res.ProviderOrderNo, err = data.String("ks_order_no"); err != nil {
		return res, err
	}
	if spec.refNo != "" {
		if res.ProviderRefNo, err = data.String(spec.refNo); err != nil {
			return res, err
		}
	}
	if spec.channel != "" {
		ch, err := data.String(spec.channel)
		if err != nil {
			return res, err
		}
		res.Channel = channels.Normalize(ch)
	}
	res.Details = data.Details(spec.orderNo, "status", spec.amount, "ks_order_no", spec.refNo, spec.channel)
	expandExtraInfo(res.Details)
	return res, nil
}

func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// NotificationSign is kwaisign: the lowercase hex MD5 of the raw body bytes followed by the
// app's secret. It is not Sign, the sorted-fields signature of outgoing calls.
func NotificationSign(body []byte, secret string) string {
	h := md5.New()
	h.Write(body)
	h.Write([]byte(secret))
	return hex.EncodeToString(h.Sum(nil))
}

// VerifySign reports, in constant time, whether kwaisign is body's signature under secret.
func VerifySign(body []byte, kwaisign, secret string) bool {
	want := NotificationSign(body, secret)
	return subtle.ConstantTimeCompare([]byte(want), []byte(kwaisign)) == 1
}

// Notification implements providers.Notifier: it reads a notification body and verifies its
// kwaisign header against the secret of the body's app_id.
func (c *Client) Notification(body []byte, kwaisign string) (providers.Notification, error) {
	n, err := ParseNotification(body)
	if err != nil {
		// A body whose app_id was read, signed with that app's secret, is Kuaishou's own: it
		// says so (ErrUnreadable), with the app and the message id, for the log.
		if a, ok := c.apps[n.AppID]; ok && n.AppID != "" && VerifySign(body, kwaisign, a.secret) {
			return providers.Notification{}, fmt.Errorf("%w (app_id %q, message_id %q): %w", providers.ErrUnreadable, n.AppID, n.MessageID, err)
		}
		return providers.Notification{}, err
	}
	// The errors name the app (1 to 64 printable characters, checked above): after a secret
	// rotation, the refusals' log says whose secret is out of step.
	a, ok := c.apps[n.AppID]
	if !ok {
		return providers.Notification{}, fmt.Errorf("%w %q", ErrUnknownApp, n.AppID)
	}
	if !VerifySign(body, kwaisign, a.secret) {
		return providers.Notification{}, fmt.Errorf("%w for app_id %q", ErrBadSignature, n.AppID)
	}
	return n, nil
}
