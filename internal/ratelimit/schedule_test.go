package ratelimit

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/paystatus/orderstatus/internal/natstest"
)

// recorded returns a limiter on kv whose stored slots are recorded (natstest.SlotKV), and the
// recorder.
func recorded(kv jetstream.KeyValue, opts ...Option) (*Limiter, *natstest.SlotKV) {
	rec := &natstest.SlotKV{KeyValue: kv}
	l := New(rec, opts...)
	rec.Now = func() time.Time { return l.ServerNow(context.Background()) }
	return l, rec
}

// allSlots returns the slots the recorders saw stored, in server time, sorted: the order of
// the key's revisions, as every write moves the key's last slot on.
func allSlots(recs ...*natstest.SlotKV) []natstest.SlotWrite {
	var all []natstest.SlotWrite
	for _, r := range recs {
		all = append(all, r.Slots()...)
	}
	slices.SortFunc(all, func(a, b natstest.SlotWrite) int { return a.Slot.Compare(b.Slot) })
	return all
}

// checkSchedule checks a key's reservations by demand of m slots each (m = min(demand, qps),
// no reservation ahead), stored in server time (sorted, as allSlots returns them), after a
// stored last slot prev (zero: none). Each stored value is the reservation's last slot; its
// first is (m-1) spacings before. The first slot of each reservation is
//   - at least a spacing after the previous reservation's last: the limit, whichever replica
//     reserved it;
//   - at most as late as needed: right after the previous one, or, when the key's schedule
//     had run dry (no caller asked in time, as on a loaded machine), the write's send time plus
//     the limiter's lead, which is at most the longest write it had seen (plus LateTolerance
//     for the recorder's own timing). A limiter that left gaps while callers waited would
//     starve them.
//
// It returns how many reservations found the schedule dry.
func checkSchedule(t *testing.T, slots []natstest.SlotWrite, prev time.Time, spacing time.Duration, m int) (dry int) {
	t.Helper()
	for i, w := range slots {
		first := w.Slot.Add(-time.Duration(m-1) * spacing)
		if prev.IsZero() {
			prev = first.Add(-spacing)
			if i > 0 {
				t.Fatalf("no previous slot for reservation %d", i)
			}
		}
		next := prev.Add(spacing)
		if first.Before(next) {
			t.Fatalf("reservation %d starts %s after the last slot before it, spacing %s", i, first.Sub(prev), spacing)
		}
		if first.After(next) {
			dry++
			if lead := first.Sub(w.Sent); lead > w.Longest+LateTolerance {
				t.Fatalf("reservation %d starts %s after the last slot before it and %s after its write was sent; the longest write by then took %s: a gap nobody needed",
					i, first.Sub(prev), lead, w.Longest)
			}
		}
		prev = w.Slot
	}
	return dry
}

// starveDeadline bounds how long a test waits for the calls it needs: a deadline for a limiter
// that starves its callers, not a speed target (at the limit they take a few seconds).
const starveDeadline = 30 * time.Second
