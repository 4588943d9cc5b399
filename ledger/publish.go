package ledger

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/infertrail/infertrail"
)

// StoreHashReader reads committed hashes from a store.
func StoreHashReader(ctx context.Context, s infertrail.HashReader) tlog.HashReader {
	return tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) { return s.ReadHashes(ctx, idx) })
}

// checkpoints signs a checkpoint whenever the tree has grown, at most once
// per CheckpointInterval, and a last one when the log closes.
func (l *Log) checkpoints() {
	t := time.NewTicker(l.cfg.CheckpointInterval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), l.cfg.CommitTimeout)
			if _, err := l.SignCheckpoint(ctx); err != nil && !errors.Is(err, infertrail.ErrNotFound) {
				l.signs.Log(l.log, slog.LevelError, "sign checkpoint", "err", err)
			} else {
				l.signs.LogEnd(l.log, "checkpoints signed again")
			}
			cancel()
		case <-l.done:
			<-l.seqDone
			ctx, cancel := context.WithTimeout(context.Background(), l.cfg.CommitTimeout)
			if _, err := l.SignCheckpoint(ctx); err != nil && !errors.Is(err, infertrail.ErrNotFound) {
				l.log.Error("sign final checkpoint", "err", err)
			}
			cancel()
			close(l.final)
			return
		}
	}
}

// SignCheckpoint signs and stores a checkpoint for the committed tree now,
// unless a stored checkpoint already covers it, and returns the latest
// checkpoint. With an empty log it returns an error wrapping ErrNotFound.
func (l *Log) SignCheckpoint(ctx context.Context) (Checkpoint, error) {
	l.cpMu.Lock()
	defer l.cpMu.Unlock()
	size, err := l.store.TreeSize(ctx)
	if err != nil {
		return Checkpoint{}, fmt.Errorf("sign checkpoint: %w", err)
	}
	latest, err := l.refreshLatestLocked(ctx)
	if err != nil && !errors.Is(err, infertrail.ErrNotFound) {
		return Checkpoint{}, fmt.Errorf("sign checkpoint: %w", err)
	}
	if size == 0 {
		return Checkpoint{}, fmt.Errorf("sign checkpoint: the log is empty: %w", infertrail.ErrNotFound)
	}
	if err == nil && latest.Size >= size {
		return latest, nil
	}
	root, err := tlog.TreeHash(size, StoreHashReader(ctx, l.store))
	if err != nil {
		return Checkpoint{}, fmt.Errorf("sign checkpoint: tree hash at %d: %w", size, err)
	}
	cp, err := SignCheckpoint(l.cfg.Signer, l.cfg.Origin, size, root)
	if err != nil {
		l.m.signFailed()
		return Checkpoint{}, err // says "sign checkpoint" already
	}
	// The signer may be another process (an SSH agent): what it signed
	// is checked before it is stored, where every node would trust it.
	if _, err := ParseCheckpoint(cp.Note, l.cfg.Origin, l.verifier); err != nil {
		l.m.signFailed()
		return Checkpoint{}, fmt.Errorf("sign checkpoint: the signer's checkpoint does not verify: %w", err)
	}
	if err := l.store.AddCheckpoint(ctx, infertrail.StoredCheckpoint{Size: size, Note: cp.Note}); err != nil {
		return Checkpoint{}, fmt.Errorf("sign checkpoint: store: %w", err)
	}
	l.m.signed()
	l.m.checkpoint(cp.Size)
	l.latest = cp
	select {
	case l.witnessWake <- struct{}{}: // nil without witnesses: never ready
	default:
	}
	return cp, nil
}

// LatestCheckpoint returns the latest signed checkpoint, which another node
// sharing the store may have signed. With none yet it returns an error
// wrapping ErrNotFound.
func (l *Log) LatestCheckpoint(ctx context.Context) (Checkpoint, error) {
	l.cpMu.Lock()
	defer l.cpMu.Unlock()
	return l.refreshLatestLocked(ctx)
}

func (l *Log) refreshLatest(ctx context.Context) (Checkpoint, error) {
	l.cpMu.Lock()
	defer l.cpMu.Unlock()
	return l.refreshLatestLocked(ctx)
}

func (l *Log) refreshLatestLocked(ctx context.Context) (Checkpoint, error) {
	sc, err := l.store.LatestCheckpoint(ctx)
	if err != nil {
		return Checkpoint{}, fmt.Errorf("latest checkpoint: %w", err)
	}
	// The same size with another note: witnesses' cosignatures were added.
	if sc.Size == l.latest.Size && bytes.Equal(sc.Note, l.latest.Note) {
		return l.latest, nil
	}
	cp, err := ParseCheckpoint(sc.Note, l.cfg.Origin, l.verifier)
	if err != nil {
		return Checkpoint{}, fmt.Errorf("latest checkpoint (size %d): %w", sc.Size, err)
	}
	l.m.checkpoint(cp.Size)
	l.latest = cp
	return cp, nil
}

// CheckpointAt returns the stored checkpoint of exactly the given size, or an
// error wrapping ErrNotFound.
func (l *Log) CheckpointAt(ctx context.Context, size int64) (Checkpoint, error) {
	var found *infertrail.StoredCheckpoint
	errStop := errors.New("stop")
	err := l.store.Checkpoints(ctx, size-1, func(c infertrail.StoredCheckpoint) error {
		if c.Size == size {
			found = &c
		}
		return errStop
	})
	if err != nil && !errors.Is(err, errStop) {
		return Checkpoint{}, fmt.Errorf("checkpoint of size %d: %w", size, err)
	}
	if found == nil {
		return Checkpoint{}, fmt.Errorf("no checkpoint of size %d: %w", size, infertrail.ErrNotFound)
	}
	return ParseCheckpoint(found.Note, l.cfg.Origin, l.verifier)
}

// TreeSize returns the number of committed records.
func (l *Log) TreeSize(ctx context.Context) (int64, error) { return l.store.TreeSize(ctx) }

// InclusionProof proves that record seq is in the tree of a signed
// checkpoint: the checkpoint of size treeSize, or with treeSize 0 the latest
// one (signed now if the latest does not cover seq yet).
func (l *Log) InclusionProof(ctx context.Context, seq, treeSize int64) (tlog.RecordProof, Checkpoint, error) {
	var cp Checkpoint
	var err error
	if treeSize > 0 {
		if seq >= treeSize {
			return nil, Checkpoint{}, fmt.Errorf("prove record %d: not in a tree of size %d: %w", seq, treeSize, infertrail.ErrInvalid)
		}
		cp, err = l.CheckpointAt(ctx, treeSize)
	} else {
		cp, err = l.LatestCheckpoint(ctx)
		if err == nil && seq >= cp.Size || errors.Is(err, infertrail.ErrNotFound) {
			cp, err = l.SignCheckpoint(ctx)
		}
	}
	if err != nil {
		return nil, Checkpoint{}, fmt.Errorf("prove record %d: %w", seq, err)
	}
	if seq >= cp.Size {
		return nil, Checkpoint{}, fmt.Errorf("prove record %d: the log has %d records: %w", seq, cp.Size, infertrail.ErrNotFound)
	}
	p, err := tlog.ProveRecord(cp.Size, seq, StoreHashReader(ctx, l.store))
	if err != nil {
		return nil, Checkpoint{}, fmt.Errorf("prove record %d in %d: %w", seq, cp.Size, err)
	}
	return p, cp, nil
}

// ConsistencyProof proves that the tree of size from is a prefix of the tree
// of size to.
func (l *Log) ConsistencyProof(ctx context.Context, from, to int64) (tlog.TreeProof, error) {
	size, err := l.store.TreeSize(ctx)
	if err != nil {
		return nil, fmt.Errorf("prove consistency: %w", err)
	}
	if from < 1 || from > to {
		return nil, fmt.Errorf("prove consistency %d to %d: want 1 <= from <= to: %w", from, to, infertrail.ErrInvalid)
	}
	if to > size {
		return nil, fmt.Errorf("prove consistency to %d: the log has %d records: %w", to, size, infertrail.ErrNotFound)
	}
	p, err := tlog.ProveTree(to, from, StoreHashReader(ctx, l.store))
	if err != nil {
		return nil, fmt.Errorf("prove consistency %d to %d: %w", from, to, err)
	}
	return p, nil
}

// TreeHash returns the root hash of the committed tree of the given size.
func (l *Log) TreeHash(ctx context.Context, size int64) (tlog.Hash, error) {
	return tlog.TreeHash(size, StoreHashReader(ctx, l.store))
}

// Tile returns a C2SP hash tile of the committed tree.
func (l *Log) Tile(ctx context.Context, level int, index int64, width int) ([]byte, error) {
	size, err := l.store.TreeSize(ctx)
	if err != nil {
		return nil, fmt.Errorf("read tile: %w", err)
	}
	if !tileCovered(size, level, index, width) {
		return nil, fmt.Errorf("read tile %d/%d width %d: the log has %d records: %w", level, index, width, size, infertrail.ErrNotFound)
	}
	return ReadTile(StoreHashReader(ctx, l.store), size, level, index, width)
}

// EntryBundle returns a C2SP entry bundle: the canonical leaves of records
// index·256 to index·256+width-1, each with its length prefix.
func (l *Log) EntryBundle(ctx context.Context, index int64, width int) ([]byte, error) {
	size, err := l.store.TreeSize(ctx)
	if err != nil {
		return nil, fmt.Errorf("read entry bundle: %w", err)
	}
	start := index * TileWidth
	if width < 1 || width > TileWidth || start+int64(width) > size {
		return nil, fmt.Errorf("read entry bundle %d.p/%d: the log has %d records: %w", index, width, size, infertrail.ErrNotFound)
	}
	var out []byte
	err = l.store.Entries(ctx, start, start+int64(width), func(e *infertrail.Entry) error {
		out = AppendEntry(out, e.Leaf)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read entry bundle %d: %w", index, err)
	}
	return out, nil
}

// Entry returns the committed entry seq.
func (l *Log) Entry(ctx context.Context, seq int64) (infertrail.Entry, error) {
	return infertrail.ReadEntry(ctx, l.store, seq)
}

// Content returns the plain content of an entry, by field. A field whose
// data key was erased is left out, and the error is an
// *infertrail.ErasedError, returned with the other fields.
func (l *Log) Content(ctx context.Context, e *infertrail.Entry) (map[string]json.RawMessage, error) {
	return l.content.Read(ctx, e)
}

// ContentReader returns the log's content reader.
func (l *Log) ContentReader() *ContentReader { return l.content }
