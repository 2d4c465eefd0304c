package sandbox

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/paystatus/orderstatus/internal/events"
	"github.com/paystatus/orderstatus/internal/natstest"
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

// With a seeded source, some notifications are held back and some sent twice: a held-back one
// arrives after the order's next one (or HoldFor after it was made, when none comes), and both
// copies of a duplicate are the same notification, byte for byte, same message_id.
func TestNotifyHoldsBackAndDuplicates(t *testing.T) {
	const orders, holdFor = 8, 5 * time.Second
	s := New(0)
	s.AddApp(DemoAppID, DemoAppSecret)
	for i := range orders {
		s.PutOrder(Order{AppID: DemoAppID, Kind: events.KindPayment, OrderNo: fmt.Sprintf("disorder-%02d", i), Amount: 100, KsOrderNo: "k"})
	}
	type arrival struct {
		id, order, status, sign, body string
		at                            time.Time
	}
	var mu sync.Mutex
	var got []arrival
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var n struct {
			MessageID string `json:"message_id"`
			Data      struct {
				OutOrderNo string `json:"out_order_no"`
				Status     string `json:"status"`
			} `json:"data"`
		}
		if err := json.Unmarshal(body, &n); err != nil {
			t.Errorf("body %s: %v", body, err)
		}
		mu.Lock()
		got = append(got, arrival{n.MessageID, n.Data.OutOrderNo, n.Data.Status, r.Header.Get("kwaisign"), string(body), time.Now()})
		mu.Unlock()
		fmt.Fprintf(w, `{"result":1,"message_id":%q}`, n.MessageID)
	}))
	defer srv.Close()
	arrived := func() []arrival { mu.Lock(); defer mu.Unlock(); return slices.Clone(got) }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Notify(ctx, NotifyOptions{URL: srv.URL, Every: 10 * time.Millisecond, ReorderRate: 0.5, DuplicateRate: 0.5,
			DuplicateWithin: 50 * time.Millisecond, HoldFor: holdFor, Rand: rand.New(rand.NewPCG(1, 2))})
	}()
	defer func() { cancel(); <-done }()

	// Every PROCESSING made; those not held back arrive, the others wait for their SUCCESS.
	natstest.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if n := len(s.Notices()); n != orders {
			return fmt.Errorf("%d notices, want %d", n, orders)
		}
		return nil
	})
	first := s.Notices()
	natstest.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		for _, n := range first {
			if !n.HeldBack && !slices.ContainsFunc(arrived(), func(a arrival) bool { return a.id == n.MessageID }) {
				return fmt.Errorf("%s %s not arrived", n.OrderNo, n.Status)
			}
		}
		return nil
	})
	for _, a := range arrived() {
		switch i := slices.IndexFunc(first, func(n Notice) bool { return n.MessageID == a.id }); {
		case i < 0:
			t.Fatalf("%s %s arrived with message_id %s, not a notification the sandbox made", a.order, a.status, a.id)
		case first[i].HeldBack:
			t.Fatalf("%s %s arrived before the order's next notification was made", a.order, a.status)
		}
	}
	changed := time.Now()
	for i := range orders {
		s.SetStatus(DemoAppID, events.KindPayment, fmt.Sprintf("disorder-%02d", i), "SUCCESS")
	}
	var notices []Notice
	natstest.CheckFor(t, 20*time.Second, 10*time.Millisecond, func() error {
		notices = s.Notices()
		want := 0
		for _, n := range notices {
			want += 1 + btoi(n.Duplicate)
		}
		if len(notices) != 2*orders || len(arrived()) != want {
			return fmt.Errorf("%d notices, %d arrivals, want %d and %d", len(notices), len(arrived()), 2*orders, want)
		}
		return nil
	})
	all := arrived()
	held, dups := 0, 0
	for _, n := range notices {
		held += btoi(n.HeldBack)
		dups += btoi(n.Duplicate)
		var copies []arrival
		firstAt := -1
		for i, a := range all {
			if a.id == n.MessageID {
				copies = append(copies, a)
				if firstAt < 0 {
					firstAt = i
				}
			}
		}
		if len(copies) != 1+btoi(n.Duplicate) || copies[0].order != n.OrderNo || copies[0].status != n.Status {
			t.Errorf("%s %s (duplicate %v) arrived %d times", n.OrderNo, n.Status, n.Duplicate, len(copies))
			continue
		}
		if len(copies) == 2 && (copies[0].body != copies[1].body || copies[0].sign != copies[1].sign) {
			t.Errorf("%+v: the duplicate differs from the first:\n%s\n%s", n, copies[0].body, copies[1].body)
		}
		if !n.HeldBack {
			continue
		}
		if n.Status == "PROCESSING" { // after the order's SUCCESS
			next := slices.IndexFunc(all, func(a arrival) bool { return a.order == n.OrderNo && a.status == "SUCCESS" })
			if next < 0 || next > firstAt {
				t.Errorf("%s: the held-back PROCESSING arrived at %d, its SUCCESS at %d", n.OrderNo, firstAt, next)
			}
		} else if wait := all[firstAt].at.Sub(changed); wait < holdFor { // no next one: HoldFor later
			t.Errorf("%s: the held-back SUCCESS arrived %v after it was made, before HoldFor %v", n.OrderNo, wait, holdFor)
		}
	}
	if ids := len(slices.CompactFunc(slices.SortedFunc(slices.Values(notices), func(a, b Notice) int { return strings.Compare(a.MessageID, b.MessageID) }),
		func(a, b Notice) bool { return a.MessageID == b.MessageID })); ids != 2*orders {
		t.Errorf("%d message_ids for %d notifications", ids, 2*orders)
	}
	// Occasional: the seeded source holds back and duplicates some, not all.
	if held == 0 || held == 2*orders || dups == 0 || dups == 2*orders {
		t.Errorf("%d held back, %d duplicated, of %d", held, dups, 2*orders)
	}
	t.Logf("figures: notifications=%d held_back=%d duplicated=%d", 2*orders, held, dups)
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// The same seed draws the same notifications to hold back and to send twice.
func TestNotifyDrawsFromItsSeed(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var n struct {
			MessageID string `json:"message_id"`
		}
		_ = json.NewDecoder(r.Body).Decode(&n)
		fmt.Fprintf(w, `{"result":1,"message_id":%q}`, n.MessageID)
	}))
	defer srv.Close()
	draws := func(seed uint64) string {
		s := New(0)
		s.AddApp(DemoAppID, DemoAppSecret)
		for i := range 32 {
			s.PutOrder(Order{AppID: DemoAppID, Kind: events.KindRefund, OrderNo: fmt.Sprintf("seeded-%02d", i), Amount: 1})
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			s.Notify(ctx, NotifyOptions{URL: srv.URL, ReorderRate: 0.5, DuplicateRate: 0.5, Rand: rand.New(rand.NewPCG(seed, seed))})
		}()
		natstest.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
			if n := len(s.Notices()); n != 32 {
				return fmt.Errorf("%d notices", n)
			}
			return nil
		})
		cancel()
		<-done
		var b strings.Builder
		for _, n := range s.Notices() {
			fmt.Fprintf(&b, "%s:%d%d ", n.OrderNo, btoi(n.HeldBack), btoi(n.Duplicate))
		}
		return b.String()
	}
	a, b, c := draws(7), draws(7), draws(8)
	if a != b {
		t.Errorf("the same seed drew differently:\n%s\n%s", a, b)
	}
	if a == c {
		t.Errorf("seeds 7 and 8 drew the same:\n%s", a)
	}
}
