package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/paystatus/orderstatus/internal/events"
	"github.com/paystatus/orderstatus/internal/natstest"
	kssandbox "github.com/paystatus/orderstatus/internal/providers/kuaishou/sandbox"
)

// proc is one consumer process started by a test.
type proc struct {
	cmd    *exec.Cmd
	http   string
	stderr *syncBuffer
	done   chan struct{} // closed when it has exited; err says how
	err    error
}

func startConsumer(t *testing.T, bin, cfgPath, httpAddr string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(bin, "--config", cfgPath, "--log-format", "json"), http: httpAddr,
		stderr: &syncBuffer{}, done: make(chan struct{})}
	p.cmd.Stderr = p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("consumer %s log:\n%s", httpAddr, p.stderr.String())
		}
	})
	return p
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func (p *proc) status(path string) int {
	resp, err := http.Get("http://" + p.http + path)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// stop sends SIGTERM and fails the test unless the process exits 0 within grace.
func (p *proc) stop(t *testing.T, grace time.Duration) {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		if p.err != nil {
			t.Fatalf("consumer %s: exit after SIGTERM: %v", p.http, p.err)
		}
	case <-time.After(grace): // a hang guard
		t.Fatalf("consumer %s: no exit within %s after SIGTERM", p.http, grace)
	}
}

func writeConfig(t *testing.T, natsURL, httpAddr, sandboxURL string, replicas int) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "consumer.yaml")
	if err := os.WriteFile(path, []byte(fmt.Sprintf(`
nats:
  url: %s
  replicas: %d
consumer:
  ack_wait: 5s
http:
  listen: %s
providers:
  kuaishou:
    base_url: %s
    qps: 200
    apps:
      - app_id: %s
        app_secret: %s
`, natsURL, replicas, httpAddr, sandboxURL, kssandbox.DemoAppID, kssandbox.DemoAppSecret)), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func demoSandbox(t *testing.T, orders int, prefix string) *kssandbox.Sandbox {
	t.Helper()
	sb := kssandbox.New(0)
	kssandbox.LoadDemo(sb)
	for i := range orders {
		no := fmt.Sprintf("%s-%05d", prefix, i)
		sb.PutOrder(kssandbox.Order{AppID: kssandbox.DemoAppID, Kind: events.KindPayment, OrderNo: no,
			Steps: []kssandbox.Step{{Status: "SUCCESS"}}, Amount: int64(i + 1), KsOrderNo: "ks-" + no, PayChannel: "ALIPAY"})
	}
	if err := sb.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sb.Close() })
	return sb
}

// eventsByOrder reads ORDERS_STATUS: orders with an event, and how many event ids were stored twice.
func eventsByOrder(t *testing.T, js jetstream.JetStream) (orders map[string]bool, dups int) {
	t.Helper()
	ctx := context.Background()
	s, err := js.Stream(ctx, "ORDERS_STATUS")
	if err != nil {
		return nil, 0
	}
	info, err := s.Info(ctx)
	if err != nil {
		return nil, 0
	}
	ids, orders := map[string]bool{}, map[string]bool{}
	for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			continue
		}
		ev, err := events.DecodeEvent(m.Header.Get("Content-Type"), m.Data)
		if err != nil {
			t.Fatal(err)
		}
		if ids[ev.EventID] {
			dups++
		}
		ids[ev.EventID], orders[ev.OrderNo] = true, true
	}
	return orders, dups
}

// Three consumers started at once on a fresh R3 cluster race to provision, retry, and all
// become ready; none exits; every request gives its event once.
func TestReplicasStartTogetherOnANewCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a cluster and three consumer processes")
	}
	bin := consumerBinary(t)
	servers := natstest.RunCluster(t, 3)
	url := natstest.ClusterURL(servers)
	sb := demoSandbox(t, 60, "together")
	procs := make([]*proc, 3)
	cfgs, addrs := make([]string, 3), make([]string, 3)
	for i := range procs {
		addrs[i] = freeAddr(t)
		cfgs[i] = writeConfig(t, url, addrs[i], sb.URL(), 3)
	}
	for i := range procs { // at the same instant, as an orchestrator starts a Deployment
		procs[i] = startConsumer(t, bin, cfgs[i], addrs[i])
	}
	natstest.CheckFor(t, 60*time.Second, 100*time.Millisecond, func() error {
		for i, p := range procs {
			if p.exited() {
				t.Fatalf("replica %d exited: %v\n%s", i, p.err, p.stderr.String())
			}
			if c := p.status("/readyz"); c != http.StatusOK {
				return fmt.Errorf("replica %d /readyz %d", i, c)
			}
		}
		return nil
	})
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	for i := range 60 {
		body := fmt.Sprintf(`{"app_id":"%s","order_no":"together-%05d"}`, kssandbox.DemoAppID, i)
		if _, err := js.Publish(context.Background(), "orders.query.kuaishou.payment", []byte(body)); err != nil {
			t.Fatal(err)
		}
	}
	var orders map[string]bool
	var dups int
	natstest.CheckFor(t, 60*time.Second, 100*time.Millisecond, func() error {
		orders, dups = eventsByOrder(t, js)
		if len(orders) < 60 {
			return fmt.Errorf("events for %d of 60 orders", len(orders))
		}
		return nil
	})
	exited := 0
	for _, p := range procs {
		if p.exited() {
			exited++
		}
	}
	t.Logf("figures: cluster=3 R3 replicas_started_together=3 ready=3 exited=%d requests=60 events=%d duplicates=%d", exited, len(orders), dups)
	if dups != 0 || exited != 0 {
		t.Fatalf("%d duplicates, %d replicas exited", dups, exited)
	}
	for _, p := range procs {
		p.stop(t, 5*time.Second)
	}
}

// A consumer started while NATS is unreachable waits, alive and not ready, and goes on when
// NATS comes: it never exits on a race with its infrastructure.
func TestConsumerWaitsForNATS(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the consumer binary")
	}
	bin := consumerBinary(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	sb := demoSandbox(t, 1, "late")
	httpAddr := freeAddr(t)
	p := startConsumer(t, bin, writeConfig(t, fmt.Sprintf("nats://127.0.0.1:%d", port), httpAddr, sb.URL(), 1), httpAddr)
	natstest.CheckFor(t, 20*time.Second, 50*time.Millisecond, func() error {
		if c := p.status("/healthz"); c != http.StatusOK {
			return fmt.Errorf("/healthz %d", c)
		}
		return nil
	})
	time.Sleep(2 * time.Second) // NATS stays away for a while
	if p.exited() {
		t.Fatalf("exited while NATS was unreachable: %v\n%s", p.err, p.stderr.String())
	}
	if c := p.status("/readyz"); c != http.StatusServiceUnavailable {
		t.Fatalf("/readyz %d while NATS is unreachable, want 503", c)
	}
	// Stopped while it waits, a replica exits 0: it is a normal stop.
	other := freeAddr(t)
	q := startConsumer(t, bin, writeConfig(t, fmt.Sprintf("nats://127.0.0.1:%d", port), other, sb.URL(), 1), other)
	natstest.CheckFor(t, 20*time.Second, 50*time.Millisecond, func() error {
		if c := q.status("/healthz"); c != http.StatusOK {
			return fmt.Errorf("/healthz %d", c)
		}
		return nil
	})
	q.stop(t, 5*time.Second)
	ns := natstest.RunServerAt(t, port, t.TempDir())
	natstest.CheckFor(t, 30*time.Second, 50*time.Millisecond, func() error {
		if c := p.status("/readyz"); c != http.StatusOK {
			return fmt.Errorf("/readyz %d", c)
		}
		return nil
	})
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	body := fmt.Sprintf(`{"app_id":"%s","order_no":"late-00000"}`, kssandbox.DemoAppID)
	if _, err := js.Publish(context.Background(), "orders.query.kuaishou.payment", []byte(body)); err != nil {
		t.Fatal(err)
	}
	natstest.CheckFor(t, 20*time.Second, 50*time.Millisecond, func() error {
		if orders, _ := eventsByOrder(t, js); !orders["late-00000"] {
			return fmt.Errorf("no event yet")
		}
		return nil
	})
	p.stop(t, 5*time.Second)
}
