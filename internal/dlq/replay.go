package dlq

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
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
	Out      io.Writer // the report, a line a dead letter
	dlq      jetstream.Stream
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

// DryRun lists what Replay would replay, and changes nothing.
func (r *Replayer) DryRun(ctx context.Context, f Filter) error {
	list, err := r.selectDeadLetters(ctx, f)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(r.Out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SEQ\tSTORED\tDEAD LETTER\tREASON\tREPLAY TO\tBYTES")
	for _, s := range list {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%d\n", s.seq, s.time.UTC().Format(time.RFC3339), s.subject, s.reason, s.target, s.size)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err = fmt.Fprintf(r.Out, "%d dead letters would be replayed (dry run: nothing changed)\n", len(list))
	return err
}

// Replay republishes each selected dead letter and deletes it only once JetStream has acked
// its replay into ORDERS_QUERY; it stops at the first failure, so what it could not store stays
// a dead letter. A replay carries Nats-Msg-Id "<original id or dlq>-replay-<dead letter seq>":
// if a run stops between a stored replay and its delete, the next run within the duplicate
// window is acked as a duplicate, not queued twice, and then deletes the dead letter.
func (r *Replayer) Replay(ctx context.Context, f Filter, progress io.Writer) error {
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
				done, len(list), s.seq, s.target, err, len(list)-i-1, natsinfra.DLQStream)
		}
		if stored.Duplicate {
			dup++
		}
		done++
		fmt.Fprintf(r.Out, "replayed %d %s -> %s (%s seq %d)\n", s.seq, s.reason, s.target, stored.Stream, stored.Sequence)
	}
	if bar != nil {
		_ = bar.Finish()
	}
	_, err = fmt.Fprintf(r.Out, "%d dead letters replayed (%d were already queued), %d gone before their turn\n", done, dup, gone)
	return err
}

// replayOne stores one dead letter's request in ORDERS_QUERY, then deletes the dead letter and
// its .payload message. A delete that fails leaves a dead letter whose replay is stored: the
// error says so, and a new run deletes it without queueing it twice.
func (r *Replayer) replayOne(ctx context.Context, s selected) (*jetstream.PubAck, error) {
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
	ack, err := r.JS.PublishMsg(cctx, &nats.Msg{Subject: s.target, Data: data, Header: hdr}, jetstream.WithExpectStream(natsinfra.QueryStream))
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

func (r *Replayer) delete(ctx context.Context, seq uint64) error {
	cctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	err := r.dlq.DeleteMsg(cctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil // gone already: what we wanted
	}
	return err
}
