package handlers_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/paystatus/orderstatus/internal/app"
	"github.com/paystatus/orderstatus/internal/config"
	"github.com/paystatus/orderstatus/internal/natsinfra"
	"github.com/paystatus/orderstatus/internal/natstest"
)

// adminDenied are the JetStream API calls that make, change or remove streams and consumers:
// a consumer with nats.provision false makes none of them.
var adminDenied = []string{
	"$JS.API.STREAM.CREATE.>", "$JS.API.STREAM.UPDATE.>", "$JS.API.STREAM.DELETE.>", "$JS.API.STREAM.PURGE.>",
	"$JS.API.CONSUMER.CREATE.>", "$JS.API.CONSUMER.DURABLE.CREATE.>", "$JS.API.CONSUMER.DELETE.>",
}

// With nats.provision false the consumer runs as a user without JetStream admin rights, on
// streams, buckets and a consumer an admin made from StreamConfigs, KeyValueConfigs and
// ConsumerConfig. What is missing is named in one line, and the replica waits for it.
func TestBindWithoutAdminRights(t *testing.T) {
	s := runSecureServer(t, func(o *server.Options) {
		o.Users = []*server.User{
			{Username: "admin", Password: "admin-pw"},
			{Username: "orders", Password: "orders-pw", Permissions: &server.Permissions{
				Publish: &server.SubjectPermission{Allow: []string{">"}, Deny: adminDenied},
			}},
		}
	})
	cfg := secureConfig(t, s.ClientURL(), func(n *config.NATS) {
		n.User, n.Password, n.Provision = "orders", "orders-pw", false
	})
	admin, err := nats.Connect(s.ClientURL(), nats.UserInfo("admin", "admin-pw"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(admin.Close)
	ajs, _ := jetstream.New(admin)
	ctx := context.Background()

	var logs syncBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	nc, err := natsinfra.Connect(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, _ := jetstream.New(nc)

	// The permissions bite: provisioning as this user fails.
	pcfg := *cfg
	pcfg.NATS.Provision = true
	pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	if _, err := natsinfra.Provision(pctx, js, &pcfg, log); err == nil {
		t.Fatal("provisioned without admin rights")
	}
	cancel()

	_, err = natsinfra.Bind(ctx, js, cfg, log)
	var missing *natsinfra.MissingError
	if !errors.As(err, &missing) || strings.Contains(err.Error(), "\n") {
		t.Fatalf("bind on an empty server: %v", err)
	}
	if want := "nats.provision is false and an operator has not made stream ORDERS_QUERY, stream ORDERS_STATUS, stream ORDERS_DLQ, stream ORDERS_CALLBACK, KV bucket ORDERS_STATE, KV bucket ORDERS_RATE, KV bucket ORDERS_CALLBACK_SEEN, consumer orders-query on ORDERS_QUERY"; !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("got %q\nwant %q", err, want)
	}

	// A replica started now waits, not ready, naming what is missing.
	type built struct {
		r   *app.Replica
		err error
	}
	rctx, stop := context.WithCancel(ctx)
	t.Cleanup(stop)
	got := make(chan built, 1)
	go func() {
		r, err := app.NewReplica(rctx, cfg, nc, nil, log, app.Options{})
		got <- built{r, err}
	}()
	for _, sc := range natsinfra.StreamConfigs(cfg) {
		if _, err := ajs.CreateStream(ctx, sc); err != nil {
			t.Fatal(err)
		}
	}
	for _, kc := range natsinfra.KeyValueConfigs(cfg) {
		if _, err := ajs.CreateKeyValue(ctx, kc); err != nil {
			t.Fatal(err)
		}
	}
	natstest.CheckFor(t, 15*time.Second, 20*time.Millisecond, func() error {
		if l := logs.String(); !strings.Contains(l, "an operator has not made consumer orders-query on ORDERS_QUERY, consumer orders-sweep on KV_ORDERS_STATE, consumer orders-callback on ORDERS_CALLBACK (") {
			return fmt.Errorf("log lacks the missing consumers alone:\n%s", l)
		}
		return nil
	})
	select {
	case b := <-got:
		t.Fatalf("replica did not wait for the consumer: %v", b.err)
	default:
	}
	if _, err := ajs.CreateConsumer(ctx, natsinfra.QueryStream, natsinfra.ConsumerConfig(cfg)); err != nil {
		t.Fatal(err)
	}
	if _, err := ajs.CreateConsumer(ctx, "KV_"+natsinfra.StateBucket, natsinfra.SweepConsumerConfig(cfg)); err != nil {
		t.Fatal(err)
	}
	if _, err := ajs.CreateConsumer(ctx, natsinfra.CallbackStream, natsinfra.CallbackConsumerConfig(cfg)); err != nil {
		t.Fatal(err)
	}
	b := <-got
	if b.err != nil {
		t.Fatal(b.err)
	}
	stop()

	// A replica binds at once and processes a request; losing its consumer, it looks the
	// operator's up again rather than making one.
	r := consumeOne(t, cfg)
	if _, err := r.Service.Rebind(ctx); err != nil {
		t.Fatalf("rebind: %v", err)
	}
	if err := ajs.DeleteConsumer(ctx, natsinfra.QueryStream, cfg.Consumer.Name); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Service.Rebind(ctx); !errors.Is(err, jetstream.ErrConsumerNotFound) {
		t.Fatalf("rebind with the consumer gone: %v (want not found, not a new consumer)", err)
	}
	if _, err := ajs.Consumer(ctx, natsinfra.QueryStream, cfg.Consumer.Name); !errors.Is(err, jetstream.ErrConsumerNotFound) {
		t.Fatalf("rebind made a consumer: %v", err)
	}
}

// deploy/nats/kv.sh makes the buckets Provision makes, for a three-node cluster with the
// default configuration.
func TestDeployKVCommandsMatchProvision(t *testing.T) {
	cfg := config.Default()
	cfg.NATS.Replicas = 3
	data, err := os.ReadFile(filepath.Join("..", "..", "deploy", "nats", "kv.sh"))
	if err != nil {
		t.Fatal(err)
	}
	flag := regexp.MustCompile(`--([a-z-]+)=("[^"]*"|\S+)`)
	var got []jetstream.KeyValueConfig
	for _, line := range strings.Split(string(data), "\n") {
		rest, ok := strings.CutPrefix(line, "nats kv add ")
		if !ok {
			continue
		}
		name, _, _ := strings.Cut(rest, " ")
		kc := jetstream.KeyValueConfig{Bucket: name, Storage: jetstream.FileStorage, History: 1, Replicas: 1}
		for _, m := range flag.FindAllStringSubmatch(rest, -1) {
			v := strings.Trim(m[2], `"`)
			switch m[1] {
			case "description":
				kc.Description = v
			case "history":
				n, _ := strconv.Atoi(v)
				kc.History = uint8(n)
			case "storage":
				if v != "file" {
					kc.Storage = jetstream.MemoryStorage
				}
			case "ttl":
				kc.TTL, err = time.ParseDuration(v)
				if err != nil {
					t.Fatal(err)
				}
			case "replicas":
				kc.Replicas, _ = strconv.Atoi(v)
			default:
				t.Errorf("kv.sh: flag --%s is not checked here", m[1])
			}
		}
		got = append(got, kc)
	}
	if want := natsinfra.KeyValueConfigs(cfg); !reflect.DeepEqual(got, want) {
		t.Errorf("deploy/nats/kv.sh differs from what Provision creates:\n got %+v\nwant %+v", got, want)
	}
}
