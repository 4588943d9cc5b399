// Package storetest is the conformance suite that every infertrail.Store
// implementation runs, in the style of testing/slogtest.
//
// A store's test calls Run with a function that opens a fresh, empty store:
//
//	func TestStore(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) infertrail.Store {
//			s, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "log.db"), sqlite.Config{})
//			if err != nil {
//				t.Fatal(err)
//			}
//			return s
//		})
//	}
//
// Run drives the store as the ledger's sequencer does (BeginAppend, Size,
// Lookup, tlog.StoredHashes over a reader that serves this transaction's
// hashes from memory and older ones from ReadHashes, Append, Commit) and
// checks the contract documented in package infertrail, plus these
// clarifications of it:
//
//   - An append transaction is bound to the context passed to BeginAppend:
//     once that context is done, the transaction is rolled back (its write
//     lock released) even if neither Commit nor Rollback is called, and a
//     later Commit returns an error.
//   - Rollback after Commit, and a second Rollback, return nil.
//   - Append rejects entries whose Seq do not run on without gaps, and a
//     hashes slice of the wrong length.
//   - AddToken stores a token's roles sorted and without repeats, and
//     refuses, with an error wrapping ErrInvalid, a token with an unknown
//     role, a zero hash, or a rate limit that is negative, NaN or infinite.
//   - RevokeToken refuses a time that is not positive (a Revoked of 0 means
//     not revoked) with an error wrapping ErrInvalid.
//   - Run closes each store it opens, once, when its subtest ends.
//
// The helpers (Sequencer, AppendEntries, AppendLeaves, MakeEntry, MakeBatch,
// RootHash, DiffEntry) serve other packages' tests too.
package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/infertrail/infertrail"
)

// Run runs the conformance suite: one subtest per behaviour, each on a fresh
// empty store from open. open may register cleanups with t; it must not
// close the store it returns.
func Run(t *testing.T, open func(t *testing.T) infertrail.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s infertrail.Store)
	}{
		{"Empty", testEmpty},
		{"AppendReadBack", testAppendReadBack},
		{"AppendTwiceInTx", testAppendTwiceInTx},
		{"Rollback", testRollback},
		{"RollbackAfterCommit", testRollbackAfterCommit},
		{"CancelThenCommit", testCancelThenCommit},
		{"CancelAbandoned", testCancelAbandoned},
		{"BlobDedup", testBlobDedup},
		{"ManyRepeated", testManyRepeated},
		{"Lookup", testLookup},
		{"UniqueIDs", testUniqueIDs},
		{"ReadHashes", testReadHashes},
		{"TreeHashes", testTreeHashes},
		{"RejectBadAppend", testRejectBadAppend},
		{"Entries", testEntries},
		{"Checkpoints", testCheckpoints},
		{"Cosignatures", testCosignatures},
		{"Concurrent", testConcurrent},
	}
	tests = append(tests, privacyTests...)
	tests = append(tests, tokenTests...)
	tests = append(tests, indexTests...)
	tests = append(tests, approvalTests...)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := open(t)
			t.Cleanup(func() {
				if err := s.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			})
			tc.fn(t, s)
		})
	}
	t.Run("Close", func(t *testing.T) { testClose(t, open(t)) })
}

func testEmpty(t *testing.T, s infertrail.Store) {
	ctx := t.Context()
	if n, err := s.TreeSize(ctx); err != nil || n != 0 {
		t.Errorf("TreeSize = %d, %v; want 0, nil", n, err)
	}
	if _, err := s.LatestCheckpoint(ctx); !errors.Is(err, infertrail.ErrNotFound) {
		t.Errorf("LatestCheckpoint: err = %v, want ErrNotFound", err)
	}
	if _, err := s.ReadHashes(ctx, []int64{0}); !errors.Is(err, infertrail.ErrNotFound) {
		t.Errorf("ReadHashes([0]): err = %v, want ErrNotFound", err)
	}
	if hs, err := s.ReadHashes(ctx, nil); err != nil || len(hs) != 0 {
		t.Errorf("ReadHashes(nil) = %d hashes, %v; want none, nil", len(hs), err)
	}
	e, _ := MakeEntry(0)
	if _, err := s.EntryByID(ctx, e.ID); !errors.Is(err, infertrail.ErrNotFound) {
		t.Errorf("EntryByID: err = %v, want ErrNotFound", err)
	}
	if _, err := infertrail.ReadEntry(ctx, s, 0); !errors.Is(err, infertrail.ErrNotFound) {
		t.Errorf("ReadEntry(0): err = %v, want ErrNotFound", err)
	}
	if got := collect(t, s, 0, 10); len(got) != 0 {
		t.Errorf("Entries(0, 10) gave %d entries, want none", len(got))
	}
	if bs, err := s.Blobs(ctx, []infertrail.BlobID{{1}}); err != nil || len(bs) != 0 {
		t.Errorf("Blobs = %d blobs, %v; want none, nil", len(bs), err)
	}
	if cs := checkpoints(t, s, -1); len(cs) != 0 {
		t.Errorf("Checkpoints gave %d, want none", len(cs))
	}

	tx, err := s.BeginAppend(ctx)
	if err != nil {
		t.Fatalf("BeginAppend: %v", err)
	}
	defer tx.Rollback()
	if tx.Size() != 0 {
		t.Errorf("Size = %d, want 0", tx.Size())
	}
	if m, err := tx.Lookup(ctx, []infertrail.UUID{e.ID}); err != nil || len(m) != 0 {
		t.Errorf("Lookup = %v, %v; want empty, nil", m, err)
	}
	if _, err := tx.ReadHashes(ctx, []int64{0}); err == nil {
		t.Errorf("tx.ReadHashes([0]) on an empty log succeeded")
	}
	if err := tx.Rollback(); err != nil {
		t.Errorf("Rollback: %v", err)
	}
}

func testAppendReadBack(t *testing.T, s infertrail.Store) {
	ctx := t.Context()
	var want []infertrail.Entry
	wantBlobs := map[infertrail.BlobID]infertrail.Blob{}
	for _, b := range [][2]int{{0, 1}, {1, 12}, {13, 30}, {43, 150}} {
		entries, blobs := MakeBatch(b[0], b[1])
		seqs := AppendEntries(t, s, entries, blobs)
		for i, seq := range seqs {
			if seq != int64(b[0]+i) {
				t.Fatalf("entry %d got Seq %d", b[0]+i, seq)
			}
		}
		want = append(want, entries...)
		for _, bl := range blobs {
			wantBlobs[bl.ID] = bl
		}
	}
	if n, err := s.TreeSize(ctx); err != nil || n != int64(len(want)) {
		t.Fatalf("TreeSize = %d, %v; want %d", n, err, len(want))
	}
	got := collect(t, s, 0, int64(len(want)))
	if len(got) != len(want) {
		t.Fatalf("Entries gave %d entries, want %d", len(got), len(want))
	}
	for i := range want {
		if d := DiffEntry(&want[i], &got[i]); d != "" {
			t.Errorf("Entries: %s", d)
		}
		byID, err := s.EntryByID(ctx, want[i].ID)
		if err != nil {
			t.Errorf("EntryByID(%v): %v", want[i].ID, err)
		} else if d := DiffEntry(&want[i], &byID); d != "" {
			t.Errorf("EntryByID: %s", d)
		}
		bySeq, err := infertrail.ReadEntry(ctx, s, want[i].Seq)
		if err != nil {
			t.Errorf("ReadEntry(%d): %v", want[i].Seq, err)
		} else if d := DiffEntry(&want[i], &bySeq); d != "" {
			t.Errorf("ReadEntry: %s", d)
		}
	}
	ids := make([]infertrail.BlobID, 0, len(wantBlobs)+1)
	for id := range wantBlobs {
		ids = append(ids, id)
	}
	missing := infertrail.BlobID{0xff, 0xee}
	ids = append(ids, missing)
	bs, err := s.Blobs(ctx, ids)
	if err != nil {
		t.Fatalf("Blobs: %v", err)
	}
	if len(bs) != len(wantBlobs) {
		t.Errorf("Blobs returned %d blobs, want %d", len(bs), len(wantBlobs))
	}
	if _, ok := bs[missing]; ok {
		t.Errorf("Blobs returned a blob that was never stored")
	}
	for id, w := range wantBlobs {
		g, ok := bs[id]
		if !ok {
			t.Errorf("blob %x missing", id[:4])
			continue
		}
		if g.ID != w.ID || g.Codec != w.Codec || !bytes.Equal(g.Data, w.Data) || g.Key != w.Key {
			t.Errorf("blob %x = {%x %d %d bytes key %x}, want {%x %d %d bytes key %x}", id[:4], g.ID[:4], g.Codec, len(g.Data), g.Key[:4], w.ID[:4], w.Codec, len(w.Data), w.Key[:4])
		}
	}
	// Every fifth blob in id order, and a missing id among them: most blobs
	// stored between the first and the last are not asked for.
	slices.SortFunc(ids, func(a, b infertrail.BlobID) int { return bytes.Compare(a[:], b[:]) })
	var sparse []infertrail.BlobID
	for i := 0; i < len(ids); i += 5 {
		sparse = append(sparse, ids[i])
	}
	sparse = append(sparse, infertrail.BlobID{0x80})
	bs, err = s.Blobs(ctx, sparse)
	if err != nil {
		t.Fatalf("Blobs: %v", err)
	}
	n := 0
	for _, id := range sparse {
		if w, ok := wantBlobs[id]; ok {
			n++
			if g := bs[id]; g.ID != id || !bytes.Equal(g.Data, w.Data) {
				t.Errorf("blob %x = {%x %d bytes} from a sparse read, want {%x %d bytes}", id[:4], g.ID[:4], len(g.Data), id[:4], len(w.Data))
			}
		}
	}
	if len(bs) != n {
		t.Errorf("a sparse read returned %d blobs, want %d", len(bs), n)
	}
	checkTree(t, s, leavesOf(want))
}

func testAppendTwiceInTx(t *testing.T, s infertrail.Store) {
	ctx := t.Context()
	first, _ := MakeBatch(0, 3)
	AppendEntries(t, s, first, nil)

	tx, err := s.BeginAppend(ctx)
	if err != nil {
		t.Fatalf("BeginAppend: %v", err)
	}
	defer tx.Rollback()
	if tx.Size() != 3 {
		t.Fatalf("Size = %d, want 3", tx.Size())
	}
	seq := NewSequencer(tx)
	a, ab := MakeBatch(3, 5)
	b, bb := MakeBatch(8, 6)
	if err := seq.Append(ctx, a, ab); err != nil {
		t.Fatalf("first Append: %v", err)
	}
	if err := seq.Append(ctx, b, bb); err != nil {
		t.Fatalf("second Append: %v", err)
	}
	if tx.Size() != 3 {
		t.Errorf("Size after Append = %d, want 3 (the size when the transaction began)", tx.Size())
	}
	if err := tx.Commit(); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	want := slices.Concat(first, a, b)
	got := collect(t, s, 0, 100)
	if len(got) != len(want) {
		t.Fatalf("Entries gave %d entries, want %d", len(got), len(want))
	}
	for i := range want {
		if d := DiffEntry(&want[i], &got[i]); d != "" {
			t.Errorf("%s", d)
		}
	}
	checkTree(t, s, leavesOf(want))
}

func testRollback(t *testing.T, s infertrail.Store) {
	ctx := t.Context()
	committed, cb := MakeBatch(0, 4)
	AppendEntries(t, s, committed, cb)
	before := snapshot(t, s)

	tx, err := s.BeginAppend(ctx)
	if err != nil {
		t.Fatalf("BeginAppend: %v", err)
	}
	entries, blobs := MakeBatch(100, 20)
	if err := NewSequencer(tx).Append(ctx, entries, blobs); err != nil {
		t.Fatalf("Append: %v", err)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatalf("Rollback: %v", err)
	}
	if err := tx.Rollback(); err != nil {
		t.Errorf("second Rollback: %v", err)
	}
	after := snapshot(t, s)
	after.diff(t, before)
	checkAbsent(t, s, entries, blobs)

	// The log goes on from where it was.
	more, mb := MakeBatch(4, 3)
	AppendEntries(t, s, more, mb)
	checkTree(t, s, leavesOf(slices.Concat(committed, more)))
}

func testRollbackAfterCommit(t *testing.T, s infertrail.Store) {
	ctx := t.Context()
	tx, err := s.BeginAppend(ctx)
	if err != nil {
		t.Fatalf("BeginAppend: %v", err)
	}
	entries, blobs := MakeBatch(0, 5)
	if err := NewSequencer(tx).Append(ctx, entries, blobs); err != nil {
		t.Fatalf("Append: %v", err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	if err := tx.Rollback(); err != nil {
		t.Errorf("Rollback after Commit: %v", err)
	}
	if n, err := s.TreeSize(ctx); err != nil || n != 5 {
		t.Errorf("TreeSize = %d, %v; want 5", n, err)
	}
	checkTree(t, s, leavesOf(entries))
}

func testCancelThenCommit(t *testing.T, s infertrail.Store) {
	committed, _ := MakeBatch(0, 2)
	AppendEntries(t, s, committed, nil)
	before := snapshot(t, s)

	ctx, cancel := context.WithCancel(t.Context())
	tx, err := s.BeginAppend(ctx)
	if err != nil {
		t.Fatalf("BeginAppend: %v", err)
	}
	defer tx.Rollback()
	entries, blobs := MakeBatch(2, 10)
	if err := NewSequencer(tx).Append(ctx, entries, blobs); err != nil {
		t.Fatalf("Append: %v", err)
	}
	cancel()
	if err := tx.Commit(); err == nil {
		t.Fatalf("Commit after the transaction's context was cancelled succeeded")
	}
	tx.Rollback()
	snapshot(t, s).diff(t, before)
	checkAbsent(t, s, entries, blobs)
}

func testCancelAbandoned(t *testing.T, s infertrail.Store) {
	ctx, cancel := context.WithCancel(t.Context())
	tx, err := s.BeginAppend(ctx)
	if err != nil {
		t.Fatalf("BeginAppend: %v", err)
	}
	entries, blobs := MakeBatch(0, 10)
	if err := NewSequencer(tx).Append(ctx, entries, blobs); err != nil {
		t.Fatalf("Append: %v", err)
	}
	cancel() // and never call Commit or Rollback

	// The abandoned transaction must release the log's write lock.
	wctx, wcancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer wcancel()
	tx2, err := s.BeginAppend(wctx)
	if err != nil {
		t.Fatalf("BeginAppend after abandoning a transaction: %v", err)
	}
	defer tx2.Rollback()
	if tx2.Size() != 0 {
		t.Errorf("Size = %d after an abandoned transaction, want 0", tx2.Size())
	}
	if err := tx2.Rollback(); err != nil {
		t.Errorf("Rollback: %v", err)
	}
	snapshot(t, s).diff(t, storeState{})
	checkAbsent(t, s, entries, blobs)
	if err := tx.Commit(); err == nil {
		t.Errorf("Commit of the abandoned transaction succeeded")
	}
	snapshot(t, s).diff(t, storeState{})
}

func testBlobDedup(t *testing.T, s infertrail.Store) {
	ctx := t.Context()
	id := infertrail.BlobID{0xb1, 0x0b}
	other := infertrail.BlobID{0xb2}
	ref := func(ids ...infertrail.BlobID) []infertrail.ContentRef {
		return []infertrail.ContentRef{{Field: "request.messages", Array: true, Salt: [16]byte{9}, Blobs: ids}}
	}
	e1, _ := MakeEntry(1)
	e2, _ := MakeEntry(2)
	e1.Content, e2.Content = ref(id), ref(id, other)
	AppendEntries(t, s, []infertrail.Entry{e1, e2}, []infertrail.Blob{
		{ID: id, Codec: infertrail.CodecRaw, Data: []byte(`"first"`)},
		{ID: other, Codec: infertrail.CodecZstd, Data: []byte{0x28, 0xb5, 0x2f, 0xfd}},
		{ID: id, Codec: infertrail.CodecZstd, Data: []byte(`"second, same batch"`)},
	})
	e3, _ := MakeEntry(3)
	e3.Content = ref(id, id)
	batch := []infertrail.Entry{e3}
	AppendEntries(t, s, batch, []infertrail.Blob{
		{ID: id, Codec: infertrail.CodecZstd, Data: []byte(`"third, later batch"`)},
	})
	bs, err := s.Blobs(ctx, []infertrail.BlobID{id, other, id})
	if err != nil {
		t.Fatalf("Blobs: %v", err)
	}
	if len(bs) != 2 {
		t.Errorf("Blobs returned %d blobs, want 2", len(bs))
	}
	if b := bs[id]; b.ID != id || b.Codec != infertrail.CodecRaw || string(b.Data) != `"first"` {
		t.Errorf("blob = {%x %d %q}, want the first one stored: {%x 0 %q}", b.ID[:2], b.Codec, b.Data, id[:2], `"first"`)
	}
	if b := bs[other]; b.Codec != infertrail.CodecZstd || !bytes.Equal(b.Data, []byte{0x28, 0xb5, 0x2f, 0xfd}) {
		t.Errorf("blob = {%d %x}, want {1 28b52ffd}", b.Codec, b.Data)
	}
	got, err := s.EntryByID(ctx, e3.ID)
	if err != nil {
		t.Fatalf("EntryByID: %v", err)
	}
	if d := DiffEntry(&batch[0], &got); d != "" {
		t.Errorf("%s", d)
	}
}

// testManyRepeated: many keys and blobs in one call (a store may write
// those differently from a few), among them ids stored before and ids
// repeated in the call: each id is stored once, the first copy wins.
func testManyRepeated(t *testing.T, s infertrail.Store) {
	ctx := t.Context()
	const n = 100
	keyAt := func(round, i int) infertrail.DataKey {
		k := TestKey("acme", fmt.Sprintf("many-%d", i))
		k.Wrapped = fmt.Appendf(nil, "wrapped in round %d", round)
		return k
	}
	blobAt := func(round, i int) infertrail.Blob {
		var id infertrail.BlobID
		copy(id[:], fmt.Sprintf("blob %d", i))
		return infertrail.Blob{ID: id, Codec: infertrail.CodecRaw, Data: fmt.Appendf(nil, `"blob %d, round %d"`, i, round)}
	}
	// Round 0 stores the even ones; round 1 sends all, the even ones again,
	// and the last one twice.
	var keys0, keys1 []infertrail.DataKey
	var blobs0, blobs1 []infertrail.Blob
	for i := range n {
		if i%2 == 0 {
			keys0, blobs0 = append(keys0, keyAt(0, i)), append(blobs0, blobAt(0, i))
		}
		keys1, blobs1 = append(keys1, keyAt(1, i)), append(blobs1, blobAt(1, i))
	}
	keys1, blobs1 = append(keys1, keyAt(2, n-1)), append(blobs1, blobAt(2, n-1))
	for round, kb := range []struct {
		keys  []infertrail.DataKey
		blobs []infertrail.Blob
	}{{keys0, blobs0}, {keys1, blobs1}} {
		e, _ := MakeEntry(1000 + round)
		e.Content = []infertrail.ContentRef{{Field: "request.messages", Array: true, Salt: [16]byte{1}}}
		for _, b := range kb.blobs {
			e.Content[0].Blobs = append(e.Content[0].Blobs, b.ID)
		}
		tx, err := s.BeginAppend(ctx)
		if err != nil {
			t.Fatalf("BeginAppend: %v", err)
		}
		if err := tx.AddKeys(ctx, kb.keys); err != nil {
			t.Fatalf("round %d: AddKeys of %d keys: %v", round, len(kb.keys), err)
		}
		if err := NewSequencer(tx).Append(ctx, []infertrail.Entry{e}, kb.blobs); err != nil {
			t.Fatalf("round %d: Append with %d blobs: %v", round, len(kb.blobs), err)
		}
		if err := tx.Commit(); err != nil {
			t.Fatalf("round %d: Commit: %v", round, err)
		}
	}
	var ids []infertrail.KeyID
	var bids []infertrail.BlobID
	for i := range n {
		ids, bids = append(ids, keyAt(0, i).ID), append(bids, blobAt(0, i).ID)
	}
	gotKeys, err := s.DataKeys(ctx, ids)
	if err != nil {
		t.Fatalf("DataKeys: %v", err)
	}
	gotBlobs, err := s.Blobs(ctx, bids)
	if err != nil {
		t.Fatalf("Blobs: %v", err)
	}
	if len(gotKeys) != n || len(gotBlobs) != n {
		t.Fatalf("stored %d keys and %d blobs, want %d of each", len(gotKeys), len(gotBlobs), n)
	}
	for i := range n {
		first := i % 2 // round 0 stored the even ones, round 1 the rest
		if want := keyAt(first, i); !sameKey(gotKeys[want.ID], want) {
			t.Errorf("key %d = %q, want the first stored: %q", i, gotKeys[want.ID].Wrapped, want.Wrapped)
		}
		if want := blobAt(first, i); !bytes.Equal(gotBlobs[want.ID].Data, want.Data) {
			t.Errorf("blob %d = %s, want the first stored: %s", i, gotBlobs[want.ID].Data, want.Data)
		}
	}
}

// testUniqueIDs: a transaction that claims infertrail.UniqueIDs refuses an
// id already in the log with ErrConflict, alone or among many new ones,
// and the rollback leaves the log as it was.
func testUniqueIDs(t *testing.T, s infertrail.Store) {
	ctx := t.Context()
	committed, blobs := MakeBatch(0, 3)
	AppendEntries(t, s, committed, blobs)
	for _, n := range []int{1, 40} { // one row, and the multi-row insert
		t.Run(fmt.Sprintf("%d entries", n), func(t *testing.T) {
			tx, err := s.BeginAppend(ctx)
			if err != nil {
				t.Fatalf("BeginAppend: %v", err)
			}
			defer tx.Rollback()
			u, ok := tx.(infertrail.UniqueIDs)
			if !ok || !u.UniqueIDs() {
				t.Skip("the store does not claim unique ids")
			}
			batch, bs := MakeBatch(100, n)
			batch[n/2].ID = committed[1].ID
			err = NewSequencer(tx).Append(ctx, batch, bs)
			if !errors.Is(err, infertrail.ErrConflict) {
				t.Fatalf("Append of an id already in the log: %v, want ErrConflict", err)
			}
			if err := tx.Commit(); err == nil {
				t.Error("Commit after a failed Append succeeded")
			}
			if size, err := s.TreeSize(ctx); err != nil || size != 3 {
				t.Errorf("TreeSize = %d, %v; want 3", size, err)
			}
		})
	}
}

func testLookup(t *testing.T, s infertrail.Store) {
	ctx := t.Context()
	committed, _ := MakeBatch(0, 6)
	AppendEntries(t, s, committed, nil)

	tx, err := s.BeginAppend(ctx)
	if err != nil {
		t.Fatalf("BeginAppend: %v", err)
	}
	rolled, _ := MakeBatch(6, 3)
	if err := NewSequencer(tx).Append(ctx, rolled, nil); err != nil {
		t.Fatalf("Append: %v", err)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatalf("Rollback: %v", err)
	}

	tx, err = s.BeginAppend(ctx)
	if err != nil {
		t.Fatalf("BeginAppend: %v", err)
	}
	defer tx.Rollback()
	never, _ := MakeEntry(99)
	ids := []infertrail.UUID{committed[4].ID, rolled[0].ID, never.ID, committed[0].ID, rolled[2].ID, committed[4].ID}
	m, err := tx.Lookup(ctx, ids)
	if err != nil {
		t.Fatalf("Lookup: %v", err)
	}
	if len(m) != 2 {
		t.Errorf("Lookup found %d ids, want 2", len(m))
	}
	for _, e := range []infertrail.Entry{committed[0], committed[4]} {
		got, ok := m[e.ID]
		if !ok {
			t.Errorf("Lookup did not find committed entry %d", e.Seq)
			continue
		}
		if got.Seq != e.Seq || got.MAC != e.MAC {
			t.Errorf("Lookup(%v) = Seq %d MAC %x, want Seq %d MAC %x", e.ID, got.Seq, got.MAC, e.Seq, e.MAC)
		}
	}
	if m, err := tx.Lookup(ctx, nil); err != nil || len(m) != 0 {
		t.Errorf("Lookup(nil) = %v, %v; want empty, nil", m, err)
	}
	for _, e := range rolled {
		if _, err := s.EntryByID(ctx, e.ID); !errors.Is(err, infertrail.ErrNotFound) {
			t.Errorf("EntryByID of a rolled-back entry: err = %v, want ErrNotFound", err)
		}
	}
}

func testReadHashes(t *testing.T, s infertrail.Store) {
	ctx := t.Context()
	leaves := make([][]byte, 10)
	for i := range leaves {
		leaves[i] = leafIndex("rh", i)
	}
	AppendLeaves(t, s, leaves)
	want := storedHashes(t, leaves)
	count := int64(len(want))

	idx := []int64{count - 1, 5, 0, 5, 3}
	hs, err := s.ReadHashes(ctx, idx)
	if err != nil {
		t.Fatalf("ReadHashes(%v): %v", idx, err)
	}
	if len(hs) != len(idx) {
		t.Fatalf("ReadHashes(%v) returned %d hashes", idx, len(hs))
	}
	for i, x := range idx {
		if hs[i] != want[x] {
			t.Errorf("ReadHashes: hash %d = %v, want %v", x, hs[i], want[x])
		}
	}
	for _, bad := range [][]int64{{count}, {0, count + 100}, {1 << 40}} {
		if _, err := s.ReadHashes(ctx, bad); !errors.Is(err, infertrail.ErrNotFound) {
			t.Errorf("ReadHashes(%v): err = %v, want ErrNotFound", bad, err)
		}
	}
	if _, err := s.ReadHashes(ctx, []int64{-1}); err == nil {
		t.Errorf("ReadHashes([-1]) succeeded")
	}

	tx, err := s.BeginAppend(ctx)
	if err != nil {
		t.Fatalf("BeginAppend: %v", err)
	}
	defer tx.Rollback()
	hs, err = tx.ReadHashes(ctx, idx)
	if err != nil {
		t.Fatalf("tx.ReadHashes(%v): %v", idx, err)
	}
	for i, x := range idx {
		if i >= len(hs) || hs[i] != want[x] {
			t.Errorf("tx.ReadHashes: wrong hash %d", x)
		}
	}
	if _, err := tx.ReadHashes(ctx, []int64{count}); err == nil {
		t.Errorf("tx.ReadHashes(%d) at StoredHashCount(Size()) succeeded", count)
	}
}

func testTreeHashes(t *testing.T, s infertrail.Store) {
	ctx := t.Context()
	var leaves [][]byte
	var sizes []int64
	for _, n := range []int{1, 7, 256, 1000, 3, 64} {
		batch := make([][]byte, n)
		for i := range batch {
			batch[i] = leafIndex("tree", len(leaves)+i)
		}
		seqs := AppendLeaves(t, s, batch)
		if seqs[0] != int64(len(leaves)) {
			t.Fatalf("batch got first Seq %d, want %d", seqs[0], len(leaves))
		}
		leaves = append(leaves, batch...)
		sizes = append(sizes, int64(len(leaves)))
		checkTreeHash(t, s, leaves)
	}
	checkTree(t, s, leaves)

	r := HashReader(ctx, s)
	for i, old := range sizes {
		oldHash := RootHash(leaves[:old])
		for _, n := range sizes[i+1:] {
			p, err := tlog.ProveTree(n, old, r)
			if err != nil {
				t.Fatalf("ProveTree(%d, %d): %v", n, old, err)
			}
			if err := tlog.CheckTree(p, n, RootHash(leaves[:n]), old, oldHash); err != nil {
				t.Errorf("CheckTree(%d, %d): %v", n, old, err)
			}
		}
		for _, rec := range []int64{0, old / 2, old - 1} {
			p, err := tlog.ProveRecord(old, rec, r)
			if err != nil {
				t.Fatalf("ProveRecord(%d, %d): %v", old, rec, err)
			}
			if err := tlog.CheckRecord(p, old, oldHash, rec, tlog.RecordHash(leaves[rec])); err != nil {
				t.Errorf("CheckRecord(%d, %d): %v", old, rec, err)
			}
		}
	}
}

func testRejectBadAppend(t *testing.T, s infertrail.Store) {
	ctx := t.Context()
	committed, cb := MakeBatch(0, 5)
	AppendEntries(t, s, committed, cb)
	before := snapshot(t, s)

	cases := []struct {
		name   string
		mutate func(entries []infertrail.Entry, hashes []tlog.Hash) []tlog.Hash
	}{
		{"first seq ahead", func(e []infertrail.Entry, h []tlog.Hash) []tlog.Hash {
			for i := range e {
				e[i].Seq++
			}
			return h
		}},
		{"first seq behind", func(e []infertrail.Entry, h []tlog.Hash) []tlog.Hash {
			for i := range e {
				e[i].Seq--
			}
			return h
		}},
		{"gap", func(e []infertrail.Entry, h []tlog.Hash) []tlog.Hash {
			e[2].Seq++
			e[3].Seq++
			return h
		}},
		{"repeated seq", func(e []infertrail.Entry, h []tlog.Hash) []tlog.Hash {
			e[3].Seq = e[2].Seq
			return h
		}},
		{"hash missing", func(e []infertrail.Entry, h []tlog.Hash) []tlog.Hash { return h[:len(h)-1] }},
		{"hash extra", func(e []infertrail.Entry, h []tlog.Hash) []tlog.Hash { return append(h, tlog.Hash{}) }},
		{"duplicate id", func(e []infertrail.Entry, h []tlog.Hash) []tlog.Hash {
			e[1].ID = committed[2].ID
			return h
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tx, err := s.BeginAppend(ctx)
			if err != nil {
				t.Fatalf("BeginAppend: %v", err)
			}
			defer tx.Rollback()
			entries, blobs := MakeBatch(5, 6)
			hashes, _, err := NewSequencer(tx).Hashes(ctx, entries)
			if err != nil {
				t.Fatalf("Hashes: %v", err)
			}
			hashes = tc.mutate(entries, hashes)
			if err := tx.Append(ctx, entries, blobs, hashes); err == nil {
				t.Errorf("Append succeeded")
			}
			if err := tx.Rollback(); err != nil {
				t.Errorf("Rollback: %v", err)
			}
			snapshot(t, s).diff(t, before)
		})
	}
	more, mb := MakeBatch(5, 6)
	AppendEntries(t, s, more, mb)
	checkTree(t, s, leavesOf(slices.Concat(committed, more)))
}

func testEntries(t *testing.T, s infertrail.Store) {
	ctx := t.Context()
	want, blobs := MakeBatch(0, 20)
	AppendEntries(t, s, want, blobs)
	for _, r := range []struct{ start, end, wantStart, wantEnd int64 }{
		{0, 0, 0, 0},
		{5, 5, 0, 0},
		{7, 3, 0, 0},
		{0, 20, 0, 20},
		{3, 9, 3, 9},
		{19, 20, 19, 20},
		{15, 1000, 15, 20},
		{20, 30, 0, 0},
		{500, 600, 0, 0},
	} {
		got := collect(t, s, r.start, r.end)
		if int64(len(got)) != r.wantEnd-r.wantStart {
			t.Errorf("Entries(%d, %d) gave %d entries, want %d", r.start, r.end, len(got), r.wantEnd-r.wantStart)
			continue
		}
		for i := range got {
			if d := DiffEntry(&want[r.wantStart+int64(i)], &got[i]); d != "" {
				t.Errorf("Entries(%d, %d): %s", r.start, r.end, d)
			}
		}
	}

	stop := errors.New("stop here")
	calls := 0
	err := s.Entries(ctx, 0, 20, func(e *infertrail.Entry) error {
		calls++
		if e.Seq == 4 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) {
		t.Errorf("Entries returned %v, want fn's error", err)
	}
	if calls != 5 {
		t.Errorf("Entries called fn %d times after it failed at the 5th, want 5", calls)
	}
}

// testCosignatures adds witnesses' signature lines to a stored checkpoint,
// from several goroutines at once: every line is kept once, the rest of
// the note unchanged; a checkpoint not stored, and what is no signature
// line, are refused.
func testCosignatures(t *testing.T, s infertrail.Store) {
	c, ok := s.(infertrail.Cosigner)
	if !ok {
		t.Skip("the store keeps no cosignatures")
	}
	ctx := t.Context()
	AppendLeaves(t, s, [][]byte{leafIndex("cosig", 0), leafIndex("cosig", 1)})
	note := []byte("example.com/log\n2\nhash\n\n— example.com/log sig\n")
	if err := s.AddCheckpoint(ctx, infertrail.StoredCheckpoint{Size: 2, Note: note}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			line := fmt.Appendf(nil, "— witness%d.example w%d\n", i%4, i%4)
			if err := c.AddCosignatures(ctx, 2, line); err != nil {
				t.Errorf("AddCosignatures: %v", err)
			}
		})
	}
	wg.Wait()
	latest, err := s.LatestCheckpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(latest.Note, note) || len(latest.Note) != len(note)+4*len("— witness0.example w0\n") {
		t.Fatalf("the cosigned note:\n%s", latest.Note)
	}
	for i := range 4 {
		if n := bytes.Count(latest.Note, fmt.Appendf(nil, "— witness%d.example w%d\n", i, i)); n != 1 {
			t.Errorf("witness %d's line is there %d times:\n%s", i, n, latest.Note)
		}
	}
	if err := c.AddCosignatures(ctx, 1, []byte("— w x\n")); !errors.Is(err, infertrail.ErrNotFound) {
		t.Errorf("AddCosignatures to a checkpoint not stored: %v, want ErrNotFound", err)
	}
	if err := c.AddCosignatures(ctx, 2, []byte("not a signature\n")); !errors.Is(err, infertrail.ErrInvalid) {
		t.Errorf("AddCosignatures of what is no signature line: %v, want ErrInvalid", err)
	}
	if again, _ := s.LatestCheckpoint(ctx); !bytes.Equal(again.Note, latest.Note) {
		t.Errorf("a refused AddCosignatures changed the note:\n%s", again.Note)
	}
}

func testCheckpoints(t *testing.T, s infertrail.Store) {
	ctx := t.Context()
	leaves := make([][]byte, 8)
	for i := range leaves {
		leaves[i] = leafIndex("cp", i)
	}
	AppendLeaves(t, s, leaves)
	note := func(size int64, who string) []byte {
		return fmt.Appendf(nil, "example.com/log\n%d\nhash\n\n— %s sig\n", size, who)
	}
	for _, c := range []infertrail.StoredCheckpoint{
		{Size: 3, Note: note(3, "a")},
		{Size: 1, Note: note(1, "a")},
		{Size: 8, Note: note(8, "a")},
		{Size: 3, Note: note(3, "b")},
		{Size: 5, Note: note(5, "a")},
		{Size: 8, Note: note(8, "b")},
	} {
		if err := s.AddCheckpoint(ctx, c); err != nil {
			t.Fatalf("AddCheckpoint(%d): %v", c.Size, err)
		}
	}
	latest, err := s.LatestCheckpoint(ctx)
	if err != nil {
		t.Fatalf("LatestCheckpoint: %v", err)
	}
	if latest.Size != 8 || !bytes.Equal(latest.Note, note(8, "a")) {
		t.Errorf("LatestCheckpoint = %d %q, want 8 %q", latest.Size, latest.Note, note(8, "a"))
	}
	for _, tc := range []struct {
		after int64
		want  []int64
	}{
		{-1, []int64{1, 3, 5, 8}},
		{0, []int64{1, 3, 5, 8}},
		{1, []int64{3, 5, 8}},
		{4, []int64{5, 8}},
		{8, nil},
		{100, nil},
	} {
		cs := checkpoints(t, s, tc.after)
		var sizes []int64
		for _, c := range cs {
			sizes = append(sizes, c.Size)
			if !bytes.Equal(c.Note, note(c.Size, "a")) {
				t.Errorf("checkpoint %d note = %q, want the first stored, %q", c.Size, c.Note, note(c.Size, "a"))
			}
		}
		if !slices.Equal(sizes, tc.want) {
			t.Errorf("Checkpoints(after %d) = %v, want %v", tc.after, sizes, tc.want)
		}
	}
	stop := errors.New("stop here")
	calls := 0
	err = s.Checkpoints(ctx, 0, func(infertrail.StoredCheckpoint) error {
		calls++
		return stop
	})
	if !errors.Is(err, stop) || calls != 1 {
		t.Errorf("Checkpoints with failing fn = %v after %d calls, want fn's error after 1", err, calls)
	}
}

func testConcurrent(t *testing.T, s infertrail.Store) {
	const workers, cycles = 8, 20
	ctx := t.Context()
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for c := range cycles {
				n := w*1000 + c*10
				entries, blobs := MakeBatch(n, 1+(w+c)%3)
				if err := appendOnce(ctx, s, entries, blobs); err != nil {
					t.Errorf("worker %d cycle %d: %v", w, c, err)
					return
				}
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	want := map[infertrail.UUID]int{}
	total := 0
	for w := range workers {
		for c := range cycles {
			n := w*1000 + c*10
			for i := range 1 + (w+c)%3 {
				e, _ := MakeEntry(n + i)
				want[e.ID] = n + i
				total++
			}
		}
	}
	size, err := s.TreeSize(ctx)
	if err != nil || size != int64(total) {
		t.Fatalf("TreeSize = %d, %v; want %d", size, err, total)
	}
	got := collect(t, s, 0, size+10)
	if len(got) != total {
		t.Fatalf("Entries gave %d entries, want %d", len(got), total)
	}
	for i := range got {
		if got[i].Seq != int64(i) {
			t.Fatalf("entry %d has Seq %d: the log has a gap", i, got[i].Seq)
		}
		n, ok := want[got[i].ID]
		if !ok {
			t.Fatalf("entry %d has an unknown or repeated id %v", i, got[i].ID)
		}
		delete(want, got[i].ID)
		e, _ := MakeEntry(n)
		e.Seq = int64(i)
		if d := DiffEntry(&e, &got[i]); d != "" {
			t.Errorf("%s", d)
		}
	}
	checkTree(t, s, leavesOf(got))
}

func appendOnce(ctx context.Context, s infertrail.Store, entries []infertrail.Entry, blobs []infertrail.Blob) error {
	tx, err := s.BeginAppend(ctx)
	if err != nil {
		return fmt.Errorf("begin append: %w", err)
	}
	defer tx.Rollback()
	ids := make([]infertrail.UUID, len(entries))
	for i, e := range entries {
		ids[i] = e.ID
	}
	if m, err := tx.Lookup(ctx, ids); err != nil {
		return fmt.Errorf("lookup: %w", err)
	} else if len(m) != 0 {
		return fmt.Errorf("lookup found %d ids never appended", len(m))
	}
	if err := NewSequencer(tx).Append(ctx, entries, blobs); err != nil {
		return fmt.Errorf("append: %w", err)
	}
	return tx.Commit()
}

func testClose(t *testing.T, s infertrail.Store) {
	ctx := t.Context()
	entries, blobs := MakeBatch(0, 3)
	AppendEntries(t, s, entries, blobs)
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := s.TreeSize(ctx); err == nil {
		t.Errorf("TreeSize after Close succeeded")
	}
	if tx, err := s.BeginAppend(ctx); err == nil {
		tx.Rollback()
		t.Errorf("BeginAppend after Close succeeded")
	}
}

// collect returns copies of the entries in [start, end).
func collect(t *testing.T, s infertrail.EntryReader, start, end int64) []infertrail.Entry {
	t.Helper()
	var out []infertrail.Entry
	err := s.Entries(t.Context(), start, end, func(e *infertrail.Entry) error {
		out = append(out, e.Clone())
		return nil
	})
	if err != nil {
		t.Fatalf("Entries(%d, %d): %v", start, end, err)
	}
	return out
}

func checkpoints(t *testing.T, s infertrail.CheckpointStore, after int64) []infertrail.StoredCheckpoint {
	t.Helper()
	var out []infertrail.StoredCheckpoint
	err := s.Checkpoints(t.Context(), after, func(c infertrail.StoredCheckpoint) error {
		c.Note = bytes.Clone(c.Note)
		out = append(out, c)
		return nil
	})
	if err != nil {
		t.Fatalf("Checkpoints(%d): %v", after, err)
	}
	return out
}

func leavesOf(entries []infertrail.Entry) [][]byte {
	out := make([][]byte, len(entries))
	for i := range entries {
		out[i] = entries[i].Leaf
	}
	return out
}

// storedHashes computes every stored hash of the tree of leaves in memory.
func storedHashes(t *testing.T, leaves [][]byte) []tlog.Hash {
	t.Helper()
	var hs []tlog.Hash
	r := tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(idx))
		for i, x := range idx {
			out[i] = hs[x]
		}
		return out, nil
	})
	for i, l := range leaves {
		h, err := tlog.StoredHashes(int64(i), l, r)
		if err != nil {
			t.Fatalf("StoredHashes(%d): %v", i, err)
		}
		hs = append(hs, h...)
	}
	return hs
}

// checkTreeHash checks the store's committed size and tree hash against leaves.
func checkTreeHash(t *testing.T, s infertrail.HashReader, leaves [][]byte) {
	t.Helper()
	ctx := t.Context()
	n := int64(len(leaves))
	if size, err := s.TreeSize(ctx); err != nil || size != n {
		t.Fatalf("TreeSize = %d, %v; want %d", size, err, n)
	}
	th, err := tlog.TreeHash(n, HashReader(ctx, s))
	if err != nil {
		t.Fatalf("TreeHash(%d): %v", n, err)
	}
	if want := RootHash(leaves); th != want {
		t.Fatalf("TreeHash(%d) = %v, want %v", n, th, want)
	}
}

// checkTree checks checkTreeHash, every stored hash, and an inclusion proof
// for a sample of records.
func checkTree(t *testing.T, s infertrail.HashReader, leaves [][]byte) {
	t.Helper()
	checkTreeHash(t, s, leaves)
	ctx := t.Context()
	want := storedHashes(t, leaves)
	idx := make([]int64, len(want))
	for i := range idx {
		idx[i] = int64(i)
	}
	got, err := s.ReadHashes(ctx, idx)
	if err != nil {
		t.Fatalf("ReadHashes(all %d): %v", len(idx), err)
	}
	if len(got) != len(want) {
		t.Fatalf("ReadHashes(all %d) returned %d hashes", len(want), len(got))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("stored hash %d = %v, want %v", i, got[i], want[i])
		}
	}
	n := int64(len(leaves))
	th := RootHash(leaves)
	r := HashReader(ctx, s)
	for rec := int64(0); rec < n; rec += 1 + n/17 {
		p, err := tlog.ProveRecord(n, rec, r)
		if err != nil {
			t.Fatalf("ProveRecord(%d, %d): %v", n, rec, err)
		}
		if err := tlog.CheckRecord(p, n, th, rec, tlog.RecordHash(leaves[rec])); err != nil {
			t.Errorf("CheckRecord(%d, %d): %v", n, rec, err)
		}
	}
}

// storeState is what a failed or abandoned transaction must leave unchanged.
type storeState struct {
	size    int64
	entries []infertrail.Entry
	hashes  int // number of readable stored hashes
}

func snapshot(t *testing.T, s infertrail.Store) storeState {
	t.Helper()
	ctx := t.Context()
	size, err := s.TreeSize(ctx)
	if err != nil {
		t.Fatalf("TreeSize: %v", err)
	}
	st := storeState{size: size, entries: collect(t, s, 0, size+1000)}
	count := tlog.StoredHashCount(size)
	idx := make([]int64, count)
	for i := range idx {
		idx[i] = int64(i)
	}
	if _, err := s.ReadHashes(ctx, idx); err != nil {
		t.Fatalf("ReadHashes of the %d committed hashes: %v", count, err)
	}
	if _, err := s.ReadHashes(ctx, []int64{count}); !errors.Is(err, infertrail.ErrNotFound) {
		t.Errorf("ReadHashes(%d), past the committed tree: err = %v, want ErrNotFound", count, err)
	}
	st.hashes = int(count)
	return st
}

func (st storeState) diff(t *testing.T, want storeState) {
	t.Helper()
	if st.size != want.size {
		t.Errorf("TreeSize = %d, want %d", st.size, want.size)
	}
	if len(st.entries) != len(want.entries) {
		t.Errorf("store holds %d entries, want %d", len(st.entries), len(want.entries))
		return
	}
	for i := range want.entries {
		if d := DiffEntry(&want.entries[i], &st.entries[i]); d != "" {
			t.Errorf("%s", d)
		}
	}
}

// checkAbsent checks that none of entries, and none of the blobs that only
// they reference, are in the store.
func checkAbsent(t *testing.T, s infertrail.Store, entries []infertrail.Entry, blobs []infertrail.Blob) {
	t.Helper()
	ctx := t.Context()
	for _, e := range entries {
		if _, err := s.EntryByID(ctx, e.ID); !errors.Is(err, infertrail.ErrNotFound) {
			t.Errorf("EntryByID(%v) of an entry never committed: err = %v, want ErrNotFound", e.ID, err)
		}
	}
	var ids []infertrail.BlobID
	for _, b := range blobs {
		if b.Data != nil && !isShared(b.ID) {
			ids = append(ids, b.ID)
		}
	}
	bs, err := s.Blobs(ctx, ids)
	if err != nil {
		t.Fatalf("Blobs: %v", err)
	}
	if len(bs) != 0 {
		t.Errorf("%d blobs of uncommitted entries are stored", len(bs))
	}
}

// isShared reports whether MakeEntry gives id to entries of every batch.
func isShared(id infertrail.BlobID) bool {
	for k := range sharedBlobs {
		if id == sharedBlobID(k) {
			return true
		}
	}
	return false
}
