package events

import (
	"crypto/sha256"
	"encoding/hex"
)

// EventID is the deterministic id of a status change: the same observation of the same order
// always gives the same id, so JetStream's duplicate window drops a second copy published after
// a redelivery. It is the hex of the first 16 bytes of SHA-256 over the fields, each ended by a
// 0x1f unit separator so that no two field lists share an input.
func EventID(provider, kind, appID, orderKey string, status Status, providerStatus string) string {
	h := sha256.New()
	for _, f := range [...]string{provider, kind, appID, orderKey, string(status), providerStatus} {
		h.Write([]byte(f))
		h.Write([]byte{0x1f})
	}
	var sum [sha256.Size]byte
	return hex.EncodeToString(h.Sum(sum[:0])[:16])
}
