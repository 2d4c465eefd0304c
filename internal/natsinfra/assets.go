package natsinfra

import (
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/paystatus/orderstatus/internal/config"
	"github.com/paystatus/orderstatus/internal/events"
)

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
	cc := ConsumerConfig(cfg)
	cc.Durable, cc.Description = CallbackConsumer, "Provider notification workers"
	cc.FilterSubject = events.Subjects{Prefix: cfg.NATS.SubjectPrefix}.CallbackFilter()
	return cc
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
