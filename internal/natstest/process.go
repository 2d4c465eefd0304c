package natstest

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// NATSServerBinary finds the nats-server binary on PATH or in GOPATH/bin (`make nats-server`
// installs it there at the version go.mod pins); "" when it is not installed.
func NATSServerBinary() string {
	if p, err := exec.LookPath("nats-server"); err == nil {
		return p
	}
	out, err := exec.Command("go", "env", "GOPATH").Output()
	if err == nil {
		p := filepath.Join(strings.TrimSpace(string(out)), "bin", "nats-server")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return ""
}

// DeployClusterConfigs are deploy/nats/cluster-*.conf, the three nodes of the production
// cluster, given deploy/nats's path.
func DeployClusterConfigs(deployNATS string) []string {
	confs := make([]string, 3)
	for i := range confs {
		confs[i] = filepath.Join(deployNATS, fmt.Sprintf("cluster-%d.conf", i+1))
	}
	return confs
}

// RunClusterProcesses starts a real cluster of separate nats-server processes (bin), one per
// config file (such as DeployClusterConfigs), each in its own temporary folder (the configs
// keep their data in ./nats-data), and waits until an R<len(confs)> stream can be placed. The
// config files give everything (server and cluster names, JetStream limits) except the ports:
// the client, monitoring and route ports are free ones picked here, passed as command-line
// flags (which override the file), so that runs in parallel do not collide on the fixed ports
// of deploy/nats or join each other's cluster. It returns the servers' client URLs, comma
// separated; the processes are killed when the test ends.
func RunClusterProcesses(t testing.TB, bin string, confs []string) string {
	t.Helper()
	return ProcessesURL(StartClusterProcesses(t, bin, confs))
}

// ServerProcess is one nats-server process of a cluster StartClusterProcesses started.
type ServerProcess struct {
	Name string // its server_name, as a stream info's Cluster.Leader names it
	URL  string // its client URL
	kill func()
}

// Kill kills the process (SIGKILL: no graceful shutdown, as a crash or an OOM kill) and waits
// until it has exited.
func (p *ServerProcess) Kill() { p.kill() }

// ProcessesURL is the comma-separated client URLs of ps.
func ProcessesURL(ps []*ServerProcess) string {
	urls := make([]string, len(ps))
	for i, p := range ps {
		urls[i] = p.URL
	}
	return strings.Join(urls, ",")
}

// StartClusterProcesses is RunClusterProcesses returning a handle on each process, so a test
// can kill one of them.
func StartClusterProcesses(t testing.TB, bin string, confs []string) []*ServerProcess {
	t.Helper()
	n := len(confs)
	procs := make([]*ServerProcess, n)
	ports := freePorts(t, 3*n) // client, monitoring, route per node
	routes := make([]string, n)
	clients := make([]string, n)
	for i := range n {
		routes[i] = fmt.Sprintf("nats-route://127.0.0.1:%d", ports[3*i+2])
		clients[i] = fmt.Sprintf("nats://127.0.0.1:%d", ports[3*i])
	}
	for i, conf := range confs {
		conf, err := filepath.Abs(conf)
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(bin, "-c", conf,
			"-a", "127.0.0.1", "-p", fmt.Sprint(ports[3*i]), "-m", fmt.Sprint(ports[3*i+1]),
			"--cluster", fmt.Sprintf("nats://127.0.0.1:%d", ports[3*i+2]), "--routes", strings.Join(routes, ","))
		cmd.Dir = t.TempDir()
		out := &lockedBuffer{}
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan struct{})
		go func() { _ = cmd.Wait(); close(exited) }()
		kill := func() {
			_ = cmd.Process.Kill()
			<-exited
		}
		procs[i] = &ServerProcess{URL: clients[i], kill: kill}
		t.Cleanup(func() {
			kill()
			if t.Failed() {
				t.Logf("nats-server -c %s:\n%s", conf, out.String())
			}
		})
		// Ready for connections, or failed to start (a port taken meanwhile, a bad config).
		CheckFor(t, 30*time.Second, 20*time.Millisecond, func() error {
			select {
			case <-exited:
				t.Fatalf("nats-server -c %s exited: %v", conf, cmd.ProcessState)
			default:
			}
			c, err := net.Dial("tcp", strings.TrimPrefix(clients[i], "nats://"))
			if err == nil {
				c.Close()
			}
			return err
		})
	}
	for _, p := range procs {
		nc, err := nats.Connect(p.URL)
		if err != nil {
			t.Fatal(err)
		}
		p.Name = nc.ConnectedServerName()
		nc.Close()
	}
	waitPlaceable(t, ProcessesURL(procs), n)
	return procs
}

// freePorts returns n loopback ports free now, all different.
func freePorts(t testing.TB, n int) []int {
	t.Helper()
	ports := make([]int, n)
	lns := make([]net.Listener, n)
	for i := range ports {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns[i], ports[i] = ln, ln.Addr().(*net.TCPAddr).Port
	}
	for _, ln := range lns {
		ln.Close()
	}
	return ports
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
