package natsinfra

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/paystatus/orderstatus/internal/config"
)

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
