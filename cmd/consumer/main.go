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
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"syscall"

	"github.com/paystatus/orderstatus/internal/app"
	"github.com/paystatus/orderstatus/internal/buildinfo"
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

const usage = `usage:
  consumer [run] --config FILE [--log-format auto|text|json]
                                run the service
  consumer dev [--dir DIR] [--nats-port N] [--encoding json|msgpack] [--reset] [--log-format ...]
                                NATS, provider sandboxes and the service on this machine
  consumer check --config FILE  validate the configuration without connecting
  consumer dlq replay --config FILE [--reason R,...] [--provider P] [--kind K]
                      [--since T] [--until T] [--dry-run]
                                republish dead letters to their query subjects
  consumer decode < message-body
                                one message body (msgpack or JSON) as JSON
  consumer config               every configuration key, its default and meaning
  consumer version              version and VCS revision of this build
  consumer help                 this text

Every command takes --version and --help.
`

// run is the whole command, with its inputs and outputs passed in so tests can drive it.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		// As go and git do: a bare command is a usage error, so the help goes to stderr.
		fmt.Fprint(stderr, usage)
		return 2
	}
	if wantsVersion(args) {
		fmt.Fprintln(stdout, buildinfo.Read())
		return 0
	}
	cmd := "run"
	if len(args[0]) > 0 && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	} else if args[0] == "-h" || args[0] == "-help" || args[0] == "--help" {
		cmd = "help"
	}
	if (cmd == "decode" || cmd == "config" || cmd == "version") && slices.ContainsFunc(args, func(a string) bool { return a == "-h" || a == "--help" || a == "-help" }) {
		cmd = "help" // commands without flags of their own
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
	case "check":
		err = runCheck(args, stdout, stderr)
	case "dlq":
		err = runDLQ(ctx, args, stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, buildinfo.Read())
		return 0
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

// wantsVersion says whether a --version flag comes before any "--": every command takes it.
func wantsVersion(args []string) bool {
	for _, a := range args {
		switch a {
		case "--":
			return false
		case "--version", "-version":
			return true
		}
	}
	return false
}

// runCheck does every check a start does before it connects: the file, every key, the
// providers' own checks and the logger.
func runCheck(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("consumer check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "configuration file (YAML)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *path == "" || fs.NArg() > 0 {
		return fmt.Errorf("%w: consumer check --config FILE", errUsage)
	}
	cfg, err := config.Load(*path, os.LookupEnv)
	if err != nil {
		return err
	}
	provs, err := registry.Build(cfg)
	if err != nil {
		return err
	}
	if _, err := newLogger(io.Discard, cfg.Log.Format, cfg.Log.Level); err != nil {
		return &config.Error{Key: "log", Msg: err.Error()}
	}
	apps := 0
	for _, p := range cfg.Providers {
		apps += len(p.Apps)
	}
	fmt.Fprintf(stdout, "ok: %s (%d providers, %d apps, NATS %s)\n", *path, len(provs), apps, config.RedactURL(cfg.NATS.URL))
	return nil
}

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
	nc, err := natsinfra.Connect(cfg, log)
	if err != nil {
		return err
	}
	defer nc.Close()
	return app.Serve(ctx, cfg, nc, provs, log, ready)
}
