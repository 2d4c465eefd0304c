package providers

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/paystatus/orderstatus/internal/config"
)

func TestCodesCheck(t *testing.T) {
	codes, err := NewCodes("p", 1, map[int64]Class{7: Permanent, 8: RateLimited}, map[string]string{"8": "token_invalid", "9": "permanent"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		code      string
		ok        bool
		class     Class
		malformed bool
	}{
		{code: "1", ok: true},
		{code: "7", class: Permanent},
		{code: "8", class: TokenInvalid}, // configured over the default
		{code: "9", class: Permanent},    // configured, no default
		{code: "10", class: Retryable},   // nobody classified it
		{code: "1.0", class: Retryable, malformed: true},
		{code: "", class: Retryable, malformed: true},
		{code: "99999999999999999999", class: Retryable, malformed: true},
	} {
		err := codes.Check(json.Number(tc.code), "text")
		if tc.ok {
			if err != nil {
				t.Errorf("%q: %v", tc.code, err)
			}
			continue
		}
		var pe *Error
		if !errors.As(err, &pe) || pe.Class != tc.class || pe.Provider != "p" || strings.Contains(pe.Message, "malformed") != tc.malformed {
			t.Errorf("%q: %v", tc.code, err)
			continue
		}
		if !tc.malformed && (pe.Code != tc.code || pe.Message != "text") {
			t.Errorf("%q: code %q message %q", tc.code, pe.Code, pe.Message)
		}
	}
}

func TestNewCodesNamesTheBadKey(t *testing.T) {
	for configured, key := range map[string]string{"x=permanent": "providers.p.result_codes.x", "1=fatal": "providers.p.result_codes.1"} {
		code, class, _ := strings.Cut(configured, "=")
		_, err := NewCodes("p", 0, nil, map[string]string{code: class})
		var ce *config.Error
		if !errors.As(err, &ce) || ce.Key != key {
			t.Errorf("%s: %v", configured, err)
		}
	}
}

func TestMalformed(t *testing.T) {
	err := Malformed("p", "%s is %d", "x", 1)
	var pe *Error
	if !errors.As(err, &pe) || pe.Class != Retryable || err.Error() != "p: retryable: malformed answer: x is 1" {
		t.Fatalf("%v", err)
	}
}

// A Retry-After is read in both of its forms, bounded, and a 429 without one still pauses a
// second; a 503's advice is its own, without making it a rate limit.
func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		status int
		header string
		want   time.Duration
	}{
		{429, "", time.Second},
		{429, "3", 3 * time.Second},
		{429, "0", time.Second},
		{429, now.Add(7 * time.Second).Format(http.TimeFormat), 7 * time.Second},
		{429, now.Add(-time.Minute).Format(http.TimeFormat), time.Second},
		{429, "86400", MaxRetryAfter},
		{429, "99999999999999999999", time.Second},
		{429, "-5", time.Second},
		{429, "1.5", time.Second},
		{429, "soon", time.Second},
		{503, "4", 4 * time.Second},
		{503, "", 0},
	} {
		err := HTTPStatusError("p", tc.status, tc.header, now)
		if got := RetryAfter(err); got != tc.want {
			t.Errorf("HTTP %d, Retry-After %q: %s, want %s", tc.status, tc.header, got, tc.want)
		}
		if tc.status == 503 && Classify(err) != Retryable {
			t.Errorf("HTTP 503 is %s", Classify(err))
		}
	}
}
