// Package door admits values to a cache on their second sight: caches of
// content (scan results, compressed forms) are worth an entry only for
// content that repeats, as agents' system prompts and history do, and
// unique content should cost them no copy and no insert.
package door

import (
	"cmp"
	"hash/maphash"
	"sync"
	"sync/atomic"
)

// Keeper remembers the hashes of recently seen values, one per slot, so a
// value repeated within about as many others as it has slots is recognised.
// Both answers may be wrong when two values' hashes share a slot: a cache
// using it must not depend on them for correctness. Set Slots (default
// 1<<16); the slots are allocated on first use, so a Keeper can be a field
// of a zero-value cache. It is safe for concurrent use, without locks.
type Keeper struct {
	Slots int

	once  sync.Once
	seed  maphash.Seed
	slots []atomic.Uint64
}

// Again reports whether s was seen before, and notes that it was seen.
func (k *Keeper) Again(s string) bool {
	k.init()
	return k.again(maphash.String(k.seed, s))
}

// AgainBytes is Again for a byte slice.
func (k *Keeper) AgainBytes(b []byte) bool {
	k.init()
	return k.again(maphash.Bytes(k.seed, b))
}

func (k *Keeper) init() {
	k.once.Do(func() {
		k.seed = maphash.MakeSeed()
		k.slots = make([]atomic.Uint64, cmp.Or(k.Slots, 1<<16))
	})
}

func (k *Keeper) again(h uint64) bool {
	return k.slots[h%uint64(len(k.slots))].Swap(h) == h
}
