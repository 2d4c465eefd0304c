package sandbox

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/paystatus/orderstatus/internal/events"
)

// The sandbox notifies a change, signed as the document says, and sends it again with the
// same message_id until it is answered result 1.
func TestNotifySignsAndResends(t *testing.T) {
	s := New(0)
	s.AddApp(DemoAppID, DemoAppSecret)
	s.PutOrder(Order{AppID: DemoAppID, Kind: events.KindPayment, OrderNo: "notify-0001", Amount: 700, KsOrderNo: "k1", PayChannel: "ALIPAY"})
	type got struct {
		id, status string
		ok         bool
	}
	var mu sync.Mutex
	var seen []got
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		n, signed := demoNotice(body, r.Header.Get("kwaisign"))
		ok := signed &&
			n.BizType == "PAYMENT" && n.AppID == DemoAppID && n.Timestamp > 0 && n.Data.OutOrderNo == "notify-0001" && n.Data.OrderAmount == 700
		mu.Lock()
		first := len(seen) == 0
		seen = append(seen, got{n.MessageID, n.Data.Status, ok})
		mu.Unlock()
		if first {
			http.Error(w, "down", http.StatusInternalServerError) // not result 1: sent again
			return
		}
		fmt.Fprintf(w, `{"result":1,"message_id":%q}`, n.MessageID)
	}))
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Notify(ctx, NotifyOptions{URL: srv.URL, Every: 20 * time.Millisecond, Resends: []time.Duration{50 * time.Millisecond}})
	}()
	wait := func(n int) []got {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			mu.Lock()
			c := append([]got(nil), seen...)
			mu.Unlock()
			if len(c) >= n {
				return c
			}
			time.Sleep(10 * time.Millisecond)
		}
		t.Fatalf("fewer than %d notifications", n)
		return nil
	}
	c := wait(2)
	if !c[0].ok || !c[1].ok || c[0].id != c[1].id || c[0].status != "PROCESSING" {
		t.Fatalf("first and resend: %+v", c)
	}
	s.SetStatus(DemoAppID, events.KindPayment, "notify-0001", "SUCCESS")
	c = wait(3)
	if !c[2].ok || c[2].status != "SUCCESS" || c[2].id == c[0].id {
		t.Fatalf("change: %+v", c)
	}
	cancel()
	<-done
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 3 {
		t.Fatalf("%d notifications, want 3 (nothing resent once answered)", len(seen))
	}
}

// NotificationOf signs a notification for any order of an app the sandbox has, as Notify does,
// and makes none for another app or a status notifications do not carry.
func TestNotificationOfSigns(t *testing.T) {
	s := New(0)
	s.AddApp(DemoAppID, DemoAppSecret)
	o := Order{AppID: DemoAppID, Kind: events.KindPayment, OrderNo: "not-held-0001", Amount: 900, KsOrderNo: "k9", PayChannel: "WECHAT"}
	at := time.UnixMilli(1700000000123)
	n, ok := s.NotificationOf(o, "SUCCESS", at)
	body, signed := demoNotice(n.Body, n.Kwaisign)
	if !ok || !signed || body.MessageID != n.MessageID ||
		body.AppID != DemoAppID || body.Timestamp != at.UnixMilli() || body.Data.OutOrderNo != o.OrderNo ||
		body.Data.Status != "SUCCESS" || body.Data.Channel != "WECHAT" {
		t.Fatalf("ok %v, kwaisign %s, body %s", ok, n.Kwaisign, n.Body)
	}
	if _, ok := s.NotificationOf(Order{AppID: "ks-nobody", Kind: events.KindPayment, OrderNo: "x"}, "SUCCESS", at); ok {
		t.Fatal("a notification for an app the sandbox does not have")
	}
	if _, ok := s.NotificationOf(o, "CLOSED", at); ok {
		t.Fatal("a notification for a status notifications do not carry")
	}
}

// notice is what the tests read of a notification's body.
type notice struct {
	BizType   string `json:"biz_type"`
	MessageID string `json:"message_id"`
	AppID     string `json:"app_id"`
	Timestamp int64  `json:"timestamp"`
	Data      struct {
		OutOrderNo  string `json:"out_order_no"`
		Status      string `json:"status"`
		OrderAmount int64  `json:"order_amount"`
		Channel     string `json:"channel"`
	} `json:"data"`
}

// demoNotice decodes a notification's body and reports whether it is a notification signed,
// as the document says, with the demo app's secret in kwaisign.
func demoNotice(body []byte, kwaisign string) (notice, bool) {
	sum := md5.Sum(append(append([]byte{}, body...), DemoAppSecret...))
	var n notice
	if json.Unmarshal(body, &n) != nil {
		return n, false
	}
	return n, kwaisign == hex.EncodeToString(sum[:])
}
