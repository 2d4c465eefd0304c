// Package bench measures the service end to end for `make bench`: the consumer runs as its own
// process (built here) against an embedded JetStream server and a sandbox that answers at
// once, and the figures come out as one table.
package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/paystatus/orderstatus/internal/config"
	"github.com/paystatus/orderstatus/internal/events"
	"github.com/paystatus/orderstatus/internal/natstest"
	"github.com/paystatus/orderstatus/internal/providers"
	"github.com/paystatus/orderstatus/internal/providers/kuaishou"
	kssandbox "github.com/paystatus/orderstatus/internal/providers/kuaishou/sandbox"
	"github.com/paystatus/orderstatus/internal/ratelimit"
)

var concurrency = envInt("ORDERS_BENCH_CONCURRENCY", 64)

type rig struct {
	t   *testing.T
	bin string
	dir string
	ns  *server.Server
	sb  *kssandbox.Sandbox
	nc  *nats.Conn
	js  jetstream.JetStream

	url      string // the consumer's nats.url
	replicas int    // the consumer's nats.replicas

	profiled bool
}

type row struct{ name, value, target string }

func appID(i int) string { return fmt.Sprintf("ks-bench-%03d", i) }

func newRig(t *testing.T) *rig {
	dir := t.TempDir()
	bin := filepath.Join(dir, "consumer")
	if out, err := exec.Command("go", "build", "-o", bin, "../../cmd/consumer").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	ns := natstest.RunServer(t)
	sb := kssandbox.New(0)
	for i := range 200 {
		sb.AddApp(appID(i), "secret")
	}
	if err := sb.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sb.Close() })
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, _ := jetstream.New(nc)
	return &rig{t: t, bin: bin, dir: dir, ns: ns, sb: sb, nc: nc, js: js, url: ns.ClientURL(), replicas: 1}
}

// orders puts n orders spread over apps and returns (app, order) pairs.
func (r *rig) orders(prefix string, n, apps int) [][2]string {
	out := make([][2]string, n)
	for i := range out {
		app, no := appID(i%apps), fmt.Sprintf("%s-%07d", prefix, i)
		r.sb.PutOrder(kssandbox.Order{AppID: app, Kind: events.KindPayment, OrderNo: no,
			Steps: []kssandbox.Step{{Status: "SUCCESS"}}, Amount: int64(i + 1), KsOrderNo: "ks" + no, PayChannel: "WECHAT"})
		out[i] = [2]string{app, no}
	}
	return out
}

// consumer is the service as a process.
type consumer struct {
	cmd     *exec.Cmd
	metrics string // its /metrics address
}

// roundTrips reads the consumer's count of JetStream round trips waited for, by op.
func (c *consumer) roundTrips(t *testing.T) map[string]float64 {
	resp, err := http.Get(c.metrics)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	s := bufio.NewScanner(resp.Body)
	for s.Scan() {
		line, ok := strings.CutPrefix(s.Text(), `orders_jetstream_round_trips_total{op="`)
		if !ok {
			continue
		}
		op, value, _ := strings.Cut(line, `"} `)
		out[op], _ = strconv.ParseFloat(value, 64)
	}
	return out
}

// freePort is a loopback port nothing listens on now.
func freePort(t *testing.T) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// startConsumer starts the consumer with its providers.kuaishou.qps at qps and the defaults.
func (r *rig) startConsumer(qps int) *consumer { return r.startConsumerWith(consumerConfig{qps: qps}) }

// consumerConfig is what a phase sets in the consumer's config beyond the rig's.
type consumerConfig struct {
	qps       int           // providers.kuaishou.qps
	follow    time.Duration // consumer.follow_delay, and twice it consumer.follow_max_delay; 0: the defaults
	callbacks string        // callbacks.listen; "": off
}

func (r *rig) startConsumerWith(cc consumerConfig) *consumer {
	cfg := filepath.Join(r.dir, fmt.Sprintf("consumer-%d.yaml", cc.qps))
	var apps strings.Builder
	for i := range 200 {
		fmt.Fprintf(&apps, "      - app_id: %s\n        app_secret: secret\n", appID(i))
	}
	follow := ""
	if cc.follow > 0 {
		follow = fmt.Sprintf("  follow_delay: %s\n  follow_max_delay: %s\n", cc.follow, 2*cc.follow)
	}
	port := freePort(r.t)
	os.WriteFile(cfg, []byte(fmt.Sprintf(`
nats:
  url: %s
  replicas: %d
consumer:
  concurrency: %d
%shttp:
  listen: 127.0.0.1:%d
callbacks:
  listen: %q
log:
  level: warn
providers:
  kuaishou:
    base_url: %s
    qps: %d
    apps:
%s`, r.url, r.replicas, concurrency, follow, port, cc.callbacks, r.sb.URL(), cc.qps, apps.String())), 0o600)
	args := []string{"--config", cfg, "--log-format", "json"}
	if prof := os.Getenv("ORDERS_BENCH_PROFILE"); prof != "" && cc.qps == 100000 && !r.profiled {
		args = append(args, "--cpu-profile", prof) // the throughput phase
		r.profiled = true
	}
	cmd := exec.Command(r.bin, args...)
	if env := os.Getenv("ORDERS_BENCH_CONSUMER_ENV"); env != "" { // e.g. GOGC=200, for the consumer alone
		cmd.Env = append(os.Environ(), strings.Fields(env)...)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		r.t.Fatal(err)
	}
	natstest.CheckFor(r.t, 20*time.Second, 20*time.Millisecond, func() error {
		_, err := r.js.Consumer(context.Background(), "ORDERS_QUERY", "orders-query")
		return err
	})
	time.Sleep(200 * time.Millisecond) // the consumer starts pulling
	return &consumer{cmd: cmd, metrics: fmt.Sprintf("http://127.0.0.1:%d/metrics", port)}
}

func (c *consumer) stop() {
	_ = c.cmd.Process.Signal(os.Interrupt)
	_ = c.cmd.Wait()
}

// procStat reads a process's CPU time (user+system) and its resident set now and at its peak.
func procStat(pid int) (cpu time.Duration, rss, peak int64) {
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
		f := strings.Fields(string(b)[strings.LastIndexByte(string(b), ')')+2:])
		ut, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		cpu = time.Duration(ut+st) * (time.Second / 100) // USER_HZ
	}
	if fh, err := os.Open(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
		s := bufio.NewScanner(fh)
		for s.Scan() {
			fields := strings.Fields(s.Text())
			if len(fields) < 2 {
				continue
			}
			v, _ := strconv.ParseInt(fields[1], 10, 64)
			switch fields[0] {
			case "VmRSS:":
				rss = v * 1024
			case "VmHWM:":
				peak = v * 1024
			}
		}
		fh.Close()
	}
	return cpu, rss, peak
}

func (r *rig) streamMsgs(name string) uint64 {
	s, err := r.js.Stream(context.Background(), name)
	if err != nil {
		return 0
	}
	info, err := s.Info(context.Background())
	if err != nil {
		return 0
	}
	return info.State.Msgs
}

func (r *rig) purge(name string) {
	if s, err := r.js.Stream(context.Background(), name); err == nil {
		_ = s.Purge(context.Background())
	}
}

// publishAll publishes one request per order, asynchronously, and waits for every ack.
func (r *rig) publishAll(subject string, orders [][2]string) {
	for i, o := range orders {
		if _, err := r.js.PublishAsync(subject, []byte(`{"app_id":"`+o[0]+`","order_no":"`+o[1]+`"}`)); err != nil {
			r.t.Fatal(err)
		}
		if i%2000 == 1999 {
			<-r.js.PublishAsyncComplete()
		}
	}
	<-r.js.PublishAsyncComplete()
}

func (r *rig) waitFor(name string, n uint64, within time.Duration) time.Time {
	natstest.CheckFor(r.t, within, 2*time.Millisecond, func() error {
		if got := r.streamMsgs(name); got < n {
			return fmt.Errorf("%s holds %d of %d", name, got, n)
		}
		return nil
	})
	return time.Now()
}

func TestBench(t *testing.T) {
	if os.Getenv("ORDERS_BENCH") == "" {
		t.Skip("run by make bench")
	}
	// The bare loop runs here with tracing off, as the service runs by default: its provider
	// client then makes calls without the HTTP instrumentation, which otel's global provider
	// (not the no-op one until set) would otherwise switch on.
	otel.SetTracerProvider(noop.NewTracerProvider())
	r := newRig(t)
	var rows []row
	if os.Getenv("ORDERS_BENCH_ONLY") == "e" { // the memory phase alone, for investigating it
		r.startConsumer(100000).stop() // provisions the streams
		rows = append(rows, r.drainBacklog())
		printRows(rows)
		return
	}
	if os.Getenv("ORDERS_BENCH_ONLY") == "h" { // the three-process cluster phase alone
		rows = append(rows, r.cluster())
		printRows(rows)
		return
	}
	if only := os.Getenv("ORDERS_BENCH_ONLY"); only == "l" || only == "m" || only == "lm" { // the notification rows alone
		if only != "m" {
			rows = append(rows, r.callsPerSettledOrder())
		}
		if only != "l" {
			rows = append(rows, r.notificationToEvent())
		}
		printRows(rows)
		return
	}
	if os.Getenv("ORDERS_BENCH_ONLY") == "d" { // the QPS fidelity phase alone (~10 s), for investigating it
		r.startConsumer(100000).stop() // provisions the streams
		rows = append(rows, r.fidelity()...)
		printRows(rows)
		return
	}

	// k: the cold burst, apps x requests each (ORDERS_BENCH_COLD, default 200x100: 20,000 requests), in rounds.
	coldApps, coldPer := 200, 100
	fmt.Sscanf(os.Getenv("ORDERS_BENCH_COLD"), "%dx%d", &coldApps, &coldPer)
	coldRounds := envInt("ORDERS_BENCH_COLD_ROUNDS", 3)
	if os.Getenv("ORDERS_BENCH_ONLY") == "k" { // the cold burst alone, for investigating it
		rows = append(rows, coldBurst(t, r.bin, r.watermillBin(), coldApps, coldPer, coldRounds)...)
		printRows(rows)
		return
	}

	if os.Getenv("ORDERS_BENCH_ONLY") == "g" { // the Watermill peer alone (~5 s), for investigating it
		rate := r.watermillPeer(20000, 0)
		rows = append(rows, row{"g. Watermill peer", fmt.Sprintf("%.0f req/s", rate), ""})
		printRows(rows)
		return
	}

	// a, b, f, g, i, j: throughput of the service, the bare loop and the Watermill peer, 20,000
	// requests over 200 apps with high limits each, in rounds taking turns, so that a slow
	// moment of the machine (other work, the disk writing back) falls on all three alike; the
	// medians are reported, and each ratio is the median of the rounds' ratios.
	const n, rounds = 20000, 3
	var svc, bare, wm []float64
	var cpu, rest time.Duration
	var last serviceRound
	onlyA := os.Getenv("ORDERS_BENCH_ONLY") == "a" // the service's throughput alone, for investigating it
	// One consumer process for every round, as in production: a process started anew finds
	// its predecessor's writes in ORDERS_RATE, takes them for another replica's, and reserves
	// rate slots by demand for 10 s (see ratelimit), which a round would measure.
	c := r.startConsumer(100000)
	for i := range rounds {
		last = r.serviceThroughput(c, n, i)
		svc, cpu, rest = append(svc, last.rate), cpu+last.cpu, rest+last.rest
		if onlyA {
			continue
		}
		bare = append(bare, r.bareLoop(n, i))
		wm = append(wm, r.watermillPeer(n, i))
	}
	runs := func(v []float64) string {
		var parts []string
		for _, x := range v {
			parts = append(parts, fmt.Sprintf("%.0f", x))
		}
		return strings.Join(parts, ", ")
	}
	rows = append(rows,
		row{"a. throughput, 20,000 requests / 200 apps", fmt.Sprintf("%.0f req/s (rounds: %s)", median(svc), runs(svc)), ">= 10,000 req/s"},
		row{"f. consumer CPU per request", fmt.Sprintf("%.0f µs", float64(cpu.Microseconds())/float64(len(svc)*n)), "<= 60 µs"},
		row{"f. the rest (NATS server, sandbox, publisher) per request", fmt.Sprintf("%.0f µs", float64(rest.Microseconds())/float64(len(svc)*n)), ""},
		last.writes, last.trips)
	if onlyA {
		if os.Getenv("ORDERS_BENCH_LATENCY_AFTER") != "" { // and the latency after them, as in a whole run
			rows = append(rows, r.latencyRow())
		}
		c.stop()
		printRows(rows)
		return
	}
	ratios := func(a, b []float64) float64 {
		var q []float64
		for i := range a {
			q = append(q, a[i]/b[i])
		}
		return median(q)
	}
	rows = append(rows,
		row{"b. bare loop (pull, HTTP, publish, ack)", fmt.Sprintf("%.0f req/s (rounds: %s)", median(bare), runs(bare)), ""},
		row{"b. ratio service / bare loop", fmt.Sprintf("%.2f", ratios(svc, bare)), ">= 0.7"},
		row{"g. Watermill peer (router, Recoverer, CorrelationID, Retry, watermill-nats)", fmt.Sprintf("%.0f req/s (rounds: %s)", median(wm), runs(wm)), ""},
		row{"g. ratio service / Watermill peer", fmt.Sprintf("%.2f", ratios(svc, wm)), ">= 1.0"})

	// c: latency at a steady 1,000 requests/s.
	rows = append(rows, r.latencyRow())
	c.stop()

	rows = append(rows, coldBurst(t, r.bin, r.watermillBin(), coldApps, coldPer, coldRounds)...)

	rows = append(rows, r.fidelity()...)

	// e: peak RSS while a backlog of 100,000 requests drains.
	r.purge("ORDERS_STATUS")
	rows = append(rows, r.drainBacklog())

	// h: throughput on a real three-process R3 cluster.
	rows = append(rows, r.cluster())

	// l, m: provider notifications, each run on a fresh server.
	rows = append(rows, r.callsPerSettledOrder(), r.notificationToEvent())
	printRows(rows)
}

// writes reads the last sequence of each stream the service writes: ORDERS_STATE,
// ORDERS_RATE (the limiter), ORDERS_STATUS (events) and ORDERS_QUERY (requests, and any write
// beyond them, counted as checks).
func (r *rig) writes() (seqs [4]uint64) {
	for i, name := range []string{"KV_ORDERS_STATE", "KV_ORDERS_RATE", "ORDERS_STATUS", "ORDERS_QUERY"} {
		if s, err := r.js.Stream(context.Background(), name); err == nil {
			if info, err := s.Info(context.Background()); err == nil {
				seqs[i] = info.State.LastSeq
			}
		}
	}
	return seqs
}

// writesPerChange is the row of server writes per new status, by kind, since before: every
// request of the throughput phase is a change, and each is acked once.
func (r *rig) writesPerChange(before [4]uint64, n int) row {
	after := r.writes()
	per := func(i int, extra int) float64 { return (float64(after[i]-before[i]) - float64(extra)) / float64(n) }
	state, rate, evs, checks := per(0, 0), per(1, 0), per(2, 0), per(3, n)
	return row{"i. server writes per change", fmt.Sprintf("%.2f (state %.2f, limiter %.2f, event %.2f, checks %.2f, ack 1)",
		state+rate+evs+checks+1, state, rate, evs, checks), "fewer than 8 (the last release)"}
}

// roundTripsPerChange is the row of JetStream round trips the consumer waited for per new
// status, by op, between two readings of its metrics.
func roundTripsPerChange(before, after map[string]float64, n int) row {
	var total float64
	var parts []string
	for _, op := range []string{"claim", "state_read", "event", "clear", "limiter"} {
		d := (after[op] - before[op]) / float64(n)
		total += d
		parts = append(parts, fmt.Sprintf("%s %.2f", op, d))
	}
	// Not waited for by any request, so not in the total: the limiter's renewals in the background.
	parts = append(parts, fmt.Sprintf("+ limiter in background %.2f", (after["limiter_background"]-before["limiter_background"])/float64(n)))
	return row{"j. JetStream round trips waited per change", fmt.Sprintf("%.2f (%s)", total, strings.Join(parts, ", ")), "<= 1"}
}

// serviceRound is one round of the service's throughput phase.
type serviceRound struct {
	rate          float64
	cpu, rest     time.Duration // the consumer's CPU, and the rest of the rig's
	writes, trips row
}

// serviceThroughput measures the consumer c, a process of its own, over n new orders (round
// names them).
func (r *rig) serviceThroughput(c *consumer, n, round int) serviceRound {
	orders := r.orders(fmt.Sprintf("tput%d", round), n, 200)
	before := r.streamMsgs("ORDERS_STATUS")
	cpu0, _, _ := procStat(c.cmd.Process.Pid)
	rig0, _, _ := procStat(os.Getpid())
	writes0, trips0 := r.writes(), c.roundTrips(r.t)
	start := time.Now()
	r.publishAll("orders.query.kuaishou.payment", orders)
	end := r.waitFor("ORDERS_STATUS", before+uint64(n), 120*time.Second)
	cpu1, _, _ := procStat(c.cmd.Process.Pid)
	rig1, _, _ := procStat(os.Getpid())
	time.Sleep(time.Second) // the writes not waited for land
	return serviceRound{rate: float64(n) / end.Sub(start).Seconds(), cpu: cpu1 - cpu0, rest: rig1 - rig0,
		writes: r.writesPerChange(writes0, n), trips: roundTripsPerChange(trips0, c.roundTrips(r.t), n)}
}

func median(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	return s[len(s)/2]
}

func printRows(rows []row) {
	w := 58
	for _, r := range rows {
		w = max(w, len(r.name))
	}
	fmt.Printf("\n%-*s %-36s %s\n", w, "measure", "value", "target")
	fmt.Printf("%s\n", strings.Repeat("-", w+52))
	for _, r := range rows {
		fmt.Printf("%-*s %-36s %s\n", w, r.name, r.value, r.target)
	}
	fmt.Println()
}

// drainBacklog measures the consumer's peak RSS while a backlog of 100,000 requests drains.
func (r *rig) drainBacklog() row {
	const backlog = 100000
	bl := r.orders("rss", backlog, 200)
	r.publishAll("orders.query.kuaishou.payment", bl)
	c := r.startConsumer(100000)
	var peak int64
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-done:
				return
			case <-time.After(50 * time.Millisecond):
				_, rss, hwm := procStat(c.cmd.Process.Pid)
				peak = max(peak, rss, hwm)
			}
		}
	}()
	drainStart := time.Now()
	r.waitFor("ORDERS_STATUS", backlog, 240*time.Second)
	drained := time.Since(drainStart)
	close(done)
	_, _, hwm := procStat(c.cmd.Process.Pid)
	peak = max(peak, hwm)
	c.stop()
	return row{"e. consumer peak RSS, 100,000 backlog", fmt.Sprintf("%.1f MB (drained in %.1f s, %.0f req/s)", float64(peak)/1e6, drained.Seconds(), backlog/drained.Seconds()), "<= 100 MB"}
}

// latencyRow is phase c: the latency from publish to event at a steady 1,000 requests/s.
func (r *rig) latencyRow() row {
	lat := r.latency(5000, 1000)
	return row{"c. latency at 1,000 req/s, p50 / p99", fmt.Sprintf("%.2f ms / %.2f ms", ms(lat[len(lat)/2]), ms(lat[len(lat)*99/100])), "p99 <= 5 ms"}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// latency publishes total requests at rate per second and returns the sorted times from
// publish to event receipt.
func (r *rig) latency(total, rate int) []time.Duration {
	orders := r.orders("lat", total, 200)
	return r.toEvent(orders, rate, func(i int) {
		o := orders[i]
		if _, err := r.js.PublishAsync("orders.query.kuaishou.payment", []byte(`{"app_id":"`+o[0]+`","order_no":"`+o[1]+`"}`)); err != nil {
			r.t.Fatal(err)
		}
	})
}

// toEvent calls send(i) for each of orders, at rate per second, and returns the sorted times
// from each call to its order's event arriving on orders.status.>.
func (r *rig) toEvent(orders [][2]string, rate int, send func(i int)) []time.Duration {
	total := len(orders)
	sent := make([]atomic.Int64, total)
	got := make([]time.Duration, 0, total)
	var mu sync.Mutex
	index := map[string]int{}
	for i, o := range orders {
		index[o[1]] = i
	}
	sub, err := r.nc.Subscribe("orders.status.>", func(m *nats.Msg) {
		now := time.Now().UnixNano()
		ev, err := events.DecodeEvent(m.Header.Get("Content-Type"), m.Data)
		if err != nil {
			return
		}
		i, ok := index[ev.OrderNo]
		if !ok {
			return
		}
		mu.Lock()
		got = append(got, time.Duration(now-sent[i].Load()))
		mu.Unlock()
	})
	if err != nil {
		r.t.Fatal(err)
	}
	defer sub.Unsubscribe() // on a failure
	if err := r.nc.Flush(); err != nil {
		r.t.Fatal(err)
	}
	tick := time.NewTicker(time.Second / time.Duration(rate))
	for i := range orders {
		<-tick.C
		sent[i].Store(time.Now().UnixNano())
		send(i)
	}
	tick.Stop()
	natstest.CheckFor(r.t, 30*time.Second, 10*time.Millisecond, func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(got) < total {
			return fmt.Errorf("%d of %d events", len(got), total)
		}
		return nil
	})
	_ = sub.Unsubscribe()
	mu.Lock()
	defer mu.Unlock()
	sort.Slice(got, func(a, b int) bool { return got[a] < got[b] })
	return got
}

// bareLoop does the same work with none of the service's features: pull a request, make the
// same signed HTTP call, publish one event asynchronously, ack; at the same concurrency.
func (r *rig) bareLoop(n, round int) float64 {
	stop, _ := r.startBareLoop(200)
	defer stop()
	orders := r.orders(fmt.Sprintf("bare%d", round), n, 200)
	before := r.streamMsgs("BARE_STATUS")
	start := time.Now()
	r.publishAll("bare.query.x", orders)
	end := r.waitFor("BARE_STATUS", before+uint64(n), 120*time.Second)
	return float64(n) / end.Sub(start).Seconds()
}

// startBareLoop starts the bare loop's workers for apps apps: its streams and durable consumer
// (made if missing), a new client (no token yet) and a new iterator. remade counts the pulls
// made again after a missed heartbeat; stop ends the iterator.
func (r *rig) startBareLoop(apps int) (stop func(), remade *atomic.Int64) {
	ctx := context.Background()
	if _, err := r.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: "BARE_QUERY", Subjects: []string{"bare.query.>"}, Retention: jetstream.WorkQueuePolicy}); err != nil {
		r.t.Fatal(err)
	}
	if _, err := r.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: "BARE_STATUS", Subjects: []string{"bare.status.>"}}); err != nil {
		r.t.Fatal(err)
	}
	var list []config.App
	for i := range apps {
		list = append(list, config.App{AppID: appID(i), AppSecret: "secret"})
	}
	p, err := kuaishou.New(config.Provider{BaseURL: r.sb.URL(), QPS: 100000, Timeout: 5 * time.Second, Apps: list})
	if err != nil {
		r.t.Fatal(err)
	}
	cons, err := r.js.CreateOrUpdateConsumer(ctx, "BARE_QUERY", jetstream.ConsumerConfig{Durable: "bare", AckPolicy: jetstream.AckExplicitPolicy, MaxAckPending: 20000})
	if err != nil {
		r.t.Fatal(err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(concurrency))
	if err != nil {
		r.t.Fatal(err)
	}
	remade = new(atomic.Int64)
	for range concurrency {
		go func() {
			for {
				msg, err := it.Next()
				if errors.Is(err, jetstream.ErrNoHeartbeat) {
					remade.Add(1)
					continue
				}
				if err != nil {
					return
				}
				req, err := events.DecodeRequest("", msg.Data())
				if err != nil {
					continue
				}
				res, err := p.Query(ctx, providers.Query{Kind: events.KindPayment, AppID: req.AppID, OrderNo: req.OrderNo})
				if err != nil {
					_ = msg.Nak()
					continue
				}
				body, _ := events.Msgpack.Marshal(events.StatusEvent{AppID: req.AppID, OrderNo: req.OrderNo, Status: res.Status, Amount: res.Amount})
				_, _ = r.js.PublishAsync("bare.status."+string(res.Status), body)
				_ = msg.Ack()
			}
		}()
	}
	return it.Stop, remade
}

// fidelity is phase d: QPS fidelity, 10 apps at qps 30 with a backlog.
func (r *rig) fidelity() []row {
	r.purge("ORDERS_STATUS")
	const perApp = 240
	fid := r.orders("fid", 10*perApp, 10)
	phaseStart := time.Now() // the apps saw calls in earlier phases: count only this one's
	r.publishAll("orders.query.kuaishou.payment", fid)
	c := r.startConsumer(30)
	r.waitFor("ORDERS_STATUS", uint64(len(fid)), 120*time.Second)
	c.stop()
	worst, minMean := 0, 1e9
	for i := range 10 {
		var calls []time.Time
		for _, c := range r.sb.Calls(appID(i), events.KindPayment) {
			if c.After(phaseStart) {
				calls = append(calls, c)
			}
		}
		worst = max(worst, ratelimit.MaxCallsPerWindow(calls, time.Second))
		sort.Slice(calls, func(a, b int) bool { return calls[a].Before(calls[b]) })
		if dump := os.Getenv("ORDERS_BENCH_DUMP"); dump != "" { // each app's arrival times, ns, one a line
			var b strings.Builder
			for _, c := range calls {
				fmt.Fprintf(&b, "%d\n", c.UnixNano())
			}
			os.WriteFile(fmt.Sprintf("%s-%d.txt", dump, i), []byte(b.String()), 0o644)
		}
		mean := float64(len(calls)-1) / calls[len(calls)-1].Sub(calls[0]).Seconds() / 30
		minMean = min(minMean, mean)
	}
	return []row{
		{"d. QPS fidelity, 10 apps at qps 30: most calls in any 1 s", strconv.Itoa(worst), "<= 30"},
		{"d. QPS fidelity: mean rate / qps (worst app)", fmt.Sprintf("%.3f", minMean), ">= 0.95"}}
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}
