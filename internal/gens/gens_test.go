package gens

import "testing"

func TestMap(t *testing.T) {
	g := Map[int, string]{Limit: 3}
	for i := range 3 {
		g.Put(i, "v", 1)
	}
	g.Put(3, "v", 1) // 0..2 become the old generation
	if _, ok := g.Get(0); !ok {
		t.Fatal("an entry of the old generation is lost")
	}
	// 0 moved to the current generation with 3; 1 and 2 go with the next turn.
	g.Put(4, "v", 1)
	g.Put(5, "v", 1)
	for k, want := range map[int]bool{0: true, 1: false, 2: false, 3: true, 4: true, 5: true} {
		if _, ok := g.Get(k); ok != want {
			t.Errorf("get(%d) found %v, want %v", k, ok, want)
		}
	}
	g.Delete(3)
	g.DeleteFunc(func(k int, _ string) bool { return k == 4 })
	if _, ok := g.Get(3); ok {
		t.Error("deleted entry found")
	}
	if _, ok := g.Get(4); ok {
		t.Error("entry deleted by deleteFunc found")
	}
	g.Clear()
	if _, ok := g.Get(0); ok {
		t.Error("entry found after clear")
	}
}

// TestGenerationsPeek: peek finds entries of either generation, says which,
// and moves none.
func TestMapPeek(t *testing.T) {
	g := Map[int, string]{Limit: 2}
	g.Put(1, "one", 1)
	g.Put(2, "two", 1)
	g.Put(3, "three", 1) // 1 and 2 become the old generation
	for k, want := range map[int][3]any{1: {"one", true, true}, 3: {"three", true, false}, 9: {"", false, false}} {
		if v, ok, old := g.Peek(k); v != want[0] || ok != want[1] || old != want[2] {
			t.Errorf("peek(%d) = %q, %v, %v; want %v", k, v, ok, old, want)
		}
	}
	if _, _, old := g.Peek(1); !old {
		t.Error("peek moved an entry to the current generation")
	}
}
