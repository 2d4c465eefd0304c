package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/paystatus/orderstatus/internal/config"
	"github.com/paystatus/orderstatus/internal/dlq"
	"github.com/paystatus/orderstatus/internal/events"
	"github.com/paystatus/orderstatus/internal/natsinfra"
)

// runDLQ dispatches `consumer dlq <command>`.
func runDLQ(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "replay" {
		return fmt.Errorf("%w: consumer dlq replay --config FILE [flags] (see consumer dlq replay --help)", errUsage)
	}
	return runReplay(ctx, args[1:], stdout, stderr)
}

// parseTime reads an RFC 3339 time, or a duration meaning that long before now.
func parseTime(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("%w: %q is neither an RFC 3339 time nor a duration", errUsage, s)
}

func runReplay(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("consumer dlq replay", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "configuration file (YAML); the same NATS settings as the service")
	reasons := fs.String("reason", "", "only these Orders-Error-Reason codes, comma separated (e.g. retries_exhausted,unknown_app)")
	provider := fs.String("provider", "", "only dead letters of this provider (orders.dlq.<provider>.<kind>)")
	kind := fs.String("kind", "", "only dead letters of this kind")
	since := fs.String("since", "", "only dead letters stored at or after this RFC 3339 time, or this long ago (\"2h\")")
	until := fs.String("until", "", "only dead letters stored at or before this RFC 3339 time, or this long ago")
	dryRun := fs.Bool("dry-run", false, "list what would be replayed; change nothing")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `usage: consumer dlq replay --config FILE [flags]

Republishes dead letters from ORDERS_DLQ to their Orders-Subject (in ORDERS_QUERY), payload byte
for byte and the request's own headers, then deletes each one once its replay is stored.

`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *path == "" || fs.NArg() > 0 {
		return fmt.Errorf("%w: consumer dlq replay --config FILE [flags]", errUsage)
	}
	now := time.Now()
	var f dlq.Filter
	var err error
	if f.Since, err = parseTime(*since, now); err != nil {
		return err
	}
	if f.Until, err = parseTime(*until, now); err != nil {
		return err
	}
	for _, r := range strings.Split(*reasons, ",") {
		if r = strings.TrimSpace(r); r != "" {
			f.Reasons = append(f.Reasons, r)
		}
	}
	f.Provider, f.Kind = *provider, *kind
	for _, tok := range []string{f.Provider, f.Kind} {
		if strings.ContainsAny(tok, ".*> \t") {
			return fmt.Errorf("%w: %q is not a subject token", errUsage, tok)
		}
	}
	cfg, err := config.Load(*path, os.LookupEnv)
	if err != nil {
		return err
	}
	log, err := newLogger(stderr, cfg.Log.Format, "warn") // the tool's own output is the report
	if err != nil {
		return err
	}
	nc, err := natsinfra.Connect(cfg, log)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	r := &dlq.Replayer{JS: js, Subjects: events.Subjects{Prefix: cfg.NATS.SubjectPrefix}, Out: stdout}
	if *dryRun {
		return r.DryRun(ctx, f)
	}
	return r.Replay(ctx, f, progressOn(stderr))
}

// progressOn is where the progress bar is drawn: stderr when it is a terminal, else nowhere.
func progressOn(w io.Writer) io.Writer {
	if f, ok := w.(*os.File); ok && (isatty.IsTerminal(f.Fd()) || isatty.IsCygwinTerminal(f.Fd())) {
		return f
	}
	return nil
}
