package ledger

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"testing"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// memLog is an in-memory tlog: the entries and the stored hashes
// golang.org/x/mod/sumdb/tlog computes for them, as a server keeps them.
type memLog struct {
	entries [][]byte
	hashes  []tlog.Hash
}

// ReadHashes implements tlog.HashReader.
func (l *memLog) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	for i, x := range indexes {
		if x < 0 || x >= int64(len(l.hashes)) {
			return nil, fmt.Errorf("read hash %d: %w", x, fs.ErrNotExist)
		}
		out[i] = l.hashes[x]
	}
	return out, nil
}

func (l *memLog) append(tb testing.TB, entry []byte) {
	tb.Helper()
	hs, err := tlog.StoredHashes(int64(len(l.entries)), entry, l)
	if err != nil {
		tb.Fatalf("StoredHashes: %v", err)
	}
	l.hashes = append(l.hashes, hs...)
	l.entries = append(l.entries, entry)
}

func (l *memLog) size() int64 { return int64(len(l.entries)) }

func (l *memLog) root(tb testing.TB, size int64) tlog.Hash {
	tb.Helper()
	h, err := tlog.TreeHash(size, l)
	if err != nil {
		tb.Fatalf("TreeHash(%d): %v", size, err)
	}
	return h
}

// newMemLog returns a log of n entries, entry i being testEntry(i).
func newMemLog(tb testing.TB, n int) *memLog {
	tb.Helper()
	l := &memLog{}
	for i := range n {
		l.append(tb, testEntry(i))
	}
	return l
}

// testEntry returns a distinct entry of varying length, sometimes empty.
func testEntry(i int) []byte {
	if i%97 == 3 {
		return []byte{}
	}
	return fmt.Appendf(nil, "entry %d %s", i, make([]byte, i%40))
}

// testSigner is a fixed-origin key pair for tests.
type testSigner struct {
	origin string
	signer note.Signer
	vkey   string
	verif  note.Verifier
}

func newTestSigner(tb testing.TB, origin string) *testSigner {
	tb.Helper()
	skey, vkey, err := GenerateKey(origin)
	if err != nil {
		tb.Fatalf("GenerateKey: %v", err)
	}
	s, err := note.NewSigner(skey)
	if err != nil {
		tb.Fatalf("NewSigner: %v", err)
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		tb.Fatalf("NewVerifier: %v", err)
	}
	return &testSigner{origin: origin, signer: s, vkey: vkey, verif: v}
}

// memServer serves a memLog at a fixed tree size as a tlog-tiles log, the way
// the real server must: "checkpoint", Merkle tiles and entry bundles.
type memServer struct {
	log        *memLog
	size       int64
	checkpoint []byte
	// overrides, when set, replace the served bytes of a path.
	overrides map[string][]byte
	// missing paths are not served.
	missing map[string]bool
}

func newMemServer(tb testing.TB, l *memLog, s *testSigner) *memServer {
	tb.Helper()
	cp, err := SignCheckpoint(s.signer, s.origin, l.size(), l.root(tb, l.size()))
	if err != nil {
		tb.Fatalf("SignCheckpoint: %v", err)
	}
	return &memServer{log: l, size: l.size(), checkpoint: cp.Note, overrides: map[string][]byte{}, missing: map[string]bool{}}
}

// serve returns the bytes at path, computing them from the log.
func (m *memServer) serve(path string) ([]byte, error) {
	if m.missing[path] {
		return nil, fmt.Errorf("serve %s: %w", path, fs.ErrNotExist)
	}
	if b, ok := m.overrides[path]; ok {
		return b, nil
	}
	if path == "checkpoint" {
		return m.checkpoint, nil
	}
	level, index, width, entries, err := ParseTilePath(path)
	if err != nil {
		return nil, fmt.Errorf("serve %s: %w", path, fs.ErrNotExist)
	}
	if entries {
		if !tileCovered(m.size, 0, index, width) {
			return nil, fmt.Errorf("serve %s: %w", path, fs.ErrNotExist)
		}
		var b []byte
		for _, e := range m.log.entries[index*TileWidth : index*TileWidth+int64(width)] {
			b = AppendEntry(b, e)
		}
		return b, nil
	}
	b, err := ReadTile(m.log, m.size, level, index, width)
	if err != nil {
		return nil, fmt.Errorf("serve %s: %w", path, fs.ErrNotExist)
	}
	return b, nil
}

// fetcher returns a TileFetcher over m that records the paths it served.
func (m *memServer) fetcher(served *[]string) TileFetcher {
	return func(ctx context.Context, path string) ([]byte, error) {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if served != nil {
			*served = append(*served, path)
		}
		b, err := m.serve(path)
		if err != nil {
			return nil, err
		}
		return append([]byte(nil), b...), nil
	}
}

// tamper returns a copy of b with bit 0 of byte i flipped.
func tamper(b []byte, i int) []byte {
	c := append([]byte(nil), b...)
	c[i] ^= 1
	return c
}

func TestMemServerMissing(t *testing.T) {
	s := newTestSigner(t, "example.com/mem")
	m := newMemServer(t, newMemLog(t, 10), s)
	for _, p := range []string{"tile/0/000", "tile/0/000.p/11", "tile/1/000.p/1", "tile/entries/001.p/1", "nope"} {
		if _, err := m.serve(p); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("serve(%q) = %v, want not exist", p, err)
		}
	}
}
