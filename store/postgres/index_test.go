package postgres

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"maps"
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

// showKey returns posting key k as tests show its stored form: a packed
// term key in hexadecimal, any other key as it is.
func showKey(k string) string {
	if s := postings.Stored(k); s[0] == postings.TagTerms {
		return hex.EncodeToString([]byte(s))
	}
	return k
}

// showStored is the SQL expression of showKey for the stored key k.
func showStored(k string) string {
	return `CASE WHEN get_byte(` + k + `, 0) = 1 THEN encode(` + k + `, 'hex') ELSE convert_from(` + k + `, 'UTF8') END`
}

// postingsOf returns the stored postings, each as key@seq (showKey), in
// order.
func postingsOf(t testing.TB, db *DB) []string {
	t.Helper()
	rows, err := db.pool.Query(t.Context(), `SELECT `+showStored("key")+` || '@' || seq FROM `+postingRows)
	if err != nil {
		t.Fatal(err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

// checkIndexTables checks that postings, block_terms and key_records hold
// what the postings ps make, and reports whether the postings do.
func checkIndexTables(t *testing.T, db *DB, ps []infertrail.Posting, when string) bool {
	t.Helper()
	got, want := postingsOf(t, db), showPostings(ps)
	ok := slices.Equal(got, want)
	if !ok {
		t.Errorf("postings %s: %d, want %d, or not the same", when, len(got), len(want))
	}
	if got, want := blockLists(t, db), wantLists(ps); !maps.EqualFunc(got, want, slices.Equal) {
		t.Errorf("block_terms %s:\n%v\nwant\n%v", when, got, want)
	}
	if got, want := keyRecords(t, db), wantRecords(ps); !maps.EqualFunc(got, want, maps.Equal) {
		t.Errorf("key_records %s: %v, want %v", when, got, want)
	}
	return ok
}

// blockLists returns the keys of each block's list in block_terms, as
// showKey shows them, in the list's order.
func blockLists(t testing.TB, db *DB) map[int64][]string {
	t.Helper()
	rows, err := db.pool.Query(t.Context(), `SELECT block FROM block_terms`)
	if err != nil {
		t.Fatal(err)
	}
	blocks, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		t.Fatal(err)
	}
	lists, err := readLists(t.Context(), db.pool, blocks, false)
	if err != nil {
		t.Fatal(err)
	}
	for _, keys := range lists {
		for i, k := range keys {
			if k[0] == postings.TagTerms {
				keys[i] = hex.EncodeToString([]byte(k))
			}
		}
	}
	return lists
}

// keyRecords returns the rows of key_records: for each data key, the bits
// of each of its blocks.
func keyRecords(t testing.TB, db *DB) map[infertrail.KeyID]map[int64]int64 {
	t.Helper()
	rows, err := db.pool.Query(t.Context(), `SELECT data_key, block, bits FROM key_records`)
	if err != nil {
		t.Fatal(err)
	}
	out := map[infertrail.KeyID]map[int64]int64{}
	var (
		id          []byte
		block, bits int64
	)
	if _, err := pgx.ForEachRow(rows, []any{&id, &block, &bits}, func() error {
		k := infertrail.KeyID(id)
		if out[k] == nil {
			out[k] = map[int64]int64{}
		}
		out[k][block] = bits
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// wantLists returns the lists of block_terms that hold the keys of ps
// derived from content, as blockLists shows them.
func wantLists(ps []infertrail.Posting) map[int64][]string {
	stored := map[int64][]string{}
	for _, p := range ps {
		if !p.DataKey.IsZero() {
			b, _ := postings.BlockOf(p.Seq)
			stored[b] = append(stored[b], postings.Stored(p.Key))
		}
	}
	out := map[int64][]string{}
	for b, keys := range stored {
		slices.Sort(keys)
		for _, k := range slices.Compact(keys) {
			if k[0] == postings.TagTerms {
				k = hex.EncodeToString([]byte(k))
			}
			out[b] = append(out[b], k)
		}
	}
	return out
}

// wantRecords returns the rows of key_records for the postings ps derived
// from content, as keyRecords gives them.
func wantRecords(ps []infertrail.Posting) map[infertrail.KeyID]map[int64]int64 {
	out := map[infertrail.KeyID]map[int64]int64{}
	for _, p := range ps {
		if p.DataKey.IsZero() {
			continue
		}
		if out[p.DataKey] == nil {
			out[p.DataKey] = map[int64]int64{}
		}
		b, bit := postings.BlockOf(p.Seq)
		out[p.DataKey][b] |= bit
	}
	return out
}

// showPostings returns ps as postingsOf shows stored postings, without
// repeats, in order.
func showPostings(ps []infertrail.Posting) []string {
	var out []string
	for _, p := range ps {
		out = append(out, fmt.Sprintf("%s@%d", showKey(p.Key), p.Seq))
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// TestErasureListsExact indexes two sessions, each under its own data
// key, whose records share blocks and some terms, in several steps and
// again under a second cursor, and erases one. key_records and
// block_terms must hold what the postings give before; after, every
// record of the other session is still found by each of its terms, and
// no erased record by any; each block's list names exactly the keys
// derived from content that still have a row in the block, and
// key_records has no row of the erased key. Postings derived from the
// leaf are left alone. The erasure runs a block at a time too.
func TestErasureListsExact(t *testing.T) {
	for _, blocks := range []int{eraseBlocks, 1} {
		t.Run(fmt.Sprintf("eraseBlocks=%d", blocks), func(t *testing.T) {
			defer func(old int) { eraseBlocks = old }(eraseBlocks)
			eraseBlocks = blocks
			testErasureListsExact(t)
		})
	}
}

func testErasureListsExact(t *testing.T) {
	const n = 150 // records 0 to 149: blocks 0, 1 and 2
	db, ids := openKeyed(t, n)
	ctx := t.Context()
	k1, k2 := ids[0], ids[1]
	term := func(i int) string { return fmt.Sprintf("term=%016x00000000", i) }
	// Even records are the first session's, odd ones the second's, but for
	// records 130 on, which are the second's alone. Every record has the
	// shared terms 0 and 1 and a word kept as text (not packed); the
	// first session's also its own terms 10 to 12, the second's 20 to 22,
	// and each record a term of its own (1000 + seq).
	termsOf := func(seq int) []string {
		ts := []string{term(0), term(1), "term=word", term(1000 + seq)}
		own := 10
		if seq%2 == 1 || seq >= 130 {
			own = 20
		}
		for i := range 3 {
			if (seq+i)%3 == 0 {
				ts = append(ts, term(own+i))
			}
		}
		return ts
	}
	keyOf := func(seq int) infertrail.KeyID {
		if seq%2 == 1 || seq >= 130 {
			return k2
		}
		return k1
	}
	var ps []infertrail.Posting
	for seq := range n {
		ps = append(ps, infertrail.Posting{Key: "model=m", Seq: int64(seq)})
		for _, k := range termsOf(seq) {
			ps = append(ps, infertrail.Posting{Key: k, Seq: int64(seq), DataKey: keyOf(seq)})
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
	for from := int64(0); from < n; from += 37 {
		step("indexer", from, min(from+37, n))
	}
	step("again", 0, n) // a second cursor: every key is listed already
	if !checkIndexTables(t, db, ps, "before the erasure") {
		t.FailNow()
	}

	eraseKey(t, db, k1)
	left := slices.DeleteFunc(slices.Clone(ps), func(p infertrail.Posting) bool { return p.DataKey == k1 })
	checkIndexTables(t, db, left, "after the erasure")
	// Each term finds the second session's records that have it.
	found := map[string][]int64{}
	for seq := n - 1; seq >= 0; seq-- {
		if keyOf(seq) == k2 {
			for _, k := range termsOf(seq) {
				found[k] = append(found[k], int64(seq))
			}
		}
	}
	terms := map[string]bool{}
	for seq := range n {
		for _, k := range termsOf(seq) {
			terms[k] = true
		}
	}
	for k := range terms {
		var got []int64
		if err := db.Query(ctx, infertrail.Query{Keys: []string{k}, Limit: 1000}, func(e *infertrail.Entry) error {
			got = append(got, e.Seq)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, found[k]) {
			t.Errorf("query %s after the erasure: %v, want %v", k, got, found[k])
		}
	}
}

// TestErasureEmptiesListWhileAdding erases the only session of a block
// while, on another node, AddPostings adds a second session's postings,
// with other terms, to the block: the erasure deletes the block's list,
// and AddPostings, which waits for it, must list its keys in a new one,
// so that erasing the second session then deletes its postings too.
func TestErasureEmptiesListWhileAdding(t *testing.T) {
	db, ids := openKeyed(t, 80)
	ctx := t.Context()
	k1, k2 := ids[0], ids[1]
	app := "infertrail-lists-" + db.schema
	other, err := Open(ctx, withParam(t, testDSN(t), "application_name", app), Config{Schema: db.schema})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	first := []infertrail.Posting{
		{Key: "term=aaaaaaaaaaaaaaaaaaaaaaaa", Seq: 64, DataKey: k1},
		{Key: "term=aaaaaaaaaaaaaaaaaaaaaaaa", Seq: 65, DataKey: k1},
		{Key: "term=first", Seq: 65, DataKey: k1},
	}
	second := []infertrail.Posting{
		{Key: "term=bbbbbbbbbbbbbbbbbbbbbbbb", Seq: 66, DataKey: k2},
		{Key: "term=second", Seq: 67, DataKey: k2},
	}
	if err := db.AddPostings(ctx, "indexer", 0, 66, first); err != nil {
		t.Fatal(err)
	}
	tx, err := db.BeginAppend(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	if _, err := tx.Erase(ctx, []infertrail.KeyID{k1}, 0); err != nil {
		t.Fatal(err)
	}
	added := make(chan error, 1)
	go func() { added <- other.AddPostings(ctx, "indexer", 66, 80, second) }()
	// Wait until AddPostings waits for a lock the erasure holds.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		var waiting int
		if err := db.pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 AND wait_event_type = 'Lock'`, app).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
		if waiting > 0 {
			break
		}
		select {
		case err := <-added:
			t.Fatalf("AddPostings returned (%v) while an erasure held its block's list", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("AddPostings is not waiting for the erasure")
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := <-added; err != nil {
		t.Fatal(err)
	}
	if got, want := blockLists(t, db), wantLists(second); !maps.EqualFunc(got, want, slices.Equal) {
		t.Errorf("block_terms after the erasure and AddPostings: %v, want %v", got, want)
	}
	if got, want := postingsOf(t, db), showPostings(second); !slices.Equal(got, want) {
		t.Errorf("postings after the erasure and AddPostings: %v, want %v", got, want)
	}
	eraseKey(t, db, k2)
	if got := postingsOf(t, db); len(got) != 0 {
		t.Errorf("postings after erasing both keys: %v, want none", got)
	}
	if got := blockLists(t, db); len(got) != 0 {
		t.Errorf("block_terms after erasing both keys: %v, want none", got)
	}
}

// TestEraseDamagedList: an erasure that finds a block's list damaged
// fails, naming the block, and erases nothing.
func TestEraseDamagedList(t *testing.T) {
	db, ids := openKeyed(t, 80)
	ctx := t.Context()
	ps := []infertrail.Posting{{Key: "term=aaaaaaaaaaaaaaaaaaaaaaaa", Seq: 70, DataKey: ids[0]}}
	if err := db.AddPostings(ctx, "indexer", 0, 80, ps); err != nil {
		t.Fatal(err)
	}
	if _, err := db.pool.Exec(ctx, `UPDATE block_terms SET keys = '\x05' WHERE block = 1`); err != nil {
		t.Fatal(err)
	}
	tx, err := db.BeginAppend(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	_, err = tx.Erase(ctx, []infertrail.KeyID{ids[0]}, 0)
	if !errors.Is(err, postings.ErrDamagedList) || !strings.Contains(err.Error(), "block 1") {
		t.Fatalf("Erase with a damaged list: %v, want an error wrapping ErrDamagedList naming block 1", err)
	}
	if err := tx.Commit(); err == nil {
		t.Fatal("Commit after a failed Erase succeeded")
	}
	if got, want := postingsOf(t, db), showPostings(ps); !slices.Equal(got, want) {
		t.Errorf("postings after a failed erasure: %v, want %v", got, want)
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
	// left counts the postings of id still stored, and its key_records
	// rows.
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
		if err := db.pool.QueryRow(ctx, `SELECT count(*) FROM key_records WHERE data_key = $1`, id[:]).Scan(&k); err != nil {
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
	if err := insertPostings(ctx, tx, ps); err != nil {
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
			t.Errorf("%d postings and key records of erased key %x, want none", n, id[:4])
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
	if b := storedKey(keys[0]); len(b) != postings.StoredLen || b[0] != postings.TagTerms {
		t.Errorf("storedKey(%q) = %x, want it packed", keys[0], b)
	}
	if b := storedKey("model=m"); string(b) != "model=m" {
		t.Errorf("storedKey(model=m) = %x", b)
	}
}
