package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/infertrail/infertrail"
	"github.com/infertrail/infertrail/store/internal/behind/behindtest"
	"github.com/infertrail/infertrail/store/storetest"
)

func openTemp(t testing.TB) *DB {
	t.Helper()
	db, err := Open(t.Context(), filepath.Join(t.TempDir(), "log.db"), Config{})
	if err != nil {
		t.Fatal(err)
	}
	return db
}

func TestStore(t *testing.T) {
	storetest.Run(t, func(t *testing.T) infertrail.Store { return openTemp(t) })
}

func TestReopen(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "log.db")
	db, err := Open(ctx, path, Config{})
	if err != nil {
		t.Fatal(err)
	}
	entries, blobs := storetest.MakeBatch(0, 70)
	storetest.AppendEntries(t, db, entries[:33], blobs)
	storetest.AppendEntries(t, db, entries[33:], blobs)
	cp := infertrail.StoredCheckpoint{Size: 70, Note: []byte("checkpoint 70\n")}
	if err := db.AddCheckpoint(ctx, cp); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	db, err = Open(ctx, path, Config{})
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer db.Close()
	if db.Path() != path {
		t.Errorf("Path = %q, want %q", db.Path(), path)
	}
	more, mb := storetest.MakeBatch(70, 5)
	storetest.AppendEntries(t, db, more, mb)
	all := append(entries, more...)
	i := 0
	err = db.Entries(ctx, 0, 100, func(e *infertrail.Entry) error {
		if d := storetest.DiffEntry(&all[i], e); d != "" {
			t.Errorf("%s", d)
		}
		i++
		return nil
	})
	if err != nil || i != len(all) {
		t.Fatalf("Entries gave %d entries, %v; want %d", i, err, len(all))
	}
	leaves := make([][]byte, len(all))
	for i := range all {
		leaves[i] = all[i].Leaf
	}
	checkRoot(t, db, leaves)
	got, err := db.LatestCheckpoint(ctx)
	if err != nil || got.Size != 70 || string(got.Note) != string(cp.Note) {
		t.Errorf("LatestCheckpoint = %d %q, %v; want 70 %q", got.Size, got.Note, err, cp.Note)
	}
	st, err := db.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.TreeSize != 75 || st.Checkpoints != 1 || st.FileBytes == 0 || st.IndexBytes == 0 {
		t.Errorf("Stats = %+v", st)
	}
}

func checkRoot(t *testing.T, db *DB, leaves [][]byte) {
	t.Helper()
	ctx := t.Context()
	size, err := db.TreeSize(ctx)
	if err != nil || size != int64(len(leaves)) {
		t.Fatalf("TreeSize = %d, %v; want %d", size, err, len(leaves))
	}
	got, err := tlogTreeHash(t, db, size)
	if err != nil {
		t.Fatal(err)
	}
	if want := storetest.RootHash(leaves); got != want {
		t.Fatalf("tree hash %v, want %v", got, want)
	}
}

// TestTwoHandles appends through two DBs on one file, as two processes
// would, and checks that they make one gap-free log.
func TestTwoHandles(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log.db")
	var dbs [2]*DB
	for i := range dbs {
		db, err := Open(t.Context(), path, Config{})
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		dbs[i] = db
	}
	const perWorker, cycles = 2, 15
	var wg sync.WaitGroup
	for w := range 4 {
		db := dbs[w%2]
		wg.Go(func() {
			for c := range cycles {
				entries, blobs := storetest.MakeBatch(w*1000+c*10, perWorker)
				tx, err := db.BeginAppend(t.Context())
				if err != nil {
					t.Errorf("BeginAppend: %v", err)
					return
				}
				if err := storetest.NewSequencer(tx).Append(t.Context(), entries, blobs); err != nil {
					tx.Rollback()
					t.Errorf("Append: %v", err)
					return
				}
				if err := tx.Commit(); err != nil {
					t.Errorf("Commit: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	var leaves [][]byte
	seen := map[infertrail.UUID]bool{}
	err := dbs[1].Entries(t.Context(), 0, 1000, func(e *infertrail.Entry) error {
		if e.Seq != int64(len(leaves)) {
			return fmt.Errorf("entry %d has seq %d", len(leaves), e.Seq)
		}
		if seen[e.ID] {
			return fmt.Errorf("entry %d repeats id %v", e.Seq, e.ID)
		}
		seen[e.ID] = true
		leaves = append(leaves, append([]byte(nil), e.Leaf...))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(leaves) != 4*cycles*perWorker {
		t.Fatalf("log holds %d entries, want %d", len(leaves), 4*cycles*perWorker)
	}
	checkRoot(t, dbs[0], leaves)
}

// newAlteredLog makes a log at dir/log.db, closes it, runs stmt on it as
// another program would, and returns its path.
func newAlteredLog(t *testing.T, dir, stmt string, args ...any) string {
	t.Helper()
	path := filepath.Join(dir, "log.db")
	db, err := Open(t.Context(), path, Config{})
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	raw, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	_, err = raw.Exec(stmt, args...)
	raw.Close()
	if err != nil {
		t.Fatal(err)
	}
	return path
}

func TestRefuseNewerSchema(t *testing.T) {
	path := newAlteredLog(t, t.TempDir(), `INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, 'from_the_future.sql', 0)`, SchemaVersion()+1)
	_, err := Open(t.Context(), path, Config{})
	if err == nil || !strings.Contains(err.Error(), "newer") || !strings.Contains(err.Error(), path) {
		t.Fatalf("Open of a newer schema: err = %v, want one naming the path and saying the schema is newer", err)
	}
}

func TestRefuseForeignFile(t *testing.T) {
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.db")
	if err := os.WriteFile(garbage, []byte(strings.Repeat("not a database\n", 300)), 0o600); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(dir, "other.db")
	raw, err := sql.Open("sqlite", other)
	if err != nil {
		t.Fatal(err)
	}
	_, err = raw.Exec(`CREATE TABLE users (name TEXT)`)
	raw.Close()
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{garbage, other, dir} {
		_, err := Open(t.Context(), path, Config{})
		if err == nil || !strings.Contains(err.Error(), path) {
			t.Errorf("Open(%s): err = %v, want an error naming the path", path, err)
			continue
		}
		t.Logf("Open(%s): %v", filepath.Base(path), err)
	}
	if _, err := Open(t.Context(), filepath.Join(dir, "log.db"), Config{Readers: -1}); !errors.Is(err, infertrail.ErrInvalid) {
		t.Errorf("Open with Readers -1: err = %v, want ErrInvalid", err)
	}
}

// TestPragmas checks the settings that durability and locking rest on.
func TestPragmas(t *testing.T) {
	db := openTemp(t)
	defer db.Close()
	ctx := t.Context()
	for _, c := range []struct {
		on     *sql.DB
		pragma string
		want   string
	}{
		{db.writer, "journal_mode", "wal"},
		{db.writer, "synchronous", "2"}, // FULL
		{db.writer, "busy_timeout", "10000"},
		{db.writer, "application_id", fmt.Sprint(logSchema.appID)},
		{db.writer, "page_size", "8192"},
		{db.writer, "wal_autocheckpoint", "500"},
		{db.writer, "journal_size_limit", "16777216"},
		{db.index, "journal_size_limit", "16777216"},
		{db.index, "page_size", "4096"},
		{db.index, "journal_mode", "wal"},
		{db.index, "synchronous", "2"}, // FULL
		{db.index, "application_id", fmt.Sprint(indexSchema.appID)},
		{db.readers, "query_only", "1"},
		{db.readers, "journal_mode", "wal"},
		{db.points, "query_only", "1"},
		{db.points, "busy_timeout", "10000"},
	} {
		var got string
		if err := c.on.QueryRowContext(ctx, "PRAGMA "+c.pragma).Scan(&got); err != nil {
			t.Fatalf("PRAGMA %s: %v", c.pragma, err)
		}
		if got != c.want {
			t.Errorf("PRAGMA %s = %s, want %s", c.pragma, got, c.want)
		}
	}
	if _, err := db.readers.ExecContext(ctx, `INSERT INTO checkpoints (size, note) VALUES (1, x'00')`); err == nil {
		t.Errorf("a reader connection wrote to the database")
	}
}

// TestOldPageSize checks that a log made with SQLite's default 4 KiB pages,
// as logs were before 2026-11-29, keeps them and works.
func TestOldPageSize(t *testing.T) {
	path := filepath.Join(t.TempDir(), "infertrail.db")
	raw, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{`PRAGMA page_size = 4096`, `PRAGMA journal_mode = WAL`} {
		if _, err := raw.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	raw.Close()
	for i := range 2 {
		db, err := Open(t.Context(), path, Config{})
		if err != nil {
			t.Fatal(err)
		}
		entries, blobs := storetest.MakeBatch(i*300, 300)
		storetest.AppendEntries(t, db, entries, blobs)
		for _, want := range entries {
			got, err := db.EntryByID(t.Context(), want.ID)
			if err != nil {
				t.Fatalf("read record %d: %v", want.Seq, err)
			}
			if d := storetest.DiffEntry(&want, &got); d != "" {
				t.Fatalf("record %d: %s", want.Seq, d)
			}
		}
		var size int
		if err := db.writer.QueryRowContext(t.Context(), `PRAGMA page_size`).Scan(&size); err != nil {
			t.Fatal(err)
		}
		if size != 4096 {
			t.Errorf("page size %d after reopening, want the file's 4096", size)
		}
		db.Close()
	}
}

// TestPointReadsDoNotWaitForReaders checks that the reads each request
// makes (its token, the latest checkpoint, the tree size) are answered
// while long reads hold every reader connection, and that a done context
// stops them.
func TestPointReadsDoNotWaitForReaders(t *testing.T) {
	db := openTemp(t)
	defer db.Close()
	ctx := t.Context()
	tok := infertrail.Token{ID: infertrail.NewUUID(), Name: "t", Tenant: "acme", Roles: []infertrail.Role{infertrail.RoleIngest}, Hash: [32]byte{7}, Created: 1}
	if err := db.AddToken(ctx, tok); err != nil {
		t.Fatal(err)
	}
	if err := db.AddCheckpoint(ctx, infertrail.StoredCheckpoint{Size: 3, Note: []byte("n\n")}); err != nil {
		t.Fatal(err)
	}
	// Hold every reader connection with an open result set.
	for range db.nreaders {
		rows, err := db.readers.QueryContext(ctx, `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000000) SELECT i FROM n`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		if !rows.Next() {
			t.Fatal("no row")
		}
	}
	read := make(chan struct{})
	go func() {
		defer close(read)
		if got, err := db.TokenByHash(ctx, tok.Hash); err != nil || got.ID != tok.ID {
			t.Errorf("TokenByHash with every reader busy: %v, %v", got.ID, err)
		}
		if c, err := db.LatestCheckpoint(ctx); err != nil || c.Size != 3 {
			t.Errorf("LatestCheckpoint with every reader busy: %d, %v", c.Size, err)
		}
		if n, err := db.TreeSize(ctx); err != nil || n != 0 {
			t.Errorf("TreeSize with every reader busy: %d, %v", n, err)
		}
	}()
	select {
	case <-read:
	case <-time.After(10 * time.Second):
		t.Fatal("the point reads waited for a reader connection")
	}
	done, stop := context.WithCancel(ctx)
	stop()
	if _, err := db.TokenByHash(done, tok.Hash); !errors.Is(err, context.Canceled) {
		t.Errorf("TokenByHash with a done context: %v, want context.Canceled", err)
	}
}

// TestBlobKeyColumn checks that a blob keeps its key whether or not its id
// starts with the key's id (the column is left empty when it does).
func TestBlobKeyColumn(t *testing.T) {
	db := openTemp(t)
	key := infertrail.KeyID{7, 7, 7}
	prefixed := infertrail.BlobID{7, 7, 7}
	prefixed[31] = 1
	other := infertrail.BlobID{9, 9}
	plain := infertrail.BlobID{5}
	blobs := []infertrail.Blob{
		{ID: prefixed, Key: key, Data: []byte("a")},
		{ID: other, Key: key, Data: []byte("b")},
		{ID: plain, Data: []byte("c")},
	}
	entry, _ := storetest.MakeEntry(0)
	entry.Content = []infertrail.ContentRef{{Field: "messages", Key: key, Blobs: []infertrail.BlobID{prefixed, other, plain}}}
	storetest.AppendEntries(t, db, []infertrail.Entry{entry}, blobs)
	got, err := db.Blobs(t.Context(), []infertrail.BlobID{prefixed, other, plain})
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range blobs {
		if g := got[b.ID]; g.Key != b.Key || string(g.Data) != string(b.Data) {
			t.Errorf("blob %x: key %x data %q, want key %x data %q", b.ID[:3], g.Key[:3], g.Data, b.Key[:3], b.Data)
		}
	}
	var stored int
	if err := db.readers.QueryRowContext(t.Context(), `SELECT length(key_id) FROM blobs WHERE id = ?`, prefixed[:]).Scan(&stored); err != nil || stored != 0 {
		t.Errorf("the prefixed blob's key_id holds %d bytes (%v), want none", stored, err)
	}
}

// TestBackgroundWritesYield: see behindtest.Check; an append that fails
// to begin is not counted.
func TestBackgroundWritesYield(t *testing.T) {
	db := openTemp(t)
	behindtest.Check(t, db, &db.appends)
	canceled, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := db.BeginAppend(canceled); err == nil {
		t.Fatal("BeginAppend with a canceled context succeeded")
	}
	if n := db.appends.Open(); n != 0 {
		t.Errorf("after a failed BeginAppend, %d appends counted", n)
	}
}

// TestWriteErrorMeansNotWritten: a write whose context ends while it runs
// either fails and leaves nothing, or succeeds. (The driver reports a
// statement as cancelled when the context ends just after it committed,
// unless the statement runs without the context.)
func TestWriteErrorMeansNotWritten(t *testing.T) {
	db := openTemp(t)
	defer db.Close()
	now := time.Now()
	var failed, stored int
	for i := range 400 {
		a := infertrail.Approval{ID: infertrail.NewUUID(), Tenant: "t", Status: infertrail.ApprovalPending,
			DecisionID: infertrail.NewUUID(), Governs: infertrail.NewUUID(), Point: infertrail.PointToolCall, Summary: "s",
			Requested: now, Deadline: now.Add(time.Minute)}
		ctx, cancel := context.WithCancel(t.Context())
		start, d := time.Now(), time.Duration(i%40)*25*time.Microsecond
		go func() {
			for time.Since(start) < d {
				runtime.Gosched()
			}
			cancel()
		}()
		err := db.AddApproval(ctx, a)
		cancel()
		_, gerr := db.Approval(t.Context(), a.ID)
		switch {
		case err == nil && gerr != nil:
			t.Fatalf("approval %d: added, then not found: %v", i, gerr)
		case err != nil && gerr == nil:
			t.Fatalf("approval %d: the add failed (%v), and it is stored", i, err)
		case err != nil:
			failed++
		default:
			stored++
		}
	}
	t.Logf("%d added, %d refused", stored, failed)
}

// TestShortBlobIDs: a blob id ending in zeros is stored cut short, 28
// bytes; any other whole. Blobs reads both, by id and by range, and an
// older blob stored whole though its id ends in zeros; an erasure deletes
// them all.
func TestShortBlobIDs(t *testing.T) {
	db := openTemp(t)
	defer db.Close()
	ctx := t.Context()
	key := storetest.TestKey("acme", "s1")
	id := func(n int, tail byte) (b infertrail.BlobID) {
		copy(b[:], key.ID[:])
		b[16], b[17], b[31] = byte(n>>8), byte(n), tail
		return b
	}
	var blobs []infertrail.Blob
	for n := range 300 {
		blobs = append(blobs, infertrail.Blob{ID: id(n, byte(n%2)), Key: key.ID, Codec: infertrail.CodecRaw, Data: fmt.Appendf(nil, `"blob %d"`, n)})
	}
	entries, _ := storetest.MakeBatch(0, 1)
	storetest.AppendKeyed(t, db, []infertrail.DataKey{key}, entries, blobs)
	old := infertrail.Blob{ID: id(1000, 0), Key: key.ID, Codec: infertrail.CodecRaw, Data: []byte(`"older"`)}
	if _, err := db.writer.ExecContext(ctx, `INSERT INTO blobs (id, codec, data, key_id) VALUES (?, 0, ?, x'')`, old.ID[:], old.Data); err != nil {
		t.Fatal(err)
	}
	blobs = append(blobs, old)
	var short, whole int
	if err := db.writer.QueryRowContext(ctx, `SELECT count(*) FILTER (WHERE length(id) = 28), count(*) FILTER (WHERE length(id) = 32) FROM blobs`).Scan(&short, &whole); err != nil || short != 150 || whole != 151 {
		t.Errorf("%d blob ids stored cut short and %d whole (%v), want 150 and 151", short, whole, err)
	}
	for _, ids := range [][]infertrail.BlobID{{blobs[0].ID, blobs[1].ID, old.ID}, nil} {
		if ids == nil { // all of them: read as ranges
			for _, b := range blobs {
				ids = append(ids, b.ID)
			}
		}
		got, err := db.Blobs(ctx, ids)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(ids) {
			t.Errorf("Blobs of %d ids: %d found", len(ids), len(got))
		}
		for _, b := range blobs {
			if g, ok := got[b.ID]; ok && (g.ID != b.ID || g.Key != key.ID || string(g.Data) != string(b.Data)) {
				t.Errorf("blob %x read back as %+v", b.ID, g)
			}
		}
	}
	eraseKey(t, db, 1, key.ID)
	var left int
	if err := db.writer.QueryRowContext(ctx, `SELECT count(*) FROM blobs`).Scan(&left); err != nil || left != 0 {
		t.Errorf("%d blobs left after erasing their key (%v)", left, err)
	}
}
