package dlq

import (
	"bytes"
	"context"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/paystatus/orderstatus/internal/config"
	"github.com/paystatus/orderstatus/internal/events"
	"github.com/paystatus/orderstatus/internal/natsinfra"
	"github.com/paystatus/orderstatus/internal/natstest"
)

// signalOnPublish is JetStream that ends the run's context (as SIGTERM does) just as a replay
// is published.
type signalOnPublish struct {
	jetstream.JetStream
	stop context.CancelFunc
}

func (s signalOnPublish) PublishMsg(ctx context.Context, m *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	s.stop()
	return s.JetStream.PublishMsg(ctx, m, opts...)
}

// A replay stored as the signal arrives is reported stored and its dead letter deleted; the
// run stops before the next letter, which stays.
func TestReplayStoredAsSignalArrives(t *testing.T) {
	ns := natstest.RunServer(t)
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	bg := context.Background()
	for _, sc := range natsinfra.StreamConfigs(config.Default()) {
		if _, err := js.CreateOrUpdateStream(bg, sc); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{"a", "b"} {
		if _, err := js.PublishMsg(bg, &nats.Msg{Subject: "orders.dlq.kuaishou.payment", Data: []byte(d),
			Header: nats.Header{events.HeaderSubject: {"orders.query.kuaishou.payment"}, events.HeaderErrorReason: {"x"}}}); err != nil {
			t.Fatal(err)
		}
	}
	ctx, stop := context.WithCancel(bg)
	defer stop()
	r := &Replayer{JS: signalOnPublish{js, stop}, Subjects: events.Subjects{Prefix: "orders"}}
	sum, err := r.Replay(ctx, Filter{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(sum.Letters) != 1 || sum.Letters[0].Result != ResultReplayed || sum.Letters[0].StreamSeq != 1 || sum.Replayed != 1 ||
		sum.Stopped != context.Canceled.Error() || sum.Selected != 2 {
		t.Fatalf("summary %+v", sum)
	}
	s, _ := js.Stream(bg, natsinfra.DLQStream)
	if _, err := s.GetMsg(bg, 1); err == nil {
		t.Fatal("the replayed dead letter is still there")
	}
	if _, err := s.GetMsg(bg, 2); err != nil {
		t.Fatalf("the letter not tried is gone: %v", err)
	}
}

// fit drops headers a query does not need, then Nats-Msg-Id, and says exactly why when even the
// payload with Content-Type does not fit.
func TestFit(t *testing.T) {
	hdr := nats.Header{"Content-Type": {"application/json"}, "Traceparent": {"00-x"}, events.HeaderOriginalMsgID: {"req-1"}, events.HeaderSubject: {"s"}}
	s := selected{seq: 7}
	lim := func(n int) sizeLimit { return sizeLimit{n: n, what: "max_payload"} }
	m, _ := fit(hdr, []byte("x"), s, lim(1<<20))
	if m.Header.Get(events.HeaderMsgID) != "req-1-replay-7" || m.Header.Get("Traceparent") == "" || m.Header.Get(events.HeaderSubject) != "" {
		t.Fatalf("roomy: %v", m.Header)
	}
	data := bytes.Repeat([]byte("x"), 1000)
	needed := nats.Header{"Content-Type": {"application/json"}}
	m, f := fit(hdr, data, s, lim(len(data)+headerSize(needed)))
	if m == nil || m.Header.Get(events.HeaderMsgID) != "" || m.Header.Get("Content-Type") == "" || f.note == "" {
		t.Fatalf("tight: %v %+v", m, f)
	}
	m, f = fit(hdr, data, s, lim(len(data)))
	if m != nil || f.size != len(data)+headerSize(needed) {
		t.Fatalf("too big: %v %+v", m, f)
	}
}
