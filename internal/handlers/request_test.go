package handlers

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/paystatus/orderstatus/internal/config"
	"github.com/paystatus/orderstatus/internal/events"
	"github.com/paystatus/orderstatus/internal/providers/registry"
)

func testHandler(t *testing.T) *Handler {
	t.Helper()
	cfg := config.Default()
	cfg.Providers = map[string]config.Provider{
		"kuaishou": {BaseURL: "http://127.0.0.1:1", QPS: 30, Timeout: time.Second,
			Apps: []config.App{{AppID: "ks707065143182458884", AppSecret: "secret"}}},
	}
	provs, err := registry.Build(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return NewHandler(Options{Subjects: events.Subjects{Prefix: "orders"}, Providers: provs, AckWait: 30 * time.Second, MaxDeliver: 4, Log: nil})
}

// The one intake of the query stream and the lookup service: what it takes, and what it
// refuses with which reason.
func TestIntake(t *testing.T) {
	h := testHandler(t)
	p := h.providers["kuaishou"]
	now := time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC)
	app := `"app_id":"ks707065143182458884"`
	for _, tc := range []struct {
		name, body string
		hdr        nats.Header
		reason     string // "" when taken
		requestID  string
	}{
		{"plain", `{` + app + `,"order_no":"1711619867139contractDemo"}`, nil, "", "*"},
		{"request_id wins", `{` + app + `,"order_no":"1711619867139contractDemo","request_id":"r1"}`, nats.Header{"Nats-Msg-Id": {"m1"}}, "", "r1"},
		{"Nats-Msg-Id next", `{` + app + `,"order_no":"1711619867139contractDemo"}`, nats.Header{"Nats-Msg-Id": {"m1"}}, "", "m1"},
		{"a publisher's Orders-Request-Id is ignored", `{` + app + `,"order_no":"1711619867139contractDemo"}`,
			nats.Header{"Orders-Request-Id": {"forged"}, "Nats-Msg-Id": {"m1"}}, "", "m1"},
		{"a follow-up's own is kept", `{` + app + `,"order_no":"1711619867139contractDemo"}`,
			nats.Header{"Orders-Request-Id": {"first"}, "Nats-Scheduler": {"orders.follow.kuaishou.payment.7"}}, "", "first"},
		{"unknown app", `{"app_id":"nope","order_no":"1711619867139contractDemo"}`, nil, events.ReasonUnknownApp, ""},
		{"bad order_no", `{` + app + `,"order_no":"x"}`, nil, events.ReasonInvalidField, ""},
		{"undecodable", `{`, nil, events.ReasonInvalidPayload, ""},
		{"follow_until 31 days on", `{` + app + `,"order_no":"1711619867139contractDemo","follow_until":"2026-12-26T00:00:01Z"}`, nil, events.ReasonInvalidField, ""},
		{"follow_until 30 days on", `{` + app + `,"order_no":"1711619867139contractDemo","follow_until":"2026-12-25T00:00:00Z"}`, nil, "", "*"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hdr := tc.hdr
			if hdr == nil {
				hdr = nats.Header{}
			}
			req, err := h.intake(p, events.KindPayment, hdr, []byte(tc.body), now)
			var rej *rejection
			switch {
			case tc.reason == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.reason != "" && (!errors.As(err, &rej) || rej.reason != tc.reason):
				t.Fatalf("got %v, want %s", err, tc.reason)
			case tc.reason != "":
				return
			}
			if req.Provider != "kuaishou" || req.Kind != events.KindPayment {
				t.Fatalf("provider %q kind %q", req.Provider, req.Kind)
			}
			if tc.requestID == "*" && req.RequestID == "" || tc.requestID != "*" && req.RequestID != tc.requestID {
				t.Fatalf("request_id %q, want %q", req.RequestID, tc.requestID)
			}
		})
	}
	if got := h.providerNames(); !strings.Contains(got, "kuaishou") {
		t.Fatalf("providerNames %q", got)
	}
}
