package sqlite

import (
	"database/sql"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/infertrail/infertrail"
	"github.com/infertrail/infertrail/store/storetest"
)

// holdIndexLock takes the write lock of db's index file from a connection
// of its own, as a long step of the index would, until release is called.
func holdIndexLock(t *testing.T, db *DB) (release func()) {
	t.Helper()
	other, err := sql.Open("sqlite", dsn(db.indexPath, "immediate"))
	if err != nil {
		t.Fatal(err)
	}
	tx, err := other.BeginTx(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	// BEGIN IMMEDIATE takes the lock at once.
	if _, err := tx.ExecContext(t.Context(), `UPDATE index_head SET purged = purged WHERE one = 1`); err != nil {
		t.Fatal(err)
	}
	return func() {
		tx.Rollback()
		other.Close()
	}
}

// TestIndexFileApart: the index is a file of its own beside the log's, and
// appends commit while its write lock is held; a write of the index waits
// for the lock, and lands once it is free.
func TestIndexFileApart(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "infertrail.db")
	db, err := Open(ctx, path, Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if want := filepath.Join(filepath.Dir(path), "infertrail-index.db"); db.indexPath != want || IndexPath(path) != want {
		t.Errorf("index file %s, want %s", db.indexPath, want)
	}
	if _, err := os.Stat(db.indexPath); err != nil {
		t.Fatalf("no index file: %v", err)
	}
	release := holdIndexLock(t, db)
	done := make(chan error, 1)
	go func() {
		done <- db.AddPostings(infertrail.Foreground(ctx), "indexer", 0, 5, []infertrail.Posting{{Key: "a=1", Seq: 4}})
	}()
	entries, blobs := storetest.MakeBatch(0, 5)
	start := time.Now()
	storetest.AppendEntries(t, db, entries, blobs) // would wait for the lock, were it the log's
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("append took %v with the index's lock held", d)
	}
	select {
	case err := <-done:
		t.Fatalf("AddPostings returned %v with the index's lock held by another", err)
	case <-time.After(50 * time.Millisecond):
	}
	release()
	if err := <-done; err != nil {
		t.Fatalf("AddPostings once the lock is free: %v", err)
	}
	var got []int64
	if err := db.Query(ctx, infertrail.Query{Keys: []string{"a=1"}}, func(e *infertrail.Entry) error { got = append(got, e.Seq); return nil }); err != nil || len(got) != 1 || got[0] != 4 {
		t.Errorf("Query(a=1) = %v, %v; want [4]", got, err)
	}
}

// TestErasurePurgedLater: when an erasure cannot delete its keys' postings
// from the index file at once (its lock is held past the busy timeout), the
// next write of the index does, and so does the next Open.
func TestErasurePurgedLater(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "log.db")
	db, err := Open(ctx, path, Config{BusyTimeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { db.Close() }()
	keys := []infertrail.DataKey{storetest.TestKey("acme", "s1"), storetest.TestKey("acme", "s2")}
	entries, blobs := storetest.MakeBatch(0, 4)
	tx, err := db.BeginAppend(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.AddKeys(ctx, keys); err != nil {
		t.Fatal(err)
	}
	if err := storetest.NewSequencer(tx).Append(ctx, entries, blobs); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	ps := []infertrail.Posting{
		{Key: "term=a", Seq: 1, DataKey: keys[0].ID}, {Key: "term=b", Seq: 2, DataKey: keys[0].ID},
		{Key: "term=a", Seq: 3, DataKey: keys[1].ID}, {Key: "leaf=x", Seq: 1},
	}
	if err := db.AddPostings(ctx, "indexer", 0, 4, ps); err != nil {
		t.Fatal(err)
	}
	erasures := 0
	erase := func(id infertrail.KeyID) {
		t.Helper()
		erasures++
		tx, err := db.BeginAppend(ctx)
		if err != nil {
			t.Fatal(err)
		}
		rec, _ := storetest.MakeEntry(100 + erasures)
		rec.Content = nil
		if err := storetest.NewSequencer(tx).Append(ctx, []infertrail.Entry{rec}, nil); err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Erase(ctx, []infertrail.KeyID{id}, rec.Seq); err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	postings := func(id infertrail.KeyID) (n int) {
		t.Helper()
		if err := db.readers.QueryRowContext(ctx, `SELECT count(*) FROM postings WHERE data_key = ?`, id[:]).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}

	release := holdIndexLock(t, db)
	erase(keys[0].ID)
	if n := postings(keys[0].ID); n != 2 {
		t.Fatalf("%d postings of the erased key with the index locked, want the 2 still there", n)
	}
	release()
	if err := db.AdvanceCursor(ctx, "siem:x", 0, 1); err != nil {
		t.Fatal(err)
	}
	if n := postings(keys[0].ID); n != 0 {
		t.Errorf("%d postings of the erased key after the next write of the index, want 0", n)
	}
	if n := postings(keys[1].ID); n != 1 {
		t.Errorf("%d postings of the key not erased, want 1", n)
	}

	release = holdIndexLock(t, db)
	erase(keys[1].ID)
	release()
	db.Close()
	if db, err = Open(ctx, path, Config{}); err != nil {
		t.Fatal(err)
	}
	if n := postings(keys[1].ID); n != 0 {
		t.Errorf("%d postings of the key erased before a restart, want 0 after Open", n)
	}
	var n int
	if err := db.readers.QueryRowContext(ctx, `SELECT count(*) FROM postings`).Scan(&n); err != nil || n != 1 {
		t.Errorf("%d postings left (%v), want the leaf's 1", n, err)
	}
}

// TestIndexFileRefused: Open refuses an index file that is not one, and
// makes none beside a file that is not an InferTrail database.
func TestIndexFileRefused(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	path := filepath.Join(dir, "log.db")
	if err := os.WriteFile(IndexPath(path), []byte("not a database at all, but long enough to be read as a header by sqlite......................................"), 0o600); err != nil {
		t.Fatal(err)
	}
	if db, err := Open(ctx, path, Config{}); err == nil {
		db.Close()
		t.Fatal("Open with a garbage index file succeeded")
	} else if want := IndexPath(path); !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "not an InferTrail database") || !strings.Contains(err.Error(), "rebuilt from the log") {
		t.Errorf("Open with a garbage index file: %v; want an error naming %s", err, want)
	}

	other := filepath.Join(dir, "other.db")
	o, err := sql.Open("sqlite", dsn(other, ""))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := o.ExecContext(ctx, `CREATE TABLE t (x)`); err != nil {
		t.Fatal(err)
	}
	o.Close()
	if db, err := Open(ctx, other, Config{}); err == nil {
		db.Close()
		t.Fatal("Open of a foreign SQLite file succeeded")
	}
	if _, err := os.Stat(IndexPath(other)); err == nil {
		t.Errorf("Open of a foreign SQLite file made an index file beside it")
	}
}
