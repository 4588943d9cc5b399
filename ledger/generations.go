package ledger

// generations is a map bounded by forgetting in bulk: entries go into the
// current generation, and when it reaches limit (counted by the costs given
// to put) it becomes the old one and the older one is dropped. A lookup
// that finds an entry in the old generation moves it to the current one.
// It keeps between limit and 2·limit of cost, with no per-entry bookkeeping.
// It is not safe for concurrent use: its owner locks.
type generations[K comparable, V any] struct {
	cur, old map[K]V
	size     int
	limit    int
}

func (g *generations[K, V]) get(k K) (V, bool) {
	if v, ok := g.cur[k]; ok {
		return v, true
	}
	v, ok := g.old[k]
	if ok {
		g.put(k, v, 1)
	}
	return v, ok
}

// peek is get without moving an entry: it also says whether k is in the
// old generation (then get would move it).
func (g *generations[K, V]) peek(k K) (v V, ok, old bool) {
	if v, ok := g.cur[k]; ok {
		return v, true, false
	}
	v, ok = g.old[k]
	return v, ok, ok
}

func (g *generations[K, V]) put(k K, v V, cost int) {
	if g.cur == nil || g.size+cost > g.limit {
		g.old, g.cur, g.size = g.cur, make(map[K]V, min(g.limit, 1024)), 0
	}
	g.cur[k] = v
	g.size += cost
}

func (g *generations[K, V]) delete(k K) {
	delete(g.cur, k)
	delete(g.old, k)
}

// deleteFunc deletes the entries for which del returns true.
func (g *generations[K, V]) deleteFunc(del func(K, V) bool) {
	for _, m := range []map[K]V{g.cur, g.old} {
		for k, v := range m {
			if del(k, v) {
				delete(m, k)
			}
		}
	}
}

func (g *generations[K, V]) clear() { g.cur, g.old, g.size = nil, nil, 0 }
