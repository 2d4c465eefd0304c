// Package natstest runs real embedded NATS servers for tests, as nats.go's own tests do, and
// waits for conditions by polling instead of sleeping.
package natstest

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	natsserver "github.com/nats-io/nats-server/v2/test"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// RunServer starts a JetStream server on a random loopback port with its store in a temporary
// folder; it is shut down when the test ends.
func RunServer(t testing.TB) *server.Server {
	t.Helper()
	return RunServerAt(t, -1, t.TempDir())
}

// RunServerAt starts a JetStream server on port (-1: random) with its store in dir, so a test
// can stop it and start it again on the same store.
func RunServerAt(t testing.TB, port int, dir string) *server.Server {
	t.Helper()
	opts := natsserver.DefaultTestOptions
	opts.Port = port
	opts.JetStream = true
	opts.StoreDir = dir
	s := natsserver.RunServer(&opts)
	t.Cleanup(s.Shutdown)
	return s
}

// CheckFor calls f every interval until it returns nil or total has passed, then fails the
// test with f's last error.
func CheckFor(t testing.TB, total, interval time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(total)
	var err error
	for time.Now().Before(deadline) {
		if err = f(); err == nil {
			return
		}
		time.Sleep(interval)
	}
	t.Fatalf("condition not met within %s: %v", total, err)
}

// RunCluster starts n JetStream servers in one cluster on loopback, each with its own store,
// and waits until JetStream is ready. It returns the servers; all are shut down when the test
// ends.
func RunCluster(t testing.TB, n int) []*server.Server {
	t.Helper()
	ports := freePorts(t, n)
	var routes []string
	for _, p := range ports {
		routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", p))
	}
	servers := make([]*server.Server, n)
	for i := range servers {
		opts := natsserver.DefaultTestOptions
		opts.ServerName = fmt.Sprintf("orders-%d", i+1)
		opts.Port = -1
		opts.JetStream = true
		opts.StoreDir = t.TempDir()
		opts.Cluster = server.ClusterOpts{Name: "orders", Host: "127.0.0.1", Port: ports[i]}
		opts.Routes = server.RoutesFromStr(strings.Join(routes, ","))
		s, err := server.NewServer(&opts)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Shutdown)
		go s.Start()
		// Generous: a loaded machine (another test run beside this one) has taken over 10 s.
		if !s.ReadyForConnections(30 * time.Second) {
			t.Fatalf("server %d did not start", i)
		}
		servers[i] = s
	}
	CheckFor(t, 30*time.Second, 100*time.Millisecond, func() error {
		for _, s := range servers {
			if !s.JetStreamIsCurrent() {
				return fmt.Errorf("%s: JetStream not current", s.Name())
			}
		}
		if servers[0].JetStreamIsLeader() || servers[1].JetStreamIsLeader() || servers[2%n].JetStreamIsLeader() {
			return nil
		}
		return fmt.Errorf("no JetStream meta leader yet")
	})
	waitPlaceable(t, ClusterURL(servers), n)
	return servers
}

// waitPlaceable waits until the cluster at url can place an R<n> stream: it has a JetStream
// meta leader and every peer is known online to it.
func waitPlaceable(t testing.TB, url string, n int) {
	t.Helper()
	var nc *nats.Conn
	CheckFor(t, 30*time.Second, 100*time.Millisecond, func() error {
		var err error
		nc, err = nats.Connect(url)
		return err
	})
	defer nc.Close()
	js, _ := jetstream.New(nc)
	CheckFor(t, 30*time.Second, 100*time.Millisecond, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "NATSTEST_READY", Subjects: []string{"natstest.ready"}, Replicas: n}); err != nil {
			return err
		}
		return js.DeleteStream(ctx, "NATSTEST_READY")
	})
}

// ClusterURL is the comma-separated client URLs of servers.
func ClusterURL(servers []*server.Server) string {
	urls := make([]string, len(servers))
	for i, s := range servers {
		urls[i] = s.ClientURL()
	}
	return strings.Join(urls, ",")
}
