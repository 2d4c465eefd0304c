// Command consumer is the order-status consumer: it answers query requests published on NATS
// JetStream by asking Kuaishou and Kudian, and publishes status-changed events.
//
//	consumer --config FILE        run the service (also: consumer run --config FILE)
//	consumer dev                  run everything on this machine: NATS, sandboxes, the service
//	consumer decode               read one message body on stdin, write it as JSON
//	consumer config               list every configuration key, its default and meaning
//	consumer check --config FILE  validate the configuration without connecting
//	consumer dlq replay ...       republish dead letters to their query subjects
//	consumer version              the build's version and VCS revision (also --version)
//	consumer completion SHELL     a bash, zsh or fish completion script
//
// The command line is declared once, in cli.go, and parsed by kong.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"runtime/pprof"
	"syscall"

	"github.com/paystatus/orderstatus/internal/app"
	"github.com/paystatus/orderstatus/internal/config"
	"github.com/paystatus/orderstatus/internal/natsinfra"
	"github.com/paystatus/orderstatus/internal/providers/registry"
)

// gcPercent is the garbage collector's target when GOGC is not set: the live heap is small (a
// few MB a thousand requests in flight), so collecting at three times it saves CPU at little
// memory (docs/performance.md has the figures). GOGC, and GOMEMLIMIT for a container's limit,
// still decide when set.
const gcPercent = 200

func main() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

type serviceCmd struct {
	Config     string `placeholder:"FILE" required:"" help:"Configuration file (YAML)."`
	LogFormat  string `placeholder:"auto|text|json" help:"auto, text or json (default: log.format from the config)."`
	CPUProfile string `name:"cpu-profile" placeholder:"FILE" help:"Write a pprof CPU profile of the whole run to this file."`
}

func (c *serviceCmd) Run(e *env) error {
	if c.CPUProfile != "" {
		f, err := os.Create(c.CPUProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	cfg, err := config.Load(c.Config, os.LookupEnv)
	if err != nil {
		return err
	}
	if c.LogFormat != "" {
		cfg.Log.Format = c.LogFormat
	}
	log, err := newLogger(e.stderr, cfg.Log.Format, cfg.Log.Level)
	if err != nil {
		return err
	}
	if err := serve(e.ctx, cfg, log, nil); err != nil {
		return err
	}
	log.Info("stopped")
	return nil
}

type checkCmd struct {
	Config string `placeholder:"FILE" required:"" help:"Configuration file (YAML)."`
	JSON   bool   `name:"json" help:"As a JSON object: {\"ok\":true,\"providers\":N,\"apps\":N,\"nats\":URL} or {\"ok\":false,\"key\":K,\"error\":E}."`
}

// checkResult is `consumer check --json`.
type checkResult struct {
	OK        bool   `json:"ok"`
	Providers int    `json:"providers"`
	Apps      int    `json:"apps"`
	NATS      string `json:"nats,omitempty"` // credentials redacted
	Key       string `json:"key,omitempty"`
	Error     string `json:"error,omitempty"`
}

// Run does every check a start does before it connects: the file, every key, the providers'
// own checks and the logger.
func (c *checkCmd) Run(e *env) error {
	res, err := check(c.Config)
	if !c.JSON {
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(e.stdout, "ok: %s (%d providers, %d apps, NATS %s)\n", c.Config, res.Providers, res.Apps, res.NATS)
		return err
	}
	if err != nil {
		res = checkResult{Error: err.Error()}
		var ce *config.Error
		if errors.As(err, &ce) {
			res.Key = ce.Key
		}
	}
	if werr := writeJSON(e.stdout, res); werr != nil {
		return werr
	}
	if err != nil {
		return silentError{code: exitFor(err, io.Discard)}
	}
	return nil
}

func check(path string) (checkResult, error) {
	cfg, err := config.Load(path, os.LookupEnv)
	if err != nil {
		return checkResult{}, err
	}
	provs, err := registry.Build(cfg)
	if err != nil {
		return checkResult{}, err
	}
	if _, err := newLogger(io.Discard, cfg.Log.Format, cfg.Log.Level); err != nil {
		return checkResult{}, &config.Error{Key: "log", Msg: err.Error()}
	}
	apps := 0
	for _, p := range cfg.Providers {
		apps += len(p.Apps)
	}
	return checkResult{OK: true, Providers: len(provs), Apps: apps, NATS: config.RedactURL(cfg.NATS.URL)}, nil
}

// serve builds the configured providers, connects to NATS and runs the service until ctx
// ends; ready, if not nil, is called once requests are being taken.
func serve(ctx context.Context, cfg *config.Config, log *slog.Logger, ready func()) error {
	provs, err := registry.Build(cfg)
	if err != nil {
		return err
	}
	nc, err := natsinfra.Connect(cfg, log)
	if err != nil {
		return err
	}
	defer nc.Close()
	return app.Serve(ctx, cfg, nc, provs, log, ready)
}
