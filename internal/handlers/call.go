package handlers

import (
	"context"
	"errors"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"

	"github.com/paystatus/orderstatus/internal/events"
	"github.com/paystatus/orderstatus/internal/providers"
	"github.com/paystatus/orderstatus/internal/telemetry"
)

// prepare readies a call before its rate slot is taken (see providers.Preparer). A failure
// is left for the call itself to report, through the retry policy.
func (h *Handler) prepare(ctx context.Context, p providers.Provider, req events.Request) {
	if pp, ok := p.(providers.Preparer); ok {
		if err := pp.Prepare(ctx, queryOf(req)); err != nil && ctx.Err() == nil {
			h.log.Debug("preparing the call failed", "provider", p.Name(), "app_id", req.AppID, "err", err)
		}
	}
}

// query asks the provider, and says when it sent the question; key is the rate-limited
// endpoint the caller took its slot under. A
// permanent refusal becomes a rejection carrying the provider's code and message; anything
// else is for the retry policy.
func (h *Handler) query(ctx context.Context, p providers.Provider, req events.Request, key string) (res providers.Result, sent time.Time, err error) {
	provider, endpoint := telemetry.EndpointOf(key)
	ctx, span := h.tracer.Start(ctx, "query "+provider+" "+endpoint, internalSpan...)
	defer span.End()
	started := time.Now()
	sent = h.sentClock(ctx)
	res, err = p.Query(ctx, queryOf(req))
	if err != nil && span.IsRecording() {
		span.SetAttributes(attribute.String("orders.error_class", providers.Classify(err).String()), errorType(err))
		span.SetStatus(codes.Error, err.Error())
	}
	h.metrics.CallDuration.WithLabelValues(provider, endpoint).Observe(time.Since(started).Seconds())
	outcome := "ok"
	if err != nil {
		outcome = providers.Classify(err).String()
	}
	h.metrics.ProviderCalls.WithLabelValues(provider, endpoint, outcome).Inc()
	if err != nil {
		var pe *providers.Error
		if errors.As(err, &pe) && pe.Class == providers.Permanent {
			return res, sent, reject(events.ReasonProviderRejected, "%s refused the query: code %s: %s", p.Name(), pe.Code, pe.Message)
		}
	}
	return res, sent, err
}

// waitSlot waits for a rate slot of key, in a span of its own, for a lookup.
func (h *Handler) waitSlot(ctx context.Context, key string, qps int) error {
	ctx, span := h.tracer.Start(ctx, "ratelimit wait", internalSpan...)
	defer span.End()
	return h.lim.Wait(ctx, key, qps, 1)
}

// sentClock is the time a query is sent, on the NATS server's clock when the limiter reads
// it: queries sent by replicas whose clocks disagree are still ordered truly (see ignored).
func (h *Handler) sentClock(ctx context.Context) time.Time {
	if h.lim == nil {
		return h.now()
	}
	return h.lim.ServerNow(ctx)
}
