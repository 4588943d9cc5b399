// Package door admits values to a cache on their second sight: caches of
// content (scan results, compressed forms) are worth an entry only for
// content that repeats, as agents' system prompts and history do, and
// unique content should cost them no copy and no insert.
package door

import (
	"hash/maphash"
	"sync/atomic"
)

// Keeper remembers the hashes of recently seen values, one per slot, so a
// value repeated within about as many others as it has slots is recognised.
// Both answers may be wrong when two values' hashes share a slot: a cache
// using it must not depend on them for correctness. It is safe for
// concurrent use, without locks.
type Keeper struct {
	seed  maphash.Seed
	slots []atomic.Uint64
}

// New returns a Keeper of n slots.
func New(n int) *Keeper {
	return &Keeper{seed: maphash.MakeSeed(), slots: make([]atomic.Uint64, n)}
}

// Again reports whether s was seen before, and notes that it was seen.
func (k *Keeper) Again(s string) bool { return k.again(maphash.String(k.seed, s)) }

// AgainBytes is Again for a byte slice.
func (k *Keeper) AgainBytes(b []byte) bool { return k.again(maphash.Bytes(k.seed, b)) }

func (k *Keeper) again(h uint64) bool {
	return k.slots[h%uint64(len(k.slots))].Swap(h) == h
}
