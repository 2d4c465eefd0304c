package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/schollz/progressbar/v3"

	"github.com/paystatus/orderstatus/internal/config"
	"github.com/paystatus/orderstatus/internal/events"
	"github.com/paystatus/orderstatus/internal/handlers"
)

// opTimeout bounds each NATS call of the operator tools, so a lost server ends the command
// with an error instead of a hang.
const opTimeout = 10 * time.Second

// runDLQ dispatches `consumer dlq <command>`.
func runDLQ(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "replay" {
		return fmt.Errorf("%w: consumer dlq replay --config FILE [flags] (see consumer dlq replay --help)", errUsage)
	}
	return runReplay(ctx, args[1:], stdout, stderr)
}

// replayFilter selects dead letters; empty fields select all.
type replayFilter struct {
	reasons        []string
	provider, kind string
	since, until   time.Time
}

func (f replayFilter) matches(m *jetstream.RawStreamMsg) bool {
	if len(f.reasons) > 0 && !slices.Contains(f.reasons, m.Header.Get(events.HeaderErrorReason)) {
		return false
	}
	if !f.since.IsZero() && m.Time.Before(f.since) {
		return false
	}
	return f.until.IsZero() || !m.Time.After(f.until)
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
	var f replayFilter
	var err error
	if f.since, err = parseTime(*since, now); err != nil {
		return err
	}
	if f.until, err = parseTime(*until, now); err != nil {
		return err
	}
	for _, r := range strings.Split(*reasons, ",") {
		if r = strings.TrimSpace(r); r != "" {
			f.reasons = append(f.reasons, r)
		}
	}
	f.provider, f.kind = *provider, *kind
	for _, tok := range []string{f.provider, f.kind} {
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
	nc, err := handlers.Connect(cfg, log)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	r := &replayer{js: js, subj: events.Subjects{Prefix: cfg.NATS.SubjectPrefix}, out: stdout, log: log}
	if *dryRun {
		return r.dryRun(ctx, f)
	}
	return r.replay(ctx, f, progressOn(stderr))
}

// progressOn is where the progress bar is drawn: stderr when it is a terminal, else nowhere.
func progressOn(w io.Writer) io.Writer {
	if f, ok := w.(*os.File); ok && (isatty.IsTerminal(f.Fd()) || isatty.IsCygwinTerminal(f.Fd())) {
		return f
	}
	return nil
}

type replayer struct {
	js   jetstream.JetStream
	subj events.Subjects
	out  io.Writer
	log  *slog.Logger
	dlq  jetstream.Stream
}

// selected is a dead letter the filter picked, as first read.
type selected struct {
	seq     uint64
	time    time.Time
	subject string // its dead-letter subject
	reason  string
	target  string // Orders-Subject
	size    int    // the whole payload's size
}

// selectDeadLetters reads ORDERS_DLQ up to its last message at the start (replays that are
// dead-lettered again while this runs are not picked up again) and returns the ones f selects.
func (r *replayer) selectDeadLetters(ctx context.Context, f replayFilter) ([]selected, error) {
	var err error
	cctx, cancel := context.WithTimeout(ctx, opTimeout)
	r.dlq, err = r.js.Stream(cctx, handlers.DLQStream)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", handlers.DLQStream, err)
	}
	st := r.dlq.CachedInfo().State
	if st.Msgs == 0 {
		return nil, nil
	}
	filter := r.subj.DeadLetter(or(f.provider, "*"), or(f.kind, "*")) // not the .payload messages
	var out []selected
	for seq := st.FirstSeq; seq <= st.LastSeq; {
		m, err := r.get(ctx, seq, jetstream.WithGetMsgSubject(filter))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read dead letters from %d: %w", seq, err)
		}
		if m.Sequence > st.LastSeq {
			break
		}
		seq = m.Sequence + 1
		if !f.matches(m) {
			continue
		}
		size := len(m.Data)
		if n, err := strconv.Atoi(m.Header.Get(events.HeaderOriginalSize)); err == nil {
			size = n
		}
		out = append(out, selected{seq: m.Sequence, time: m.Time, subject: m.Subject,
			reason: m.Header.Get(events.HeaderErrorReason), target: m.Header.Get(events.HeaderSubject), size: size})
	}
	return out, nil
}

func (r *replayer) get(ctx context.Context, seq uint64, opts ...jetstream.GetMsgOpt) (*jetstream.RawStreamMsg, error) {
	cctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	return r.dlq.GetMsg(cctx, seq, opts...)
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func (r *replayer) dryRun(ctx context.Context, f replayFilter) error {
	list, err := r.selectDeadLetters(ctx, f)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(r.out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SEQ\tSTORED\tDEAD LETTER\tREASON\tREPLAY TO\tBYTES")
	for _, s := range list {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%d\n", s.seq, s.time.UTC().Format(time.RFC3339), s.subject, s.reason, s.target, s.size)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err = fmt.Fprintf(r.out, "%d dead letters would be replayed (dry run: nothing changed)\n", len(list))
	return err
}

// replay republishes each selected dead letter and deletes it only once JetStream has acked
// its replay into ORDERS_QUERY; it stops at the first failure, so what it could not store stays
// a dead letter. A replay carries Nats-Msg-Id "<original id or dlq>-replay-<dead letter seq>":
// if a run stops between a stored replay and its delete, the next run within the duplicate
// window is acked as a duplicate, not queued twice, and then deletes the dead letter.
func (r *replayer) replay(ctx context.Context, f replayFilter, progress io.Writer) error {
	list, err := r.selectDeadLetters(ctx, f)
	if err != nil {
		return err
	}
	var bar *progressbar.ProgressBar
	if progress != nil && len(list) > 0 {
		bar = progressbar.NewOptions(len(list), progressbar.OptionSetWriter(progress),
			progressbar.OptionSetDescription("replaying"), progressbar.OptionShowCount(),
			progressbar.OptionClearOnFinish(), progressbar.OptionSetPredictTime(true))
	}
	done, dup, gone := 0, 0, 0
	for i, s := range list {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("stopped after %d of %d replays: %w", done, len(list), err)
		}
		stored, err := r.replayOne(ctx, s)
		if bar != nil {
			_ = bar.Add(1)
		}
		switch {
		case errors.Is(err, errGone):
			gone++ // deleted since it was selected (another replay, or its max age)
			continue
		case err != nil:
			if bar != nil {
				_ = bar.Clear()
			}
			return fmt.Errorf("replayed %d of %d; stopped at dead letter %d (%s): %w; it and the %d after it are still in %s",
				done, len(list), s.seq, s.target, err, len(list)-i-1, handlers.DLQStream)
		}
		if stored.Duplicate {
			dup++
		}
		done++
		fmt.Fprintf(r.out, "replayed %d %s -> %s (%s seq %d)\n", s.seq, s.reason, s.target, stored.Stream, stored.Sequence)
	}
	if bar != nil {
		_ = bar.Finish()
	}
	_, err = fmt.Fprintf(r.out, "%d dead letters replayed (%d were already queued), %d gone before their turn\n", done, dup, gone)
	return err
}

// replayOne stores one dead letter's request in ORDERS_QUERY, then deletes the dead letter and
// its .payload message. A delete that fails leaves a dead letter whose replay is stored: the
// error says so, and a new run deletes it without queueing it twice.
func (r *replayer) replayOne(ctx context.Context, s selected) (*jetstream.PubAck, error) {
	m, err := r.get(ctx, s.seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, errGone
	}
	if err != nil {
		return nil, err
	}
	data := m.Data
	var payloadSeq uint64
	if ps := m.Header.Get(events.HeaderPayloadSeq); ps != "" {
		if payloadSeq, err = strconv.ParseUint(ps, 10, 64); err != nil {
			return nil, fmt.Errorf("%s %q: %w", events.HeaderPayloadSeq, ps, err)
		}
		pm, err := r.get(ctx, payloadSeq)
		if err != nil {
			return nil, fmt.Errorf("its whole payload (seq %d): %w", payloadSeq, err)
		}
		if pm.Subject != m.Subject+".payload" || strconv.Itoa(len(pm.Data)) != m.Header.Get(events.HeaderOriginalSize) {
			return nil, fmt.Errorf("its whole payload (seq %d) is %d bytes on %s, not %s bytes on %s.payload",
				payloadSeq, len(pm.Data), pm.Subject, m.Header.Get(events.HeaderOriginalSize), m.Subject)
		}
		data = pm.Data
	}
	if s.target == "" {
		return nil, fmt.Errorf("no %s header", events.HeaderSubject)
	}
	hdr := nats.Header{}
	for k, vs := range m.Header {
		if !strings.HasPrefix(k, "Orders-") && !strings.HasPrefix(k, "Nats-") {
			hdr[k] = vs
		}
	}
	hdr.Set(events.HeaderMsgID, or(m.Header.Get(events.HeaderOriginalMsgID), "dlq")+"-replay-"+strconv.FormatUint(s.seq, 10))
	cctx, cancel := context.WithTimeout(ctx, opTimeout)
	ack, err := r.js.PublishMsg(cctx, &nats.Msg{Subject: s.target, Data: data, Header: hdr}, jetstream.WithExpectStream(handlers.QueryStream))
	cancel()
	if err != nil {
		return nil, fmt.Errorf("publish: %w", err)
	}
	// Stored: only now may the dead letter go.
	if err := r.delete(ctx, s.seq); err != nil {
		return nil, fmt.Errorf("replay stored (%s seq %d) but the dead letter is not deleted: %w", ack.Stream, ack.Sequence, err)
	}
	if payloadSeq != 0 {
		if err := r.delete(ctx, payloadSeq); err != nil {
			return nil, fmt.Errorf("replay stored and dead letter deleted, but not its payload message %d: %w", payloadSeq, err)
		}
	}
	return ack, nil
}

// errGone: the dead letter was deleted since it was selected.
var errGone = errors.New("dead letter gone")

func (r *replayer) delete(ctx context.Context, seq uint64) error {
	cctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	err := r.dlq.DeleteMsg(cctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil // gone already: what we wanted
	}
	return err
}
