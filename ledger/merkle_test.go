package ledger

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"testing"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/tlog"
)

// rfc6962Vectors is testdata/rfc6962.json.
type rfc6962Vectors struct {
	Leaves    []string `json:"leaves"`
	Roots     []string `json:"roots"`
	Inclusion []struct {
		Index int64    `json:"index"`
		Size  int64    `json:"size"`
		Path  []string `json:"path"`
	} `json:"inclusion"`
	Consistency []struct {
		Size1 int64    `json:"size1"`
		Size2 int64    `json:"size2"`
		Path  []string `json:"path"`
	} `json:"consistency"`
}

func loadVectors(tb testing.TB) (*rfc6962Vectors, *memLog) {
	tb.Helper()
	b, err := os.ReadFile("testdata/rfc6962.json")
	if err != nil {
		tb.Fatal(err)
	}
	var v rfc6962Vectors
	if err := json.Unmarshal(b, &v); err != nil {
		tb.Fatalf("parse testdata/rfc6962.json: %v", err)
	}
	l := &memLog{}
	for _, s := range v.Leaves {
		l.append(tb, mustHex(tb, s))
	}
	return &v, l
}

func mustHex(tb testing.TB, s string) []byte {
	tb.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func hexPath(hs []tlog.Hash) []string {
	out := []string{}
	for _, h := range hs {
		out = append(out, hex.EncodeToString(h[:]))
	}
	return out
}

func TestRFC6962Vectors(t *testing.T) {
	v, l := loadVectors(t)
	for size, want := range v.Roots {
		t.Run(fmt.Sprintf("root/%d", size), func(t *testing.T) {
			if got := l.root(t, int64(size)); hex.EncodeToString(got[:]) != want {
				t.Errorf("tlog.TreeHash(%d) = %x, want %s", size, got, want)
			}
			var f frontier
			for _, e := range l.entries[:size] {
				f.append(tlog.RecordHash(e))
			}
			if got := f.root(); hex.EncodeToString(got[:]) != want {
				t.Errorf("frontier root(%d) = %x, want %s", size, got, want)
			}
		})
	}
	for _, tt := range v.Inclusion {
		t.Run(fmt.Sprintf("inclusion/%d/%d", tt.Index, tt.Size), func(t *testing.T) {
			p, err := tlog.ProveRecord(tt.Size, tt.Index, l)
			if err != nil {
				t.Fatal(err)
			}
			if got := fmt.Sprint(hexPath(p)); got != fmt.Sprint(tt.Path) {
				t.Errorf("ProveRecord = %v, want %v", got, tt.Path)
			}
		})
	}
	for _, tt := range v.Consistency {
		t.Run(fmt.Sprintf("consistency/%d/%d", tt.Size1, tt.Size2), func(t *testing.T) {
			p, err := tlog.ProveTree(tt.Size2, tt.Size1, l)
			if err != nil {
				t.Fatal(err)
			}
			if got := fmt.Sprint(hexPath(p)); got != fmt.Sprint(tt.Path) {
				t.Errorf("ProveTree = %v, want %v", got, tt.Path)
			}
		})
	}
}

func byteSlices(hs []tlog.Hash) [][]byte {
	out := make([][]byte, len(hs))
	for i := range hs {
		out[i] = hs[i][:]
	}
	return out
}

// checkProofs checks the inclusion proof of index in size and the consistency
// proof from index+1 to size, made by x/mod/sumdb/tlog, with the independent
// verifier of github.com/transparency-dev/merkle.
func checkProofs(t *testing.T, l *memLog, roots map[int64]tlog.Hash, index, size int64) {
	t.Helper()
	root := roots[size]
	p, err := tlog.ProveRecord(size, index, l)
	if err != nil {
		t.Fatalf("ProveRecord(%d, %d): %v", size, index, err)
	}
	leaf := rfc6962.DefaultHasher.HashLeaf(l.entries[index])
	if err := proof.VerifyInclusion(rfc6962.DefaultHasher, uint64(index), uint64(size), leaf, byteSlices(p), root[:]); err != nil {
		t.Errorf("VerifyInclusion(%d, %d): %v", index, size, err)
	}
	if err := tlog.CheckRecord(p, size, root, index, tlog.Hash(leaf)); err != nil {
		t.Errorf("CheckRecord(%d, %d): %v", index, size, err)
	}
	old := index + 1
	tp, err := tlog.ProveTree(size, old, l)
	if err != nil {
		t.Fatalf("ProveTree(%d, %d): %v", size, old, err)
	}
	oldRoot := roots[old]
	if err := proof.VerifyConsistency(rfc6962.DefaultHasher, uint64(old), uint64(size), byteSlices(tp), oldRoot[:], root[:]); err != nil {
		t.Errorf("VerifyConsistency(%d, %d): %v", old, size, err)
	}
	if err := tlog.CheckTree(tp, size, root, old, oldRoot); err != nil {
		t.Errorf("CheckTree(%d, %d): %v", old, size, err)
	}
}

func TestProofsIndependentVerifier(t *testing.T) {
	const n = 70
	l := newMemLog(t, 3000)
	roots := map[int64]tlog.Hash{}
	rootOf := func(size int64) {
		if _, ok := roots[size]; !ok {
			roots[size] = l.root(t, size)
		}
	}
	for size := int64(0); size <= n; size++ {
		rootOf(size)
	}
	t.Run("all pairs", func(t *testing.T) {
		for size := int64(1); size <= n; size++ {
			for index := int64(0); index < size; index++ {
				checkProofs(t, l, roots, index, size)
			}
		}
	})
	t.Run("random", func(t *testing.T) {
		r := rand.New(rand.NewPCG(1, 2))
		for range 200 {
			size := 1 + r.Int64N(l.size())
			index := r.Int64N(size)
			rootOf(size)
			rootOf(index + 1)
			checkProofs(t, l, roots, index, size)
		}
	})
	t.Run("wrong leaf", func(t *testing.T) {
		p, err := tlog.ProveRecord(50, 7, l)
		if err != nil {
			t.Fatal(err)
		}
		root := roots[50]
		if err := proof.VerifyInclusion(rfc6962.DefaultHasher, 7, 50, rfc6962.DefaultHasher.HashLeaf([]byte("x")), byteSlices(p), root[:]); err == nil {
			t.Error("VerifyInclusion accepted a wrong leaf")
		}
	})
}

func TestReadTile(t *testing.T) {
	l := newMemLog(t, 70000)
	tests := []struct {
		size   int64
		level  int
		index  int64
		width  int
		wantOK bool
	}{
		{70000, 0, 0, 256, true},
		{70000, 0, 272, 256, true},
		{70000, 0, 273, 112, true},
		{70000, 0, 273, 113, false},
		{70000, 0, 273, 256, false},
		{70000, 1, 0, 256, true},
		{70000, 1, 1, 17, true},
		{70000, 1, 1, 18, false},
		{70000, 2, 0, 1, true},
		{70000, 2, 0, 2, false},
		{70000, 3, 0, 1, false},
		{256, 0, 0, 256, true},
		{256, 1, 0, 1, true},
		{255, 1, 0, 1, false},
		{0, 0, 0, 1, false},
		{70000, 0, -1, 1, false},
		{70000, 0, 0, 0, false},
		{70000, 0, 0, 257, false},
		{70000, -1, 0, 1, false},
		{70000, 64, 0, 1, false},
		{70000, 0, 1 << 60, 1, false},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%d/%d/%d/%d", tt.size, tt.level, tt.index, tt.width), func(t *testing.T) {
			data, err := ReadTile(l, tt.size, tt.level, tt.index, tt.width)
			if !tt.wantOK {
				if err == nil {
					t.Fatal("ReadTile succeeded, want an error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(data) != tt.width*tlog.HashSize {
				t.Fatalf("tile is %d bytes", len(data))
			}
			// Each hash is the root of the subtree of 256**level leaves it covers.
			span := int64(1) << (TileHeight * tt.level)
			for i := 0; i < tt.width; i += max(1, tt.width/4) {
				lo := (tt.index*TileWidth + int64(i)) * span
				var f frontier
				for _, e := range l.entries[lo : lo+span] {
					f.append(tlog.RecordHash(e))
				}
				if got, want := tlog.Hash(data[i*tlog.HashSize:(i+1)*tlog.HashSize]), f.root(); got != want {
					t.Errorf("hash %d = %v, want %v", i, got, want)
				}
			}
		})
	}
}
