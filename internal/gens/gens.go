// Package gens holds a map bounded by forgetting in bulk, for the caches
// of the log and the index.
package gens

// Map is a map bounded by forgetting in bulk: entries go into the
// current generation, and when it reaches Limit (counted by the costs given
// to Put) it becomes the old one and the older one is dropped. A lookup
// that finds an entry in the old generation moves it to the current one.
// It keeps between Limit and 2·Limit of cost, with no per-entry bookkeeping.
// It is not safe for concurrent use: its owner locks.
type Map[K comparable, V any] struct {
	cur, old map[K]V
	size     int
	// Limit is the cost a generation holds.
	Limit int
	// Cost, if set, gives an entry's cost when Get moves it to the current
	// generation; otherwise it counts 1.
	Cost func(V) int
}

// Get returns the entry of k, moving it to the current generation.
func (g *Map[K, V]) Get(k K) (V, bool) {
	if v, ok := g.cur[k]; ok {
		return v, true
	}
	v, ok := g.old[k]
	if ok {
		cost := 1
		if g.Cost != nil {
			cost = g.Cost(v)
		}
		g.Put(k, v, cost)
	}
	return v, ok
}

// Peek is Get without moving an entry: it also says whether k is in the
// old generation (then Get would move it).
func (g *Map[K, V]) Peek(k K) (v V, ok, old bool) {
	if v, ok := g.cur[k]; ok {
		return v, true, false
	}
	v, ok = g.old[k]
	return v, ok, ok
}

// Put sets the entry of k, of the given cost, in the current generation.
func (g *Map[K, V]) Put(k K, v V, cost int) {
	if g.cur == nil || g.size+cost > g.Limit {
		g.old, g.cur, g.size = g.cur, make(map[K]V, min(g.Limit, 1024)), 0
	}
	g.cur[k] = v
	g.size += cost
}

// Delete deletes the entry of k.
func (g *Map[K, V]) Delete(k K) {
	delete(g.cur, k)
	delete(g.old, k)
}

// DeleteFunc deletes the entries for which del returns true.
func (g *Map[K, V]) DeleteFunc(del func(K, V) bool) {
	for _, m := range []map[K]V{g.cur, g.old} {
		for k, v := range m {
			if del(k, v) {
				delete(m, k)
			}
		}
	}
}

// Clear deletes every entry.
func (g *Map[K, V]) Clear() { g.cur, g.old, g.size = nil, nil, 0 }
