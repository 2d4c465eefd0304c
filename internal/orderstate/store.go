// Package orderstate is the order-state store: the one writer of ORDERS_STATE and of the
// status events. It owns the record format, the never-backwards rule, transition numbers and
// event ids, the pending mark and its claim, publish and clear protocol, and the sweep that
// publishes what a failed writer left pending. docs/delivery.md and docs/sweep.md say why it
// is built this way.
//
// A change is recorded in steps: Claim writes the new record with its event pending
// (compare-and-set on the key's revision), Publish sends the event, Confirm waits until the
// server stored it, Clear removes the mark. Whoever reads a record with a pending event
// publishes it first, and the sweep publishes one nobody cleared, so a crash between any two
// steps still gives exactly one event downstream.
package orderstate

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"

	"github.com/paystatus/orderstatus/internal/events"
	"github.com/paystatus/orderstatus/internal/kvcas"
	"github.com/paystatus/orderstatus/internal/providers"
	"github.com/paystatus/orderstatus/internal/telemetry"
)

// ErrConflict is a write refused because the order moved on since it was read.
var ErrConflict = errors.New("order state changed concurrently")

// Observation is one answer about an order: a provider's answer to a query sent at Sent, for
// the request Request, or a verified notification (Source events.SourceCallback) sent at Sent,
// its timestamp. Both are ordered by Sent, whichever came first.
type Observation struct {
	Request events.Request
	Result  providers.Result
	Sent    time.Time
	// Source is events.SourceQuery ("" reads as it) or events.SourceCallback. A callback is
	// checked against the order's recorded amount (ErrAmountMismatch).
	Source string
}

// ErrAmountMismatch is a notification whose amount differs from the one recorded for its
// order: it is not applied, and the order is to be queried instead.
var ErrAmountMismatch = errors.New("amount differs from the recorded one")

// Options configure a Store.
type Options struct {
	JS       jetstream.JetStream
	Bucket   jetstream.KeyValue // ORDERS_STATE
	Subjects events.Subjects
	Encoding events.Encoding
	// SweepConsumer is the durable consumer of Bucket's writes the sweep follows (headers
	// only); nil: no sweep.
	SweepConsumer jetstream.Consumer
	// SweepDelay is how old a pending mark is when the sweep publishes its event; 0 means 10 s.
	SweepDelay time.Duration
	// Now is the server's clock (the limiter's reading of it); nil means the local clock.
	Now     func(context.Context) time.Time
	Log     *slog.Logger
	Metrics *telemetry.Metrics
	Tracer  trace.Tracer
}

// Store reads and writes order records.
type Store struct {
	js       jetstream.JetStream
	bucket   jetstream.KeyValue
	subjects events.Subjects
	encoding events.Encoding
	now      func(context.Context) time.Time
	log      *slog.Logger
	metrics  *telemetry.Metrics
	tracer   trace.Tracer
	seen     *seenKeys
	stream   atomic.Pointer[jetstream.Stream] // the bucket's stream, once looked up
	// statusStream is ORDERS_STATUS, once looked up (to tell a copy of an event from an id
	// reused).
	statusStream atomic.Pointer[jetstream.Stream]
	// trips count the JetStream round trips waited for, by op.
	trips struct{ read, claim, event, clear prometheus.Counter }
	sweep sweeper
}

// New builds a Store.
func New(o Options) *Store {
	s := &Store{js: o.JS, bucket: o.Bucket, subjects: o.Subjects, encoding: o.Encoding, now: o.Now, log: o.Log,
		metrics: o.Metrics, tracer: o.Tracer, seen: newSeenKeys(50000)}
	if s.now == nil {
		s.now = func(context.Context) time.Time { return time.Now() }
	}
	s.sweep = sweeper{id: nuid.Next(), delay: o.SweepDelay, cons: o.SweepConsumer, pending: map[string]pendingWrite{}}
	if s.sweep.delay <= 0 {
		s.sweep.delay = 10 * time.Second
	}
	rt := o.Metrics.RoundTrips
	s.trips.read, s.trips.claim = rt.WithLabelValues("state_read"), rt.WithLabelValues("claim")
	s.trips.event, s.trips.clear = rt.WithLabelValues("event"), rt.WithLabelValues("clear")
	return s
}

// Claim is a transition recorded with its event pending.
type Claim struct {
	order
	rec Record // rec.Pending is the event
	rev uint64 // the claim's revision
}

// order is an order's key and the subject of its writes in ORDERS_STATE.
type order struct{ key, subject string }

// order is key's order.
func (s *Store) order(key string) order { return order{key: key, subject: s.subject(key)} }

// Event is the claimed transition's event.
func (c *Claim) Event() events.StatusEvent { return *c.rec.Pending }

// Claim compares obs with the order's record and, on a change, records the transition with its
// event pending. It returns the order's current status as an event, and the claim when obs is
// a change (nil otherwise). An observation that would move the order backwards is ignored.
// A pending event left by an earlier writer is published first, so an order's events go out in
// the order of its transitions.
func (s *Store) Claim(ctx context.Context, obs Observation) (events.StatusEvent, *Claim, error) {
	o, err := s.Observe(ctx, obs)
	return o.Event, o.Claim, err
}

// Observed is what Observe made of an observation.
type Observed struct {
	// Event is the order's current status as an event.
	Event events.StatusEvent
	// Claim is the transition claimed, nil when the observation is no change.
	Claim *Claim
	// Ignored says why the observation was ignored (Ignored's reasons), or "".
	Ignored string
}

// Observe is Claim, saying also why an observation was ignored.
func (s *Store) Observe(ctx context.Context, obs Observation) (Observed, error) {
	req, res := obs.Request, obs.Result
	o := s.order(Key(req.Provider, req.Kind, req.AppID, res.OrderKey))
	key := o.key
	for range 8 {
		var cur Record
		var rev uint64
		var err error
		if s.seen.has(key) {
			if cur, rev, err = s.load(ctx, o); err != nil {
				return Observed{}, err
			}
		} // else never seen here: most likely new, and the create below fails if it is not
		s.seen.add(key)
		if cur.Pending != nil {
			if rev, err = s.publishPending(ctx, &Claim{order: o, rec: cur, rev: rev}); errors.Is(err, ErrConflict) {
				continue
			} else if err != nil {
				return Observed{}, err
			}
			cur.Pending, cur.Trace = nil, telemetry.TraceContext{}
		}
		if obs.Source == events.SourceCallback && cur.Transition > 0 && cur.Amount != 0 && cur.Amount != res.Amount {
			return Observed{Event: statusEvent(obs, "", cur.Transition)}, fmt.Errorf("order %s: %w", key, ErrAmountMismatch)
		}
		if cur.Transition > 0 {
			if why := Ignored(cur, res.Status, obs.Sent); why != "" {
				s.metrics.Ignored.WithLabelValues(req.Provider, req.Kind, why).Inc()
				s.log.Debug("answer ignored", "reason", why, "key", key, "status", string(res.Status), "recorded", string(cur.Status))
				return Observed{Event: recordedEvent(obs, cur), Ignored: why}, nil
			}
			if cur.Status == res.Status && sameProviderStatus(cur.ProviderStatus, res.ProviderStatus) {
				return Observed{Event: statusEvent(obs, "", cur.Transition)}, nil // nothing new
			}
		}
		n := cur.Transition + 1
		if cur.Transition == 0 && rev > 0 {
			// The record is lost (deleted, purged, damaged): its number is one above the
			// revision it follows, above every transition the order had, since each took a
			// write of its own and revisions only grow. Event ids never repeat for an order.
			n = rev + 1
		}
		ev := statusEvent(obs, cur.Status, n)
		next := Record{Status: res.Status, ProviderStatus: res.ProviderStatus, Transition: n, Amount: res.Amount,
			EventID: ev.EventID, SentAt: obs.Sent.UTC().Format(time.RFC3339Nano), ObservedAt: ev.ObservedAt, Pending: &ev,
			Trace: telemetry.TraceOf(ctx)}
		s.trips.claim.Inc()
		newRev, err := s.put(ctx, o, &next, rev)
		if errors.Is(err, ErrConflict) {
			continue // another writer moved this order on: look again (seen now, so read first)
		}
		if err != nil {
			return Observed{}, err
		}
		return Observed{Event: ev, Claim: &Claim{order: o, rec: next, rev: newRev}}, nil
	}
	return Observed{}, fmt.Errorf("order %s: too many concurrent updates", key)
}

// sameProviderStatus reports whether two raw provider statuses are one: equal, or one value in
// Kuaishou's two vocabularies for a settlement or a refund, where a notification says SUCCESS
// and query_settle SETTLE_SUCCESS, query_refund REFUND_SUCCESS (likewise PROCESSING, FAILED). A
// change seen by a notification and by a query is then one event (CONTRACT.md section 8), and
// each event keeps the raw value its source gave; any other change of the raw value alone
// (UNKNOW, then UNKNOWN) is still an event.
func sameProviderStatus(a, b string) bool {
	if a == b {
		return true
	}
	for _, prefix := range [...]string{"SETTLE_", "REFUND_"} {
		if strings.TrimPrefix(a, prefix) == strings.TrimPrefix(b, prefix) &&
			(strings.HasPrefix(a, prefix) || strings.HasPrefix(b, prefix)) {
			return true
		}
	}
	return false
}

// Terminal reports whether the order's recorded status is terminal: a follow round for it has
// nothing left to learn. An order never recorded, or a read that fails, is not terminal.
func (s *Store) Terminal(ctx context.Context, provider, kind, appID, orderKey string) bool {
	rec, _, err := s.load(ctx, s.order(Key(provider, kind, appID, orderKey)))
	return err == nil && rec.Transition > 0 && rec.Status.Terminal()
}

// load reads o's record and its revision (0: never written). A delete marker (`nats kv del`)
// comes back as no record with its revision, so the next write goes over it; so does a
// damaged record, counted and logged.
func (s *Store) load(ctx context.Context, o order) (Record, uint64, error) {
	key := o.key
	s.trips.read.Inc()
	stream, err := s.bucketStream(ctx)
	if err != nil {
		return Record{}, 0, fmt.Errorf("read state %s: %w", key, err)
	}
	m, err := stream.GetLastMsgForSubject(ctx, o.subject)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return Record{}, 0, nil
	}
	if err != nil {
		return Record{}, 0, fmt.Errorf("read state %s: %w", key, err)
	}
	if op := m.Header.Get("KV-Operation"); op == "DEL" || op == "PURGE" {
		return Record{}, m.Sequence, nil
	}
	rec, err := decodeRecord(m.Data)
	if err != nil {
		s.metrics.DamagedRecords.Inc()
		s.log.Warn("damaged order record; the order's next answer writes over it", "key", key, "revision", m.Sequence, "err", err)
		return Record{}, m.Sequence, nil
	}
	return rec, m.Sequence, nil
}

// bucketStream is ORDERS_STATE's stream, looked up once.
func (s *Store) bucketStream(ctx context.Context) (jetstream.Stream, error) {
	return s.lookupStream(ctx, &s.stream, "KV_"+s.bucket.Bucket())
}

// lookupStream is the stream name, looked up once and kept in cache.
func (s *Store) lookupStream(ctx context.Context, cache *atomic.Pointer[jetstream.Stream], name string) (jetstream.Stream, error) {
	if st := cache.Load(); st != nil {
		return *st, nil
	}
	st, err := s.js.Stream(ctx, name)
	if err != nil {
		return nil, err
	}
	cache.Store(&st)
	return st, nil
}

// subject is the subject of key's writes in ORDERS_STATE.
func (s *Store) subject(key string) string { return "$KV." + s.bucket.Bucket() + "." + key }

// put writes rec if o is still at rev (0: the key must not exist), and waits for the
// server. The write is a publish to the key's subject with the revision it must follow, as the
// KV client's own Create and Update make it, sent on the asynchronous path: waiting for its
// future costs less than a request with a reply subject and a timer of its own.
func (s *Store) put(ctx context.Context, o order, rec *Record, rev uint64) (uint64, error) {
	f, err := s.js.PublishMsgAsync(writeMsg(o, rec, rev))
	if err != nil {
		return rev, fmt.Errorf("write state %s: %w", o.key, err)
	}
	select {
	case ack := <-f.Ok():
		return ack.Sequence, nil
	case err = <-f.Err():
	case <-ctx.Done():
		err = ctx.Err()
	}
	if kvcas.Conflict(err) {
		return rev, ErrConflict
	}
	return rev, fmt.Errorf("write state %s: %w", o.key, err)
}

// writeMsg is the write of rec to o, if o is still at rev (0: the key must not exist). A claim
// carries events.HeaderPending, which the sweep follows.
func writeMsg(o order, rec *Record, rev uint64) *nats.Msg {
	var id string
	if rec.Pending != nil {
		id = rec.Pending.EventID
	}
	return newMsg(o.subject, rec.encode(), jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(rev, 10), events.HeaderPending, id)
}

// outMsg is a message and the values of its headers, made in one allocation.
type outMsg struct {
	msg  nats.Msg
	vals [2]string
}

// newMsg is a message to subject with the headers k1: v1 and, unless v2 is empty, k2: v2 (keys
// as they go on the wire: nothing canonicalizes them here).
func newMsg(subject string, data []byte, k1, v1, k2, v2 string) *nats.Msg {
	m := &outMsg{msg: nats.Msg{Subject: subject, Data: data, Header: make(nats.Header, 4)}, vals: [2]string{v1, v2}}
	m.msg.Header[k1] = m.vals[0:1:1]
	if v2 != "" {
		m.msg.Header[k2] = m.vals[1:2:2]
	}
	return &m.msg
}
