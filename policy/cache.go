package policy

import (
	"slices"
	"sync"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/topdown"
)

// evalCache holds the values of the rules and function calls of one
// evaluation (a topdown.VirtualCache). OPA's own builds a tree of hash maps
// in each evaluation, a tenth of what a decision with the example policies
// allocates; this one keeps a list per frame, indexed by hash, and is
// reused from one evaluation to the next.
type evalCache struct {
	frames []cacheFrame // frames[len-1] is the active frame
	// terms holds the keys' terms: OPA reuses the slice it passes as a key.
	terms []*ast.Term
}

type cacheFrame struct {
	entries []cacheEntry
	index   map[int]int // a key's hash → its latest entry of that hash
}

type cacheEntry struct {
	key       ast.Ref
	value     *ast.Term
	undefined bool
	prev      int // the entry before it with the same hash, or -1
}

var _ topdown.VirtualCache = (*evalCache)(nil)

// maxCacheEntries bounds the caches kept for reuse: an evaluation that
// filled a larger one gives it back to the garbage collector.
const maxCacheEntries = 4096

var evalCaches = sync.Pool{New: func() any { return newEvalCache() }}

func newEvalCache() *evalCache {
	c := &evalCache{}
	c.Push()
	return c
}

// release empties c and keeps it for the next evaluation.
func (c *evalCache) release() {
	if len(c.terms) > maxCacheEntries*4 || len(c.frames[0].entries) > maxCacheEntries {
		return
	}
	for len(c.frames) > 1 {
		c.Pop()
	}
	c.frames[0].reset()
	clear(c.terms)
	c.terms = c.terms[:0]
	evalCaches.Put(c)
}

func (f *cacheFrame) reset() {
	clear(f.entries)
	f.entries = f.entries[:0]
	clear(f.index)
}

// Push starts a new, empty frame.
func (c *evalCache) Push() {
	if len(c.frames) < cap(c.frames) {
		c.frames = c.frames[:len(c.frames)+1]
		return
	}
	c.frames = append(c.frames, cacheFrame{index: map[int]int{}})
}

// Pop drops the active frame and its entries.
func (c *evalCache) Pop() {
	c.frames[len(c.frames)-1].reset()
	c.frames = c.frames[:len(c.frames)-1]
}

func (c *evalCache) find(ref ast.Ref) (*cacheEntry, int) {
	f := &c.frames[len(c.frames)-1]
	h := ref.Hash()
	i, ok := f.index[h]
	for ok && i >= 0 {
		if e := &f.entries[i]; e.key.Equal(ref) {
			return e, h
		}
		i = f.entries[i].prev
	}
	return nil, h
}

// Get returns the value cached for ref in the active frame: (value,
// false), (nil, true) when ref is known to be undefined, or (nil, false)
// when nothing is cached.
func (c *evalCache) Get(ref ast.Ref) (*ast.Term, bool) {
	e, _ := c.find(ref)
	if e == nil {
		return nil, false
	}
	return e.value, e.undefined
}

// Put caches value for ref in the active frame; a nil value marks ref
// undefined.
func (c *evalCache) Put(ref ast.Ref, value *ast.Term) {
	e, h := c.find(ref)
	if e == nil {
		start := len(c.terms)
		c.terms = append(c.terms, ref...)
		f := &c.frames[len(c.frames)-1]
		prev, ok := f.index[h]
		if !ok {
			prev = -1
		}
		f.entries = append(f.entries, cacheEntry{key: c.terms[start:len(c.terms):len(c.terms)], prev: prev})
		f.index[h] = len(f.entries) - 1
		e = &f.entries[len(f.entries)-1]
	}
	if value != nil {
		e.value = value
	} else {
		e.undefined = true
	}
}

// Keys returns the refs with a value in the active frame.
func (c *evalCache) Keys() []ast.Ref {
	var keys []ast.Ref
	for _, e := range c.frames[len(c.frames)-1].entries {
		if e.value != nil {
			keys = append(keys, slices.Clone(e.key)) // release clears c.terms
		}
	}
	return keys
}
