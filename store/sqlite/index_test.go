package sqlite

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/infertrail/infertrail"
	"github.com/infertrail/infertrail/store/internal/postings"
	"github.com/infertrail/infertrail/store/storetest"
)

// TestStoreSmallCounts runs the conformance suite with small counts, so
// that queries with several keys walk the postings of the first key rather
// than those of the rarest, queries of tenants walk the log for some
// tenants and read the ranges of records_tenant_time of others.
func TestStoreSmallCounts(t *testing.T) {
	defer func(r, n int, w int64) {
		rareCount, rangeCount, walkSpan = r, n, w
	}(rareCount, rangeCount, walkSpan)
	rareCount, rangeCount, walkSpan = 1, 25, 100
	storetest.Run(t, func(t *testing.T) infertrail.Store { return openTemp(t) })
}

// TestQueryPlans checks that every kind of query walks an index or reads a
// bounded range of one (see DB.Query).
func TestQueryPlans(t *testing.T) {
	defer func(n int) { rangeCount = n }(rangeCount)
	db := openTemp(t)
	defer db.Close()
	ctx := t.Context()
	entries, blobs := storetest.MakeBatch(0, 30)
	storetest.AppendEntries(t, db, entries, blobs)
	if err := db.AddPostings(ctx, "indexer", 0, 30, []infertrail.Posting{{Key: "a=1", Seq: 1}, {Key: "b=1", Seq: 1}}); err != nil {
		t.Fatal(err)
	}
	explain := func(query string, args ...any) []string {
		t.Helper()
		rows, err := db.readers.QueryContext(ctx, "EXPLAIN QUERY PLAN "+query, args...)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var plan []string
		for rows.Next() {
			var id, parent, notused int
			var detail string
			if err := rows.Scan(&id, &parent, &notused, &detail); err != nil {
				t.Fatal(err)
			}
			plan = append(plan, detail)
		}
		return plan
	}
	toolCall := []infertrail.Kind{infertrail.KindToolCall}
	two := []string{"acme-corp", "default"}
	walk := "SEARCH r USING INTEGER PRIMARY KEY (rowid<?)"
	tenant := "SEARCH r USING COVERING INDEX records_tenant_time (tenant=?)"
	tenantKind := "SEARCH r USING INDEX records_tenant_time (tenant=?)"
	timeRange := "SEARCH r USING COVERING INDEX records_tenant_time (tenant=? AND time>? AND time<?)"
	since := "SEARCH r USING INDEX records_tenant_time (tenant=? AND time>?)"
	byRowid := "SEARCH r USING INTEGER PRIMARY KEY (rowid=?)"
	merge := "MERGE (UNION ALL)"
	blocks := "SEARCH p USING PRIMARY KEY (key=? AND block>? AND block<?)"
	mid := infertrail.Query{From: entries[19].Time, To: entries[24].Time}
	for _, c := range []struct {
		q     infertrail.Query
		small bool // with rangeCount 1
		want  []string
	}{
		{infertrail.Query{}, false, []string{walk}},
		{infertrail.Query{Kinds: toolCall}, false, []string{walk}},
		{infertrail.Query{Kinds: toolCall, From: 5}, false, []string{byRowid, merge, since, since, since}},
		{infertrail.Query{Kinds: toolCall, From: 5}, true, []string{walk}},
		{infertrail.Query{Tenants: []string{"acme-corp"}}, false, []string{byRowid, tenant}},
		{infertrail.Query{Tenants: []string{"acme-corp"}}, true, []string{walk}},
		{infertrail.Query{Tenants: []string{"acme-corp"}, Kinds: toolCall, Before: 20}, false, []string{byRowid, tenantKind}},
		{infertrail.Query{Tenants: two}, false, []string{byRowid, merge, tenant, tenant}},
		{infertrail.Query{Tenants: two}, true, []string{walk}},
		{infertrail.Query{Tenants: []string{"acme-corp"}, From: mid.From, To: mid.To}, false, []string{byRowid, timeRange}},
		{infertrail.Query{Tenants: two, From: mid.From, To: mid.To}, false, []string{byRowid, merge, timeRange, timeRange}},
		{infertrail.Query{From: mid.From, To: mid.To}, false, []string{byRowid, merge, timeRange, timeRange, timeRange}},
		{infertrail.Query{From: mid.From, To: mid.To}, true, []string{walk}},
		{infertrail.Query{Keys: []string{"a=1"}}, false, []string{blocks, byRowid}},
		{infertrail.Query{Keys: []string{"a=1", "b=1"}, Tenants: []string{"acme-corp"}, From: 3}, false,
			[]string{blocks, "SEARCH k0 USING PRIMARY KEY (key=? AND block=?)", byRowid}},
	} {
		rangeCount = 20_000
		if c.small {
			rangeCount = 1
		}
		tx, err := db.readers.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		p, err := planQuery(ctx, tx, c.q)
		tx.Rollback()
		if err != nil {
			t.Fatal(err)
		}
		query, plan := p.query, []string(nil)
		if w := p.keys; w != nil {
			query = w.blocks + "\n" + w.entries
			plan = append(explain(w.blocks, append(w.blockArgs, w.Hi, w.Lo, postings.FirstPage)...),
				explain(w.entries, slices.Concat([]any{"[1]"}, w.entryArgs, []any{w.Limit})...)...)
		} else {
			plan = explain(query, p.args...)
		}
		if !containsInOrder(plan, c.want) || slices.ContainsFunc(plan, isScan) {
			t.Errorf("Query(%+v), small counts %v:\n%s\nplan:\n\t%s\nwant steps:\n\t%s", c.q, c.small, query,
				strings.Join(plan, "\n\t"), strings.Join(c.want, "\n\t"))
		}
	}
	// What chooses a plan reads a bounded range of an index, or seeks.
	for _, c := range []struct {
		query string
		args  []any
		want  string
	}{
		{`SELECT count(*) FROM (SELECT 1 FROM postings WHERE key = ? AND block <= ? AND block >= ? LIMIT ?)`, []any{"a=1", 5, 0, 10},
			"SEARCH postings USING PRIMARY KEY (key=? AND block>? AND block<?)"},
		{`SELECT count(*) FROM (SELECT 1 FROM records r INDEXED BY records_tenant_time WHERE r.tenant = ? AND r.seq < ? AND r.time >= ? LIMIT ?)`,
			[]any{"acme-corp", 5, 1, 10}, "SEARCH r USING COVERING INDEX records_tenant_time (tenant=? AND time>?)"},
		{`SELECT r.seq FROM records r INDEXED BY records_tenant_time WHERE r.tenant = ? AND r.time >= ? AND r.time < ? ORDER BY r.time DESC, r.seq DESC LIMIT 1`,
			[]any{"acme-corp", 1, 10}, "SEARCH r USING COVERING INDEX records_tenant_time (tenant=? AND time>? AND time<?)"},
		{`SELECT seq FROM records WHERE seq < ? ORDER BY seq DESC LIMIT 1`, []any{5}, "SEARCH records USING INTEGER PRIMARY KEY (rowid<?)"},
		{`SELECT tenant FROM records INDEXED BY records_tenant_time WHERE tenant > ? ORDER BY tenant LIMIT 1`,
			[]any{"acme-corp"}, "SEARCH records USING COVERING INDEX records_tenant_time (tenant>?)"},
	} {
		if plan := explain(c.query, c.args...); !slices.Contains(plan, c.want) {
			t.Errorf("plan of %s:\n\t%s\nwant %s", c.query, strings.Join(plan, "\n\t"), c.want)
		}
	}
}

// containsInOrder reports whether plan has the steps of want, in order.
func containsInOrder(plan, want []string) bool {
	i := 0
	for _, p := range plan {
		if i < len(want) && p == want[i] {
			i++
		}
	}
	return i == len(want)
}

// isScan reports whether a plan step reads a whole table or index (the
// JSON array of a query's sequence numbers aside).
func isScan(step string) bool {
	return strings.HasPrefix(step, "SCAN ") && !strings.HasPrefix(step, "SCAN (subquery-") && !strings.HasPrefix(step, "SCAN json_each ")
}

var queryDB = flag.String("querydb", "", "BenchmarkQuery: the database file to query, built there if missing (default: a temporary file)")
var queryRecords = flag.Int("queryrecords", 1_000_000, "BenchmarkQuery: the number of records of the database it builds")

// BenchmarkQuery measures the latency of investigation queries (see
// storetest.BenchQueries) on a log of -queryrecords records: 1 million take
// about a minute to build, 10 million about ten.
//
//	go test ./store/sqlite -run '^$' -bench Query -benchtime 200x
//
// With -querydb, the log is kept in that file and built only once.
func BenchmarkQuery(b *testing.B) {
	n := int64(*queryRecords)
	path := *queryDB
	if path == "" {
		path = filepath.Join(b.TempDir(), "query.db")
	}
	db, err := Open(b.Context(), path, Config{})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	if size, _ := db.TreeSize(b.Context()); size < n {
		start := time.Now()
		storetest.BuildQueryLog(b, db, size, n)
		if _, err := db.writer.ExecContext(b.Context(), `PRAGMA wal_checkpoint(TRUNCATE)`); err != nil {
			b.Fatal(err)
		}
		fi, _ := os.Stat(path)
		b.Logf("built a log of %d records in %v: %d MB", n, time.Since(start).Round(time.Second), fi.Size()>>20)
	}
	storetest.BenchQueries(b, db, n)
}

// TestTimeBlocksBound: the zone map's bounds, widened to whole seconds and
// not rewritten while a commit's times fall within them, still hold every
// record's time, commit after commit, late records and a second process's
// writes included.
func TestTimeBlocksBound(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log.db")
	db, err := Open(t.Context(), path, Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	other, err := Open(t.Context(), path, Config{}) // another writer of the same file
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	base := int64(1_750_000_000_000_000_000)
	n := 0
	for c := range 60 {
		k := 1 + (c*37)%150 // 4,500 records in all: two blocks
		entries, blobs := storetest.MakeBatch(n, k)
		for i := range entries {
			step := int64(n+i) * int64(37*time.Millisecond)
			entries[i].Time = base + step
			if (n+i)%11 == 0 {
				entries[i].Time = base + step - int64(90*time.Second) // late
			}
		}
		w := db
		if c%5 == 4 {
			w = other
		}
		storetest.AppendEntries(t, w, entries, blobs)
		n += k
	}
	rows, err := db.readers.QueryContext(t.Context(), `SELECT r.seq, r.time, b.min_time, b.max_time FROM records r
		LEFT JOIN time_blocks b ON b.block = r.seq >> ?`, infertrail.TimeBlockBits)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	seen := 0
	for rows.Next() {
		var seq, tm int64
		var lo, hi sql.NullInt64
		if err := rows.Scan(&seq, &tm, &lo, &hi); err != nil {
			t.Fatal(err)
		}
		if !lo.Valid || lo.Int64 > tm || tm > hi.Int64 {
			t.Errorf("record %d at %d: its block's bounds are [%v, %v]", seq, tm, lo, hi)
		}
		seen++
	}
	if seen != n {
		t.Errorf("%d records, want %d", seen, n)
	}
}

// TestMigrateDerivedSize: a database from before migration 0007, whose
// log_head holds the tree size, opens with the size its records give, and
// takes appends on from there.
func TestMigrateDerivedSize(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log.db")
	db, err := Open(t.Context(), path, Config{})
	if err != nil {
		t.Fatal(err)
	}
	entries, blobs := storetest.MakeBatch(0, 30)
	storetest.AppendEntries(t, db, entries, blobs)
	// Back to version 6, as a previous build left it.
	downgradeIndexFile(t, db)
	for _, q := range []string{`ALTER TABLE log_head DROP COLUMN chunk_size`, `ALTER TABLE log_head ADD COLUMN size INTEGER NOT NULL DEFAULT 0`,
		`UPDATE log_head SET size = 30`, `DELETE FROM schema_migrations WHERE version >= 7`} {
		if _, err := db.writer.ExecContext(t.Context(), q); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()
	db, err = Open(t.Context(), path, Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if n, err := db.TreeSize(t.Context()); err != nil || n != 30 {
		t.Fatalf("TreeSize after migrating = %d, %v; want 30", n, err)
	}
	var cols int
	if err := db.readers.QueryRowContext(t.Context(), `SELECT count(*) FROM pragma_table_info('log_head') WHERE name = 'size'`).Scan(&cols); err != nil || cols != 0 {
		t.Errorf("log_head.size still there (%d, %v)", cols, err)
	}
	more, blobs := storetest.MakeBatch(30, 5)
	if seqs := storetest.AppendEntries(t, db, more, blobs); seqs[0] != 30 {
		t.Errorf("next append at %d, want 30", seqs[0])
	}
}

// TestMigrateChunkSize checks that a log whose hash_chunks rows pack 64
// hashes, as every log did before migration 0008, keeps that layout, and
// that a new log packs 63: both read and extend the same tree.
func TestMigrateChunkSize(t *testing.T) {
	ctx := t.Context()
	old := filepath.Join(t.TempDir(), "old.db")
	db, err := Open(ctx, old, Config{})
	if err != nil {
		t.Fatal(err)
	}
	if db.chunkSize != 63 {
		t.Fatalf("new log packs %d hashes per chunk, want 63", db.chunkSize)
	}
	// Lay the log out as a build before 0008 did.
	if _, err := db.writer.ExecContext(ctx, `UPDATE log_head SET chunk_size = 64`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if db, err = Open(ctx, old, Config{}); err != nil {
		t.Fatal(err)
	}
	entries, blobs := storetest.MakeBatch(0, 150)
	storetest.AppendEntries(t, db, entries, blobs)
	downgradeIndexFile(t, db)
	for _, q := range []string{`ALTER TABLE log_head DROP COLUMN chunk_size`, `DELETE FROM schema_migrations WHERE version = 8`} {
		if _, err := db.writer.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()
	if db, err = Open(ctx, old, Config{}); err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if db.chunkSize != 64 {
		t.Fatalf("migrated log packs %d hashes per chunk, want 64 as before", db.chunkSize)
	}

	fresh := openTemp(t)
	storetest.AppendEntries(t, fresh, entries, blobs)
	more, blobs := storetest.MakeBatch(150, 77)
	storetest.AppendEntries(t, db, more, blobs)
	storetest.AppendEntries(t, fresh, more, blobs)
	var indexes []int64
	for i := range tlog.StoredHashCount(227) {
		indexes = append(indexes, i)
	}
	want, err := fresh.ReadHashes(ctx, indexes)
	if err != nil {
		t.Fatal(err)
	}
	got, err := db.ReadHashes(ctx, indexes)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, want) {
		t.Error("the migrated log's tree hashes differ from a new log's")
	}
	var rows int
	if err := db.readers.QueryRowContext(ctx, `SELECT count(*) FROM hash_chunks`).Scan(&rows); err != nil || int64(rows) != (int64(len(indexes))+63)/64 {
		t.Errorf("migrated log has %d hash chunks (%v), want %d", rows, err, (len(indexes)+63)/64)
	}
}

// TestAddPostingsConflict: a step is stored with its cursor, and a step
// that finds the cursor moved fails with ErrConflict and writes nothing.
func TestAddPostingsConflict(t *testing.T) {
	db := openTemp(t)
	ctx := t.Context()
	count := func() int { return len(indexPostings(t, db)) }
	var ps []infertrail.Posting
	for i := range 22 {
		ps = append(ps, infertrail.Posting{Key: fmt.Sprintf("k=%d", i%5), Seq: int64(i)})
	}
	for _, end := range []int64{11, 22} {
		if err := db.AddPostings(ctx, "index", end-11, end, ps[end-11:end]); err != nil {
			t.Fatal(err)
		}
		if n := count(); n != int(end) {
			t.Errorf("%d postings stored, want %d", n, end)
		}
		if c, err := db.Cursor(ctx, "index"); err != nil || c != end {
			t.Errorf("cursor at %d (%v), want %d", c, err, end)
		}
	}
	more := append(slices.Clone(ps[11:]), infertrail.Posting{Key: "k=+", Seq: 13})
	if err := db.AddPostings(ctx, "index", 11, 22, more); !errors.Is(err, infertrail.ErrConflict) {
		t.Errorf("a step from a moved cursor: %v, want ErrConflict", err)
	}
	if c, err := db.Cursor(ctx, "index"); err != nil || c != 22 {
		t.Errorf("cursor at %d (%v) after the conflict, want 22", c, err)
	}
	if n := count(); n != 22 {
		t.Errorf("%d postings stored after the conflict, want 22", n)
	}
}

// downgradeIndexFile takes db's file back to schema version 8, as a build
// before the index file left it: postings, cursors and findings in the
// log's file, with the rows the index file holds now.
func downgradeIndexFile(t *testing.T, db *DB) {
	t.Helper()
	ctx := t.Context()
	old, err := migrationFS.ReadFile("migrations/0004_index.sql")
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{string(old), `DROP INDEX data_keys_erasure`, `ALTER TABLE data_keys DROP COLUMN erasure`,
		`DELETE FROM schema_migrations WHERE version >= 9`} {
		if _, err := db.writer.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	for _, p := range indexPostings(t, db) {
		if _, err := db.writer.ExecContext(ctx, `INSERT INTO main.postings (key, seq, data_key) VALUES (?, ?, ?)`, p.Key, p.Seq, keyArg(p.DataKey)); err != nil {
			t.Fatal(err)
		}
	}
	for _, tbl := range []string{"cursors", "findings", "finding_records"} {
		rows, err := db.readers.QueryContext(ctx, `SELECT * FROM idx.`+tbl)
		if err != nil {
			t.Fatal(err)
		}
		cols, _ := rows.Columns()
		for rows.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			if _, err := db.writer.ExecContext(ctx, `INSERT INTO main.`+tbl+` VALUES `+values(1, len(cols)), vals...); err != nil {
				t.Fatal(err)
			}
		}
		rows.Close()
	}
}

// indexPostings returns the postings of db's index file in (key, seq)
// order, a posting whose key its block lists (block_terms) with the data
// key of its record (key_records). A posting without one, of a record
// with one, whose key the block lists would get it too: the tests'
// postings have none such.
func indexPostings(t *testing.T, db *DB) []infertrail.Posting {
	t.Helper()
	ctx := t.Context()
	owners := map[int64]infertrail.KeyID{}
	rows, err := db.readers.QueryContext(ctx, `SELECT data_key, block, bits FROM idx.key_records`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var (
			id          []byte
			block, bits int64
		)
		if err := rows.Scan(&id, &block, &bits); err != nil {
			t.Fatal(err)
		}
		for _, seq := range postings.AppendSeqs(nil, block, bits, 0, math.MaxInt64) {
			if _, ok := owners[seq]; ok {
				t.Fatalf("record %d under two data keys in key_records", seq)
			}
			owners[seq] = infertrail.KeyID(id)
		}
	}
	rows.Close()
	lists := map[int64]map[string]bool{}
	for block, keys := range blockLists(t, db) {
		if len(keys) == 0 || !slices.IsSorted(keys) {
			t.Fatalf("the list of block %d: %q; want keys in order", block, keys)
		}
		lists[block] = map[string]bool{}
		for _, k := range keys {
			lists[block][k] = true
		}
	}
	var ps []infertrail.Posting
	rows, err = db.readers.QueryContext(ctx, `SELECT key, block, bits FROM idx.postings`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			stored      any
			block, bits int64
		)
		if err := rows.Scan(&stored, &block, &bits); err != nil {
			t.Fatal(err)
		}
		if bits == 0 {
			t.Fatalf("postings hold an empty block %d of %v", block, stored)
		}
		key := keyText(t, stored)
		listed := lists[block][postings.Stored(key)]
		for _, seq := range postings.AppendSeqs(nil, block, bits, 0, math.MaxInt64) {
			p := infertrail.Posting{Key: key, Seq: seq}
			if listed {
				p.DataKey = owners[seq]
			}
			ps = append(ps, p)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(ps, func(a, b infertrail.Posting) int {
		return cmp.Or(strings.Compare(a.Key, b.Key), cmp.Compare(a.Seq, b.Seq))
	})
	return ps
}

// blockLists returns the lists of block_terms in db's index file, by block.
func blockLists(t *testing.T, db *DB) map[int64][]string {
	t.Helper()
	out := map[int64][]string{}
	rows, err := db.readers.QueryContext(t.Context(), `SELECT block, keys FROM idx.block_terms`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			block int64
			b     []byte
		)
		if err := rows.Scan(&block, &b); err != nil {
			t.Fatal(err)
		}
		keys, err := postings.ParseList(b)
		if err != nil {
			t.Fatalf("the list of block %d: %v", block, err)
		}
		out[block] = keys
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// termSources takes the erasure lists of the index file on conn back to
// term_sources, a row per record and data key, as the index file's schema
// version 4 and before held them. Their term lists are left empty: no
// migration reads them.
func termSources(t *testing.T, conn interface {
	ExecContext(context.Context, string, ...any) (sql.Result, error)
}) {
	t.Helper()
	for _, q := range []string{
		`CREATE TABLE term_sources (data_key BLOB NOT NULL, seq INTEGER NOT NULL, terms BLOB NOT NULL, PRIMARY KEY (data_key, seq)) WITHOUT ROWID`,
		`INSERT INTO term_sources (data_key, seq, terms) WITH RECURSIVE b (i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM b WHERE i < 63)
			SELECT k.data_key, k.block * 64 + b.i, x'' FROM key_records k, b WHERE (k.bits >> b.i) & 1`,
		`DROP TABLE key_records`,
		`DROP TABLE block_terms`,
		`DELETE FROM schema_migrations WHERE version >= 5`,
	} {
		if _, err := conn.ExecContext(t.Context(), q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}

// rowPostings takes the postings of the index file on conn back to a row
// per posting, as the index file's schema version 3 and before held them
// (with term_sources: termSources).
func rowPostings(t *testing.T, conn interface {
	ExecContext(context.Context, string, ...any) (sql.Result, error)
}) {
	t.Helper()
	termSources(t, conn)
	for _, q := range []string{
		`CREATE TABLE postings_rows (key TEXT NOT NULL, seq INTEGER NOT NULL, PRIMARY KEY (key, seq)) WITHOUT ROWID`,
		`INSERT INTO postings_rows (key, seq) WITH RECURSIVE b (i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM b WHERE i < 63)
			SELECT p.key, p.block * 64 + b.i FROM postings p, b WHERE (p.bits >> b.i) & 1`,
		`DROP TABLE postings`,
		`ALTER TABLE postings_rows RENAME TO postings`,
		`DELETE FROM schema_migrations WHERE version >= 4`,
	} {
		if _, err := conn.ExecContext(t.Context(), q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}

// keyText is the posting key that postings.key holds as stored.
func keyText(t *testing.T, stored any) string {
	t.Helper()
	switch v := stored.(type) {
	case string:
		return v
	case []byte:
		if len(v) != postings.StoredLen || v[0] != postings.TagTerms {
			t.Fatalf("postings.key holds the blob %x, not a packed term key", v)
		}
		// The tag's last 4 bytes are not stored: the tests' term keys
		// end in 8 zero digits.
		return infertrail.IndexTerm + "=" + hex.EncodeToString(v[1:]) + "00000000"
	}
	t.Fatalf("postings.key holds %T", stored)
	return ""
}

// TestMigrateIndexFile: a database from before migration 0009, whose
// postings, cursors and findings are in the log's file, opens with them
// moved to the index file, and again so if the move is done twice (a
// crash between the copy and the log's migration).
func TestMigrateIndexFile(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "log.db")
	db, err := Open(ctx, path, Config{})
	if err != nil {
		t.Fatal(err)
	}
	entries, blobs := storetest.MakeBatch(0, 30)
	storetest.AppendEntries(t, db, entries, blobs)
	k1, k2 := infertrail.KeyID{1, 1}, infertrail.KeyID{2, 2}
	ps := []infertrail.Posting{{Key: "a=1", Seq: 1}, {Key: "a=1", Seq: 7}, {Key: "b=1", Seq: 7},
		{Key: "term=x", Seq: 2, DataKey: k1}, {Key: "term=y", Seq: 2, DataKey: k1}, {Key: "term=x", Seq: 3, DataKey: k2},
		{Key: "term=001122334455667700000000", Seq: 3, DataKey: k2}, {Key: "term=001122334455667700000000", Seq: 4}}
	if err := db.AddPostings(ctx, "indexer", 0, 30, ps); err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(ps, func(a, b infertrail.Posting) int {
		return cmp.Or(strings.Compare(a.Key, b.Key), cmp.Compare(a.Seq, b.Seq))
	})
	if err := db.AdvanceCursor(ctx, "siem:x", 0, 12); err != nil {
		t.Fatal(err)
	}
	f := infertrail.Finding{ID: infertrail.UUID{1, 2, 3}, Detector: "d", Severity: infertrail.SeverityHigh, Tenant: "acme", Subject: "trace=t", Records: []int64{1, 7}, Summary: "s"}
	if err := db.AddFindings(ctx, []infertrail.Finding{f}); err != nil {
		t.Fatal(err)
	}
	downgradeIndexFile(t, db)
	db.Close()
	check := func(removeIndex bool) {
		t.Helper()
		if removeIndex {
			for _, suffix := range []string{"", "-wal", "-shm"} {
				if err := os.Remove(IndexPath(path) + suffix); err != nil && !errors.Is(err, os.ErrNotExist) {
					t.Fatal(err)
				}
			}
		}
		db, err := Open(ctx, path, Config{})
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		var n int
		if err := db.writer.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_schema WHERE name IN ('postings', 'cursors', 'findings', 'finding_records')`).Scan(&n); err != nil || n != 0 {
			t.Errorf("%d of the index's tables left in the log's file (%v)", n, err)
		}
		seqs := func(key string) []int64 {
			t.Helper()
			var got []int64
			if err := db.Query(ctx, infertrail.Query{Keys: []string{key}}, func(e *infertrail.Entry) error { got = append(got, e.Seq); return nil }); err != nil {
				t.Fatalf("query %s after the move: %v", key, err)
			}
			return got
		}
		if got := seqs("a=1"); !slices.Equal(got, []int64{7, 1}) {
			t.Errorf("query a=1 after the move: %v; want [7 1]", got)
		}
		if got := seqs("term=001122334455667700000000"); !slices.Equal(got, []int64{4, 3}) {
			t.Errorf("query by a term key after the move: %v; want [4 3]", got)
		}
		got := slices.DeleteFunc(indexPostings(t, db), func(p infertrail.Posting) bool { return strings.HasPrefix(p.Key, infertrail.IndexFinding+"=") })
		if !slices.Equal(got, ps) {
			t.Errorf("postings after the move:\n%v\nwant\n%v", got, ps)
		}
		for name, want := range map[string]int64{"indexer": 30, "siem:x": 12} {
			if c, err := db.Cursor(ctx, name); err != nil || c != want {
				t.Errorf("cursor %s after the move: %d, %v; want %d", name, c, err, want)
			}
		}
		var fs []infertrail.Finding
		err = db.Findings(ctx, infertrail.FindingQuery{Seq: 7}, func(f *infertrail.Finding) error { fs = append(fs, *f); return nil })
		if err != nil || len(fs) != 1 || fs[0].ID != f.ID || fs[0].N != 1 {
			t.Errorf("findings of record 7 after the move: %+v, %v; want finding 1", fs, err)
		}
		want := []int64{7, 1}
		if !removeIndex {
			want = []int64{7, 3, 1} // with the finding added in the first round
		}
		if got := seqs(infertrail.IndexKey(infertrail.IndexFinding, "d")); !slices.Equal(got, want) {
			t.Errorf("query finding=d after the move: %v; want %v", got, want)
		}
		if v := SchemaVersion(); v != 11 {
			t.Errorf("SchemaVersion() = %d, want 11", v)
		}
		if !removeIndex {
			return
		}
		// A new finding continues the numbering.
		g := f
		g.ID, g.Records = infertrail.UUID{9}, []int64{3}
		gs := []infertrail.Finding{g}
		if err := db.AddFindings(ctx, gs); err != nil || gs[0].N != 2 {
			t.Errorf("a finding after the move: n = %d, %v; want 2", gs[0].N, err)
		}
		// Undo for the second round: the log's file back to version 8.
		downgradeIndexFile(t, db)
	}
	check(true)
	check(false) // the index file holds the rows already
}
