package handlers

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"strings"
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

// Connect opens the NATS connection the service runs on, authenticated and encrypted as the
// nats keys say. NATS unreachable at start is waited for (the replica is not ready meanwhile),
// and a NATS restart later pauses the service, it does not stop it. A server that answers but
// refuses the credentials or the TLS handshake is a configuration mistake: Connect returns it
// at once, as one line naming the keys to check, instead of waiting for ever.
func Connect(cfg *config.Config, log *slog.Logger) (*nats.Conn, error) {
	url := config.RedactURL(cfg.NATS.URL)
	auth, err := authOptions(cfg)
	if err != nil {
		return nil, err
	}
	opts := append([]nats.Option{
		nats.Name("order-status-consumer"),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(time.Second),
		// Credentials the server refuses after a reconnect (rotated, revoked) are tried again
		// rather than closing the connection for good; the log says what is refused.
		nats.IgnoreAuthErrorAbort(),
		nats.ConnectHandler(func(nc *nats.Conn) { log.Info("NATS connected", "url", nc.ConnectedUrlRedacted()) }),
		nats.ReconnectErrHandler(func(_ *nats.Conn, err error) {
			if refused(err) {
				log.Error("NATS refuses this replica; trying again", "url", url, "err", err, "check", authKeys(cfg))
				return
			}
			log.Warn("NATS unreachable; trying again", "url", url, "err", err)
		}),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil { // nil: we closed the connection ourselves
				log.Warn("NATS disconnected; reconnecting", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) { log.Info("NATS reconnected", "url", nc.ConnectedUrlRedacted()) }),
	}, auth...)
	// One attempt first, so that a refusal is returned rather than retried for ever; a server
	// not reachable yet is then waited for.
	nc, err := nats.Connect(cfg.NATS.URL, opts...)
	if err == nil {
		return nc, nil
	}
	if refused(err) {
		return nil, fmt.Errorf("connect to NATS at %s: %v (check %s)", url, err, authKeys(cfg))
	}
	nc, err = nats.Connect(cfg.NATS.URL, append(opts, nats.RetryOnFailedConnect(true))...)
	if err != nil {
		return nil, fmt.Errorf("connect to NATS at %s: %w", url, err)
	}
	return nc, nil
}

// authOptions are the nats.go options for the configured authentication and TLS, as the nats
// CLI's --creds, --nkey, --user/--password, --token, --tlsca, --tlscert and --tlskey.
func authOptions(cfg *config.Config) ([]nats.Option, error) {
	n := cfg.NATS
	var opts []nats.Option
	switch {
	case n.Creds != "":
		opts = append(opts, nats.UserCredentials(n.Creds))
	case n.NkeyFile != "":
		o, err := nats.NkeyOptionFromSeed(n.NkeyFile)
		if err != nil {
			return nil, fmt.Errorf("config: nats.nkey_file: %s holds no nkey seed: %v", n.NkeyFile, err)
		}
		opts = append(opts, o)
	case n.User != "":
		opts = append(opts, nats.UserInfo(n.User, n.Password.Reveal()))
	case n.Token != "":
		opts = append(opts, nats.Token(n.Token.Reveal()))
	}
	if n.TLS.CAFile != "" {
		opts = append(opts, nats.RootCAs(n.TLS.CAFile))
	}
	if n.TLS.CertFile != "" {
		opts = append(opts, nats.ClientCert(n.TLS.CertFile, n.TLS.KeyFile))
	}
	if n.TLS.Enabled() {
		opts = append(opts, nats.Secure())
	}
	return opts, nil
}

// refused reports whether err is the server answering no (credentials or TLS), as opposed to
// not answering at all.
func refused(err error) bool {
	for _, e := range []error{nats.ErrAuthorization, nats.ErrAuthExpired, nats.ErrAuthRevoked,
		nats.ErrAccountAuthExpired, nats.ErrSecureConnRequired, nats.ErrSecureConnWanted, nats.ErrNkeysNotSupported} {
		if errors.Is(err, e) {
			return true
		}
	}
	var unknownCA x509.UnknownAuthorityError
	var hostname x509.HostnameError
	var invalid x509.CertificateInvalidError
	var verify *tls.CertificateVerificationError
	var header tls.RecordHeaderError
	if errors.As(err, &unknownCA) || errors.As(err, &hostname) || errors.As(err, &invalid) ||
		errors.As(err, &verify) || errors.As(err, &header) {
		return true
	}
	// A client certificate the server refuses comes back as a TLS alert, which has no type.
	return strings.Contains(err.Error(), "tls: ")
}

// authKeys names the configuration keys a refusal is about.
func authKeys(cfg *config.Config) string {
	n := cfg.NATS
	keys := "nats.url"
	switch {
	case n.Creds != "":
		keys += ", nats.creds"
	case n.NkeyFile != "":
		keys += ", nats.nkey_file"
	case n.User != "":
		keys += ", nats.user, nats.password"
	case n.Token != "":
		keys += ", nats.token"
	}
	if n.TLS.Enabled() {
		keys += ", nats.tls"
	}
	return keys
}

// Serve provisions JetStream and processes requests for provs until ctx ends. ready, if given,
// is called once the streams and the consumer are in place and the lookup service answers.
//
// Spans are exported when the standard OTEL_* variables ask for it (see StartTracing).
func Serve(ctx context.Context, cfg *config.Config, nc *nats.Conn, provs []providers.Provider, log *slog.Logger, ready ...func()) error {
	stopTracing, err := StartTracing(ctx, log)
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

// NewReplica provisions JetStream on nc (or binds to what an operator made, with
// nats.provision false) and builds the handler and service for provs, as cfg
// shapes them. metrics may be nil.
func NewReplica(ctx context.Context, cfg *config.Config, nc *nats.Conn, provs []providers.Provider, log *slog.Logger, metrics *Metrics) (*Replica, error) {
	// Events and pending-mark clears are published without waiting; an answer the server never
	// sends (a leader lost mid-write) fails the write after this long, and the request is
	// delivered again.
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncTimeout(5*time.Second))
	if err != nil {
		return nil, err
	}
	assets, err := ProvisionRetrying(ctx, js, cfg, log)
	if err != nil {
		return nil, err
	}
	if metrics == nil {
		metrics = NewMetrics(prometheus.NewRegistry())
	}
	lim := ratelimit.New(countingKV{assets.Rate, metrics.RoundTrips.WithLabelValues("limiter"), metrics.RoundTrips.WithLabelValues("limiter_background")})
	h := NewHandler(Options{
		JS: js, State: assets.State, Limiter: lim, Subjects: events.Subjects{Prefix: cfg.NATS.SubjectPrefix},
		Providers: provs, Encoding: events.Encoding(cfg.Events.Encoding),
		AckWait: cfg.Consumer.AckWait, MaxDeliver: cfg.Consumer.MaxDeliver, Log: log,
		FollowDelay: cfg.Consumer.FollowDelay, FollowMaxDelay: cfg.Consumer.FollowMaxDelay, Metrics: metrics,
	})
	svc := &Service{Consumer: assets.Consumer, Handler: h, Concurrency: cfg.Consumer.Concurrency,
		Grace: cfg.Consumer.AckWait * 2 / 3, Log: log,
		Rebind: func(ctx context.Context) (jetstream.Consumer, error) {
			if !cfg.NATS.Provision { // an operator's consumer: look it up, never make it
				return js.Consumer(ctx, QueryStream, cfg.Consumer.Name)
			}
			return js.CreateOrUpdateConsumer(ctx, QueryStream, ConsumerConfig(cfg))
		}}
	return &Replica{Assets: assets, Handler: h, Service: svc}, nil
}
