package handlers

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/paystatus/orderstatus/internal/events"
)

// headerMsg is a jetstream.Msg that only has headers, for the follow policy.
type headerMsg struct {
	jetstream.Msg
	hdr nats.Header
}

func (m headerMsg) Headers() nats.Header { return m.hdr }

// Follow rounds and deadlines: read only from the service's own follow-ups, and bounded
// whatever the headers say.
func TestFollowState(t *testing.T) {
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	h := &Handler{subjects: events.Subjects{Prefix: "orders"}, now: func() time.Time { return now }}
	sent := now.Add(-time.Hour)
	own := "orders.follow.kuaishou.payment.12"
	for _, tc := range []struct {
		name      string
		hdr       nats.Header
		payload   time.Time // follow_until in the request
		wantRound int
		wantUntil time.Time
	}{
		{"first round", nats.Header{}, time.Time{}, 0, sent.Add(24 * time.Hour)},
		{"payload deadline", nats.Header{}, now.Add(48 * time.Hour), 0, now.Add(48 * time.Hour)},
		{"forged headers, no mark", nats.Header{"Orders-Follow-Round": {"9223372036854775807"}, "Orders-Follow-Until": {"2999-01-01T00:00:00Z"}},
			time.Time{}, 0, sent.Add(24 * time.Hour)},
		{"own follow-up", nats.Header{"Nats-Scheduler": {own}, "Orders-Follow-Round": {"3"}, "Orders-Follow-Until": {"2026-11-26T10:00:00Z"}},
			time.Time{}, 3, time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)},
		{"marked, round past the bound", nats.Header{"Nats-Scheduler": {own}, "Orders-Follow-Round": {"9223372036854775807"}}, time.Time{}, maxFollowRounds, sent.Add(24 * time.Hour)},
		{"marked, round overflows int", nats.Header{"Nats-Scheduler": {own}, "Orders-Follow-Round": {"99999999999999999999999"}}, time.Time{}, 0, sent.Add(24 * time.Hour)},
		{"marked, negative round", nats.Header{"Nats-Scheduler": {own}, "Orders-Follow-Round": {"-5"}}, time.Time{}, 0, sent.Add(24 * time.Hour)},
		{"marked, deadline in 2999", nats.Header{"Nats-Scheduler": {own}, "Orders-Follow-Until": {"2999-01-01T00:00:00Z"}}, time.Time{}, 0, now.Add(events.MaxFollow)},
		{"another prefix's mark", nats.Header{"Nats-Scheduler": {"other.follow.x.y.1"}, "Orders-Follow-Round": {"3"}}, time.Time{}, 0, sent.Add(24 * time.Hour)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			j := &job{msg: headerMsg{hdr: tc.hdr}, meta: &jetstream.MsgMetadata{Timestamp: sent}}
			j.req.FollowUntil = tc.payload
			round, until := h.followState(j)
			if round != tc.wantRound || !until.Equal(tc.wantUntil) {
				t.Fatalf("round %d until %s; want %d %s", round, until, tc.wantRound, tc.wantUntil)
			}
		})
	}
}
