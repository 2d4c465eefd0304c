package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/paystatus/orderstatus/internal/natstest"
	kssandbox "github.com/paystatus/orderstatus/internal/providers/kuaishou/sandbox"
)

var (
	buildOnce sync.Once
	builtBin  string
	buildErr  error
)

// consumerBinary builds the consumer once per test run.
func consumerBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "consumer-bin")
		if err != nil {
			buildErr = err
			return
		}
		builtBin = filepath.Join(dir, "consumer")
		if out, err := exec.Command("go", "build", "-o", builtBin, ".").CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return builtBin
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// The consumer process, fed hostile inputs (msgpack length bombs, invalid UTF-8, forged follow
// headers, a request at the server's max_payload, bombs on the lookup endpoints), keeps running
// under the same PID with /healthz at 200 throughout, ends each input in its dead letter, error
// reply or event, and exits 0 on SIGTERM within the ack wait: no bomb runs it out of memory,
// and no forged follow round keeps it from stopping.
func TestHostileInputKeepsTheProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the consumer binary")
	}
	bin := consumerBinary(t)
	ns := natstest.RunServer(t)
	sb := demoSandbox(t, 0, "")
	httpAddr := freeAddr(t)
	p := startConsumer(t, bin, writeConfig(t, ns.ClientURL(), httpAddr, sb.URL(), 1), httpAddr)
	pid := p.cmd.Process.Pid
	alive := func(when string) {
		t.Helper()
		if p.exited() {
			t.Fatalf("%s: the consumer (pid %d) exited: %v", when, pid, p.err)
		}
		if c := p.status("/healthz"); c != http.StatusOK {
			t.Fatalf("%s: /healthz %d", when, c)
		}
	}
	natstest.CheckFor(t, 20*time.Second, 20*time.Millisecond, func() error {
		if c := p.status("/readyz"); c != http.StatusOK {
			return fmt.Errorf("/readyz %d", c)
		}
		return nil
	})

	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx := context.Background()
	app, order := kssandbox.DemoAppID, kssandbox.DemoOrderNo
	var nested []byte
	for range 41 {
		nested = append(nested, 0xde, 0xff, 0xff, 0xa1, 'k')
	}
	big := bytes.Repeat([]byte("x"), int(nc.MaxPayload())-200)
	big = append(append([]byte(`{"pad":"`), big[:len(big)-10]...), '"', '}')
	deadLetters := []struct {
		data []byte
		hdr  nats.Header
	}{
		{[]byte{0xde, 0xff, 0xff}, nil},
		{nested, nil},
		{[]byte{0xdf, 0xff, 0xff, 0xff, 0xff}, nil},
		{[]byte(`{"app_id":"` + app + `","order_no":"o` + "\xff" + `"}`), nil},
		{[]byte(`{"app_id":"` + app + `","order_no":"` + order + `","follow":true,"follow_until":"2999-01-01T00:00:00Z"}`), nil},
		{big, nil},
	}
	for i, d := range deadLetters {
		hdr := nats.Header{"Nats-Msg-Id": {fmt.Sprintf("hostile-%d", i)}}
		for k, v := range d.hdr {
			hdr[k] = v
		}
		if _, err := js.PublishMsg(ctx, &nats.Msg{Subject: "orders.query.kuaishou.payment", Data: d.data, Header: hdr}); err != nil {
			t.Fatal(err)
		}
		alive(fmt.Sprintf("after hostile request %d", i))
	}
	// A forged follow request: it must give its event and leave shutdown unaffected.
	if _, err := js.PublishMsg(ctx, &nats.Msg{Subject: "orders.query.kuaishou.payment",
		Data:   []byte(`{"app_id":"` + app + `","order_no":"` + order + `","follow":true}`),
		Header: nats.Header{"Orders-Follow-Round": {"9223372036854775807"}, "Orders-Follow-Until": {"2999-01-01T00:00:00Z"}}}); err != nil {
		t.Fatal(err)
	}
	for _, data := range [][]byte{{0xdf, 0xff, 0xff, 0xff, 0xff}, nested, []byte(`{"app_id":"` + app + `","order_no":"\ud800"}`)} {
		m, err := nc.Request("orders.lookup.kuaishou.payment", data, 10*time.Second)
		if err != nil {
			t.Fatalf("lookup: %v", err)
		}
		if code := m.Header.Get("Nats-Service-Error-Code"); code != "invalid_payload" && code != "invalid_field" {
			t.Fatalf("lookup answered %q", code)
		}
		alive("after a hostile lookup")
	}

	count := func(stream string) uint64 {
		s, err := js.Stream(ctx, stream)
		if err != nil {
			return 0
		}
		info, err := s.Info(ctx)
		if err != nil {
			return 0
		}
		return info.State.Msgs
	}
	natstest.CheckFor(t, 20*time.Second, 20*time.Millisecond, func() error {
		alive("waiting for outcomes")
		// +1: the oversized request's whole payload, stored beside its dead letter.
		if dl, ev := count("ORDERS_DLQ"), count("ORDERS_STATUS"); dl != uint64(len(deadLetters))+1 || ev != 1 {
			return fmt.Errorf("%d dead-letter messages, %d events", dl, ev)
		}
		return nil
	})
	t.Logf("figures: pid=%d hostile_requests=%d hostile_lookups=3 dead_letter_msgs=%d events=%d healthz=200 throughout",
		pid, len(deadLetters)+1, count("ORDERS_DLQ"), count("ORDERS_STATUS"))

	if p.cmd.Process.Pid != pid {
		t.Fatalf("pid changed")
	}
	p.stop(t, 5*time.Second) // the ack wait: exit 0 within it
}
