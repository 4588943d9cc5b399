package ledger

import (
	"bytes"
	"context"
	"fmt"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/infertrail/infertrail"
)

// Held is what an auditor kept from an earlier look at the log: a signed
// checkpoint (as served at /checkpoint, or from an evidence bundle), or a
// receipt (a C2SP tlog-proof, as the gateways give out), which holds one.
// Whoever holds one can later prove that the log only grew since: that its
// first Checkpoint.Size records still hash to the checkpoint's root, and,
// for a receipt, that its record is still among them. A log whose key
// signed both the held checkpoint and a rewritten log fails that check,
// and the two signed notes are the proof of it.
type Held struct {
	Checkpoint Checkpoint
	Receipt    *Proof // nil for a bare checkpoint
}

// ParseHeld parses a signed checkpoint or a tlog-proof receipt, and
// verifies the checkpoint's signature with v for origin.
func ParseHeld(text []byte, origin string, v note.Verifier) (Held, error) {
	var h Held
	cpText := text
	if bytes.HasPrefix(text, []byte(ProofHeader+"\n")) {
		p, err := ParseProof(text)
		if err != nil {
			return Held{}, err
		}
		h.Receipt, cpText = &p, p.Checkpoint
	}
	cp, err := ParseCheckpoint(cpText, origin, v)
	if err != nil {
		return Held{}, err
	}
	if h.Receipt != nil && h.Receipt.Index >= cp.Size {
		return Held{}, malformed("tlog-proof", "index %d beyond its checkpoint's tree size %d", h.Receipt.Index, cp.Size)
	}
	h.Checkpoint = cp
	return h, nil
}

// CheckHeld checks h against a log of size records whose hashes hr reads,
// and whose leaves leaf reads, both already verified (VerifyStore or
// VerifyTiles): the held checkpoint's tree must be a prefix of the log's,
// and a receipt's record must be in it, unchanged. A failure is a
// *VerificationError that says what the log did.
func CheckHeld(ctx context.Context, h Held, size int64, hr tlog.HashReader, leaf func(ctx context.Context, index int64) ([]byte, error)) error {
	cp := h.Checkpoint
	what := fmt.Sprintf("checkpoint you hold (size %d, root %s)", cp.Size, cp.Root)
	if cp.Size > size {
		return &VerificationError{Index: -1, What: what,
			Err: fmt.Errorf("the log holds %d records, fewer than the %d its key signed for: records were removed (the log was truncated), or this is an older view of it", size, cp.Size)}
	}
	if cp.Size > 0 {
		root, err := tlog.TreeHash(cp.Size, hr)
		if err != nil {
			return fmt.Errorf("check the %s: tree hash at %d: %w", what, cp.Size, err)
		}
		if root != cp.Root {
			return &VerificationError{Index: -1, What: what,
				Err: fmt.Errorf("the log's first %d records hash to %s: the log was rewritten after its key signed the checkpoint you hold (keep both signed notes: together they prove it)", cp.Size, root)}
		}
	}
	if h.Receipt == nil {
		return nil
	}
	i := h.Receipt.Index
	l, err := leaf(ctx, i)
	if err != nil {
		return fmt.Errorf("check the receipt of record %d: read its leaf: %w", i, err)
	}
	if err := tlog.CheckRecord(h.Receipt.Path, cp.Size, cp.Root, i, tlog.RecordHash(l)); err != nil {
		return &VerificationError{Index: i, What: "receipt",
			Err: fmt.Errorf("its inclusion proof does not lead from the log's record %d to the checkpoint it holds: the receipt was altered, or is of another log: %w", i, err)}
	}
	return nil
}

// StoreLeaf returns the leaf of the entry at index of a store.
func StoreLeaf(ctx context.Context, s infertrail.EntryReader, index int64) ([]byte, error) {
	var leaf []byte
	if err := s.Entries(ctx, index, index+1, func(e *infertrail.Entry) error {
		leaf = append([]byte(nil), e.Leaf...)
		return nil
	}); err != nil {
		return nil, err
	}
	if leaf == nil {
		return nil, fmt.Errorf("entry %d: %w", index, infertrail.ErrNotFound)
	}
	return leaf, nil
}

// TileHashReader returns a tlog.HashReader of the tree of checkpoint cp
// that reads its hashes from the tiles fetch gets, checking each tile
// against cp's root (tlog.TileHashReader).
func TileHashReader(ctx context.Context, fetch TileFetcher, cp Checkpoint) tlog.HashReader {
	return tlog.TileHashReader(tlog.Tree{N: cp.Size, Hash: cp.Root}, tileReader{ctx: ctx, fetch: fetch})
}

// tileReader is a tlog.TileReader over a TileFetcher.
type tileReader struct {
	ctx   context.Context
	fetch TileFetcher
}

func (r tileReader) Height() int { return TileHeight }

func (r tileReader) ReadTiles(tiles []tlog.Tile) ([][]byte, error) {
	return r.fetch.ReadTiles(r.ctx, tiles)
}

func (r tileReader) SaveTiles(tiles []tlog.Tile, data [][]byte) {}

// TileLeaf returns the leaf at index of a tlog-tiles log of size records,
// from its entry bundle.
func TileLeaf(ctx context.Context, fetch TileFetcher, size, index int64) ([]byte, error) {
	if index < 0 || index >= size {
		return nil, fmt.Errorf("entry %d: not in a log of %d entries", index, size)
	}
	n := index / TileWidth
	width := int(min(TileWidth, size-n*TileWidth))
	path := EntriesPath(n, width)
	data, err := fetch(ctx, path)
	if err != nil {
		return nil, fmt.Errorf("fetch %s: %w", path, err)
	}
	entries, err := ParseEntryBundle(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if int64(len(entries)) <= index%TileWidth {
		return nil, fmt.Errorf("%s holds %d entries, not entry %d", path, len(entries), index)
	}
	return entries[index%TileWidth], nil
}
