package events

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"
)

// EventID is the deterministic id of an order's transition: the order (provider, kind, app_id,
// order key) and the transition's number for that order, from 1. A redelivered request that
// records the same transition gives the same id, so JetStream's duplicate window drops the
// second copy; an order that goes A -> B -> A has three transitions and three ids. It is the
// hex of the first 16 bytes of SHA-256 over the fields, each ended by a 0x1f unit separator so
// that no two field lists share an input.
func EventID(provider, kind, appID, orderKey string, transition uint64) string {
	h := sha256.New()
	for _, f := range [...]string{provider, kind, appID, orderKey, strconv.FormatUint(transition, 10)} {
		h.Write([]byte(f))
		h.Write([]byte{0x1f})
	}
	var sum [sha256.Size]byte
	return hex.EncodeToString(h.Sum(sum[:0])[:16])
}
