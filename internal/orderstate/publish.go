package orderstate

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/paystatus/orderstatus/internal/events"
	"github.com/paystatus/orderstatus/internal/kvkey"
	"github.com/paystatus/orderstatus/internal/natsinfra"
	"github.com/paystatus/orderstatus/internal/telemetry"
)

// Publication is a claimed transition's event on its way to the server.
type Publication struct {
	claim *Claim
	ack   jetstream.PubAckFuture
	span  trace.Span // the publish span, ended when the server answers
}

// Publish sends c's event without waiting for the server; Confirm waits.
//
// The publish is a producer span, child of the trace context stored with the event (the
// request that caused it), whoever publishes it; the span that publishes it for another
// request, or for the sweep, is linked. The event carries the publish span's context, so a
// subscriber's span continues the request's trace.
func (s *Store) Publish(ctx context.Context, c *Claim) (*Publication, error) {
	ev := c.rec.Pending
	pctx := ctx
	var opts []trace.SpanStartOption
	stored := trace.SpanContextFromContext(c.rec.Trace.Context(context.Background()))
	if cur := trace.SpanContextFromContext(ctx); stored.IsValid() && (stored.TraceID() != cur.TraceID() || stored.SpanID() != cur.SpanID()) {
		pctx = trace.ContextWithRemoteSpanContext(ctx, stored)
		if cur.IsValid() {
			opts = append(opts, trace.WithLinks(trace.Link{SpanContext: cur}))
		}
	}
	subject := s.subjects.Status(ev.Provider, ev.Kind, ev.Status)
	if opts == nil {
		opts = producerSpan
	} else {
		opts = append(opts, producerSpan...)
	}
	pctx, span := s.tracer.Start(pctx, "publish "+natsinfra.StatusStream, opts...)
	if span.IsRecording() {
		span.SetAttributes(telemetry.MessagingNATS, semconv.MessagingDestinationName(subject), semconv.MessagingMessageID(ev.EventID))
		span.SetAttributes(telemetry.OperationPublish...)
	}
	fail := func(err error) (*Publication, error) {
		if span.IsRecording() {
			span.SetAttributes(telemetry.ErrorType(err))
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
		return nil, err
	}
	data, err := s.encoding.Marshal(ev)
	if err != nil {
		return fail(fmt.Errorf("encode event: %w", err))
	}
	if span.IsRecording() {
		span.SetAttributes(semconv.MessagingMessageBodySize(len(data)))
	}
	m := newMsg(subject, data, events.HeaderMsgID, ev.EventID, events.HeaderContentType, s.encoding.ContentType())
	telemetry.TraceOf(pctx).SetOn(m.Header)
	f, err := s.js.PublishMsgAsync(m)
	if err != nil {
		return fail(fmt.Errorf("publish event %s: %w", ev.EventID, err))
	}
	return &Publication{claim: c, ack: f, span: span}, nil
}

// producerSpan is the publish span's kind as tracer.Start takes it, made once (options passed
// one by one are made anew for every span). Read only.
var producerSpan = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindProducer)}

// Claim is the claim p publishes the event of.
func (p *Publication) Claim() *Claim { return p.claim }

// Confirm waits until the server has stored p's event, or says why it has not.
//
// An event the server drops as a copy of an earlier one with its id, when that earlier one is
// another transition's, is not dropped: the order's record was removed without a delete
// marker (a purge of its subject in the bucket's stream), so its transitions were numbered
// from 1 again. The change is then claimed again, numbered one above the claim's revision
// (above every transition the order had), and its event published under that number.
func (s *Store) Confirm(ctx context.Context, p *Publication) error {
	for range 3 {
		ack, err := s.await(ctx, p)
		if err != nil {
			return err
		}
		ev := p.claim.rec.Pending
		if ack.Duplicate {
			reused, err := s.idReused(ctx, ev, ack.Sequence)
			if err != nil {
				return fmt.Errorf("publish event %s: %w", ev.EventID, err)
			}
			if reused {
				s.log.Warn("event id already used by an earlier transition of the order (its record was removed without a delete marker); numbering the change again",
					"key", p.claim.key, "event_id", ev.EventID)
				if err := s.renumber(ctx, p); err != nil {
					return err
				}
				continue
			}
		}
		s.metrics.Events.WithLabelValues(ev.Provider, ev.Kind, string(ev.Status)).Inc()
		if s.log.Enabled(ctx, slog.LevelDebug) {
			s.log.Debug("status changed", "provider", ev.Provider, "kind", ev.Kind, "app_id", ev.AppID, "order_no", ev.OrderNo,
				"status", string(ev.Status), "previous_status", string(ev.PreviousStatus), "event_id", ev.EventID, "duplicate", ack.Duplicate)
		}
		return nil
	}
	return fmt.Errorf("order %s: event ids taken by earlier transitions", p.claim.key)
}

// await waits for the server's answer to p's publish, and ends its span.
func (s *Store) await(ctx context.Context, p *Publication) (*jetstream.PubAck, error) {
	var ack *jetstream.PubAck
	var err error
	select {
	case ack = <-p.ack.Ok():
	case perr := <-p.ack.Err():
		err = fmt.Errorf("publish event %s: %w", p.claim.rec.Pending.EventID, perr)
	case <-ctx.Done():
		err = fmt.Errorf("publish event %s: %w", p.claim.rec.Pending.EventID, ctx.Err())
	}
	if err != nil && p.span.IsRecording() {
		p.span.SetAttributes(telemetry.ErrorType(err))
		p.span.SetStatus(codes.Error, err.Error())
	}
	p.span.End()
	return ack, err
}

// idReused reports whether the event ORDERS_STATUS stored at seq, which has ev's id, is
// another transition's than ev: its status, provider status, previous status or observation
// time differ. One no longer stored cannot be told apart, and counts as ev itself.
func (s *Store) idReused(ctx context.Context, ev *events.StatusEvent, seq uint64) (bool, error) {
	st, err := s.lookupStream(ctx, &s.statusStream, natsinfra.StatusStream)
	if err != nil {
		return false, err
	}
	m, err := st.GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	stored, err := events.DecodeEvent(m.Header.Get(events.HeaderContentType), m.Data)
	if err != nil || stored.EventID != ev.EventID {
		return false, nil // not this service's event: nothing to compare
	}
	return stored.Status != ev.Status || stored.ProviderStatus != ev.ProviderStatus ||
		stored.PreviousStatus != ev.PreviousStatus || stored.ObservedAt != ev.ObservedAt, nil
}

// renumber claims p's change again, numbered one above its claim's revision, with
// compare-and-set on that revision, and publishes its event: p then stands for the new claim.
// ErrConflict means the order moved on meanwhile, by a writer that numbered it again first.
func (s *Store) renumber(ctx context.Context, p *Publication) error {
	c := p.claim
	rec := c.rec
	ev := *rec.Pending
	n := c.rev + 1
	ev.EventID = events.EventID(ev.Provider, ev.Kind, ev.AppID, kvkey.Text(c.key[strings.LastIndexByte(c.key, '.')+1:]), n)
	rec.Transition, rec.EventID, rec.Pending = n, ev.EventID, &ev
	s.trips.claim.Inc()
	rev, err := s.put(ctx, c.order, &rec, c.rev)
	if err != nil {
		return err
	}
	np, err := s.Publish(ctx, &Claim{order: c.order, rec: rec, rev: rev})
	if err != nil {
		return err
	}
	*p = *np
	return nil
}

// Republish publishes c's event again, waits for it, and clears its mark: for a writer whose
// own publish failed. A conflict means the order moved on after its next reader published the
// event: done.
func (s *Store) Republish(ctx context.Context, c *Claim) error {
	_, err := s.publishPending(ctx, c)
	if errors.Is(err, ErrConflict) {
		return nil
	}
	return err
}

// publishPending publishes c's event, waits for it, then clears the mark with a
// compare-and-set, waiting too: the caller goes on from the new revision. ErrConflict from the
// clear means someone else already moved the order on, after publishing it too.
func (s *Store) publishPending(ctx context.Context, c *Claim) (newRev uint64, err error) {
	p, err := s.Publish(ctx, c)
	if err != nil {
		return c.rev, err
	}
	s.trips.event.Inc()
	if err := s.Confirm(ctx, p); err != nil {
		return c.rev, err
	}
	rec := c.rec
	rec.Pending, rec.Trace = nil, telemetry.TraceContext{}
	// The event is out: clearing the mark is worth a few tries, as a mark left behind makes a
	// later reader publish the event again (harmless inside the duplicate window only).
	err = backoff.Retry(func() error {
		var err error
		s.trips.clear.Inc()
		newRev, err = s.put(ctx, c.order, &rec, c.rev)
		if errors.Is(err, ErrConflict) {
			return backoff.Permanent(err)
		}
		return err
	}, backoff.WithContext(backoff.WithMaxRetries(backoff.NewConstantBackOff(100*time.Millisecond), 3), ctx))
	var perm *backoff.PermanentError
	if errors.As(err, &perm) {
		err = perm.Err
	}
	return newRev, err
}

// Clear removes p's pending mark now that its event is stored. It does not wait for the
// server: a mark left behind (a failed write, a crash) is cleared by the sweep or by the
// order's next reader, who publishes the event again first, which the server drops as a
// duplicate.
func (s *Store) Clear(p *Publication) {
	rec := p.claim.rec
	rec.Pending, rec.Trace = nil, telemetry.TraceContext{}
	// A plain publish, with no reply subject: JetStream stores it (its subject is the
	// bucket's) after checking the revision, and sends no acknowledgement nobody would read.
	if err := s.js.Conn().PublishMsg(writeMsg(p.claim.order, &rec, p.claim.rev)); err != nil {
		s.log.Debug("pending mark not cleared; the sweep clears it", "key", p.claim.key, "err", err)
	}
}
