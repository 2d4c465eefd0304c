package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/paystatus/orderstatus/internal/config"
	"github.com/paystatus/orderstatus/internal/events"
	"github.com/paystatus/orderstatus/internal/natsinfra"
	"github.com/paystatus/orderstatus/internal/natstest"
)

// A real three-process cluster started from deploy/nats/cluster-*.conf with the nats-server
// binary (on free ports: natstest.RunClusterProcesses); the streams and the consumer are added from deploy/nats's definition files, as
// `nats stream add --config` would; then the consumer runs against it with nats.replicas: 3.
func TestClusterFromDeployFiles(t *testing.T) {
	bin := natstest.NATSServerBinary()
	if bin == "" {
		t.Skip("nats-server is not installed (make nats-server; .ci/run does it)")
	}
	deploy := filepath.Join("..", "..", "deploy", "nats")
	url := natstest.RunClusterProcesses(t, bin, natstest.DeployClusterConfigs(deploy))
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx := context.Background()
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
	// The sweep's consumer, on the state bucket's stream, as deploy/nats/kv.sh makes it.
	for _, kc := range natsinfra.KeyValueConfigs(&config.Config{NATS: config.NATS{Replicas: 3, StateMaxAge: 35 * 24 * time.Hour}}) {
		natstest.CheckFor(t, 20*time.Second, 200*time.Millisecond, func() error {
			_, err := js.CreateKeyValue(ctx, kc)
			return err
		})
	}
	var sc jetstream.ConsumerConfig
	data, _ = os.ReadFile(filepath.Join(deploy, "consumers", "orders-sweep.json"))
	if err := json.Unmarshal(data, &sc); err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateConsumer(ctx, "KV_ORDERS_STATE", sc); err != nil {
		t.Fatal(err)
	}

	startCommand(t, "dev", "--nats-url", url, "--replicas", "3", "--http", "", "--log-format", "json")
	natstest.CheckFor(t, 20*time.Second, 100*time.Millisecond, func() error {
		_, err := js.KeyValue(ctx, "ORDERS_STATE")
		return err
	})
	sub, _ := nc.SubscribeSync("orders.status.kuaishou.refund.>") // dev's sandbox also notifies its demo orders: events of other kinds come too
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
