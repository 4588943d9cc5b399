package postings

import (
	"bytes"
	"cmp"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/infertrail/infertrail"
)

// TestCheck names the posting and the field at fault.
func TestCheck(t *testing.T) {
	for _, c := range []struct {
		ps   []infertrail.Posting
		want string
	}{
		{[]infertrail.Posting{{Key: "a=1", Seq: 0}, {Key: "", Seq: 1}}, "posting 1: field key"},
		{[]infertrail.Posting{{Key: strings.Repeat("k", infertrail.MaxIndexKey+1), Seq: 1}}, "posting 0: field key"},
		{[]infertrail.Posting{{Key: "a=1", Seq: -1}}, "posting 0: field seq"},
		{[]infertrail.Posting{{Key: "a=1", Seq: 1}, {Key: "\x01" + strings.Repeat("k", TagLen), Seq: 2}}, "posting 1: field key: begins with byte 0x1"},
	} {
		err := Check(c.ps)
		if err == nil || !strings.Contains(err.Error(), c.want) || !errors.Is(err, infertrail.ErrInvalid) {
			t.Errorf("Check = %v, want an ErrInvalid naming %q", err, c.want)
		}
	}
	if err := Check([]infertrail.Posting{{Key: "a=1", Seq: 0}}); err != nil {
		t.Errorf("Check of a good posting: %v", err)
	}
}

// TestSort: postings in (key, seq) order without repeats, whatever their
// order in, the first of repeated postings kept.
func TestSort(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for n := range 200 {
		var ps []infertrail.Posting
		for range rng.IntN(300) {
			ps = append(ps, infertrail.Posting{Key: fmt.Sprintf("term=%d", rng.IntN(1+n)), Seq: int64(rng.IntN(20)),
				DataKey: infertrail.KeyID{byte(rng.IntN(3))}})
		}
		if n%2 == 0 {
			slices.SortStableFunc(ps, func(a, b infertrail.Posting) int { return cmp.Compare(a.Seq, b.Seq) })
		}
		got := Sort(ps)
		// The reference: a stable sort of every posting, then the first of
		// each (key, seq).
		want := slices.Clone(ps)
		slices.SortStableFunc(want, func(a, b infertrail.Posting) int {
			return cmp.Or(strings.Compare(a.Key, b.Key), cmp.Compare(a.Seq, b.Seq))
		})
		want = slices.CompactFunc(want, func(a, b infertrail.Posting) bool { return a.Key == b.Key && a.Seq == b.Seq })
		if !slices.Equal(got, want) {
			t.Fatalf("case %d: Sort of %d postings =\n%v\nwant\n%v", n, len(ps), got, want)
		}
	}
	if got := Sort(nil); len(got) != 0 {
		t.Errorf("Sort(nil) = %v", got)
	}
}

// BenchmarkSort sorts a step of the indexer: 16,384 postings of 60
// records of agent traffic, about 270 each, over 4,000 distinct keys.
//
//	go test ./store/internal/postings -run '^$' -bench Sort -count 5
func BenchmarkSort(b *testing.B) {
	rng := rand.New(rand.NewPCG(5, 6))
	var ps []infertrail.Posting
	for seq := int64(0); len(ps) < 16384; seq++ {
		for range 270 {
			ps = append(ps, infertrail.Posting{Key: fmt.Sprintf("term=%016x00000000", rng.IntN(4000)*2654435761), Seq: seq})
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		Sort(ps)
	}
}

// TestAppendTag: a term key in investigate.Terms' form gives the first
// StoredTagLen bytes of its tag, any other key nothing.
func TestAppendTag(t *testing.T) {
	for k, ok := range map[string]bool{
		"term=0123456789abcdef01234567": true, "term=ffffffffffffffffffffffff": true,
		"term=0123456789ABCDEF01234567": false, "term=0123456789abcdef0123456": false,
		"term=0123456789abcdef0123456g": false, "term=word": false, "tool=0123456789abcdef01234567": false,
	} {
		tag, got := AppendTag([]byte("x"), k)
		switch {
		case got != ok:
			t.Errorf("AppendTag(%q): %v, want %v", k, got, ok)
		case ok && (len(tag) != 1+StoredTagLen || hex.EncodeToString(tag[1:]) != k[5:5+2*StoredTagLen]):
			t.Errorf("AppendTag(%q) = %x", k, tag)
		case !ok && string(tag) != "x":
			t.Errorf("AppendTag(%q) appended %x though it failed", k, tag[1:])
		}
	}
}

// TestPack: packed keys share one buffer, and those returned before stay
// as they were when it grows; a key that is not a term key leaves it as
// it is. Packed keys keep the order of the keys.
func TestPack(t *testing.T) {
	var buf []byte
	var got [][]byte
	for i := range 100 {
		b, ok := Pack(&buf, fmt.Sprintf("term=%016x%08x", i, 99-i))
		if !ok || len(b) != StoredLen || b[0] != TagTerms {
			t.Fatalf("Pack of key %d: %x, %v", i, b, ok)
		}
		got = append(got, b)
		if _, ok := Pack(&buf, "model=m"); ok {
			t.Fatal("Pack of model=m succeeded")
		}
	}
	for i, b := range got {
		if tag := hex.EncodeToString(b[1:]); tag != fmt.Sprintf("%016x", i) {
			t.Errorf("key %d packed holds %s", i, tag)
		}
		if i > 0 && bytes.Compare(got[i-1], b) >= 0 {
			t.Errorf("keys %d and %d packed out of order", i-1, i)
		}
	}
	if len(buf) != 100*StoredLen {
		t.Errorf("%d bytes in the buffer, want %d", len(buf), 100*StoredLen)
	}
}

func TestBlocks(t *testing.T) {
	ps := Sort([]infertrail.Posting{
		{Key: "a", Seq: 0}, {Key: "a", Seq: 63}, {Key: "a", Seq: 64}, {Key: "b", Seq: 5},
		{Key: "a", Seq: 200}, {Key: "b", Seq: 7}, {Key: "a", Seq: 63},
	})
	got := Blocks(ps)
	top := uint64(1) << 63
	want := []Block{
		{Key: "a", Block: 0, Bits: int64(top | 1)},
		{Key: "a", Block: 1, Bits: 1},
		{Key: "a", Block: 3, Bits: 1 << 8},
		{Key: "b", Block: 0, Bits: 1<<5 | 1<<7},
	}
	if !slices.Equal(got, want) {
		t.Fatalf("Blocks = %+v, want %+v", got, want)
	}
	if seqs := AppendSeqs(nil, 0, got[0].Bits, 0, 1<<62); !slices.Equal(seqs, []int64{63, 0}) {
		t.Errorf("AppendSeqs of block 0 = %v, want [63 0]", seqs)
	}
	if seqs := AppendSeqs(nil, 0, got[3].Bits|got[0].Bits, 1, 63); !slices.Equal(seqs, []int64{7, 5}) {
		t.Errorf("AppendSeqs in [1, 63) = %v, want [7 5]", seqs)
	}
	if seqs := AppendSeqs([]int64{9}, 3, got[2].Bits, 0, 200); !slices.Equal(seqs, []int64{9}) {
		t.Errorf("AppendSeqs below 200 = %v, want only what was there", seqs)
	}
	for _, c := range []struct{ floor, before, lo, hi int64 }{{0, 1, 0, 0}, {0, 64, 0, 0}, {0, 65, 0, 1}, {64, 128, 1, 1}, {63, 129, 0, 2}} {
		if lo, hi := BlockRange(c.floor, c.before); lo != c.lo || hi != c.hi {
			t.Errorf("BlockRange(%d, %d) = %d, %d; want %d, %d", c.floor, c.before, lo, hi, c.lo, c.hi)
		}
	}
	// Every sequence number comes back from its block and bit.
	for seq := int64(0); seq < 300; seq++ {
		b, bit := BlockOf(seq)
		if got := AppendSeqs(nil, b, bit, 0, 1<<62); !slices.Equal(got, []int64{seq}) {
			t.Fatalf("seq %d: block %d bit %x gives %v", seq, b, bit, got)
		}
	}
}

func TestNextPage(t *testing.T) {
	for _, c := range []struct {
		last, blocks, found, need int
		want                      int
	}{
		{8, 8, 8, 92, 116}, // one a block: 92 more blocks and a quarter
		{8, 8, 500, 10, 8}, // dense: the smallest page
		{8, 8, 0, 100, 32}, // none yet: four times the last
		{512, 1000, 0, 100, MaxPage},
		{16, 24, 3, 97, 971}, // few answers: what they take
		{512, 512, 1, 1000, MaxPage},
	} {
		if got := NextPage(c.last, c.blocks, c.found, c.need); got != c.want {
			t.Errorf("NextPage(%d, %d, %d, %d) = %d, want %d", c.last, c.blocks, c.found, c.need, got, c.want)
		}
	}
}
