package events_test

import (
	"bytes"
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/paystatus/orderstatus/internal/events"
	"github.com/paystatus/orderstatus/internal/events/eventstest"
)

// The hand-written msgpack of an event is the library's, byte for byte, where map order
// allows comparing bytes (every map of one entry at most), and the same values everywhere.
func TestEventMsgpackIsTheLibrarys(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for i := range 5000 {
		ev := eventstest.Event(r)
		if i%2 == 0 {
			ev.Details, _ = oneEntry(ev.Details).(map[string]any)
			for k := range ev.Attributes {
				ev.Attributes = map[string]string{k: ev.Attributes[k]}
				break
			}
		}
		want, err := msgpack.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		got, err := events.Msgpack.Marshal(&ev)
		if err != nil {
			t.Fatal(err)
		}
		if i%2 == 0 && !bytes.Equal(got, want) {
			t.Fatalf("event %d:\n got % x\nwant % x", i, got, want)
		}
		var gotV, wantV any
		if err := msgpack.Unmarshal(got, &gotV); err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
		if err := msgpack.Unmarshal(want, &wantV); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(gotV, wantV) {
			t.Fatalf("event %d:\n got %#v\nwant %#v", i, gotV, wantV)
		}
	}
}

// oneEntry is v with each map inside cut to one entry at most.
func oneEntry(v any) any {
	switch t := v.(type) {
	case map[string]any:
		for k, e := range t {
			return map[string]any{k: oneEntry(e)}
		}
	case []any:
		for i, e := range t {
			t[i] = oneEntry(e)
		}
	}
	return v
}
