package providers

import "github.com/paystatus/orderstatus/internal/events"

// Statuses maps a provider's status values to the normalized model (CONTRACT.md section 3).
// A value it does not list is unknown, never terminal: a status a provider adds later must not
// end an order's follow-up.
type Statuses map[string]events.Status

// Normalize is the normalized status of the provider's value v.
func (m Statuses) Normalize(v string) events.Status {
	if s, ok := m[v]; ok {
		return s
	}
	return events.StatusUnknown
}

// Channels maps a provider's payment channel values to the normalized channels. A value it
// does not list is unknown.
type Channels map[string]events.Channel

// Normalize is the normalized channel of the provider's value v.
func (m Channels) Normalize(v string) events.Channel {
	if c, ok := m[v]; ok {
		return c
	}
	return events.ChannelUnknown
}
