package handlers

import (
	"errors"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/paystatus/orderstatus/internal/events"
	"github.com/paystatus/orderstatus/internal/providers"
)

// The retry policy as a table: error class × delivery count × process state → outcome.
func TestDecide(t *testing.T) {
	boom := errors.New("boom")
	rej := &rejection{reason: events.ReasonProviderRejected, text: "no such order"}
	base := failure{err: boom, class: providers.Retryable, next: 400 * time.Millisecond, delivered: 1, maxDeliver: 4}
	with := func(f func(*failure)) failure { c := base; f(&c); return c }
	for _, tc := range []struct {
		name     string
		f        failure
		verdict  verdict
		reason   string
		delay    time.Duration // exact, or 0 to skip
		slowdown bool
	}{
		{"retryable, retries left", base, retryAfter, "", 400 * time.Millisecond, false},
		{"provider asks for longer", with(func(f *failure) { f.atLeast = 3 * time.Second }), retryAfter, "", 3 * time.Second, false},
		{"rate limited: pause the app", with(func(f *failure) { f.class = providers.RateLimited }), retryAfter, "", 400 * time.Millisecond, true},
		{"retries spent", with(func(f *failure) { f.next = backoff.Stop }), redeliver, "", 0, false},
		{"retries spent, rate limited", with(func(f *failure) { f.next = backoff.Stop; f.class = providers.RateLimited }), redeliver, "", 0, true},
		{"retries spent, last delivery", with(func(f *failure) { f.next = backoff.Stop; f.delivered = 4 }), deadLetter, events.ReasonRetriesExhausted, 0, false},
		{"past the last delivery", with(func(f *failure) { f.next = backoff.Stop; f.delivered = 9 }), deadLetter, events.ReasonRetriesExhausted, 0, false},
		{"token invalid: replace once", with(func(f *failure) { f.class = providers.TokenInvalid }), requeue, "", 0, false},
		{"token invalid again", with(func(f *failure) { f.class = providers.TokenInvalid; f.refreshed = true }), retryAfter, "", 400 * time.Millisecond, false},
		{"rejected", with(func(f *failure) { f.rejected = rej }), deadLetter, events.ReasonProviderRejected, 0, false},
		{"rejected while stopping", with(func(f *failure) { f.rejected = rej; f.stopping = true }), deadLetter, events.ReasonProviderRejected, 0, false},
		{"stopping", with(func(f *failure) { f.stopping = true }), handBack, "", 0, false},
		{"stopping on the last delivery", with(func(f *failure) { f.stopping = true; f.delivered = 4 }), handBack, "", 0, false},
		{"recording failed: never call again in-process", with(func(f *failure) { f.recording = true }), redeliver, "", 0, false},
		{"recording failed on the last delivery", with(func(f *failure) { f.recording = true; f.delivered = 4 }), deadLetter, events.ReasonRetriesExhausted, 0, false},
		{"recording failed with a token error", with(func(f *failure) { f.recording = true; f.class = providers.TokenInvalid }), redeliver, "", 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := decide(tc.f)
			if o.verdict != tc.verdict || o.reason != tc.reason || o.slowdown != tc.slowdown {
				t.Fatalf("got %s %q slowdown=%v, want %s %q slowdown=%v", o.verdict, o.reason, o.slowdown, tc.verdict, tc.reason, tc.slowdown)
			}
			if tc.delay != 0 && o.delay != tc.delay {
				t.Fatalf("delay %s, want %s", o.delay, tc.delay)
			}
			if o.verdict == redeliver && (o.delay < 500*time.Millisecond || o.delay > time.Second) {
				t.Fatalf("first redelivery in %s, want 0.5-1 s", o.delay)
			}
		})
	}
}

func TestRedeliveryDelayGrowsAndIsBounded(t *testing.T) {
	for delivered, want := range map[uint64][2]time.Duration{
		0: {500 * time.Millisecond, time.Second}, 1: {500 * time.Millisecond, time.Second},
		3: {2 * time.Second, 4 * time.Second}, 10: {150 * time.Second, 5 * time.Minute}, 1 << 62: {150 * time.Second, 5 * time.Minute},
	} {
		for range 50 {
			if d := redeliveryDelay(delivered, 0); d < want[0] || d > want[1] {
				t.Fatalf("delivery %d: %s, want %s-%s", delivered, d, want[0], want[1])
			}
		}
	}
	if d := redeliveryDelay(1, time.Minute); d != time.Minute {
		t.Fatalf("Retry-After of a minute gave %s", d)
	}
}
