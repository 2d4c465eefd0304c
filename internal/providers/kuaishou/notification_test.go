package kuaishou

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/paystatus/orderstatus/internal/config"
	"github.com/paystatus/orderstatus/internal/events"
)

const (
	demoApp    = "ks707065143182458884"
	demoSecret = "9VfzaT-7Jf1bBHv-veFZfg"
)

// docNotification is the provider document's example body, with a payment's data.
const docNotification = `{"data":{"channel":"WECHAT","out_order_no":"1637808229728demo","attach":"","status":"SUCCESS","ks_order_no":"121112500031787702250","order_amount":1200,"trade_no":"4200001234","extra_info":"{\"item_type\":\"VIDEO\"}","enable_promotion":false,"promotion_amount":0},"biz_type":"PAYMENT","message_id":"fa578923-6a3e-4b1c-9d2e-7f0a1b2c3d4e","app_id":"ks707065143182458884","timestamp":1627293368719}`

func notificationClient(t testing.TB) *Client {
	return mustNew(t, config.Provider{Timeout: time.Second,
		Apps: []config.App{{AppID: demoApp, AppSecret: config.Secret(demoSecret)}}})
}

func TestNotificationSignContractVector(t *testing.T) {
	// md5("{}" + secret), computed independently: echo -n '{}9VfzaT-7Jf1bBHv-veFZfg' | md5sum
	if got := NotificationSign([]byte("{}"), demoSecret); got != "5f1e8c1c9c9ace2e1e4a9d296374d511" {
		t.Fatalf("sign = %s", got)
	}
	if !VerifySign([]byte(docNotification), NotificationSign([]byte(docNotification), demoSecret), demoSecret) {
		t.Fatal("own signature refused")
	}
}

func TestParseNotificationKinds(t *testing.T) {
	for _, tc := range []struct {
		name, body         string
		kind, orderNo, ref string
		status             events.Status
		amount             int64
		channel            events.Channel
	}{
		{"payment", docNotification, "payment", "1637808229728demo", "", "succeeded", 1200, "wechat"},
		{"settlement", `{"data":{"out_settle_no":"settle-000001","settle_amount":"1100","status":"PROCESSING","ks_order_no":"121","ks_settle_no":"s-9","attach":""},"biz_type":"SETTLE","message_id":"m-2","app_id":"ks707065143182458884","timestamp":1627293368720}`,
			"settlement", "settle-000001", "s-9", "pending", 1100, "unknown"},
		{"refund", `{"data":{"out_refund_no":"refund-000001","refund_amount":100,"status":"FAILED","ks_order_no":"121","ks_refund_no":"r-9","ks_refund_type":"x"},"biz_type":"REFUND","message_id":"m-3","app_id":"ks707065143182458884","timestamp":1627293368721}`,
			"refund", "refund-000001", "r-9", "failed", 100, "unknown"},
		{"unknown status", strings.Replace(docNotification, `"SUCCESS"`, `"NEW_THING"`, 1), "payment", "1637808229728demo", "", "unknown", 1200, "wechat"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n, err := ParseNotification([]byte(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			r := n.Result
			if n.Kind != tc.kind || r.OrderNo != tc.orderNo || r.OrderKey != tc.orderNo || r.ProviderRefNo != tc.ref ||
				r.Status != tc.status || r.Amount != tc.amount || r.Channel != tc.channel || r.ProviderOrderNo != "121112500031787702250" && tc.kind == "payment" {
				t.Fatalf("got %+v %+v", n, r)
			}
			if n.AppID != demoApp || n.Sent.IsZero() || !r.ObservedAt.Equal(n.Sent) || n.Sent.Location() != time.UTC {
				t.Fatalf("got %+v", n)
			}
			if _, ok := r.Details["status"]; ok {
				t.Fatalf("details keep a mapped field: %v", r.Details)
			}
		})
	}
	n, _ := ParseNotification([]byte(docNotification))
	if n.Sent.UnixMilli() != 1627293368719 || n.MessageID != "fa578923-6a3e-4b1c-9d2e-7f0a1b2c3d4e" {
		t.Fatalf("got %+v", n)
	}
	if obj, ok := n.Result.Details["extra_info"].(map[string]any); !ok || obj["item_type"] != "VIDEO" {
		t.Fatalf("extra_info = %#v", n.Result.Details["extra_info"])
	}
}

func TestParseNotificationMalformed(t *testing.T) {
	big := `{"pad":"` + strings.Repeat("x", MaxNotificationSize) + `"}`
	for name, body := range map[string]string{
		"empty":              ``,
		"not json":           `hello`,
		"array":              `[1]`,
		"trailing":           docNotification + `{}`,
		"over 64 KiB":        big,
		"no message_id":      strings.Replace(docNotification, `"message_id":"fa578923-6a3e-4b1c-9d2e-7f0a1b2c3d4e",`, ``, 1),
		"message_id spaces":  strings.Replace(docNotification, `fa578923-6a3e`, `fa57 8923`, 1),
		"no app_id":          strings.Replace(docNotification, `"app_id":"ks707065143182458884",`, ``, 1),
		"biz_type unknown":   strings.Replace(docNotification, `"PAYMENT"`, `"PAYOUT"`, 1),
		"biz_type lowercase": strings.Replace(docNotification, `"PAYMENT"`, `"payment"`, 1),
		"no timestamp":       strings.Replace(docNotification, `,"timestamp":1627293368719`, ``, 1),
		"negative timestamp": strings.Replace(docNotification, `1627293368719`, `-1`, 1),
		"fractional amount":  strings.Replace(docNotification, `"order_amount":1200`, `"order_amount":12.5`, 1),
		"negative amount":    strings.Replace(docNotification, `"order_amount":1200`, `"order_amount":-5`, 1),
		"no data":            `{"biz_type":"PAYMENT","message_id":"m","app_id":"a","timestamp":1}`,
		"data a string":      `{"data":"x","biz_type":"PAYMENT","message_id":"m","app_id":"a","timestamp":1}`,
		"no order no":        strings.Replace(docNotification, `"out_order_no":"1637808229728demo",`, ``, 1),
		"bad order no":       strings.Replace(docNotification, `1637808229728demo`, `a/b`, 1),
		"wrong order field":  strings.Replace(docNotification, `"PAYMENT"`, `"REFUND"`, 1),
		"no status":          strings.Replace(docNotification, `"status":"SUCCESS",`, ``, 1),
		"status an object":   strings.Replace(docNotification, `"status":"SUCCESS"`, `"status":{}`, 1),
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := ParseNotification([]byte(body)); !errors.Is(err, ErrMalformed) {
				t.Fatalf("err = %v, want ErrMalformed", err)
			}
		})
	}
}

func TestClientNotificationVerifies(t *testing.T) {
	c := notificationClient(t)
	body := []byte(docNotification)
	sign := NotificationSign(body, demoSecret)
	tampered := []byte(strings.Replace(docNotification, `"order_amount":1200`, `"order_amount":1`, 1))
	reencoded := []byte(strings.Replace(docNotification, `,"biz_type"`, `, "biz_type"`, 1))
	other := []byte(strings.Replace(docNotification, demoApp, "ks000000000000000000", 1))
	for _, tc := range []struct {
		name string
		body []byte
		sign string
		want error
	}{
		{"genuine", body, sign, nil},
		{"uppercase hex is not the rule", body, strings.ToUpper(sign), ErrBadSignature},
		{"forged", body, NotificationSign(body, "guessed-secret"), ErrBadSignature},
		{"no sign", body, "", ErrBadSignature},
		{"tampered body", tampered, sign, ErrBadSignature},
		{"re-encoded body", reencoded, sign, ErrBadSignature},
		{"sorted-fields rule", body, Sign(map[string]string{"app_id": demoApp}, demoSecret), ErrBadSignature},
		{"unknown app", other, NotificationSign(other, demoSecret), ErrUnknownApp},
		{"malformed", []byte(`{}`), NotificationSign([]byte(`{}`), demoSecret), ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n, err := c.Notification(tc.body, tc.sign)
			if !errors.Is(err, tc.want) || tc.want == nil && err != nil {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if err != nil {
				if n.MessageID != "" || n.Result.Status != "" {
					t.Fatalf("an unverified body's fields came back: %+v", n)
				}
				if strings.Contains(err.Error(), demoSecret) || strings.Contains(err.Error(), sign) {
					t.Fatalf("error carries a secret or a signature: %v", err)
				}
			}
		})
	}
	if !errors.Is(ErrUnknownApp, ErrBadSignature) {
		t.Fatal("an unknown app must read as a bad signature")
	}
}

func FuzzParseNotification(f *testing.F) {
	f.Add([]byte(docNotification))
	f.Add([]byte(`{"data":{"out_settle_no":"settle-000001","settle_amount":"1100","status":"PROCESSING"},"biz_type":"SETTLE","message_id":"m-2","app_id":"a","timestamp":1}`))
	f.Add([]byte(`{"data":{"out_refund_no":"refund-000001","refund_amount":1e3,"status":"REFUND_SUCCESS"},"biz_type":"REFUND","message_id":"m","app_id":"a","timestamp":"1627293368721"}`))
	f.Add([]byte(`{"data":null}`))
	f.Add([]byte(`[]`))
	f.Add([]byte(``))
	c := notificationClient(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		n, err := ParseNotification(body)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error not ErrMalformed: %v", err)
			}
			return
		}
		if len(body) > MaxNotificationSize || n.MessageID == "" || len(n.MessageID) > maxMessageID || n.Kind == "" ||
			!validOrderNo(n.Result.OrderNo) || n.Result.Amount < 0 || n.Sent.IsZero() || n.Result.Details == nil {
			t.Fatalf("accepted out of its domain: %+v", n)
		}
		if !n.Result.Status.Terminal() && n.Result.Status != events.StatusPending && n.Result.Status != events.StatusUnknown {
			t.Fatalf("status %q", n.Result.Status)
		}
		if _, err := c.Notification(body, NotificationSign(body, "not-the-secret")); err == nil {
			t.Fatal("verified under the wrong secret")
		}
	})
}
