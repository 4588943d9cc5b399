package ledger

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"filippo.io/torchwood"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/infertrail/infertrail/ledger/ledgertest"
)

func TestVerifyTiles(t *testing.T) {
	s := newTestSigner(t, "example.com/tiles")
	big := newMemLog(t, 70000)
	for _, size := range []int{0, 1, 2, 255, 256, 257, 511, 512, 513, 65535, 65536, 65537, 70000} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			l := &memLog{entries: big.entries[:size], hashes: big.hashes[:tlog.StoredHashCount(int64(size))]}
			m := newMemServer(t, l, s)
			var served []string
			var checked []int64
			var lastDone, lastTotal int64
			cp, err := VerifyTiles(t.Context(), m.fetcher(&served), s.origin, s.verif,
				func(index int64, leaf []byte) error {
					if !bytes.Equal(leaf, l.entries[index]) {
						return fmt.Errorf("leaf %d differs", index)
					}
					checked = append(checked, index)
					return nil
				},
				func(done, total int64) { lastDone, lastTotal = done, total })
			if err != nil {
				t.Fatal(err)
			}
			if cp.Size != int64(size) || cp.Root != l.root(t, int64(size)) {
				t.Errorf("checkpoint %+v", cp)
			}
			if len(checked) != size || size > 0 && (checked[0] != 0 || checked[size-1] != int64(size-1)) || !slices.IsSorted(checked) {
				t.Errorf("checkLeaf called for %d entries, not in order 0..%d", len(checked), size-1)
			}
			if size > 0 && (lastDone != int64(size) || lastTotal != int64(size)) {
				t.Errorf("last progress %d/%d", lastDone, lastTotal)
			}
			// Every Merkle tile of the tree was fetched, as tlog.NewTiles lists them.
			for _, tile := range tlog.NewTiles(TileHeight, 0, int64(size)) {
				p := TilePath(tile.L, tile.N, tile.W)
				if !slices.Contains(served, p) {
					t.Errorf("tile %s was not fetched", p)
				}
			}
		})
	}
}

func TestVerifyTilesRejects(t *testing.T) {
	s := newTestSigner(t, "example.com/tiles")
	l := newMemLog(t, 66000)
	other := newTestSigner(t, s.origin)
	entry := func(t *testing.T, m *memServer, path string, i int) {
		// Flip a byte of entry i of the bundle at path, keeping its length.
		b, err := m.serve(path)
		if err != nil {
			t.Fatal(err)
		}
		entries, err := ParseEntryBundle(b)
		if err != nil {
			t.Fatal(err)
		}
		var nb []byte
		for j, e := range entries {
			if j == i {
				e = tamper(e, len(e)-1)
			}
			nb = AppendEntry(nb, e)
		}
		m.overrides[path] = nb
	}
	tile := func(t *testing.T, m *memServer, path string, hash int) {
		b, err := m.serve(path)
		if err != nil {
			t.Fatal(err)
		}
		m.overrides[path] = tamper(b, hash*tlog.HashSize+5)
	}
	tests := []struct {
		name      string
		alter     func(t *testing.T, m *memServer)
		wantIndex int64
		wantPath  string
	}{
		{"entry byte in full bundle", func(t *testing.T, m *memServer) { entry(t, m, "tile/entries/100", 7) }, 100*256 + 7, "tile/0/100"},
		{"entry byte in partial bundle", func(t *testing.T, m *memServer) { entry(t, m, "tile/entries/257.p/208", 200) }, 257*256 + 200, "tile/0/257.p/208"},
		{"level 0 tile byte", func(t *testing.T, m *memServer) { tile(t, m, "tile/0/003", 255) }, 3*256 + 255, "tile/0/003"},
		{"partial level 0 tile byte", func(t *testing.T, m *memServer) { tile(t, m, "tile/0/257.p/208", 0) }, 257 * 256, "tile/0/257.p/208"},
		{"level 1 tile byte", func(t *testing.T, m *memServer) { tile(t, m, "tile/1/000", 10) }, 10 * 256, "tile/1/000"},
		{"partial level 1 tile byte", func(t *testing.T, m *memServer) { tile(t, m, "tile/1/001.p/1", 0) }, 65536, "tile/1/001.p/1"},
		{"level 2 tile byte", func(t *testing.T, m *memServer) { tile(t, m, "tile/2/000.p/1", 0) }, 0, "tile/2/000.p/1"},
		{"short tile", func(t *testing.T, m *memServer) { m.overrides["tile/0/002"] = make([]byte, 10) }, 512, "tile/0/002"},
		{"long tile", func(t *testing.T, m *memServer) {
			b, _ := m.serve("tile/0/002")
			m.overrides["tile/0/002"] = append(b, 0)
		}, 767, "tile/0/002"},
		{"missing entry", func(t *testing.T, m *memServer) {
			b, _ := m.serve("tile/entries/004")
			m.overrides["tile/entries/004"] = b[:len(b)-2-len(l.entries[4*256+255])]
		}, 4*256 + 255, "tile/entries/004"},
		{"trailing bytes in bundle", func(t *testing.T, m *memServer) {
			b, _ := m.serve("tile/entries/004")
			m.overrides["tile/entries/004"] = append(b, 0)
		}, 4 * 256, "tile/entries/004"},
		{"missing bundle", func(t *testing.T, m *memServer) { m.missing["tile/entries/009"] = true }, 9 * 256, "fetch tile/entries/009"},
		{"missing tile", func(t *testing.T, m *memServer) { m.missing["tile/1/000"] = true }, 0, "fetch tile/1/000"},
		{"checkpoint size", func(t *testing.T, m *memServer) {
			m.checkpoint = must(SignCheckpoint(s.signer, s.origin, m.size-1, l.root(t, m.size))).Note
		}, -1, "root hash"},
		{"checkpoint root", func(t *testing.T, m *memServer) {
			m.checkpoint = must(SignCheckpoint(s.signer, s.origin, m.size, tlog.RecordHash(nil))).Note
		}, -1, "root hash"},
		{"checkpoint byte", func(t *testing.T, m *memServer) { m.checkpoint = tamper(m.checkpoint, 3) }, -1, "checkpoint"},
		{"checkpoint signer", func(t *testing.T, m *memServer) {
			m.checkpoint = must(SignCheckpoint(other.signer, s.origin, m.size, l.root(t, m.size))).Note
		}, -1, "checkpoint"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newMemServer(t, l, s)
			tt.alter(t, m)
			_, err := VerifyTiles(t.Context(), m.fetcher(nil), s.origin, s.verif, nil, nil)
			var ve *VerificationError
			if !errors.As(err, &ve) {
				t.Fatalf("VerifyTiles error = %v, want a *VerificationError", err)
			}
			if ve.Index != tt.wantIndex || !strings.Contains(ve.What, tt.wantPath) {
				t.Errorf("VerifyTiles error index %d what %q, want index %d naming %q (%v)", ve.Index, ve.What, tt.wantIndex, tt.wantPath, err)
			}
			if tt.wantIndex >= 0 && !strings.Contains(err.Error(), fmt.Sprintf("entry %d", tt.wantIndex)) {
				t.Errorf("message %q does not name entry %d", err, tt.wantIndex)
			}
		})
	}
}

func TestVerifyTilesCheckLeaf(t *testing.T) {
	s := newTestSigner(t, "example.com/tiles")
	m := newMemServer(t, newMemLog(t, 600), s)
	errBad := errors.New("bad record")
	_, err := VerifyTiles(t.Context(), m.fetcher(nil), s.origin, s.verif, func(index int64, leaf []byte) error {
		if index == 321 {
			return errBad
		}
		return nil
	}, nil)
	var ve *VerificationError
	if !errors.As(err, &ve) || ve.Index != 321 || !errors.Is(err, errBad) {
		t.Errorf("VerifyTiles = %v, want entry 321 wrapping the checkLeaf error", err)
	}
}

func TestVerifyTilesCanceled(t *testing.T) {
	s := newTestSigner(t, "example.com/tiles")
	m := newMemServer(t, newMemLog(t, 600), s)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := VerifyTiles(ctx, m.fetcher(nil), s.origin, s.verif, nil, nil); !errors.Is(err, context.Canceled) {
		t.Errorf("VerifyTiles = %v, want context.Canceled", err)
	}
}

func TestTorchwoodInterop(t *testing.T) {
	s := newTestSigner(t, "example.com/interop")
	big := newMemLog(t, 66000)
	for _, size := range []int{1, 255, 256, 257, 1000, 65536, 66000} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			l := &memLog{entries: big.entries[:size], hashes: big.hashes[:tlog.StoredHashCount(int64(size))]}
			m := newMemServer(t, l, s)
			entries, cp := ledgertest.VerifyWithTorchwood(t, t.Context(), m.fetcher(nil), s.origin, s.vkey)
			if cp.N != int64(size) || cp.Origin != s.origin {
				t.Errorf("torchwood checkpoint %+v", cp)
			}
			for i := range entries {
				if !bytes.Equal(entries[i], l.entries[i]) {
					t.Fatalf("torchwood entry %d = %q, want %q", i, entries[i], l.entries[i])
				}
			}
		})
	}
	t.Run("tampered tile rejected", func(t *testing.T) {
		l := &memLog{entries: big.entries[:1000], hashes: big.hashes[:tlog.StoredHashCount(1000)]}
		m := newMemServer(t, l, s)
		b, _ := m.serve("tile/entries/001")
		m.overrides["tile/entries/001"] = tamper(b, len(b)-1)
		client, err := torchwood.NewClient(m.fetcher(nil))
		if err != nil {
			t.Fatal(err)
		}
		cp, err := ParseCheckpoint(m.checkpoint, s.origin, s.verif)
		if err != nil {
			t.Fatal(err)
		}
		for range client.AllEntries(t.Context(), tlog.Tree{N: cp.Size, Hash: cp.Root}, 0) {
		}
		if client.Err() == nil {
			t.Error("torchwood accepted a tampered entry bundle")
		}
	})
}

func TestTileFetcherReadTilesInvalid(t *testing.T) {
	f := TileFetcher(func(ctx context.Context, path string) ([]byte, error) { return nil, nil })
	for _, tile := range []tlog.Tile{{H: 2, L: 0, N: 0, W: 4}, {H: 8, L: -2, N: 0, W: 1}, {H: 8, L: 0, N: -1, W: 1}, {H: 8, L: 0, N: 0, W: 0}} {
		if _, err := f.ReadTiles(t.Context(), []tlog.Tile{tile}); err == nil {
			t.Errorf("ReadTiles(%+v) succeeded", tile)
		}
	}
}
