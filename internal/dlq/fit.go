package dlq

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/paystatus/orderstatus/internal/events"
	"github.com/paystatus/orderstatus/internal/natsinfra"
)

// sizeLimit is the largest message a replay may be: the server's max_payload, or ORDERS_QUERY's
// max_msg_size when that is smaller.
type sizeLimit struct {
	n    int
	what string
}

func (r *Replayer) limit(ctx context.Context) sizeLimit {
	l := sizeLimit{n: int(r.JS.Conn().MaxPayload()), what: "max_payload"}
	cctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	// A user without the right to read ORDERS_QUERY's info still replays: the server's limit holds.
	if s, err := r.JS.Stream(cctx, natsinfra.QueryStream); err == nil {
		if m := int(s.CachedInfo().Config.MaxMsgSize); m > 0 && (l.n <= 0 || m < l.n) {
			l = sizeLimit{n: m, what: natsinfra.QueryStream + " max_msg_size"}
		}
	}
	return l
}

// replayOne stores one dead letter's request in ORDERS_QUERY, then deletes the dead letter and
// its .payload message, and says how it went.
func (r *Replayer) replayOne(ctx context.Context, s selected, limit sizeLimit) Letter {
	l := s.letter()
	skip := func(code, format string, args ...any) Letter {
		l.Result, l.Skip, l.Detail = ResultSkipped, code, fmt.Sprintf(format, args...)
		return l
	}
	if code, detail := r.checkTarget(s); code != "" {
		return skip(code, "%s", detail)
	}
	m, err := r.get(ctx, s.seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		l.Result = ResultGone
		return l
	}
	if err != nil {
		return skip(SkipPublish, "read it: %v", err)
	}
	data := m.Data
	var payloadSeq uint64
	if ps := m.Header.Get(events.HeaderPayloadSeq); ps != "" {
		if payloadSeq, err = strconv.ParseUint(ps, 10, 64); err != nil {
			return skip(SkipPayload, "%s %q: %v", events.HeaderPayloadSeq, ps, err)
		}
		pm, err := r.get(ctx, payloadSeq)
		if err != nil {
			return skip(SkipPayload, "its whole payload (seq %d): %v", payloadSeq, err)
		}
		if pm.Subject != m.Subject+".payload" || strconv.Itoa(len(pm.Data)) != m.Header.Get(events.HeaderOriginalSize) {
			return skip(SkipPayload, "its whole payload (seq %d) is %d bytes on %s, not %s bytes on %s.payload",
				payloadSeq, len(pm.Data), pm.Subject, m.Header.Get(events.HeaderOriginalSize), m.Subject)
		}
		data = pm.Data
	}
	msg, dropped := fit(m.Header, data, s, limit)
	if msg == nil {
		return skip(SkipTooBig, "%d bytes with headers, %s %d", dropped.size, limit.what, limit.n)
	}
	msg.Subject = s.target
	l.Detail = dropped.note
	pctx, cancel := context.WithTimeout(ctx, opTimeout)
	ack, err := r.JS.PublishMsg(pctx, msg)
	cancel()
	if err != nil {
		if errors.Is(err, nats.ErrMaxPayload) || strings.Contains(err.Error(), "maximum") {
			return skip(SkipTooBig, "%d bytes with headers: %v", len(msg.Data)+headerSize(msg.Header), err)
		}
		return skip(SkipPublish, "%v", err)
	}
	// Stored: only now may the dead letter go.
	l.StreamSeq = ack.Sequence
	if err := r.delete(ctx, s.seq); err != nil {
		return skip(SkipNotDeleted, "replay stored (%s seq %d) but the dead letter is not deleted: %v; a new run deletes it without queueing it twice", ack.Stream, ack.Sequence, err)
	}
	if payloadSeq != 0 {
		if err := r.delete(ctx, payloadSeq); err != nil {
			return skip(SkipNotDeleted, "replay stored (%s seq %d) and dead letter deleted, but not its payload message %d: %v", ack.Stream, ack.Sequence, payloadSeq, err)
		}
	}
	l.Result = ResultReplayed
	if ack.Duplicate {
		l.Result = ResultDuplicate
	}
	return l
}

// fitting says what fit left out, or how big the smallest try was.
type fitting struct {
	note string
	size int
}

// fit builds the replay of a dead letter with header hdr and the request's payload data, within
// limit. It keeps the request's own headers and adds Nats-Msg-Id; what does not fit drops, in
// order, the headers a query does not need (all but Content-Type), then Nats-Msg-Id (the replay
// is then not protected from being queued twice by a run that stops between store and delete),
// then Nats-Expected-Stream.
// A request of exactly max_payload bytes is replayed that way. nil: not even that fits.
func fit(hdr nats.Header, data []byte, s selected, limit sizeLimit) (*nats.Msg, fitting) {
	own := nats.Header{}
	for k, vs := range hdr {
		if !strings.HasPrefix(k, "Orders-") && !strings.HasPrefix(k, "Nats-") {
			own[k] = vs
		}
	}
	id := or(hdr.Get(events.HeaderOriginalMsgID), "dlq") + "-replay-" + strconv.FormatUint(s.seq, 10)
	needed := nats.Header{}
	if ct := own.Values(events.HeaderContentType); len(ct) > 0 {
		needed[events.HeaderContentType] = ct
	}
	with := func(h nats.Header, id string, expect bool) nats.Header {
		c := nats.Header{}
		for k, vs := range h {
			c[k] = vs
		}
		if id != "" {
			c.Set(events.HeaderMsgID, id)
		}
		if expect { // as jetstream.WithExpectStream sets it
			c.Set(jetstream.ExpectedStreamHeader, natsinfra.QueryStream)
		}
		return c
	}
	tries := []struct {
		hdr  nats.Header
		note string
	}{
		{with(own, id, true), ""},
		{with(needed, id, true), "headers other than Content-Type dropped to fit " + limit.what},
		{with(needed, "", true), "sent without Nats-Msg-Id to fit " + limit.what},
		// The subject is a query subject, which ORDERS_QUERY captures: the expectation is a
		// second guard, and the last thing to drop.
		{with(needed, "", false), "sent without Nats-Msg-Id or Nats-Expected-Stream to fit " + limit.what},
	}
	size := 0
	for _, t := range tries {
		size = len(data) + headerSize(t.hdr)
		if limit.n <= 0 || size <= limit.n {
			if len(t.hdr) == 0 {
				t.hdr = nil
			}
			return &nats.Msg{Data: data, Header: t.hdr}, fitting{note: t.note}
		}
	}
	return nil, fitting{size: size}
}
