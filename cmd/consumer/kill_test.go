package main

import (
	"context"
	"fmt"
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

// a. The consumer process killed with SIGKILL in the middle of a run and started again:
// every request yields its event, and no event id reaches the status stream twice. The second
// process then stops on SIGTERM with exit code 0.
func TestKillNineMidRun(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the consumer binary")
	}
	const requests = 300
	bin := consumerBinary(t)
	ns := natstest.RunServer(t)
	sb := kssandbox.New(0)
	kssandbox.LoadDemo(sb)
	for i := range requests {
		no := fmt.Sprintf("kill9-%05d", i)
		sb.PutOrder(kssandbox.Order{AppID: kssandbox.DemoAppID, Kind: events.KindPayment, OrderNo: no,
			Steps: []kssandbox.Step{{Status: "SUCCESS"}}, Amount: int64(i + 1), KsOrderNo: "ks-" + no, PayChannel: "ALIPAY"})
	}
	if err := sb.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	defer sb.Close()
	cfgPath := filepath.Join(t.TempDir(), "consumer.yaml")
	os.WriteFile(cfgPath, []byte(fmt.Sprintf(`
nats:
  url: %s
consumer:
  ack_wait: 2s
http:
  listen: ""
providers:
  kuaishou:
    base_url: %s
    qps: 100
    apps:
      - app_id: %s
        app_secret: %s
`, ns.ClientURL(), sb.URL(), kssandbox.DemoAppID, kssandbox.DemoAppSecret)), 0o600)

	start := func() *exec.Cmd {
		cmd := exec.Command(bin, "--config", cfgPath, "--log-format", "json")
		if testing.Verbose() {
			cmd.Stderr = os.Stderr
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd
	}
	first := start()
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx := context.Background()
	natstest.CheckFor(t, 20*time.Second, 20*time.Millisecond, func() error {
		_, err := js.Consumer(ctx, "ORDERS_QUERY", "orders-query")
		return err
	})
	for i := range requests {
		body := fmt.Sprintf(`{"app_id":"%s","order_no":"kill9-%05d"}`, kssandbox.DemoAppID, i)
		if _, err := js.Publish(ctx, "orders.query.kuaishou.payment", []byte(body)); err != nil {
			t.Fatal(err)
		}
	}
	status, err := js.Stream(ctx, "ORDERS_STATUS")
	if err != nil {
		t.Fatal(err)
	}
	stored := func() uint64 {
		info, err := status.Info(ctx)
		if err != nil {
			return 0
		}
		return info.State.Msgs
	}
	natstest.CheckFor(t, 20*time.Second, 5*time.Millisecond, func() error {
		if n := stored(); n < requests/4 {
			return fmt.Errorf("%d events", n)
		}
		return nil
	})
	killedAt := stored()
	if err := first.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = first.Wait()

	second := start()
	natstest.CheckFor(t, 60*time.Second, 50*time.Millisecond, func() error {
		if n := stored(); n < requests {
			return fmt.Errorf("%d events of %d", n, requests)
		}
		return nil
	})
	ids, orders, dups := map[string]bool{}, map[string]bool{}, 0
	info, _ := status.Info(ctx)
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		m, err := status.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
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
	t.Logf("figures: requests=%d events=%d duplicates=%d killed_after_events=%d", requests, len(ids)+dups, dups, killedAt)
	if dups != 0 || len(orders) != requests {
		t.Fatalf("%d duplicates, events for %d of %d orders", dups, len(orders), requests)
	}

	// Nothing is in flight by now, so nothing bounds the stop but the machine: the wait is a
	// hang guard (it was the 2 s ack wait, which a loaded machine can use up on an idle stop).
	// What bounds a stop with calls in flight is the service's grace, 2/3 of the ack wait.
	stopped := make(chan error, 1)
	sigterm := time.Now()
	_ = second.Process.Signal(syscall.SIGTERM)
	go func() { stopped <- second.Wait() }()
	select {
	case err := <-stopped:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v", err)
		}
		t.Logf("figures: exit %s after SIGTERM (ack wait 2s)", time.Since(sigterm).Round(time.Millisecond))
	case <-time.After(30 * time.Second): // a hang guard
		_ = second.Process.Kill()
		t.Fatal("no exit within 30 s after SIGTERM")
	}
}
