package handlers

import (
	"context"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/paystatus/orderstatus/internal/ratelimit"
)

// countingKV counts the requests made through a KV bucket whose answers are waited for; those
// the rate limiter makes in the background (ratelimit.Background), which no request waits for,
// count in background if it is set, else not at all.
type countingKV struct {
	jetstream.KeyValue
	trips      prometheus.Counter
	background prometheus.Counter
}

func (k countingKV) count(ctx context.Context) {
	switch {
	case !ratelimit.Background(ctx):
		k.trips.Inc()
	case k.background != nil:
		k.background.Inc()
	}
}

func (k countingKV) Get(ctx context.Context, key string) (jetstream.KeyValueEntry, error) {
	k.count(ctx)
	return k.KeyValue.Get(ctx, key)
}

func (k countingKV) GetRevision(ctx context.Context, key string, rev uint64) (jetstream.KeyValueEntry, error) {
	k.count(ctx)
	return k.KeyValue.GetRevision(ctx, key, rev)
}

func (k countingKV) Put(ctx context.Context, key string, value []byte) (uint64, error) {
	k.count(ctx)
	return k.KeyValue.Put(ctx, key, value)
}

func (k countingKV) Create(ctx context.Context, key string, value []byte, opts ...jetstream.KVCreateOpt) (uint64, error) {
	k.count(ctx)
	return k.KeyValue.Create(ctx, key, value, opts...)
}

func (k countingKV) Update(ctx context.Context, key string, value []byte, rev uint64) (uint64, error) {
	k.count(ctx)
	return k.KeyValue.Update(ctx, key, value, rev)
}
