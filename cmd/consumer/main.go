// Command consumer is the order-status consumer: it answers query requests published on NATS
// JetStream by asking Kuaishou and Kudian, and publishes status-changed events.
//
//	consumer --config FILE        run the service (also: consumer run --config FILE)
//	consumer dev                  run everything on this machine: NATS, sandboxes, the service
//	consumer decode               read one message body on stdin, write it as JSON
//	consumer config               list every configuration key, its default and meaning
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"

	"github.com/paystatus/orderstatus/internal/config"
	"github.com/paystatus/orderstatus/internal/handlers"
	"github.com/paystatus/orderstatus/internal/providers/registry"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

const usage = `usage:
  consumer [run] --config FILE [--log-format auto|text|json]
  consumer dev [--dir DIR] [--nats-port N] [--encoding json|msgpack] [--reset] [--log-format ...]
  consumer decode < message-body
  consumer config               every configuration key, its default and meaning
`

// run is the whole command, with its inputs and outputs passed in so tests can drive it.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	cmd := "run"
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	}
	var err error
	switch cmd {
	case "run":
		err = runService(ctx, args, stderr)
	case "dev":
		err = runDev(ctx, args, stdout, stderr)
	case "decode":
		err = runDecode(stdin, stdout)
	case "config":
		err = runConfigReference(stdout)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "consumer: unknown command %q\n%s", cmd, usage)
		return 2
	}
	var ce *config.Error
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &ce), errors.Is(err, errUsage):
		fmt.Fprintf(stderr, "consumer: %v\n", err)
		return 2
	}
	fmt.Fprintf(stderr, "consumer: %v\n", err)
	return 1
}

var errUsage = errors.New("usage")

func runService(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("consumer run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "configuration file (YAML)")
	logFormat := fs.String("log-format", "", "auto, text or json (default: log.format from the config)")
	cpuProfile := fs.String("cpu-profile", "", "write a pprof CPU profile of the whole run to this file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	if *path == "" {
		return fmt.Errorf("%w: --config FILE is required", errUsage)
	}
	cfg, err := config.Load(*path, os.LookupEnv)
	if err != nil {
		return err
	}
	if *logFormat != "" {
		cfg.Log.Format = *logFormat
	}
	log, err := newLogger(stderr, cfg.Log.Format, cfg.Log.Level)
	if err != nil {
		return err
	}
	if err := serve(ctx, cfg, log, nil); err != nil {
		return err
	}
	log.Info("stopped")
	return nil
}

// serve builds the configured providers, connects to NATS and runs the service until ctx
// ends; ready, if not nil, is called once requests are being taken.
func serve(ctx context.Context, cfg *config.Config, log *slog.Logger, ready func()) error {
	provs, err := registry.Build(cfg)
	if err != nil {
		return err
	}
	nc, err := handlers.Connect(cfg, log)
	if err != nil {
		return err
	}
	defer nc.Close()
	return handlers.Serve(ctx, cfg, nc, provs, log, ready)
}
