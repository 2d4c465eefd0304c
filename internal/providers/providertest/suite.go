// Package providertest is the conformance suite every provider package runs against its own
// sandbox: signing vectors, every status of the contract's table, amounts to the fen, every
// fault mode ending in the right error class, and malformed and slow answers.
package providertest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/paystatus/orderstatus/internal/events"
	"github.com/paystatus/orderstatus/internal/providers"
	"github.com/paystatus/orderstatus/internal/providers/sandboxkit"
)

// SignVector is a known-good signature.
type SignVector struct {
	Fields map[string]string
	Secret string
	Want   string
}

// Outcome is how a query ends: with a result (OK), or with an error of Class.
type Outcome struct {
	OK    bool
	Class providers.Class
}

// Fixture is one provider under test, set up against its sandbox with one app.
type Fixture struct {
	Provider providers.Provider
	AppID    string
	// Sign is the provider's request signature; SignVectors are known-good ones.
	Sign        func(fields map[string]string, secret string) string
	SignVectors []SignVector
	// Statuses are, per kind, every provider status value the contract lists, with the
	// normalized status it must give.
	Statuses map[string]map[string]events.Status
	// Put creates an order of kind with a provider status and an amount in fen, and returns
	// the query that finds it.
	Put func(kind, providerStatus string, amount int64) providers.Query
	// SetFault makes the app's next n answers show fault.
	SetFault func(fault sandboxkit.Fault, n int)
	// Faults says how a query ends under each fault mode that providers show each in their
	// own way (ExpiredToken, BadSignature, NotFound); the others end as contractFaults says.
	Faults map[sandboxkit.Fault]Outcome
	// PutAsString, when not nil, is Put with the record answered as a JSON string.
	PutAsString func(kind, providerStatus string, amount int64) providers.Query
}

// contractFaults are how a query ends, at every provider, under the faults whose meaning the
// contract fixes: a failed or stalled call, an unreadable answer and an answer about another
// order than the one asked for are retried (never taken for the asked order's status), and the
// provider's rate-limit refusal, or an HTTP 429, is a rate limit (it pauses the app).
var contractFaults = map[sandboxkit.Fault]Outcome{
	sandboxkit.HTTP500:    {Class: providers.Retryable},
	sandboxkit.HTTP429:    {Class: providers.RateLimited},
	sandboxkit.Stall:      {Class: providers.Retryable},
	sandboxkit.Malformed:  {Class: providers.Retryable},
	sandboxkit.RateLimit:  {Class: providers.RateLimited},
	sandboxkit.WrongOrder: {Class: providers.Retryable},
}

// Harness starts a provider and its sandbox for one test; timeout is the client's per-call
// time limit (short, so that stalled answers end quickly).
type Harness func(t *testing.T, timeout time.Duration) *Fixture

// Run runs the suite.
func Run(t *testing.T, h Harness) {
	t.Run("Signing", func(t *testing.T) {
		f := h(t, 2*time.Second)
		if len(f.SignVectors) == 0 {
			t.Fatal("no signing vectors")
		}
		for _, v := range f.SignVectors {
			if got := f.Sign(v.Fields, v.Secret); got != v.Want {
				t.Errorf("sign %v = %s, want %s", v.Fields, got, v.Want)
			}
		}
	})

	t.Run("EveryStatus", func(t *testing.T) {
		f := h(t, 2*time.Second)
		for kind, table := range f.Statuses {
			for raw, want := range table {
				res := mustQuery(t, f, f.Put(kind, raw, 1200))
				if res.ProviderStatus != raw || res.Status != want || res.Status.Terminal() != want.Terminal() {
					t.Errorf("%s %s: got %s/%s", kind, raw, res.ProviderStatus, res.Status)
				}
				if res.OrderKey == "" || res.ObservedAt.IsZero() || res.ObservedAt.Location() != time.UTC {
					t.Errorf("%s %s: order key %q, observed_at %v", kind, raw, res.OrderKey, res.ObservedAt)
				}
			}
		}
	})

	t.Run("UnknownStatusIsUnknown", func(t *testing.T) {
		f := h(t, 2*time.Second)
		for kind := range f.Statuses {
			res := mustQuery(t, f, f.Put(kind, "SOMETHING_NEW", 1))
			if res.Status != events.StatusUnknown || res.Status.Terminal() {
				t.Errorf("%s: %s", kind, res.Status)
			}
		}
	})

	t.Run("AmountsToTheFen", func(t *testing.T) {
		f := h(t, 2*time.Second)
		for kind, table := range f.Statuses {
			success := succeeded(table)
			for _, amount := range []int64{1, 99, 1200, 123456789, 9007199254740993} { // the last is past float64's exact integers
				res := mustQuery(t, f, f.Put(kind, success, amount))
				if res.Amount != amount {
					t.Errorf("%s: amount %d, want %d", kind, res.Amount, amount)
				}
			}
		}
	})

	t.Run("NegativeAmountIsRefused", func(t *testing.T) {
		f := h(t, 2*time.Second)
		for kind, table := range f.Statuses {
			_, err := f.Provider.Query(context.Background(), f.Put(kind, succeeded(table), -1200))
			if err == nil || providers.Classify(err) != providers.Retryable {
				t.Errorf("%s: an amount of -1200 fen: %v", kind, err)
			}
		}
	})

	t.Run("RecordAsString", func(t *testing.T) {
		f := h(t, 2*time.Second)
		if f.PutAsString == nil {
			t.Skip("this provider's records are never strings")
		}
		for kind, table := range f.Statuses {
			success := succeeded(table)
			res := mustQuery(t, f, f.PutAsString(kind, success, 4321))
			if res.Status != events.StatusSucceeded || res.Amount != 4321 {
				t.Errorf("%s: %+v", kind, res)
			}
		}
	})

	t.Run("Faults", func(t *testing.T) {
		f := h(t, 300*time.Millisecond)
		for _, fault := range sandboxkit.Faults {
			want, fixed := contractFaults[fault]
			declared, ok := f.Faults[fault]
			switch {
			case fixed && ok:
				t.Errorf("fault %s: the contract fixes its outcome; the fixture declares it again", fault)
			case ok:
				want = declared
			case !fixed:
				t.Errorf("no outcome declared for fault %s", fault)
				continue
			}
			kind := events.KindPayment // every provider has it; the fault is the answer's, not the kind's
			if _, ok := f.Statuses[kind]; !ok {
				t.Fatalf("no %s kind", kind)
			}
			q := f.Put(kind, succeeded(f.Statuses[kind]), 100)
			f.SetFault(fault, 1)
			res, err := f.Provider.Query(context.Background(), q)
			switch {
			case want.OK && err != nil:
				t.Errorf("%s: want a result, got %v", fault, err)
			case want.OK && res.Status != events.StatusSucceeded:
				t.Errorf("%s: result %+v", fault, res)
			case !want.OK:
				var pe *providers.Error
				if !errors.As(err, &pe) || pe.Class != want.Class {
					t.Errorf("%s: want class %s, got %v", fault, want.Class, err)
				} else if pe.Class == providers.Permanent && pe.Code == "" {
					t.Errorf("%s: a permanent refusal without the provider's code: %v", fault, err)
				}
			}
			// The fault was for one answer only: the next query succeeds.
			if res := mustQuery(t, f, q); res.Status != events.StatusSucceeded {
				t.Errorf("after %s: %+v", fault, res)
			}
		}
	})

	t.Run("CancelledContext", func(t *testing.T) {
		f := h(t, 2*time.Second)
		var kind string
		var table map[string]events.Status
		for kind, table = range f.Statuses {
			break
		}
		q := f.Put(kind, succeeded(table), 1)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := f.Provider.Query(ctx, q); err == nil || providers.Classify(err) != providers.Retryable {
			t.Fatalf("cancelled query: %v", err)
		}
	})

	t.Run("UnknownApp", func(t *testing.T) {
		f := h(t, 2*time.Second)
		if f.Provider.HasApp("no-such-app") || !f.Provider.HasApp(f.AppID) {
			t.Fatal("HasApp")
		}
	})
}

func mustQuery(t *testing.T, f *Fixture, q providers.Query) providers.Result {
	t.Helper()
	res, err := f.Provider.Query(context.Background(), q)
	if err != nil {
		t.Fatalf("query %+v: %v", q, err)
	}
	return res
}

func succeeded(table map[string]events.Status) string {
	for raw, s := range table {
		if s == events.StatusSucceeded {
			return raw
		}
	}
	panic("providertest: a status table without a succeeded value")
}
