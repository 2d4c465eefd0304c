package dlq

import (
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
)

// headerSize is what the server counts against max_payload: the NATS/1.0 block with each
// "Key: value" line and the closing blank line.
func TestHeaderSize(t *testing.T) {
	if n := headerSize(nil); n != 0 {
		t.Fatalf("no headers: %d", n)
	}
	hdr := nats.Header{"Orders-Error-Reason": {"invalid_payload"}, "A": {"1", "22"}}
	want := len("NATS/1.0\r\n") + len("Orders-Error-Reason: invalid_payload\r\n") + len("A: 1\r\n") + len("A: 22\r\n") + len("\r\n")
	if n := headerSize(hdr); n != want {
		t.Fatalf("headerSize %d, want %d", n, want)
	}
	if n := headerSize(nats.Header{"K": {strings.Repeat("v", 1000)}}); n != 10+1+2+1000+2+2 {
		t.Fatalf("one long header: %d", n)
	}
}
