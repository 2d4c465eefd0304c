package dlq

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/schollz/progressbar/v3"

	"github.com/paystatus/orderstatus/internal/events"
	"github.com/paystatus/orderstatus/internal/natsinfra"
)

// opTimeout bounds each NATS call of a replay, so a lost server ends it with an error instead
// of a hang.
const opTimeout = 10 * time.Second

// Filter selects dead letters; empty fields select all.
type Filter struct {
	Reasons        []string
	Provider, Kind string
	Since, Until   time.Time
}

func (f Filter) matches(m *jetstream.RawStreamMsg) bool {
	if len(f.Reasons) > 0 && !slices.Contains(f.Reasons, m.Header.Get(events.HeaderErrorReason)) {
		return false
	}
	if !f.Since.IsZero() && m.Time.Before(f.Since) {
		return false
	}
	return f.Until.IsZero() || !m.Time.After(f.Until)
}

// Replayer republishes dead letters from ORDERS_DLQ to the query subjects they came from.
type Replayer struct {
	JS       jetstream.JetStream
	Subjects events.Subjects
	// Known reports whether provider and kind are ones the service answers: a letter whose
	// Orders-Subject names anything else is skipped, never stored where nothing consumes it.
	Known func(provider, kind string) bool
	Out   io.Writer // the report, a line a dead letter; nil for none
	dlq   jetstream.Stream
}

// Why a dead letter is skipped: stable codes, as in the summary and its JSON.
const (
	SkipNoSubject     = "no_orders_subject"     // no Orders-Subject header
	SkipNotQuery      = "not_a_query_subject"   // Orders-Subject is not <prefix>.query.<provider>.<kind>
	SkipUnknown       = "unknown_provider_kind" // a query subject of a provider or kind not configured
	SkipTooBig        = "too_big"               // does not fit the server's max_payload or the stream's max_msg_size
	SkipPayload       = "payload_unreadable"    // its .payload message is missing or does not match
	SkipPublish       = "publish_failed"        // JetStream did not store the replay
	SkipNotDeleted    = "not_deleted"           // the replay is stored but the dead letter could not be deleted
	ResultReplayed    = "replayed"
	ResultDuplicate   = "duplicate" // stored by an earlier run: JetStream acked it as a duplicate
	ResultSkipped     = "skipped"
	ResultGone        = "gone"         // deleted since it was selected (another replay, or its max age)
	ResultWouldReplay = "would_replay" // in a dry run
)

// selected is a dead letter the filter picked, as first read.
type selected struct {
	seq     uint64
	time    time.Time
	subject string // its dead-letter subject
	reason  string
	target  string // Orders-Subject
	size    int    // the whole payload's size
}

func (s selected) letter() Letter {
	return Letter{Seq: s.seq, Stored: s.time.UTC(), Subject: s.subject, Reason: s.reason, Target: s.target, Bytes: s.size}
}

// checkTarget says why s cannot be replayed where it names, or "" if it can: only a query
// subject of a provider and kind the service answers is a place a replay is consumed.
func (r *Replayer) checkTarget(s selected) (code, detail string) {
	if s.target == "" {
		return SkipNoSubject, "no " + events.HeaderSubject + " header"
	}
	p, k, ok := r.Subjects.ParseQuery(s.target)
	if !ok {
		return SkipNotQuery, fmt.Sprintf("%s is not %s.query.<provider>.<kind>", s.target, r.Subjects.Prefix)
	}
	if r.Known != nil && !r.Known(p, k) {
		return SkipUnknown, fmt.Sprintf("no configured provider answers %s %s queries", p, k)
	}
	return "", ""
}

// selectDeadLetters reads ORDERS_DLQ up to its last message at the start (replays that are
// dead-lettered again while this runs are not picked up again) and returns the ones f selects.
func (r *Replayer) selectDeadLetters(ctx context.Context, f Filter) ([]selected, error) {
	var err error
	cctx, cancel := context.WithTimeout(ctx, opTimeout)
	r.dlq, err = r.JS.Stream(cctx, natsinfra.DLQStream)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", natsinfra.DLQStream, err)
	}
	st := r.dlq.CachedInfo().State
	if st.Msgs == 0 {
		return nil, nil
	}
	filter := r.Subjects.DeadLetter(or(f.Provider, "*"), or(f.Kind, "*")) // not the .payload messages
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

func (r *Replayer) get(ctx context.Context, seq uint64, opts ...jetstream.GetMsgOpt) (*jetstream.RawStreamMsg, error) {
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

// DryRun lists what Replay would do, and changes nothing: the dead letters it would replay and
// the ones it would skip for where they name.
func (r *Replayer) DryRun(ctx context.Context, f Filter) (*Summary, error) {
	list, err := r.selectDeadLetters(ctx, f)
	if err != nil {
		return nil, err
	}
	sum := &Summary{DryRun: true, Selected: len(list), Letters: []Letter{}}
	tw := tabwriter.NewWriter(or2(r.Out), 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SEQ\tSTORED\tDEAD LETTER\tREASON\tREPLAY TO\tBYTES\tSKIP")
	for _, s := range list {
		l := s.letter()
		l.Result = ResultWouldReplay
		if l.Skip, l.Detail = r.checkTarget(s); l.Skip != "" {
			l.Result = ResultSkipped
		}
		sum.add(l)
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%d\t%s\n", s.seq, s.time.UTC().Format(time.RFC3339), s.subject, s.reason, or(s.target, "-"), s.size, l.Skip)
	}
	return sum, tw.Flush()
}

// or2 is w, or a writer that discards.
func or2(w io.Writer) io.Writer {
	if w == nil {
		return io.Discard
	}
	return w
}

// Replay republishes each selected dead letter and deletes it only once JetStream has acked
// its replay into ORDERS_QUERY. A letter that cannot be replayed is skipped with its reason
// and stays a dead letter; the run goes on to the next. A replay carries Nats-Msg-Id
// "<original id or dlq>-replay-<dead letter seq>": if a run stops between a stored replay and
// its delete, the next run within the duplicate window is acked as a duplicate, not queued
// twice, and then deletes the dead letter.
//
// ctx ending (a signal) stops the run between letters: a letter already begun is finished on
// its own deadline and reported as it ended, never as cancelled half-way.
func (r *Replayer) Replay(ctx context.Context, f Filter, progress io.Writer) (*Summary, error) {
	list, err := r.selectDeadLetters(ctx, f)
	if err != nil {
		return nil, err
	}
	limit := r.limit(ctx)
	sum := &Summary{Selected: len(list), Letters: []Letter{}}
	var bar *progressbar.ProgressBar
	if progress != nil && len(list) > 0 {
		bar = progressbar.NewOptions(len(list), progressbar.OptionSetWriter(progress),
			progressbar.OptionSetDescription("replaying"), progressbar.OptionShowCount(),
			progressbar.OptionClearOnFinish(), progressbar.OptionSetPredictTime(true))
	}
	out := or2(r.Out)
	for _, s := range list {
		if err := ctx.Err(); err != nil {
			sum.Stopped = err.Error()
			break
		}
		// Not ctx: a letter begun is finished, so its result is the true one.
		l := r.replayOne(context.WithoutCancel(ctx), s, limit)
		sum.add(l)
		if bar != nil {
			_ = bar.Add(1)
		}
		switch l.Result {
		case ResultReplayed, ResultDuplicate:
			fmt.Fprintf(out, "replayed %d %s -> %s (%s seq %d)%s\n", s.seq, s.reason, s.target, natsinfra.QueryStream, l.StreamSeq, note(l.Detail))
		case ResultSkipped:
			fmt.Fprintf(out, "skipped %d %s: %s: %s\n", s.seq, s.reason, l.Skip, l.Detail)
		case ResultGone:
			fmt.Fprintf(out, "gone %d %s: deleted since it was selected\n", s.seq, s.reason)
		}
		if l.Result == ResultSkipped && l.Skip == SkipPublish && !r.JS.Conn().IsConnected() {
			sum.Stopped = "NATS connection lost"
			break
		}
	}
	if bar != nil {
		_ = bar.Finish()
	}
	return sum, nil
}

func note(s string) string {
	if s == "" {
		return ""
	}
	return "; " + s
}

func (r *Replayer) delete(ctx context.Context, seq uint64) error {
	cctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	err := r.dlq.DeleteMsg(cctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil // gone already: what we wanted
	}
	return err
}
