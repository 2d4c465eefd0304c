// Package eventstest makes random status events for tests that compare an encoder with
// encoding/json: text made of the pieces JSON escapes or replaces, and details of every kind a
// provider's answer decodes to, nested.
package eventstest

import (
	"math"
	"math/rand/v2"
	"strings"

	"github.com/paystatus/orderstatus/internal/events"
)

// textPieces are what Text strings together: every ASCII byte JSON escapes, HTML's three,
// invalid and truncated UTF-8, the separators JSON escapes, and plain text.
var textPieces = []string{
	"", "a", "order-1", "订单", "😀", "é", `"`, `\`, "/", "<", ">", "&", "\x00", "\x01", "\x1f", "\x7f",
	"\b", "\f", "\n", "\r", "\t", "\u2028", "\u2029", "\ufffd", "\xff", "\xc3", "\xe2\x80", "\xed\xa0\x80",
	"\xf4\x90\x80\x80", " ", "'", "\\u0041",
}

// Text is a random string of up to 8 pieces; sometimes a random byte string.
func Text(r *rand.Rand) string {
	var b strings.Builder
	if r.IntN(8) == 0 {
		for range r.IntN(12) {
			b.WriteByte(byte(r.IntN(256)))
		}
		return b.String()
	}
	for range r.IntN(9) {
		b.WriteString(textPieces[r.IntN(len(textPieces))])
	}
	return b.String()
}

// floats are the float64 values whose JSON text is hardest to get right.
var floats = []float64{0, math.Copysign(0, -1), 0.25, -1.5, 3, 1e20, 1e21, 1.5e21, 1e-6, 9.99e-7, 1e-7, 123456789.125,
	math.MaxFloat64, math.SmallestNonzeroFloat64, -2.5e-300, 0.1}

// ints are int64 values at their edges.
var ints = []int64{0, 1, -1, 1200, 1<<53 + 1, math.MaxInt64, math.MinInt64}

// Value is a random details value, nesting up to depth more levels.
func Value(r *rand.Rand, depth int) any {
	n := 6
	if depth > 0 {
		n = 10
	}
	switch r.IntN(n) {
	case 0:
		return nil
	case 1:
		return r.IntN(2) == 0
	case 2:
		return Text(r)
	case 3:
		if r.IntN(2) == 0 {
			return ints[r.IntN(len(ints))]
		}
		return r.Int64() >> r.IntN(64)
	case 4:
		if r.IntN(2) == 0 {
			return floats[r.IntN(len(floats))]
		}
		return r.NormFloat64() * math.Pow(10, float64(r.IntN(60)-30))
	case 5:
		return ints[r.IntN(len(ints))]
	case 6, 7:
		return Details(r, depth-1)
	default:
		if r.IntN(6) == 0 {
			return []any(nil)
		}
		l := make([]any, r.IntN(4))
		for i := range l {
			l[i] = Value(r, depth-1)
		}
		return l
	}
}

// Details is a random details map (sometimes nil or empty), its values nesting up to depth
// more levels.
func Details(r *rand.Rand, depth int) map[string]any {
	return randomMap(r, func() any { return Value(r, depth) })
}

// Attributes is a random attributes map (sometimes nil or empty).
func Attributes(r *rand.Rand) map[string]string {
	return randomMap(r, func() string { return Text(r) })
}

// randomMap is nil, empty, or up to 19 random keys with values made by value.
func randomMap[V any](r *rand.Rand, value func() V) map[string]V {
	switch r.IntN(8) {
	case 0:
		return nil
	case 1:
		return map[string]V{}
	}
	m := map[string]V{}
	for range r.IntN(20) {
		m[Text(r)] = value()
	}
	return m
}

// Event is a random status event: every text field random, paid_at sometimes empty.
func Event(r *rand.Rand) events.StatusEvent {
	ev := events.StatusEvent{
		EventID: Text(r), RequestID: Text(r), Provider: Text(r), Kind: Text(r), AppID: Text(r), OrderNo: Text(r),
		ProviderOrderNo: Text(r), ProviderRefNo: Text(r), Status: events.Status(Text(r)),
		PreviousStatus: events.Status(Text(r)), ProviderStatus: Text(r), Terminal: r.IntN(2) == 0,
		Amount: ints[r.IntN(len(ints))], Currency: Text(r), Channel: events.Channel(Text(r)),
		Details: Details(r, 3), ObservedAt: Text(r), Attributes: Attributes(r), Source: Text(r),
	}
	if r.IntN(3) > 0 {
		ev.PaidAt = Text(r)
	}
	return ev
}
