package handlers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/paystatus/orderstatus/internal/events"
	"github.com/paystatus/orderstatus/internal/kvkey"
	"github.com/paystatus/orderstatus/internal/natsinfra"
	"github.com/paystatus/orderstatus/internal/orderstate"
	"github.com/paystatus/orderstatus/internal/providers"
)

// A provider notification (CONTRACT.md section 8) takes the same path as a query request,
// without the provider call: accepted from its own consumer, it is verified, checked against
// the message ids already processed, and written through the order store as an observation
// made at its timestamp; settle acts on the outcome, with the same retries, dead letters,
// keep-alive and shutdown as a query.

// KindCallback is the kind token of a notification's dead letters and metrics:
// orders.dlq.<provider>.callback.
const KindCallback = "callback"

// HeaderSignature is the header a notification's signature travels in on NATS: Kuaishou's
// kwaisign, as the HTTP way in copies it.
const HeaderSignature = "Kwaisign"

// Notification outcomes, the outcome label of orders_notifications_total.
const (
	NotifyApplied        = "applied"
	NotifyUnchanged      = "unchanged"
	NotifyDuplicate      = "duplicate"
	NotifyStale          = "stale"
	NotifyBadSignature   = "bad_signature"
	NotifyAmountMismatch = "amount_mismatch"
	NotifyMalformed      = "malformed"
)

// acceptCallback processes a notification at once, on the fetching goroutine: it calls no
// provider and waits for no limit, so it needs no place in the scheduler.
func (h *Handler) acceptCallback(ctx context.Context, msg jetstream.Msg, meta *jetstream.MsgMetadata, f *flow) {
	j := h.newJob(ctx, msg, meta, f)
	j.req.Kind = KindCallback
	h.settle(ctx, j, h.notified(ctx, j))
}

// notified verifies j's notification and records it, and says what should become of it. Like
// execute, it changes nothing but the order's state, the events and the ids seen.
func (h *Handler) notified(ctx context.Context, j *job) outcome {
	ctx = j.traced(ctx)
	name, _ := strings.CutPrefix(j.msg.Subject(), h.subjects.CallbackPrefix())
	notifier, ok := h.providers[name].(providers.Notifier)
	if !ok {
		if h.providers[name] != nil { // configured, sending none: its dead letter says its name
			j.req.Provider = name
		}
		return rejected(reject(events.ReasonUnknownProvider, "no provider %q that sends notifications is configured", name))
	}
	j.req.Provider = name
	n, err := notifier.Notification(j.msg.Data(), Signature(j.msg.Headers()))
	switch {
	case errors.Is(err, providers.ErrBadSignature):
		h.metrics.Notifications.WithLabelValues(name, "nats", NotifyBadSignature).Inc()
		return rejected(reject(events.ReasonInvalidSignature, "%v", err))
	case err != nil:
		h.metrics.Notifications.WithLabelValues(name, "nats", NotifyMalformed).Inc()
		return rejected(reject(events.ReasonInvalidPayload, "%v", err))
	}
	j.req.AppID, j.req.OrderNo, j.req.RequestID = n.AppID, n.Result.OrderNo, n.MessageID
	if age := h.now().Sub(n.Sent); age > natsinfra.CallbackSeenFor {
		// Its id may have been processed and forgotten: a replay, or a resend from a queue
		// stuck longer than ids are kept. Once per message holds only by changing nothing.
		h.metrics.Notifications.WithLabelValues(name, "nats", NotifyStale).Inc()
		h.log.Warn("notification older than the message ids kept; not applied", "app_id", n.AppID, "kind", n.Kind,
			"order_no", n.Result.OrderNo, "message_id", n.MessageID, "sent", n.Sent, "kept_for", natsinfra.CallbackSeenFor)
		return outcome{verdict: ack}
	}
	seenKey := kvkey.Join(name, n.AppID, n.MessageID)
	if _, err := h.seen.Get(ctx, seenKey); err == nil {
		h.metrics.Notifications.WithLabelValues(name, "nats", NotifyDuplicate).Inc()
		return outcome{verdict: ack}
	} else if !errors.Is(err, jetstream.ErrKeyNotFound) {
		return decide(h.failure(ctx, j, fmt.Errorf("read notifications seen: %w", err), true))
	}
	obs := orderstate.Observation{Source: events.SourceCallback, Sent: n.Sent, Result: n.Result,
		Request: events.Request{Provider: name, Kind: n.Kind, AppID: n.AppID, OrderNo: n.Result.OrderNo, RequestID: n.MessageID}}
	var observed orderstate.Observed
	var pub *orderstate.Publication
	err = backoff.Retry(func() error {
		var err error
		if pub == nil { // a claim already made is not made again: its event is on its way
			observed, err = h.store.Observe(ctx, obs)
			if errors.Is(err, orderstate.ErrAmountMismatch) {
				return backoff.Permanent(err)
			}
			if err == nil && observed.Claim != nil {
				pub, err = h.store.Publish(ctx, observed.Claim)
			}
		}
		if err == nil {
			err = h.markSeen(ctx, seenKey)
		}
		if err != nil {
			h.metrics.WriteRetries.Inc()
		}
		return err
	}, h.writeRetries(ctx))
	var perm *backoff.PermanentError
	if errors.As(err, &perm) {
		err = perm.Err
	}
	if errors.Is(err, orderstate.ErrAmountMismatch) {
		err = h.checkAmount(ctx, name, n, seenKey)
		if err == nil {
			h.metrics.Notifications.WithLabelValues(name, "nats", NotifyAmountMismatch).Inc()
			return outcome{verdict: ack}
		}
	}
	if err != nil {
		if pub != nil { // the event is settled here; the notification comes again and finds it
			if h.store.Confirm(ctx, pub) == nil {
				h.store.Clear(pub)
			}
		}
		return decide(h.failure(ctx, j, err, true))
	}
	switch {
	case pub != nil:
		h.metrics.Notifications.WithLabelValues(name, "nats", NotifyApplied).Inc()
		j.notified, j.notice = n.Sent, n.Kind
	case observed.Ignored != "":
		h.metrics.Notifications.WithLabelValues(name, "nats", NotifyStale).Inc()
	default:
		h.metrics.Notifications.WithLabelValues(name, "nats", NotifyUnchanged).Inc()
	}
	return outcome{verdict: ack, changed: pub != nil, pub: pub}
}

// markSeen records that the notification under key is processed: a resend within
// natsinfra.CallbackSeenFor changes nothing. It is written once the notification is, so a
// notification that failed half-way is processed again, never lost as "already seen".
func (h *Handler) markSeen(ctx context.Context, key string) error {
	if _, err := h.seen.Put(ctx, key, []byte(h.now().UTC().Format(time.RFC3339Nano))); err != nil {
		return fmt.Errorf("record notification seen: %w", err)
	}
	return nil
}

// checkAmount handles a notification whose amount differs from the recorded one: it is not
// applied; the order is queried instead, under the limit, and the answer decides.
func (h *Handler) checkAmount(ctx context.Context, provider string, n providers.Notification, seenKey string) error {
	h.log.Warn("notification amount differs from the recorded one; not applied, querying the order",
		"app_id", n.AppID, "kind", n.Kind, "order_no", n.Result.OrderNo, "message_id", n.MessageID, "notified_amount", n.Result.Amount)
	body, _ := json.Marshal(map[string]string{"app_id": n.AppID, "order_no": n.Result.OrderNo, "request_id": n.MessageID})
	m := &nats.Msg{Subject: h.subjects.Query(provider, n.Kind), Data: body,
		Header: nats.Header{events.HeaderMsgID: {"amount-check-" + n.MessageID}, events.HeaderContentType: {events.ContentTypeJSON}}}
	if _, err := h.js.PublishMsg(ctx, m); err != nil {
		return fmt.Errorf("query the order whose notification's amount differs: %w", err)
	}
	return h.markSeen(ctx, seenKey)
}

// Signature is a notification's signature header, whatever its case: NATS headers are
// case-sensitive, and a gateway may copy kwaisign as it came.
func Signature(hdr nats.Header) string {
	if v := hdr.Get(HeaderSignature); v != "" {
		return v
	}
	for k, v := range hdr {
		if strings.EqualFold(k, HeaderSignature) && len(v) > 0 {
			return v[0]
		}
	}
	return ""
}
