package events

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/vmihailenco/msgpack/v5"
)

func mustMsgpack(t testing.TB, v any) []byte {
	t.Helper()
	b, err := msgpack.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDecodeRequestValid(t *testing.T) {
	until := time.Date(2026, 11, 25, 8, 0, 0, 0, time.UTC)
	want := Request{
		AppID: "ks707065143182458884", OrderNo: "1711619867139contractDemo",
		ProviderOrderNo: "600230547601422048", Refresh: true, Follow: true,
		FollowUntil: until, RequestID: "r-1", Attributes: map[string]string{"tenant": "t1"},
	}
	jsonBody := `{"app_id":"ks707065143182458884","order_no":"1711619867139contractDemo",
		"provider_order_no":"600230547601422048","refresh":true,"follow":true,
		"follow_until":"2026-11-25T16:00:00+08:00","request_id":"r-1","attributes":{"tenant":"t1"},
		"unknown_field":[1,2,3]}`
	mp := mustMsgpack(t, map[string]any{
		"app_id": "ks707065143182458884", "order_no": "1711619867139contractDemo",
		"provider_order_no": "600230547601422048", "refresh": true, "follow": true,
		"follow_until": "2026-11-25T08:00:00Z", "request_id": "r-1",
		"attributes": map[string]string{"tenant": "t1"}, "extra": 7,
	})
	mpTime := mustMsgpack(t, map[string]any{
		"app_id": "ks707065143182458884", "order_no": "1711619867139contractDemo",
		"provider_order_no": "600230547601422048", "refresh": true, "follow": true,
		"follow_until": until, "request_id": "r-1", "attributes": map[string]string{"tenant": "t1"},
	})
	for _, tc := range []struct {
		name, ct string
		data     []byte
	}{
		{"json sniffed", "", []byte(jsonBody)},
		{"json with header", "application/json; charset=utf-8", []byte(jsonBody)},
		{"json leading space", "", []byte("  \n" + jsonBody)},
		{"msgpack sniffed", "", mp},
		{"msgpack with header", "application/msgpack", mp},
		{"msgpack timestamp", "", mpTime},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := DecodeRequest(tc.ct, tc.data)
			if err != nil {
				t.Fatalf("DecodeRequest: %v", err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("got %+v\nwant %+v", got, want)
			}
		})
	}
}

func TestDecodeRequestNullsAndMinimal(t *testing.T) {
	got, err := DecodeRequest("", []byte(`{"app_id":"a","provider_order_no":"p","order_no":null,"attributes":null,"follow":null}`))
	if err != nil {
		t.Fatal(err)
	}
	if got.AppID != "a" || got.ProviderOrderNo != "p" || got.OrderNo != "" || got.Attributes != nil || got.Follow {
		t.Fatalf("got %+v", got)
	}
}

func TestDecodeRequestErrors(t *testing.T) {
	big := `{"app_id":"a","order_no":"o","pad":"` + strings.Repeat("x", MaxRequestSize) + `"}`
	for _, tc := range []struct {
		name, ct, body string
		reason, field  string
		msgContains    string
	}{
		{"empty", "", "", ReasonInvalidPayload, "", "empty payload"},
		{"not json", "", "hello", ReasonInvalidPayload, "", "neither"},
		{"array", "", "[1,2]", ReasonInvalidPayload, "", "neither"},
		{"broken json", "", `{"app_id":`, ReasonInvalidPayload, "", "not valid JSON"},
		{"trailing data", "", `{"app_id":"a","order_no":"o"} {}`, ReasonInvalidPayload, "", "after the top-level"},
		{"json header on msgpack", "application/json", "\x81\xa1a\x01", ReasonInvalidPayload, "", "not valid JSON"},
		{"unsupported content type", "text/plain", `{"app_id":"a"}`, ReasonInvalidPayload, "", "unsupported Content-Type"},
		{"too large", "", big, ReasonInvalidPayload, "", "more than the 65536 allowed"},
		{"missing app_id", "", `{"order_no":"o"}`, ReasonInvalidField, "app_id", "is required"},
		{"empty app_id", "", `{"app_id":"","order_no":"o"}`, ReasonInvalidField, "app_id", "is required"},
		{"app_id number", "", `{"app_id":123,"order_no":"o"}`, ReasonInvalidField, "app_id", "must be a string, got a number"},
		{"no order", "", `{"app_id":"a"}`, ReasonInvalidField, "order_no", "unless provider_order_no"},
		{"order_no object", "", `{"app_id":"a","order_no":{}}`, ReasonInvalidField, "order_no", "got an object"},
		{"order_no control char", "", `{"app_id":"a","order_no":"a\nb"}`, ReasonInvalidField, "order_no", "control character"},
		{"order_no too long", "", `{"app_id":"a","order_no":"` + strings.Repeat("1", 129) + `"}`, ReasonInvalidField, "order_no", "at most 128"},
		{"refresh string", "", `{"app_id":"a","order_no":"o","refresh":"yes"}`, ReasonInvalidField, "refresh", "must be a boolean"},
		{"follow number", "", `{"app_id":"a","order_no":"o","follow":1}`, ReasonInvalidField, "follow", "must be a boolean"},
		{"follow_until bad", "", `{"app_id":"a","order_no":"o","follow_until":"tomorrow"}`, ReasonInvalidField, "follow_until", "RFC 3339"},
		{"follow_until number", "", `{"app_id":"a","order_no":"o","follow_until":5}`, ReasonInvalidField, "follow_until", "RFC 3339"},
		{"attributes list", "", `{"app_id":"a","order_no":"o","attributes":["x"]}`, ReasonInvalidField, "attributes", "map of strings"},
		{"attribute value number", "", `{"app_id":"a","order_no":"o","attributes":{"a":"1","b":2}}`, ReasonInvalidField, "attributes.b", "must be a string"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := DecodeRequest(tc.ct, []byte(tc.body))
			var pe *PayloadError
			if !errors.As(err, &pe) {
				t.Fatalf("want *PayloadError, got %v", err)
			}
			if pe.Reason != tc.reason || pe.Field != tc.field || !strings.Contains(pe.Error(), tc.msgContains) {
				t.Fatalf("got reason=%q field=%q err=%q; want %q %q containing %q", pe.Reason, pe.Field, pe.Error(), tc.reason, tc.field, tc.msgContains)
			}
		})
	}
}

func TestDecodeRequestMsgpackErrors(t *testing.T) {
	for _, tc := range []struct {
		name          string
		data          []byte
		reason, field string
	}{
		{"int keys", mustMsgpack(t, map[int]string{1: "a"}), ReasonInvalidPayload, ""},
		{"truncated", mustMsgpack(t, map[string]any{"app_id": "abc", "order_no": "123456"})[:10], ReasonInvalidPayload, ""},
		{"trailing", append(mustMsgpack(t, map[string]any{"app_id": "a", "order_no": "o"}), 0x01), ReasonInvalidPayload, ""},
		{"binary app_id", mustMsgpack(t, map[string]any{"app_id": []byte("a"), "order_no": "o"}), ReasonInvalidField, "app_id"},
		{"int attribute", mustMsgpack(t, map[string]any{"app_id": "a", "order_no": "o", "attributes": map[string]any{"k": 1}}), ReasonInvalidField, "attributes.k"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := DecodeRequest("", tc.data)
			var pe *PayloadError
			if !errors.As(err, &pe) || pe.Reason != tc.reason || pe.Field != tc.field {
				t.Fatalf("got %#v (%v); want reason %q field %q", pe, err, tc.reason, tc.field)
			}
		})
	}
}

func TestEventRoundTrip(t *testing.T) {
	ev := StatusEvent{
		EventID: "e", RequestID: "r", Provider: "kuaishou", Kind: KindPayment, AppID: "a",
		OrderNo: "o", ProviderOrderNo: "p", Status: StatusSucceeded, PreviousStatus: StatusPending,
		ProviderStatus: "SUCCESS", Terminal: true, Amount: 1200, Currency: "CNY",
		PaidAt: "2024-04-10T12:46:42.906Z", Channel: ChannelWechat,
		Details:    map[string]any{"open_id": "x"},
		ObservedAt: "2026-11-24T00:00:00Z", Attributes: map[string]string{"k": "v"},
	}
	for _, enc := range []Encoding{JSON, Msgpack} {
		b, err := enc.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		got, err := DecodeEvent(enc.ContentType(), b)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, ev) {
			t.Fatalf("%s: got %+v want %+v", enc, got, ev)
		}
		sniffed, err := DecodeEvent("", b)
		if err != nil || !reflect.DeepEqual(sniffed, ev) {
			t.Fatalf("%s sniffed: %v %+v", enc, err, sniffed)
		}
	}
}

func TestEventID(t *testing.T) {
	a := EventID("kuaishou", "payment", "app", "order", 1)
	if a != EventID("kuaishou", "payment", "app", "order", 1) {
		t.Fatal("not deterministic")
	}
	if len(a) != 32 {
		t.Fatalf("len %d", len(a))
	}
	seen := map[string]bool{a: true}
	for _, other := range []string{
		EventID("kudian", "payment", "app", "order", 1),
		EventID("kuaishou", "refund", "app", "order", 1),
		EventID("kuaishou", "payment", "app2", "order", 1),
		EventID("kuaishou", "payment", "app", "order2", 1),
		EventID("kuaishou", "payment", "app", "order", 2),
		EventID("kuaishou", "payment", "app", "order", 3),
		EventID("kuaishou", "payment", "ap", "porder", 1), // shifted boundary
		EventID("kuaishou", "payment", "app", "order1", 1),
		EventID("kuaishou", "payment", "app", "order", 11),
	} {
		if seen[other] {
			t.Fatalf("collision: %s", other)
		}
		seen[other] = true
	}
}

func TestSubjects(t *testing.T) {
	s := Subjects{Prefix: "orders"}
	if got := s.Status("kuaishou", "payment", StatusSucceeded); got != "orders.status.kuaishou.payment.succeeded" {
		t.Fatal(got)
	}
	if got := s.DeadLetter(Unknown, Unknown); got != "orders.dlq.unknown.unknown" {
		t.Fatal(got)
	}
	for _, tc := range []struct {
		subject, provider, kind string
		ok                      bool
	}{
		{"orders.query.kuaishou.payment", "kuaishou", "payment", true},
		{"orders.query.kudian.refund", "kudian", "refund", true},
		{"orders.query.kuaishou", "", "", false},
		{"orders.query.kuaishou.payment.extra", "", "", false},
		{"other.query.kuaishou.payment", "", "", false},
		{"orders.query..payment", "", "", false},
	} {
		p, k, ok := s.ParseQuery(tc.subject)
		if p != tc.provider || k != tc.kind || ok != tc.ok {
			t.Errorf("%s: got %q %q %v", tc.subject, p, k, ok)
		}
	}
}

func TestStatusTerminal(t *testing.T) {
	want := map[Status]bool{StatusPending: false, StatusUnknown: false, StatusSucceeded: true,
		StatusFailed: true, StatusTimedOut: true, StatusCancelled: true, StatusReversed: true}
	for _, s := range Statuses {
		if s.Terminal() != want[s] {
			t.Errorf("%s terminal=%v", s, s.Terminal())
		}
	}
}

// FuzzDecodeRequest: no input panics, and every failure is a classified *PayloadError.
func FuzzDecodeRequest(f *testing.F) {
	f.Add("", []byte(`{"app_id":"ks707065143182458884","order_no":"1711619867139contractDemo"}`))
	f.Add("application/json", []byte(`{"app_id":1}`))
	f.Add("", []byte(`{"attributes":{"a":{"b":1}},"follow_until":"2026-01-01T00:00:00Z"}`))
	f.Add("application/msgpack", []byte("\x82\xa6app_id\xa1a\xa8order_no\xa1o"))
	f.Add("", []byte("\xde\x00\x01\xa1a\xc0"))
	f.Add("", []byte("\x81\xa6app_id\xd6\xff\x00\x00\x00\x01"))
	for _, h := range hostilePayloads {
		f.Add("", h.data)
	}
	f.Add("", []byte(`{"app_id":"a","order_no":"\ud800"}`))
	f.Add("", []byte("\x82\xa6app_id\xa1a\xa8order_no\xa2\xc3\x28"))
	for _, tc := range truncatedMsgpack {
		f.Add("", tc.data)
	}
	f.Fuzz(func(t *testing.T, ct string, data []byte) {
		req, err := DecodeRequest(ct, data)
		if err != nil {
			var pe *PayloadError
			if !errors.As(err, &pe) || (pe.Reason != ReasonInvalidPayload && pe.Reason != ReasonInvalidField) {
				t.Fatalf("unclassified error %v", err)
			}
			return
		}
		if req.AppID == "" || (req.OrderNo == "" && req.ProviderOrderNo == "") {
			t.Fatalf("accepted a request without its ids: %+v", req)
		}
		for k, v := range req.Attributes {
			if !utf8.ValidString(k) || !utf8.ValidString(v) {
				t.Fatalf("accepted invalid UTF-8 in attributes: %q=%q", k, v)
			}
		}
		for _, s := range []string{req.AppID, req.OrderNo, req.ProviderOrderNo, req.RequestID} {
			if !utf8.ValidString(s) {
				t.Fatalf("accepted invalid UTF-8: %q", s)
			}
		}
	})
}
