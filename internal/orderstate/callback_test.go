package orderstate

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/paystatus/orderstatus/internal/events"
	"github.com/paystatus/orderstatus/internal/providers"
)

// A notification is an observation made at its timestamp, through the same Claim as a query's
// answer: observations are ordered by their times whichever source they come from, a change
// seen by both, in either order, gives one event with the source of the first, and a
// notification whose amount differs from the recorded one changes nothing.
func TestCallbacksAndQueriesShareTheRules(t *testing.T) {
	js, kv := testBucket(t)
	ctx := context.Background()
	testStatusStream(t, js)
	st := newTestStore(js, kv)
	t0 := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	req := events.Request{Provider: "kuaishou", Kind: "payment", AppID: "app", OrderNo: "order-cb-1"}
	obs := func(source string, status events.Status, at time.Duration, amount int64) Observation {
		return Observation{Request: req, Source: source, Sent: t0.Add(at),
			Result: providers.Result{OrderKey: "order-cb-1", OrderNo: "order-cb-1", Status: status, ProviderStatus: string(status), Amount: amount, ObservedAt: t0.Add(at)}}
	}
	var sent []events.StatusEvent
	step := func(o Observation) error {
		t.Helper()
		_, c, err := st.Claim(ctx, o)
		if err != nil || c == nil {
			return err
		}
		p, err := st.Publish(ctx, c)
		if err != nil {
			t.Fatal(err)
		}
		if err := st.Confirm(ctx, p); err != nil {
			t.Fatal(err)
		}
		st.Clear(p)
		sent = append(sent, c.Event())
		return nil
	}
	for i, tc := range []struct {
		name string
		o    Observation
		want error
	}{
		{"callback: pending", obs(events.SourceCallback, events.StatusPending, 0, 1200), nil},
		{"query sees the same", obs(events.SourceQuery, events.StatusPending, time.Second, 1200), nil},
		{"callback: succeeded", obs(events.SourceCallback, events.StatusSucceeded, 5*time.Second, 1200), nil},
		{"query sent before it, answered after", obs(events.SourceQuery, events.StatusPending, 3*time.Second, 1200), nil},
		{"a late resend of the old notification", obs(events.SourceCallback, events.StatusPending, 2*time.Second, 1200), nil},
		{"query sees succeeded too", obs(events.SourceQuery, events.StatusSucceeded, 6*time.Second, 1200), nil},
		{"callback with another amount", obs(events.SourceCallback, events.StatusReversed, 7*time.Second, 1), ErrAmountMismatch},
		{"the query decides", obs(events.SourceQuery, events.StatusReversed, 8*time.Second, 1200), nil},
		{"callback sees what the query saw", obs(events.SourceCallback, events.StatusReversed, 9*time.Second, 1200), nil},
	} {
		if err := step(tc.o); !errors.Is(err, tc.want) {
			t.Fatalf("step %d (%s): %v, want %v", i, tc.name, err, tc.want)
		}
	}
	if len(sent) != 3 {
		t.Fatalf("%d events, want 3: %+v", len(sent), sent)
	}
	for i, want := range []struct {
		status events.Status
		source string
		n      uint64
	}{{events.StatusPending, "callback", 1}, {events.StatusSucceeded, "callback", 2}, {events.StatusReversed, "query", 3}} {
		ev := sent[i]
		if ev.Status != want.status || ev.Source != want.source || ev.EventID != events.EventID("kuaishou", "payment", "app", "order-cb-1", want.n) {
			t.Fatalf("event %d: %+v, want %v from %s", i, ev, want.status, want.source)
		}
	}
	rec, _, err := st.load(ctx, st.order(Key("kuaishou", "payment", "app", "order-cb-1")))
	if err != nil || rec.Amount != 1200 || rec.Transition != 3 {
		t.Fatalf("record %+v (%v)", rec, err)
	}
	// A first notification for an order with no amount recorded is applied as it is.
	other := obs(events.SourceCallback, events.StatusSucceeded, 0, 5)
	other.Result.OrderKey = "order-cb-2"
	if err := step(other); err != nil || len(sent) != 4 || sent[3].Source != "callback" {
		t.Fatalf("first notification: %v, %d events", err, len(sent))
	}
}
