package ledger_test

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/infertrail/infertrail"
	"github.com/infertrail/infertrail/internal/testdisk"
	"github.com/infertrail/infertrail/ledger"
	"github.com/infertrail/infertrail/store/sqlite"
)

// bulkyBatch returns n records of a session each, with about 3 KiB of
// content that does not compress much: a disk fills in a few hundred.
func bulkyBatch(tb testing.TB, n int) []ledger.Submission {
	tb.Helper()
	subs := make([]ledger.Submission, n)
	for i := range subs {
		b := make([]byte, 1536)
		rand.Read(b)
		subs[i] = sessionRecord(tb, "acme", fmt.Sprintf("s%d", i%5), hex.EncodeToString(b))
	}
	return subs
}

// fillUntilRefused appends batches of 20 bulky records until one fails,
// and returns the records acknowledged and the error.
func fillUntilRefused(tb testing.TB, l *testLog) (int64, error) {
	tb.Helper()
	var acked int64
	for range 10000 {
		res, err := l.Append(tb.Context(), bulkyBatch(tb, 20))
		if err != nil {
			return acked, err
		}
		acked += int64(len(res))
	}
	tb.Fatalf("%d records appended and the disk is not full", acked)
	return 0, nil
}

// TestStorageReserve: records are refused once the disk is down to the
// reserve, with an error that says so and names the setting, and nothing
// of the refused batch is stored; an erasure and a record of operators'
// management (WithReserve) still go in; once the disk is larger, records
// go in again; and the log verifies throughout.
func TestStorageReserve(t *testing.T) {
	ctx := t.Context()
	disk := testdisk.Mount(t, 24<<20)
	l := newTestLogIn(t, disk.Dir, sqlite.Config{MinFree: 12 << 20}, nil)

	acked, err := fillUntilRefused(t, l)
	if !errors.Is(err, infertrail.ErrStorageFull) || !errors.Is(err, infertrail.ErrUnavailable) {
		t.Fatalf("append on a disk down to its reserve: %v, want ErrStorageFull (an ErrUnavailable)", err)
	}
	for _, want := range []string{"storage full", disk.Dir, "MiB free", "storage.min_free_bytes"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if acked < 100 {
		t.Fatalf("only %d records before the reserve", acked)
	}
	if got := treeSize(t, l.db); got != acked {
		t.Fatalf("tree size %d after the refusal, want the %d acknowledged", got, acked)
	}
	if err := l.db.Room(); !errors.Is(err, infertrail.ErrStorageFull) {
		t.Fatalf("Room = %v, want ErrStorageFull", err)
	}

	// What the reserve is kept for still goes in.
	admin := func() *infertrail.Record {
		return &infertrail.Record{Kind: infertrail.KindAccess, Tenant: "acme", Actor: infertrail.Actor{ID: "user:ops", Type: "user"},
			Source: "admin", Attributes: map[string]json.RawMessage{"access.action": json.RawMessage(`"token.create"`)}}
	}
	if _, err := l.Record(infertrail.WithReserve(ctx), admin()); err != nil {
		t.Fatalf("a record of operators' management, into the reserve: %v", err)
	}
	if _, err := l.Record(ctx, admin()); !errors.Is(err, infertrail.ErrStorageFull) {
		t.Fatalf("the same record without WithReserve: %v, want ErrStorageFull", err)
	}
	out, err := l.Erase(ctx, ledger.Erasure{Scope: "tenant=acme,session=s1", Reason: "make room", Actor: infertrail.Actor{ID: "user:dpo", Type: "user"}})
	if err != nil {
		t.Fatalf("erasure on a disk down to its reserve: %v", err)
	}
	if out.Keys != 1 || out.Blobs == 0 {
		t.Errorf("Erase = %+v", out)
	}

	// The operator grows the volume: records go in again, by themselves.
	disk.Resize(t, 64<<20)
	if err := l.db.Room(); err != nil {
		t.Fatalf("Room after the disk grew: %v", err)
	}
	mustAppend(t, l.Log, bulkyBatch(t, 20))
	rep, err := ledger.VerifyStore(ctx, l.db, testOrigin, l.verif, l.kek, nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := acked + 2 + 20; rep.Records != want {
		t.Fatalf("verified %d records, want %d", rep.Records, want)
	}
}

// TestStorageFull: with no reserve, the disk itself fills. The failed
// batch is rolled back whole (an error wrapping ErrStorageFull), what was
// acknowledged before it stays, and appends resume once there is room.
func TestStorageFull(t *testing.T) {
	ctx := t.Context()
	disk := testdisk.Mount(t, 8<<20)
	l := newTestLogIn(t, disk.Dir, sqlite.Config{MinFree: -1}, nil)

	acked, err := fillUntilRefused(t, l)
	if !errors.Is(err, infertrail.ErrStorageFull) {
		t.Fatalf("append on a full disk: %v, want ErrStorageFull", err)
	}
	if err := l.db.Room(); err != nil {
		t.Fatalf("Room with no reserve: %v", err)
	}
	// Again: still refused, and still nothing half-written.
	if _, err := l.Append(ctx, bulkyBatch(t, 20)); !errors.Is(err, infertrail.ErrStorageFull) {
		t.Fatalf("second append on a full disk: %v, want ErrStorageFull", err)
	}
	if got := treeSize(t, l.db); got != acked {
		t.Fatalf("tree size %d on a full disk, want the %d acknowledged", got, acked)
	}
	// Every acknowledged record reads back while the disk is full.
	if _, err := l.Entry(ctx, acked-1); err != nil {
		t.Fatalf("read the last acknowledged record on a full disk: %v", err)
	}

	disk.Resize(t, 32<<20)
	res := mustAppend(t, l.Log, bulkyBatch(t, 20))
	if res[0].Seq != acked {
		t.Fatalf("first record after the disk grew has seq %d, want %d (no gap, nothing of the failed batches)", res[0].Seq, acked)
	}
	if _, err := l.SignCheckpoint(ctx); err != nil {
		t.Fatal(err)
	}
	rep, err := ledger.VerifyStore(ctx, l.db, testOrigin, l.verif, l.kek, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Records != acked+20 {
		t.Fatalf("verified %d records, want %d", rep.Records, acked+20)
	}
}

// TestStorageFailed: the disk fails under the log (an ext4 file system
// that goes read-only on an error, with the log's files open). Appends
// fail with ErrStorageFailed and nothing half-written, what was
// acknowledged reads back and verifies, and StorageFailure reports the
// failure for a while, so that the server says it is not ready.
func TestStorageFailed(t *testing.T) {
	ctx := t.Context()
	disk := testdisk.MountExt4(t, 64<<20)
	l := newTestLogIn(t, disk.Dir, sqlite.Config{MinFree: -1}, nil)
	mustAppend(t, l.Log, bulkyBatch(t, 50))
	if _, err := l.SignCheckpoint(ctx); err != nil {
		t.Fatal(err)
	}
	if err := l.StorageFailure(); err != nil {
		t.Fatalf("StorageFailure before the failure: %v", err)
	}
	ledger.SetStorageFailureFor(t, time.Second)

	disk.Fail(t)
	for i := range 2 {
		_, err := l.Append(ctx, bulkyBatch(t, 20))
		if !errors.Is(err, infertrail.ErrStorageFailed) || !errors.Is(err, infertrail.ErrUnavailable) {
			t.Fatalf("append %d on a failed disk: %v, want ErrStorageFailed", i, err)
		}
	}
	if err := l.StorageFailure(); !errors.Is(err, infertrail.ErrStorageFailed) {
		t.Fatalf("StorageFailure after failed commits: %v", err)
	}
	if got := treeSize(t, l.db); got != 50 {
		t.Fatalf("tree size %d on a failed disk, want the 50 acknowledged", got)
	}
	if _, err := l.Entry(ctx, 49); err != nil {
		t.Fatalf("read the last acknowledged record on a failed disk: %v", err)
	}
	rep, err := ledger.VerifyStore(ctx, l.db, testOrigin, l.verif, l.kek, nil)
	if err != nil || rep.Records != 50 {
		t.Fatalf("verify on a failed disk: %v (%d records)", err, rep.Records)
	}
	time.Sleep(time.Second)
	if err := l.StorageFailure(); err != nil {
		t.Fatalf("StorageFailure a second after the last failed commit: %v, want it expired", err)
	}
}

// TestStorageBigErasure: an erasure that needs more room than the reserve
// (a tenant's, whose content spans the whole file) fails on a full disk
// with ErrStorageFull and leaves nothing, not even the space its rolled
// back writes took in the WAL; a smaller one then fits.
func TestStorageBigErasure(t *testing.T) {
	ctx := t.Context()
	disk := testdisk.Mount(t, 24<<20)
	l := newTestLogIn(t, disk.Dir, sqlite.Config{MinFree: 2 << 20}, nil)
	tiny := mustAppend(t, l.Log, []ledger.Submission{
		sessionRecord(t, "acme", "tiny", "a prompt of the tiny session"),
		sessionRecord(t, "acme", "tiny", "another prompt of the tiny session"),
	})
	acked, err := fillUntilRefused(t, l)
	if !errors.Is(err, infertrail.ErrStorageFull) {
		t.Fatalf("fill: %v", err)
	}
	before, _ := l.db.FreeBytes()

	who := infertrail.Actor{ID: "user:dpo", Type: "user"}
	_, err = l.Erase(ctx, ledger.Erasure{Scope: "tenant=acme", Reason: "make room", Actor: who})
	if !errors.Is(err, infertrail.ErrStorageFull) {
		t.Fatalf("a tenant's erasure on a full disk with a 2 MiB reserve: %v, want ErrStorageFull", err)
	}
	if got := treeSize(t, l.db); got != acked+2 {
		t.Fatalf("tree size %d after the failed erasure, want %d", got, acked+2)
	}
	e, err := l.Entry(ctx, tiny[0].Seq)
	if err != nil {
		t.Fatal(err)
	}
	if c, err := l.Content(ctx, &e); err != nil || !strings.Contains(string(c["prompt"]), "tiny session") {
		t.Fatalf("content after the failed erasure: %s, %v", c["prompt"], err)
	}
	if after, _ := l.db.FreeBytes(); after < before-(1<<20) {
		t.Fatalf("free space %d after the failed erasure, %d before: its WAL frames kept the space", after, before)
	}

	out, err := l.Erase(ctx, ledger.Erasure{Scope: "tenant=acme,session=tiny", Reason: "make room", Actor: who})
	if err != nil || out.Keys != 1 {
		t.Fatalf("a session's erasure on the full disk: %+v, %v", out, err)
	}
	if _, err := ledger.VerifyStore(ctx, l.db, testOrigin, l.verif, l.kek, nil); err != nil {
		t.Fatal(err)
	}
}
