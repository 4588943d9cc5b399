package ledger

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/infertrail/infertrail"
	"github.com/infertrail/infertrail/keys"
)

// Report sums up a successful verification.
type Report struct {
	Records     int64     // records verified
	Checkpoints int       // signed checkpoints verified
	Root        tlog.Hash // root of the whole tree
	Latest      int64     // size of the latest checkpoint, 0 if none
	Unsigned    int64     // records past the latest checkpoint (verified, not yet signed)
	// ErasedBy maps the sequence number of each erasure record that
	// crypto-shredded content to the number of records whose content it
	// erased. Their leaves, proofs and checkpoints still verify; only their
	// content can no longer be checked against its commitments.
	ErasedBy map[int64]int64
	// Sealed counts records with encrypted content that was not checked
	// against its commitments because no key-encryption key was given.
	Sealed int64
	// Omitted counts records whose content was committed in the leaf but,
	// by the capture profile's choice, never stored.
	Omitted int64
}

// Erased returns the number of records whose content was erased.
func (r *Report) Erased() int64 {
	var n int64
	for _, c := range r.ErasedBy {
		n += c
	}
	return n
}

// verifyChunk is how many records are checked per step.
const verifyChunk = 4096

// VerifyStore checks a store from first principles, with no trust in what it
// says of itself: every leaf is canonical and parses; its sequence number is
// its position; the columns queries use agree with it; every content field
// matches its commitment; every stored tree hash equals the hash recomputed
// from the leaves; and every stored checkpoint is validly signed by v for
// origin and its root is the recomputed root of the tree of its size. It
// stops at the first failure and returns a *VerificationError that names
// the record (or the checkpoint) at fault. progress, if not nil, is called
// after each chunk with the records done and the total.
//
// Content is decrypted with kek to be checked. Content whose data key was
// erased is reported in Report.ErasedBy, not as a failure, provided the
// record that erased it is an erasure record; a data key or blob missing
// with no erasure record is a failure. With a nil kek, encrypted content is
// counted in Report.Sealed, unchecked.
func VerifyStore(ctx context.Context, s infertrail.Store, origin string, v note.Verifier, kek keys.KEK, progress func(done, total int64)) (Report, error) {
	rep := Report{ErasedBy: map[int64]int64{}}
	cr := NewContentReader(s, kek)
	erasures := map[int64]bool{} // sequence numbers of erasure records
	firstErased := map[int64]int64{}
	size, err := s.TreeSize(ctx)
	if err != nil {
		return rep, fmt.Errorf("verify: %w", err)
	}
	var (
		front   = &rightEdge{}
		cps     []infertrail.StoredCheckpoint // pending checkpoints, ascending
		cpAfter int64
		cpDone  bool
	)
	// nextCheckpoints pages through stored checkpoints.
	nextCheckpoints := func() error {
		if cpDone || len(cps) > 0 {
			return nil
		}
		errFull := errors.New("page full")
		err := s.Checkpoints(ctx, cpAfter, func(c infertrail.StoredCheckpoint) error {
			cps = append(cps, infertrail.StoredCheckpoint{Size: c.Size, Note: append([]byte(nil), c.Note...)})
			cpAfter = c.Size
			if len(cps) == 1024 {
				return errFull
			}
			return nil
		})
		if err != nil && !errors.Is(err, errFull) {
			return fmt.Errorf("verify: read checkpoints: %w", err)
		}
		if len(cps) == 0 {
			cpDone = true
		}
		return nil
	}
	// checkCheckpoints verifies every pending checkpoint of size n.
	checkCheckpoints := func(n int64) error {
		for {
			if err := nextCheckpoints(); err != nil {
				return err
			}
			if len(cps) == 0 || cps[0].Size != n {
				return nil
			}
			c := cps[0]
			cps = cps[1:]
			cp, err := ParseCheckpoint(c.Note, origin, v)
			if err != nil {
				return &VerificationError{Index: -1, What: fmt.Sprintf("checkpoint of size %d", c.Size), Err: err}
			}
			if cp.Size != c.Size {
				return &VerificationError{Index: -1, What: fmt.Sprintf("checkpoint stored as size %d", c.Size),
					Err: fmt.Errorf("its signed text says size %d", cp.Size)}
			}
			root, err := tlog.TreeHash(n, front)
			if err != nil {
				return fmt.Errorf("verify: tree hash at %d: %w", n, err)
			}
			if root != cp.Root {
				return &VerificationError{Index: -1, What: fmt.Sprintf("checkpoint of size %d", n),
					Err: fmt.Errorf("signed root %s, but the records give %s: records before %d were changed, removed or reordered after it was signed", cp.Root, root, n)}
			}
			rep.Checkpoints++
			rep.Latest = n
		}
	}

	// A reader goroutine fetches chunk k+1 while chunk k is checked.
	type chunk struct {
		start, end int64
		entries    []infertrail.Entry
		blobs      map[infertrail.BlobID]infertrail.Blob
		keys       map[infertrail.KeyID]keyState
		stored     []tlog.Hash
		err        error
	}
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	chunks := make(chan chunk, 1)
	go func() {
		defer close(chunks)
		for start := int64(0); start < size; start += verifyChunk {
			c := chunk{start: start, end: min(start+verifyChunk, size)}
			c.entries, c.blobs, c.keys, c.stored, c.err = readChunk(rctx, s, cr, c.start, c.end, size)
			select {
			case chunks <- c:
			case <-rctx.Done():
				return
			}
			if c.err != nil {
				return
			}
		}
	}()
	for c := range chunks {
		if c.err != nil {
			return rep, c.err
		}
		start, entries, stored := c.start, c.entries, c.stored
		// Check the entries on other goroutines while this one hashes.
		checked := make(chan error, 1)
		outcomes := make([]entryOutcome, len(entries))
		go func() { checked <- checkEntries(entries, c.blobs, c.keys, outcomes) }()
		next := 0
		var hashErr error
		for i := range entries {
			n := start + int64(i)
			if hashErr = checkCheckpoints(n); hashErr != nil {
				break
			}
			hs, err := tlog.StoredHashes(n, entries[i].Leaf, front)
			if err != nil {
				hashErr = fmt.Errorf("verify: hash record %d: %w", n, err)
				break
			}
			for j, h := range hs {
				if stored[next] != h {
					idx := tlog.StoredHashCount(start) + int64(next)
					level, k := tlog.SplitStoredHashIndex(idx)
					what := "stored hash"
					if level == 0 {
						what = "stored leaf hash"
					}
					hashErr = &VerificationError{Index: n, What: what,
						Err: fmt.Errorf("the stored hash at level %d index %d (records %d to %d) is not the hash of the records", level, k, k<<level, (k+1)<<level-1)}
					break
				}
				front.set(j, n>>j, h)
				next++
			}
			if hashErr != nil {
				break
			}
		}
		// An entry's own fault is more precise than the hash mismatch it causes.
		if err := <-checked; err != nil {
			return rep, err
		}
		if hashErr != nil {
			return rep, hashErr
		}
		for i, o := range outcomes {
			if entries[i].Kind == infertrail.KindErasure {
				erasures[entries[i].Seq] = true
			}
			if o.erasedBy >= 0 {
				rep.ErasedBy[o.erasedBy]++
				if _, ok := firstErased[o.erasedBy]; !ok {
					firstErased[o.erasedBy] = entries[i].Seq
				}
			}
			if o.sealed {
				rep.Sealed++
			}
			if o.omitted {
				rep.Omitted++
			}
		}
		rep.Records = c.end
		if progress != nil {
			progress(c.end, size)
		}
	}
	if err := ctx.Err(); err != nil {
		return rep, err
	}
	if err := checkCheckpoints(size); err != nil {
		return rep, err
	}
	if err := nextCheckpoints(); err != nil {
		return rep, err
	}
	if len(cps) > 0 {
		return rep, &VerificationError{Index: size, What: fmt.Sprintf("checkpoint of size %d", cps[0].Size),
			Err: fmt.Errorf("signed for %d records, but the log holds %d: records %d to %d were removed (the log was truncated)", cps[0].Size, size, size, cps[0].Size-1)}
	}
	// Content may only be missing because an erasure record erased it.
	var bad []int64
	for by := range rep.ErasedBy {
		if !erasures[by] {
			bad = append(bad, firstErased[by])
		}
	}
	if len(bad) > 0 {
		at := slices.Min(bad)
		var by int64
		for b, first := range firstErased {
			if first == at {
				by = b
			}
		}
		what := fmt.Sprintf("record %d is not an erasure record", by)
		if by >= size {
			what = fmt.Sprintf("there is no record %d", by)
		}
		return rep, &VerificationError{Index: at, What: "content",
			Err: fmt.Errorf("its data key is marked erased by record %d, but %s: content was removed without an erasure record", by, what)}
	}
	if size > 0 {
		root, err := tlog.TreeHash(size, front)
		if err != nil {
			return rep, fmt.Errorf("verify: tree hash: %w", err)
		}
		rep.Root = root
	}
	rep.Unsigned = size - rep.Latest
	return rep, nil
}

func hashRange(from, to int64) []int64 {
	out := make([]int64, to-from)
	for i := range out {
		out[i] = from + int64(i)
	}
	return out
}

// readChunk reads records [start, end), the blobs they reference and the
// stored hashes they should have produced.
func readChunk(ctx context.Context, s infertrail.Store, cr *ContentReader, start, end, size int64) ([]infertrail.Entry, map[infertrail.BlobID]infertrail.Blob, map[infertrail.KeyID]keyState, []tlog.Hash, error) {
	entries := make([]infertrail.Entry, 0, end-start)
	// The entries' leaves, content references and blob ids are copied into
	// a few shared blocks instead of a few allocations per entry.
	var (
		leaves block[byte]
		refs   block[infertrail.ContentRef]
		bids   block[infertrail.BlobID]
	)
	err := s.Entries(ctx, start, end, func(e *infertrail.Entry) error {
		c := *e
		c.Leaf = leaves.copy(e.Leaf, 256<<10)
		c.Content = refs.copy(e.Content, 1024)
		for i := range c.Content {
			c.Content[i].Blobs = bids.copy(c.Content[i].Blobs, 1024)
		}
		entries = append(entries, c)
		return nil
	})
	if ce := (*infertrail.CorruptError)(nil); errors.As(err, &ce) {
		return nil, nil, nil, nil, &VerificationError{Index: ce.Seq, What: "stored record", Err: ce.Err}
	}
	if err != nil {
		return nil, nil, nil, nil, fmt.Errorf("verify: read records %d to %d: %w", start, end-1, err)
	}
	for i := range entries {
		if want := start + int64(i); entries[i].Seq != want {
			return nil, nil, nil, nil, &VerificationError{Index: want, What: "record", Err: fmt.Errorf("missing (the next stored record is %d)", entries[i].Seq)}
		}
	}
	if int64(len(entries)) != end-start {
		return nil, nil, nil, nil, &VerificationError{Index: start + int64(len(entries)), What: "record",
			Err: fmt.Errorf("missing: the log head says %d records but the store holds records only to %d", size, start+int64(len(entries))-1)}
	}
	var kids []infertrail.KeyID
	for i := range entries {
		for _, r := range entries[i].Content {
			// Consecutive fields of a record share their key; keyStates
			// drops the other repeats.
			if !r.Key.IsZero() && (len(kids) == 0 || kids[len(kids)-1] != r.Key) {
				kids = append(kids, r.Key)
			}
		}
	}
	ks, err := cr.keyStates(ctx, kids)
	if err != nil {
		return nil, nil, nil, nil, fmt.Errorf("verify: read data keys of records %d to %d: %w", start, end-1, err)
	}
	// The blobs of a field whose key was erased, is missing or cannot be
	// opened are not read: checking the field does not open them.
	var ids []infertrail.BlobID
	for i := range entries {
		for _, r := range entries[i].Content {
			if _, err := fieldKey(r, ks); err == nil {
				ids = append(ids, r.Blobs...)
			}
		}
	}
	blobs, err := s.Blobs(ctx, ids)
	if err != nil {
		return nil, nil, nil, nil, fmt.Errorf("verify: read content of records %d to %d: %w", start, end-1, err)
	}
	stored, err := s.ReadHashes(ctx, hashRange(tlog.StoredHashCount(start), tlog.StoredHashCount(end)))
	if err != nil {
		return nil, nil, nil, nil, &VerificationError{Index: start, What: "tree hashes", Err: fmt.Errorf("read stored hashes for records %d to %d: %w", start, end-1, err)}
	}
	return entries, blobs, ks, stored, nil
}

// block hands out copies of slices from a shared array, and starts a new
// array when one is full, leaving the copies made before in the old one.
type block[T any] []T

// copy returns a copy of src, from an array of at least size elements.
func (b *block[T]) copy(src []T, size int) []T {
	if cap(*b)-len(*b) < len(src) {
		*b = make([]T, 0, max(size, len(src)))
	}
	n := len(*b)
	*b = append(*b, src...)
	return (*b)[n:len(*b):len(*b)]
}

// entryOutcome is what checking one entry found besides failures.
type entryOutcome struct {
	erasedBy int64 // ≥ 0: its content was erased by this record
	sealed   bool  // its content is encrypted and could not be opened
	omitted  bool  // some content was committed but not stored
}

// checkEntries checks each entry's leaf, columns and content, in parallel,
// and notes each one's outcome.
func checkEntries(entries []infertrail.Entry, blobs map[infertrail.BlobID]infertrail.Blob, ks map[infertrail.KeyID]keyState, outcomes []entryOutcome) error {
	workers := runtime.GOMAXPROCS(0)
	errs := make([]error, workers)
	var wg sync.WaitGroup
	opened := new(openedParts) // the chunk's blobs, opened once each
	for w := range workers {
		wg.Go(func() {
			var lf infertrail.LeafFields
			for i := w; i < len(entries); i += workers {
				o, err := checkEntry(&entries[i], blobs, ks, &lf, opened)
				if err != nil {
					errs[w] = err
					return
				}
				outcomes[i] = o
			}
		})
	}
	wg.Wait()
	// Report the lowest failing record.
	var first *VerificationError
	for _, err := range errs {
		var ve *VerificationError
		if errors.As(err, &ve) && (first == nil || ve.Index < first.Index) {
			first = ve
		}
	}
	if first != nil {
		return first
	}
	return nil
}

// CheckEntry checks one entry against itself: its leaf is canonical and
// carries its sequence number, its columns agree with the leaf, and each
// content field, rebuilt from blobs and decrypted by cr, matches its
// commitment. Content erased by an erasure record is not an error.
func CheckEntry(ctx context.Context, cr *ContentReader, e *infertrail.Entry, blobs map[infertrail.BlobID]infertrail.Blob) error {
	var kids []infertrail.KeyID
	for _, r := range e.Content {
		kids = append(kids, r.Key)
	}
	ks, err := cr.keyStates(ctx, kids)
	if err != nil {
		return err
	}
	_, err = checkEntry(e, blobs, ks, new(infertrail.LeafFields), nil)
	return err
}

func checkEntry(e *infertrail.Entry, blobs map[infertrail.BlobID]infertrail.Blob, ks map[infertrail.KeyID]keyState, lf *infertrail.LeafFields, opened *openedParts) (entryOutcome, error) {
	out := entryOutcome{erasedBy: -1}
	fail := func(what string, err error) (entryOutcome, error) {
		return out, &VerificationError{Index: e.Seq, What: what, Err: err}
	}
	if err := infertrail.CheckLeaf(e.Leaf, lf); err != nil {
		return fail("leaf", err)
	}
	if lf.Seq != e.Seq {
		return fail("leaf", fmt.Errorf("carries sequence number %d: records were swapped or moved", lf.Seq))
	}
	column := func(col string, got, inLog any) (entryOutcome, error) {
		return fail("column "+col, fmt.Errorf("stored %v but the leaf says %v", got, inLog))
	}
	switch {
	case e.ID != lf.ID:
		return column("id", e.ID, lf.ID)
	case e.Tenant != lf.Tenant:
		return column("tenant", e.Tenant, lf.Tenant)
	case e.Kind != lf.Kind:
		return column("kind", e.Kind, lf.Kind)
	case e.Time != lf.Time:
		return column("time", e.Time, lf.Time)
	case e.Received != lf.Received:
		return column("received", e.Received, lf.Received)
	case e.SessionID != lf.SessionID:
		return column("session_id", e.SessionID, lf.SessionID)
	case e.TraceID != lf.TraceID:
		return column("trace_id", e.TraceID, lf.TraceID)
	case e.ActorID != lf.ActorID:
		return column("actor_id", e.ActorID, lf.ActorID)
	}
	if len(e.Content) != len(lf.Commitments) {
		return fail("content", fmt.Errorf("%d content fields stored, %d committed in the leaf", len(e.Content), len(lf.Commitments)))
	}
	for _, ref := range e.Content {
		want, ok := lf.Commitment(ref.Field)
		if !ok {
			return fail("content field "+ref.Field, errors.New("stored but not committed in the leaf"))
		}
		v, err := assemble(ref, blobs, ks, opened)
		var ee *infertrail.ErasedError
		switch {
		case errors.As(err, &ee):
			out.erasedBy = ee.ErasedBy
			continue
		case errors.Is(err, ErrNoKEK):
			out.sealed = true
			continue
		case errors.Is(err, errOmitted):
			out.omitted = true
			continue
		case err != nil:
			return fail("content field "+ref.Field, err)
		}
		if got := infertrail.Commitment(ref.Salt[:], v); got != want {
			return fail("content field "+ref.Field, fmt.Errorf("does not match its commitment: the content was changed"))
		}
	}
	return out, nil
}

// rightEdge holds the right edge of a tree being rebuilt: the last complete
// node at each level, which is all tlog needs to add the next leaf or to
// compute the root. It is a tlog.HashReader of those nodes.
type rightEdge struct {
	nodes []frontNode // by level
}

type frontNode struct {
	set bool
	n   int64
	h   tlog.Hash
}

func (f *rightEdge) set(level int, n int64, h tlog.Hash) {
	for len(f.nodes) <= level {
		f.nodes = append(f.nodes, frontNode{})
	}
	f.nodes[level] = frontNode{true, n, h}
}

// ReadHashes returns the right-edge nodes with the stored-hash indexes idx.
func (f *rightEdge) ReadHashes(idx []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(idx))
	for i, x := range idx {
		level, n := tlog.SplitStoredHashIndex(x)
		if level >= len(f.nodes) || !f.nodes[level].set || f.nodes[level].n != n {
			return nil, fmt.Errorf("hash at level %d index %d is not on the right edge", level, n)
		}
		out[i] = f.nodes[level].h
	}
	return out, nil
}
