package orderstate

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"testing"

	"github.com/paystatus/orderstatus/internal/events"
	"github.com/paystatus/orderstatus/internal/events/eventstest"
	"github.com/paystatus/orderstatus/internal/telemetry"
)

// encodeWithReflection is how records were encoded before encode wrote them by hand:
// encoding/json's Marshal. Records in buckets, and replicas of that version, hold its bytes.
func encodeWithReflection(r Record) []byte {
	b, _ := json.Marshal(r)
	return b
}

// randomRecord is a record whose every field is random text or number, each optional field
// sometimes absent, with a random pending event or none.
func randomRecord(r *rand.Rand) Record {
	rec := Record{Status: events.Status(eventstest.Text(r)), ProviderStatus: eventstest.Text(r), Transition: r.Uint64() >> r.IntN(64),
		EventID: eventstest.Text(r), ObservedAt: eventstest.Text(r)}
	if r.IntN(2) == 0 {
		rec.SentAt = eventstest.Text(r)
	}
	if r.IntN(2) == 0 {
		rec.Amount = r.Int64() >> r.IntN(64)
		if r.IntN(2) == 0 {
			rec.Amount = -rec.Amount
		}
	}
	if r.IntN(3) > 0 {
		ev := eventstest.Event(r)
		rec.Pending = &ev
	}
	switch r.IntN(4) {
	case 1:
		rec.Trace.Parent = eventstest.Text(r)
	case 2:
		rec.Trace.State = eventstest.Text(r)
	case 3:
		rec.Trace = telemetry.TraceContext{Parent: eventstest.Text(r), State: eventstest.Text(r)}
	}
	return rec
}

// A record is stored byte for byte as encoding/json wrote it: stored records are read back by
// the same decoder, and other replicas of the previous version read what this one writes.
func TestRecordEncodingIsEncodingJSONs(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for i := range 5000 {
		rec := randomRecord(r)
		want := encodeWithReflection(rec)
		if got := rec.encode(); !bytes.Equal(got, want) {
			t.Fatalf("record %d:\n got %s\nwant %s", i, got, want)
		}
	}
	// A pending event whose details hold what only encoding/json writes is left to it.
	rec := Record{Status: events.StatusPending, Transition: 1, EventID: "e",
		Pending: &events.StatusEvent{EventID: "e", Details: map[string]any{"n": json.Number("1.50"), "list": []string{"<"}}}}
	if got, want := rec.encode(), encodeWithReflection(rec); !bytes.Equal(got, want) {
		t.Fatalf("got %s\nwant %s", got, want)
	}
}

// sampleRecord is a claim as a Kuaishou payment's first answer writes it.
func sampleRecord() Record {
	ev := events.StatusEvent{
		EventID:   events.EventID("kuaishou", "payment", "ks707065143182458884", "1711619867139contractDemo", 1),
		RequestID: "r-1", Provider: "kuaishou", Kind: "payment", AppID: "ks707065143182458884", OrderNo: "1711619867139contractDemo",
		ProviderOrderNo: "121112500031787702250", Status: events.StatusSucceeded, ProviderStatus: "SUCCESS",
		Terminal: true, Amount: 1200, Currency: "CNY", PaidAt: "2024-04-10T12:46:42.906Z", Channel: events.ChannelWechat,
		Details:    map[string]any{"open_id": "5b748c61ef280130c0656638ebd4eaa6", "promotion_amount": int64(1), "extra_info": map[string]any{"item_type": "VIDEO"}},
		ObservedAt: "2026-11-24T00:00:00Z", Attributes: map[string]string{"tenant": "t1"}, Source: events.SourceQuery,
	}
	return Record{Status: ev.Status, ProviderStatus: ev.ProviderStatus, Transition: 1, EventID: ev.EventID,
		SentAt: "2026-11-24T00:00:00.123456789Z", Amount: 1200, ObservedAt: ev.ObservedAt, Pending: &ev}
}

func BenchmarkRecordEncode(b *testing.B) {
	rec := sampleRecord()
	b.Run("by hand", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			rec.encode()
		}
	})
	b.Run("encoding/json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			encodeWithReflection(rec)
		}
	})
}
