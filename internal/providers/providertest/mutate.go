package providertest

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// mutationBytes are what Mutate inserts: JSON's own characters, and some that break it
// (invalid UTF-8, a control character, escapes' letters).
var mutationBytes = []byte("{}[]\":,\\ \t\n0123456789.-+eEtrufalsn/bu\x00\x1f\x7f\xc3\xa9\xff\xed\xa0\x80")

// Mutate returns a copy of seed with one to three random edits of the kinds that make a
// decoder's paths part: a byte deleted, replaced or inserted, a piece repeated or cut short, a
// letter's case changed (encoding/json matches a struct's fields in any case).
func Mutate(rng *rand.Rand, seed []byte) []byte {
	b := slices.Clone(seed)
	for range 1 + rng.IntN(3) {
		if len(b) == 0 {
			b = append(b, mutationBytes[rng.IntN(len(mutationBytes))])
			continue
		}
		i := rng.IntN(len(b))
		switch rng.IntN(6) {
		case 0:
			b = slices.Delete(b, i, i+1)
		case 1:
			b[i] = mutationBytes[rng.IntN(len(mutationBytes))]
		case 2:
			b = slices.Insert(b, i, mutationBytes[rng.IntN(len(mutationBytes))])
		case 3:
			j := i + rng.IntN(min(len(b)-i, 16)+1)
			b = slices.Insert(b, j, b[i:j]...)
		case 4:
			b = b[:i]
		case 5:
			if c := b[i]; c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' {
				b[i] ^= 0x20
			}
		}
	}
	return b
}

// CheckMutations calls check on every seed and on n random mutations of each (Mutate, from a
// fixed seed: the same ones every run), 3 of each under -short.
func CheckMutations(t *testing.T, seeds [][]byte, n int, check func(text []byte)) {
	t.Helper()
	if testing.Short() {
		n = min(n, 3)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for _, seed := range seeds {
		check(seed)
		for range n {
			check(Mutate(rng, seed))
		}
	}
}
