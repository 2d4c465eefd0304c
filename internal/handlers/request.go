package handlers

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/paystatus/orderstatus/internal/events"
	"github.com/paystatus/orderstatus/internal/providers"
)

// rejection is a request that can never succeed: it goes to the dead-letter subject (or, for
// a lookup, back to the caller) with its reason.
type rejection struct {
	reason string
	text   string
}

func (r *rejection) Error() string { return r.reason + ": " + r.text }

func reject(reason, format string, args ...any) error {
	return &rejection{reason: reason, text: fmt.Sprintf(format, args...)}
}

// route reads provider and kind from the subject and the request from the payload into j,
// and checks both against the configuration. A subject token it cannot read stays
// events.Unknown in j.req, for the dead letter's subject.
func (h *Handler) route(msg jetstream.Msg, meta *jetstream.MsgMetadata, j *job) error {
	pName, kind, ok := h.subjects.ParseQuery(msg.Subject())
	if !ok {
		return reject(events.ReasonUnknownProvider, "subject %q is not %s.query.<provider>.<kind>", msg.Subject(), h.subjects.Prefix)
	}
	p := h.providers[pName]
	if p == nil {
		return reject(events.ReasonUnknownProvider, "no provider %q is configured (known: %s)", pName, h.providerNames())
	}
	j.req.Provider = pName
	if !p.SupportsKind(kind) {
		return reject(events.ReasonUnknownKind, "provider %s has no query kind %q", pName, kind)
	}
	j.req.Kind = kind
	req, err := h.intake(p, kind, msg.Headers(), msg.Data(), meta.Timestamp)
	if err != nil {
		return err
	}
	j.req, j.p = req, p
	return nil
}

// intake decodes and checks a request for provider p and kind, received at the given time: the
// one way in for the query stream and the lookup service alike. Its errors are *rejection.
func (h *Handler) intake(p providers.Provider, kind string, hdr nats.Header, data []byte, received time.Time) (events.Request, error) {
	req, err := events.DecodeRequest(hdr.Get(events.HeaderContentType), data)
	if err != nil {
		var pe *events.PayloadError
		errors.As(err, &pe)
		return req, reject(pe.Reason, "%s", pe.Error())
	}
	req.Provider, req.Kind = p.Name(), kind
	if err := checkRequest(p, req); err != nil {
		return req, err
	}
	if req.FollowUntil.After(received.Add(events.MaxFollow)) {
		return req, reject(events.ReasonInvalidField, "follow_until: %s is more than %s after the request",
			events.FormatTime(req.FollowUntil), events.MaxFollow)
	}
	if req.RequestID == "" && h.scheduled(hdr) { // a follow-up keeps the id of the request it follows
		req.RequestID = hdr.Get(events.HeaderRequestID)
	}
	if req.RequestID == "" {
		req.RequestID = hdr.Get(events.HeaderMsgID)
	}
	if req.RequestID == "" {
		req.RequestID = nuid.Next()
	}
	return req, nil
}

// checkRequest checks a decoded request against the provider: its app and its fields.
func checkRequest(p providers.Provider, req events.Request) error {
	if !p.HasApp(req.AppID) {
		return reject(events.ReasonUnknownApp, "app_id %q is not configured for %s", req.AppID, p.Name())
	}
	if err := p.Validate(queryOf(req)); err != nil {
		var pe *events.PayloadError
		if errors.As(err, &pe) {
			return reject(pe.Reason, "%s", pe.Error())
		}
		return reject(events.ReasonInvalidField, "%v", err)
	}
	return nil
}

func queryOf(req events.Request) providers.Query {
	return providers.Query{Kind: req.Kind, AppID: req.AppID, OrderNo: req.OrderNo, ProviderOrderNo: req.ProviderOrderNo, Refresh: req.Refresh}
}

func (h *Handler) providerNames() string {
	names := make([]string, 0, len(h.providers))
	for n := range h.providers {
		names = append(names, n)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}
