package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/paystatus/orderstatus/internal/config"
	"github.com/paystatus/orderstatus/internal/events"
	"github.com/paystatus/orderstatus/internal/natstest"
	kssandbox "github.com/paystatus/orderstatus/internal/providers/kuaishou/sandbox"
	"github.com/paystatus/orderstatus/internal/providers/registry"
)

// syncBuffer is a bytes.Buffer safe to write from the command and read from the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// startCommand runs the command in the background until stop is called or the test ends;
// stop fails the test unless the command exits 0.
func startCommand(t *testing.T, args ...string) (stdout, stderr *syncBuffer, stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	stdout, stderr = &syncBuffer{}, &syncBuffer{}
	code := make(chan int, 1)
	go func() { code <- run(ctx, args, strings.NewReader(""), stdout, stderr) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case c := <-code:
				if c != 0 {
					t.Errorf("exit code %d; stderr:\n%s", c, stderr.String())
				}
			case <-time.After(20 * time.Second):
				t.Error("command did not stop after its context ended")
			}
		})
	}
	t.Cleanup(stop)
	return stdout, stderr, stop
}

func receiveEvent(t *testing.T, sub *nats.Subscription) events.StatusEvent {
	t.Helper()
	m, err := sub.NextMsg(10 * time.Second)
	if err != nil {
		t.Fatalf("no status event: %v", err)
	}
	ev, err := events.DecodeEvent(m.Header.Get("Content-Type"), m.Data)
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

// `consumer dev` prints nats CLI lines; the printed pub line, sent as printed, gives an event.
func TestDevPrintedCommandsWork(t *testing.T) {
	stdout, stderr, _ := startCommand(t, "dev", "--dir", t.TempDir(), "--nats-port", "-1", "--http", "127.0.0.1:0", "--callbacks", "", "--log-format", "json")
	pubRe := regexp.MustCompile(`nats -s (\S+) pub (orders\.query\.kuaishou\.payment) '([^']+)'`)
	var m []string
	natstest.CheckFor(t, 20*time.Second, 20*time.Millisecond, func() error {
		if m = pubRe.FindStringSubmatch(stdout.String()); m == nil {
			return os.ErrNotExist
		}
		return nil
	})
	if !strings.Contains(stdout.String(), "sub 'orders.status.>'") {
		t.Fatalf("no sub line in:\n%s", stdout.String())
	}
	nc, err := nats.Connect(m[1])
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	sub, err := nc.SubscribeSync("orders.status.>")
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Publish(m[2], []byte(m[3])); err != nil {
		t.Fatal(err)
	}
	ev := receiveEvent(t, sub)
	if ev.AppID != kssandbox.DemoAppID || ev.OrderNo != kssandbox.DemoOrderNo || ev.Status != events.StatusPending || ev.Amount != 1200 {
		t.Fatalf("event %+v", ev)
	}
	if strings.Contains(stderr.String(), kssandbox.DemoAppSecret) {
		t.Fatal("the app secret reached the log")
	}
}

// In `consumer dev` the Kuaishou sandbox sends signed notifications to the service's callback
// endpoint, duplicates too when asked: events with source callback arrive before any query is
// made.
func TestDevSandboxNotifiesTheService(t *testing.T) {
	stdout, stderr, _ := startCommand(t, "dev", "--dir", t.TempDir(), "--nats-port", "-1", "--http", "", "--log-format", "json",
		"--notify-duplicate-rate", "1")
	urlRe := regexp.MustCompile(`nats -s (\S+) sub`)
	var m []string
	natstest.CheckFor(t, 20*time.Second, 20*time.Millisecond, func() error {
		if m = urlRe.FindStringSubmatch(stdout.String()); m == nil {
			return os.ErrNotExist
		}
		return nil
	})
	nc, err := nats.Connect(m[1])
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	natstest.CheckFor(t, 20*time.Second, 50*time.Millisecond, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		st, err := js.Stream(ctx, "ORDERS_STATUS")
		if err != nil {
			return err
		}
		msg, err := st.GetMsg(ctx, 1)
		if err != nil {
			return err
		}
		ev, err := events.DecodeEvent(msg.Header.Get("Content-Type"), msg.Data)
		if err != nil {
			return err
		}
		if ev.Source != events.SourceCallback || ev.AppID != kssandbox.DemoAppID {
			return fmt.Errorf("first event %+v", ev)
		}
		return nil
	})
	if !strings.Contains(stderr.String(), `"duplicate_rate":1,"reorder_rate":0`) {
		t.Fatalf("the sandbox's rates are not in the log:\n%s", stderr.String())
	}
	if strings.Contains(stderr.String(), kssandbox.DemoAppSecret) {
		t.Fatal("the app secret reached the log")
	}
}

// `consumer --config FILE` runs the service against the configured NATS and provider.
func TestRunWithConfigFile(t *testing.T) {
	ns := natstest.RunServer(t)
	sb := kssandbox.New(30)
	kssandbox.LoadDemo(sb)
	if err := sb.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	defer sb.Close()
	path := filepath.Join(t.TempDir(), "consumer.yaml")
	os.WriteFile(path, []byte(`
nats:
  url: nats://127.0.0.1:1   # overridden by NATS_URL
http:
  listen: ""
events:
  encoding: msgpack
providers:
  kuaishou:
    base_url: `+sb.URL()+`
    apps:
      - app_id: `+kssandbox.DemoAppID+`
        app_secret: ${KUAISHOU_APP_SECRET}
`), 0o600)
	t.Setenv("NATS_URL", ns.ClientURL())
	t.Setenv("KUAISHOU_APP_SECRET", kssandbox.DemoAppSecret)
	_, stderr, _ := startCommand(t, "--config", path, "--log-format", "json")

	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	sub, _ := nc.SubscribeSync("orders.status.>")
	body, _ := msgpack.Marshal(map[string]any{"app_id": kssandbox.DemoAppID, "order_no": "1637808229728demo"})
	js, _ := jetstream.New(nc)
	natstest.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		_, err := js.Consumer(context.Background(), "ORDERS_QUERY", "orders-query")
		return err
	})
	if _, err := js.Publish(context.Background(), "orders.query.kuaishou.payment", body); err != nil {
		t.Fatal(err)
	}
	ev := receiveEvent(t, sub)
	if ev.Status != events.StatusSucceeded || ev.Amount != 990 || ev.Channel != events.ChannelAlipay {
		t.Fatalf("event %+v", ev)
	}
	var line map[string]any
	first, _, _ := strings.Cut(stderr.String(), "\n")
	if err := json.Unmarshal([]byte(first), &line); err != nil {
		t.Fatalf("log is not JSON: %q", first)
	}
	if strings.Contains(stderr.String(), kssandbox.DemoAppSecret) {
		t.Fatal("the app secret reached the log")
	}
}

func TestBadConfigStopsStartWithOneLine(t *testing.T) {
	dir := t.TempDir()
	for name, tc := range map[string]struct{ yaml, want string }{
		"replicas":   {"nats:\n  replicas: 9\n", "consumer: config: nats.replicas: must be 1 to 5, got 9\n"},
		"unknown":    {"providers:\n  paypal:\n    base_url: http://x\n", "consumer: config: providers.paypal: unknown provider (known: kuaishou, kudian)\n"},
		"secret var": {"providers:\n  kuaishou:\n    base_url: http://x\n    apps:\n      - app_id: a\n        app_secret: ${NOT_SET_ANYWHERE}\n", "consumer: config: providers.kuaishou.apps[0].app_secret: environment variable NOT_SET_ANYWHERE is not set\n"},
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(dir, name+".yaml")
			os.WriteFile(path, []byte(tc.yaml), 0o600)
			var stdout, stderr bytes.Buffer
			// A free port that nothing listens on: the config must be refused before any connect.
			code := run(context.Background(), []string{"--config", path}, strings.NewReader(""), &stdout, &stderr)
			if code != 2 || stderr.String() != tc.want {
				t.Fatalf("exit %d, stderr %q; want 2, %q", code, stderr.String(), tc.want)
			}
		})
	}
	var stderr bytes.Buffer
	if code := run(context.Background(), []string{"--config", filepath.Join(dir, "missing.yaml")}, strings.NewReader(""), &bytes.Buffer{}, &stderr); code != 2 ||
		!strings.HasPrefix(stderr.String(), "consumer: config: open ") || strings.Count(stderr.String(), "\n") != 1 {
		t.Fatalf("missing file: %d %q", code, stderr.String())
	}
}

func TestDecode(t *testing.T) {
	ev := events.StatusEvent{EventID: "e1", Status: events.StatusSucceeded, Amount: 1200, Details: map[string]any{"a": int64(1)}, Attributes: map[string]string{}}
	body, _ := events.Msgpack.Marshal(ev)
	var out bytes.Buffer
	if code := run(context.Background(), []string{"decode"}, bytes.NewReader(body), &out, &bytes.Buffer{}); code != 0 {
		t.Fatalf("exit %d", code)
	}
	var got map[string]any
	if err := json.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}
	if got["event_id"] != "e1" || got["status"] != "succeeded" || got["amount"] != float64(1200) {
		t.Fatalf("%v", got)
	}
	// `nats consumer next --raw` ends the body with a newline.
	out.Reset()
	if code := run(context.Background(), []string{"decode"}, bytes.NewReader(append(body, '\n')), &out, &bytes.Buffer{}); code != 0 || !strings.Contains(out.String(), `"event_id": "e1"`) {
		t.Fatalf("with the CLI's newline: exit %d, %s", code, out.String())
	}
	var stderr bytes.Buffer
	if code := run(context.Background(), []string{"decode"}, strings.NewReader("plain text"), &out, &stderr); code != 1 || !strings.Contains(stderr.String(), "decode") {
		t.Fatalf("garbage: %d %q", code, stderr.String())
	}
}

// The example configuration in deploy/ loads, and the README's configuration reference is the
// one the declarations generate.
func TestExampleConfigAndReference(t *testing.T) {
	env := map[string]string{"KUAISHOU_APP_SECRET": "s", "KUDIAN_BASE_URL": "https://kudian.example.com", "KUDIAN_APP_SECRET": "s", "KUDIAN_TOKEN": "t"}
	cfg, err := config.Load(filepath.Join("..", "..", "deploy", "consumer.yaml"), func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	if _, err := registry.Build(cfg); err != nil {
		t.Fatal(err)
	}
	var ref bytes.Buffer
	if code := run(context.Background(), []string{"config"}, strings.NewReader(""), &ref, &bytes.Buffer{}); code != 0 {
		t.Fatal(code)
	}
	readme, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(readme), ref.String()) {
		t.Fatalf("README.md lacks the configuration reference `consumer config` prints:\n%s", ref.String())
	}
}
