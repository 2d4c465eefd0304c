package natsinfra

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"slices"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/paystatus/orderstatus/internal/config"
)

// Names of the JetStream assets (CONTRACT.md section 1).
const (
	QueryStream  = "ORDERS_QUERY"
	StatusStream = "ORDERS_STATUS"
	DLQStream    = "ORDERS_DLQ"
	StateBucket  = "ORDERS_STATE"
	RateBucket   = "ORDERS_RATE"
	// SweepConsumer is the durable consumer of ORDERS_STATE's writes the sweep follows.
	SweepConsumer = "orders-sweep"
	// CallbackStream holds provider notifications (CONTRACT.md section 8) until processed.
	CallbackStream = "ORDERS_CALLBACK"
	// CallbackConsumer is the durable consumer of CallbackStream every replica shares.
	CallbackConsumer = "orders-callback"
	// SeenBucket keeps the message_id of every notification processed, for CallbackSeenFor.
	SeenBucket = "ORDERS_CALLBACK_SEEN"
	// CallbackSeenFor is how long a notification's message_id is remembered: a resend within
	// it changes nothing.
	CallbackSeenFor = 7 * 24 * time.Hour
)

// Assets are the provisioned streams, buckets and consumers.
type Assets struct {
	State    jetstream.KeyValue
	Rate     jetstream.KeyValue
	Consumer jetstream.Consumer
	// Sweep is the durable consumer of ORDERS_STATE's writes (SweepConsumerConfig).
	Sweep jetstream.Consumer
	// Callback is the durable consumer of ORDERS_CALLBACK (CallbackConsumerConfig).
	Callback jetstream.Consumer
	// Seen is ORDERS_CALLBACK_SEEN, the message ids of the notifications processed.
	Seen jetstream.KeyValue
}

// Provision creates or updates the streams, the KV bucket and the durable consumer. It is
// idempotent. On a second start with a changed configuration it updates what JetStream lets
// change (subjects, replicas, duplicate window, consumer limits) and never deletes data: a
// retention that would be shortened, or a retention policy that differs, is left as it is and
// reported in the log.
func Provision(ctx context.Context, js jetstream.JetStream, cfg *config.Config, log *slog.Logger) (*Assets, error) {
	streams := StreamConfigs(cfg)
	var query, callback jetstream.Stream
	for _, sc := range streams {
		s, err := ensureStream(ctx, js, sc, log)
		if err != nil {
			return nil, err
		}
		switch sc.Name {
		case QueryStream:
			query = s
		case CallbackStream:
			callback = s
		}
	}
	kvs := KeyValueConfigs(cfg)
	kv, err := js.CreateOrUpdateKeyValue(ctx, kvs[0])
	if err != nil {
		return nil, fmt.Errorf("provision KV %s: %w", StateBucket, err)
	}
	rate, err := js.CreateOrUpdateKeyValue(ctx, kvs[1])
	if err != nil {
		return nil, fmt.Errorf("provision KV %s: %w", RateBucket, err)
	}
	seen, err := js.CreateOrUpdateKeyValue(ctx, kvs[2])
	if err != nil {
		return nil, fmt.Errorf("provision KV %s: %w", SeenBucket, err)
	}
	cons, err := query.CreateOrUpdateConsumer(ctx, ConsumerConfig(cfg))
	if err != nil {
		return nil, fmt.Errorf("provision consumer %s: %w", cfg.Consumer.Name, err)
	}
	sweep, err := js.CreateOrUpdateConsumer(ctx, "KV_"+StateBucket, SweepConsumerConfig(cfg))
	if err != nil {
		return nil, fmt.Errorf("provision consumer %s: %w", SweepConsumer, err)
	}
	cb, err := callback.CreateOrUpdateConsumer(ctx, CallbackConsumerConfig(cfg))
	if err != nil {
		return nil, fmt.Errorf("provision consumer %s: %w", CallbackConsumer, err)
	}
	return &Assets{State: kv, Rate: rate, Seen: seen, Consumer: cons, Sweep: sweep, Callback: cb}, nil
}

// ProvisionRetrying provisions (or, with nats.provision false, binds) until it succeeds or ctx
// ends. Replicas that start together on a new cluster race to create the same streams, and
// nats-server does not answer a create-or-update that arrives while that stream's creation is
// still in flight; NATS may not be reachable yet at all; an operator may not have made an asset
// yet. Each attempt has its own deadline, and a failed one is tried again with backoff (250 ms
// doubling to 5 s): the replica waits, not ready, and never exits on a race or a missing asset.
func ProvisionRetrying(ctx context.Context, js jetstream.JetStream, cfg *config.Config, log *slog.Logger) (*Assets, error) {
	attempt, failed := Provision, "provisioning JetStream failed; trying again"
	if !cfg.NATS.Provision {
		attempt = func(ctx context.Context, js jetstream.JetStream, cfg *config.Config, log *slog.Logger) (*Assets, error) {
			return Bind(ctx, js, cfg, log)
		}
		failed = "JetStream assets not usable yet (nats.provision is false: an operator makes them); waiting, not ready"
	}
	bo := backoff.NewExponentialBackOff(backoff.WithInitialInterval(250*time.Millisecond),
		backoff.WithMaxInterval(5*time.Second), backoff.WithMaxElapsedTime(0))
	var assets *Assets
	err := backoff.RetryNotify(func() error {
		// Short: a create that races another replica's may get no answer at all.
		actx, cancel := context.WithTimeout(ctx, 4*time.Second)
		defer cancel()
		var err error
		assets, err = attempt(actx, js, cfg, log)
		return err
	}, backoff.WithContext(bo, ctx), func(err error, next time.Duration) {
		log.Warn(failed, "err", err, "retry_in", next.Round(time.Millisecond).String())
	})
	return assets, err
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
	if cur.Retention == jetstream.WorkQueuePolicy {
		if err := checkNothingLeftBehind(ctx, s, cur.Subjects, next.Subjects); err != nil {
			return nil, err
		}
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

// checkNothingLeftBehind refuses to drop a subject of a work-queue stream while messages wait
// on it: once dropped, they match no consumer's filter and would never be delivered. A change
// of nats.subject_prefix is applied once the replicas of the old prefix have taken them.
func checkNothingLeftBehind(ctx context.Context, s jetstream.Stream, cur, next []string) error {
	for _, subj := range cur {
		if slices.Contains(next, subj) {
			continue
		}
		_, err := s.GetLastMsgForSubject(ctx, subj)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		name := s.CachedInfo().Config.Name
		if err != nil {
			return fmt.Errorf("look up stream %s: %w", name, err)
		}
		return fmt.Errorf("stream %s: messages wait on %s, which nats.subject_prefix no longer captures; "+
			"not moved until they are taken (by replicas of the old prefix) or removed on purpose (nats stream purge --subject)",
			name, subj)
	}
	return nil
}
