package telemetry

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// /readyz answers from the last background check: a thousand probes run no check (a check
// costs the NATS server several API calls), and the answer follows the check's next result.
func TestReadyzServesTheLastCheck(t *testing.T) {
	var calls atomic.Int32
	var failing atomic.Bool
	r := NewReadiness(func(context.Context) error {
		calls.Add(1)
		if failing.Load() {
			return errors.New("stream ORDERS_QUERY: not found")
		}
		return nil
	}, time.Hour)
	srv := httptest.NewServer(Probes(r.Err, prometheus.NewRegistry()))
	defer srv.Close()
	get := func() (int, string) {
		resp, err := http.Get(srv.URL + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get(); code != http.StatusServiceUnavailable || !strings.Contains(body, "not checked yet") {
		t.Fatalf("before the first check: %d %s", code, body)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() { defer close(done); r.Run(ctx) }()
	for calls.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	for range 1000 {
		if code, body := get(); code != http.StatusOK {
			t.Fatalf("/readyz %d %s", code, body)
		}
	}
	if n := calls.Load(); n != 1 {
		t.Fatalf("%d checks for 1000 probes, want the one background check", n)
	}
	failing.Store(true)
	err := r.check(ctx) // the next background check, made by hand
	r.last.Store(&err)
	if code, body := get(); code != http.StatusServiceUnavailable || !strings.Contains(body, "ORDERS_QUERY") {
		t.Fatalf("after a failed check: %d %s", code, body)
	}
	cancel()
	<-done
}
