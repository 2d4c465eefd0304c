package handlers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/paystatus/orderstatus/internal/config"
	"github.com/paystatus/orderstatus/internal/events"
)

// Names of the JetStream assets (CONTRACT.md section 1).
const (
	QueryStream  = "ORDERS_QUERY"
	StatusStream = "ORDERS_STATUS"
	DLQStream    = "ORDERS_DLQ"
	StateBucket  = "ORDERS_STATE"
	RateBucket   = "ORDERS_RATE"
)

// Assets are the provisioned streams, bucket and consumer.
type Assets struct {
	State    jetstream.KeyValue
	Rate     jetstream.KeyValue
	Consumer jetstream.Consumer
}

// Provision creates or updates the streams, the KV bucket and the durable consumer. It is
// idempotent. On a second start with a changed configuration it updates what JetStream lets
// change (subjects, replicas, duplicate window, consumer limits) and never deletes data: a
// retention that would be shortened, or a retention policy that differs, is left as it is and
// reported in the log.
func Provision(ctx context.Context, js jetstream.JetStream, cfg *config.Config, log *slog.Logger) (*Assets, error) {
	r := cfg.NATS.Replicas
	streams := StreamConfigs(cfg)
	var query jetstream.Stream
	for _, sc := range streams {
		s, err := ensureStream(ctx, js, sc, log)
		if err != nil {
			return nil, err
		}
		if sc.Name == QueryStream {
			query = s
		}
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: StateBucket, Description: "Last known status per order",
		History: 1, Storage: jetstream.FileStorage, Replicas: r, TTL: cfg.NATS.StateMaxAge,
	})
	if err != nil {
		return nil, fmt.Errorf("provision KV %s: %w", StateBucket, err)
	}
	rate, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: RateBucket, Description: "QPS slots per provider endpoint, shared by all replicas",
		History: 1, Storage: jetstream.FileStorage, Replicas: r,
	})
	if err != nil {
		return nil, fmt.Errorf("provision KV %s: %w", RateBucket, err)
	}
	cons, err := query.CreateOrUpdateConsumer(ctx, ConsumerConfig(cfg))
	if err != nil {
		return nil, fmt.Errorf("provision consumer %s: %w", cfg.Consumer.Name, err)
	}
	return &Assets{State: kv, Rate: rate, Consumer: cons}, nil
}

// ProvisionRetrying provisions until it succeeds or ctx ends. Replicas that start together
// on a new cluster race to create the same streams, and nats-server does not answer a
// create-or-update that arrives while that stream's creation is still in flight; NATS may not
// be reachable yet at all. Each attempt has its own deadline, and a failed one is tried again
// with backoff (250 ms doubling to 5 s): the replica waits, not ready, and never exits on a race.
func ProvisionRetrying(ctx context.Context, js jetstream.JetStream, cfg *config.Config, log *slog.Logger) (*Assets, error) {
	bo := backoff.NewExponentialBackOff(backoff.WithInitialInterval(250*time.Millisecond),
		backoff.WithMaxInterval(5*time.Second), backoff.WithMaxElapsedTime(0))
	var assets *Assets
	err := backoff.RetryNotify(func() error {
		// Short: a create that races another replica's may get no answer at all.
		actx, cancel := context.WithTimeout(ctx, 4*time.Second)
		defer cancel()
		var err error
		assets, err = Provision(actx, js, cfg, log)
		return err
	}, backoff.WithContext(bo, ctx), func(err error, next time.Duration) {
		log.Warn("provisioning JetStream failed; trying again", "err", err, "retry_in", next.Round(time.Millisecond).String())
	})
	return assets, err
}

// StreamConfigs are the streams the service needs, as cfg shapes them. deploy/nats holds the
// same definitions as files for `nats stream add --config` (a test keeps them equal).
func StreamConfigs(cfg *config.Config) []jetstream.StreamConfig {
	subj := events.Subjects{Prefix: cfg.NATS.SubjectPrefix}
	r := cfg.NATS.Replicas
	return []jetstream.StreamConfig{
		{
			Name: QueryStream, Description: "Order status query requests (work queue), and follow-ups and event checks scheduled for later",
			Subjects: []string{subj.QueryFilter(), subj.FollowFilter(), subj.SweepFilter()}, Retention: jetstream.WorkQueuePolicy,
			Storage: jetstream.FileStorage, Replicas: r, Duplicates: cfg.NATS.DuplicateWindow,
			AllowMsgSchedules: true,
		},
		{
			Name: StatusStream, Description: "Order status-changed events",
			Subjects: []string{subj.StatusFilter()}, Retention: jetstream.LimitsPolicy,
			Storage: jetstream.FileStorage, Replicas: r, Duplicates: cfg.NATS.DuplicateWindow, MaxAge: cfg.NATS.StatusMaxAge,
		},
		{
			Name: DLQStream, Description: "Order status requests that can never succeed",
			Subjects: []string{subj.DeadLetterFilter()}, Retention: jetstream.LimitsPolicy,
			Storage: jetstream.FileStorage, Replicas: r, Duplicates: cfg.NATS.DuplicateWindow, MaxAge: cfg.NATS.DLQMaxAge,
		},
	}
}

// ConsumerConfig is the durable pull consumer every replica shares. Its MaxDeliver is
// unlimited on purpose: the handler counts deliveries itself and dead-letters a request on its
// last allowed one (consumer.max_deliver). A server-side limit would strand in the stream a
// request handed back on that delivery (by a shutdown, or a dead letter that could not be stored).
func ConsumerConfig(cfg *config.Config) jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:       cfg.Consumer.Name,
		Description:   "Order status query workers",
		FilterSubject: events.Subjects{Prefix: cfg.NATS.SubjectPrefix}.QueryFilter(),
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       cfg.Consumer.AckWait,
		MaxDeliver:    -1,
		MaxAckPending: cfg.Consumer.MaxAckPending,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		Replicas:      cfg.NATS.Replicas,
	}
}

func ensureStream(ctx context.Context, js jetstream.JetStream, want jetstream.StreamConfig, log *slog.Logger) (jetstream.Stream, error) {
	s, err := js.Stream(ctx, want.Name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		s, err = js.CreateStream(ctx, want)
		if err != nil {
			return nil, fmt.Errorf("create stream %s: %w", want.Name, err)
		}
		log.Info("stream created", "stream", want.Name, "subjects", want.Subjects, "replicas", want.Replicas)
		return s, nil
	}
	if err != nil {
		return nil, fmt.Errorf("look up stream %s: %w", want.Name, err)
	}
	cur := s.CachedInfo().Config
	next := cur
	next.Subjects = want.Subjects
	next.Replicas = want.Replicas
	next.Description = want.Description
	if want.AllowMsgSchedules { // can be turned on, never off
		next.AllowMsgSchedules = true
		next.AllowRollup, next.DenyPurge = true, false
	}
	if cur.Retention != want.Retention || cur.Storage != want.Storage {
		log.Warn("stream retention or storage differs from what this service creates; left as it is",
			"stream", want.Name, "retention", cur.Retention.String(), "storage", cur.Storage.String())
	}
	if keepsLonger(want.MaxAge, cur.MaxAge) {
		next.MaxAge = want.MaxAge
	} else if want.MaxAge != cur.MaxAge {
		log.Warn("configured retention is shorter than the stream's; not applied, as it would delete messages (use nats stream edit to do it on purpose)",
			"stream", want.Name, "configured", want.MaxAge.String(), "current", cur.MaxAge.String())
	}
	next.Duplicates = want.Duplicates
	if next.MaxAge != 0 && next.Duplicates > next.MaxAge {
		next.Duplicates = next.MaxAge
	}
	if reflect.DeepEqual(next, cur) {
		return s, nil
	}
	s, err = js.UpdateStream(ctx, next)
	if err != nil {
		return nil, fmt.Errorf("update stream %s: %w", want.Name, err)
	}
	log.Info("stream updated", "stream", want.Name, "subjects", next.Subjects, "replicas", next.Replicas,
		"max_age", next.MaxAge.String(), "duplicate_window", next.Duplicates.String())
	return s, nil
}

// keepsLonger reports whether retention a keeps messages at least as long as b (0 is forever).
func keepsLonger(a, b time.Duration) bool {
	switch {
	case a == 0:
		return true
	case b == 0:
		return false
	}
	return a >= b
}
