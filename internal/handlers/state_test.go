package handlers

import (
	"context"
	"log/slog"
	"reflect"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/paystatus/orderstatus/internal/events"
	"github.com/paystatus/orderstatus/internal/natstest"
	"github.com/paystatus/orderstatus/internal/providers"
)

// On the first release a pending event was stored as JSON and read back into map[string]any:
// its details' integers came back as float64, and those above 2^53 lost precision when the
// event was published again. They now come back as they went in.
func TestPendingEventKeepsExactNumbers(t *testing.T) {
	big := int64(1<<53 + 1)
	ev := events.StatusEvent{EventID: "e", Status: events.StatusPending, Amount: 1200, Details: map[string]any{
		"ks_fee": big, "ratio": 0.25, "count": int64(3), "nested": map[string]any{"id": int64(9007199254740993)},
		"list": []any{int64(1), "x"}, "text": "12", "flag": true,
	}}
	st := orderState{Status: events.StatusPending, Transition: 1, EventID: "e", Pending: &ev}
	got, err := decodeState(st.encode())
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.Pending.Details, ev.Details) {
		t.Fatalf("details came back as %#v, want %#v", got.Pending.Details, ev.Details)
	}
	if got.Pending.Amount != 1200 || got.Transition != 1 {
		t.Fatalf("got %+v", got)
	}
}

// An order never moves backwards: an answer to a query sent before the one that set the
// recorded status is ignored, and so is a non-terminal answer once the status is terminal.
func TestIgnored(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	rec := func(s events.Status, sent time.Time) orderState {
		return orderState{Status: s, SentAt: sent.Format(time.RFC3339Nano)}
	}
	res := func(s events.Status) providers.Result { return providers.Result{Status: s} }
	for _, tc := range []struct {
		name string
		cur  orderState
		res  providers.Result
		sent time.Time
		want string
	}{
		{"newer answer", rec(events.StatusPending, t0), res(events.StatusSucceeded), t0.Add(time.Millisecond), ""},
		{"same instant", rec(events.StatusPending, t0), res(events.StatusSucceeded), t0, ""},
		{"older answer", rec(events.StatusSucceeded, t0), res(events.StatusPending), t0.Add(-50 * time.Millisecond), "stale"},
		{"older answer, terminal too", rec(events.StatusPending, t0), res(events.StatusSucceeded), t0.Add(-time.Millisecond), "stale"},
		{"pending after succeeded", rec(events.StatusSucceeded, t0), res(events.StatusPending), t0.Add(time.Second), "after_terminal"},
		{"unknown after failed", rec(events.StatusFailed, t0), res(events.StatusUnknown), t0.Add(time.Second), "after_terminal"},
		{"terminal to terminal", rec(events.StatusSucceeded, t0), res(events.StatusReversed), t0.Add(time.Second), ""},
		{"pending to unknown", rec(events.StatusPending, t0), res(events.StatusUnknown), t0.Add(time.Second), ""},
		{"state from before sent_at", orderState{Status: events.StatusPending}, res(events.StatusSucceeded), t0, ""},
		// No answer comes back longer after its query than a call may take: a recorded time
		// far ahead is the server's clock stepped back, or a damaged state, and must not
		// freeze the order until the clock catches up.
		{"recorded an hour ahead", rec(events.StatusPending, t0.Add(time.Hour)), res(events.StatusSucceeded), t0, ""},
		{"recorded in 9999", rec(events.StatusPending, time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)), res(events.StatusSucceeded), t0, ""},
		{"older by the longest a call may take", rec(events.StatusSucceeded, t0), res(events.StatusPending), t0.Add(-maxAnswerDelay), "stale"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := ignored(tc.cur, tc.res, tc.sent); got != tc.want {
				t.Fatalf("ignored = %q, want %q", got, tc.want)
			}
		})
	}
}

// The clear of a pending mark is a plain publish that nobody waits for. It still carries the
// revision it must follow: one that comes after the order moved on is refused by the server,
// and the newer state stays (a clear that overwrote it would lose a transition's mark).
func TestLateClearDoesNotOverwriteANewerState(t *testing.T) {
	ns := natstest.RunServer(t)
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx := context.Background()
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: StateBucket, History: 1})
	if err != nil {
		t.Fatal(err)
	}
	h := NewHandler(Options{JS: js, State: kv, Subjects: events.Subjects{Prefix: "orders"}, AckWait: 30 * time.Second, MaxDeliver: 4, Log: slog.New(slog.DiscardHandler)})
	key := "kuaishou.payment.app.order-1"
	ev1 := events.StatusEvent{EventID: "e1", Status: events.StatusPending}
	first := orderState{Status: events.StatusPending, Transition: 1, EventID: "e1", Pending: &ev1}
	rev1, err := h.putState(ctx, key, first, 0)
	if err != nil {
		t.Fatal(err)
	}
	ev2 := events.StatusEvent{EventID: "e2", Status: events.StatusSucceeded}
	second := orderState{Status: events.StatusSucceeded, Transition: 2, EventID: "e2", Pending: &ev2}
	rev2, err := h.putState(ctx, key, second, rev1)
	if err != nil {
		t.Fatal(err)
	}
	h.clearPending(key, first, rev1) // late: the order is at rev2
	// The server takes a connection's messages in order: this write, made after the clear,
	// succeeds only if the clear was refused.
	if _, err := h.putState(ctx, key, second, rev2); err != nil {
		t.Fatalf("the late clear was stored over the newer state: %v", err)
	}
	e, err := kv.Get(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if st, _ := decodeState(e.Value()); st.Transition != 2 || st.Pending == nil {
		t.Fatalf("state %s", e.Value())
	}
}
