// Package telemetry is what the service tells its operators: Prometheus metrics, W3C trace
// context and OpenTelemetry spans, and the HTTP health, readiness and metrics endpoints.
package telemetry

import (
	"context"
	"path"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Metrics are the service's Prometheus metrics, registered on one registry per process.
type Metrics struct {
	Requests      *prometheus.CounterVec
	ProviderCalls *prometheus.CounterVec
	CallDuration  *prometheus.HistogramVec
	LimiterWait   *prometheus.HistogramVec
	Retries       *prometheus.CounterVec
	Events        *prometheus.CounterVec
	DeadLetters   *prometheus.CounterVec
	InFlight      prometheus.Gauge
	Ignored       *prometheus.CounterVec
	WriteRetries  prometheus.Counter
	Swept         prometheus.Counter
	// SweepUp is 1 while the sweep runs (it could take or follow its lease and the writes).
	SweepUp prometheus.Gauge
	// DamagedRecords counts order records read back that failed to decode or validate.
	DamagedRecords prometheus.Counter
	// RoundTrips counts the JetStream requests a goroutine waited for, by op.
	RoundTrips *prometheus.CounterVec
	// PullsRemade counts pulls made again because their heartbeats stopped.
	PullsRemade prometheus.Counter
	// Notifications counts provider notifications by outcome (CONTRACT.md section 8).
	Notifications *prometheus.CounterVec
	// NotificationLatency is the time from a notification's timestamp to its event stored.
	NotificationLatency *prometheus.HistogramVec
	// FollowsEnded counts follow rounds ended without a provider call, the order being terminal.
	FollowsEnded *prometheus.CounterVec
}

// NewMetrics creates the metrics and registers them, with the Go and process collectors, on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "orders_requests_total",
			Help: "Query requests settled, by outcome: event (a status change was published), unchanged, dead_letter, redelivery (handed back with a delay after failing), handed_back (shutdown).",
		}, []string{"provider", "kind", "outcome"}),
		ProviderCalls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "orders_provider_calls_total",
			Help: "Calls to provider APIs, by outcome: ok, or the error class (retryable, rate_limited, token_invalid, permanent).",
		}, []string{"provider", "endpoint", "outcome"}),
		CallDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "orders_provider_call_duration_seconds",
			Help:    "Time of one call to a provider API.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"provider", "endpoint"}),
		LimiterWait: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "orders_limiter_wait_seconds",
			Help:    "Time a call waited for a slot under its endpoint's QPS limit.",
			Buckets: []float64{.001, .01, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"provider", "endpoint"}),
		Retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "orders_retries_total",
			Help: "In-process retries of provider calls.",
		}, []string{"provider", "kind"}),
		Events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "orders_events_published_total",
			Help: "Status-changed events published (a copy JetStream dropped as a duplicate counts too).",
		}, []string{"provider", "kind", "status"}),
		DeadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "orders_dead_letters_total",
			Help: "Requests dead-lettered, by reason.",
		}, []string{"provider", "kind", "reason"}),
		Ignored: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "orders_answers_ignored_total",
			Help: "Provider answers that would have moved an order backwards, by reason: stale (a query sent later set the status) or after_terminal (a non-terminal answer for a terminal order).",
		}, []string{"provider", "kind", "reason"}),
		PullsRemade: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "orders_pulls_remade_total",
			Help: "Pulls of requests made again because two of their heartbeats went missing: a lost route to NATS, or requests stuck on their way.",
		}),
		WriteRetries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "orders_write_retries_total",
			Help: "State writes and event publishes tried again with the provider's answer in hand.",
		}),
		Swept: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "orders_events_swept_total",
			Help: "Claimed events the sweep found unpublished (or their mark uncleared), and published.",
		}),
		SweepUp: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "orders_sweep_up",
			Help: "1 while this replica's sweep runs: it reads its lease and, holding it, follows the state writes; 0 when it cannot (see /readyz for why).",
		}),
		DamagedRecords: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "orders_state_records_damaged_total",
			Help: "Order records in ORDERS_STATE that did not decode or broke their domain when read; each is written over by the order's next answer.",
		}),
		RoundTrips: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "orders_jetstream_round_trips_total",
			Help: "JetStream requests a goroutine waited for the answer to, by op: state_read (an order's state), claim (a transition), event and clear (an event published, and its pending mark cleared, by a reader of a state with one or by the sweep), limiter (the rate limiter's reads and writes that a request waits for); limiter_background counts the limiter's renewals of a key's horizon, which no request waits for (their goroutine does). Events and clears in a request's own path are not waited for.",
		}, []string{"op"}),
		Notifications: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "orders_notifications_total",
			Help: "Provider notifications received, by way in (http, nats) and outcome: applied (a change, its event stored), unchanged (already known), duplicate (message_id processed before; over HTTP: stored before, inside the duplicate window), stale (older than the recorded status, after its end, or older than the message ids kept), bad_signature, amount_mismatch (not applied; the order is queried instead), malformed, stored (over HTTP: in JetStream, answered 200), store_failed (over HTTP: answered 5xx), busy (over HTTP: answered 503).",
		}, []string{"provider", "via", "outcome"}),
		NotificationLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "orders_notification_to_event_seconds",
			Help:    "Time from a notification's timestamp (the provider's clock) to the event it caused being stored, by the order's kind (payment, settlement, refund).",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"provider", "kind"}),
		FollowsEnded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "orders_follow_rounds_skipped_total",
			Help: "Follow rounds that ended without calling the provider, the order's recorded status being terminal (a notification saw its end first).",
		}, []string{"provider", "kind"}),
		InFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "orders_requests_in_flight",
			Help: "Requests accepted by this process and not yet settled (waiting for a limit, a call or a retry).",
		}),
	}
	reg.MustRegister(m.Requests, m.ProviderCalls, m.CallDuration, m.LimiterWait, m.Retries, m.Events, m.DeadLetters, m.InFlight, m.Ignored, m.WriteRetries, m.Swept, m.SweepUp, m.DamagedRecords, m.RoundTrips, m.PullsRemade,
		m.Notifications, m.NotificationLatency, m.FollowsEnded,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// EndpointOf is the endpoint part of a rate key (provider/app/endpoint); the app is left out
// of labels to keep their number bounded.
func EndpointOf(key string) (provider, endpoint string) {
	provider, _, _ = strings.Cut(key, "/")
	return provider, path.Base(key)
}

// consumerCollector reports the durable consumer's backlog at each scrape.
type consumerCollector struct {
	consumer   jetstream.Consumer
	pending    *prometheus.Desc
	ackPending *prometheus.Desc
}

// NewConsumerCollector reports the pending and ack-pending counts of the consumer.
func NewConsumerCollector(c jetstream.Consumer) prometheus.Collector {
	return &consumerCollector{
		consumer:   c,
		pending:    prometheus.NewDesc("orders_consumer_pending", "Requests in ORDERS_QUERY not yet delivered to any replica.", nil, nil),
		ackPending: prometheus.NewDesc("orders_consumer_ack_pending", "Requests delivered to replicas and not yet settled, all replicas together.", nil, nil),
	}
}

func (c *consumerCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.pending; ch <- c.ackPending }

func (c *consumerCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	info, err := c.consumer.Info(ctx)
	if err != nil {
		return // no sample rather than a wrong one
	}
	ch <- prometheus.MustNewConstMetric(c.pending, prometheus.GaugeValue, float64(info.NumPending))
	ch <- prometheus.MustNewConstMetric(c.ackPending, prometheus.GaugeValue, float64(info.NumAckPending))
}
