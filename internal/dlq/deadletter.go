// Package dlq stores requests that can never succeed in ORDERS_DLQ, byte for byte with their
// reason, and replays them to their query subjects.
package dlq

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/paystatus/orderstatus/internal/events"
	"github.com/paystatus/orderstatus/internal/natsinfra"
	"github.com/paystatus/orderstatus/internal/telemetry"
)

// Writer stores dead letters.
type Writer struct {
	JS       jetstream.JetStream
	Subjects events.Subjects
	Log      *slog.Logger
	// DeadLetters counts the letters stored, by provider, kind and reason.
	DeadLetters *prometheus.CounterVec
	// Tracer makes the producer span of each letter; nil makes none, and the letter carries the
	// trace context of Store's ctx.
	Tracer trace.Tracer
}

var noTracer = noop.NewTracerProvider().Tracer("")

// Store publishes msg's payload, byte for byte, with the reason, on the dead-letter subject of
// provider and kind, then terminates msg. An error means the dead letter could not be stored,
// and msg is still to be settled: nothing is dropped. Storing it is a producer span "publish
// ORDERS_DLQ", child of ctx's span, whose trace context the letter carries; the letter's
// reason is its orders.dead_letter.reason, and error.type says why storing failed, if it did.
func (h *Writer) Store(ctx context.Context, msg jetstream.Msg, meta *jetstream.MsgMetadata, provider, kind, reason, text string) (err error) {
	subject := h.Subjects.DeadLetter(provider, kind)
	tracer := h.Tracer
	if tracer == nil {
		tracer = noTracer
	}
	ctx, span := tracer.Start(ctx, "publish "+natsinfra.DLQStream, trace.WithSpanKind(trace.SpanKindProducer))
	defer func() {
		if err != nil && span.IsRecording() {
			span.SetAttributes(telemetry.ErrorType(err))
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
	}()
	hdr := nats.Header{}
	for k, vs := range msg.Headers() {
		if !strings.HasPrefix(k, "Nats-") && !strings.HasPrefix(k, "Orders-") {
			hdr[k] = append([]string(nil), vs...)
		}
	}
	telemetry.TraceOf(ctx).SetOn(hdr) // the consumer span's, in place of whatever the publisher sent
	if id := msg.Headers().Get(events.HeaderMsgID); id != "" {
		hdr.Set(events.HeaderOriginalMsgID, id)
	}
	hdr.Set(events.HeaderErrorReason, reason)
	hdr.Set(events.HeaderError, text)
	hdr.Set(events.HeaderSubject, msg.Subject())
	hdr.Set(events.HeaderStreamSeq, strconv.FormatUint(meta.Sequence.Stream, 10))
	hdr.Set(events.HeaderDelivered, strconv.FormatUint(meta.NumDelivered, 10))
	// One dead letter per request, however often this runs for it.
	hdr.Set(events.HeaderMsgID, "dlq-"+meta.Stream+"-"+strconv.FormatUint(meta.Sequence.Stream, 10))
	if span.IsRecording() {
		span.SetAttributes(telemetry.MessagingNATS, semconv.MessagingDestinationName(subject),
			semconv.MessagingMessageID(hdr.Get(events.HeaderMsgID)), attribute.String("orders.dead_letter.reason", reason))
		span.SetAttributes(telemetry.OperationPublish...)
	}
	m := &nats.Msg{Subject: subject, Data: msg.Data(), Header: hdr}
	err = h.fitDeadLetter(ctx, m, meta)
	if err == nil {
		_, err = h.JS.PublishMsg(ctx, m)
	}
	if err != nil {
		return err
	}
	h.DeadLetters.WithLabelValues(provider, kind, reason).Inc()
	h.Log.Warn("request dead-lettered", "reason", reason, "error", text, "subject", msg.Subject(), "stream_seq", meta.Sequence.Stream)
	if err := msg.TermWithReason(reason); err != nil {
		h.Log.Warn("terminate failed; the request will come back and be dead-lettered again (deduplicated)", "err", err)
	}
	return nil
}

// fitDeadLetter makes m fit the server's max_payload. A request the server accepted may not
// fit once the dead letter's headers are added: its payload is then stored alone first, on
// <dead letter subject>.payload in ORDERS_DLQ, and the dead letter carries as much of it as
// fits, with Orders-Original-Size and Orders-Payload-Seq (that message's sequence in ORDERS_DLQ).
// Nothing is lost, and nothing stays in ORDERS_QUERY for ever.
func (h *Writer) fitDeadLetter(ctx context.Context, m *nats.Msg, meta *jetstream.MsgMetadata) error {
	limit := int(h.JS.Conn().MaxPayload())
	if limit <= 0 || len(m.Data)+headerSize(m.Header) <= limit {
		return nil
	}
	whole := &nats.Msg{Subject: m.Subject + ".payload", Data: m.Data}
	id := nats.Header{events.HeaderMsgID: {"dlq-payload-" + meta.Stream + "-" + strconv.FormatUint(meta.Sequence.Stream, 10)}}
	if len(m.Data)+headerSize(id) <= limit {
		whole.Header = id // deduplicated; without it, a redelivery may store the payload twice
	}
	ack, err := h.JS.PublishMsg(ctx, whole)
	if err != nil {
		return fmt.Errorf("store the whole payload (%d bytes): %w", len(m.Data), err)
	}
	m.Header.Set(events.HeaderOriginalSize, strconv.Itoa(len(m.Data)))
	m.Header.Set(events.HeaderPayloadSeq, strconv.FormatUint(ack.Sequence, 10))
	keep := max(limit-headerSize(m.Header)-64, 0) // 64: room for the client's own framing
	m.Data = m.Data[:min(keep, len(m.Data))]
	h.Log.Warn("request too big for its dead letter; its payload is stored alone", "bytes", m.Header.Get(events.HeaderOriginalSize),
		"payload_seq", ack.Sequence, "stream_seq", meta.Sequence.Stream)
	return nil
}

// headerSize is how many bytes hdr takes on the wire (NATS/1.0 header block).
func headerSize(hdr nats.Header) int {
	if len(hdr) == 0 {
		return 0
	}
	n := len("NATS/1.0\r\n") + 2
	for k, vs := range hdr {
		for _, v := range vs {
			n += len(k) + 2 + len(v) + 2
		}
	}
	return n
}
