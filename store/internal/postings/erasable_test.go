package postings

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"testing"

	"github.com/infertrail/infertrail"
)

// TestErasable: the blocks of each data key's records, in (key, block)
// order, and each block's stored keys of content, in order and without
// repeats; postings of the leaf (no data key) add nothing.
func TestErasable(t *testing.T) {
	k1, k2 := infertrail.KeyID{1}, infertrail.KeyID{2}
	term := func(i int) string { return fmt.Sprintf("term=%016x00000000", i) }
	ps := Sort([]infertrail.Posting{
		{Key: term(2), Seq: 5, DataKey: k2}, {Key: "model=m", Seq: 5}, {Key: "model=m", Seq: 70},
		{Key: term(1), Seq: 5, DataKey: k2}, {Key: term(1), Seq: 3, DataKey: k1},
		{Key: "term=word", Seq: 3, DataKey: k1}, {Key: term(1), Seq: 64, DataKey: k1},
		{Key: term(3), Seq: 127, DataKey: k1}, {Key: term(1), Seq: 3, DataKey: k1}, // a repeat
	})
	owners, lists := Erasable(ps)
	wantOwners := []KeyBlock{{k1, 0, 1 << 3}, {k1, 1, 1 | -1<<63}, {k2, 0, 1 << 5}}
	if !reflect.DeepEqual(owners, wantOwners) {
		t.Errorf("owners = %v, want %v", owners, wantOwners)
	}
	wantLists := []BlockList{
		{0, []string{Stored(term(1)), Stored(term(2)), "term=word"}},
		{1, []string{Stored(term(1)), Stored(term(3))}},
	}
	if !reflect.DeepEqual(lists, wantLists) {
		t.Errorf("lists = %+v, want %+v", lists, wantLists)
	}
	if len(Stored(term(1))) != StoredLen || Stored("term=word") != "term=word" {
		t.Errorf("Stored: %q, %q", Stored(term(1)), Stored("term=word"))
	}
	if o, l := Erasable([]infertrail.Posting{{Key: "model=m", Seq: 1}}); len(o) != 0 || len(l) != 0 {
		t.Errorf("Erasable of leaf postings = %v, %v; want nothing", o, l)
	}
}

// TestList: a list of stored keys reads back as written, a term key in
// StoredLen bytes; a damaged one is an error that says so and where.
func TestList(t *testing.T) {
	keys := []string{Stored(fmt.Sprintf("term=%016x00000000", 7)), Stored(fmt.Sprintf("term=%016x00000000", 9)), "\x00odd", "model=m", "term=word"}
	b := AppendList(nil, keys)
	if len(b) != 2*StoredLen+3*2+len("\x00odd")+len("model=m")+len("term=word") {
		t.Errorf("%d bytes encoded", len(b))
	}
	got, err := ParseList(b)
	if err != nil || !slices.Equal(got, keys) {
		t.Fatalf("ParseList = %q, %v; want %q", got, err, keys)
	}
	if got, err := ParseList(nil); err != nil || len(got) != 0 {
		t.Errorf("ParseList(nil) = %q, %v", got, err)
	}
	for name, bad := range map[string][]byte{
		"a term key cut short":  b[:StoredLen-1],
		"a length past the end": append(AppendList(nil, keys[:1]), 0, 9, 'a'),
		"a zero length":         {0, 0},
		"no length":             {0},
		"an unknown form":       {0x02, 1, 2},
	} {
		if _, err := ParseList(bad); !errors.Is(err, ErrDamagedList) {
			t.Errorf("%s: %v, want ErrDamagedList", name, err)
		}
	}
}

// TestMerge: the union of two ordered lists, in order, without repeats.
func TestMerge(t *testing.T) {
	for _, c := range []struct{ a, b, want []string }{
		{nil, nil, []string{}},
		{[]string{"a", "c"}, []string{"b", "c", "d"}, []string{"a", "b", "c", "d"}},
		{[]string{"b"}, nil, []string{"b"}},
		{nil, []string{"a", "b"}, []string{"a", "b"}},
	} {
		if got := Merge(c.a, c.b); !slices.Equal(got, c.want) {
			t.Errorf("Merge(%q, %q) = %q, want %q", c.a, c.b, got, c.want)
		}
	}
}
