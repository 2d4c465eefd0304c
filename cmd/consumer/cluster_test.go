package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/paystatus/orderstatus/internal/events"
	"github.com/paystatus/orderstatus/internal/natstest"
)

// natsServerBinary finds nats-server on PATH or in GOPATH/bin.
func natsServerBinary() string {
	if p, err := exec.LookPath("nats-server"); err == nil {
		return p
	}
	out, err := exec.Command("go", "env", "GOPATH").Output()
	if err == nil {
		p := filepath.Join(string(regexp.MustCompile(`\s+$`).ReplaceAll(out, nil)), "bin", "nats-server")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return ""
}

// A real three-process cluster started from deploy/nats/cluster-*.conf with the nats-server
// binary; the streams and the consumer are added from deploy/nats's definition files, as
// `nats stream add --config` would; then the consumer runs against it with nats.replicas: 3.
func TestClusterFromDeployFiles(t *testing.T) {
	bin := natsServerBinary()
	if bin == "" {
		t.Skip("nats-server is not installed (go install github.com/nats-io/nats-server/v2@latest; .ci/run does it)")
	}
	deploy, _ := filepath.Abs(filepath.Join("..", "..", "deploy", "nats"))
	dir := t.TempDir()
	for i := 1; i <= 3; i++ {
		cmd := exec.Command(bin, "-c", filepath.Join(deploy, fmt.Sprintf("cluster-%d.conf", i)))
		cmd.Dir = dir // the configs keep their data in ./nats-data
		if testing.Verbose() {
			cmd.Stderr = os.Stderr
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	}
	url := "nats://127.0.0.1:4241,nats://127.0.0.1:4242,nats://127.0.0.1:4243"
	var nc *nats.Conn
	natstest.CheckFor(t, 30*time.Second, 200*time.Millisecond, func() error {
		var err error
		nc, err = nats.Connect(url)
		return err
	})
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx := context.Background()
	natstest.CheckFor(t, 30*time.Second, 200*time.Millisecond, func() error {
		_, err := js.AccountInfo(ctx)
		return err
	})
	files, _ := filepath.Glob(filepath.Join(deploy, "streams", "*.json"))
	for _, f := range files {
		var sc jetstream.StreamConfig
		data, _ := os.ReadFile(f)
		if err := json.Unmarshal(data, &sc); err != nil {
			t.Fatal(err)
		}
		natstest.CheckFor(t, 20*time.Second, 200*time.Millisecond, func() error {
			_, err := js.CreateStream(ctx, sc)
			return err
		})
	}
	var cc jetstream.ConsumerConfig
	data, _ := os.ReadFile(filepath.Join(deploy, "consumers", "orders-query.json"))
	if err := json.Unmarshal(data, &cc); err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateConsumer(ctx, "ORDERS_QUERY", cc); err != nil {
		t.Fatal(err)
	}

	startCommand(t, "dev", "--nats-url", url, "--replicas", "3", "--http", "", "--log-format", "json")
	natstest.CheckFor(t, 20*time.Second, 100*time.Millisecond, func() error {
		_, err := js.KeyValue(ctx, "ORDERS_STATE")
		return err
	})
	sub, _ := nc.SubscribeSync("orders.status.>")
	if _, err := js.Publish(ctx, "orders.query.kuaishou.refund", []byte(`{"app_id":"ks707065143182458884","order_no":"1660811124083refund"}`)); err != nil {
		t.Fatal(err)
	}
	ev := receiveEvent(t, sub)
	if ev.Status != events.StatusPending || ev.Kind != "refund" {
		t.Fatalf("event %+v", ev)
	}
	for _, name := range []string{"ORDERS_QUERY", "ORDERS_STATUS", "ORDERS_DLQ", "KV_ORDERS_STATE", "KV_ORDERS_RATE"} {
		s, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		info := s.CachedInfo()
		if info.Config.Replicas != 3 || info.Cluster == nil || len(info.Cluster.Replicas) != 2 {
			t.Errorf("%s: %d replicas, cluster %+v", name, info.Config.Replicas, info.Cluster)
		}
	}
	t.Logf("figures: cluster of 3 nats-server processes from deploy/nats; streams and KV at R3; event %s received", ev.EventID)
}
