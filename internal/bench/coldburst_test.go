package bench

import (
	"bufio"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/paystatus/orderstatus/internal/natstest"
	kssandbox "github.com/paystatus/orderstatus/internal/providers/kuaishou/sandbox"
)

// burst is one cold-burst run: first publish to last event, the longest wait between two
// consecutive events, the pulls made again after a missed heartbeat, and per request the CPU
// of every process of the run (the rig's: server, sandbox, publisher; and the contender's) and
// the messages through the server (in and out: publishes, deliveries, acks, replies).
type burst struct {
	rate   float64
	gap    time.Duration
	remade int
	cpu    time.Duration
	msgs   float64
}

// costs reads, from the start of a run, what its processes and server spend; done gives the
// run's costs per request of n.
func (r *rig) costs(pids ...int) (done func(b *burst, n int)) {
	pids = append(pids, os.Getpid())
	cpu := func() (sum time.Duration) {
		for _, pid := range pids {
			c, _, _ := procStat(pid)
			sum += c
		}
		return sum
	}
	msgs := func() int64 {
		v, err := r.ns.Varz(nil)
		if err != nil {
			r.t.Fatal(err)
		}
		return v.InMsgs + v.OutMsgs
	}
	cpu0, msgs0 := cpu(), msgs()
	return func(b *burst, n int) {
		b.cpu = (cpu() - cpu0) / time.Duration(n)
		b.msgs = float64(msgs()-msgs0) / float64(n)
	}
}

// eventClock records when each event arrives on subject.
type eventClock struct {
	mu    sync.Mutex
	times []time.Time
}

func (c *eventClock) subscribe(t *testing.T, nc *nats.Conn, subject string) *nats.Subscription {
	sub, err := nc.Subscribe(subject, func(*nats.Msg) {
		now := time.Now()
		c.mu.Lock()
		c.times = append(c.times, now)
		c.mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return sub
}

// wait waits until n events have arrived, then measures the run from start; the gaps are
// those between consecutive events, while requests wait.
func (c *eventClock) wait(t *testing.T, n int, start time.Time) burst {
	natstest.CheckFor(t, 120*time.Second, 2*time.Millisecond, func() error {
		c.mu.Lock()
		defer c.mu.Unlock()
		if len(c.times) < n {
			return fmt.Errorf("%d of %d events", len(c.times), n)
		}
		return nil
	})
	c.mu.Lock()
	defer c.mu.Unlock()
	var gap time.Duration
	prev := c.times[0]
	for _, at := range c.times[:n] {
		gap = max(gap, at.Sub(prev))
		prev = at
	}
	return burst{rate: float64(n) / c.times[n-1].Sub(start).Seconds(), gap: gap}
}

// freshRig is a fresh server, and a sandbox with apps apps, for a run that must see no other
// run's streams or orders (a cold-burst run of one contender, a run of row l or m).
func freshRig(t *testing.T, apps int) *rig {
	ns := natstest.RunServer(t)
	sb := kssandbox.New(0)
	for i := range apps {
		sb.AddApp(appID(i), "secret")
	}
	if err := sb.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	js, _ := jetstream.New(nc)
	return &rig{t: t, ns: ns, sb: sb, nc: nc, js: js, url: ns.ClientURL(), replicas: 1}
}

func (r *rig) closeFresh() {
	r.nc.Close()
	r.sb.Close()
	r.ns.Shutdown()
	r.ns.WaitForShutdown()
}

// publishBurst publishes one request per order by async publish, as fast as the server takes
// them, and returns when the first was sent.
func (r *rig) publishBurst(subject string, orders [][2]string) time.Time {
	start := time.Now()
	r.publishAll(subject, orders)
	return start
}

// coldService is the cold-burst run of the service: a process with the default config on a
// fresh server, the burst published as soon as /readyz answers 200.
func (r *rig) coldService(bin string, apps, per, round int) burst {
	dir := r.t.TempDir()
	cfg := filepath.Join(dir, "consumer.yaml")
	var appList strings.Builder
	for i := range apps {
		fmt.Fprintf(&appList, "      - app_id: %s\n        app_secret: secret\n", appID(i))
	}
	port := freePort(r.t)
	os.WriteFile(cfg, []byte(fmt.Sprintf(`
nats:
  url: %s
http:
  listen: 127.0.0.1:%d
log:
  level: warn
providers:
  kuaishou:
    base_url: %s
    qps: 100000
    apps:
%s`, r.url, port, r.sb.URL(), appList.String())), 0o600)
	cmd := exec.Command(bin, "--config", cfg, "--log-format", "json")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		r.t.Fatal(err)
	}
	c := &consumer{cmd: cmd, metrics: fmt.Sprintf("http://127.0.0.1:%d/metrics", port)}
	defer c.stop()
	orders := r.orders(fmt.Sprintf("cold%d", round), apps*per, apps)
	var clock eventClock
	defer clock.subscribe(r.t, r.nc, "orders.status.>").Unsubscribe()
	ready := fmt.Sprintf("http://127.0.0.1:%d/readyz", port)
	natstest.CheckFor(r.t, 30*time.Second, time.Millisecond, func() error {
		resp, err := http.Get(ready)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return errors.New(resp.Status)
		}
		return nil
	})
	costs := r.costs(cmd.Process.Pid)
	start := r.publishBurst("orders.query.kuaishou.payment", orders)
	b := clock.wait(r.t, len(orders), start)
	costs(&b, len(orders))
	b.remade = int(c.counter(r.t, "orders_pulls_remade_total"))
	return b
}

// coldBareLoop is the cold-burst run of the bare loop: a new client (no token yet) and a new
// iterator on a fresh server, the burst published once it pulls.
func (r *rig) coldBareLoop(apps, per, round int) burst {
	orders := r.orders(fmt.Sprintf("coldbare%d", round), apps*per, apps)
	var clock eventClock
	defer clock.subscribe(r.t, r.nc, "bare.status.>").Unsubscribe()
	stop, remade := r.startBareLoop(apps)
	defer stop()
	costs := r.costs()
	start := r.publishBurst("bare.query.x", orders)
	b := clock.wait(r.t, len(orders), start)
	costs(&b, len(orders))
	b.remade = int(remade.Load())
	return b
}

// coldWatermill is the cold-burst run of the Watermill peer: a new process on a fresh server,
// the burst published once it prints ready. Its subscription is pushed, so it makes no pulls.
func (r *rig) coldWatermill(bin string, apps, per, round int) burst {
	orders := r.orders(fmt.Sprintf("coldwm%d", round), apps*per, apps)
	var clock eventClock
	defer clock.subscribe(r.t, r.nc, "wm.status.>").Unsubscribe()
	stop, pid := r.startWatermill(bin, apps, nil)
	defer stop()
	costs := r.costs(pid)
	start := r.publishBurst("wm.query.kuaishou.payment", orders)
	b := clock.wait(r.t, len(orders), start)
	costs(&b, len(orders))
	return b
}

// coldBurst is row k: each contender, in turn, on a fresh server, apps at qps 100000 and per
// new orders each published right after it is ready; rounds interleave the three.
func coldBurst(t *testing.T, consumerBin, watermillBin string, apps, per, rounds int) []row {
	var svc, bare, wm []burst
	for i := range rounds {
		for _, run := range []func(r *rig){
			func(r *rig) { svc = append(svc, r.coldService(consumerBin, apps, per, i)) },
			func(r *rig) { bare = append(bare, r.coldBareLoop(apps, per, i)) },
			func(r *rig) { wm = append(wm, r.coldWatermill(watermillBin, apps, per, i)) },
		} {
			r := freshRig(t, apps)
			run(r)
			r.closeFresh()
		}
	}
	show := func(bs []burst) string {
		var rates []float64
		var parts []string
		var gap time.Duration
		var cpus, msgs []float64
		remade := 0
		for _, b := range bs {
			rates = append(rates, b.rate)
			parts = append(parts, fmt.Sprintf("%.0f", b.rate))
			gap = max(gap, b.gap)
			remade += b.remade
			cpus, msgs = append(cpus, float64(b.cpu.Microseconds())), append(msgs, b.msgs)
		}
		return fmt.Sprintf("%.0f req/s (rounds: %s), longest gap %d ms, re-made pulls %d; per request %.0f µs CPU, %.1f server messages",
			median(rates), strings.Join(parts, ", "), gap.Milliseconds(), remade, median(cpus), median(msgs))
	}
	ratio := func(a, b []burst) float64 {
		var q []float64
		for i := range a {
			q = append(q, a[i].rate/b[i].rate)
		}
		return median(q)
	}
	size := fmt.Sprintf("%d apps x %d", apps, per)
	return []row{
		{"k. cold burst, " + size + ": service", show(svc), "no gap > 200 ms, 0 re-made"},
		{"k. cold burst: bare loop", show(bare), ""},
		{"k. cold burst: Watermill peer (pushed: no pulls)", show(wm), ""},
		{"k. cold burst: ratio service / bare loop, / Watermill", fmt.Sprintf("%.2f, %.2f", ratio(svc, bare), ratio(svc, wm)), ">= 0.7, >= 1.1"},
	}
}

// counter reads one counter of the consumer's /metrics (0 when it is not there).
func (c *consumer) counter(t *testing.T, name string) float64 {
	resp, err := http.Get(c.metrics)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	s := bufio.NewScanner(resp.Body)
	for s.Scan() {
		if value, ok := strings.CutPrefix(s.Text(), name+" "); ok {
			v, _ := strconv.ParseFloat(value, 64)
			return v
		}
	}
	return 0
}
