package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/paystatus/orderstatus/internal/config"
	"github.com/paystatus/orderstatus/internal/providers/kuaishou"
	kssandbox "github.com/paystatus/orderstatus/internal/providers/kuaishou/sandbox"
	"github.com/paystatus/orderstatus/internal/providers/kudian"
	kdsandbox "github.com/paystatus/orderstatus/internal/providers/kudian/sandbox"
)

type devCmd struct {
	Dir       string `default:".consumer-dev" placeholder:"DIR" help:"Folder for the embedded server's data."`
	NATSPort  int    `name:"nats-port" default:"4222" placeholder:"N" help:"Port of the embedded NATS server on 127.0.0.1 (-1: any free port)."`
	NATSURL   string `name:"nats-url" placeholder:"URL" help:"Use these NATS server(s) instead of an embedded one, e.g. the cluster of deploy/nats."`
	Replicas  int    `default:"1" placeholder:"N" help:"Replicas of streams and KV buckets (3 on a three-node cluster)."`
	Encoding  string `default:"json" enum:"json,msgpack" help:"Encoding of status events: json (readable in nats sub) or msgpack."`
	Reset     bool   `help:"Delete the data folder first."`
	LogFormat string `default:"auto" enum:"auto,text,json" help:"auto, text or json."`
	HTTP      string `name:"http" default:"127.0.0.1:8080" placeholder:"ADDR" help:"Address of /healthz, /readyz and /metrics (\"\" turns them off)."`
	Callbacks string `name:"callbacks" default:"127.0.0.1:0" placeholder:"ADDR" help:"Address of POST /callbacks/kuaishou, where the Kuaishou sandbox sends its notifications when a demo order changes (port 0: any free port; \"\" turns them off)."`
	// The sandbox's disorder, off by default: duplicates and notifications out of order.
	NotifyDuplicateRate float64 `name:"notify-duplicate-rate" default:"0" placeholder:"P" help:"Chance (0 to 1) that the Kuaishou sandbox sends a notification twice, same message_id, within half a second, as a provider's retries sometimes do."`
	NotifyReorderRate   float64 `name:"notify-reorder-rate" default:"0" placeholder:"P" help:"Chance (0 to 1) that the Kuaishou sandbox holds a notification back until the order's next one is delivered (a PROCESSING after its SUCCESS), or for a minute when none comes."`
}

// Validate stops the command at once on a rate outside 0 to 1.
func (c *devCmd) Validate() error {
	for _, r := range []struct {
		flag string
		v    float64
	}{{"--notify-duplicate-rate", c.NotifyDuplicateRate}, {"--notify-reorder-rate", c.NotifyReorderRate}} {
		if !(r.v >= 0 && r.v <= 1) {
			return fmt.Errorf("%s: %v is not between 0 and 1", r.flag, r.v)
		}
	}
	return nil
}

// Run runs the whole system on this machine with no set-up: an embedded JetStream server,
// the provider sandboxes with demo apps and orders, and the service; then it prints what to type.
func (c *devCmd) Run(e *env) error {
	ctx, stdout, stderr := e.ctx, e.stdout, e.stderr
	dir, port, natsURL, replicas, encoding, reset, logFormat, httpAddr := &c.Dir, &c.NATSPort, &c.NATSURL, &c.Replicas, &c.Encoding, &c.Reset, &c.LogFormat, &c.HTTP
	log, err := newLogger(stderr, *logFormat, "info")
	if err != nil {
		return err
	}
	if *reset {
		if err := os.RemoveAll(*dir); err != nil {
			return err
		}
	}
	store, err := filepath.Abs(filepath.Join(*dir, "jetstream"))
	if err != nil {
		return err
	}
	if err := os.MkdirAll(store, 0o755); err != nil {
		return err
	}

	url := *natsURL
	if url == "" { // NATS, embedded
		ns, err := startEmbedded(*port, store)
		if err != nil {
			return err
		}
		defer func() { ns.Shutdown(); ns.WaitForShutdown() }()
		url = ns.ClientURL()
	}

	// Providers, sandboxed.
	ks := kssandbox.New(30)
	kssandbox.LoadDemo(ks)
	if err := ks.Start("127.0.0.1:0"); err != nil {
		return fmt.Errorf("kuaishou sandbox: %w", err)
	}
	defer ks.Close()
	kd := kdsandbox.New(30)
	kdsandbox.LoadDemo(kd)
	if err := kd.Start("127.0.0.1:0"); err != nil {
		return fmt.Errorf("kudian sandbox: %w", err)
	}
	defer kd.Close()

	cfg := config.Default()
	cfg.NATS.URL = url
	cfg.NATS.Replicas = *replicas
	cfg.Events.Encoding = *encoding
	cfg.HTTP.Listen = *httpAddr
	if c.Callbacks != "" {
		if cfg.Callbacks.Listen, err = pickPort(c.Callbacks); err != nil {
			return err
		}
	}
	cfg.Providers = map[string]config.Provider{
		kuaishou.Name: {BaseURL: ks.URL(), QPS: 30, Timeout: 5 * time.Second, Apps: kssandbox.DemoApps()},
		kudian.Name:   {BaseURL: kd.URL(), QPS: 30, Timeout: 5 * time.Second, Apps: kdsandbox.DemoApps()},
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	errc := make(chan error, 1)
	started := make(chan struct{})
	go func() { errc <- serve(ctx, cfg, log, func() { close(started) }) }()
	select {
	case <-started:
	case err := <-errc:
		return err
	}
	if cfg.Callbacks.Listen != "" { // the sandbox tells the service of changes, as Kuaishou would
		notifyURL := "http://" + cfg.Callbacks.Listen + "/callbacks/kuaishou"
		go ks.Notify(ctx, kssandbox.NotifyOptions{URL: notifyURL, DuplicateRate: c.NotifyDuplicateRate, ReorderRate: c.NotifyReorderRate})
		log.Info("the Kuaishou sandbox notifies changes of its orders", "notify_url", notifyURL,
			"duplicate_rate", c.NotifyDuplicateRate, "reorder_rate", c.NotifyReorderRate)
	}
	printDevGuide(stdout, url, *dir, ks.URL(), kd.URL(), *encoding)
	err = <-errc
	log.Info("dev environment stopped")
	return err
}

// pickPort is addr with a port the system chose when its port is 0, so the sandbox knows
// where to send notifications.
func pickPort(addr string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || port != "0" {
		return addr, err
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return "", fmt.Errorf("--callbacks %s: %w", addr, err)
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// startEmbedded runs a JetStream server on 127.0.0.1:port with its data in store.
func startEmbedded(port int, store string) (*server.Server, error) {
	if port > 0 {
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			return nil, fmt.Errorf("port %d is taken (another nats-server or consumer dev?): use --nats-port", port)
		}
		ln.Close()
	}
	ns, err := server.NewServer(&server.Options{
		ServerName: "consumer-dev", Host: "127.0.0.1", Port: port, JetStream: true, StoreDir: store, NoSigs: true,
	})
	if err != nil {
		return nil, fmt.Errorf("embedded NATS server: %w", err)
	}
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		return nil, fmt.Errorf("embedded NATS server did not start")
	}
	return ns, nil
}

func printDevGuide(w io.Writer, natsURL, dir, ksURL, kdURL, encoding string) {
	translate := ""
	if encoding == "msgpack" {
		self, err := os.Executable()
		if err != nil {
			self = "consumer"
		}
		translate = " --translate '" + self + " decode'"
	}
	nats := "nats"
	if natsURL != "nats://127.0.0.1:4222" {
		nats += " -s " + natsURL
	}
	where := "(data in " + dir + ")"
	if !strings.HasPrefix(natsURL, "nats://127.0.0.1:") || strings.Contains(natsURL, ",") {
		where = "(external)"
	}
	ks, kd := kssandbox.DemoAppID, kdsandbox.DemoAppID
	fmt.Fprintf(w, `
order-status consumer: dev environment ready
  NATS with JetStream  %[1]s  %[2]s
  Kuaishou sandbox     %[3]s  (app %[6]s)
  Kudian sandbox       %[4]s  (app %[7]s)

Watch events and dead letters, in one terminal each:
  %[5]s sub 'orders.status.>'%[8]s
  %[5]s sub 'orders.dlq.>'

The Kuaishou sandbox notifies the service of every change of its orders, as Kuaishou would
(unless --callbacks ""): events with "source":"callback" arrive before any query. With
--notify-duplicate-rate 0.3 --notify-reorder-rate 0.3 some come twice and some after the
order's next one: still one event per change, never backwards.

Query the documents' example payment (it turns SUCCESS 30 s after its first query; the sandbox
notifies that change, or publish the query again after that to see it, with previous_status):
  %[5]s pub orders.query.kuaishou.payment '{"app_id":"%[6]s","order_no":"%[9]s"}'

More demo orders:
  %[5]s pub orders.query.kuaishou.settlement '{"app_id":"%[6]s","order_no":"%[9]s"}'
  %[5]s pub orders.query.kuaishou.refund '{"app_id":"%[6]s","order_no":"1660811124083refund"}'
  %[5]s pub orders.query.kuaishou.payment '{"app_id":"%[6]s","order_no":"demo-timeout-01"}'
  %[5]s pub orders.query.kudian.payment '{"app_id":"%[7]s","provider_order_no":"%[10]s"}'
  %[5]s pub orders.query.kudian.payment '{"app_id":"%[7]s","order_no":"300230547599788001"}'
A bad request, dead-lettered with its reason:
  %[5]s pub orders.query.kuaishou.payment '{"app_id":"%[6]s"}'
Last known status of an order:
  %[5]s kv get ORDERS_STATE kuaishou.payment.%[6]s.%[9]s

Ctrl-C stops everything.
`, natsURL, where, ksURL, kdURL, nats, ks, kd, translate, kssandbox.DemoOrderNo, kdsandbox.DemoPayNo)
}
