package bench

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// watermillPeer is phase g: the same work as the bare loop and the service, done by a Watermill
// peer (router with Recoverer, CorrelationID and Retry; watermill-nats JetStream subscriber, 64
// in a queue group, and publisher; the service's own signed Kuaishou client). The peer is its own
// module in ./watermill, built and run here as a process, as the service is. It returns its row
// its rate; round names its orders.
func (r *rig) watermillPeer(n, round int) float64 {
	var mu sync.Mutex
	var failures []string
	stop, _ := r.startWatermill(r.watermillBin(), 200, func(line string) {
		mu.Lock()
		failures = append(failures, line)
		mu.Unlock()
	})
	defer stop()

	orders := r.orders(fmt.Sprintf("wm%d", round), n, 200)
	before := r.streamMsgs("WM_STATUS")
	start := time.Now()
	r.publishAll("wm.query.kuaishou.payment", orders)
	// r.waitFor's poll, but a failure the peer reports ends the wait at once.
	deadline := start.Add(120 * time.Second)
	for {
		if r.streamMsgs("WM_STATUS") >= before+uint64(n) {
			break
		}
		mu.Lock()
		failed := append([]string(nil), failures...)
		mu.Unlock()
		if len(failed) > 0 {
			r.t.Fatalf("the watermill peer gave up on %d requests (WM_STATUS holds %d of %d); first: %s",
				len(failed), r.streamMsgs("WM_STATUS"), n, failed[0])
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("WM_STATUS holds %d of %d after 120s", r.streamMsgs("WM_STATUS"), n)
		}
		time.Sleep(2 * time.Millisecond)
	}
	end := time.Now()
	return float64(n) / end.Sub(start).Seconds()
}

// watermillBin builds the Watermill peer once and returns its path.
func (r *rig) watermillBin() string {
	bin := filepath.Join(r.dir, "watermill-peer")
	if _, err := os.Stat(bin); err != nil {
		build := exec.Command("go", "build", "-o", bin, ".")
		build.Dir = "watermill"
		if out, err := build.CombinedOutput(); err != nil {
			r.t.Fatalf("go build (watermill peer): %v\n%s", err, out)
		}
	}
	return bin
}

// startWatermill starts the Watermill peer bin for apps apps on r's server and returns once it
// prints "ready"; each "failed: ..." line it prints after, one per request it gave up on, goes
// to failed (nil: ignored). stop interrupts it and waits for it to end; pid is its process.
func (r *rig) startWatermill(bin string, apps int, failed func(line string)) (stop func(), pid int) {
	cmd := exec.Command(bin, "-nats", r.url, "-provider-url", r.sb.URL(), "-apps", fmt.Sprint(apps),
		"-concurrency", fmt.Sprint(concurrency), "-subject-in", "wm.query.>", "-stream-in", "WM_QUERY",
		"-status-prefix", "wm.status", "-stream-out", "WM_STATUS")
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		r.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		r.t.Fatal(err)
	}
	stop = func() {
		_ = cmd.Process.Signal(os.Interrupt)
		_ = cmd.Wait()
	}
	ready := make(chan struct{})
	go func() {
		s := bufio.NewScanner(stdout)
		for s.Scan() {
			switch line := s.Text(); {
			case line == "ready":
				close(ready)
			case strings.HasPrefix(line, "failed: ") && failed != nil:
				failed(line)
			}
		}
	}()
	select {
	case <-ready:
	case <-time.After(30 * time.Second):
		stop()
		r.t.Fatal("the watermill peer did not print ready within 30s")
	}
	return stop, cmd.Process.Pid
}
