package telemetry

import (
	"context"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/paystatus/orderstatus/internal/ratelimit"
)

// CountingKV counts the requests made through a KV bucket whose answers are waited for; those
// the rate limiter makes in the background (ratelimit.Background), which no request waits for,
// count in background if it is set, else not at all.
type CountingKV struct {
	jetstream.KeyValue
	Trips      prometheus.Counter
	Background prometheus.Counter
}

func (k CountingKV) count(ctx context.Context) {
	switch {
	case !ratelimit.Background(ctx):
		k.Trips.Inc()
	case k.Background != nil:
		k.Background.Inc()
	}
}

func (k CountingKV) Get(ctx context.Context, key string) (jetstream.KeyValueEntry, error) {
	k.count(ctx)
	return k.KeyValue.Get(ctx, key)
}

func (k CountingKV) GetRevision(ctx context.Context, key string, rev uint64) (jetstream.KeyValueEntry, error) {
	k.count(ctx)
	return k.KeyValue.GetRevision(ctx, key, rev)
}

func (k CountingKV) Put(ctx context.Context, key string, value []byte) (uint64, error) {
	k.count(ctx)
	return k.KeyValue.Put(ctx, key, value)
}

func (k CountingKV) Create(ctx context.Context, key string, value []byte, opts ...jetstream.KVCreateOpt) (uint64, error) {
	k.count(ctx)
	return k.KeyValue.Create(ctx, key, value, opts...)
}

func (k CountingKV) Update(ctx context.Context, key string, value []byte, rev uint64) (uint64, error) {
	k.count(ctx)
	return k.KeyValue.Update(ctx, key, value, rev)
}
