package postgres

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/infertrail/infertrail"
	"github.com/infertrail/infertrail/store/storetest"
)

func TestStore(t *testing.T) {
	testDSN(t)
	storetest.Run(t, func(t *testing.T) infertrail.Store {
		db, err := Open(t.Context(), testDSN(t), Config{Schema: freshSchema(t, testDSN(t))})
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		return db
	})
}

// testDSN returns the DSN of the test database, skipping the test when
// INFERTRAIL_TEST_POSTGRES is unset, unless INFERTRAIL_REQUIRE_POSTGRES=1.
func testDSN(t testing.TB) string {
	t.Helper()
	dsn := os.Getenv("INFERTRAIL_TEST_POSTGRES")
	if dsn == "" {
		if os.Getenv("INFERTRAIL_REQUIRE_POSTGRES") == "1" {
			t.Fatal("INFERTRAIL_TEST_POSTGRES is unset and INFERTRAIL_REQUIRE_POSTGRES=1")
		}
		t.Skip("INFERTRAIL_TEST_POSTGRES is unset")
	}
	return dsn
}

// freshSchema returns a new random schema name, dropped with everything in
// it when the test ends.
func freshSchema(t testing.TB, dsn string) string {
	t.Helper()
	var b [6]byte
	rand.Read(b[:])
	schema := "infertrail_test_" + hex.EncodeToString(b[:])
	execAtCleanup(t, dsn, `DROP SCHEMA IF EXISTS `+pgx.Identifier{schema}.Sanitize()+` CASCADE`)
	return schema
}

// execAtCleanup runs the statement sql on a connection of its own when the
// test ends (cleanups run last first).
func execAtCleanup(t testing.TB, dsn, sql string) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Errorf("%s: %v", sql, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Errorf("%s: %v", sql, err)
		}
	})
}

// openTest opens a store in a fresh schema. An unreachable database fails
// the test.
func openTest(t testing.TB, cfg Config) (*DB, string) {
	t.Helper()
	dsn := testDSN(t)
	if cfg.Schema == "" {
		cfg.Schema = freshSchema(t, dsn)
	}
	db, err := Open(context.Background(), dsn, cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return db, cfg.Schema
}

// withSearchPath returns dsn with its search_path set to schema.
func withSearchPath(t testing.TB, dsn, schema string) string {
	t.Helper()
	return withParam(t, dsn, "search_path", schema)
}

// withParam returns dsn with the connection parameter name set to value.
func withParam(t testing.TB, dsn, name, value string) string {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil || u.Scheme == "" {
		t.Fatalf("test DSN must be a URL: %q", dsn)
	}
	q := u.Query()
	q.Set(name, value)
	u.RawQuery = q.Encode()
	return u.String()
}

// batch is one batch of test entries with their blobs.
type batch struct {
	entries []infertrail.Entry
	blobs   []infertrail.Blob
}

// newBatch returns n entries (unsequenced) each referencing one blob of
// blobSize bytes, prefixed with tag so that nodes write distinct leaves.
func newBatch(tag string, n, blobSize int) batch {
	var b batch
	for i := range n {
		data := make([]byte, blobSize)
		rand.Read(data)
		id := infertrail.BlobID(sha256.Sum256(data))
		b.blobs = append(b.blobs, infertrail.Blob{ID: id, Codec: infertrail.CodecRaw, Data: data})
		e := infertrail.Entry{
			ID:        infertrail.NewUUID(),
			Tenant:    "default",
			Kind:      infertrail.KindInference,
			Time:      time.Now().UnixNano(),
			Received:  time.Now().UnixNano(),
			SessionID: "session-" + tag,
			TraceID:   "4bf92f3577b34da6a3ce929d0e0e4736",
			ActorID:   "agent:" + tag,
			Content:   []infertrail.ContentRef{{Field: "prompt", Blobs: []infertrail.BlobID{id}}},
		}
		rand.Read(e.MAC[:])
		e.Leaf = fmt.Appendf(nil, `{"id":%q,"node":%q,"i":%d}`, e.ID, tag, i)
		b.entries = append(b.entries, e)
	}
	return b
}

// appendBatch sequences b in tx, computes its tree hashes from the hashes
// tx reads, and appends it.
func appendBatch(ctx context.Context, tx infertrail.AppendTx, start int64, b batch) error {
	hashes, err := treeHashes(ctx, tx, start, b.entries)
	if err != nil {
		return err
	}
	return tx.Append(ctx, b.entries, b.blobs, hashes)
}

// treeHashes sets the entries' Seq from start on and returns the stored
// hashes they add to a tree of size start whose hashes tx reads.
func treeHashes(ctx context.Context, tx infertrail.AppendTx, start int64, entries []infertrail.Entry) ([]tlog.Hash, error) {
	base := tlog.StoredHashCount(start)
	var added []tlog.Hash
	r := tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(idx))
		var old []int64
		for _, i := range idx {
			if i < base {
				old = append(old, i)
			}
		}
		got, err := tx.ReadHashes(ctx, old)
		if err != nil {
			return nil, err
		}
		for k, i := range idx {
			if i < base {
				out[k], got = got[0], got[1:]
			} else {
				out[k] = added[i-base]
			}
		}
		return out, nil
	})
	for i := range entries {
		entries[i].Seq = start + int64(i)
		hs, err := tlog.StoredHashes(entries[i].Seq, entries[i].Leaf, r)
		if err != nil {
			return nil, fmt.Errorf("compute hashes of %d: %w", entries[i].Seq, err)
		}
		added = append(added, hs...)
	}
	return added, nil
}

// appendCommit appends b in one transaction of its own.
func appendCommit(ctx context.Context, db *DB, b batch) error {
	tx, err := db.BeginAppend(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := appendBatch(ctx, tx, tx.Size(), b); err != nil {
		return err
	}
	return tx.Commit()
}

// memTree is the tree computed in memory from leaves, for comparison.
type memTree struct{ hashes []tlog.Hash }

func (m *memTree) ReadHashes(idx []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(idx))
	for k, i := range idx {
		out[k] = m.hashes[i]
	}
	return out, nil
}

func (m *memTree) add(n int64, leaf []byte) error {
	hs, err := tlog.StoredHashes(n, leaf, m)
	m.hashes = append(m.hashes, hs...)
	return err
}

// checkLog checks that the committed log of db is gap-free, that every
// stored hash is the one its leaves give, and returns its entries.
func checkLog(t *testing.T, db *DB) []infertrail.Entry {
	t.Helper()
	ctx := t.Context()
	size, err := db.TreeSize(ctx)
	if err != nil {
		t.Fatalf("TreeSize: %v", err)
	}
	var entries []infertrail.Entry
	mem := &memTree{}
	err = db.Entries(ctx, 0, size+10, func(e *infertrail.Entry) error {
		if e.Seq != int64(len(entries)) {
			return fmt.Errorf("entry seq %d, want %d", e.Seq, len(entries))
		}
		entries = append(entries, e.Clone())
		return mem.add(e.Seq, e.Leaf)
	})
	if err != nil {
		t.Fatalf("Entries: %v", err)
	}
	if int64(len(entries)) != size {
		t.Fatalf("Entries gave %d entries, tree size is %d", len(entries), size)
	}
	idx := make([]int64, len(mem.hashes))
	for i := range idx {
		idx[i] = int64(i)
	}
	got, err := db.ReadHashes(ctx, idx)
	if err != nil {
		t.Fatalf("ReadHashes: %v", err)
	}
	for i := range got {
		if got[i] != mem.hashes[i] {
			t.Fatalf("stored hash %d = %x, want %x", i, got[i], mem.hashes[i])
		}
	}
	if _, err := db.ReadHashes(ctx, []int64{int64(len(mem.hashes))}); !errors.Is(err, infertrail.ErrNotFound) {
		t.Fatalf("ReadHashes past the tree: err = %v, want ErrNotFound", err)
	}
	return entries
}

func TestAppendAndRead(t *testing.T) {
	db, _ := openTest(t, Config{})
	ctx := t.Context()
	var all []infertrail.Entry
	for _, n := range []int{1, 2, 63, 200} {
		b := newBatch("a", n, 100)
		if err := appendCommit(ctx, db, b); err != nil {
			t.Fatalf("append %d: %v", n, err)
		}
		all = append(all, b.entries...)
	}
	// Two Append calls in one transaction continue one another.
	tx, err := db.BeginAppend(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	for i := range 2 {
		b := newBatch("b", 70, 10)
		if err := appendBatch(ctx, tx, tx.Size()+int64(i*70), b); err != nil {
			t.Fatalf("Append: %v", err)
		}
		all = append(all, b.entries...)
	}
	if err := tx.Commit(); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatalf("Rollback after Commit: %v", err)
	}

	got := checkLog(t, db)
	if len(got) != len(all) {
		t.Fatalf("got %d entries, want %d", len(got), len(all))
	}
	for i := range all {
		if g, w := got[i], all[i]; g.ID != w.ID || g.MAC != w.MAC || string(g.Leaf) != string(w.Leaf) ||
			g.Tenant != w.Tenant || g.Kind != w.Kind || g.Time != w.Time || g.Received != w.Received ||
			g.SessionID != w.SessionID || g.TraceID != w.TraceID || g.ActorID != w.ActorID ||
			len(g.Content) != 1 || g.Content[0].Blobs[0] != w.Content[0].Blobs[0] {
			t.Fatalf("entry %d = %+v, want %+v", i, g, w)
		}
	}
	e, err := db.EntryByID(ctx, all[100].ID)
	if err != nil || e.Seq != 100 {
		t.Fatalf("EntryByID = %d, %v; want 100", e.Seq, err)
	}
	if _, err := db.EntryByID(ctx, infertrail.NewUUID()); !errors.Is(err, infertrail.ErrNotFound) {
		t.Fatalf("EntryByID of a missing id: %v, want ErrNotFound", err)
	}
	want := all[5].Content[0].Blobs[0]
	blobs, err := db.Blobs(ctx, []infertrail.BlobID{want, {1}})
	if err != nil || len(blobs) != 1 || blobs[want].ID != want || len(blobs[want].Data) != 100 {
		t.Fatalf("Blobs = %v, %v", blobs, err)
	}

	// Lookup sees committed ids, and ids appended earlier in the same
	// transaction.
	tx, err = db.BeginAppend(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	b := newBatch("c", 3, 10)
	if err := appendBatch(ctx, tx, tx.Size(), b); err != nil {
		t.Fatal(err)
	}
	found, err := tx.Lookup(ctx, []infertrail.UUID{all[7].ID, b.entries[1].ID, infertrail.NewUUID()})
	if err != nil {
		t.Fatalf("Lookup: %v", err)
	}
	if len(found) != 2 || found[all[7].ID].Seq != 7 || found[all[7].ID].MAC != all[7].MAC || found[b.entries[1].ID].Seq != int64(len(all))+1 {
		t.Fatalf("Lookup = %v", found)
	}
	// A batch that does not continue the log is refused.
	if err := tx.Append(ctx, b.entries, nil, nil); !errors.Is(err, infertrail.ErrInvalid) {
		t.Fatalf("Append of a stale seq: %v, want ErrInvalid", err)
	}
	// So is an id already in the log, and the transaction is then done.
	dup := newBatch("d", 2, 10)
	dup.entries[1].ID = all[3].ID
	if err := appendBatch(ctx, tx, tx.Size()+3, dup); !errors.Is(err, infertrail.ErrConflict) {
		t.Fatalf("Append of a committed id: %v, want ErrConflict", err)
	}
	if err := tx.Commit(); err == nil {
		t.Fatal("Commit after a failed Append succeeded")
	}
	checkLog(t, db)
}

// TestConcurrentNodes appends from three stores on one schema, as three
// nodes would, and checks the result is one gap-free log.
func TestConcurrentNodes(t *testing.T) {
	first, schema := openTest(t, Config{})
	nodes := []*DB{first}
	for range 2 {
		db, _ := openTest(t, Config{Schema: schema, MaxConns: 2})
		nodes = append(nodes, db)
	}
	ctx := t.Context()
	var wg sync.WaitGroup
	errs := make(chan error, len(nodes))
	ids := make([][]infertrail.UUID, len(nodes))
	for n, db := range nodes {
		wg.Go(func() {
			for i := range 15 {
				b := newBatch(fmt.Sprint(n), 1+(i*37+n*11)%90, 64)
				if err := appendCommit(ctx, db, b); err != nil {
					errs <- fmt.Errorf("node %d batch %d: %w", n, i, err)
					return
				}
				for _, e := range b.entries {
					ids[n] = append(ids[n], e.ID)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	entries := checkLog(t, first)
	seen := make(map[infertrail.UUID]bool, len(entries))
	for _, e := range entries {
		seen[e.ID] = true
	}
	total := 0
	for n := range ids {
		total += len(ids[n])
		for _, id := range ids[n] {
			if !seen[id] {
				t.Fatalf("node %d: id %s is not in the log", n, id)
			}
		}
	}
	if total != len(entries) {
		t.Fatalf("log has %d entries, nodes appended %d", len(entries), total)
	}
}

// TestInterruptedAppend interrupts append transactions mid-batch and checks
// that nothing of them remains and that the next append succeeds.
func TestInterruptedAppend(t *testing.T) {
	dsn := testDSN(t)
	db, _ := openTest(t, Config{})
	ctx := t.Context()
	if err := appendCommit(ctx, db, newBatch("base", 10, 10)); err != nil {
		t.Fatal(err)
	}

	t.Run("terminate backend", func(t *testing.T) {
		tx, err := db.BeginAppend(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback()
		b := newBatch("killed", 100, 10)
		hashes, err := treeHashes(ctx, tx, tx.Size(), b.entries)
		if err != nil {
			t.Fatal(err)
		}
		// The first half of the batch is written, then the backend dies.
		half := tlog.StoredHashCount(tx.Size()+50) - tlog.StoredHashCount(tx.Size())
		if err := tx.Append(ctx, b.entries[:50], b.blobs[:50], hashes[:half]); err != nil {
			t.Fatal(err)
		}
		var pid uint32
		if err := tx.(*appendTx).tx.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&pid); err != nil {
			t.Fatal(err)
		}
		admin, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer admin.Close(ctx)
		if _, err := admin.Exec(ctx, `SELECT pg_terminate_backend($1)`, pid); err != nil {
			t.Fatal(err)
		}
		err = tx.Append(ctx, b.entries[50:], b.blobs[50:], hashes[half:])
		if err == nil {
			err = tx.Commit()
		}
		if !errors.Is(err, infertrail.ErrUnavailable) {
			t.Fatalf("append on a terminated backend: %v, want ErrUnavailable", err)
		}
		if err := tx.Rollback(); err != nil {
			t.Fatalf("Rollback: %v", err)
		}
		checkRecovered(t, db, 10, b.entries[0].ID)
	})

	t.Run("cancel context", func(t *testing.T) {
		for _, delay := range []time.Duration{0, time.Millisecond, 5 * time.Millisecond} {
			size, err := db.TreeSize(ctx)
			if err != nil {
				t.Fatal(err)
			}
			cctx, cancel := context.WithCancel(ctx)
			tx, err := db.BeginAppend(cctx)
			if err != nil {
				t.Fatal(err)
			}
			b := newBatch("cancelled", 3000, 200)
			hashes, err := treeHashes(cctx, tx, tx.Size(), b.entries)
			if err != nil {
				t.Fatal(err)
			}
			time.AfterFunc(delay, cancel)
			err = tx.Append(cctx, b.entries, b.blobs, hashes)
			if err == nil {
				err = tx.Commit()
			}
			tx.Rollback()
			cancel()
			if err == nil {
				t.Fatalf("delay %v: append and commit succeeded after cancel", delay)
			}
			t.Logf("delay %v: %v", delay, err)
			checkRecovered(t, db, size, b.entries[0].ID)
		}
	})
}

// checkRecovered checks that the tree still has size entries, that id is
// not stored, and that the next append succeeds.
func checkRecovered(t *testing.T, db *DB, size int64, id infertrail.UUID) {
	t.Helper()
	ctx := t.Context()
	if got, err := db.TreeSize(ctx); err != nil || got != size {
		t.Fatalf("TreeSize = %d, %v; want %d", got, err, size)
	}
	if _, err := db.EntryByID(ctx, id); !errors.Is(err, infertrail.ErrNotFound) {
		t.Fatalf("entry of the interrupted batch: %v, want ErrNotFound", err)
	}
	var rows int64
	if err := db.pool.QueryRow(ctx, `SELECT count(*) FROM records`).Scan(&rows); err != nil || rows != size {
		t.Fatalf("records table has %d rows (%v), want %d", rows, err, size)
	}
	if err := appendCommit(ctx, db, newBatch("after", 5, 10)); err != nil {
		t.Fatalf("append after the interruption: %v", err)
	}
	checkLog(t, db)
}

func TestUnreachable(t *testing.T) {
	start := time.Now()
	_, err := Open(t.Context(), "postgres://postgres@127.0.0.1:1/test?sslmode=disable", Config{ConnectTimeout: time.Second})
	if !errors.Is(err, infertrail.ErrUnavailable) {
		t.Fatalf("Open on port 1: %v, want ErrUnavailable", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("Open on port 1 took %v", d)
	}
	if err := Migrate(t.Context(), "postgres://postgres@127.0.0.1:1/test?sslmode=disable&connect_timeout=1"); !errors.Is(err, infertrail.ErrUnavailable) {
		t.Fatalf("Migrate on port 1: %v, want ErrUnavailable", err)
	}
}

// TestReconnect kills every connection of a store and checks that it works
// again, and that failures meanwhile say the store is unavailable.
func TestReconnect(t *testing.T) {
	dsn := testDSN(t)
	db, _ := openTest(t, Config{MaxConns: 4})
	ctx := t.Context()
	if err := appendCommit(ctx, db, newBatch("x", 5, 10)); err != nil {
		t.Fatal(err)
	}
	admin, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	var pids []uint32
	for _, c := range db.pool.AcquireAllIdle(ctx) {
		var pid uint32
		if err := c.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&pid); err != nil {
			t.Fatal(err)
		}
		pids = append(pids, pid)
		c.Release()
	}
	for _, pid := range pids {
		if _, err := admin.Exec(ctx, `SELECT pg_terminate_backend($1)`, pid); err != nil {
			t.Fatal(err)
		}
	}
	ok := false
	for range len(pids) + 2 {
		err := appendCommit(ctx, db, newBatch("y", 5, 10))
		if err == nil {
			ok = true
			break
		}
		if !errors.Is(err, infertrail.ErrUnavailable) {
			t.Fatalf("append on a killed connection: %v, want ErrUnavailable", err)
		}
	}
	if !ok {
		t.Fatal("store did not reconnect")
	}
	checkLog(t, db)
}

func TestMigrate(t *testing.T) {
	dsn := testDSN(t)
	ctx := t.Context()
	schema := freshSchema(t, dsn)
	sdsn := withSearchPath(t, dsn, schema)

	_, err := Open(ctx, dsn, Config{Schema: schema, SkipMigrate: true})
	if !errors.Is(err, ErrSchemaVersion) || errors.Is(err, ErrSchemaNewer) {
		t.Fatalf("Open with SkipMigrate on an empty schema: %v, want ErrSchemaVersion, not ErrSchemaNewer", err)
	}
	for range 2 {
		if err := Migrate(ctx, sdsn); err != nil {
			t.Fatalf("Migrate: %v", err)
		}
	}
	db, err := Open(ctx, sdsn, Config{SkipMigrate: true})
	if err != nil {
		t.Fatalf("Open with SkipMigrate after Migrate: %v", err)
	}
	defer db.Close()
	if db.schema != schema {
		t.Fatalf("schema from the DSN's search_path = %q, want %q", db.schema, schema)
	}
	var n, top int
	if err := db.pool.QueryRow(ctx, `SELECT count(*), max(version) FROM schema_migrations`).Scan(&n, &top); err != nil {
		t.Fatal(err)
	}
	if n != SchemaVersion() || top != SchemaVersion() {
		t.Fatalf("schema_migrations has %d rows up to %d, want %d", n, top, SchemaVersion())
	}

	// Concurrent migrations of one schema do not race.
	schema2 := freshSchema(t, dsn)
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for i := range errs {
		wg.Go(func() { errs[i] = Migrate(ctx, withSearchPath(t, dsn, schema2)) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatalf("concurrent Migrate: %v", err)
		}
	}

	// A schema newer than the binary is refused, migrating or not.
	if _, err := db.pool.Exec(ctx, `INSERT INTO schema_migrations (version, name) VALUES ($1, 'future')`, SchemaVersion()+1); err != nil {
		t.Fatal(err)
	}
	if err := Migrate(ctx, sdsn); !errors.Is(err, ErrSchemaNewer) || !errors.Is(err, ErrSchemaVersion) {
		t.Fatalf("Migrate of a newer schema: %v, want ErrSchemaNewer", err)
	}
	for _, skip := range []bool{true, false} {
		if _, err := Open(ctx, sdsn, Config{SkipMigrate: skip}); !errors.Is(err, ErrSchemaNewer) {
			t.Fatalf("Open of a newer schema (SkipMigrate %v): %v, want ErrSchemaNewer", skip, err)
		}
	}
}

// TestPartitions moves the append clock across months and checks that each
// append lands in its month's partition, that the next month's partition
// exists ahead of need, and that reads span partitions.
func TestPartitions(t *testing.T) {
	var mu sync.Mutex
	now := time.Date(2025, 1, 31, 23, 59, 0, 0, time.UTC)
	clock := func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		return now
	}
	set := func(t time.Time) {
		mu.Lock()
		defer mu.Unlock()
		now = t
	}
	db, _ := openTest(t, Config{Now: clock})
	ctx := t.Context()

	steps := []struct {
		at   time.Time
		want string // partition the batch must land in
	}{
		{time.Date(2025, 1, 31, 23, 59, 0, 0, time.UTC), "records_2025_01"},
		{time.Date(2025, 2, 1, 0, 0, 0, 0, time.UTC), "records_2025_02"},
		{time.Date(2025, 1, 15, 0, 0, 0, 0, time.UTC), "records_2025_02"}, // a clock stepping back stays in February
		{time.Date(2025, 5, 3, 0, 0, 0, 0, time.UTC), "records_2025_05"},  // a gap of months
		{time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), "records_2026_01"},
	}
	var batches [][]infertrail.UUID
	for _, s := range steps {
		set(s.at)
		b := newBatch("p", 70, 1024)
		if err := appendCommit(ctx, db, b); err != nil {
			t.Fatalf("append at %v: %v", s.at, err)
		}
		var ids []infertrail.UUID
		for _, e := range b.entries {
			ids = append(ids, e.ID)
		}
		batches = append(batches, ids)
	}
	for i, s := range steps {
		var part string
		var n int
		err := db.pool.QueryRow(ctx, `SELECT min(tableoid::regclass::text), count(DISTINCT tableoid) FROM records WHERE id = ANY($1)`,
			uuids(batches[i])).Scan(&part, &n)
		if err != nil {
			t.Fatal(err)
		}
		if n != 1 || part != s.want {
			t.Errorf("batch at %v is in %d partitions, %s; want %s", s.at, n, part, s.want)
		}
	}
	var parts []string
	rows, err := db.pool.Query(ctx, `SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
		WHERE i.inhparent = 'records'::regclass ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	parts, err = pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"records_2025_01", "records_2025_02", "records_2025_03", "records_2025_05", "records_2025_06", "records_2026_01", "records_2026_02"}
	if fmt.Sprint(parts) != fmt.Sprint(want) {
		t.Errorf("record partitions = %v, want %v", parts, want)
	}
	var blobParts int
	if err := db.pool.QueryRow(ctx, `SELECT count(*) FROM pg_inherits WHERE inhparent = 'blobs'::regclass`).Scan(&blobParts); err != nil || blobParts != len(want) {
		t.Errorf("blob partitions = %d (%v), want %d", blobParts, err, len(want))
	}

	// Reads across partitions, including ranges that start or end inside one.
	checkLog(t, db)
	old := batches[0][5]
	if e, err := db.EntryByID(ctx, old); err != nil || e.Seq != 5 {
		t.Errorf("EntryByID of a January entry = %d, %v; want 5", e.Seq, err)
	}
	tx, err := db.BeginAppend(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	if m, err := tx.Lookup(ctx, []infertrail.UUID{old, batches[4][0]}); err != nil || len(m) != 2 || m[old].Seq != 5 {
		t.Errorf("Lookup across partitions = %v, %v", m, err)
	}
	tx.Rollback()

	for _, r := range [][2]int64{{60, 80}, {139, 141}, {69, 281}, {349, 400}} {
		var got []int64
		if err := db.Entries(ctx, r[0], r[1], func(e *infertrail.Entry) error {
			got = append(got, e.Seq)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		wantN := min(r[1], 350) - r[0]
		if int64(len(got)) != wantN || got[0] != r[0] {
			t.Errorf("Entries(%d, %d) gave %d entries from %v, want %d", r[0], r[1], len(got), got[:min(1, len(got))], wantN)
		}
	}

	// A blob stored in an earlier month and referenced again without being
	// sent is copied into the current month, so each month is self-contained.
	jan, err := db.EntryByID(ctx, batches[0][0])
	if err != nil {
		t.Fatal(err)
	}
	blob := jan.Content[0].Blobs[0]
	again := newBatch("again", 2, 10)
	again.entries[1].Content = jan.Content
	if err := appendCommit(ctx, db, again); err != nil {
		t.Fatal(err)
	}
	rows, err = db.pool.Query(ctx, `SELECT tableoid::regclass::text FROM blobs WHERE id = $1 ORDER BY 1`, blob[:])
	if err != nil {
		t.Fatal(err)
	}
	in, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(in) != "[blobs_2025_01 blobs_2026_01]" {
		t.Errorf("blob referenced in January 2025 and January 2026 is stored in %v", in)
	}
	got, err := db.Blobs(ctx, []infertrail.BlobID{blob})
	if err != nil || len(got[blob].Data) != 1024 {
		t.Errorf("Blobs of the copied blob = %v, %v", got, err)
	}
}

// BenchmarkAppend measures the store alone: batches of 1000 entries, each
// with one 1 KiB blob, hashes computed in memory.
func BenchmarkAppend(b *testing.B) {
	db, _ := openTest(b, Config{})
	ctx := context.Background()
	const batchSize = 1000
	mem := &memTree{}
	batches := make([]batch, b.N)
	for i := range batches {
		batches[i] = newBatch("bench", batchSize, 1024)
	}
	b.ResetTimer()
	for i := range b.N {
		bt := batches[i]
		tx, err := db.BeginAppend(ctx)
		if err != nil {
			b.Fatal(err)
		}
		start := tx.Size()
		n := len(mem.hashes)
		for k := range bt.entries {
			bt.entries[k].Seq = start + int64(k)
			if err := mem.add(bt.entries[k].Seq, bt.entries[k].Leaf); err != nil {
				b.Fatal(err)
			}
		}
		if err := tx.Append(ctx, bt.entries, bt.blobs, mem.hashes[n:]); err != nil {
			b.Fatal(err)
		}
		if err := tx.Commit(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*batchSize)/b.Elapsed().Seconds(), "entries/s")
}

// BenchmarkInclusionProof reads the hashes of one inclusion proof
// (tlog.ProveRecord) from trees of 1 and 10 million records. The hashes
// table is filled directly with chunks of placeholder hashes: only the
// reading is timed, not the proof's correctness, which TestStore checks.
func BenchmarkInclusionProof(b *testing.B) {
	for _, size := range []int64{1_000_000, 10_000_000} {
		b.Run(fmt.Sprintf("size=%d", size), func(b *testing.B) {
			db, _ := openTest(b, Config{})
			ctx := context.Background()
			chunks := (tlog.StoredHashCount(size) + hashesPerChunk - 1) / hashesPerChunk
			_, err := db.pool.Exec(ctx, `INSERT INTO hashes (chunk, data)
				SELECT g, decode(repeat(md5(g::text), 128), 'hex') FROM generate_series(0, $1::bigint - 1) AS g`, chunks)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := db.pool.Exec(ctx, `UPDATE log_head SET size = $1`, size); err != nil {
				b.Fatal(err)
			}
			if _, err := db.pool.Exec(ctx, `ANALYZE hashes`); err != nil {
				b.Fatal(err)
			}
			r := tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) { return db.ReadHashes(ctx, idx) })
			var rec int64
			b.ResetTimer()
			for b.Loop() {
				rec = (rec + 7_654_321) % size
				if _, err := tlog.ProveRecord(size, rec, r); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestLeafColumn: leaves are stored compressed, with their hex packed
// (store/internal/leafcol); a leaf stored plain, as before 2026-11-29,
// still reads; a damaged one is reported as such, naming its record.
func TestLeafColumn(t *testing.T) {
	db, _ := openTest(t, Config{})
	ctx := t.Context()
	b := newBatch("leaf", 3, 10)
	for i := range b.entries {
		e := &b.entries[i]
		e.Leaf = fmt.Appendf(nil, `{"commitments":{"gen_ai.input.messages":"sha256:%x"},"id":%q,"kind":"inference","seq":%d,"trace_id":%q}`,
			e.MAC, e.ID, i, e.TraceID)
	}
	if err := appendCommit(ctx, db, b); err != nil {
		t.Fatal(err)
	}
	var col []byte
	if err := db.pool.QueryRow(ctx, `SELECT leaf FROM records WHERE seq = 0`).Scan(&col); err != nil {
		t.Fatal(err)
	}
	if len(col) >= len(b.entries[0].Leaf)*3/4 || col[0] == '{' {
		t.Errorf("a leaf of %d bytes is stored in %d: %q", len(b.entries[0].Leaf), len(col), col)
	}
	if _, err := db.pool.Exec(ctx, `UPDATE records SET leaf = $1 WHERE seq = 1`, b.entries[1].Leaf); err != nil {
		t.Fatal(err)
	}
	got := checkLog(t, db)
	for i := range b.entries {
		if !bytes.Equal(got[i].Leaf, b.entries[i].Leaf) {
			t.Errorf("leaf %d = %s, want %s", i, got[i].Leaf, b.entries[i].Leaf)
		}
	}
	if _, err := db.pool.Exec(ctx, `UPDATE records SET leaf = $1 WHERE seq = 2`, col[:len(col)/2]); err != nil {
		t.Fatal(err)
	}
	err := db.Entries(ctx, 0, 3, func(*infertrail.Entry) error { return nil })
	if ce := (*infertrail.CorruptError)(nil); !errors.As(err, &ce) || ce.Seq != 2 {
		t.Fatalf("Entries over a damaged leaf: %v, want a CorruptError for record 2", err)
	}
}
