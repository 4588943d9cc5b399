package sqlite

import (
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"slices"
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
	db, path, keys := openKeyed(t, 4)
	defer func() { db.Close() }()
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
		eraseKey(t, db, 100+erasures, id)
	}
	// postings counts the postings of ps still stored whose data key is
	// id, and checks that the key has records in key_records exactly when
	// it has postings.
	postings := func(id infertrail.KeyID) (n int) {
		t.Helper()
		for _, p := range ps {
			if p.DataKey != id {
				continue
			}
			var k int
			if err := db.readers.QueryRowContext(ctx, `SELECT count(*) FROM postings WHERE key = ? AND block = ? AND (bits >> ?) & 1`,
				p.Key, p.Seq>>6, p.Seq&63).Scan(&k); err != nil {
				t.Fatal(err)
			}
			n += k
		}
		var owned int
		if err := db.readers.QueryRowContext(ctx, `SELECT count(*) FROM key_records WHERE data_key = ?`, id[:]).Scan(&owned); err != nil {
			t.Fatal(err)
		}
		if (owned > 0) != (n > 0) {
			t.Errorf("key %x: %d postings, %d blocks of records", id[:4], n, owned)
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
	var err error
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

// TestMigrateTermSources: an index file of version 1, whose term postings
// carry their data keys in a column with an index of its own, opens with
// them moved to term_sources and on to the erasure lists, the column and
// index gone; an erasure then deletes the postings of its key and no
// others.
func TestMigrateTermSources(t *testing.T) {
	ctx := t.Context()
	db, path, keys := openKeyed(t, 600)
	// Records 0 to 599, each with a leaf posting and three terms, under
	// the first key for even records and the second for odd ones: more
	// records than one page of a purge.
	var ps []infertrail.Posting
	for seq := range int64(600) {
		ps = append(ps, infertrail.Posting{Key: fmt.Sprintf("leaf=%d", seq%7), Seq: seq})
		for _, w := range []string{"alpha", "beta", fmt.Sprintf("w%d", seq)} {
			ps = append(ps, infertrail.Posting{Key: "term=" + w, Seq: seq, DataKey: keys[seq%2].ID})
		}
	}
	if err := db.AddPostings(ctx, "indexer", 0, 600, ps); err != nil {
		t.Fatal(err)
	}
	want := indexPostings(t, db)
	if len(want) != len(ps) {
		t.Fatalf("%d postings stored, want %d", len(want), len(ps))
	}
	// Back to version 1: the data keys in postings, no term_sources.
	conn, err := db.index.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rowPostings(t, conn)
	for _, q := range []string{`ALTER TABLE postings ADD COLUMN data_key BLOB`,
		`CREATE INDEX postings_data_key ON postings (data_key) WHERE data_key IS NOT NULL`} {
		if _, err := conn.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	for _, p := range want {
		if !p.DataKey.IsZero() {
			if _, err := conn.ExecContext(ctx, `UPDATE postings SET data_key = ? WHERE key = ? AND seq = ?`, p.DataKey[:], p.Key, p.Seq); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, q := range []string{`DROP TABLE term_sources`, `DELETE FROM schema_migrations WHERE version >= 2`} {
		if _, err := conn.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	conn.Close()
	db.Close()

	if db, err = Open(ctx, path, Config{}); err != nil {
		t.Fatal(err)
	}
	defer func() { db.Close() }()
	if got := indexPostings(t, db); !slices.Equal(got, want) {
		t.Errorf("postings after migration 2: %d, want %d, or not the same", len(got), len(want))
	}
	var n int
	if err := db.index.QueryRowContext(ctx, `SELECT count(*) FROM pragma_table_info('postings') WHERE name = 'data_key'`).Scan(&n); err != nil || n != 0 {
		t.Errorf("postings.data_key left after migration 2 (%d, %v)", n, err)
	}
	if err := db.index.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_schema WHERE name = 'postings_data_key'`).Scan(&n); err != nil || n != 0 {
		t.Errorf("index postings_data_key left after migration 2 (%d, %v)", n, err)
	}

	eraseChecked(t, db, 600, keys[0].ID, want, "the first key (the leaf's and the second key's left)")
	if err := db.index.QueryRowContext(ctx, `SELECT count(*) FROM key_records WHERE data_key = ?`, keys[0].ID[:]).Scan(&n); err != nil || n != 0 {
		t.Errorf("%d blocks of records of the erased key left (%v)", n, err)
	}
}

// appendKeyed appends n records after storing two data keys of tenant
// acme, which it returns.
// openKeyed opens a new log, whose index waits at most 100 ms for its
// lock, with n records appended by appendKeyed; it returns the log, its
// path and the keys.
func openKeyed(t *testing.T, n int) (*DB, string, []infertrail.DataKey) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "log.db")
	db, err := Open(t.Context(), path, Config{BusyTimeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return db, path, appendKeyed(t, db, n)
}

func appendKeyed(t *testing.T, db *DB, n int) []infertrail.DataKey {
	t.Helper()
	keys := []infertrail.DataKey{storetest.TestKey("acme", "s1"), storetest.TestKey("acme", "s2")}
	entries, blobs := storetest.MakeBatch(0, n)
	storetest.AppendKeyed(t, db, keys, entries, blobs)
	return keys
}

// eraseKey appends an erasure record (storetest.MakeEntry(n), without
// content) that erases key id, in one transaction.
func eraseKey(t *testing.T, db *DB, n int, id infertrail.KeyID) {
	t.Helper()
	ctx := t.Context()
	tx, err := db.BeginAppend(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rec, _ := storetest.MakeEntry(n)
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

// TestDamagedTermSources: a block's list of keys (block_terms) that cannot
// be read stops the index (an erasure's postings could not be deleted), with an error that
// names the index file and says what to do; the file moved away, the index
// is made again and takes postings from the start.
func TestDamagedTermSources(t *testing.T) {
	ctx := t.Context()
	db, path, keys := openKeyed(t, 4)
	defer func() { db.Close() }()
	ps := []infertrail.Posting{{Key: "term=a", Seq: 1, DataKey: keys[0].ID}, {Key: "leaf=x", Seq: 1}}
	if err := db.AddPostings(ctx, "indexer", 0, 2, ps); err != nil {
		t.Fatal(err)
	}
	other, err := sql.Open("sqlite", dsn(db.indexPath, ""))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.ExecContext(ctx, `UPDATE block_terms SET keys = x'ff00'`); err != nil {
		t.Fatal(err)
	}
	other.Close()
	// A step that would add to the damaged list stops too.
	err = db.AddPostings(ctx, "indexer", 2, 3, []infertrail.Posting{{Key: "term=b", Seq: 2, DataKey: keys[1].ID}})
	for _, want := range []string{db.indexPath, "block 0", "damaged", "moved away, it is rebuilt from the log"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("AddPostings to the damaged list: %v; want an error naming %q", err, want)
		}
	}
	eraseKey(t, db, 100, keys[0].ID)
	err = db.AddPostings(ctx, "indexer", 2, 4, []infertrail.Posting{{Key: "leaf=y", Seq: 3}})
	for _, want := range []string{db.indexPath, "erased key", "damaged", "moved away, it is rebuilt from the log"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("AddPostings after the erasure: %v; want an error naming %q", err, want)
		}
	}
	if c, err := db.Cursor(ctx, "indexer"); err != nil || c != 2 {
		t.Errorf("cursor at %d (%v), want 2: nothing indexed past the damage", c, err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	for _, suffix := range []string{"", "-wal", "-shm"} {
		os.Rename(db.indexPath+suffix, db.indexPath+suffix+".damaged")
	}
	if db, err = Open(ctx, path, Config{}); err != nil {
		t.Fatal(err)
	}
	if c, err := db.Cursor(ctx, "indexer"); err != nil || c != 0 {
		t.Fatalf("cursor of the new index at %d (%v), want 0", c, err)
	}
	if err := db.AddPostings(ctx, "indexer", 0, 5, append(ps, infertrail.Posting{Key: "leaf=y", Seq: 3})); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := db.readers.QueryRowContext(ctx, `SELECT count(*) FROM postings WHERE key = 'term=a'`).Scan(&n); err != nil || n != 0 {
		t.Errorf("%d postings (%v) of the erased key in the new index, want 0", n, err)
	}
}
