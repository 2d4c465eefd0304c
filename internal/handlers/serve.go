package handlers

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/paystatus/orderstatus/internal/config"
	"github.com/paystatus/orderstatus/internal/events"
	"github.com/paystatus/orderstatus/internal/providers"
	"github.com/paystatus/orderstatus/internal/ratelimit"
)

// Connect opens the NATS connection the service runs on. It never gives up: NATS unreachable
// at start is waited for (the replica is not ready meanwhile), and a NATS restart later
// pauses the service, it does not stop it.
func Connect(cfg *config.Config, log *slog.Logger) (*nats.Conn, error) {
	url := config.RedactURL(cfg.NATS.URL)
	opts := []nats.Option{
		nats.Name("order-status-consumer"),
		nats.MaxReconnects(-1),
		nats.RetryOnFailedConnect(true),
		nats.ReconnectWait(time.Second),
		nats.ConnectHandler(func(nc *nats.Conn) { log.Info("NATS connected", "url", nc.ConnectedUrlRedacted()) }),
		nats.ReconnectErrHandler(func(_ *nats.Conn, err error) {
			log.Warn("NATS unreachable; trying again", "url", url, "err", err)
		}),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil { // nil: we closed the connection ourselves
				log.Warn("NATS disconnected; reconnecting", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) { log.Info("NATS reconnected", "url", nc.ConnectedUrlRedacted()) }),
	}
	if cfg.NATS.Creds != "" {
		opts = append(opts, nats.UserCredentials(cfg.NATS.Creds))
	}
	nc, err := nats.Connect(cfg.NATS.URL, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to NATS at %s: %w", url, err)
	}
	return nc, nil
}

// Serve provisions JetStream and processes requests for provs until ctx ends. ready, if given,
// is called once the streams and the consumer are in place and the lookup service answers.
func Serve(ctx context.Context, cfg *config.Config, nc *nats.Conn, provs []providers.Provider, log *slog.Logger, ready ...func()) error {
	reg := prometheus.NewRegistry()
	metrics := NewMetrics(reg)
	reg.MustRegister(BuildInfoCollector())
	var running atomic.Pointer[Service]
	if cfg.HTTP.Listen != "" {
		js, err := jetstream.New(nc)
		if err != nil {
			return err
		}
		consuming := func() bool { s := running.Load(); return s != nil && s.Consuming.Load() }
		addr, _, err := StartHTTP(ctx, cfg.HTTP.Listen, Probes(nc, js, cfg.Consumer.Name, reg, consuming))
		if err != nil {
			return err
		}
		log.Info("serving /healthz, /readyz and /metrics", "addr", addr.String())
	}
	r, err := NewReplica(ctx, cfg, nc, provs, log, metrics)
	if err != nil {
		if ctx.Err() != nil {
			return nil // stopped while waiting for NATS: a normal stop
		}
		return err
	}
	running.Store(r.Service)
	reg.MustRegister(NewConsumerCollector(r.Assets.Consumer))
	log.Info("consuming requests", "subjects", cfg.NATS.SubjectPrefix+".query.>", "consumer", cfg.Consumer.Name,
		"concurrency", cfg.Consumer.Concurrency, "providers", len(provs))
	lookups, err := StartLookup(ctx, nc, r.Handler, cfg.Consumer.LookupTimeout)
	if err != nil {
		return err
	}
	defer func() { _ = lookups.Stop() }()
	for _, f := range ready {
		if f != nil {
			f()
		}
	}
	return r.Service.Run(ctx)
}

// Replica is what one consumer process runs: the provisioned assets, and a handler with its
// limiter and service loop over them. Serve builds one, and so do the tests.
type Replica struct {
	Assets  *Assets
	Handler *Handler
	Service *Service
}

// NewReplica provisions JetStream on nc and builds the handler and service for provs, as cfg
// shapes them. metrics may be nil.
func NewReplica(ctx context.Context, cfg *config.Config, nc *nats.Conn, provs []providers.Provider, log *slog.Logger, metrics *Metrics) (*Replica, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	assets, err := ProvisionRetrying(ctx, js, cfg, log)
	if err != nil {
		return nil, err
	}
	h := NewHandler(Options{
		JS: js, State: assets.State, Limiter: ratelimit.New(assets.Rate), Subjects: events.Subjects{Prefix: cfg.NATS.SubjectPrefix},
		Providers: provs, Encoding: events.Encoding(cfg.Events.Encoding),
		AckWait: cfg.Consumer.AckWait, MaxDeliver: cfg.Consumer.MaxDeliver, Log: log,
		FollowDelay: cfg.Consumer.FollowDelay, FollowMaxDelay: cfg.Consumer.FollowMaxDelay, Metrics: metrics,
	})
	svc := &Service{Consumer: assets.Consumer, Handler: h, Concurrency: cfg.Consumer.Concurrency,
		Grace: cfg.Consumer.AckWait * 2 / 3, Log: log,
		Rebind: func(ctx context.Context) (jetstream.Consumer, error) {
			return js.CreateOrUpdateConsumer(ctx, QueryStream, ConsumerConfig(cfg))
		}}
	return &Replica{Assets: assets, Handler: h, Service: svc}, nil
}
