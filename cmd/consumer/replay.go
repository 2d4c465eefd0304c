package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/nats-io/jsm.go/natscontext"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/paystatus/orderstatus/internal/config"
	"github.com/paystatus/orderstatus/internal/dlq"
	"github.com/paystatus/orderstatus/internal/events"
	"github.com/paystatus/orderstatus/internal/natsinfra"
	"github.com/paystatus/orderstatus/internal/providers/registry"
)

type replayCmd struct {
	Config  string `placeholder:"FILE" help:"Configuration file (YAML): its NATS settings, subject prefix and providers. Without it: subject prefix orders, every provider and kind the build knows."`
	Server  string `short:"s" placeholder:"URL" help:"NATS server URL(s), as nats --server; over the config's and the context's."`
	Creds   string `placeholder:"FILE" help:"NATS .creds file, as nats --creds; over the config's and the context's authentication."`
	Context string `name:"context" placeholder:"NAME" help:"A nats CLI context (~/.config/nats/context/NAME.json): url, creds, nkey, user, password, token, TLS. Without --config, the nats CLI's selected context is used."`

	Reason   []string `placeholder:"R" help:"Only these Orders-Error-Reason codes, comma separated (e.g. retries_exhausted,unknown_app)."`
	Provider string   `placeholder:"P" help:"Only dead letters of this provider (orders.dlq.<provider>.<kind>)."`
	Kind     string   `placeholder:"K" help:"Only dead letters of this kind."`
	Since    string   `placeholder:"T" help:"Only dead letters stored at or after this RFC 3339 time, or this long ago (\"2h\")."`
	Until    string   `placeholder:"T" help:"Only dead letters stored at or before this RFC 3339 time, or this long ago."`
	DryRun   bool     `help:"List what would be replayed and skipped; change nothing."`
	JSON     bool     `name:"json" help:"Write the summary, with every letter's result, as one JSON object."`
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

func (c *replayCmd) filter() (dlq.Filter, error) {
	now := time.Now()
	var f dlq.Filter
	var err error
	if f.Since, err = parseTime(c.Since, now); err != nil {
		return f, err
	}
	if f.Until, err = parseTime(c.Until, now); err != nil {
		return f, err
	}
	for _, r := range c.Reason {
		for _, r := range strings.Split(r, ",") {
			if r = strings.TrimSpace(r); r != "" {
				f.Reasons = append(f.Reasons, r)
			}
		}
	}
	f.Provider, f.Kind = c.Provider, c.Kind
	for _, tok := range []string{f.Provider, f.Kind} {
		if strings.ContainsAny(tok, ".*> \t") {
			return f, fmt.Errorf("%w: %q is not a subject token", errUsage, tok)
		}
	}
	return f, nil
}

func (c *replayCmd) Run(e *env) error {
	f, err := c.filter()
	if err != nil {
		return err
	}
	cfg, known, err := c.config()
	if err != nil {
		return err
	}
	nc, err := c.connect(cfg)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	r := &dlq.Replayer{JS: js, Subjects: events.Subjects{Prefix: cfg.NATS.SubjectPrefix}, Known: known}
	if !c.JSON {
		r.Out = e.stdout
	}
	var sum *dlq.Summary
	if c.DryRun {
		sum, err = r.DryRun(e.ctx, f)
	} else {
		var progress io.Writer
		if !c.JSON {
			progress = progressOn(e.stderr)
		}
		sum, err = r.Replay(e.ctx, f, progress)
	}
	if err != nil {
		return err
	}
	if c.JSON {
		err = writeJSON(e.stdout, sum)
	} else {
		_, err = fmt.Fprintln(e.stdout, sum)
	}
	if err != nil {
		return err
	}
	switch {
	case c.DryRun:
		return nil
	case c.JSON && (sum.SkippedTotal() > 0 || sum.Stopped != ""):
		return silentError{code: 1}
	case sum.Stopped != "":
		return fmt.Errorf("stopped (%s) after %d of %d dead letters; the rest are still in %s", sum.Stopped, len(sum.Letters), sum.Selected, natsinfra.DLQStream)
	case sum.SkippedTotal() > 0:
		return fmt.Errorf("%d dead letters skipped; they are still in %s", sum.SkippedTotal(), natsinfra.DLQStream)
	}
	return nil
}

// config is the configuration the replay reads (--config, or the defaults) and which
// provider and kind a replay may go to: those configured, or without --config every one a
// provider package answers.
func (c *replayCmd) config() (*config.Config, func(provider, kind string) bool, error) {
	if c.Config == "" {
		return config.Default(), registry.Supports, nil
	}
	cfg, err := config.Load(c.Config, os.LookupEnv)
	if err != nil {
		return nil, nil, err
	}
	provs, err := registry.Build(cfg)
	if err != nil {
		return nil, nil, err
	}
	return cfg, func(provider, kind string) bool {
		for _, p := range provs {
			if p.Name() == provider {
				return p.SupportsKind(kind)
			}
		}
		return false
	}, nil
}

// connect reaches NATS as the nats CLI does: a context (named, or the selected one when there
// is no --config) or the config's nats keys, with --server and --creds over either.
func (c *replayCmd) connect(cfg *config.Config) (*nats.Conn, error) {
	const name = "order-status-consumer dlq replay"
	if c.Creds != "" {
		if err := config.CheckCredsFile(c.Creds); err != nil {
			return nil, err
		}
	}
	ctxName := c.Context
	if ctxName == "" && c.Config == "" {
		ctxName = natscontext.SelectedContext()
	}
	if ctxName != "" {
		var opts []natscontext.Option
		if c.Server != "" {
			opts = append(opts, natscontext.WithServerURL(c.Server))
		}
		if c.Creds != "" {
			opts = append(opts, natscontext.WithCreds(c.Creds), natscontext.WithNKey(""), natscontext.WithUser(""),
				natscontext.WithPassword(""), natscontext.WithToken(""))
		}
		nctx, err := natscontext.New(ctxName, true, opts...)
		if err != nil {
			return nil, fmt.Errorf("%w: --context %s: %v", errUsage, ctxName, err)
		}
		nopts, err := nctx.NATSOptions()
		if err != nil {
			return nil, fmt.Errorf("%w: --context %s: %v", errUsage, ctxName, err)
		}
		return natsinfra.Dial(nctx.ServerURL(), name, nopts...)
	}
	if c.Server != "" {
		cfg.NATS.URL = c.Server
	}
	if c.Creds != "" {
		cfg.NATS.Creds, cfg.NATS.NkeyFile, cfg.NATS.User, cfg.NATS.Password, cfg.NATS.Token = c.Creds, "", "", "", ""
	}
	auth, err := natsinfra.AuthOptions(cfg)
	if err != nil {
		return nil, err
	}
	return natsinfra.Dial(cfg.NATS.URL, name, auth...)
}

// progressOn is where the progress bar is drawn: stderr when it is a terminal, else nowhere.
func progressOn(w io.Writer) io.Writer {
	if f, ok := w.(*os.File); ok && (isatty.IsTerminal(f.Fd()) || isatty.IsCygwinTerminal(f.Fd())) {
		return f
	}
	return nil
}
