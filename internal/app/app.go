// Package app wires the service together: from a configuration and a NATS connection to the
// JetStream assets, the limiter, the order store, the pipeline, the lookup service and the
// HTTP probes. It is the one place that knows every part; cmd/consumer calls it.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/trace"

	"github.com/paystatus/orderstatus/internal/callbacks"
	"github.com/paystatus/orderstatus/internal/config"
	"github.com/paystatus/orderstatus/internal/dlq"
	"github.com/paystatus/orderstatus/internal/events"
	"github.com/paystatus/orderstatus/internal/handlers"
	"github.com/paystatus/orderstatus/internal/natsinfra"
	"github.com/paystatus/orderstatus/internal/orderstate"
	"github.com/paystatus/orderstatus/internal/providers"
	"github.com/paystatus/orderstatus/internal/ratelimit"
	"github.com/paystatus/orderstatus/internal/telemetry"
)

// Serve provisions JetStream and processes requests for provs until ctx ends. ready, if given,
// is called once the streams and the consumer are in place and the lookup service answers.
//
// Spans are exported when the standard OTEL_* variables ask for it (see telemetry.StartTracing).
func Serve(ctx context.Context, cfg *config.Config, nc *nats.Conn, provs []providers.Provider, log *slog.Logger, ready ...func()) error {
	stopTracing, err := telemetry.StartTracing(ctx, log)
	if err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := stopTracing(sctx); err != nil {
			log.Warn("tracing: spans not exported at stop", "err", err)
		}
	}()
	reg := prometheus.NewRegistry()
	metrics := telemetry.NewMetrics(reg)
	reg.MustRegister(telemetry.BuildInfoCollector())
	var running atomic.Pointer[Replica]
	if cfg.HTTP.Listen != "" {
		js, err := jetstream.New(nc)
		if err != nil {
			return err
		}
		readiness := telemetry.NewReadiness(func(ctx context.Context) error {
			if err := natsinfra.Ready(ctx, nc, js, cfg.Consumer.Name); err != nil {
				return err
			}
			r := running.Load()
			if r == nil || !r.Service.Consuming.Load() {
				return errNotConsuming
			}
			if err := r.Store.SweepErr(); err != nil {
				return fmt.Errorf("sweep: %w", err)
			}
			return nil
		}, readyEvery)
		go readiness.Run(ctx)
		addr, _, err := telemetry.StartHTTP(ctx, cfg.HTTP.Listen, telemetry.Probes(readiness.Err, reg))
		if err != nil {
			return err
		}
		log.Info("serving /healthz, /readyz and /metrics", "addr", addr.String())
	}
	r, err := NewReplica(ctx, cfg, nc, provs, log, Options{Metrics: metrics})
	if err != nil {
		if ctx.Err() != nil {
			return nil // stopped while waiting for NATS: a normal stop
		}
		return err
	}
	running.Store(r)
	reg.MustRegister(telemetry.NewConsumerCollector(r.Assets.Consumer))
	log.Info("consuming requests", "subjects", cfg.NATS.SubjectPrefix+".query.>", "consumer", cfg.Consumer.Name,
		"concurrency", cfg.Consumer.Concurrency, "providers", len(provs))
	if cfg.Callbacks.Listen != "" {
		cbjs, err := jetstream.New(nc)
		if err != nil {
			return err
		}
		addr, err := callbacks.Start(ctx, cfg.Callbacks.Listen, callbacks.Options{
			JS: cbjs, Subjects: events.Subjects{Prefix: cfg.NATS.SubjectPrefix}, Notifiers: callbacks.NotifiersOf(provs),
			MaxConcurrent: cfg.Callbacks.MaxConcurrent, Log: log, Metrics: metrics,
		})
		if err != nil {
			return err
		}
		log.Info("serving provider notifications", "addr", addr.String(), "path", "/callbacks/kuaishou")
	}
	lookups, err := handlers.StartLookup(ctx, nc, r.Handler, cfg.Consumer.LookupTimeout)
	if err != nil {
		return err
	}
	defer func() { _ = lookups.Stop() }()
	for _, f := range ready {
		if f != nil {
			f()
		}
	}
	return r.Run(ctx)
}

var errNotConsuming = errors.New("this replica is not taking requests yet")

// readyEvery is how often readiness is checked in the background; /readyz serves the last
// result.
const readyEvery = time.Second

// Options adjust what NewReplica builds; the zero value is what Serve runs.
type Options struct {
	// Metrics receive the replica's measurements; nil makes a set of its own.
	Metrics *telemetry.Metrics
	// SweepDelay is how old a pending mark is when the sweep publishes its event; 0: 10 s.
	SweepDelay time.Duration
	// TracerProvider makes the spans; nil means OpenTelemetry's global one.
	TracerProvider trace.TracerProvider
	// StoreJS, if set, wraps the JetStream the order store writes and publishes through
	// (tests fail it on purpose, as a NATS failure would).
	StoreJS func(jetstream.JetStream) jetstream.JetStream
	// WrapStore, if set, wraps the order store the pipeline writes through (tests fail it on
	// purpose); the sweep keeps the store itself.
	WrapStore func(handlers.Store) handlers.Store
}

// Replica is what one consumer process runs: the provisioned assets, the order store with its
// sweep, and the pipeline's handler and service loop. Serve builds one, and so do the tests.
type Replica struct {
	Assets  *natsinfra.Assets
	Store   *orderstate.Store
	Handler *handlers.Handler
	Service *handlers.Service
	// Callbacks processes provider notifications from ORDERS_CALLBACK (CONTRACT.md section
	// 8): the same pipeline on a consumer of its own, writing through the same store.
	Callbacks *handlers.Service
}

// NewReplica provisions JetStream on nc (or binds to what an operator made, with
// nats.provision false) and builds the store, handler and service for provs, as cfg shapes
// them.
func NewReplica(ctx context.Context, cfg *config.Config, nc *nats.Conn, provs []providers.Provider, log *slog.Logger, o Options) (*Replica, error) {
	// Events and pending-mark clears are published without waiting; an answer the server never
	// sends (a leader lost mid-write) fails the write after this long, and the request is
	// delivered again.
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncTimeout(5*time.Second))
	if err != nil {
		return nil, err
	}
	assets, err := natsinfra.ProvisionRetrying(ctx, js, cfg, log)
	if err != nil {
		return nil, err
	}
	metrics := o.Metrics
	if metrics == nil {
		metrics = telemetry.NewMetrics(prometheus.NewRegistry())
	}
	tp := o.TracerProvider
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	tracer := tp.Tracer(telemetry.TracerName)
	subjects := events.Subjects{Prefix: cfg.NATS.SubjectPrefix}
	lim := ratelimit.New(telemetry.CountingKV{KeyValue: assets.Rate, Trips: metrics.RoundTrips.WithLabelValues("limiter"),
		Background: metrics.RoundTrips.WithLabelValues("limiter_background")})
	storeJS := js
	if o.StoreJS != nil {
		storeJS = o.StoreJS(js)
	}
	store := orderstate.New(orderstate.Options{
		JS: storeJS, Bucket: assets.State, Subjects: subjects, Encoding: events.Encoding(cfg.Events.Encoding),
		SweepConsumer: assets.Sweep, SweepDelay: o.SweepDelay, Now: lim.ServerNow, Log: log, Metrics: metrics, Tracer: tracer,
	})
	var pipelineStore handlers.Store = store
	if o.WrapStore != nil {
		pipelineStore = o.WrapStore(store)
	}
	hopts := handlers.Options{
		JS: js, Store: pipelineStore, Limiter: lim, Subjects: subjects, Providers: provs,
		DeadLetter: &dlq.Writer{JS: js, Subjects: subjects, Log: log, DeadLetters: metrics.DeadLetters, Tracer: tracer},
		AckWait:    cfg.Consumer.AckWait, MaxDeliver: cfg.Consumer.MaxDeliver, Log: log,
		FollowDelay: cfg.Consumer.FollowDelay, FollowMaxDelay: cfg.Consumer.FollowMaxDelay, Metrics: metrics, Tracer: tracer,
		ConsumerName: cfg.Consumer.Name,
	}
	h := handlers.NewHandler(hopts)
	hopts.ConsumerName, hopts.Seen = natsinfra.CallbackConsumer, assets.Seen
	callbacks := &handlers.Service{Consumer: assets.Callback, Handler: handlers.NewHandler(hopts),
		Concurrency: cfg.Consumer.Concurrency, Grace: cfg.Consumer.AckWait * 2 / 3, Log: log,
		Rebind: func(ctx context.Context) (jetstream.Consumer, error) {
			if !cfg.NATS.Provision {
				return js.Consumer(ctx, natsinfra.CallbackStream, natsinfra.CallbackConsumer)
			}
			return js.CreateOrUpdateConsumer(ctx, natsinfra.CallbackStream, natsinfra.CallbackConsumerConfig(cfg))
		}}
	svc := &handlers.Service{Consumer: assets.Consumer, Handler: h, Concurrency: cfg.Consumer.Concurrency,
		Grace: cfg.Consumer.AckWait * 2 / 3, Log: log,
		Rebind: func(ctx context.Context) (jetstream.Consumer, error) {
			if !cfg.NATS.Provision { // an operator's consumer: look it up, never make it
				return js.Consumer(ctx, natsinfra.QueryStream, cfg.Consumer.Name)
			}
			return js.CreateOrUpdateConsumer(ctx, natsinfra.QueryStream, natsinfra.ConsumerConfig(cfg))
		}}
	return &Replica{Assets: assets, Store: store, Handler: h, Service: svc, Callbacks: callbacks}, nil
}

// Run runs the sweep, the service and the callback service until ctx ends. Either service
// ending with an error stops the other.
func (r *Replica) Run(ctx context.Context) error {
	sweeping, stopSweep := context.WithCancel(ctx)
	swept := make(chan struct{})
	go func() { defer close(swept); r.Store.Sweep(sweeping) }()
	defer func() { stopSweep(); <-swept }()
	if r.Callbacks == nil {
		return r.Service.Run(ctx)
	}
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	cbErr := make(chan error, 1)
	go func() {
		err := r.Callbacks.Run(ctx)
		if err != nil {
			stop()
		}
		cbErr <- err
	}()
	err := r.Service.Run(ctx)
	stop()
	return errors.Join(err, <-cbErr)
}
