package handlers_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/paystatus/orderstatus/internal/config"
	"github.com/paystatus/orderstatus/internal/natsinfra"
)

func TestProvisionIsIdempotentAndNeverDeletes(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	for range 2 {
		if _, err := natsinfra.Provision(ctx, e.js, e.cfg, e.log); err != nil {
			t.Fatal(err)
		}
	}
	e.publish("orders.dlq.unknown.unknown", []byte("kept"), nil)
	e.publish("orders.status.kuaishou.payment.pending", []byte("kept"), nil)

	streamCfg := func(name string) (subjects []string, maxAge time.Duration, msgs uint64) {
		s, err := e.js.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		info, _ := s.Info(ctx)
		return info.Config.Subjects, info.Config.MaxAge, info.State.Msgs
	}
	if _, age, _ := streamCfg(natsinfra.StatusStream); age != 168*time.Hour {
		t.Fatalf("status max age %s", age)
	}

	cfg := *e.cfg
	cfg.NATS.StatusMaxAge = time.Hour // shorter: would delete events, so not applied
	cfg.Consumer.AckWait = 7 * time.Second
	if _, err := natsinfra.Provision(ctx, e.js, &cfg, e.log); err != nil {
		t.Fatal(err)
	}
	if _, age, n := streamCfg(natsinfra.StatusStream); age != 168*time.Hour || n != 1 {
		t.Fatalf("after a shorter max age: %s, %d msgs", age, n)
	}
	c, err := e.js.Consumer(ctx, natsinfra.QueryStream, cfg.Consumer.Name)
	if err != nil {
		t.Fatal(err)
	}
	if got := c.CachedInfo().Config; got.AckWait != 7*time.Second || got.MaxDeliver != -1 {
		t.Fatalf("consumer ack wait %s, max deliver %d (the handler counts deliveries itself)", got.AckWait, got.MaxDeliver)
	}

	cfg.NATS.StatusMaxAge = 0 // forever: longer, applied
	cfg.NATS.SubjectPrefix = "shop.orders"
	if _, err := natsinfra.Provision(ctx, e.js, &cfg, e.log); err != nil {
		t.Fatal(err)
	}
	subj, age, n := streamCfg(natsinfra.StatusStream)
	if age != 0 || n != 1 || len(subj) != 1 || subj[0] != "shop.orders.status.>" {
		t.Fatalf("after prefix change: %v %s %d", subj, age, n)
	}
	if subj, _, n := streamCfg(natsinfra.DLQStream); n != 1 || subj[0] != "shop.orders.dlq.>" {
		t.Fatalf("dlq: %v %d", subj, n)
	}
}

// A prefix change moves the work-queue streams' subjects only once nothing waits on the old
// ones: a request queued under the old prefix would never be delivered again (the consumer's
// filter moves with it), so Provision refuses, naming the key, until it is taken.
func TestPrefixChangeKeepsQueuedRequests(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	assets, err := natsinfra.Provision(ctx, e.js, e.cfg, e.log)
	if err != nil {
		t.Fatal(err)
	}
	e.publish("orders.query.kuaishou.payment", []byte(`{"app_id":"ks707065143182458884","order_no":"1711619867139contractDemo"}`), nil)

	cfg := *e.cfg
	cfg.NATS.SubjectPrefix = "shop"
	_, err = natsinfra.Provision(ctx, e.js, &cfg, e.log)
	if err == nil || !strings.Contains(err.Error(), "nats.subject_prefix") || !strings.Contains(err.Error(), "orders.query.>") {
		t.Fatalf("prefix change with a request queued: %v", err)
	}
	s, err := e.js.Stream(ctx, natsinfra.QueryStream)
	if err != nil {
		t.Fatal(err)
	}
	if subj := s.CachedInfo().Config.Subjects; subj[0] != "orders.query.>" {
		t.Fatalf("subjects moved with a request queued: %v", subj)
	}

	batch, err := assets.Consumer.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	for m := range batch.Messages() {
		if err := m.DoubleAck(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := natsinfra.Provision(ctx, e.js, &cfg, e.log); err != nil {
		t.Fatalf("prefix change once the queue is empty: %v", err)
	}
	s, err = e.js.Stream(ctx, natsinfra.QueryStream)
	if err != nil {
		t.Fatal(err)
	}
	if subj := s.CachedInfo().Config.Subjects; !reflect.DeepEqual(subj, []string{"shop.query.>", "shop.follow.>"}) {
		t.Fatalf("subjects after the move: %v", subj)
	}
}

// The stream and consumer files in deploy/nats are what Provision creates for a three-node
// cluster with the default configuration.
func TestDeployDefinitionsMatchProvision(t *testing.T) {
	cfg := config.Default()
	cfg.NATS.Replicas = 3
	for _, want := range natsinfra.StreamConfigs(cfg) {
		var got jetstream.StreamConfig
		data, err := os.ReadFile(filepath.Join("..", "..", "deploy", "nats", "streams", want.Name+".json"))
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(data, &got); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("deploy/nats/streams/%s.json differs from what Provision creates:\n got %+v\nwant %+v", want.Name, got, want)
		}
	}
	var got jetstream.ConsumerConfig
	data, err := os.ReadFile(filepath.Join("..", "..", "deploy", "nats", "consumers", "orders-query.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &got); err != nil {
		t.Fatal(err)
	}
	if want := natsinfra.ConsumerConfig(cfg); !reflect.DeepEqual(got, want) {
		t.Errorf("deploy/nats/consumers/orders-query.json differs:\n got %+v\nwant %+v", got, want)
	}
	got = jetstream.ConsumerConfig{}
	data, err = os.ReadFile(filepath.Join("..", "..", "deploy", "nats", "consumers", "orders-sweep.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &got); err != nil {
		t.Fatal(err)
	}
	if want := natsinfra.SweepConsumerConfig(cfg); !reflect.DeepEqual(got, want) {
		t.Errorf("deploy/nats/consumers/orders-sweep.json differs:\n got %+v\nwant %+v", got, want)
	}
	got = jetstream.ConsumerConfig{}
	data, err = os.ReadFile(filepath.Join("..", "..", "deploy", "nats", "consumers", "orders-callback.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &got); err != nil {
		t.Fatal(err)
	}
	if want := natsinfra.CallbackConsumerConfig(cfg); !reflect.DeepEqual(got, want) {
		t.Errorf("deploy/nats/consumers/orders-callback.json differs:\n got %+v\nwant %+v", got, want)
	}
}

// ORDERS_STATE keeps an order for nats.state_max_age after its last change, and a changed
// setting is applied to an existing bucket.
func TestStateRetention(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	check := func(want time.Duration) {
		t.Helper()
		if _, err := natsinfra.Provision(ctx, e.js, e.cfg, e.log); err != nil {
			t.Fatal(err)
		}
		kv, err := e.js.KeyValue(ctx, natsinfra.StateBucket)
		if err != nil {
			t.Fatal(err)
		}
		st, err := kv.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if st.TTL() != want {
			t.Fatalf("ORDERS_STATE TTL %s, want %s", st.TTL(), want)
		}
	}
	check(35 * 24 * time.Hour)
	e.cfg.NATS.StateMaxAge = 60 * 24 * time.Hour
	check(60 * 24 * time.Hour)
}
