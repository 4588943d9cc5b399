package ledger

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// A TileFetcher fetches a resource of a tlog-tiles log by its path relative
// to the log's prefix: "checkpoint", "tile/0/x001/234",
// "tile/entries/000.p/5". It returns an error when the resource cannot be
// fetched; a missing resource is an error too. It must be safe to call from
// one goroutine at a time; VerifyTiles never calls it concurrently.
//
// A TileFetcher also has the methods of filippo.io/torchwood's TileReader
// interface, so torchwood.NewClient(fetcher) reads a log through it.
type TileFetcher func(ctx context.Context, path string) ([]byte, error)

// ReadTiles fetches the tiles, Merkle tiles or entry bundles (level -1),
// with tile height TileHeight. It implements the method of
// torchwood.TileReader and, with a context, of tlog.TileReader.
func (f TileFetcher) ReadTiles(ctx context.Context, tiles []tlog.Tile) ([][]byte, error) {
	data := make([][]byte, len(tiles))
	for i, t := range tiles {
		if t.H != TileHeight || t.L < -1 || t.L > MaxLevel || t.N < 0 || t.W < 1 || t.W > TileWidth {
			return nil, fmt.Errorf("read tiles: unsupported tile %+v", t)
		}
		var p string
		if t.L == -1 {
			p = EntriesPath(t.N, t.W)
		} else {
			p = TilePath(t.L, t.N, t.W)
		}
		b, err := f(ctx, p)
		if err != nil {
			return nil, fmt.Errorf("fetch %s: %w", p, err)
		}
		data[i] = b
	}
	return data, nil
}

// SaveTiles does nothing: a TileFetcher keeps no cache. It implements the
// method of torchwood.TileReader.
func (f TileFetcher) SaveTiles(tiles []tlog.Tile, data [][]byte) {}

// ReadEndpoint fetches path, such as "checkpoint". It implements the method of
// torchwood.TileReader.
func (f TileFetcher) ReadEndpoint(ctx context.Context, path string) ([]byte, error) {
	return f(ctx, path)
}

// VerificationError reports that a served log, or a proof, does not verify.
type VerificationError struct {
	Index int64  // index of the entry at fault, -1 when not about one entry
	What  string // what failed, naming the tile or bundle path when there is one
	Err   error  // the underlying cause
}

func (e *VerificationError) Error() string {
	if e.Index >= 0 {
		return fmt.Sprintf("verify entry %d: %s: %v", e.Index, e.What, e.Err)
	}
	return fmt.Sprintf("verify log: %s: %v", e.What, e.Err)
}

func (e *VerificationError) Unwrap() error { return e.Err }

// VerifyTiles fetches and checks a whole tlog-tiles log. It fetches
// "checkpoint" and verifies it with v for origin; fetches every entry
// bundle, full and final partial, calling checkLeaf (if not nil) on each
// entry in index order; recomputes the RFC 6962 root from the entries'
// hashes and compares it with the checkpoint's; and fetches every Merkle
// tile the checkpoint's tree implies, at every level, full and partial,
// comparing its bytes with the hashes the entries imply. progress, if not
// nil, is called after each entry bundle with the entries checked so far and
// the tree size.
//
// Memory stays bounded whatever the log size: one entry bundle, one tile per
// level and a frontier of at most 63 hashes.
//
// It returns the verified checkpoint. Verification failures are
// *VerificationError; an error from checkLeaf is wrapped in one with the
// entry's index.
func VerifyTiles(ctx context.Context, fetch TileFetcher, origin string, v note.Verifier,
	checkLeaf func(index int64, leaf []byte) error, progress func(done, total int64)) (Checkpoint, error) {
	text, err := fetch(ctx, "checkpoint")
	if err != nil {
		return Checkpoint{}, &VerificationError{Index: -1, What: "fetch checkpoint", Err: err}
	}
	cp, err := ParseCheckpoint(text, origin, v)
	if err != nil {
		return Checkpoint{}, &VerificationError{Index: -1, What: "checkpoint", Err: err}
	}
	tv := &tileVerifier{fetch: fetch}
	var fr frontier
	for start := int64(0); start < cp.Size; start += TileWidth {
		if err := ctx.Err(); err != nil {
			return Checkpoint{}, fmt.Errorf("verify tiles: %w", err)
		}
		width := int(min(TileWidth, cp.Size-start))
		path := EntriesPath(start/TileWidth, width)
		data, err := fetch(ctx, path)
		if err != nil {
			return Checkpoint{}, &VerificationError{Index: start, What: "fetch " + path, Err: err}
		}
		entries, err := ParseEntryBundle(data)
		if err != nil {
			return Checkpoint{}, &VerificationError{Index: start, What: path, Err: err}
		}
		if len(entries) != width {
			return Checkpoint{}, &VerificationError{Index: start + int64(min(len(entries), width)), What: path,
				Err: fmt.Errorf("bundle holds %d entries, want %d", len(entries), width)}
		}
		for i, e := range entries {
			idx := start + int64(i)
			if checkLeaf != nil {
				if err := checkLeaf(idx, e); err != nil {
					return Checkpoint{}, &VerificationError{Index: idx, What: "check entry", Err: err}
				}
			}
			h := tlog.RecordHash(e)
			fr.append(h)
			if err := tv.add(ctx, 0, h); err != nil {
				return Checkpoint{}, err
			}
		}
		if progress != nil {
			progress(start+int64(width), cp.Size)
		}
	}
	if err := tv.finish(ctx); err != nil {
		return Checkpoint{}, err
	}
	if root := fr.root(); root != cp.Root {
		return Checkpoint{}, &VerificationError{Index: -1, What: "root hash",
			Err: fmt.Errorf("entries hash to %v, checkpoint of size %d says %v", root, cp.Size, cp.Root)}
	}
	return cp, nil
}

// A frontier computes the RFC 6962 root of a growing list of leaf hashes
// while keeping only the roots of its maximal perfect subtrees.
type frontier struct {
	n      int64
	hashes []tlog.Hash // roots of the perfect subtrees, largest first
}

func (f *frontier) append(h tlog.Hash) {
	for n := f.n; n&1 == 1; n >>= 1 {
		h = tlog.NodeHash(f.hashes[len(f.hashes)-1], h)
		f.hashes = f.hashes[:len(f.hashes)-1]
	}
	f.hashes = append(f.hashes, h)
	f.n++
}

func (f *frontier) root() tlog.Hash {
	if f.n == 0 {
		return sha256.Sum256(nil)
	}
	h := f.hashes[len(f.hashes)-1]
	for i := len(f.hashes) - 2; i >= 0; i-- {
		h = tlog.NodeHash(f.hashes[i], h)
	}
	return h
}

// A tileVerifier builds, level by level, the Merkle tiles that a stream of
// leaf hashes implies, and compares each with the served tile as soon as it
// is complete. It keeps only the current tile of each level.
type tileVerifier struct {
	fetch   TileFetcher
	current [][]tlog.Hash // current[l] holds the hashes of the current tile at level l
	index   []int64       // index[l] is the index of the current tile at level l
	scratch [TileWidth]tlog.Hash
}

// add appends h to the current tile at level, checking the tile and
// carrying its hash to the level above when it becomes full.
func (tv *tileVerifier) add(ctx context.Context, level int, h tlog.Hash) error {
	for len(tv.current) <= level {
		tv.current = append(tv.current, make([]tlog.Hash, 0, TileWidth))
		tv.index = append(tv.index, 0)
	}
	tv.current[level] = append(tv.current[level], h)
	if len(tv.current[level]) < TileWidth {
		return nil
	}
	if err := tv.check(ctx, level); err != nil {
		return err
	}
	th := tv.subtreeHash(tv.current[level])
	tv.current[level] = tv.current[level][:0]
	tv.index[level]++
	return tv.add(ctx, level+1, th)
}

// finish checks the partial tile left at every level.
func (tv *tileVerifier) finish(ctx context.Context) error {
	for level, hs := range tv.current {
		if len(hs) > 0 {
			if err := tv.check(ctx, level); err != nil {
				return err
			}
		}
	}
	return nil
}

// check fetches the current tile of level at its current width and compares
// it with the hashes the entries imply.
func (tv *tileVerifier) check(ctx context.Context, level int) error {
	want := tv.current[level]
	n := tv.index[level]
	first := func(i int) int64 { return (n*TileWidth + int64(i)) << (uint(level) * TileHeight) }
	path := TilePath(level, n, len(want))
	got, err := tv.fetch(ctx, path)
	if err != nil {
		return &VerificationError{Index: first(0), What: "fetch " + path, Err: err}
	}
	for i, h := range want {
		if len(got) < (i+1)*tlog.HashSize {
			return &VerificationError{Index: first(i), What: path,
				Err: fmt.Errorf("tile is %d bytes, want %d", len(got), len(want)*tlog.HashSize)}
		}
		if g := got[i*tlog.HashSize : (i+1)*tlog.HashSize]; !bytes.Equal(g, h[:]) {
			return &VerificationError{Index: first(i), What: path,
				Err: fmt.Errorf("hash %d is %v, entries imply %v", i, tlog.Hash(g), h)}
		}
	}
	if len(got) != len(want)*tlog.HashSize {
		return &VerificationError{Index: first(len(want) - 1), What: path,
			Err: fmt.Errorf("tile is %d bytes, want %d", len(got), len(want)*tlog.HashSize)}
	}
	return nil
}

// subtreeHash returns the root of the perfect subtree whose leaves are the
// TileWidth hashes of a full tile.
func (tv *tileVerifier) subtreeHash(hs []tlog.Hash) tlog.Hash {
	s := tv.scratch[:copy(tv.scratch[:], hs)]
	for len(s) > 1 {
		for i := 0; i < len(s)/2; i++ {
			s[i] = tlog.NodeHash(s[2*i], s[2*i+1])
		}
		s = s[:len(s)/2]
	}
	return s[0]
}
