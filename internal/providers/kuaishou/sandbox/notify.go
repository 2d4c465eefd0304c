package sandbox

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/paystatus/orderstatus/internal/events"
)

// NotifyOptions shape the notifications the sandbox sends (Notify).
type NotifyOptions struct {
	// URL is the merchant's notify_url, e.g. http://127.0.0.1:8443/callbacks/kuaishou.
	URL string
	// Every is how often the orders are looked at for a change (default 250 ms).
	Every time.Duration
	// Resends are the waits before each resend of a notification not answered
	// {"result":1,...}; Kuaishou does not publish its schedule (default 1s, 5s, 30s, 2m, 10m).
	Resends []time.Duration
	// Duplicates sends every notification twice, as a provider's retries sometimes do.
	Duplicates bool
}

// Notify sends Kuaishou's push notifications (providers/kuaishou-epay-callback.md) to o.URL
// whenever an order's status changes, until ctx ends: a JSON body with biz_type,
// message_id, app_id, timestamp (ms) and data, signed in the kwaisign header as the lowercase
// hex MD5 of the raw body followed by the app's secret. A notification not answered
// {"result":1,"message_id":<its id>} is sent again, same message_id, on o.Resends. The
// format is stated here again from the provider document, never taken from the service.
func (s *Sandbox) Notify(ctx context.Context, o NotifyOptions) {
	if o.Every <= 0 {
		o.Every = 250 * time.Millisecond
	}
	if o.Resends == nil {
		o.Resends = []time.Duration{time.Second, 5 * time.Second, 30 * time.Second, 2 * time.Minute, 10 * time.Minute}
	}
	client := &http.Client{Timeout: 5 * time.Second}
	sent := map[string]string{} // order key -> the status last notified
	var wg sync.WaitGroup
	defer wg.Wait()
	t := time.NewTicker(o.Every)
	defer t.Stop()
	for {
		for _, n := range s.changes(time.Now(), sent) {
			wg.Add(1)
			go func() { defer wg.Done(); deliver(ctx, client, o, n) }()
			if o.Duplicates {
				wg.Add(1)
				go func() { defer wg.Done(); deliver(ctx, client, o, n) }()
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Notification is one notification, signed and ready to send.
type Notification struct {
	MessageID string
	Body      []byte // the HTTP body
	Kwaisign  string // the kwaisign header
}

// NotificationOf is the notification Notify sends for o at status (an order's status, such as
// SUCCESS or REFUND_SUCCESS) at now, signed with the secret of o's app; false for a status no
// notification carries or an app the sandbox does not have. o need not be an order the
// sandbox holds.
func (s *Sandbox) NotificationOf(o Order, status string, now time.Time) (Notification, bool) {
	s.mu.Lock()
	a := s.apps[o.AppID]
	s.mu.Unlock()
	status, ok := notifiedStatus(status)
	if a == nil || !ok {
		return Notification{}, false
	}
	return o.notification(status, a.secret, now), true
}

// notifiedStatus is the status a notification carries for an order's status: the document
// lists PROCESSING, SUCCESS and FAILED only (a settlement's SETTLE_SUCCESS is SUCCESS).
func notifiedStatus(st string) (string, bool) {
	st = strings.TrimPrefix(strings.TrimPrefix(st, "SETTLE_"), "REFUND_")
	switch st {
	case "PROCESSING", "SUCCESS", "FAILED":
		return st, true
	}
	return "", false
}

// changes makes the notifications of the orders whose status changed since sent says.
func (s *Sandbox) changes(now time.Time, sent map[string]string) []Notification {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Notification
	for key, o := range s.orders {
		st, _ := o.status(now)
		status, ok := notifiedStatus(st)
		if !ok || sent[key] == status {
			continue
		}
		a := s.apps[o.AppID]
		if a == nil {
			continue
		}
		sent[key] = status
		out = append(out, o.notification(status, a.secret, now))
	}
	return out
}

func (o *Order) notification(status, secret string, now time.Time) Notification {
	data := map[string]any{"status": status, "ks_order_no": o.KsOrderNo, "attach": ""}
	var bizType string
	switch o.Kind {
	case events.KindPayment:
		bizType = "PAYMENT"
		channel := "UNKNOWN"
		if status == "SUCCESS" && o.PayChannel != "" {
			channel = o.PayChannel
		}
		extra, _ := o.Fields["extra_info"].(string)
		data["channel"], data["out_order_no"], data["order_amount"] = channel, o.OrderNo, o.Amount
		data["trade_no"], data["extra_info"], data["enable_promotion"], data["promotion_amount"] = "", extra, false, 0
	case events.KindSettlement:
		bizType = "SETTLE"
		data["out_settle_no"], data["settle_amount"], data["ks_settle_no"] = o.OrderNo, o.Amount, o.KsRefNo
	default:
		bizType = "REFUND"
		data["out_refund_no"], data["refund_amount"], data["ks_refund_no"] = o.OrderNo, o.Amount, o.KsRefNo
		data["ks_refund_type"], _ = o.Fields["ks_refund_type"].(string)
	}
	id := make([]byte, 16)
	_, _ = rand.Read(id)
	messageID := hex.EncodeToString(id)
	body, _ := json.Marshal(map[string]any{"data": data, "biz_type": bizType, "message_id": messageID,
		"app_id": o.AppID, "timestamp": now.UnixMilli()})
	sum := md5.Sum(append(append([]byte{}, body...), secret...))
	return Notification{MessageID: messageID, Body: body, Kwaisign: hex.EncodeToString(sum[:])}
}

// deliver sends n, and again on o.Resends while the answer is not result 1 for its id.
func deliver(ctx context.Context, client *http.Client, o NotifyOptions, n Notification) {
	for try := 0; ; try++ {
		if n.Post(ctx, client, o.URL) || try >= len(o.Resends) {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(o.Resends[try]):
		}
	}
}

// Post sends n to url once and reports whether the merchant answered it as received.
func (n Notification) Post(ctx context.Context, client *http.Client, url string) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(n.Body))
	if err != nil {
		return false
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("kwaisign", n.Kwaisign)
	res, err := client.Do(req)
	if err != nil {
		return false
	}
	defer res.Body.Close()
	var ans struct {
		Result    int    `json:"result"`
		MessageID string `json:"message_id"`
	}
	raw, _ := io.ReadAll(io.LimitReader(res.Body, 4096))
	return json.Unmarshal(raw, &ans) == nil && ans.Result == 1 && ans.MessageID == n.MessageID
}
