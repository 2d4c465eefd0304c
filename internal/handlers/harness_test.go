package handlers_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/paystatus/orderstatus/internal/app"
	"github.com/paystatus/orderstatus/internal/config"
	"github.com/paystatus/orderstatus/internal/events"
	"github.com/paystatus/orderstatus/internal/handlers"
	"github.com/paystatus/orderstatus/internal/natsinfra"
	"github.com/paystatus/orderstatus/internal/natstest"
	"github.com/paystatus/orderstatus/internal/orderstate"
	"github.com/paystatus/orderstatus/internal/providers/kuaishou"
	kssandbox "github.com/paystatus/orderstatus/internal/providers/kuaishou/sandbox"
	"github.com/paystatus/orderstatus/internal/providers/kudian"
	kdsandbox "github.com/paystatus/orderstatus/internal/providers/kudian/sandbox"
	"github.com/paystatus/orderstatus/internal/providers/registry"
	"github.com/paystatus/orderstatus/internal/telemetry"
)

// env is one end-to-end set-up: an embedded JetStream server, the Kuaishou sandbox over HTTP,
// and consumer replicas built the way Serve builds them.
type env struct {
	t   testing.TB
	srv *serverCtl
	cfg *config.Config
	nc  *nats.Conn
	js  jetstream.JetStream
	sb  *kssandbox.Sandbox
	kd  *kdsandbox.Sandbox
	log *slog.Logger
	// metrics, when set before startReplica, receive the replica's measurements.
	metrics *telemetry.Metrics
}

func testLogger() *slog.Logger {
	if os.Getenv("TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// serverCtl is the NATS side of an env: its URL(s), and how to restart or stop a server.
type serverCtl struct {
	url     string
	restart func()
	stop    func()
}

// restartableServer runs one server on a fixed port and store, so it can be stopped and
// started again on the same store.
func restartableServer(t testing.TB) *serverCtl {
	t.Helper()
	dir := t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	s := natstest.RunServerAt(t, port, dir)
	ctl := &serverCtl{url: s.ClientURL()}
	ctl.stop = func() {
		s.Shutdown()
		s.WaitForShutdown()
	}
	ctl.restart = func() {
		ctl.stop()
		s = natstest.RunServerAt(t, port, dir)
	}
	return ctl
}

func newEnv(t testing.TB, mutate func(*config.Config)) *env {
	t.Helper()
	return newEnvOn(t, &serverCtl{url: natstest.RunServer(t).ClientURL()}, mutate)
}

// restart stops the NATS server and starts it again on the same store.
func (e *env) restart() { e.srv.restart() }

func newEnvOn(t testing.TB, srv *serverCtl, mutate func(*config.Config)) *env {
	t.Helper()
	sb := kssandbox.New(0)
	kssandbox.LoadDemo(sb)
	if err := sb.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sb.Close() })
	kd := kdsandbox.New(0)
	kdsandbox.LoadDemo(kd)
	if err := kd.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { kd.Close() })

	cfg := config.Default()
	cfg.NATS.URL = srv.url
	cfg.Consumer.AckWait = 5 * time.Second
	cfg.Consumer.MaxDeliver = 4
	cfg.Consumer.Concurrency = 8
	cfg.Providers = map[string]config.Provider{
		kuaishou.Name: {BaseURL: sb.URL(), QPS: 1000, Timeout: 2 * time.Second, Apps: kssandbox.DemoApps()},
		kudian.Name:   {BaseURL: kd.URL(), QPS: 1000, Timeout: 2 * time.Second, Apps: kdsandbox.DemoApps()},
	}
	if mutate != nil {
		mutate(cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(srv.url, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, _ := jetstream.New(nc)
	return &env{t: t, srv: srv, cfg: cfg, nc: nc, js: js, sb: sb, kd: kd, log: testLogger()}
}

// replica is what one consumer process builds: its own connection, and what Serve builds on it.
type replica struct {
	nc    *nats.Conn
	r     *app.Replica
	h     *handlers.Handler
	svc   *handlers.Service
	cons  jetstream.Consumer
	close func()
}

// build builds a replica; tweak may adjust how (a failing store, the sweep's delay).
func (e *env) build(tweak func(*app.Options)) *replica {
	e.t.Helper()
	nc, err := natsinfra.Connect(e.cfg, e.log) // a connection of its own, as a process would have
	if err != nil {
		e.t.Fatal(err)
	}
	provs, err := registry.Build(e.cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	o := app.Options{Metrics: e.metrics}
	if tweak != nil {
		tweak(&o)
	}
	r, err := app.NewReplica(context.Background(), e.cfg, nc, provs, e.log, o)
	if err != nil {
		e.t.Fatal(err)
	}
	r.Service.Grace = time.Second
	r.Service.CheckEvery = 250 * time.Millisecond
	r.Callbacks.Grace, r.Callbacks.CheckEvery = time.Second, 250*time.Millisecond
	return &replica{nc: nc, r: r, h: r.Handler, svc: r.Service, cons: r.Assets.Consumer, close: nc.Close}
}

// startReplica runs one consumer replica until the test ends or stop is called; tweak may
// adjust how it is built.
func (e *env) startReplica(tweak func(*app.Options)) (stop func()) {
	e.t.Helper()
	r := e.build(tweak)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = r.r.Run(ctx) }()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done; r.close() }) }
	e.t.Cleanup(stop)
	return stop
}

// startLookup serves the lookup endpoints on r's connection until the test ends.
func (e *env) startLookup(r *replica) {
	e.t.Helper()
	svc, err := handlers.StartLookup(context.Background(), r.nc, r.h, 10*time.Second)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { _ = svc.Stop() })
}

// publish stores a message, waiting up to 30 s for the server: a loaded machine may take longer
// than the client's default 5 s to store a large one.
func (e *env) publish(subject string, data []byte, hdr nats.Header) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := e.js.PublishMsg(ctx, &nats.Msg{Subject: subject, Data: data, Header: hdr}); err != nil {
		e.t.Fatal(err)
	}
}

// streamMsgs returns every message stored in stream, in order.
func (e *env) streamMsgs(stream string) []*jetstream.RawStreamMsg {
	e.t.Helper()
	msgs, err := e.tryStreamMsgs(stream)
	if err != nil {
		e.t.Fatal(err)
	}
	return msgs
}

func (e *env) tryStreamMsgs(stream string) ([]*jetstream.RawStreamMsg, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := e.js.Stream(ctx, stream)
	if err != nil {
		return nil, err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return nil, err
	}
	var out []*jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, nil
}

// queued returns the requests and follow-ups waiting in ORDERS_QUERY.
func (e *env) queued() []*jetstream.RawStreamMsg {
	e.t.Helper()
	return e.streamMsgs(natsinfra.QueryStream)
}

func (e *env) events() []events.StatusEvent {
	e.t.Helper()
	var out []events.StatusEvent
	for _, m := range e.streamMsgs(natsinfra.StatusStream) {
		ev, err := events.DecodeEvent(m.Header.Get("Content-Type"), m.Data)
		if err != nil {
			e.t.Fatalf("event %d: %v", m.Sequence, err)
		}
		if m.Header.Get("Nats-Msg-Id") != ev.EventID {
			e.t.Fatalf("Nats-Msg-Id %q != event_id %q", m.Header.Get("Nats-Msg-Id"), ev.EventID)
		}
		if want := "orders.status." + ev.Provider + "." + ev.Kind + "." + string(ev.Status); m.Subject != want {
			e.t.Fatalf("subject %s, want %s", m.Subject, want)
		}
		out = append(out, ev)
	}
	return out
}

// waitEvents waits until exactly n events are stored.
func (e *env) waitEvents(n int) []events.StatusEvent {
	e.t.Helper()
	var evs []events.StatusEvent
	natstest.CheckFor(e.t, 15*time.Second, 20*time.Millisecond, func() error {
		evs = e.events()
		if len(evs) != n {
			return fmt.Errorf("%d events, want %d", len(evs), n)
		}
		return nil
	})
	return evs
}

// waitDeadLetters waits until ORDERS_DLQ holds n dead letters, for up to 20 s.
func (e *env) waitDeadLetters(n int) {
	e.t.Helper()
	natstest.CheckFor(e.t, 20*time.Second, 20*time.Millisecond, func() error {
		if got := len(e.streamMsgs(natsinfra.DLQStream)); got != n {
			return fmt.Errorf("%d dead letters, want %d", got, n)
		}
		return nil
	})
}

// waitIdle waits, for up to 30 s, until every request published so far is settled and the
// consumer has nothing pending, unacknowledged or redelivered.
//
// Every request published so far is settled first: ORDERS_QUERY is a work queue, so a request
// stays in it until it is acked or terminated (follow-ups scheduled for later wait on other
// subjects until due). The consumer's counts alone are not enough: the server
// answers a publish before it tells the stream's consumers of the message (on a goroutine of its
// own), so right after a publish the consumer may not have counted it yet and look idle (2-4%
// of consumer infos right after a publish, more under load; a test saw "0 events from 40 racing
// queries"). The stream holds a request from its publish's answer on.
func (e *env) waitIdle() {
	e.t.Helper()
	queries := events.Subjects{Prefix: e.cfg.NATS.SubjectPrefix}.QueryFilter()
	natstest.CheckFor(e.t, 30*time.Second, 20*time.Millisecond, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s, err := e.js.Stream(ctx, natsinfra.QueryStream)
		if err != nil {
			return err
		}
		sinfo, err := s.Info(ctx, jetstream.WithSubjectFilter(queries))
		if err != nil {
			return err
		}
		var stored uint64
		for _, n := range sinfo.State.Subjects {
			stored += n
		}
		if stored != 0 {
			return fmt.Errorf("%d requests not settled", stored)
		}
		info, err := e.queryConsumerInfo(ctx)
		if err != nil {
			return err
		}
		if info.NumPending != 0 || info.NumAckPending != 0 || info.NumRedelivered != 0 {
			return fmt.Errorf("pending %d, ack pending %d, redelivered %d", info.NumPending, info.NumAckPending, info.NumRedelivered)
		}
		return nil
	})
}

// queryConsumerInfo is the durable consumer of ORDERS_QUERY's info, read now.
func (e *env) queryConsumerInfo(ctx context.Context) (*jetstream.ConsumerInfo, error) {
	c, err := e.js.Consumer(ctx, natsinfra.QueryStream, e.cfg.Consumer.Name)
	if err != nil {
		return nil, err
	}
	return c.Info(ctx)
}

// failingStore is the order store with failures injected at its steps, as a crash or a NATS
// failure there would give: fail is asked after each step ("claimed", "published") and before
// each of the others ("publishing", "clearing"), and a non-nil answer fails that step.
type failingStore struct {
	handlers.Store
	fail func(step string) error
}

// failing makes a tweak that wraps the pipeline's store in a failingStore.
func failing(fail func(step string) error) func(*app.Options) {
	return func(o *app.Options) {
		o.WrapStore = func(s handlers.Store) handlers.Store { return failingStore{s, fail} }
	}
}

func (s failingStore) Claim(ctx context.Context, obs orderstate.Observation) (events.StatusEvent, *orderstate.Claim, error) {
	ev, c, err := s.Store.Claim(ctx, obs)
	if err == nil && c != nil {
		if ferr := s.fail("claimed"); ferr != nil {
			return ev, nil, ferr
		}
	}
	return ev, c, err
}

func (s failingStore) Publish(ctx context.Context, c *orderstate.Claim) (*orderstate.Publication, error) {
	if err := s.fail("publishing"); err != nil {
		return nil, err
	}
	return s.Store.Publish(ctx, c)
}

func (s failingStore) Republish(ctx context.Context, c *orderstate.Claim) error {
	if err := s.fail("publishing"); err != nil {
		return err
	}
	return s.Store.Republish(ctx, c)
}

func (s failingStore) Confirm(ctx context.Context, p *orderstate.Publication) error {
	if err := s.Store.Confirm(ctx, p); err != nil {
		return err
	}
	return s.fail("published")
}

func (s failingStore) Clear(p *orderstate.Publication) {
	if s.fail("clearing") == nil {
		s.Store.Clear(p)
	}
}
