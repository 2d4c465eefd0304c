package handlers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/paystatus/orderstatus/internal/buildinfo"
	"github.com/paystatus/orderstatus/internal/events"
	"github.com/paystatus/orderstatus/internal/orderstate"
	"github.com/paystatus/orderstatus/internal/providers"
	"github.com/paystatus/orderstatus/internal/telemetry"
)

// LookupService is the NATS micro service's name.
const LookupService = "order-query"

// Version is the service version shown by `nats micro info`: the build's, as semver.
var Version = buildinfo.Read().Semver()

// LookupReply is the answer of a lookup: the normalized status, as a status event carries it,
// and whether this lookup observed a change (then an event was published too).
type LookupReply struct {
	events.StatusEvent
	Changed bool `json:"changed"`
}

// Lookup error codes (the Nats-Service-Error-Code header), besides the dead-letter reasons.
const (
	// CodeUnavailable: the answer could not be recorded (NATS failed).
	CodeUnavailable = "unavailable"
	// CodeTimeout: the lookup's deadline passed first, or the service is stopping.
	CodeTimeout = "timeout"
)

// StartLookup serves the synchronous lookup endpoints <prefix>.lookup.<provider>.<kind> as the
// micro service order-query: the payload is a query request, the call goes through the same
// QPS limiter and in-process retries as queued requests, a change is recorded and published as
// a status event, and the reply is the normalized status as JSON or an error with a stable code.
// Each endpoint answers one lookup at a time per replica, so that `nats micro stats` counts
// and times them truly; volume belongs on the query stream.
//
// Each lookup has a deadline: timeout, or less when the caller asks for less with a
// Request-Timeout header. Past it the reply is the error code "timeout", and the endpoint
// is free for the next caller.
//
// StartLookup returns once the server has the endpoints' subscriptions, so a request made
// after it always finds a responder.
func StartLookup(ctx context.Context, nc *nats.Conn, h *Handler, timeout time.Duration) (micro.Service, error) {
	svc, err := micro.AddService(nc, micro.Config{
		Name: LookupService, Version: Version, QueueGroup: LookupService,
		Description: "Synchronous order status lookups: same payload as a query request, the normalized status as the reply",
	})
	if err != nil {
		return nil, err
	}
	g := svc.AddGroup(h.subjects.Prefix + ".lookup")
	for _, p := range h.providers {
		for _, kind := range []string{events.KindPayment, events.KindSettlement, events.KindRefund} {
			if !p.SupportsKind(kind) {
				continue
			}
			p, kind := p, kind
			err := g.AddEndpoint(p.Name()+"-"+kind, micro.HandlerFunc(func(r micro.Request) {
				lctx, cancel := context.WithTimeout(ctx, lookupDeadline(r.Headers(), timeout))
				defer cancel()
				h.lookup(lctx, p, kind, r)
			}), micro.WithEndpointSubject(p.Name()+"."+kind),
				micro.WithEndpointMetadata(map[string]string{"provider": p.Name(), "kind": kind}))
			if err != nil {
				_ = svc.Stop()
				return nil, err
			}
		}
	}
	if err := nc.FlushTimeout(10 * time.Second); err != nil {
		_ = svc.Stop()
		return nil, fmt.Errorf("register the lookup service: %w", err)
	}
	return svc, nil
}

// HeaderRequestTimeout is the header a lookup caller may set to a shorter deadline than the
// configured one, as a Go duration ("2s", "500ms").
const HeaderRequestTimeout = "Request-Timeout"

// lookupDeadline is the caller's Request-Timeout when it is shorter than max, else max.
func lookupDeadline(hdr micro.Headers, max time.Duration) time.Duration {
	if d, err := time.ParseDuration(hdr.Get(HeaderRequestTimeout)); err == nil && d > 0 && d < max {
		return d
	}
	return max
}

// lookup answers one lookup: the same intake, limiter, call, retry policy and state as a
// queued request, with the answer or the error code sent back instead of an ack or a dead letter.
func (h *Handler) lookup(ctx context.Context, p providers.Provider, kind string, r micro.Request) {
	ctx, span := h.tracer.Start(telemetry.ReadTrace(ctx, nats.Header(r.Headers())), "lookup "+p.Name()+" "+kind, trace.WithSpanKind(trace.SpanKindServer))
	defer span.End()
	fail := func(code, text string) {
		if span.IsRecording() {
			span.SetAttributes(attribute.String("orders.error_code", code))
		}
		_ = r.Error(code, text, nil)
	}
	req, err := h.intake(p, kind, nats.Header(r.Headers()), r.Data(), h.now())
	if err != nil {
		o := rejected(err)
		fail(o.reason, o.text)
		return
	}
	key, qps := p.RateLimit(queryOf(req))
	retries := h.newRetries()
	refreshed := false
	var res providers.Result
	var sent time.Time
	for {
		h.prepare(ctx, p, req)
		err = h.waitSlot(ctx, key, qps)
		if err == nil {
			res, sent, err = h.query(ctx, p, req, key)
		}
		if err == nil {
			break
		}
		f := failure{err: err, stopping: ctx.Err() != nil, refreshed: refreshed, class: providers.Classify(err),
			atLeast: providers.RetryAfter(err), next: backoff.Stop, delivered: 1, maxDeliver: 1}
		if errors.As(err, &f.rejected); f.rejected == nil && !f.stopping {
			f.next = retries.NextBackOff()
		}
		o := decide(f)
		if o.slowdown {
			_ = h.lim.Slowdown(ctx, key, providers.RetryAfter(err))
		}
		switch o.verdict {
		case requeue:
			refreshed = true
			continue
		case retryAfter:
			h.metrics.Retries.WithLabelValues(req.Provider, req.Kind).Inc()
			if sleep(ctx, o.delay) {
				continue
			}
			fail(CodeTimeout, timeoutText(ctx, err))
		case handBack:
			fail(CodeTimeout, timeoutText(ctx, err))
		case deadLetter:
			fail(o.reason, o.text)
		default: // redeliver: a lookup has one delivery
			fail(events.ReasonRetriesExhausted, err.Error())
		}
		return
	}
	ev, changed, err := h.recordNow(ctx, orderstate.Observation{Request: req, Result: res, Sent: sent})
	switch {
	case err != nil && ctx.Err() != nil:
		fail(CodeTimeout, timeoutText(ctx, err))
		return
	case err != nil:
		fail(CodeUnavailable, err.Error())
		return
	}
	body, _ := json.Marshal(LookupReply{StatusEvent: ev, Changed: changed})
	_ = r.Respond(body, micro.WithHeaders(micro.Headers{events.HeaderContentType: {events.ContentTypeJSON}}))
}

func timeoutText(ctx context.Context, err error) string {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return "no answer within the lookup's deadline: " + err.Error()
	}
	return "the service is stopping: " + err.Error()
}

// recordNow gives a lookup's answer to the store and waits until its event, if any, is stored.
// A failure leaves a claim pending for the order's next reader or the sweep.
func (h *Handler) recordNow(ctx context.Context, obs orderstate.Observation) (ev events.StatusEvent, changed bool, err error) {
	ev, c, err := h.store.Claim(ctx, obs)
	if err != nil || c == nil {
		return ev, false, err
	}
	pub, err := h.store.Publish(ctx, c)
	if err == nil {
		err = h.store.Confirm(ctx, pub)
	}
	if err != nil {
		return ev, false, err
	}
	h.store.Clear(pub)
	return ev, true, nil
}
