package handlers_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/paystatus/orderstatus/internal/app"
	"github.com/paystatus/orderstatus/internal/config"
	"github.com/paystatus/orderstatus/internal/events"
	"github.com/paystatus/orderstatus/internal/natsinfra"
	"github.com/paystatus/orderstatus/internal/natstest"
	"github.com/paystatus/orderstatus/internal/orderstate"
	kssandbox "github.com/paystatus/orderstatus/internal/providers/kuaishou/sandbox"
	"github.com/paystatus/orderstatus/internal/providers/registry"
	"github.com/paystatus/orderstatus/internal/telemetry"
)

// leastPrivilegeServer runs a server whose users are deploy/nats/orders-user.conf's, included
// as an operator would, and an admin; extra is added to the orders user's publish deny list.
func leastPrivilegeServer(t *testing.T, extraDeny ...string) *server.Server {
	t.Helper()
	user, err := os.ReadFile(filepath.Join("..", "..", "deploy", "nats", "orders-user.conf"))
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("ORDERS_PASSWORD", "orders-pw")
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "orders-user.conf"), user, 0o600); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "server.conf")
	body := "listen: 127.0.0.1:-1\ninclude \"orders-user.conf\"\nauthorization { users: [ $ORDERS_USER, { user: admin, password: admin-pw } ] }\n"
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	opts, err := server.ProcessConfigFile(conf)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range opts.Users {
		if u.Username == "orders" && len(extraDeny) > 0 {
			u.Permissions.Publish.Deny = append(u.Permissions.Publish.Deny, extraDeny...)
		}
	}
	return runSecureServer(t, func(o *server.Options) {
		o.Users = opts.Users
	})
}

// makeAssets makes every asset from deploy/nats, as the admin.
func makeAssets(t *testing.T, url string, cfg *config.Config) jetstream.JetStream {
	t.Helper()
	admin, err := nats.Connect(url, nats.UserInfo("admin", "admin-pw"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(admin.Close)
	ajs, _ := jetstream.New(admin)
	ctx := context.Background()
	if _, err := natsinfra.Provision(ctx, ajs, cfg, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	return ajs
}

// strandClaim writes the demo order's first transition with its event pending, as a replica
// that crashed right after its claim leaves it, and returns the event's id.
func strandClaim(t *testing.T, ajs jetstream.JetStream) string {
	t.Helper()
	id := events.EventID("kuaishou", "payment", demoApp, demoOrder, 1)
	now := time.Now().UTC().Format(time.RFC3339Nano)
	ev := events.StatusEvent{EventID: id, RequestID: "stranded", Provider: "kuaishou", Kind: "payment", AppID: demoApp,
		OrderNo: demoOrder, Status: events.StatusPending, ProviderStatus: "PROCESSING", Currency: "CNY", ObservedAt: now,
		Details: map[string]any{}, Attributes: map[string]string{}}
	rec := orderstate.Record{Status: ev.Status, ProviderStatus: ev.ProviderStatus, Transition: 1, EventID: id, SentAt: now, ObservedAt: now, Pending: &ev}
	data, _ := json.Marshal(rec)
	key := orderstate.Key("kuaishou", "payment", demoApp, demoOrder)
	m := &nats.Msg{Subject: "$KV.ORDERS_STATE." + key, Data: data, Header: nats.Header{events.HeaderPending: {id}}}
	if _, err := ajs.PublishMsg(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	return id
}

// runAs runs a replica for cfg (its own connection, bound to the operator's assets) until the
// test ends, with the sweep a second after a claim.
func runAs(t *testing.T, cfg *config.Config, log *slog.Logger, metrics *telemetry.Metrics) *app.Replica {
	t.Helper()
	nc, err := natsinfra.Connect(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	provs, err := registry.Build(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r, err := app.NewReplica(ctx, cfg, nc, provs, log, app.Options{Metrics: metrics, SweepDelay: time.Second})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = r.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return r
}

// The service runs as deploy/nats/orders-user.conf's user, on assets an admin made from
// deploy/nats, and its sweep publishes a claim a crashed replica left: no part of it needs a
// JetStream admin right.
func TestLeastPrivilegeUserSweepsAStrandedClaim(t *testing.T) {
	s := leastPrivilegeServer(t)
	cfg := secureConfig(t, s.ClientURL(), func(n *config.NATS) {
		n.User, n.Password, n.Provision = "orders", "orders-pw", false
	})
	ajs := makeAssets(t, s.ClientURL(), cfg)
	id := strandClaim(t, ajs)

	var logs syncBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	metrics := telemetry.NewMetrics(prometheus.NewRegistry())
	r := runAs(t, cfg, log, metrics)

	natstest.CheckFor(t, 30*time.Second, 50*time.Millisecond, func() error {
		st, err := ajs.Stream(context.Background(), natsinfra.StatusStream)
		if err != nil {
			return err
		}
		if n := st.CachedInfo().State.Msgs; n == 0 {
			if _, err := st.Info(context.Background()); err != nil {
				return err
			}
			return fmt.Errorf("no event yet (sweep: %v)", r.Store.SweepErr())
		}
		m, err := st.GetLastMsgForSubject(context.Background(), "orders.status.>")
		if err != nil {
			return err
		}
		if got := m.Header.Get("Nats-Msg-Id"); got != id {
			return fmt.Errorf("event %s, want the stranded claim's %s", got, id)
		}
		return nil
	})
	if n := testutil.ToFloat64(metrics.Swept); n != 1 {
		t.Fatalf("orders_events_swept_total %v, want 1", n)
	}
	if err := r.Store.SweepErr(); err != nil {
		t.Fatalf("sweep: %v", err)
	}
	if up := testutil.ToFloat64(metrics.SweepUp); up != 1 {
		t.Fatalf("orders_sweep_up %v", up)
	}
	// The callback way in works as this user too: stored, verified, deduplicated, recorded.
	body := notice("m-least-privilege", demoApp, "cb-least-priv-01", "SUCCESS", 1200, time.Now())
	if _, err := ajs.PublishMsg(context.Background(), &nats.Msg{Subject: "orders.callback.kuaishou", Data: body,
		Header: nats.Header{"Kwaisign": {kwaisign(body, kssandbox.DemoAppSecret)}}}); err != nil {
		t.Fatal(err)
	}
	natstest.CheckFor(t, 30*time.Second, 50*time.Millisecond, func() error {
		if n := testutil.ToFloat64(metrics.Notifications.WithLabelValues("kuaishou", "nats", "applied")); n != 1 {
			return fmt.Errorf("notification not applied (%v)", n)
		}
		return nil
	})
	if l := logs.String(); strings.Contains(l, "Permissions Violation") || strings.Contains(l, "permissions violation") {
		t.Fatalf("a permission the user lacks was used:\n%s", l)
	}
}

// A sweep that cannot follow the state writes (here: a user who may not pull from the sweep's
// consumer) says so: the store reports why, for /readyz, and orders_sweep_up is 0.
func TestSweepThatCannotRunIsReported(t *testing.T) {
	s := leastPrivilegeServer(t, "$JS.API.CONSUMER.MSG.NEXT.KV_ORDERS_STATE.>")
	cfg := secureConfig(t, s.ClientURL(), func(n *config.NATS) {
		n.User, n.Password, n.Provision = "orders", "orders-pw", false
	})
	makeAssets(t, s.ClientURL(), cfg)
	metrics := telemetry.NewMetrics(prometheus.NewRegistry())
	metrics.SweepUp.Set(1)
	r := runAs(t, cfg, slog.New(slog.DiscardHandler), metrics)
	natstest.CheckFor(t, 30*time.Second, 50*time.Millisecond, func() error {
		err := r.Store.SweepErr()
		if err == nil || !strings.Contains(strings.ToLower(err.Error()), "permission") {
			return fmt.Errorf("sweep error %v, want the permission it lacks", err)
		}
		if up := testutil.ToFloat64(metrics.SweepUp); up != 0 {
			return fmt.Errorf("orders_sweep_up %v, want 0", up)
		}
		return nil
	})
}

// An error the server reports asynchronously (here: a publish the user may not make) reaches
// the service's log, not nats.go's default handler on stderr.
func TestAsyncNATSErrorsAreLogged(t *testing.T) {
	s := leastPrivilegeServer(t)
	cfg := secureConfig(t, s.ClientURL(), func(n *config.NATS) {
		n.User, n.Password, n.Provision = "orders", "orders-pw", false
	})
	var logs syncBuffer
	nc, err := natsinfra.Connect(cfg, slog.New(slog.NewJSONHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if err := nc.Publish("$JS.API.STREAM.DELETE.ORDERS_QUERY", nil); err != nil {
		t.Fatal(err)
	}
	natstest.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if l := logs.String(); !strings.Contains(l, `"msg":"NATS error"`) || !strings.Contains(l, "Permissions Violation") {
			return fmt.Errorf("log lacks the permissions violation:\n%s", l)
		}
		return nil
	})
}
