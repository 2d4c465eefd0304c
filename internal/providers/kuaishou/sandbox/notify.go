package sandbox

import (
	"bytes"
	"context"
	"crypto/md5"
	crand "crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"maps"
	"math/rand/v2"
	"net/http"
	"slices"
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
	// DuplicateRate is the chance (0 to 1) that a notification is sent a second time, same
	// message_id, DuplicateWithin after the first at most, as a provider's retries sometimes do.
	DuplicateRate float64
	// DuplicateWithin bounds the random wait before a duplicate (default 500 ms).
	DuplicateWithin time.Duration
	// ReorderRate is the chance (0 to 1) that a notification is held back until the order's
	// next notification is delivered (a PROCESSING then arrives after the SUCCESS that
	// followed it), or until HoldFor has passed when no next one is made by then.
	ReorderRate float64
	// HoldFor bounds the wait of a notification held back for a next one (default 1 minute).
	HoldFor time.Duration
	// Rand draws the duplicates, their waits and the notifications held back; only Notify's
	// loop uses it. nil: a source seeded at random. A test gives a seeded one.
	Rand *rand.Rand
}

// Notify sends Kuaishou's push notifications (providers/kuaishou-epay-callback.md) to o.URL
// whenever an order's status changes, until ctx ends: a JSON body with biz_type,
// message_id, app_id, timestamp (ms) and data, signed in the kwaisign header as the lowercase
// hex MD5 of the raw body followed by the app's secret. A notification not answered
// {"result":1,"message_id":<its id>} is sent again, same message_id, on o.Resends. With
// o.DuplicateRate and o.ReorderRate some come twice and some after the order's next one;
// Notices lists which. The format is stated here again from the provider document, never
// taken from the service.
func (s *Sandbox) Notify(ctx context.Context, o NotifyOptions) {
	if o.Every <= 0 {
		o.Every = 250 * time.Millisecond
	}
	if o.Resends == nil {
		o.Resends = []time.Duration{time.Second, 5 * time.Second, 30 * time.Second, 2 * time.Minute, 10 * time.Minute}
	}
	if o.DuplicateWithin <= 0 {
		o.DuplicateWithin = 500 * time.Millisecond
	}
	if o.HoldFor <= 0 {
		o.HoldFor = time.Minute
	}
	r := o.Rand
	if r == nil {
		r = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	}
	client := &http.Client{Timeout: 5 * time.Second}
	sent := map[string]string{}    // order key -> the status last notified
	held := map[string]*holdBack{} // order key -> its notification held back
	var wg sync.WaitGroup
	defer wg.Wait()
	t := time.NewTicker(o.Every)
	defer t.Stop()
	for {
		for _, n := range s.changes(time.Now(), sent) {
			n.HeldBack = r.Float64() < o.ReorderRate
			n.Duplicate = r.Float64() < o.DuplicateRate
			var dupAfter time.Duration
			if n.Duplicate {
				dupAfter = time.Duration(r.Int64N(int64(o.DuplicateWithin)))
			}
			s.logNotice(n.Notice)
			earlier := held[n.key] // sent once n is delivered
			delete(held, n.key)
			if earlier != nil {
				close(earlier.next)
			}
			var h *holdBack
			if n.HeldBack {
				h = &holdBack{next: make(chan struct{}), delivered: make(chan struct{})}
				held[n.key] = h
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				if h != nil && !h.wait(ctx, o.HoldFor) {
					return
				}
				if n.Duplicate {
					wg.Add(1)
					go func() {
						defer wg.Done()
						if _, ok := await(ctx, nil, dupAfter); ok {
							deliver(ctx, client, o, n)
						}
					}()
				}
				deliver(ctx, client, o, n)
				if earlier != nil {
					close(earlier.delivered)
				}
			}()
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// holdBack is a notification held back: next is closed when the order's next notification is
// made, delivered once that one is delivered.
type holdBack struct{ next, delivered chan struct{} }

// wait waits until the order's next notification is delivered, or d has passed with no next
// one made; false when ctx ends first.
func (h *holdBack) wait(ctx context.Context, d time.Duration) bool {
	next, ok := await(ctx, h.next, d)
	if ok && next {
		_, ok = await(ctx, h.delivered, -1)
	}
	return ok
}

// await waits until c is closed (a nil c: never) or d has passed (d < 0: never), and says
// whether c was closed; ok is false when ctx ends first.
func await(ctx context.Context, c <-chan struct{}, d time.Duration) (closed, ok bool) {
	var timeout <-chan time.Time
	if d >= 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		timeout = t.C
	}
	select {
	case <-ctx.Done():
		return false, false
	case <-c:
		return true, true
	case <-timeout:
		return false, true
	}
}

// Notice is a notification the sandbox made, as Notices lists it.
type Notice struct {
	AppID, Kind, OrderNo string
	Status               string // as notified: PROCESSING, SUCCESS or FAILED
	MessageID            string
	// HeldBack: sent once the order's next notification was delivered, or HoldFor after it
	// was made when no next one was made by then.
	HeldBack bool
	// Duplicate: sent twice, same message_id.
	Duplicate bool
}

// Notices lists the notifications made so far, in the order they were made.
func (s *Sandbox) Notices() []Notice {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.notices)
}

func (s *Sandbox) logNotice(n Notice) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.notices = append(s.notices, n)
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
	return o.notification(status, a.secret, now).signed, true
}

// notification is one notification Notify makes: what it notes of it, and the signed body.
type notification struct {
	Notice
	key    string // the order's
	signed Notification
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

// changes makes the notifications of the orders whose status changed since sent says, in the
// order of their keys, so a seeded NotifyOptions.Rand draws the same for the same changes.
func (s *Sandbox) changes(now time.Time, sent map[string]string) []notification {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []notification
	for _, key := range slices.Sorted(maps.Keys(s.orders)) {
		o := s.orders[key]
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
		n := o.notification(status, a.secret, now)
		n.key = key
		out = append(out, n)
	}
	return out
}

func (o *Order) notification(status, secret string, now time.Time) notification {
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
	_, _ = crand.Read(id)
	messageID := hex.EncodeToString(id)
	body, _ := json.Marshal(map[string]any{"data": data, "biz_type": bizType, "message_id": messageID,
		"app_id": o.AppID, "timestamp": now.UnixMilli()})
	sum := md5.Sum(append(append([]byte{}, body...), secret...))
	return notification{Notice: Notice{AppID: o.AppID, Kind: o.Kind, OrderNo: o.OrderNo, Status: status, MessageID: messageID},
		signed: Notification{MessageID: messageID, Body: body, Kwaisign: hex.EncodeToString(sum[:])}}
}

// deliver sends n, and again on o.Resends while the answer is not result 1 for its id.
func deliver(ctx context.Context, client *http.Client, o NotifyOptions, n notification) {
	for try := 0; ; try++ {
		if n.signed.Post(ctx, client, o.URL) || try >= len(o.Resends) {
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
