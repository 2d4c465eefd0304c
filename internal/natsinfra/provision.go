package natsinfra

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats.go"
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

// MissingError lists the JetStream assets Bind did not find.
type MissingError struct {
	Missing []string // such as "stream ORDERS_DLQ", "KV bucket ORDERS_RATE", "consumer orders-query on ORDERS_QUERY"
}

func (e *MissingError) Error() string {
	return "nats.provision is false and an operator has not made " + strings.Join(e.Missing, ", ") +
		" (see deploy/nats and the README's NATS connection and security)"
}

// Bind looks up the streams, KV buckets and durable consumer an operator made, for
// nats.provision false. It creates and changes nothing, so it needs no JetStream admin rights:
// only the info API ($JS.API.STREAM.INFO.*, $JS.API.CONSUMER.INFO.*). Everything missing is
// reported at once as a *MissingError.
func Bind(ctx context.Context, js jetstream.JetStream, cfg *config.Config, log *slog.Logger) (*Assets, error) {
	var missing []string
	queryFound, callbackFound := false, false
	for _, sc := range StreamConfigs(cfg) {
		_, err := js.Stream(ctx, sc.Name)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			missing = append(missing, "stream "+sc.Name)
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("look up stream %s: %w", sc.Name, err)
		}
		queryFound = queryFound || sc.Name == QueryStream
		callbackFound = callbackFound || sc.Name == CallbackStream
	}
	buckets := make([]jetstream.KeyValue, 0, 3)
	stateFound := false
	for _, kc := range KeyValueConfigs(cfg) {
		kv, err := js.KeyValue(ctx, kc.Bucket)
		if errors.Is(err, jetstream.ErrBucketNotFound) {
			missing = append(missing, "KV bucket "+kc.Bucket)
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("look up KV bucket %s: %w", kc.Bucket, err)
		}
		buckets = append(buckets, kv)
		stateFound = stateFound || kc.Bucket == StateBucket
	}
	var cons jetstream.Consumer
	if queryFound {
		c, err := js.Consumer(ctx, QueryStream, cfg.Consumer.Name)
		switch {
		case errors.Is(err, jetstream.ErrConsumerNotFound):
			missing = append(missing, "consumer "+cfg.Consumer.Name+" on "+QueryStream)
		case err != nil:
			return nil, fmt.Errorf("look up consumer %s: %w", cfg.Consumer.Name, err)
		default:
			cons = c
			want, got := ConsumerConfig(cfg), c.CachedInfo().Config
			if got.FilterSubject != want.FilterSubject || got.AckPolicy != want.AckPolicy || got.MaxDeliver != want.MaxDeliver {
				log.Warn("consumer differs from deploy/nats/consumers (filter subject, ack policy or max deliver); used as it is",
					"consumer", cfg.Consumer.Name, "filter_subject", got.FilterSubject, "ack_policy", got.AckPolicy.String(), "max_deliver", got.MaxDeliver)
			}
		}
	} else {
		missing = append(missing, "consumer "+cfg.Consumer.Name+" on "+QueryStream)
	}
	var sweep jetstream.Consumer
	if stateFound {
		c, err := js.Consumer(ctx, "KV_"+StateBucket, SweepConsumer)
		switch {
		case errors.Is(err, jetstream.ErrConsumerNotFound):
			missing = append(missing, "consumer "+SweepConsumer+" on KV_"+StateBucket)
		case err != nil:
			return nil, fmt.Errorf("look up consumer %s: %w", SweepConsumer, err)
		default:
			sweep = c
		}
	} else {
		missing = append(missing, "consumer "+SweepConsumer+" on KV_"+StateBucket)
	}
	var callback jetstream.Consumer
	if callbackFound {
		c, err := js.Consumer(ctx, CallbackStream, CallbackConsumer)
		switch {
		case errors.Is(err, jetstream.ErrConsumerNotFound):
			missing = append(missing, "consumer "+CallbackConsumer+" on "+CallbackStream)
		case err != nil:
			return nil, fmt.Errorf("look up consumer %s: %w", CallbackConsumer, err)
		default:
			callback = c
		}
	} else {
		missing = append(missing, "consumer "+CallbackConsumer+" on "+CallbackStream)
	}
	if len(missing) > 0 {
		return nil, &MissingError{Missing: missing}
	}
	return &Assets{State: buckets[0], Rate: buckets[1], Seen: buckets[2], Consumer: cons, Sweep: sweep, Callback: callback}, nil
}

// KeyValueConfigs are the KV buckets the service needs (ORDERS_STATE, ORDERS_RATE, then
// ORDERS_CALLBACK_SEEN), as cfg
// shapes them. deploy/nats/kv holds the same definitions (a test keeps them equal).
func KeyValueConfigs(cfg *config.Config) []jetstream.KeyValueConfig {
	r := cfg.NATS.Replicas
	return []jetstream.KeyValueConfig{
		{
			Bucket: StateBucket, Description: "Last known status per order",
			History: 1, Storage: jetstream.FileStorage, Replicas: r, TTL: cfg.NATS.StateMaxAge,
		},
		{
			Bucket: RateBucket, Description: "QPS slots per provider endpoint, shared by all replicas",
			History: 1, Storage: jetstream.FileStorage, Replicas: r,
		},
		{
			Bucket: SeenBucket, Description: "Provider notifications processed, by message_id",
			History: 1, Storage: jetstream.FileStorage, Replicas: r, TTL: CallbackSeenFor,
		},
	}
}

// StreamConfigs are the streams the service needs, as cfg shapes them. deploy/nats holds the
// same definitions as files for `nats stream add --config` (a test keeps them equal).
func StreamConfigs(cfg *config.Config) []jetstream.StreamConfig {
	subj := events.Subjects{Prefix: cfg.NATS.SubjectPrefix}
	r := cfg.NATS.Replicas
	return []jetstream.StreamConfig{
		{
			Name: QueryStream, Description: "Order status query requests (work queue), and follow-ups scheduled for later",
			Subjects: []string{subj.QueryFilter(), subj.FollowFilter()}, Retention: jetstream.WorkQueuePolicy,
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
		{
			Name: CallbackStream, Description: "Provider notifications, stored before they are processed (work queue)",
			Subjects: []string{subj.CallbackFilter()}, Retention: jetstream.WorkQueuePolicy,
			Storage: jetstream.FileStorage, Replicas: r, Duplicates: cfg.NATS.DuplicateWindow,
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

// CallbackConsumerConfig is the durable pull consumer of ORDERS_CALLBACK every replica
// shares; like ConsumerConfig, its deliveries are counted by the handler.
func CallbackConsumerConfig(cfg *config.Config) jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:       CallbackConsumer,
		Description:   "Provider notification workers",
		FilterSubject: events.Subjects{Prefix: cfg.NATS.SubjectPrefix}.CallbackFilter(),
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       cfg.Consumer.AckWait,
		MaxDeliver:    -1,
		MaxAckPending: cfg.Consumer.MaxAckPending,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		Replicas:      cfg.NATS.Replicas,
	}
}

// SweepConsumerConfig is the durable consumer of ORDERS_STATE's writes the sweep follows,
// headers only. A claim's write stays unacknowledged until its mark is settled, for up to the
// sweep's delay; AckWait well above it hands the claims of a holder that stopped to the next
// one, and MaxAckPending leaves room for many marks left open at once (a NATS outage).
func SweepConsumerConfig(cfg *config.Config) jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:       SweepConsumer,
		Description:   "Order state writes followed by the sweep (headers only)",
		FilterSubject: "$KV." + StateBucket + ".>",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       30 * time.Second,
		MaxDeliver:    -1,
		MaxAckPending: 100000,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		HeadersOnly:   true,
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

// Ready reports whether the service can run on nc: connected, with its streams and consumer
// present.
func Ready(ctx context.Context, nc *nats.Conn, js jetstream.JetStream, consumer string) error {
	if st := nc.Status(); st != nats.CONNECTED {
		return fmt.Errorf("NATS connection is %s", st)
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	for _, name := range []string{QueryStream, StatusStream, DLQStream, CallbackStream} {
		if _, err := js.Stream(ctx, name); err != nil {
			return fmt.Errorf("stream %s: %w", name, err)
		}
	}
	if _, err := js.Consumer(ctx, QueryStream, consumer); err != nil {
		return fmt.Errorf("consumer %s: %w", consumer, err)
	}
	return nil
}
