package handlers_test

import (
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/paystatus/orderstatus/internal/config"
	"github.com/paystatus/orderstatus/internal/events"
	"github.com/paystatus/orderstatus/internal/natsinfra"
	"github.com/paystatus/orderstatus/internal/natstest"
	"github.com/paystatus/orderstatus/internal/providers/kuaishou"
	kssandbox "github.com/paystatus/orderstatus/internal/providers/kuaishou/sandbox"
	"github.com/paystatus/orderstatus/internal/telemetry"
)

// A burst larger than the fetch budget arrives before the first access token is answered, so
// every request taken waits and the budget runs out. The pulls never ask for more messages
// than the budget can take: none waits in the client where no fetcher reads it, the pull
// accounting never drifts, and no pull is made again after a missed heartbeat, through a wait
// longer than two heartbeats. Once the token answers go out, every request gives its event.
func TestBurstBeyondTheBudgetPullsOnlyWhatItCanTake(t *testing.T) {
	const apps, perApp = 20, 20
	var appIDs []string
	e := newEnv(t, func(c *config.Config) {
		c.Consumer.AckWait = 30 * time.Second
		p := c.Providers[kuaishou.Name]
		p.QPS, p.Timeout, p.Apps = 100000, 20*time.Second, nil
		for i := range apps {
			appIDs = append(appIDs, fmt.Sprintf("ks-burst-%02d", i))
			p.Apps = append(p.Apps, config.App{AppID: appIDs[i], AppSecret: "secret"})
		}
		c.Providers[kuaishou.Name] = p
	})
	budget := 16 * e.cfg.Consumer.Concurrency // the scheduler's fetch budget
	if apps*perApp <= budget {
		t.Fatalf("the burst (%d) must exceed the fetch budget (%d)", apps*perApp, budget)
	}
	for _, id := range appIDs {
		e.sb.AddApp(id, "secret")
	}

	// Every pull request the replica makes, in order: how many messages it asks for.
	var mu sync.Mutex
	var batches []int
	pulls, err := e.nc.Subscribe("$JS.API.CONSUMER.MSG.NEXT."+natsinfra.QueryStream+"."+e.cfg.Consumer.Name, func(m *nats.Msg) {
		var req struct {
			Batch int `json:"batch"`
		}
		_ = json.Unmarshal(m.Data, &req)
		mu.Lock()
		batches = append(batches, req.Batch)
		mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	defer pulls.Unsubscribe()
	if err := e.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	asked := func() (total int) {
		mu.Lock()
		defer mu.Unlock()
		for _, b := range batches {
			total += b
		}
		return total
	}

	issued, release := e.sb.HoldTokenAnswers()
	defer release()
	e.metrics = telemetry.NewMetrics(prometheus.NewRegistry())
	e.startReplica(nil)
	for i := range apps * perApp {
		app, no := appIDs[i%apps], fmt.Sprintf("burst-%04d", i)
		e.sb.PutOrder(kssandbox.Order{AppID: app, Kind: events.KindPayment, OrderNo: no,
			Steps: []kssandbox.Step{{Status: "SUCCESS"}}, Amount: int64(100 + i), KsOrderNo: "ks-" + no, PayChannel: "WECHAT"})
		if _, err := e.js.PublishAsync("orders.query.kuaishou.payment", []byte(`{"app_id":"`+app+`","order_no":"`+no+`"}`)); err != nil {
			t.Fatal(err)
		}
	}
	<-e.js.PublishAsyncComplete()
	<-issued // the first token fetch is under way, and held

	// The budget fills with requests waiting for their tokens; then the replica waits, past
	// two heartbeats, with the budget spent.
	natstest.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if n := testutil.ToFloat64(e.metrics.InFlight); n < float64(budget) {
			return fmt.Errorf("%v requests taken, want the budget, %d", n, budget)
		}
		return nil
	})
	time.Sleep(5 * time.Second) // a pull heartbeats every 2 s: two missed ones would show
	if got := asked(); got > budget {
		mu.Lock()
		t.Errorf("the pulls asked for %d messages while the budget takes %d (batches %v)", got, budget, batches)
		mu.Unlock()
	}
	release()

	total, duplicates := e.countEvents(apps*perApp, 30*time.Second)
	if total != apps*perApp || duplicates != 0 {
		t.Errorf("%d events (%d duplicates), want %d", total, duplicates, apps*perApp)
	}
	if n := testutil.ToFloat64(e.metrics.PullsRemade); n != 0 {
		t.Errorf("%v pulls made again after a missed heartbeat, want 0", n)
	}
	mu.Lock()
	made := len(batches)
	mu.Unlock()
	t.Logf("figures: burst %d, fetch budget %d, pulls %d asking for %d messages", apps*perApp, budget, made, asked())
}
