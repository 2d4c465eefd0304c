package handlers_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/paystatus/orderstatus/internal/app"
	"github.com/paystatus/orderstatus/internal/config"
	"github.com/paystatus/orderstatus/internal/natsinfra"
	"github.com/paystatus/orderstatus/internal/natstest"
	"github.com/paystatus/orderstatus/internal/providers/registry"
	"github.com/paystatus/orderstatus/internal/telemetry"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// sample reads one sample's value from a Prometheus text page (-1: absent).
func sample(page, name string) float64 {
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` ([0-9.e+-]+)$`).FindStringSubmatch(page)
	if m == nil {
		return -1
	}
	v, _ := strconv.ParseFloat(m[1], 64)
	return v
}

func TestProbesAndMetricsMove(t *testing.T) {
	srv := restartableServer(t)
	e := newEnvOn(t, srv, nil)
	reg := prometheus.NewRegistry()
	e.metrics = telemetry.NewMetrics(reg)
	e.startReplica(nil)
	c, err := e.js.Consumer(context.Background(), natsinfra.QueryStream, e.cfg.Consumer.Name)
	if err != nil {
		t.Fatal(err)
	}
	reg.MustRegister(telemetry.NewConsumerCollector(c))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addr, _, err := telemetry.StartHTTP(ctx, "127.0.0.1:0", telemetry.Probes(func(ctx context.Context) error { return natsinfra.Ready(ctx, e.nc, e.js, e.cfg.Consumer.Name) }, reg))
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + addr.String()

	if code, _ := get(t, base+"/healthz"); code != 200 {
		t.Fatalf("/healthz %d", code)
	}
	if code, body := get(t, base+"/readyz"); code != 200 {
		t.Fatalf("/readyz %d %s", code, body)
	}
	_, before := get(t, base+"/metrics")
	if v := sample(before, `orders_requests_total{kind="payment",outcome="event",provider="kuaishou"}`); v > 0 {
		t.Fatalf("events before any request: %v", v)
	}

	req := []byte(`{"app_id":"` + demoApp + `","order_no":"` + demoOrder + `"}`)
	e.publish("orders.query.kuaishou.payment", req, nil)
	e.waitEvents(1)
	e.publish("orders.query.kuaishou.payment", req, nil)                         // unchanged
	e.publish("orders.query.kuaishou.payment", []byte(`{"app_id":"nope"}`), nil) // dead letter
	e.waitIdle()

	var page string
	natstest.CheckFor(t, 30*time.Second, 50*time.Millisecond, func() error {
		_, page = get(t, base+"/metrics")
		for name, want := range map[string]float64{
			`orders_requests_total{kind="payment",outcome="event",provider="kuaishou"}`:               1,
			`orders_requests_total{kind="payment",outcome="unchanged",provider="kuaishou"}`:           1,
			`orders_requests_total{kind="payment",outcome="dead_letter",provider="kuaishou"}`:         1,
			`orders_dead_letters_total{kind="payment",provider="kuaishou",reason="invalid_field"}`:    1,
			`orders_provider_calls_total{endpoint="query_order",outcome="ok",provider="kuaishou"}`:    2,
			`orders_provider_call_duration_seconds_count{endpoint="query_order",provider="kuaishou"}`: 2,
			`orders_limiter_wait_seconds_count{endpoint="query_order",provider="kuaishou"}`:           2,
			`orders_requests_in_flight`:   0,
			`orders_consumer_pending`:     0,
			`orders_consumer_ack_pending`: 0,
		} {
			if got := sample(page, name); got != want {
				return fmt.Errorf("%s = %v, want %v", name, got, want)
			}
		}
		return nil
	})
	// A copy JetStream dropped as a duplicate counts too: the second request may read the
	// first's pending mark before its clear lands, and publish the event again.
	if v := sample(page, `orders_events_published_total{kind="payment",provider="kuaishou",status="pending"}`); v < 1 || len(e.events()) != 1 {
		t.Fatalf("orders_events_published_total %v with %d events stored, want at least 1 and one event", v, len(e.events()))
	}
	if sample(page, "go_goroutines") <= 0 || sample(page, "process_resident_memory_bytes") <= 0 {
		t.Fatal("no Go or process metrics")
	}

	srv.stop()
	natstest.CheckFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		if code, _ := get(t, base+"/readyz"); code != http.StatusServiceUnavailable {
			return fmt.Errorf("/readyz %d with NATS down", code)
		}
		return nil
	})
	if code, _ := get(t, base+"/healthz"); code != 200 {
		t.Fatalf("/healthz %d with NATS down: the process is alive", code)
	}
}

// /readyz is 200 only while this replica takes requests: streams and consumer existing (made
// by another replica) are not enough. A replica still provisioning or binding is not ready.
func TestReadyOnlyWhileConsuming(t *testing.T) {
	e := newEnv(t, func(c *config.Config) { c.NATS.Provision = false })
	addr := freeAddr(t)
	e.cfg.HTTP.Listen = addr
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	provs, err := registry.Build(e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	done := make(chan error, 1)
	go func() { done <- app.Serve(ctx, e.cfg, e.nc, provs, e.log, func() { close(started) }) }()
	readyz := func() int {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err != nil {
			return 0 // not listening yet
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	natstest.CheckFor(t, 10*time.Second, 5*time.Millisecond, func() error {
		code := readyz()
		select {
		case <-started:
			return nil
		case err := <-done:
			t.Fatalf("Serve returned: %v", err)
		default:
		}
		if code == 200 {
			t.Fatal("/readyz 200 before this replica consumes")
		}
		if code == 503 { // not ready while it waits for an operator's assets: make them now
			if _, err := natsinfra.Provision(ctx, e.js, e.cfg, e.log); err != nil {
				t.Fatal(err)
			}
		}
		return errors.New("not started")
	})
	natstest.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if code := readyz(); code != 200 {
			return fmt.Errorf("/readyz %d while consuming", code)
		}
		return nil
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
