package events_test

import (
	"bytes"
	"encoding/json"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/paystatus/orderstatus/internal/events"
	"github.com/paystatus/orderstatus/internal/events/eventstest"
)

// The hand-written JSON of an event is encoding/json's, byte for byte, over random events whose
// text holds everything JSON escapes or replaces and whose details hold every kind of value.
func TestEventJSONIsEncodingJSONs(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 5000 {
		ev := eventstest.Event(r)
		want, err := json.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		got, ok := ev.AppendJSON(nil)
		if !ok {
			t.Fatalf("event %d: AppendJSON refused %+v", i, ev)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("event %d:\n got %s\nwant %s", i, got, want)
		}
		if got, err := events.JSON.Marshal(&ev); err != nil || !bytes.Equal(got, want) {
			t.Fatalf("event %d: Marshal gave %s, %v", i, got, err)
		}
	}
}

// Details AppendJSON does not write (values no provider answer decodes to, NaN, nesting past
// its bound, a cycle) are left to encoding/json: Marshal's bytes or error are its own.
func TestEventJSONLeavesTheRestToEncodingJSON(t *testing.T) {
	deep := map[string]any{}
	for range 100 {
		deep = map[string]any{"a": deep}
	}
	deepList := []any{}
	for range 100 {
		deepList = []any{deepList}
	}
	cyclic := map[string]any{}
	cyclic["self"] = cyclic
	for _, tc := range []struct {
		name    string
		details map[string]any
	}{
		{"json.Number", map[string]any{"n": json.Number("12.50")}},
		{"int", map[string]any{"n": 7}},
		{"typed slice", map[string]any{"l": []string{"<a>"}}},
		{"typed map", map[string]any{"m": map[string]string{"k": "&"}}},
		{"nested typed value", map[string]any{"m": map[string]any{"x": []any{uint8(3)}}}},
		{"deep maps", deep},
		{"deep lists", map[string]any{"l": deepList}},
		{"NaN", map[string]any{"f": math.NaN()}},
		{"infinity", map[string]any{"f": math.Inf(-1)}},
		{"cycle", cyclic},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ev := events.StatusEvent{EventID: "e", Details: tc.details}
			if _, ok := ev.AppendJSON(nil); ok {
				t.Fatal("AppendJSON wrote it")
			}
			want, wantErr := json.Marshal(ev)
			got, err := events.JSON.Marshal(ev)
			if !bytes.Equal(got, want) || (err == nil) != (wantErr == nil) {
				t.Fatalf("got %s, %v; want %s, %v", got, err, want, wantErr)
			}
		})
	}
}

// The bytes Marshal returns are the caller's: the scratch space it encodes into is not theirs.
func TestMarshalBytesAreTheCallers(t *testing.T) {
	for _, enc := range []events.Encoding{events.JSON, events.Msgpack} {
		for range 3 { // the scratch space grown and kept
			if _, err := enc.Marshal(&events.StatusEvent{EventID: strings.Repeat("x", 600)}); err != nil {
				t.Fatal(err)
			}
		}
		first, err := enc.Marshal(&events.StatusEvent{EventID: "first", Details: map[string]any{"k": "v"}})
		if err != nil {
			t.Fatal(err)
		}
		kept := bytes.Clone(first)
		for range 10 {
			if _, err := enc.Marshal(&events.StatusEvent{EventID: strings.Repeat("x", 40), Details: map[string]any{}}); err != nil {
				t.Fatal(err)
			}
		}
		if !bytes.Equal(first, kept) {
			t.Fatalf("%s: the first event's bytes changed under it: %q", enc, first)
		}
	}
}
