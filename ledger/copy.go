package ledger

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/infertrail/infertrail"
)

// CopyReport says what CopyStore copied.
type CopyReport struct {
	Records     int64 // entries, with the tree hashes recomputed from their leaves
	Blobs       int64 // content blobs, as stored (encrypted, compressed)
	Keys        int64 // data keys, erased ones included
	Erased      int64 // of them, erased (copied erased: no wrapped key, no content)
	Checkpoints int64 // signed checkpoints, cosignatures included
	Tokens      int64
	Holds       int64
	Approvals   int64
}

// copyBatch bounds the entries of one transaction of CopyStore, and
// copyBatchBytes the bytes of their leaves and content blobs (variables
// for the tests).
var (
	copyBatch      int64 = 2000
	copyBatchBytes       = 32 << 20
)

// CopyStore copies the whole log of src into dst, which must be empty: a
// SQLite log into PostgreSQL when one machine is outgrown (or back). The
// copy is the same log, not a new one: every entry's leaf, id, MAC and
// content, byte for byte (content stays encrypted under the same data
// keys, so dst serves it only with the same key-encryption keys); every
// signed checkpoint, with its witnesses' cosignatures; erased keys as
// erased; API tokens (so callers keep theirs), legal holds and approvals.
// The investigation index is not copied: a server on dst rebuilds it from
// the log.
//
// The copy proves itself as it goes: dst's tree hashes are computed anew
// from the leaves, not copied, and every checkpoint's signature is checked
// with v and its root compared with dst's tree before it is stored. A
// copy that fails leaves dst partly written: drop it and copy again.
//
// The log is copied as of its size when the copy begins: stop the
// servers that write it first. A log appended to meanwhile fails the copy
// with an error wrapping ErrSourceChanged. src is only read; progress, if
// not nil, is called with the entries copied and the total.
func CopyStore(ctx context.Context, dst, src infertrail.Store, origin string, v note.Verifier, progress func(done, total int64)) (CopyReport, error) {
	var rep CopyReport
	if n, err := dst.TreeSize(ctx); err != nil {
		return rep, fmt.Errorf("copy: destination: %w", err)
	} else if n != 0 {
		return rep, fmt.Errorf("copy: the destination holds %d records: copy into an empty store: %w", n, infertrail.ErrConflict)
	}
	if toks, err := dst.Tokens(ctx); err != nil {
		return rep, fmt.Errorf("copy: destination: %w", err)
	} else if len(toks) > 0 {
		return rep, fmt.Errorf("copy: the destination holds %d API tokens: copy into an empty store: %w", len(toks), infertrail.ErrConflict)
	}
	size, err := src.TreeSize(ctx)
	if err != nil {
		return rep, fmt.Errorf("copy: source: %w", err)
	}
	c := &copier{dst: dst, src: src, rep: &rep, erase: map[int64][]infertrail.KeyID{}}
	for start := int64(0); start < size; {
		next, err := c.batch(ctx, start, size)
		if err != nil {
			return rep, err
		}
		start = next
		if progress != nil {
			progress(start, size)
		}
	}
	grew := func() error {
		now, err := src.TreeSize(ctx)
		if err != nil {
			return fmt.Errorf("copy: source: %w", err)
		}
		if now > size {
			return fmt.Errorf("copy: the source took %d records more while it was copied (a server still writes it): the copy holds its first %d records, and tokens, holds and approvals as they were later: %w", now-size, size, ErrSourceChanged)
		}
		return nil
	}
	if len(c.erase) > 0 {
		// Erased while the copy ran, by records it did not copy.
		if err := grew(); err != nil {
			return rep, err
		}
		return rep, fmt.Errorf("copy: %d data keys are erased by records past the log's end: %w", len(c.erase), infertrail.ErrInvalid)
	}
	if err := c.checkpoints(ctx, origin, v); err != nil {
		return rep, err
	}
	if err := c.state(ctx); err != nil {
		return rep, err
	}
	return rep, grew()
}

// ErrSourceChanged means that the log CopyStore copied was appended to
// while it copied: the copy is a consistent prefix of the log, but
// incomplete.
var ErrSourceChanged = errors.New("the source changed during the copy")

type copier struct {
	dst, src infertrail.Store
	rep      *CopyReport
	perEntry int // bytes of leaf and blobs an entry of the last batch had
	// erase holds the erased keys added to dst, by the erasure record that
	// erased them: they are erased in dst in the transaction that appends
	// that record.
	erase map[int64][]infertrail.KeyID
}

// batch copies the entries from start on, as many as one transaction
// takes, and returns where the next batch starts.
func (c *copier) batch(ctx context.Context, start, size int64) (int64, error) {
	// As many entries as copyBatchBytes holds at the size of the last
	// batch's, and a few to begin with.
	n := int64(64)
	if c.perEntry > 0 {
		n = int64(copyBatchBytes / c.perEntry)
	}
	n = max(1, min(n, copyBatch))
	var entries []infertrail.Entry
	err := c.src.Entries(ctx, start, min(start+n, size), func(e *infertrail.Entry) error {
		entries = append(entries, cloneEntry(e))
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("copy: read entries from %d: %w", start, err)
	}
	if len(entries) == 0 {
		return 0, fmt.Errorf("copy: the source has no entry %d of its %d", start, size)
	}
	for i := range entries {
		if entries[i].Seq != start+int64(i) {
			return 0, fmt.Errorf("copy: the source's entry %d comes where %d should: %w", entries[i].Seq, start+int64(i), infertrail.ErrInvalid)
		}
	}
	// The blobs the entries reference, in one read; past copyBatchBytes
	// (records larger than those before), the batch ends early.
	var blobIDs []infertrail.BlobID
	asked := map[infertrail.BlobID]bool{}
	for i := range entries {
		for _, r := range entries[i].Content {
			for _, id := range r.Blobs {
				if !asked[id] {
					asked[id] = true
					blobIDs = append(blobIDs, id)
				}
			}
		}
	}
	blobs, err := c.src.Blobs(ctx, blobIDs)
	if err != nil {
		return 0, fmt.Errorf("copy: read the blobs of entries [%d, %d): %w", start, start+int64(len(entries)), err)
	}
	total, counted := 0, map[infertrail.BlobID]bool{}
	for i := range entries {
		for _, r := range entries[i].Content {
			for _, id := range r.Blobs {
				if b, ok := blobs[id]; ok && !counted[id] {
					counted[id] = true
					total += len(b.Data)
				}
			}
		}
		total += len(entries[i].Leaf)
		if total > copyBatchBytes && i > 0 {
			entries = entries[:i+1]
			break
		}
	}
	c.perEntry = max(1, total/len(entries))
	next := start + int64(len(entries))

	// The data keys they are encrypted under.
	var keyIDs []infertrail.KeyID
	seenKey := map[infertrail.KeyID]bool{}
	for i := range entries {
		for _, r := range entries[i].Content {
			if !r.Key.IsZero() && !seenKey[r.Key] {
				seenKey[r.Key] = true
				keyIDs = append(keyIDs, r.Key)
			}
		}
	}
	var newKeys []infertrail.DataKey
	if len(keyIDs) > 0 {
		have, err := c.dst.DataKeys(ctx, keyIDs)
		if err != nil {
			return 0, fmt.Errorf("copy: destination: %w", err)
		}
		var missing []infertrail.KeyID
		for _, id := range keyIDs {
			if _, ok := have[id]; !ok {
				missing = append(missing, id)
			}
		}
		keys, err := c.src.DataKeys(ctx, missing)
		if err != nil {
			return 0, fmt.Errorf("copy: read the data keys of entries [%d, %d): %w", start, next, err)
		}
		for _, id := range missing {
			k, ok := keys[id]
			if !ok {
				return 0, fmt.Errorf("copy: entries [%d, %d) reference data key %x, which the source does not hold", start, next, id[:4])
			}
			if !k.Live() {
				// Stored erased, as the erasure record that erased it
				// left it: added with a placeholder in place of the
				// wrapped key (a store takes no key without one) and
				// erased in the transaction that appends that record.
				if k.ErasedBy < start {
					return 0, fmt.Errorf("copy: data key %x is erased by record %d, before records it encrypts: %w", id[:4], k.ErasedBy, infertrail.ErrInvalid)
				}
				k.KEK, k.Wrapped = "", []byte("erased")
				c.erase[k.ErasedBy] = append(c.erase[k.ErasedBy], id)
				c.rep.Erased++
			}
			newKeys = append(newKeys, k)
		}
	}

	tx, err := c.dst.BeginAppend(ctx)
	if err != nil {
		return 0, fmt.Errorf("copy: destination: %w", err)
	}
	defer tx.Rollback()
	if tx.Size() != start {
		return 0, fmt.Errorf("copy: the destination holds %d records, not the %d copied: another writer is using it: %w", tx.Size(), start, infertrail.ErrConflict)
	}
	if len(newKeys) > 0 {
		if err := tx.AddKeys(ctx, newKeys); err != nil {
			return 0, fmt.Errorf("copy: add %d data keys: %w", len(newKeys), err)
		}
	}
	// The hashes each entry adds read those of the entries before it in
	// the batch, which are not stored yet.
	hr := newTxHashes(ctx, tx, start)
	reader := hr.reader()
	var bs []infertrail.Blob
	for i := range entries {
		h, err := tlog.StoredHashes(entries[i].Seq, entries[i].Leaf, reader)
		if err != nil {
			return 0, fmt.Errorf("copy: hash record %d: %w", entries[i].Seq, err)
		}
		hr.hashes = append(hr.hashes, h...)
		for _, r := range entries[i].Content {
			for _, id := range r.Blobs {
				if b, ok := blobs[id]; ok {
					bs = append(bs, b)
					delete(blobs, id)
				}
			}
		}
	}
	if err := tx.Append(ctx, entries, bs, hr.hashes); err != nil {
		return 0, fmt.Errorf("copy: append records [%d, %d): %w", start, next, err)
	}
	c.rep.Blobs += int64(len(bs))
	for by := start; by < next; by++ {
		ids, ok := c.erase[by]
		if !ok {
			continue
		}
		if _, err := tx.Erase(ctx, ids, by); err != nil {
			return 0, fmt.Errorf("copy: erase the %d keys record %d erased: %w", len(ids), by, err)
		}
		delete(c.erase, by)
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("copy: commit records [%d, %d): %w", start, next, err)
	}
	c.rep.Records += int64(len(entries))
	c.rep.Keys += int64(len(newKeys))
	return next, nil
}

func cloneEntry(e *infertrail.Entry) infertrail.Entry {
	out := *e
	out.Leaf = slices.Clone(e.Leaf)
	out.Content = slices.Clone(e.Content)
	for i := range out.Content {
		out.Content[i].Blobs = slices.Clone(out.Content[i].Blobs)
	}
	return out
}

// checkpoints copies the signed checkpoints, each checked with v and
// against dst's tree before it is stored.
func (c *copier) checkpoints(ctx context.Context, origin string, v note.Verifier) error {
	hr := StoreHashReader(ctx, c.dst)
	var cps []infertrail.StoredCheckpoint
	if err := c.src.Checkpoints(ctx, -1, func(sc infertrail.StoredCheckpoint) error {
		sc.Note = slices.Clone(sc.Note)
		cps = append(cps, sc)
		return nil
	}); err != nil {
		return fmt.Errorf("copy: read checkpoints: %w", err)
	}
	for _, sc := range cps {
		if sc.Size > c.rep.Records {
			// Signed for records appended after the copy began (by a
			// server still running): not copied, as those records.
			break
		}
		cp, err := ParseCheckpoint(sc.Note, origin, v)
		if err != nil {
			return fmt.Errorf("copy: the source's checkpoint of size %d: %w", sc.Size, err)
		}
		if cp.Size != sc.Size {
			return fmt.Errorf("copy: the source's checkpoint stored for size %d is signed for %d: %w", sc.Size, cp.Size, infertrail.ErrInvalid)
		}
		if cp.Size > 0 {
			root, err := tlog.TreeHash(cp.Size, hr)
			if err != nil {
				return fmt.Errorf("copy: tree hash at %d: %w", cp.Size, err)
			}
			if root != cp.Root {
				return &VerificationError{Index: -1, What: fmt.Sprintf("checkpoint of size %d", cp.Size),
					Err: fmt.Errorf("the copied log's first %d records hash to %s, not to the signed root %s: the source's tree is not what its key signed", cp.Size, root, cp.Root)}
			}
		}
		if err := c.dst.AddCheckpoint(ctx, sc); err != nil {
			return fmt.Errorf("copy: add the checkpoint of size %d: %w", sc.Size, err)
		}
		c.rep.Checkpoints++
	}
	return nil
}

// state copies the API tokens, legal holds and approvals.
func (c *copier) state(ctx context.Context) error {
	toks, err := c.src.Tokens(ctx)
	if err != nil {
		return fmt.Errorf("copy: read tokens: %w", err)
	}
	for _, t := range toks {
		revoked, by := t.Revoked, t.RevokedBy
		t.Revoked, t.RevokedBy = 0, ""
		if err := c.dst.AddToken(ctx, t); err != nil {
			return fmt.Errorf("copy: add token %v: %w", t.ID, err)
		}
		if revoked != 0 {
			if err := c.dst.RevokeToken(ctx, t.ID, by, revoked); err != nil {
				return fmt.Errorf("copy: revoke token %v: %w", t.ID, err)
			}
		}
		c.rep.Tokens++
	}
	holds, err := c.src.Holds(ctx, "", false)
	if err != nil {
		return fmt.Errorf("copy: read legal holds: %w", err)
	}
	for _, h := range holds {
		released, by := h.Released, h.ReleasedBy
		h.Released, h.ReleasedBy = 0, ""
		if err := c.dst.AddHold(ctx, h); err != nil {
			return fmt.Errorf("copy: add legal hold %v: %w", h.ID, err)
		}
		if released != 0 {
			if err := c.dst.ReleaseHold(ctx, h.Tenant, h.ID, by, released); err != nil {
				return fmt.Errorf("copy: release legal hold %v: %w", h.ID, err)
			}
		}
		c.rep.Holds++
	}
	var approvals []infertrail.Approval
	for after := (infertrail.UUID{}); ; {
		n := len(approvals)
		if err := c.src.ScanApprovals(ctx, after, infertrail.MaxQueryLimit, func(a *infertrail.Approval) error {
			approvals = append(approvals, *a)
			return nil
		}); err != nil {
			return fmt.Errorf("copy: read approvals: %w", err)
		}
		if len(approvals)-n < infertrail.MaxQueryLimit {
			break
		}
		after = approvals[len(approvals)-1].ID
	}
	for _, a := range approvals {
		status, approver, decided, record := a.Status, a.Approver, a.Decided, a.ApprovalRecord
		a.Status, a.Approver, a.Decided, a.ApprovalRecord = infertrail.ApprovalPending, "", time.Time{}, infertrail.UUID{}
		if err := c.dst.AddApproval(ctx, a); err != nil {
			return fmt.Errorf("copy: add approval %v: %w", a.ID, err)
		}
		if status != infertrail.ApprovalPending {
			if err := c.dst.DecideApproval(ctx, a.ID, status, approver, decided, record); err != nil {
				return fmt.Errorf("copy: decide approval %v: %w", a.ID, err)
			}
		}
		c.rep.Approvals++
	}
	return nil
}
