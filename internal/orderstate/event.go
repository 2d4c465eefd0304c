package orderstate

import "github.com/paystatus/orderstatus/internal/events"

// statusEvent is the event of the order's transition number transition to obs, from previous
// ("" on the first observation).
func statusEvent(obs Observation, previous events.Status, transition uint64) events.StatusEvent {
	req, res := obs.Request, obs.Result
	source := obs.Source
	if source == "" {
		source = events.SourceQuery
	}
	attrs := req.Attributes
	if attrs == nil {
		attrs = map[string]string{}
	}
	details := res.Details
	if details == nil {
		details = map[string]any{}
	}
	orderNo := req.OrderNo
	if orderNo == "" {
		orderNo = res.OrderNo
	}
	return events.StatusEvent{
		EventID:         events.EventID(req.Provider, req.Kind, req.AppID, res.OrderKey, transition),
		RequestID:       req.RequestID,
		Provider:        req.Provider,
		Kind:            req.Kind,
		AppID:           req.AppID,
		OrderNo:         orderNo,
		ProviderOrderNo: res.ProviderOrderNo,
		ProviderRefNo:   res.ProviderRefNo,
		Status:          res.Status,
		PreviousStatus:  previous,
		ProviderStatus:  res.ProviderStatus,
		Terminal:        res.Status.Terminal(),
		Amount:          res.Amount,
		Currency:        "CNY",
		PaidAt:          events.FormatTime(res.PaidAt),
		Channel:         res.Channel,
		Details:         details,
		ObservedAt:      events.FormatTime(res.ObservedAt),
		Attributes:      attrs,
		Source:          source,
	}
}

// recordedEvent is the order as cur records it, for an observation that changed nothing because
// it was ignored: the status, provider status, amount and time recorded, none of the ignored
// answer's own fields (channel, paid_at, details).
func recordedEvent(obs Observation, cur Record) events.StatusEvent {
	ev := statusEvent(obs, "", cur.Transition)
	ev.Status, ev.ProviderStatus, ev.Terminal = cur.Status, cur.ProviderStatus, cur.Status.Terminal()
	ev.Amount, ev.ObservedAt = cur.Amount, cur.ObservedAt
	ev.Channel, ev.PaidAt, ev.Details = events.ChannelUnknown, "", map[string]any{}
	return ev
}
