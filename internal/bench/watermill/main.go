// Command watermill is the Watermill peer of the order-status consumer, for `make bench`: the same
// work (take a query request from JetStream, make the signed Kuaishou call with the service's own
// client, publish one msgpack status event to JetStream, ack) written the way a Watermill user
// would write it: a router with the Recoverer, CorrelationID and Retry middleware, and the
// watermill-nats JetStream subscriber and publisher.
//
// It lives in its own module so that the product's go.mod does not carry Watermill. It prints
// "ready" on stdout once subscribed, one "failed: ..." line on stdout for each request given up
// after the retries (acked and dropped, so a bench sees it at once rather than waiting on
// redeliveries), and runs until SIGINT or SIGTERM, when it prints its counts on stderr.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wmnats "github.com/ThreeDotsLabs/watermill-nats/v2/pkg/nats"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/paystatus/orderstatus/internal/config"
	"github.com/paystatus/orderstatus/internal/events"
	"github.com/paystatus/orderstatus/internal/providers"
	"github.com/paystatus/orderstatus/internal/providers/kuaishou"
)

// statusMetadataKey carries a produced event's status to statusPublisher, which makes it the
// last token of the subject, as the service and the bench's bare loop do.
const statusMetadataKey = "status"

func main() {
	var (
		natsURL       = flag.String("nats", nats.DefaultURL, "NATS server URL")
		providerURL   = flag.String("provider-url", "", "Kuaishou API base URL (the sandbox)")
		apps          = flag.Int("apps", 200, "apps ks-bench-000.. with secret \"secret\"")
		concurrency   = flag.Int("concurrency", 64, "subscribers in the queue group (requests in flight)")
		subjectIn     = flag.String("subject-in", "wm.query.>", "subject the requests are read from")
		streamIn      = flag.String("stream-in", "WM_QUERY", "work-queue stream holding -subject-in")
		statusPrefix  = flag.String("status-prefix", "wm.status", "events go to <prefix>.<status>")
		streamOut     = flag.String("stream-out", "WM_STATUS", "stream holding <status-prefix>.>")
		durable       = flag.String("durable", "wm-peer", "durable consumer and queue group name")
		maxAckPending = flag.Int("max-ack-pending", 20000, "the consumer's max_ack_pending (the service's default)")
		createStreams = flag.Bool("create-streams", true, "create or update -stream-in and -stream-out")
	)
	flag.Parse()
	if *providerURL == "" {
		fmt.Fprintln(os.Stderr, "watermill: -provider-url is required")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, options{
		natsURL: *natsURL, providerURL: *providerURL, apps: *apps, concurrency: *concurrency,
		subjectIn: *subjectIn, streamIn: *streamIn, statusPrefix: *statusPrefix, streamOut: *streamOut,
		durable: *durable, maxAckPending: *maxAckPending, createStreams: *createStreams,
	}); err != nil {
		fmt.Fprintln(os.Stderr, "watermill:", err)
		os.Exit(1)
	}
}

type options struct {
	natsURL, providerURL                         string
	apps, concurrency, maxAckPending             int
	subjectIn, streamIn, statusPrefix, streamOut string
	durable                                      string
	createStreams                                bool
}

func run(ctx context.Context, o options) error {
	// Tracing off, as the service runs by default: the provider client then makes its calls
	// without the HTTP instrumentation (otel's global provider is not the no-op one until set).
	otel.SetTracerProvider(noop.NewTracerProvider())
	if o.createStreams {
		if err := provision(ctx, o); err != nil {
			return err
		}
	}

	var apps []config.App
	for i := range o.apps {
		apps = append(apps, config.App{AppID: fmt.Sprintf("ks-bench-%03d", i), AppSecret: "secret"})
	}
	p, err := kuaishou.New(config.Provider{BaseURL: o.providerURL, QPS: 100000, Timeout: 5 * time.Second, Apps: apps})
	if err != nil {
		return err
	}

	logger := watermill.NopLogger{}
	sub, err := wmnats.NewSubscriber(wmnats.SubscriberConfig{
		URL:              o.natsURL,
		QueueGroupPrefix: o.durable, // the default SubjectCalculator makes it the queue group
		SubscribersCount: o.concurrency,
		AckWaitTimeout:   30 * time.Second,
		CloseTimeout:     10 * time.Second,
		Unmarshaler:      &wmnats.NATSMarshaler{},
		JetStream: wmnats.JetStreamConfig{
			AutoProvision: false, // the streams are made above (or by the caller), not from the topic
			DurablePrefix: o.durable,
			AckAsync:      true,
			SubscribeOptions: []nats.SubOpt{
				nats.BindStream(o.streamIn),
				nats.ManualAck(), // watermill acks; no auto-ack after its callback
				nats.AckExplicit(),
				nats.DeliverAll(),
				nats.AckWait(30 * time.Second),
				nats.MaxAckPending(o.maxAckPending),
			},
		},
	}, logger)
	if err != nil {
		return fmt.Errorf("subscriber: %w", err)
	}
	pub, err := wmnats.NewPublisher(wmnats.PublisherConfig{
		URL:       o.natsURL,
		Marshaler: &wmnats.NATSMarshaler{},
		JetStream: wmnats.JetStreamConfig{AutoProvision: false},
	}, logger)
	if err != nil {
		return fmt.Errorf("publisher: %w", err)
	}

	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: 10 * time.Second}, logger)
	if err != nil {
		return err
	}
	var handled, failed atomic.Int64
	var printMu sync.Mutex
	router.AddMiddleware(
		// outermost: a request given up after the retries is counted, printed and dropped
		func(h message.HandlerFunc) message.HandlerFunc {
			return func(msg *message.Message) ([]*message.Message, error) {
				out, err := h(msg)
				if err != nil {
					n := failed.Add(1)
					printMu.Lock()
					fmt.Printf("failed: %d: %v\n", n, err)
					printMu.Unlock()
					return nil, nil
				}
				handled.Add(1)
				return out, nil
			}
		},
		middleware.CorrelationID,
		middleware.Retry{
			MaxRetries:      3,
			InitialInterval: 10 * time.Millisecond,
			MaxInterval:     time.Second,
			Multiplier:      2,
			MaxElapsedTime:  10 * time.Second,
		}.Middleware,
		middleware.Recoverer,
	)
	router.AddHandler("orders-query", o.subjectIn, sub, o.statusPrefix, statusPublisher{pub},
		func(msg *message.Message) ([]*message.Message, error) {
			req, err := events.DecodeRequest("", msg.Payload)
			if err != nil {
				return nil, err
			}
			res, err := p.Query(msg.Context(), providers.Query{Kind: events.KindPayment, AppID: req.AppID, OrderNo: req.OrderNo})
			if err != nil {
				return nil, fmt.Errorf("%s %s: %w", req.AppID, req.OrderNo, err)
			}
			body, err := events.Msgpack.Marshal(events.StatusEvent{AppID: req.AppID, OrderNo: req.OrderNo, Status: res.Status, Amount: res.Amount})
			if err != nil {
				return nil, err
			}
			ev := message.NewMessage(watermill.NewUUID(), body)
			ev.Metadata.Set(statusMetadataKey, string(res.Status))
			return []*message.Message{ev}, nil
		})

	go func() {
		select {
		case <-router.Running():
			fmt.Println("ready")
		case <-ctx.Done():
		}
	}()
	err = router.Run(ctx) // closes the subscriber and the publisher on return
	fmt.Fprintf(os.Stderr, "watermill: handled %d, failed %d\n", handled.Load(), failed.Load())
	if err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// statusPublisher publishes each event to <topic>.<status>: the router publishes a handler's
// messages to one topic, and the watermill-nats publisher makes the topic the subject.
type statusPublisher struct{ *wmnats.Publisher }

func (s statusPublisher) Publish(topic string, msgs ...*message.Message) error {
	for _, m := range msgs {
		if err := s.Publisher.Publish(topic+"."+m.Metadata.Get(statusMetadataKey), m); err != nil {
			return err
		}
	}
	return nil
}

// provision creates or updates the two streams the way the bench's bare loop makes its own: the
// requests in a work queue, the events with limits retention.
func provision(ctx context.Context, o options) error {
	nc, err := nats.Connect(o.natsURL)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	if _, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: o.streamIn, Subjects: []string{o.subjectIn}, Retention: jetstream.WorkQueuePolicy}); err != nil {
		return fmt.Errorf("stream %s: %w", o.streamIn, err)
	}
	if _, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: o.streamOut, Subjects: []string{o.statusPrefix + ".>"}}); err != nil {
		return fmt.Errorf("stream %s: %w", o.streamOut, err)
	}
	return nil
}
