package handlers_test

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/paystatus/orderstatus/internal/config"
	"github.com/paystatus/orderstatus/internal/events"
	"github.com/paystatus/orderstatus/internal/natsinfra"
	"github.com/paystatus/orderstatus/internal/natstest"
	kssandbox "github.com/paystatus/orderstatus/internal/providers/kuaishou/sandbox"
	"github.com/paystatus/orderstatus/internal/providers/sandboxkit"
	"github.com/paystatus/orderstatus/internal/ratelimit"
	"github.com/paystatus/orderstatus/internal/telemetry"
)

// putOrders puts n payment orders for the demo app in the sandbox and returns their numbers.
func putOrders(sb *kssandbox.Sandbox, prefix string, n int) []string {
	nos := make([]string, n)
	for i := range nos {
		nos[i] = fmt.Sprintf("%s-%05d", prefix, i)
		sb.PutOrder(kssandbox.Order{AppID: demoApp, Kind: events.KindPayment, OrderNo: nos[i],
			Steps: []kssandbox.Step{{Status: "SUCCESS"}}, Amount: int64(100 + i), KsOrderNo: "ks-" + nos[i], PayChannel: "WECHAT"})
	}
	return nos
}

// countEvents waits for one event per order and reports events and duplicate event ids.
func (e *env) countEvents(want int, within time.Duration) (total, duplicates int) {
	e.t.Helper()
	natstest.CheckFor(e.t, within, 100*time.Millisecond, func() error {
		msgs, err := e.tryStreamMsgs(natsinfra.StatusStream)
		if err != nil {
			return err
		}
		ids := map[string]int{}
		for _, m := range msgs {
			ev, err := events.DecodeEvent(m.Header.Get("Content-Type"), m.Data)
			if err != nil {
				return err
			}
			ids[ev.OrderNo]++
		}
		if len(ids) < want {
			return fmt.Errorf("events for %d of %d orders", len(ids), want)
		}
		return nil
	})
	seen := map[string]bool{}
	for _, ev := range e.events() {
		total++
		if seen[ev.EventID] {
			duplicates++
		}
		seen[ev.EventID] = true
	}
	return total, duplicates
}

// jitter is how much later than its slot a call may reach the sandbox on a loaded machine
// (other processes, the race detector). The limit is checked in windows shortened to allow
// for it: calls reserved a spacing apart and delayed by up to jitter still pass, while calls
// that leave together (slots taken before a slow token fetch, a limiter that hands a slot out
// twice) fail. The sandbox itself enforces the strict one-second window: a call delayed past
// jitter may be refused there, and is retried like any rate-limited answer.
const jitter = 100 * time.Millisecond

// limitWindow is the longest window in which calls made in their slots, reaching the sandbox
// up to jitter late, are at most qps: qps slots span (qps-1) spacings.
func limitWindow(qps int) time.Duration {
	return time.Duration(qps-1)*ratelimit.Spacing(qps) - jitter
}

// d. Three replicas against one sandbox app limited to qps: the sandbox never counts more
// than qps calls in any window of limitWindow(qps), and every request gives one event.
func TestThreeReplicasHoldTheLimitTogether(t *testing.T) {
	const qps, requests = 10, 60
	e := newEnv(t, func(c *config.Config) {
		p := c.Providers["kuaishou"]
		p.QPS = qps
		c.Providers["kuaishou"] = p
	})
	e.sb.QPS = qps // the sandbox enforces the limit too, and would answer a rate-limit refusal
	nos := putOrders(e.sb, "qps", requests)
	for range 3 {
		e.startReplica(nil)
	}
	start := time.Now()
	for _, no := range nos {
		e.publish("orders.query.kuaishou.payment", []byte(`{"app_id":"`+demoApp+`","order_no":"`+no+`"}`), nil)
	}
	evs, dups := e.countEvents(requests, 30*time.Second)
	elapsed := time.Since(start)
	calls := e.sb.Calls(demoApp, events.KindPayment)
	maxPerWindow := ratelimit.MaxCallsPerWindow(calls, limitWindow(qps))
	rate := float64(len(calls)) / elapsed.Seconds()
	t.Logf("figures: replicas=3 qps=%d requests=%d events=%d duplicates=%d calls=%d max_calls_per_window=%d mean_rate=%.2f/s (%.0f%% of qps)",
		qps, requests, evs, dups, len(calls), maxPerWindow, rate, 100*rate/qps)
	if maxPerWindow > qps {
		t.Fatalf("%d calls in %s, limit %d", maxPerWindow, limitWindow(qps), qps)
	}
	if evs != requests || dups != 0 {
		t.Fatalf("events %d for %d requests, duplicates %d", evs, requests, dups)
	}
}

// Fairness: one app's backlog does not hold back another app's request beyond its own limit.
func TestBacklogOfOneAppDoesNotDelayAnother(t *testing.T) {
	const backlog = 600
	e := newEnv(t, func(c *config.Config) {
		p := c.Providers["kuaishou"]
		p.QPS = 30
		c.Providers["kuaishou"] = p
	})
	nos := putOrders(e.sb, "backlog", backlog)
	e.sb.PutOrder(kssandbox.Order{AppID: "ks700000000000000002", Kind: events.KindPayment, OrderNo: "other-app-0001",
		Steps: []kssandbox.Step{{Status: "PROCESSING"}}, Amount: 1})
	e.startReplica(nil)
	for _, no := range nos {
		e.publish("orders.query.kuaishou.payment", []byte(`{"app_id":"`+demoApp+`","order_no":"`+no+`"}`), nil)
	}
	start := time.Now()
	e.publish("orders.query.kuaishou.payment", []byte(`{"app_id":"ks700000000000000002","order_no":"other-app-0001"}`), nil)
	var took time.Duration
	natstest.CheckFor(t, 20*time.Second, 20*time.Millisecond, func() error {
		for _, ev := range e.events() {
			if ev.OrderNo == "other-app-0001" {
				took = time.Since(start)
				return nil
			}
		}
		return fmt.Errorf("no event for the other app's order yet")
	})
	done := 0
	for _, ev := range e.events() {
		if ev.AppID == demoApp {
			done++
		}
	}
	t.Logf("figures: backlog=%d other_app_event_after=%s backlog_done_by_then=%d", backlog, took.Round(time.Millisecond), done)
	// The backlog takes 20 s at 30 QPS; the other app's request must not wait behind it.
	if done >= backlog/2 {
		t.Fatalf("the other app's request waited until %d of %d backlog requests were done", done, backlog)
	}
}

// b. The NATS server stopped and started again on the same store mid-run: the consumer
// reconnects by itself and nothing is lost; every request ends in its event or its dead
// letter, once, and the replica is ready again.
func TestNATSRestartLosesNothing(t *testing.T) {
	const requests, bad = 120, 12
	e := newEnvOn(t, restartableServer(t), func(c *config.Config) {
		p := c.Providers["kuaishou"]
		p.QPS = 40
		c.Providers["kuaishou"] = p
	})
	nos := putOrders(e.sb, "restart", requests)
	base := e.serve()
	for i, no := range nos {
		e.publish("orders.query.kuaishou.payment", []byte(`{"app_id":"`+demoApp+`","order_no":"`+no+`"}`), nil)
		if i%(requests/bad) == 0 { // one that can never succeed: a dead letter
			e.publish("orders.query.kuaishou.payment", []byte(`{"app_id":"nope","order_no":"`+no+`"}`), nil)
		}
	}
	natstest.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if n := len(e.events()); n < requests/4 {
			return fmt.Errorf("%d events", n)
		}
		return nil
	})
	e.restart()
	evs, dups := e.countEvents(requests, 60*time.Second)
	t.Logf("figures: requests=%d events=%d duplicates=%d (server restarted mid-run)", requests, evs, dups)
	if dups != 0 {
		t.Fatalf("%d duplicate events", dups)
	}
	e.waitIdle()
	e.waitDeadLetters(bad)
	waitReady(t, base, "after the restart")
}

// c. A three-node cluster with R3 streams and KV buckets loses one node mid-run: nothing is
// lost and no event is duplicated.
func TestClusterNodeLossLosesNothing(t *testing.T) {
	const requests = 150
	servers := natstest.RunCluster(t, 3)
	e := newEnvOn(t, &serverCtl{url: natstest.ClusterURL(servers)}, func(c *config.Config) {
		c.NATS.Replicas = 3
		p := c.Providers["kuaishou"]
		p.QPS = 50
		c.Providers["kuaishou"] = p
	})
	nos := putOrders(e.sb, "cluster", requests)
	e.startReplica(nil)
	for _, no := range nos {
		e.publish("orders.query.kuaishou.payment", []byte(`{"app_id":"`+demoApp+`","order_no":"`+no+`"}`), nil)
	}
	natstest.CheckFor(t, 20*time.Second, 20*time.Millisecond, func() error {
		if n := len(e.events()); n < requests/3 {
			return fmt.Errorf("%d events", n)
		}
		return nil
	})
	down := servers[0]
	down.Shutdown()
	down.WaitForShutdown()
	evs, dups := e.countEvents(requests, 90*time.Second)
	t.Logf("figures: cluster=3 replicas=R3 requests=%d events=%d duplicates=%d (node %s shut down mid-run)", requests, evs, dups, down.Name())
	if dups != 0 {
		t.Fatalf("%d duplicate events", dups)
	}
	e.waitIdle()
}

// d. Two replicas race on the same orders of an R3 cluster (each order is requested twice, so
// both claim it at once and the server answers one of them with conflict code 10164), and the
// leader of ORDERS_QUERY is killed mid-run: one event per order, none twice, the limit held,
// and a failed write does not make the provider be asked again.
func TestRacingReplicasAndQueryLeaderLoss(t *testing.T) {
	const orders, qps = 100, 40
	servers := natstest.RunCluster(t, 3)
	e := newEnvOn(t, &serverCtl{url: natstest.ClusterURL(servers)}, func(c *config.Config) {
		c.NATS.Replicas = 3
		p := c.Providers["kuaishou"]
		p.QPS = qps
		c.Providers["kuaishou"] = p
	})
	reg := prometheus.NewRegistry()
	e.metrics = telemetry.NewMetrics(reg)
	nos := putOrders(e.sb, "race", orders)
	e.startReplica(nil)
	e.metrics = nil
	e.startReplica(nil)
	for _, no := range nos {
		for copy := range 2 {
			e.publish("orders.query.kuaishou.payment", []byte(`{"app_id":"`+demoApp+`","order_no":"`+no+`"}`),
				nats.Header{"Nats-Msg-Id": {fmt.Sprintf("%s-%d", no, copy)}})
		}
	}
	natstest.CheckFor(t, 20*time.Second, 20*time.Millisecond, func() error {
		if n := len(e.events()); n < orders/4 {
			return fmt.Errorf("%d events", n)
		}
		return nil
	})
	ctx := context.Background()
	s, err := e.js.Stream(ctx, natsinfra.QueryStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil || info.Cluster == nil {
		t.Fatalf("stream info: %v", err)
	}
	var leader string
	for _, srv := range servers {
		if srv.Name() == info.Cluster.Leader {
			leader = srv.Name()
			srv.Shutdown()
			srv.WaitForShutdown()
		}
	}
	if leader == "" {
		t.Fatalf("no server is the leader %q", info.Cluster.Leader)
	}
	evs, dups := e.countEvents(orders, 90*time.Second)
	calls := e.sb.Calls(demoApp, events.KindPayment)
	maxPerWindow := ratelimit.MaxCallsPerWindow(calls, limitWindow(qps))
	retries := counterSum(t, reg, "orders_write_retries_total", nil)
	t.Logf("figures: cluster=3 R3 replicas=2 racing orders=%d requests=%d events=%d duplicates=%d provider_calls=%d max_calls_per_window=%d qps=%d write_retries(replica 1)=%v (leader %s of ORDERS_QUERY killed mid-run)",
		orders, 2*orders, evs, dups, len(calls), maxPerWindow, qps, retries, leader)
	if dups != 0 || evs != orders {
		t.Fatalf("%d events for %d orders, %d duplicates", evs, orders, dups)
	}
	if maxPerWindow > qps {
		t.Fatalf("%d calls in %s, limit %d", maxPerWindow, limitWindow(qps), qps)
	}
	e.waitIdle()
}

// e. A cluster of three nats-server processes from deploy/nats loses the leader of the state
// bucket's stream (KV_ORDERS_STATE), killed with SIGKILL and left down, while the service
// works through a burst over three apps: the other two elect a new leader, every request ends
// in exactly one event (none missing, none twice) or one dead letter, nothing is left in
// ORDERS_QUERY, and the service is still running and ready.
func TestStateLeaderKilledLosesNothing(t *testing.T) {
	bin := natstest.NATSServerBinary()
	if bin == "" {
		t.Skip("nats-server is not installed (make nats-server; .ci/run does it)")
	}
	const perApp, bad = 50, 6
	apps := append(kssandbox.DemoApps(), config.App{AppID: "ks700000000000000003", AppSecret: "demo-secret-3"})
	procs := natstest.StartClusterProcesses(t, bin, natstest.DeployClusterConfigs(filepath.Join("..", "..", "deploy", "nats")))
	e := newEnvOn(t, &serverCtl{url: natstest.ProcessesURL(procs)}, func(c *config.Config) {
		c.NATS.Replicas = 3
		p := c.Providers["kuaishou"]
		p.QPS = 20 // a burst of 50 per app lasts at least 2.5 s: the kill lands mid-run
		p.Apps = apps
		c.Providers["kuaishou"] = p
	})
	e.sb.AddApp(apps[2].AppID, apps[2].AppSecret.Reveal())
	want := map[string]bool{} // app_id/order_no of each request that must give an event
	for i := range perApp {
		for _, a := range apps {
			no := fmt.Sprintf("leader-%s-%03d", a.AppID[len(a.AppID)-1:], i)
			e.sb.PutOrder(kssandbox.Order{AppID: a.AppID, Kind: events.KindPayment, OrderNo: no,
				Steps: []kssandbox.Step{{Status: "SUCCESS"}}, Amount: int64(100 + i), KsOrderNo: "ks-" + no, PayChannel: "WECHAT"})
			want[a.AppID+"/"+no] = true
		}
	}
	base := e.serve()
	waitReady(t, base, "before the burst")
	i := 0
	for key := range want {
		appID, no, _ := strings.Cut(key, "/")
		e.publish("orders.query.kuaishou.payment", []byte(`{"app_id":"`+appID+`","order_no":"`+no+`"}`), nil)
		if i%(len(want)/bad) == 0 { // one that can never succeed: a dead letter
			e.publish("orders.query.kuaishou.payment", []byte(`{"app_id":"nope","order_no":"`+no+`"}`),
				nats.Header{"Nats-Msg-Id": {fmt.Sprintf("bad-%d", i/(len(want)/bad))}})
		}
		i++
	}
	natstest.CheckFor(t, 30*time.Second, 20*time.Millisecond, func() error {
		if n := len(e.events()); n < len(want)/4 {
			return fmt.Errorf("%d events", n)
		}
		return nil
	})
	ctx := context.Background()
	leader := func() (string, error) {
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		s, err := e.js.Stream(ctx, "KV_"+natsinfra.StateBucket)
		if err != nil {
			return "", err
		}
		info, err := s.Info(ctx)
		if err != nil {
			return "", err
		}
		if info.Cluster == nil || info.Cluster.Leader == "" {
			return "", fmt.Errorf("no leader: %+v", info.Cluster)
		}
		return info.Cluster.Leader, nil
	}
	var killed string
	natstest.CheckFor(t, 30*time.Second, 100*time.Millisecond, func() (err error) {
		killed, err = leader()
		return err
	})
	before := len(e.events())
	for _, p := range procs {
		if p.Name == killed {
			p.Kill()
		}
	}
	var elected string
	natstest.CheckFor(t, 30*time.Second, 100*time.Millisecond, func() (err error) {
		if elected, err = leader(); err == nil && elected == killed {
			err = fmt.Errorf("%s still named leader", killed)
		}
		return err
	})
	evs, dups := e.countEvents(len(want), 60*time.Second)
	e.waitIdle()
	e.waitDeadLetters(bad)
	got := map[string]int{}
	for _, ev := range e.events() {
		got[ev.AppID+"/"+ev.OrderNo]++
	}
	t.Logf("figures: cluster=3 nats-server processes R3 apps=%d requests=%d bad=%d events=%d duplicates=%d events_before_kill=%d (leader %s of KV_%s killed, %s elected, not restarted)",
		len(apps), len(want), bad, evs, dups, before, killed, natsinfra.StateBucket, elected)
	if dups != 0 {
		t.Errorf("%d duplicate events", dups)
	}
	for key, n := range got {
		if !want[key] || n != 1 {
			t.Errorf("%s: %d events", key, n)
		}
	}
	if len(got) != len(want) {
		t.Errorf("events for %d of %d requests", len(got), len(want))
	}
	deadLetters := map[string]int{}
	for _, m := range e.streamMsgs(natsinfra.DLQStream) {
		id := m.Header.Get("Orders-Original-Msg-Id")
		deadLetters[id]++
		if r := m.Header.Get("Orders-Error-Reason"); r != events.ReasonUnknownApp || !strings.HasPrefix(id, "bad-") || deadLetters[id] > 1 {
			t.Errorf("dead letter %s (%s) of %q, %d of it", r, m.Header.Get("Orders-Error"), id, deadLetters[id])
		}
	}
	waitReady(t, base, "after the leader was killed")
}

// Token fetches keep the limit: tokens are fetched before the rate slot is taken, and refreshed
// ahead in the background while the old one serves, so calls that wait for a slow token
// endpoint do not leave together and put more than qps in one second.
func TestTokenFetchesKeepTheLimit(t *testing.T) {
	const qps, requests = 30, 150
	e := newEnv(t, func(c *config.Config) {
		p := c.Providers["kuaishou"]
		p.QPS = qps
		c.Providers["kuaishou"] = p
	})
	e.sb.TokenDelay = 600 * time.Millisecond
	e.sb.TokenTTL = 3 * time.Second // refreshed ahead after 2.4 s, while the run goes on
	nos := putOrders(e.sb, "token", requests)
	e.startReplica(nil)
	for i, no := range nos {
		if i == requests/2 {
			e.sb.ExpireTokens(demoApp) // every token refused at once: fetched again, before the slots
		}
		e.publish("orders.query.kuaishou.payment", []byte(`{"app_id":"`+demoApp+`","order_no":"`+no+`"}`), nil)
	}
	evs, dups := e.countEvents(requests, 60*time.Second)
	calls := e.sb.Calls(demoApp, events.KindPayment)
	maxPerWindow := ratelimit.MaxCallsPerWindow(calls, limitWindow(qps))
	t.Logf("figures: qps=%d token_endpoint=600ms token_life=3s requests=%d events=%d calls=%d token_fetches=%d max_calls_per_window=%d",
		qps, requests, evs, len(calls), e.sb.TokenFetches(demoApp), maxPerWindow)
	if dups != 0 || maxPerWindow > qps {
		t.Fatalf("%d duplicates; %d calls in %s, limit %d", dups, maxPerWindow, limitWindow(qps), qps)
	}
}

// The pulls on the wire ask for heartbeats every 2 s and expire in 6 s (not nats.go's defaults,
// 15 s and 30 s), so a lost pull on a dead route is noticed in about 4 s.
func TestPullsNoticeADeadRouteQuickly(t *testing.T) {
	e := newEnv(t, nil)
	sub, err := e.nc.SubscribeSync("$JS.API.CONSUMER.MSG.NEXT." + natsinfra.QueryStream + "." + e.cfg.Consumer.Name)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	e.startReplica(nil)
	m, err := sub.NextMsg(10 * time.Second)
	if err != nil {
		t.Fatalf("no pull request seen: %v", err)
	}
	var pull struct {
		Expires   time.Duration `json:"expires"`
		Heartbeat time.Duration `json:"idle_heartbeat"`
	}
	if err := json.Unmarshal(m.Data, &pull); err != nil {
		t.Fatalf("%v: %s", err, m.Data)
	}
	t.Logf("figures: pull expires=%s heartbeat=%s (a lost pull noticed after two missed heartbeats: %s)", pull.Expires, pull.Heartbeat, 2*pull.Heartbeat)
	if pull.Heartbeat <= 0 || pull.Heartbeat > 2*time.Second || pull.Expires > 10*time.Second {
		t.Fatalf("pull %s", m.Data)
	}
}

// An HTTP 429 with Retry-After holds the app's calls for as long as it says, not the one
// second a rate-limit answer without advice pauses the app: the next call reaches the provider
// no sooner than Retry-After after the refused one, and the request still ends in its event.
func TestRetryAfterIsHonoured(t *testing.T) {
	const retryAfter = 3 * time.Second
	e := newEnv(t, nil)
	const no = "retry-after-01"
	e.sb.PutOrder(kssandbox.Order{AppID: demoApp, Kind: events.KindPayment, OrderNo: no, Amount: 500, KsOrderNo: "ks-" + no,
		PayChannel: "WECHAT", Steps: []kssandbox.Step{{Status: "SUCCESS"}}})
	e.sb.RetryAfter = "3"
	e.sb.SetFault(demoApp, sandboxkit.HTTP429, 1)
	e.startReplica(nil)
	e.publish("orders.query.kuaishou.payment", []byte(`{"app_id":"`+demoApp+`","order_no":"`+no+`"}`), nil)
	natstest.CheckFor(t, 20*time.Second, 50*time.Millisecond, func() error {
		for _, ev := range e.events() {
			if ev.OrderNo == no && ev.Status == events.StatusSucceeded {
				return nil
			}
		}
		return fmt.Errorf("no event yet")
	})
	calls := e.sb.Calls(demoApp, events.KindPayment)
	if len(calls) < 2 {
		t.Fatalf("%d calls", len(calls))
	}
	gap := calls[1].Sub(calls[0])
	t.Logf("figures: retry_after=%s next_call_after=%s calls=%d", retryAfter, gap.Round(time.Millisecond), len(calls))
	if gap < retryAfter {
		t.Fatalf("the call after a 429 with Retry-After %s came %s after it", retryAfter, gap)
	}
}
