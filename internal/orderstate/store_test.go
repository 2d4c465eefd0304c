package orderstate

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/paystatus/orderstatus/internal/events"
	"github.com/paystatus/orderstatus/internal/natstest"
	"github.com/paystatus/orderstatus/internal/providers"
	"github.com/paystatus/orderstatus/internal/telemetry"
)

// A pending event's details come back as they went in: integers stay integers, and those above
// 2^53 keep their precision when the event is published again.
func TestPendingEventKeepsExactNumbers(t *testing.T) {
	big := int64(1<<53 + 1)
	ev := events.StatusEvent{EventID: "e", Provider: "kuaishou", Kind: "payment", Status: events.StatusPending, Amount: 1200, Details: map[string]any{
		"ks_fee": big, "ratio": 0.25, "count": int64(3), "nested": map[string]any{"id": int64(9007199254740993)},
		"list": []any{int64(1), "x"}, "text": "12", "flag": true,
	}}
	st := Record{Status: events.StatusPending, Transition: 1, EventID: "e", Pending: &ev}
	got, err := decodeRecord(st.encode())
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
	rec := func(s events.Status, sent time.Time) Record {
		return Record{Status: s, SentAt: sent.Format(time.RFC3339Nano)}
	}
	res := func(s events.Status) events.Status { return s }
	for _, tc := range []struct {
		name string
		cur  Record
		res  events.Status
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
		{"state from before sent_at", Record{Status: events.StatusPending}, res(events.StatusSucceeded), t0, ""},
		// No answer comes back longer after its query than a call may take: a recorded time
		// far ahead is the server's clock stepped back, or a damaged state, and must not
		// freeze the order until the clock catches up.
		{"recorded an hour ahead", rec(events.StatusPending, t0.Add(time.Hour)), res(events.StatusSucceeded), t0, ""},
		{"recorded in 9999", rec(events.StatusPending, time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)), res(events.StatusSucceeded), t0, ""},
		{"older by the longest a call may take", rec(events.StatusSucceeded, t0), res(events.StatusPending), t0.Add(-maxAnswerDelay), "stale"},
		// A terminal status is never left for a non-terminal one, whatever the clocks say: a
		// notification's timestamp far ahead, or a record's time not trusted.
		{"pending a year after succeeded", rec(events.StatusSucceeded, t0), res(events.StatusPending), t0.AddDate(1, 0, 0), "after_terminal"},
		{"pending, succeeded recorded an hour ahead", rec(events.StatusSucceeded, t0.Add(time.Hour)), res(events.StatusPending), t0, "after_terminal"},
		{"unknown, failed recorded in 9999", rec(events.StatusFailed, time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)), res(events.StatusUnknown), t0, "after_terminal"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Ignored(tc.cur, tc.res, tc.sent); got != tc.want {
				t.Fatalf("ignored = %q, want %q", got, tc.want)
			}
		})
	}
}

// A change of the provider's raw status alone is a transition: its event's status equals its
// previous_status (Kuaishou's UNKNOW, then UNKNOWN: unknown both). The same pair again is none.
func TestProviderStatusAloneIsAChange(t *testing.T) {
	js, kv := testBucket(t)
	testStatusStream(t, js)
	st := newTestStore(js, kv)
	t0 := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	req := events.Request{Provider: "kuaishou", Kind: "payment", AppID: "app", OrderNo: "order-raw-1"}
	var got []string
	for i, raw := range []string{"PROCESSING", "UNKNOW", "UNKNOWN", "UNKNOWN"} {
		res := providers.Result{OrderKey: "order-raw-1", Status: events.StatusUnknown, ProviderStatus: raw}
		if raw == "PROCESSING" {
			res.Status = events.StatusPending
		}
		_, c, err := st.Claim(context.Background(), Observation{Request: req, Result: res, Sent: t0.Add(time.Duration(i) * time.Second)})
		if err != nil {
			t.Fatal(err)
		}
		if c != nil { // published by the next Claim, which finds it pending
			ev := c.Event()
			got = append(got, string(ev.PreviousStatus)+">"+string(ev.Status)+"("+ev.ProviderStatus+")")
		}
	}
	if want := ">pending(PROCESSING) pending>unknown(UNKNOW) unknown>unknown(UNKNOWN)"; strings.Join(got, " ") != want {
		t.Fatalf("events %v, want %s", got, want)
	}
}

// The clear of a pending mark is a plain publish that nobody waits for. It still carries the
// revision it must follow: one that comes after the order moved on is refused by the server,
// and the newer state stays (a clear that overwrote it would lose a transition's mark).
func TestLateClearDoesNotOverwriteANewerState(t *testing.T) {
	js, kv := testBucket(t)
	ctx := context.Background()
	st := newTestStore(js, kv)
	key := st.order("kuaishou.payment.app.order-1")
	ev1 := events.StatusEvent{EventID: "e1", Status: events.StatusPending}
	first := Record{Status: events.StatusPending, Transition: 1, EventID: "e1", Pending: &ev1}
	rev1, err := st.put(ctx, key, &first, 0)
	if err != nil {
		t.Fatal(err)
	}
	ev2 := events.StatusEvent{EventID: "e2", Status: events.StatusSucceeded}
	second := Record{Status: events.StatusSucceeded, Transition: 2, EventID: "e2", Pending: &ev2}
	rev2, err := st.put(ctx, key, &second, rev1)
	if err != nil {
		t.Fatal(err)
	}
	st.Clear(&Publication{claim: &Claim{order: key, rec: first, rev: rev1}}) // late: the order is at rev2
	// The server takes a connection's messages in order: this write, made after the clear,
	// succeeds only if the clear was refused.
	if _, err := st.put(ctx, key, &second, rev2); err != nil {
		t.Fatalf("the late clear was stored over the newer state: %v", err)
	}
	e, err := kv.Get(ctx, key.key)
	if err != nil {
		t.Fatal(err)
	}
	var got Record
	if err := json.Unmarshal(e.Value(), &got); err != nil || got.Transition != 2 || got.Pending == nil {
		t.Fatalf("state %s", e.Value())
	}
}

// A write at a revision the key has moved past is refused as ErrConflict and stores nothing:
// without the expected revision every claim would be unconditional, and two writers racing on
// one order would both record a transition.
func TestStaleRevisionIsAConflict(t *testing.T) {
	js, kv := testBucket(t)
	st := newTestStore(js, kv)
	ctx := context.Background()
	key := st.order("kuaishou.payment.app.order-2")
	rec := func(n uint64) *Record {
		return &Record{Status: events.StatusPending, Transition: n, EventID: fmt.Sprint("e", n)}
	}
	rev1, err := st.put(ctx, key, rec(1), 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.put(ctx, key, rec(9), 0); !errors.Is(err, ErrConflict) {
		t.Fatalf("a create over an existing key: %v, want ErrConflict", err)
	}
	rev2, err := st.put(ctx, key, rec(2), rev1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.put(ctx, key, rec(3), rev1); !errors.Is(err, ErrConflict) {
		t.Fatalf("a write at the stale revision %d: %v, want ErrConflict", rev1, err)
	}
	got, rev, err := st.load(ctx, key)
	if err != nil || rev != rev2 || got.Transition != 2 {
		t.Fatalf("after the refused writes: transition %d at %d (%v), want 2 at %d", got.Transition, rev, err, rev2)
	}
}

// A record read back from the bucket is outside input: every kind of damage is refused by
// decodeRecord, and a damaged key reads as no record at its revision, so the order's next
// answer writes over it.
func TestDamagedRecordsAreRefused(t *testing.T) {
	good := Record{Status: events.StatusPending, ProviderStatus: "PROCESSING", Transition: 3, EventID: "e3",
		SentAt: "2026-11-25T12:00:00Z", ObservedAt: "2026-11-25T12:00:00Z"}
	if _, err := decodeRecord(good.encode()); err != nil {
		t.Fatalf("a sound record refused: %v", err)
	}
	pending := good
	ev := events.StatusEvent{EventID: "e3", Provider: "kuaishou", Kind: "payment", Status: events.StatusPending, ProviderStatus: "PROCESSING"}
	pending.Pending = &ev
	if _, err := decodeRecord(pending.encode()); err != nil {
		t.Fatalf("a sound pending record refused: %v", err)
	}
	with := func(f func(r *Record)) []byte {
		r := pending
		e := *pending.Pending
		r.Pending = &e
		f(&r)
		return r.encode()
	}
	for name, b := range map[string][]byte{
		"random bytes":          {0x9c, 0x01, 0xff, 0x00, 0x7f},
		"empty":                 {},
		"empty object":          []byte(`{}`),
		"negative transition":   []byte(`{"status":"pending","transition":-1,"event_id":"e"}`),
		"zero transition":       with(func(r *Record) { r.Transition = 0 }),
		"status outside enum":   with(func(r *Record) { r.Status, r.Pending.Status = "x y", "x y" }),
		"previous outside enum": with(func(r *Record) { r.Pending.PreviousStatus = "x y" }),
		"subject token":         with(func(r *Record) { r.Pending.Kind = "pay ment" }),
		"64 KiB string": with(func(r *Record) {
			r.ProviderStatus = strings.Repeat("x", 64<<10)
			r.Pending.ProviderStatus = r.ProviderStatus
		}),
		"900 KiB array":      []byte(`{"status":"pending","transition":1,"event_id":"e","x":[` + strings.Repeat("1,", 450<<10) + `1]}`),
		"pending of another": with(func(r *Record) { r.Pending.EventID = "e9" }),
		"sent_at not a time": with(func(r *Record) { r.SentAt = "yesterday" }),
		"no event id":        with(func(r *Record) { r.EventID, r.Pending.EventID = "", "" }),
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := decodeRecord(b); !errors.Is(err, errDamaged) {
				t.Fatalf("decodeRecord: %v, want errDamaged", err)
			}
		})
	}
	js, kv := testBucket(t)
	st := newTestStore(js, kv)
	ctx := context.Background()
	rev, err := kv.Put(ctx, "kuaishou.payment.app.order-3", []byte(`{"status":"x y","transition":1,"event_id":"e"}`))
	if err != nil {
		t.Fatal(err)
	}
	rec, got, err := st.load(ctx, st.order("kuaishou.payment.app.order-3"))
	if err != nil || got != rev || rec.Transition != 0 {
		t.Fatalf("load of a damaged record: %+v at %d (%v), want none at %d", rec, got, err, rev)
	}
	if n := testutil.ToFloat64(st.metrics.DamagedRecords); n != 1 {
		t.Fatalf("orders_state_records_damaged_total %v, want 1", n)
	}
}

func testBucket(t testing.TB) (jetstream.JetStream, jetstream.KeyValue) {
	t.Helper()
	ns := natstest.RunServer(t)
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, _ := jetstream.New(nc)
	kv, err := js.CreateKeyValue(context.Background(), jetstream.KeyValueConfig{Bucket: "ORDERS_STATE", History: 1})
	if err != nil {
		t.Fatal(err)
	}
	return js, kv
}

// testStatusStream creates ORDERS_STATUS, for tests that publish events.
func testStatusStream(t *testing.T, js jetstream.JetStream) {
	t.Helper()
	if _, err := js.CreateStream(context.Background(), jetstream.StreamConfig{Name: "ORDERS_STATUS", Subjects: []string{"orders.status.>"}, Duplicates: 2 * time.Minute}); err != nil {
		t.Fatal(err)
	}
}

func newTestStore(js jetstream.JetStream, kv jetstream.KeyValue) *Store {
	return New(Options{JS: js, Bucket: kv, Subjects: events.Subjects{Prefix: "orders"}, Encoding: events.JSON,
		Log: slog.New(slog.DiscardHandler), Metrics: telemetry.NewMetrics(prometheus.NewRegistry()), Tracer: noop.NewTracerProvider().Tracer("")})
}

// An ignored observation reports the order as recorded, never the answer it ignored: a lookup's
// reply is that report, and a slow "pending" must not show a paid order as unpaid.
func TestIgnoredObservationReportsTheRecordedStatus(t *testing.T) {
	js, kv := testBucket(t)
	testStatusStream(t, js)
	st := newTestStore(js, kv)
	ctx := context.Background()
	t0 := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	obs := func(order string, status events.Status, provider string, at time.Duration, amount int64) Observation {
		return Observation{Request: events.Request{Provider: "kuaishou", Kind: "payment", AppID: "app", OrderNo: order}, Sent: t0.Add(at),
			Result: providers.Result{OrderKey: order, OrderNo: order, Status: status, ProviderStatus: provider, Amount: amount,
				Channel: events.ChannelWechat, ObservedAt: t0.Add(at), Details: map[string]any{"from": provider}}}
	}
	record := func(o Observation) {
		t.Helper()
		got, err := st.Observe(ctx, o)
		if err != nil || got.Claim == nil {
			t.Fatalf("observe %+v: %v, claim %v", o.Result, err, got.Claim)
		}
		p, err := st.Publish(ctx, got.Claim)
		if err == nil {
			err = st.Confirm(ctx, p)
		}
		if err != nil {
			t.Fatal(err)
		}
		st.Clear(p)
	}
	for _, tc := range []struct {
		name       string
		first, now Observation
		why        string
	}{
		{"after its end", obs("o-paid", events.StatusSucceeded, "SUCCESS", time.Second, 1200), obs("o-paid", events.StatusPending, "PROCESSING", 2*time.Second, 1200), "after_terminal"},
		{"stale", obs("o-open", events.StatusPending, "PROCESSING", 2*time.Second, 1200), obs("o-open", events.StatusFailed, "FAILED", time.Second, 0), "stale"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			record(tc.first)
			got, err := st.Observe(ctx, tc.now)
			if err != nil || got.Claim != nil || got.Ignored != tc.why {
				t.Fatalf("observe: %v, claim %v, ignored %q, want %q", err, got.Claim, got.Ignored, tc.why)
			}
			want, ev := tc.first.Result, got.Event
			if ev.Status != want.Status || ev.ProviderStatus != want.ProviderStatus || ev.Terminal != want.Status.Terminal() ||
				ev.Amount != want.Amount || ev.ObservedAt != events.FormatTime(want.ObservedAt) || ev.PreviousStatus != "" ||
				ev.EventID != events.EventID("kuaishou", "payment", "app", want.OrderKey, 1) || len(ev.Details) != 0 {
				t.Fatalf("reported %+v, want the recorded %s (%s, %d fen, observed %s, transition 1)", ev, want.Status, want.ProviderStatus, want.Amount, want.ObservedAt)
			}
		})
	}
}

// Each write carries its headers: the claim the revision it follows and its pending mark (which
// the sweep follows), the event its id (the duplicate window's key) and its encoding, the clear
// its revision and no mark. The records are stored as encode writes them.
func TestWritesCarryTheirHeaders(t *testing.T) {
	js, kv := testBucket(t)
	ctx := context.Background()
	status, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "ORDERS_STATUS", Subjects: []string{"orders.status.>"}})
	if err != nil {
		t.Fatal(err)
	}
	state, err := js.Stream(ctx, "KV_ORDERS_STATE")
	if err != nil {
		t.Fatal(err)
	}
	st := newTestStore(js, kv)
	t0 := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	obs := func(s events.Status, at time.Duration) Observation {
		return Observation{Request: events.Request{Provider: "kuaishou", Kind: "payment", AppID: "app", OrderNo: "order-h"}, Sent: t0.Add(at),
			Result: providers.Result{OrderKey: "order-h", Status: s, ProviderStatus: string(s), ObservedAt: t0.Add(at)}}
	}
	subject := "$KV.ORDERS_STATE." + Key("kuaishou", "payment", "app", "order-h")
	for i, s := range []events.Status{events.StatusPending, events.StatusSucceeded} {
		_, c, err := st.Claim(ctx, obs(s, time.Duration(i)*time.Second))
		if err != nil || c == nil {
			t.Fatalf("claim: %v", err)
		}
		m, err := state.GetLastMsgForSubject(ctx, subject)
		if err != nil {
			t.Fatal(err)
		}
		if got := m.Header.Get(events.HeaderPending); got != c.Event().EventID {
			t.Fatalf("claim %d: %s %q, want %q", i, events.HeaderPending, got, c.Event().EventID)
		}
		if !bytes.Equal(m.Data, encodeWithReflection(c.rec)) {
			t.Fatalf("claim %d stored as %s", i, m.Data)
		}
		p, err := st.Publish(ctx, c)
		if err != nil {
			t.Fatal(err)
		}
		if err := st.Confirm(ctx, p); err != nil {
			t.Fatal(err)
		}
		ev, err := status.GetLastMsgForSubject(ctx, "orders.status.kuaishou.payment."+string(s))
		if err != nil {
			t.Fatal(err)
		}
		if ev.Header.Get(events.HeaderMsgID) != c.Event().EventID || ev.Header.Get(events.HeaderContentType) != events.ContentTypeJSON {
			t.Fatalf("event %d headers %v", i, ev.Header)
		}
		st.Clear(p)
		natstest.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
			m, err := state.GetLastMsgForSubject(ctx, subject)
			if err != nil {
				return err
			}
			if m.Sequence == c.rev {
				return fmt.Errorf("not cleared yet")
			}
			if got := m.Header.Get(events.HeaderPending); got != "" {
				t.Fatalf("clear %d: %s %q", i, events.HeaderPending, got)
			}
			if want := strconv.FormatUint(c.rev, 10); m.Header.Get(jetstream.ExpectedLastSubjSeqHeader) != want {
				t.Fatalf("clear %d headers %v, want the revision %s", i, m.Header, want)
			}
			return nil
		})
	}
}
