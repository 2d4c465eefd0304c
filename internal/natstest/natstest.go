// Package natstest runs real embedded NATS servers for tests, as nats.go's own tests do, and
// waits for conditions by polling instead of sleeping.
package natstest

import (
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	natsserver "github.com/nats-io/nats-server/v2/test"
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
