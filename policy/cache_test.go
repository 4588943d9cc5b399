package policy

import (
	"fmt"
	"slices"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/topdown"
)

// TestEvalCache: evalCache answers as OPA's own VirtualCache does, through
// frames, undefined values, keys whose hashes collide, keys whose slice
// OPA reuses, and reuse after release.
func TestEvalCache(t *testing.T) {
	ours, theirs := newEvalCache(), topdown.NewVirtualCache()
	ref := ast.MustParseRef
	call := func(f string, args ...*ast.Term) ast.Ref { // the key of a function call: the function and its arguments
		return append(ast.Ref{ast.NewTerm(ref(f))}, args...)
	}
	refs := []ast.Ref{
		ref("data.a.b"), ref("data.b.a"), // the same hash: a Ref's hash is the sum of its terms'
		ref("data.a"), ref("data.a.b.c"),
		call("data.f", ast.StringTerm("x"), ast.IntNumberTerm(1)), call("data.f", ast.StringTerm("x"), ast.IntNumberTerm(2)),
		ref("data.u"),
	}
	check := func(step string) {
		t.Helper()
		for _, r := range refs {
			v1, u1 := ours.Get(r)
			v2, u2 := theirs.Get(r)
			if !v1.Equal(v2) || u1 != u2 {
				t.Errorf("%s: Get(%v) = %v, %v; OPA's cache gives %v, %v", step, r, v1, u1, v2, u2)
			}
		}
		k1, k2 := fmt.Sprint(sortedRefs(ours.Keys())), fmt.Sprint(sortedRefs(theirs.Keys()))
		if k1 != k2 {
			t.Errorf("%s: Keys() = %s; OPA's cache gives %s", step, k1, k2)
		}
	}
	put := func(r ast.Ref, v *ast.Term) {
		key := slices.Clone(r) // as OPA does, pass a slice it changes afterwards
		ours.Put(key, v)
		theirs.Put(r, v)
		clear(key)
	}
	check("empty")
	put(refs[0], ast.StringTerm("ab"))
	put(refs[1], ast.StringTerm("ba"))
	put(refs[3], ast.IntNumberTerm(3))
	put(refs[4], ast.BooleanTerm(true))
	put(refs[6], nil)
	check("filled")
	put(refs[0], ast.StringTerm("ab again"))
	check("replaced")
	ours.Push()
	theirs.Push()
	check("pushed")
	put(refs[5], ast.BooleanTerm(false))
	put(refs[1], ast.StringTerm("ba inner"))
	check("filled inner frame")
	ours.Pop()
	theirs.Pop()
	check("popped")

	ours.release()
	ours, theirs = evalCaches.Get().(*evalCache), topdown.NewVirtualCache()
	check("released")
	put(refs[1], ast.StringTerm("ba"))
	check("reused")
}

func sortedRefs(refs []ast.Ref) []string {
	s := make([]string, len(refs))
	for i, r := range refs {
		s[i] = r.String()
	}
	slices.Sort(s)
	return s
}
