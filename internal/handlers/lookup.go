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
	"github.com/nats-io/nuid"

	"github.com/paystatus/orderstatus/internal/events"
	"github.com/paystatus/orderstatus/internal/providers"
	"github.com/paystatus/orderstatus/internal/ratelimit"
)

// LookupService is the NATS micro service's name.
const LookupService = "order-query"

// Version is the service version shown by `nats micro info`.
const Version = "1.0.0"

// LookupReply is the answer of a lookup: the normalized status, as a status event carries it,
// and whether this lookup observed a change (then an event was published too).
type LookupReply struct {
	events.StatusEvent
	Changed bool `json:"changed"`
}

// Lookup error codes (the Nats-Service-Error-Code header): the dead-letter reasons, and
// "unavailable" when the answer could not be had or recorded in time.
const ErrUnavailable = "unavailable"

// ErrTimeout is the lookup error code when the lookup's deadline passed first.
const ErrTimeout = "timeout"

func timeoutText(ctx context.Context, err error) string {
	if ctx.Err() == context.DeadlineExceeded {
		return "no answer within the lookup's deadline: " + err.Error()
	}
	return "the service is stopping: " + err.Error()
}

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
func StartLookup(ctx context.Context, nc *nats.Conn, h *Handler, lim *ratelimit.Limiter, timeout time.Duration) (micro.Service, error) {
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
				h.lookup(lctx, lim, p, kind, r)
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

func (h *Handler) lookup(ctx context.Context, lim *ratelimit.Limiter, p providers.Provider, kind string, r micro.Request) {
	fail := func(code, text string) { _ = r.Error(code, text, nil) }
	req, err := events.DecodeRequest(r.Headers().Get(events.HeaderContentType), r.Data())
	if err != nil {
		var pe *events.PayloadError
		errors.As(err, &pe)
		fail(pe.Reason, pe.Error())
		return
	}
	req.Provider, req.Kind = p.Name(), kind
	if err := checkRequest(p, req); err != nil {
		var rej *rejection
		errors.As(err, &rej)
		fail(rej.reason, rej.text)
		return
	}
	if req.RequestID == "" {
		req.RequestID = nuid.Next()
	}
	key, qps := p.RateLimit(queryOf(req))
	bo := backoff.WithContext(h.newRetries(), ctx)
	var res providers.Result
	err = backoff.Retry(func() error {
		if err := lim.Wait(ctx, key, qps, 1); err != nil {
			return backoff.Permanent(err)
		}
		var err error
		res, err = h.query(ctx, p, req, key)
		var rej *rejection
		switch {
		case errors.As(err, &rej):
			return backoff.Permanent(err)
		case providers.Classify(err) == providers.RateLimited:
			_ = lim.Slowdown(ctx, key)
		}
		return err
	}, bo)
	var rej *rejection
	switch {
	case errors.As(err, &rej):
		fail(rej.reason, rej.text)
		return
	case ctx.Err() != nil:
		fail(ErrTimeout, timeoutText(ctx, err))
		return
	case err != nil:
		fail(events.ReasonRetriesExhausted, err.Error())
		return
	}
	ev, changed, err := h.record(ctx, req, res)
	if err != nil && ctx.Err() != nil {
		fail(ErrTimeout, timeoutText(ctx, err))
		return
	}
	if err != nil {
		fail(ErrUnavailable, err.Error())
		return
	}
	body, _ := json.Marshal(LookupReply{StatusEvent: ev, Changed: changed})
	_ = r.Respond(body, micro.WithHeaders(micro.Headers{events.HeaderContentType: {events.ContentTypeJSON}}))
}
