package postgres

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/infertrail/infertrail"
	"github.com/infertrail/infertrail/store/internal/behind/behindtest"
	"github.com/infertrail/infertrail/store/internal/postings"
	"github.com/infertrail/infertrail/store/storetest"
)

// TestStoreSmallCounts runs the conformance suite with small counts, so
// that queries of tenants walk the log for some tenants and read the ranges
// of records_tenant_observed of others.
func TestStoreSmallCounts(t *testing.T) {
	dsn := testDSN(t)
	defer func(n int, w int64) { rangeCount, walkSpan = n, w }(rangeCount, walkSpan)
	rangeCount, walkSpan = 25, 100
	storetest.Run(t, func(t *testing.T) infertrail.Store {
		db, err := Open(t.Context(), dsn, Config{Schema: freshSchema(t, dsn)})
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		return db
	})
}

// TestQueryPartitions appends entries over several months and checks that
// queries, with keys and without, read across the partitions, each of which
// has the index records_tenant_observed.
func TestQueryPartitions(t *testing.T) {
	var mu sync.Mutex
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	db, _ := openTest(t, Config{Now: func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		return now
	}})
	ctx := t.Context()
	var entries []infertrail.Entry
	var ps []infertrail.Posting
	for month := range 4 {
		mu.Lock()
		now = time.Date(2025, time.Month(1+month*2), 10, 0, 0, 0, 0, time.UTC)
		mu.Unlock()
		es, _ := storetest.BenchEntries(int64(len(entries)), int64(len(entries)+30))
		storetest.AppendEntries(t, db, es, nil)
		for _, e := range es {
			ps = append(ps,
				infertrail.Posting{Key: fmt.Sprintf("mod=%d", e.Seq%4), Seq: e.Seq},
				infertrail.Posting{Key: fmt.Sprintf("month=%d", month), Seq: e.Seq})
		}
		entries = append(entries, es...)
	}
	if err := db.AddPostings(ctx, "indexer", 0, int64(len(entries)), ps); err != nil {
		t.Fatal(err)
	}
	var parts, indexed int
	err := db.pool.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE EXISTS (
			SELECT FROM pg_index x JOIN pg_class c ON c.oid = x.indexrelid
			WHERE x.indrelid = i.inhrelid AND c.relname LIKE '%tenant_observed%'))
		FROM pg_inherits i WHERE i.inhparent = 'records'::regclass`).Scan(&parts, &indexed)
	if err != nil {
		t.Fatal(err)
	}
	if parts < 4 || indexed != parts {
		t.Errorf("%d of %d record partitions have records_tenant_observed", indexed, parts)
	}
	seqs := func(q infertrail.Query) []int64 {
		t.Helper()
		var out []int64
		if err := db.Query(ctx, q, func(e *infertrail.Entry) error {
			if d := storetest.DiffEntry(&entries[e.Seq], e); d != "" {
				t.Errorf("Query(%+v): %s", q, d)
			}
			out = append(out, e.Seq)
			return nil
		}); err != nil {
			t.Fatalf("Query(%+v): %v", q, err)
		}
		return out
	}
	want := func(keep func(e *infertrail.Entry) bool) []int64 {
		var out []int64
		for i := len(entries) - 1; i >= 0; i-- {
			if keep(&entries[i]) {
				out = append(out, entries[i].Seq)
			}
		}
		return out
	}
	for _, c := range []struct {
		q    infertrail.Query
		keep func(e *infertrail.Entry) bool
	}{
		{infertrail.Query{Keys: []string{"mod=1"}}, func(e *infertrail.Entry) bool { return e.Seq%4 == 1 }},
		{infertrail.Query{Keys: []string{"mod=2", "month=1"}}, func(e *infertrail.Entry) bool { return e.Seq%4 == 2 && e.Seq/30 == 1 }},
		{infertrail.Query{Keys: []string{"mod=3"}, Tenants: []string{"t0"}, Before: 100}, func(e *infertrail.Entry) bool {
			return e.Seq%4 == 3 && e.Tenant == "t0" && e.Seq < 100
		}},
		{infertrail.Query{Tenants: []string{"t1"}, From: entries[20].Time, To: entries[95].Time}, func(e *infertrail.Entry) bool {
			return e.Tenant == "t1" && e.Seq >= 20 && e.Seq < 95
		}},
		{infertrail.Query{Limit: 1000}, func(*infertrail.Entry) bool { return true }},
	} {
		if got, w := seqs(c.q), want(c.keep); !slices.Equal(got, w) {
			t.Errorf("Query(%+v) = %v, want %v", c.q, got, w)
		}
	}
}

// openKeyed opens a test store holding n entries of storetest.MakeBatch,
// their content encrypted under two data keys or more, and returns the
// keys' ids.
func openKeyed(t *testing.T, n int) (*DB, []infertrail.KeyID) {
	t.Helper()
	db, _ := openTest(t, Config{})
	entries, blobs := storetest.MakeBatch(0, n)
	var ids []infertrail.KeyID
	for id := range appendEncrypted(t, db, entries, blobs) {
		ids = append(ids, id)
	}
	if len(ids) < 2 {
		t.Fatalf("test data has %d keys", len(ids))
	}
	return db, ids
}

// TestTermSourcesNewTerms: a record's term_sources row lists only the
// terms not listed before under its data key (in the same step, or a step
// before on this node), and an erasure still deletes every posting of the
// key's records, even of terms a record dropped and took up again, and
// none of another key's.
func TestTermSourcesNewTerms(t *testing.T) {
	db, ids := openKeyed(t, 8)
	ctx := t.Context()
	k1, k2 := ids[0], ids[1]
	lists := []struct {
		key   infertrail.KeyID
		terms []string
		rows  []string // term_sources.terms
	}{
		{k1, []string{"a", "b"}, []string{"a", "b"}},
		{k1, []string{"a", "b", "c"}, []string{"c"}},
		{k1, []string{"a", "c"}, nil},
		{k1, []string{"a", "c", "d"}, []string{"d"}}, // the next step
		{k1, []string{"b"}, nil},
		{k1, []string{"a", "b", "c", "d", "e"}, []string{"e"}},
		{k2, []string{"a", "b"}, []string{"a", "b"}},
		{k2, []string{"a", "b", "x"}, []string{"x"}},
	}
	var ps []infertrail.Posting
	for seq, l := range lists {
		ps = append(ps, infertrail.Posting{Key: "model=m", Seq: int64(seq)})
		for _, w := range l.terms {
			ps = append(ps, infertrail.Posting{Key: "term=" + w, Seq: int64(seq), DataKey: l.key})
		}
	}
	step := func(cursor string, from, to int64) {
		t.Helper()
		var in []infertrail.Posting
		for _, p := range ps {
			if p.Seq >= from && p.Seq < to {
				in = append(in, p)
			}
		}
		if err := db.AddPostings(ctx, cursor, from, to, in); err != nil {
			t.Fatal(err)
		}
	}
	step("indexer", 0, 3)
	step("indexer", 3, 8)
	step("again", 0, 8) // a second cursor: every row is there already
	for seq, l := range lists {
		var stored [][]byte
		if err := db.pool.QueryRow(ctx, `SELECT terms FROM term_sources WHERE data_key = $1 AND seq = $2`, l.key[:], seq).Scan(&stored); err != nil {
			t.Fatalf("record %d: %v", seq, err)
		}
		var got []string
		for _, k := range stored {
			got = append(got, strings.TrimPrefix(string(k), "term="))
		}
		if !slices.Equal(got, l.rows) {
			t.Errorf("record %d lists %q, want %q", seq, got, l.rows)
		}
	}
	eraseKey(t, db, k1)
	rows, err := db.pool.Query(ctx, `SELECT convert_from(key, 'UTF8') || '@' || seq FROM `+postingRows+` ORDER BY key, seq`)
	if err != nil {
		t.Fatal(err)
	}
	left, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"model=m@0", "model=m@1", "model=m@2", "model=m@3", "model=m@4", "model=m@5", "model=m@6", "model=m@7",
		"term=a@6", "term=a@7", "term=b@6", "term=b@7", "term=x@7"}
	if !slices.Equal(left, want) {
		t.Errorf("postings after erasing the first key: %v, want %v", left, want)
	}
}

// TestPostingsEraseRace has an erasure and an AddPostings of the key it
// erases overlap, in both orders, and checks that no posting of the erased
// key is left.
func TestPostingsEraseRace(t *testing.T) {
	db, ids := openKeyed(t, 40)
	ctx := t.Context()
	postings := func(id infertrail.KeyID) []infertrail.Posting {
		return []infertrail.Posting{{Key: fmt.Sprintf("term=%x", id[:4]), Seq: 1, DataKey: id}, {Key: "term=all", Seq: 2, DataKey: id}}
	}
	// left counts the postings of id still stored, and its term sources.
	left := func(id infertrail.KeyID) int {
		t.Helper()
		var n int
		for _, p := range postings(id) {
			var k int
			if err := db.pool.QueryRow(ctx, `SELECT count(*) FROM postings WHERE key = $1 AND block = $2 AND (bits >> $3::int) & 1 = 1`,
				p.Key, p.Seq>>6, p.Seq&63).Scan(&k); err != nil {
				t.Fatal(err)
			}
			n += k
		}
		var k int
		if err := db.pool.QueryRow(ctx, `SELECT count(*) FROM term_sources WHERE data_key = $1`, id[:]).Scan(&k); err != nil {
			t.Fatal(err)
		}
		return n + k
	}
	erase := func(id infertrail.KeyID, locked chan<- struct{}, release <-chan struct{}) error {
		tx, err := db.BeginAppend(ctx)
		if err != nil {
			return err
		}
		defer tx.Rollback()
		if _, err := tx.Erase(ctx, []infertrail.KeyID{id}, 0); err != nil {
			return err
		}
		if locked != nil {
			locked <- struct{}{}
			<-release
		}
		return tx.Commit()
	}

	// The erasure updates the key first: AddPostings waits for it, then
	// skips the key's postings.
	locked, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	commit := func() { once.Do(func() { close(release) }) }
	defer commit() // a failing test must not leave the erasure waiting
	errc := make(chan error, 1)
	go func() { errc <- erase(ids[0], locked, release) }()
	<-locked
	added := make(chan error, 1)
	go func() { added <- db.AddPostings(ctx, "indexer", 0, 1, postings(ids[0])) }()
	select {
	case err := <-added:
		t.Fatalf("AddPostings of a key being erased returned (%v) before the erasure committed", err)
	case <-time.After(200 * time.Millisecond):
	}
	commit()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if err := <-added; err != nil {
		t.Fatal(err)
	}
	if n := left(ids[0]); n != 0 {
		t.Errorf("%d postings of a key erased while they were added", n)
	}

	// AddPostings locks the key first: the erasure waits for it, then
	// deletes its postings.
	tx, err := db.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	ps := postings(ids[1])
	if erased, err := lockKeys(ctx, tx, ps); err != nil || len(erased) != 0 {
		t.Fatalf("lockKeys = %v, %v", erased, err)
	}
	if err := insertPostings(ctx, tx, ps, nil, nil); err != nil {
		t.Fatal(err)
	}
	go func() { errc <- erase(ids[1], nil, nil) }()
	select {
	case err := <-errc:
		t.Fatalf("Erase of a key being posted returned (%v) before the postings committed", err)
	case <-time.After(200 * time.Millisecond):
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if n := left(ids[1]); n != 0 {
		t.Errorf("%d postings of a key erased while they were added", n)
	}

	// And at random.
	var wg sync.WaitGroup
	for i, id := range ids[2:] {
		from := int64(1 + i)
		wg.Go(func() {
			if err := erase(id, nil, nil); err != nil {
				t.Errorf("Erase: %v", err)
			}
		})
		wg.Go(func() {
			if err := db.AddPostings(ctx, fmt.Sprintf("indexer-%d", i), 0, from, postings(id)); err != nil {
				t.Errorf("AddPostings: %v", err)
			}
		})
	}
	wg.Wait()
	for _, id := range ids[2:] {
		if n := left(id); n != 0 {
			t.Errorf("%d postings and term sources of erased key %x, want none", n, id[:4])
		}
	}
}

// explain returns the plan of q, as EXPLAIN (ANALYZE) gives it: for a walk
// of postings, that of its first page of blocks and its first entry.
func explain(t testing.TB, db *DB, q infertrail.Query) string {
	t.Helper()
	ctx := t.Context()
	p, err := db.planQuery(ctx, q)
	if err != nil {
		t.Fatal(err)
	}
	run := func(query string, args []any) string {
		rows, err := db.pool.Query(ctx, `EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) `+query, append([]any{pgx.QueryExecModeExec}, args...)...)
		if err != nil {
			t.Fatal(err)
		}
		lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		return strings.Join(lines, "\n")
	}
	if w := p.keys; w != nil {
		blocks, bargs := w.blocksQuery(w.Hi, postings.FirstPage)
		entries, eargs := w.entriesQuery([]int64{w.Hi << postings.BlockBits}, w.Limit)
		return run(blocks, bargs) + "\n" + run(entries, eargs)
	}
	if p.query == "" {
		return "(nothing to select)"
	}
	return run(p.query, p.args)
}

var (
	querySchema  = flag.String("queryschema", "", "BenchmarkQuery: the schema to query, built there if missing and then kept (default: a temporary one)")
	queryRecords = flag.Int("queryrecords", 1_000_000, "BenchmarkQuery: the number of records of the log it builds")
	queryPlans   = flag.Bool("queryplans", false, "BenchmarkQuery: log the plan of each query")
)

// BenchmarkQuery measures the latency of investigation queries (see
// storetest.BenchQueries) on a log of -queryrecords records, built in one
// partition.
//
//	go test ./store/postgres -run '^$' -bench Query -benchtime 200x
func BenchmarkQuery(b *testing.B) {
	dsn := testDSN(b)
	n := int64(*queryRecords)
	schema := *querySchema
	if schema == "" {
		schema = freshSchema(b, dsn)
	}
	db, err := Open(context.Background(), dsn, Config{Schema: schema})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	ctx := b.Context()
	if size, _ := db.TreeSize(ctx); size < n {
		start := time.Now()
		storetest.BuildQueryLog(b, db, size, n)
		if _, err := db.pool.Exec(ctx, `VACUUM ANALYZE`); err != nil {
			b.Fatal(err)
		}
		b.Logf("built a log of %d records in %v", n, time.Since(start).Round(time.Second))
	}
	if *queryPlans {
		mid := storetest.BenchTime(n / 2)
		for _, q := range []infertrail.Query{
			{Keys: []string{"trace=big"}, Limit: 200},
			{Keys: []string{"model=gpt-1", "trace=big"}},
			{},
			{Tenants: []string{"t4"}},
			{Tenants: []string{"t1", "t3"}},
			{Tenants: []string{"t0"}, From: mid, To: mid + int64(time.Hour)},
			{From: mid, To: mid + int64(time.Hour)},
		} {
			b.Logf("%+v\n%s", q, explain(b, db, q))
		}
	}
	storetest.BenchQueries(b, db, n)
}

// TestBackgroundWritesYield: see behindtest.Check.
func TestBackgroundWritesYield(t *testing.T) {
	db, _ := openTest(t, Config{})
	behindtest.Check(t, db, &db.appends)
}

// TestStoredKeys: storedKeys, which packs term keys into one array, gives
// each key as storedKey does: a term key packed, any other its bytes.
func TestStoredKeys(t *testing.T) {
	keys := []string{"term=0123456789abcdef01234567", "model=m", "term=word", "term=ffffffffffffffffffffffff", "term=0123456789ABCDEF01234567"}
	got := storedKeys(keys, func(k string) string { return k })
	for i, k := range keys {
		if want := storedKey(k); !bytes.Equal(got[i], want) {
			t.Errorf("storedKeys[%d] = %x, storedKey(%q) = %x", i, got[i], k, want)
		}
	}
	if b := storedKey(keys[0]); len(b) != 1+postings.TagLen || b[0] != postings.TagTerms {
		t.Errorf("storedKey(%q) = %x, want it packed", keys[0], b)
	}
	if b := storedKey("model=m"); string(b) != "model=m" {
		t.Errorf("storedKey(model=m) = %x", b)
	}
}
