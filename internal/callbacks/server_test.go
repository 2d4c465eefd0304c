package callbacks_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/paystatus/orderstatus/internal/callbacks"
	"github.com/paystatus/orderstatus/internal/config"
	"github.com/paystatus/orderstatus/internal/events"
	"github.com/paystatus/orderstatus/internal/natstest"
	"github.com/paystatus/orderstatus/internal/providers"
	"github.com/paystatus/orderstatus/internal/providers/kuaishou"
	"github.com/paystatus/orderstatus/internal/telemetry"
)

const (
	app    = "ks707065143182458884"
	secret = "9VfzaT-7Jf1bBHv-veFZfg"
)

// body is a notification as the provider document writes it.
func body(messageID, appID, status string) []byte {
	return []byte(`{"data":{"channel":"ALIPAY","out_order_no":"order-http-01","attach":"","status":"` + status +
		`","ks_order_no":"121","order_amount":1200,"trade_no":"t","extra_info":"","enable_promotion":false,"promotion_amount":0},"biz_type":"PAYMENT","message_id":"` +
		messageID + `","app_id":"` + appID + `","timestamp":` + strconv.FormatInt(time.Now().UnixMilli(), 10) + `}`)
}

func sign(b []byte, s string) string {
	sum := md5.Sum(append(append([]byte{}, b...), s...))
	return hex.EncodeToString(sum[:])
}

type fixture struct {
	url     string
	addr    string
	js      jetstream.JetStream
	stream  jetstream.Stream
	metrics *telemetry.Metrics
}

func start(t *testing.T, tweak func(*callbacks.Options)) *fixture {
	t.Helper()
	ns := natstest.RunServer(t)
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, _ := jetstream.New(nc)
	st, err := js.CreateStream(context.Background(), jetstream.StreamConfig{Name: "ORDERS_CALLBACK", Subjects: []string{"orders.callback.>"},
		Retention: jetstream.WorkQueuePolicy, Duplicates: 5 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	ks, err := kuaishou.New(config.Provider{Timeout: time.Second, Apps: []config.App{{AppID: app, AppSecret: secret}}})
	if err != nil {
		t.Fatal(err)
	}
	m := telemetry.NewMetrics(prometheus.NewRegistry())
	o := callbacks.Options{JS: js, Subjects: events.Subjects{Prefix: "orders"}, Notifiers: callbacks.NotifiersOf([]providers.Provider{ks}),
		MaxConcurrent: 8, Log: slog.New(slog.DiscardHandler), Metrics: m}
	if tweak != nil {
		tweak(&o)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	addr, err := callbacks.Start(ctx, "127.0.0.1:0", o)
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{url: "http://" + addr.String() + "/callbacks/kuaishou", addr: addr.String(), js: js, stream: st, metrics: m}
}

func (f *fixture) post(t *testing.T, b []byte, kwaisign string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, f.url, bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/json")
	if kwaisign != "" {
		req.Header.Set("kwaisign", kwaisign)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	out, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(out)
}

func (f *fixture) stored(t *testing.T) uint64 {
	t.Helper()
	info, err := f.stream.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

// A verified notification is stored, byte for byte with its signature and message_id, before
// it is answered {"result":1,"message_id":...}; a resend is answered the same, stored once and
// counted a duplicate.
// Forged, tampered, unknown-app, malformed and oversized bodies are refused and not stored.
func TestEndpointStoresOnlyVerifiedNotifications(t *testing.T) {
	f := start(t, nil)
	good := body("m-http-1", app, "SUCCESS")
	code, text := f.post(t, good, sign(good, secret))
	var ans struct {
		Result    int    `json:"result"`
		MessageID string `json:"message_id"`
	}
	if code != 200 || json.Unmarshal([]byte(text), &ans) != nil || ans.Result != 1 || ans.MessageID != "m-http-1" {
		t.Fatalf("%d %s", code, text)
	}
	m, err := f.stream.GetMsg(context.Background(), 1)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(m.Data, good) || m.Subject != "orders.callback.kuaishou" || m.Header.Get("Kwaisign") != sign(good, secret) || m.Header.Get("Nats-Msg-Id") != "m-http-1" {
		t.Fatalf("stored %s %s %v", m.Subject, m.Data, m.Header)
	}
	if code, _ := f.post(t, good, sign(good, secret)); code != 200 {
		t.Fatalf("resend answered %d", code)
	}
	tampered := bytes.Replace(good, []byte("SUCCESS"), []byte("FAILED"), 1)
	unknown := body("m-http-2", "ks000000000000000001", "SUCCESS")
	big := append([]byte(`{"pad":"`), bytes.Repeat([]byte("x"), callbacks.MaxBody)...)
	big = append(big, `"}`...)
	for _, tc := range []struct {
		name string
		body []byte
		sign string
		want int
	}{
		{"forged", good, sign(good, "guessed"), 401},
		{"no signature", good, "", 401},
		{"tampered", tampered, sign(good, secret), 401},
		{"unknown app", unknown, sign(unknown, secret), 401},
		{"not a notification", []byte(`{"a":1}`), sign([]byte(`{"a":1}`), secret), 400},
		{"not JSON", []byte(`hello`), sign([]byte(`hello`), secret), 400},
		{"over 64 KiB", big, sign(big, secret), 413},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if code, text := f.post(t, tc.body, tc.sign); code != tc.want {
				t.Fatalf("%d %s, want %d", code, text, tc.want)
			} else if strings.Contains(text, secret) || strings.Contains(text, sign(tc.body, secret)) {
				t.Fatalf("answer carries a secret or a computed signature: %s", text)
			}
		})
	}
	if n := f.stored(t); n != 1 {
		t.Fatalf("%d notifications stored, want 1", n)
	}
	count := func(outcome string) float64 {
		return testutil.ToFloat64(f.metrics.Notifications.WithLabelValues("kuaishou", "http", outcome))
	}
	if b, s, d := count("bad_signature"), count("stored"), count("duplicate"); b != 4 || s != 1 || d != 1 {
		t.Fatalf("bad_signature %v, stored %v, duplicate %v; want 4, 1 (the first) and 1 (the resend)", b, s, d)
	}
}

// A body over 64 KiB sent without a Content-Length (chunked) is cut at the limit: 413.
func TestEndpointBoundsChunkedBodies(t *testing.T) {
	f := start(t, nil)
	pr, pw := io.Pipe()
	go func() {
		chunk := bytes.Repeat([]byte("x"), 4096)
		for range 20 {
			if _, err := pw.Write(chunk); err != nil {
				return
			}
		}
		pw.Close()
	}()
	req, _ := http.NewRequest(http.MethodPost, f.url, pr)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 413 {
		t.Fatalf("%d, want 413", res.StatusCode)
	}
}

// Nothing but POST /callbacks/kuaishou is served.
func TestEndpointServesOnePathAndMethod(t *testing.T) {
	f := start(t, nil)
	base := strings.TrimSuffix(f.url, "/callbacks/kuaishou")
	for _, tc := range []struct {
		method, path string
		want         int
	}{
		{"GET", "/callbacks/kuaishou", 405},
		{"PUT", "/callbacks/kuaishou", 405},
		{"POST", "/callbacks/kudian", 404},
		{"POST", "/callbacks/", 404},
		{"GET", "/metrics", 404},
		{"GET", "/healthz", 404},
		{"POST", "/", 404},
	} {
		req, _ := http.NewRequest(tc.method, base+tc.path, strings.NewReader("{}"))
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != tc.want {
			t.Errorf("%s %s: %d, want %d", tc.method, tc.path, res.StatusCode, tc.want)
		}
	}
}

// A slow client (slowloris: headers trickled a byte at a time) is cut off once the header
// timeout passes, and oversized headers are refused.
func TestEndpointClosesSlowClients(t *testing.T) {
	f := start(t, func(o *callbacks.Options) { o.ReadHeaderTimeout, o.ReadTimeout = 300*time.Millisecond, time.Second })
	conn, err := net.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	closed := make(chan error, 1)
	go func() {
		msg := "POST /callbacks/kuaishou HTTP/1.1\r\nHost: x\r\nX-Slow: " + strings.Repeat("a", 200)
		for i := 0; i < len(msg); i++ {
			if _, err := conn.Write([]byte{msg[i]}); err != nil {
				closed <- err
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		closed <- nil
	}()
	// The server closes: a read ends (EOF or reset) well before the trickle would be done.
	_ = conn.SetReadDeadline(time.Now().Add(3 * time.Second))
	_, rerr := bufio.NewReader(conn).ReadByte()
	var ne net.Error
	if errors.As(rerr, &ne) && ne.Timeout() {
		t.Fatal("the server kept a slow client's connection open past its header timeout")
	}

	req, _ := http.NewRequest(http.MethodPost, f.url, strings.NewReader("{}"))
	req.Header.Set("X-Big", strings.Repeat("b", 64<<10))
	res, err := http.DefaultClient.Do(req)
	if err == nil {
		res.Body.Close()
		if res.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
			t.Fatalf("64 KiB of headers answered %d", res.StatusCode)
		}
	}
}

// Past MaxConcurrent notifications at once, one more is answered 503 (the provider sends it
// again), and nothing is answered 200 unless stored: with no stream to store in, 503.
func TestEndpointBoundsConcurrencyAndNeverAcksUnstored(t *testing.T) {
	release := make(chan struct{})
	var once sync.Once
	held := make(chan struct{}, 1)
	f := start(t, func(o *callbacks.Options) {
		o.MaxConcurrent = 1
		inner := o.Notifiers["kuaishou"]
		o.Notifiers["kuaishou"] = notifierFunc(func(b []byte, s string) (providers.Notification, error) {
			once.Do(func() { held <- struct{}{}; <-release })
			return inner.Notification(b, s)
		})
	})
	good := body("m-busy-1", app, "SUCCESS")
	done := make(chan int, 1)
	go func() { c, _ := f.post(t, good, sign(good, secret)); done <- c }()
	<-held
	if code, _ := f.post(t, good, sign(good, secret)); code != 503 {
		t.Fatalf("second at once: %d, want 503", code)
	}
	close(release)
	if c := <-done; c != 200 {
		t.Fatalf("first: %d", c)
	}
	if err := f.js.DeleteStream(context.Background(), "ORDERS_CALLBACK"); err != nil {
		t.Fatal(err)
	}
	other := body("m-busy-2", app, "SUCCESS")
	if code, _ := f.post(t, other, sign(other, secret)); code < 500 {
		t.Fatalf("not stored, answered %d", code)
	}
}

type notifierFunc func([]byte, string) (providers.Notification, error)

func (f notifierFunc) Notification(b []byte, s string) (providers.Notification, error) {
	return f(b, s)
}

// A client that sends its headers and then trickles its body holds no place among the
// MaxConcurrent: those bound verifying and storing, so a few slow bodies (anyone can send
// them, before any signature is checked) cannot make every notification answered 503.
func TestEndpointSlowBodiesHoldNoPlace(t *testing.T) {
	f := start(t, func(o *callbacks.Options) { o.MaxConcurrent = 2; o.ReadTimeout = time.Minute })
	for range 4 {
		conn, err := net.Dial("tcp", f.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		// Expect: 100-continue: the server says "100 Continue" once the handler reads the body,
		// so past it the request is in the handler.
		if _, err := conn.Write([]byte("POST /callbacks/kuaishou HTTP/1.1\r\nHost: x\r\nkwaisign: x\r\n" +
			"Expect: 100-continue\r\nContent-Length: 1000\r\n\r\n")); err != nil {
			t.Fatal(err)
		}
		_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		line, err := bufio.NewReader(conn).ReadString('\n')
		if err != nil || !strings.Contains(line, "100") {
			t.Fatalf("no 100 Continue: %q %v", line, err)
		}
		if _, err := conn.Write([]byte("{")); err != nil {
			t.Fatal(err)
		}
	}
	good := body("m-slow-bodies", app, "SUCCESS")
	if code, out := f.post(t, good, sign(good, secret)); code != 200 {
		t.Fatalf("with 4 bodies trickling and MaxConcurrent 2: %d %s, want 200", code, out)
	}
}

// A refused signature is logged with the app it claims (after a secret rotation, whose secret
// is out of step), never with the signature given or the secret.
func TestRefusalLogNamesTheApp(t *testing.T) {
	var logs bytes.Buffer
	var mu sync.Mutex
	f := start(t, func(o *callbacks.Options) {
		o.Log = slog.New(slog.NewTextHandler(lockedWriter{&mu, &logs}, nil))
	})
	b := body("m-log-1", app, "SUCCESS")
	forged := sign(b, "not-the-secret")
	if code, _ := f.post(t, b, forged); code != http.StatusUnauthorized {
		t.Fatalf("forged: %d", code)
	}
	if code, _ := f.post(t, body("m-log-2", "ks-nobody", "SUCCESS"), forged); code != http.StatusUnauthorized {
		t.Fatalf("unknown app: %d", code)
	}
	mu.Lock()
	defer mu.Unlock()
	out := logs.String()
	if !strings.Contains(out, app) || !strings.Contains(out, "ks-nobody") {
		t.Fatalf("the refusals' log does not name the apps:\n%s", out)
	}
	if strings.Contains(out, secret) || strings.Contains(out, forged) || strings.Contains(out, sign(b, secret)) {
		t.Fatalf("the log carries a signature or the secret:\n%s", out)
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// A body its app signed that is still no notification we can read is the provider's own, sent
// again until taken: it is refused (400) and logged, naming the app and the message. The same
// body unsigned is refused without a line (anyone may send one).
func TestUnreadableSignedNotificationIsLogged(t *testing.T) {
	var logs bytes.Buffer
	var mu sync.Mutex
	f := start(t, func(o *callbacks.Options) {
		o.Log = slog.New(slog.NewTextHandler(lockedWriter{&mu, &logs}, nil))
	})
	b := bytes.Replace(body("m-unreadable-1", app, "SUCCESS"), []byte(`"biz_type":"PAYMENT"`), []byte(`"biz_type":"PAYMENT_V2"`), 1)
	if !bytes.Contains(b, []byte("PAYMENT_V2")) {
		t.Fatal("the body was not changed")
	}
	if code, _ := f.post(t, b, sign(b, "not-the-secret")); code != http.StatusBadRequest {
		t.Fatalf("unsigned: %d", code)
	}
	mu.Lock()
	quiet := logs.String()
	mu.Unlock()
	if quiet != "" {
		t.Fatalf("an unsigned unreadable body was logged:\n%s", quiet)
	}
	if code, _ := f.post(t, b, sign(b, secret)); code != http.StatusBadRequest {
		t.Fatalf("signed: %d", code)
	}
	mu.Lock()
	defer mu.Unlock()
	out := logs.String()
	if !strings.Contains(out, "signed by its app") || !strings.Contains(out, app) || !strings.Contains(out, "m-unreadable-1") {
		t.Fatalf("the signed unreadable notification's log line:\n%s", out)
	}
	if strings.Contains(out, secret) || strings.Contains(out, sign(b, secret)) {
		t.Fatalf("the log carries the secret or the signature:\n%s", out)
	}
}
