package ledger_test

import (
	"bytes"
	"errors"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/infertrail/infertrail"
	"github.com/infertrail/infertrail/ledger"
	"github.com/infertrail/infertrail/store/sqlite"
)

// TestCopyStore copies a log with everything a log holds — content in
// several sessions, an erasure, checkpoints, tokens (one revoked), legal
// holds (one released) and approvals (one decided) — into an empty store
// in batches of 7 records (and again in batches cut by their bytes). The copy verifies to the same root with the
// same content checks, holds the same entries byte for byte and the same
// state, and takes new records where the source stopped. A store that is
// not empty is refused, and a source whose checkpoint its tree does not
// match is refused naming it.
func TestCopyStore(t *testing.T) {
	ctx := t.Context()
	ledger.SetCopyBatch(t, 7, 1<<30)
	src := newTestLog(t, sqlite.Config{}, nil)
	mustAppend(t, src.Log, bulkyBatch(t, 30))
	if _, err := src.SignCheckpoint(ctx); err != nil {
		t.Fatal(err)
	}
	who := infertrail.Actor{ID: "user:dpo", Type: "user"}
	if _, err := src.Erase(ctx, ledger.Erasure{Scope: "tenant=acme,session=s1", Reason: "GDPR Art. 17 request 42", Actor: who}); err != nil {
		t.Fatal(err)
	}
	mustAppend(t, src.Log, bulkyBatch(t, 12))
	// The same content again and again in one session: the same blobs,
	// referenced from several batches of the copy.
	var same []ledger.Submission
	for range 10 {
		same = append(same, sessionRecord(t, "acme", "s9", "the same system prompt, sent with every call"))
	}
	mustAppend(t, src.Log, same)
	if _, err := src.PlaceHold(ctx, "tenant=acme,session=s2", "litigation 7", who); err != nil {
		t.Fatal(err)
	}
	h, err := src.PlaceHold(ctx, "tenant=acme,session=s3", "litigation 8", who)
	if err != nil {
		t.Fatal(err)
	}
	if err := src.ReleaseHold(ctx, "acme", h.ID, "settled", who); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC().Truncate(time.Microsecond)
	for i, name := range []string{"ingest", "leaked"} {
		tok := infertrail.Token{ID: infertrail.NewUUID(), Name: name, Tenant: "acme", Roles: []infertrail.Role{infertrail.RoleIngest},
			Hash: [32]byte{byte(i + 1)}, CreatedBy: "admin", Created: now.UnixNano()}
		if err := src.db.AddToken(ctx, tok); err != nil {
			t.Fatal(err)
		}
		if name == "leaked" {
			if err := src.db.RevokeToken(ctx, tok.ID, "admin", now.Add(time.Second).UnixNano()); err != nil {
				t.Fatal(err)
			}
		}
	}
	for i := range 2 {
		a := infertrail.Approval{ID: infertrail.NewUUID(), Tenant: "acme", Status: infertrail.ApprovalPending,
			DecisionID: infertrail.NewUUID(), Governs: infertrail.NewUUID(), Point: infertrail.PointToolCall,
			Summary: `tool "pay" on server payments`, SessionID: "s4", Requested: now.Add(time.Duration(i) * time.Second),
			Deadline: now.Add(time.Hour)}
		if err := src.db.AddApproval(ctx, a); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			if err := src.db.DecideApproval(ctx, a.ID, infertrail.ApprovalApproved, "user:cfo", now.Add(time.Minute), infertrail.NewUUID()); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, err := src.SignCheckpoint(ctx); err != nil {
		t.Fatal(err)
	}
	size := treeSize(t, src.db)

	dst := openStore(t, filepath.Join(t.TempDir(), "copy.db"), sqlite.Config{})
	var calls []int64
	rep, err := ledger.CopyStore(ctx, dst, src.db, testOrigin, src.verif, func(done, total int64) {
		if total != size {
			t.Errorf("progress total %d, want %d", total, size)
		}
		calls = append(calls, done)
	})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Records != size || rep.Erased == 0 || rep.Keys < 5 || rep.Blobs == 0 || rep.Checkpoints < 2 || rep.Tokens != 2 || rep.Holds != 2 || rep.Approvals != 2 {
		t.Errorf("report %+v", rep)
	}
	if len(calls) < 2 || calls[len(calls)-1] != size || !slices.IsSorted(calls) {
		t.Errorf("progress %v", calls)
	}

	// The same log, proven so from first principles.
	want, err := ledger.VerifyStore(ctx, src.db, testOrigin, src.verif, src.kek, nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ledger.VerifyStore(ctx, dst, testOrigin, src.verif, src.kek, nil)
	if err != nil {
		t.Fatalf("verify the copy: %v", err)
	}
	if !reflect.DeepEqual(got, want) || got.Erased() == 0 {
		t.Errorf("the copy verifies as\n%+v\nthe source as\n%+v", got, want)
	}
	var srcEntries []infertrail.Entry
	src.db.Entries(ctx, 0, size, func(e *infertrail.Entry) error {
		srcEntries = append(srcEntries, *e)
		srcEntries[len(srcEntries)-1].Leaf = bytes.Clone(e.Leaf)
		return nil
	})
	i := 0
	if err := dst.Entries(ctx, 0, size, func(e *infertrail.Entry) error {
		w := srcEntries[i]
		if !bytes.Equal(e.Leaf, w.Leaf) || e.ID != w.ID || e.MAC != w.MAC || e.Tenant != w.Tenant || e.Kind != w.Kind ||
			e.Time != w.Time || e.Received != w.Received || e.SessionID != w.SessionID || len(e.Content) != len(w.Content) {
			t.Errorf("entry %d differs", e.Seq)
		}
		i++
		return nil
	}); err != nil || i != int(size) {
		t.Fatalf("read the copy's entries: %d, %v", i, err)
	}
	for _, seq := range []int64{0, 3, size - 12, size - 4, size - 1} {
		e, err := src.Entry(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		c1, err1 := src.Content(ctx, &e)
		c2, err2 := ledger.NewContentReader(dst, src.kek).Read(ctx, &e)
		if err1 != nil || err2 != nil || !reflect.DeepEqual(c1, c2) {
			t.Errorf("content of record %d: %v / %v", seq, err1, err2)
		}
	}
	srcTokens, _ := src.db.Tokens(ctx)
	dstTokens, err := dst.Tokens(ctx)
	if err != nil || !reflect.DeepEqual(dstTokens, srcTokens) {
		t.Errorf("tokens:\n%+v\nwant\n%+v (%v)", dstTokens, srcTokens, err)
	}
	srcHolds, _ := src.db.Holds(ctx, "", false)
	dstHolds, err := dst.Holds(ctx, "", false)
	if err != nil || !reflect.DeepEqual(dstHolds, srcHolds) {
		t.Errorf("holds:\n%+v\nwant\n%+v (%v)", dstHolds, srcHolds, err)
	}
	list := func(s infertrail.Store) []infertrail.Approval {
		var out []infertrail.Approval
		if err := s.Approvals(ctx, nil, "", 0, func(a *infertrail.Approval) error { out = append(out, *a); return nil }); err != nil {
			t.Fatal(err)
		}
		return out
	}
	if a, b := list(dst), list(src.db); len(a) != len(b) || len(a) != 2 {
		t.Errorf("approvals: %d, want %d", len(a), len(b))
	} else {
		for i := range a {
			if a[i].ID != b[i].ID || a[i].Status != b[i].Status || a[i].Approver != b[i].Approver || !a[i].Decided.Equal(b[i].Decided) ||
				a[i].ApprovalRecord != b[i].ApprovalRecord || !a[i].Requested.Equal(b[i].Requested) || a[i].Summary != b[i].Summary {
				t.Errorf("approval %d:\n%+v\nwant\n%+v", i, a[i], b[i])
			}
		}
	}

	// A log on the copy takes records where the source stopped.
	l, err := ledger.Open(ctx, ledger.Config{Store: dst, Signer: src.signer, Verifier: src.verif, Origin: testOrigin,
		Secret: bytes.Repeat([]byte{1}, 32), KEK: src.kek, CheckpointInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if res := mustAppend(t, l, bulkyBatch(t, 3)); res[0].Seq != size {
		t.Errorf("the first record on the copy has seq %d, want %d", res[0].Seq, size)
	}
	if _, err := l.SignCheckpoint(ctx); err != nil {
		t.Fatal(err)
	}
	if got, err := ledger.VerifyStore(ctx, dst, testOrigin, src.verif, src.kek, nil); err != nil || got.Records != size+3 {
		t.Fatalf("verify the copy after new records: %v (%d records)", err, got.Records)
	}

	// Batches cut by the bytes of their content (about 3 KiB a record
	// here): the same copy.
	ledger.SetCopyBatch(t, 1000, 10<<10)
	small := openStore(t, filepath.Join(t.TempDir(), "small.db"), sqlite.Config{})
	var batches int
	if _, err := ledger.CopyStore(ctx, small, src.db, testOrigin, src.verif, func(done, total int64) { batches++ }); err != nil {
		t.Fatal(err)
	}
	if got, err := ledger.VerifyStore(ctx, small, testOrigin, src.verif, src.kek, nil); err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("the copy in small batches verifies as %+v (%v), want %+v", got, err, want)
	}
	if batches < int(size)/5 {
		t.Errorf("%d batches for %d records of about 3 KiB each, at most 10 KiB a batch", batches, size)
	}
	ledger.SetCopyBatch(t, 7, 1<<30)

	// A log that takes records while it is copied: the copy says so.
	grown := openStore(t, filepath.Join(t.TempDir(), "grown.db"), sqlite.Config{})
	appended := false
	_, err = ledger.CopyStore(ctx, grown, src.db, testOrigin, src.verif, func(done, total int64) {
		if !appended {
			appended = true
			mustAppend(t, src.Log, bulkyBatch(t, 2))
		}
	})
	if !errors.Is(err, ledger.ErrSourceChanged) || !strings.Contains(err.Error(), "2 records more") {
		t.Errorf("a copy of a log that grew meanwhile: %v", err)
	}
	if got, err := ledger.VerifyStore(ctx, grown, testOrigin, src.verif, src.kek, nil); err != nil || got.Records != size {
		t.Errorf("the copy of a log that grew meanwhile verifies with %d records (%v), want its first %d", got.Records, err, size)
	}

	// Not into a store that holds records.
	if _, err := ledger.CopyStore(ctx, dst, src.db, testOrigin, src.verif, nil); !errors.Is(err, infertrail.ErrConflict) {
		t.Errorf("a copy into a store with records: %v, want ErrConflict", err)
	}
	// Not from a log whose tree is not what its key signed.
	forged, err := ledger.SignCheckpoint(src.signer, testOrigin, 3, tlog.Hash{9})
	if err != nil {
		t.Fatal(err)
	}
	if err := src.db.AddCheckpoint(ctx, infertrail.StoredCheckpoint{Size: 3, Note: forged.Note}); err != nil {
		t.Fatal(err)
	}
	dst2 := openStore(t, filepath.Join(t.TempDir(), "copy2.db"), sqlite.Config{})
	var ve *ledger.VerificationError
	if _, err := ledger.CopyStore(ctx, dst2, src.db, testOrigin, src.verif, nil); !errors.As(err, &ve) || !bytes.Contains([]byte(err.Error()), []byte("checkpoint of size 3")) {
		t.Errorf("a copy of a log with a forged checkpoint: %v", err)
	}
	_, other := testKeys(t)
	dst3 := openStore(t, filepath.Join(t.TempDir(), "copy3.db"), sqlite.Config{})
	if _, err := ledger.CopyStore(ctx, dst3, src.db, testOrigin, other, nil); err == nil {
		t.Error("a copy checked with another log's key passed")
	}
}
