package postgres

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/infertrail/infertrail"
	"github.com/infertrail/infertrail/store/internal/postings"
	"github.com/infertrail/infertrail/store/storetest"
)

// appendEncrypted appends entries and blobs, with the data keys their
// encrypted content uses, in one transaction, and returns the keys.
func appendEncrypted(t *testing.T, db *DB, entries []infertrail.Entry, blobs []infertrail.Blob) map[infertrail.KeyID]infertrail.DataKey {
	t.Helper()
	keys := map[infertrail.KeyID]infertrail.DataKey{}
	var ks []infertrail.DataKey
	for _, e := range entries {
		for _, r := range e.Content {
			if _, ok := keys[r.Key]; !ok && !r.Key.IsZero() {
				keys[r.Key] = storetest.TestKey(e.Tenant, e.SessionID)
				ks = append(ks, keys[r.Key])
			}
		}
	}
	storetest.AppendKeyed(t, db, ks, entries, blobs)
	return keys
}

// firstKeyed returns the first encrypted content reference of entries.
func firstKeyed(t *testing.T, entries []infertrail.Entry) (infertrail.Entry, infertrail.ContentRef) {
	t.Helper()
	for _, e := range entries {
		for _, r := range e.Content {
			if !r.Key.IsZero() && len(r.Blobs) > 0 {
				return e, r
			}
		}
	}
	t.Fatal("no encrypted content in the test entries")
	panic("unreachable")
}

// checkKeyColumns checks that every partition of blobs has the key_id
// column.
func checkKeyColumns(t *testing.T, db *DB) {
	t.Helper()
	var parts, with int
	err := db.pool.QueryRow(t.Context(), `SELECT count(*), count(*) FILTER (WHERE EXISTS (
			SELECT FROM pg_attribute a WHERE a.attrelid = i.inhrelid AND a.attname = 'key_id' AND NOT a.attisdropped))
		FROM pg_inherits i WHERE i.inhparent = 'blobs'::regclass`).Scan(&parts, &with)
	if err != nil {
		t.Fatal(err)
	}
	if parts == 0 || with != parts {
		t.Errorf("%d of %d blob partitions have the key_id column", with, parts)
	}
}

// TestHoldWaitsForErasure adds a hold from a second store (another node)
// while an append transaction that erases content holds the log head, and
// checks that the hold waits for the erasure to commit and is then seen by
// the next append transaction.
func TestHoldWaitsForErasure(t *testing.T) {
	writer, schema := openTest(t, Config{})
	app := "infertrail-hold-" + schema
	holder, err := Open(t.Context(), withParam(t, testDSN(t), "application_name", app), Config{Schema: schema})
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close()
	ctx := t.Context()
	entries, blobs := storetest.MakeBatch(0, 20)
	appendEncrypted(t, writer, entries, blobs)
	e, ref := firstKeyed(t, entries)

	tx, err := writer.BeginAppend(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	if hs, err := tx.Holds(ctx, e.Tenant); err != nil || len(hs) != 0 {
		t.Fatalf("tx.Holds = %v, %v; want none", hs, err)
	}
	h := infertrail.Hold{ID: infertrail.NewUUID(), Tenant: e.Tenant, Scope: infertrail.Scope("tenant=" + e.Tenant),
		Reason: "case 1", CreatedBy: "token:legal", Created: time.Now().UnixNano()}
	done := make(chan error, 1)
	go func() { done <- holder.AddHold(ctx, h) }()

	// Wait until the hold's transaction waits for the log head's lock.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		var waiting int
		err := writer.pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE application_name = $1 AND wait_event_type = 'Lock'`, app).Scan(&waiting)
		if err != nil {
			t.Fatal(err)
		}
		if waiting > 0 {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("AddHold returned (%v) while an append transaction held the log head", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("AddHold is not waiting for the log head")
		}
	}

	rec, _ := storetest.MakeEntry(1000)
	rec.Content = nil
	if err := storetest.NewSequencer(tx).Append(ctx, []infertrail.Entry{rec}, nil); err != nil {
		t.Fatal(err)
	}
	if n, err := tx.Erase(ctx, []infertrail.KeyID{ref.Key}, rec.Seq); err != nil || n == 0 {
		t.Fatalf("Erase = %d, %v", n, err)
	}
	select {
	case err := <-done:
		t.Fatalf("AddHold returned (%v) before the erasure committed", err)
	default:
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("AddHold after the erasure committed: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("AddHold still waits after the erasure committed")
	}

	tx, err = writer.BeginAppend(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	if tx.Erasures() != 1 {
		t.Errorf("Erasures = %d, want 1", tx.Erasures())
	}
	if hs, err := tx.Holds(ctx, e.Tenant); err != nil || len(hs) != 1 || hs[0].ID != h.ID {
		t.Errorf("tx.Holds after AddHold = %+v, %v; want the hold", hs, err)
	}
}

// TestErasePartitions erases a key whose blobs are stored in two months'
// partitions (stored in January, copied into February by a record that
// references them again) from a transaction in March, and checks that
// every copy is gone and the copy carried the key.
func TestErasePartitions(t *testing.T) {
	var mu sync.Mutex
	now := time.Date(2025, 1, 10, 0, 0, 0, 0, time.UTC)
	set := func(t time.Time) {
		mu.Lock()
		defer mu.Unlock()
		now = t
	}
	db, _ := openTest(t, Config{Now: func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		return now
	}})
	ctx := t.Context()
	entries, blobs := storetest.MakeBatch(0, 40)
	appendEncrypted(t, db, entries, blobs)
	_, ref := firstKeyed(t, entries)
	victim := ref.Key

	// February: a record references January's encrypted blobs without
	// sending them, so they are copied into February's partition.
	set(time.Date(2025, 2, 10, 0, 0, 0, 0, time.UTC))
	again, _ := storetest.MakeEntry(500)
	again.Content = []infertrail.ContentRef{ref}
	storetest.AppendEntries(t, db, []infertrail.Entry{again}, nil)
	var copied int
	if err := db.pool.QueryRow(ctx, `SELECT count(*) FROM blobs_2025_02 WHERE key_id = $1`, victim[:]).Scan(&copied); err != nil || copied != len(ref.Blobs) {
		t.Fatalf("%d blobs copied into February with key %x (%v), want %d", copied, victim[:4], err, len(ref.Blobs))
	}
	got, err := db.Blobs(ctx, ref.Blobs)
	if err != nil || got[ref.Blobs[0]].Key != victim {
		t.Fatalf("Blobs of a copied blob = %+v, %v; want key %x", got, err, victim[:4])
	}

	count := func(where string, args ...any) int {
		t.Helper()
		var n int
		if err := db.pool.QueryRow(ctx, `SELECT count(*) FROM blobs WHERE `+where, args...).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	others := count(`key_id <> $1 OR key_id IS NULL`, victim[:])
	distinct := map[infertrail.BlobID]bool{}
	for _, b := range blobs {
		if b.Key == victim {
			distinct[b.ID] = true
		}
	}
	if n := count(`key_id = $1`, victim[:]); n != len(distinct)+len(ref.Blobs) {
		t.Fatalf("%d blob rows with key %x before erasure, want %d", n, victim[:4], len(distinct)+len(ref.Blobs))
	}

	set(time.Date(2025, 3, 10, 0, 0, 0, 0, time.UTC))
	tx, err := db.BeginAppend(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	rec, _ := storetest.MakeEntry(1000)
	rec.Content = nil
	if err := storetest.NewSequencer(tx).Append(ctx, []infertrail.Entry{rec}, nil); err != nil {
		t.Fatal(err)
	}
	n, err := tx.Erase(ctx, []infertrail.KeyID{victim}, rec.Seq)
	if err != nil {
		t.Fatal(err)
	}
	if n != int64(len(distinct)) {
		t.Errorf("Erase = %d blobs, want %d (each blob once, whatever the number of periods holding it)", n, len(distinct))
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if n := count(`key_id = $1`, victim[:]); n != 0 {
		t.Errorf("%d blob rows with the erased key left", n)
	}
	if n := count(`key_id <> $1 OR key_id IS NULL`, victim[:]); n != others {
		t.Errorf("%d other blob rows after erasure, want %d", n, others)
	}
	checkKeyColumns(t, db)
}

// TestEraseFailedStatement checks that a failed erasure statement leaves
// the transaction failed, so that Commit fails, as after a failed Append.
func TestEraseFailedStatement(t *testing.T) {
	db, _ := openTest(t, Config{})
	ctx := t.Context()
	entries, blobs := storetest.MakeBatch(0, 10)
	keys := appendEncrypted(t, db, entries, blobs)
	tx, err := db.BeginAppend(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	// Another session locks blobs and the transaction will not wait for
	// it, so the erasure's statement fails in the database, after the
	// checks in Go pass and after it has updated data_keys.
	if _, err := tx.(*appendTx).tx.Exec(ctx, `SET LOCAL lock_timeout = '1ms'`); err != nil {
		t.Fatal(err)
	}
	other, err := pgx.Connect(ctx, withSearchPath(t, testDSN(t), db.schema))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close(context.Background())
	otx, err := other.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer otx.Rollback(context.Background())
	if _, err := otx.Exec(ctx, `LOCK TABLE blobs IN ACCESS EXCLUSIVE MODE NOWAIT`); err != nil {
		t.Fatal(err)
	}
	var ids []infertrail.KeyID
	for id := range keys {
		ids = append(ids, id)
	}
	var pgErr *pgconn.PgError
	if _, err := tx.Erase(ctx, ids, 0); !errors.As(err, &pgErr) || pgErr.Code != "55P03" { // lock_not_available
		t.Fatalf("Erase with blobs locked and a lock timeout of 1ms: err = %v, want a lock timeout", err)
	}
	if _, err := tx.Keys(ctx, infertrail.KeyFilter{}); err == nil {
		t.Error("Keys after a failed Erase succeeded")
	}
	if err := tx.Commit(); err == nil {
		t.Fatal("Commit after a failed Erase succeeded")
	}
	otx.Rollback(ctx)
	got, err := db.DataKeys(ctx, ids)
	if err != nil {
		t.Fatal(err)
	}
	for id := range keys {
		if k := got[id]; !k.Live() {
			t.Errorf("key %x erased by a failed transaction", id[:4])
		}
	}
}

// TestMigratePrivacy migrates a version 1 schema that already has a blob
// partition and checks that the partition gains key_id and its index, that
// old blobs read as unencrypted, and that erasure works across old and new
// partitions.
func TestMigratePrivacy(t *testing.T) {
	ctx := t.Context()
	pool, schema := migratedTo(t, 1)
	defer pool.Close()
	jan := periodOf(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC))
	old := infertrail.BlobID{1, 2, 3}
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if err := ensurePartitions(ctx, tx, jan); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO blobs (period, id, codec, data) VALUES ($1, $2, 0, 'old')`, jan, old[:])
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := migrate(ctx, pool, schema); err != nil {
		t.Fatal(err)
	}
	pool.Close()

	db, _ := openTest(t, Config{Schema: schema, SkipMigrate: true, Now: func() time.Time {
		return time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC)
	}})
	checkKeyColumns(t, db)
	got, err := db.Blobs(ctx, []infertrail.BlobID{old})
	if b := got[old]; err != nil || string(b.Data) != "old" || !b.Key.IsZero() {
		t.Fatalf("Blobs of a version 1 blob = %+v, %v", got, err)
	}
	entries, blobs := storetest.MakeBatch(0, 10)
	appendEncrypted(t, db, entries, blobs)
	checkKeyColumns(t, db)
	tx, err := db.BeginAppend(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	if tx.Erasures() != 0 {
		t.Errorf("Erasures of a migrated log = %d, want 0", tx.Erasures())
	}
	_, ref := firstKeyed(t, entries)
	if n, err := tx.Erase(ctx, []infertrail.KeyID{ref.Key}, 0); err != nil || n == 0 {
		t.Errorf("Erase on a migrated log = %d, %v", n, err)
	}
}

// TestScanKeysPages scans more keys than one query reads, with one
// connection, rewrapping each key from fn: ScanKeys must hold no
// connection while fn runs, and must neither skip nor repeat keys across
// pages.
func TestScanKeysPages(t *testing.T) {
	db, _ := openTest(t, Config{MaxConns: 1})
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	const n = keysPerQuery*2 + 7
	keys := make([]infertrail.DataKey, n)
	for i := range keys {
		keys[i] = storetest.TestKey("acme", fmt.Sprint(i))
	}
	tx, err := db.BeginAppend(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	if err := tx.AddKeys(ctx, keys); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	var (
		seen int
		last infertrail.KeyID
	)
	err = db.ScanKeys(ctx, infertrail.KeyFilter{NotKEK: "kek-2"}, infertrail.KeyID{}, func(k *infertrail.DataKey) error {
		if bytes.Compare(k.ID[:], last[:]) <= 0 {
			return fmt.Errorf("key %x after %x", k.ID, last)
		}
		last = k.ID
		seen++
		ok, err := db.RewrapKey(ctx, k.ID, k.Wrapped, []byte("rewrapped"), "kek-2")
		if err == nil && !ok {
			err = fmt.Errorf("key %x not rewrapped", k.ID)
		}
		return err
	})
	if err != nil || seen != n {
		t.Fatalf("ScanKeys saw %d keys (%v), want %d", seen, err, n)
	}
	var left int
	if err := db.ScanKeys(ctx, infertrail.KeyFilter{NotKEK: "kek-2"}, infertrail.KeyID{}, func(*infertrail.DataKey) error { left++; return nil }); err != nil || left != 0 {
		t.Errorf("%d keys not under kek-2 after rewrapping (%v)", left, err)
	}
}

// TestMigrateTermSources migrates a version 6 schema whose term postings
// carry their data keys in postings.data_key, and checks, at the latest
// version, that the column and its index are gone, that key_records holds
// each key's records and block_terms the term keys, and that an erasure
// then deletes the postings of its key and no others.
func TestMigrateTermSources(t *testing.T) {
	ctx := t.Context()
	pool, schema := migratedTo(t, 6)
	defer pool.Close()
	k1, k2 := infertrail.KeyID{1, 1}, infertrail.KeyID{2, 2}
	const ta, tb, tc = "term=aaaaaaaaaaaaaaaaaaaaaaaa", "term=bbbbbbbbbbbbbbbbbbbbbbbb", "term=cccccccccccccccccccccccc"
	_, err := pool.Exec(ctx, `INSERT INTO postings (key, seq, data_key) VALUES
		('model=m', 1, NULL), ($3, 1, $1), ($4, 1, $1), ($4, 2, $2), ($5, 3, $1)`, k1[:], k2[:], tb, ta, tc)
	if err != nil {
		t.Fatal(err)
	}
	db := migrateRest(t, pool, schema)
	var n int
	if err := db.pool.QueryRow(ctx, `SELECT count(*) FROM information_schema.columns WHERE table_schema = $1 AND table_name = 'postings' AND column_name = 'data_key'`, schema).Scan(&n); err != nil || n != 0 {
		t.Errorf("postings.data_key left after migration 7 (%d, %v)", n, err)
	}
	want := map[infertrail.KeyID]map[int64]int64{k1: {0: 1<<1 | 1<<3}, k2: {0: 1 << 2}}
	if got := keyRecords(t, db); !maps.EqualFunc(got, want, maps.Equal) {
		t.Errorf("key_records after migration: %v, want %v", got, want)
	}
	lists := map[int64][]string{0: {showKey(ta), showKey(tb), showKey(tc)}}
	if got := blockLists(t, db); !maps.EqualFunc(got, lists, slices.Equal) {
		t.Errorf("block_terms after migration: %v, want %v", got, lists)
	}

	entries, blobs := storetest.MakeBatch(0, 4)
	appendEncrypted(t, db, entries, blobs)
	eraseKey(t, db, k1)
	if got, w := postingsOf(t, db), []string{showKey(ta) + "@2", "model=m@1"}; !slices.Equal(got, w) {
		t.Errorf("postings after erasing the first key: %v, want %v", got, w)
	}
	if got, w := blockLists(t, db), map[int64][]string{0: {showKey(ta)}}; !maps.EqualFunc(got, w, slices.Equal) {
		t.Errorf("block_terms after erasing the first key: %v, want %v", got, w)
	}
}

// TestMigratePackedTerms migrates a version 7 schema, whose posting keys
// and term lists are text, and checks that term keys are packed (13
// bytes, 9 since migration 12) and other keys kept, that queries find both, and that an erasure
// deletes the postings of its records' term keys, packed or kept as text
// (the lists of migration 10 name every term key of each block: search
// terms are the keys derived from content).
func TestMigratePackedTerms(t *testing.T) {
	ctx := t.Context()
	pool, schema := migratedTo(t, 7)
	defer pool.Close()
	k1, k2 := infertrail.KeyID{1, 1}, infertrail.KeyID{2, 2}
	const t1, t2 = "term=00112233445566778899aabb", "term=ffeeddccbbaa998877665544"
	_, err := pool.Exec(ctx, `INSERT INTO postings (key, seq) VALUES
		('model=m', 1), ($1, 1), ($2, 1), ($1, 2), ('term=a', 2), ($2, 3), ('term=0123456789ABCDEF01234567', 3)`, t1, t2)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `INSERT INTO term_sources (data_key, seq, terms) VALUES
		($1, 1, ARRAY[$3, $4]), ($2, 2, ARRAY[$3, 'term=a']), ($1, 3, '{}')`, k1[:], k2[:], t1, t2); err != nil {
		t.Fatal(err)
	}
	db := migrateRest(t, pool, schema)
	var packed, kept int
	if err := db.pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE length(key) = 9 AND get_byte(key, 0) = 1),
		count(*) FILTER (WHERE get_byte(key, 0) <> 1) FROM `+postingRows).Scan(&packed, &kept); err != nil || packed != 4 || kept != 3 {
		t.Errorf("after migrations 8 and 12: %d keys packed and %d kept (%v), want 4 and 3", packed, kept, err)
	}
	entries, blobs := storetest.MakeBatch(0, 4)
	appendEncrypted(t, db, entries, blobs)
	seqs := func(keys ...string) []int64 {
		t.Helper()
		var got []int64
		if err := db.Query(ctx, infertrail.Query{Keys: keys}, func(e *infertrail.Entry) error { got = append(got, e.Seq); return nil }); err != nil {
			t.Fatal(err)
		}
		return got
	}
	if got := seqs(t1); !slices.Equal(got, []int64{2, 1}) {
		t.Errorf("query %s: %v, want [2 1]", t1, got)
	}
	if got := seqs(t2, "model=m"); !slices.Equal(got, []int64{1}) {
		t.Errorf("query %s and model=m: %v, want [1]", t2, got)
	}
	if got := seqs("term=0123456789ABCDEF01234567"); !slices.Equal(got, []int64{3}) {
		t.Errorf("query by an upper-case key kept as text: %v, want [3]", got)
	}
	eraseKey(t, db, k1)
	if got := seqs(t1); !slices.Equal(got, []int64{2}) {
		t.Errorf("query %s after erasing the first key: %v, want [2]", t1, got)
	}
	if got := seqs(t2); len(got) != 0 {
		t.Errorf("postings of the erased key left: %v", got)
	}
	if got, got2 := seqs("term=a"), seqs("term=0123456789ABCDEF01234567"); !slices.Equal(got, []int64{2}) || len(got2) != 0 {
		t.Errorf("query term=a and the upper-case key after erasing the first key: %v, %v; want [2] and none (record 3 is the erased key's)", got, got2)
	}
}

// postingRows is the postings table as a row per posting, (key, seq), as
// it was before migration 9.
const postingRows = `(SELECT p.key, p.block * 64 + b AS seq FROM postings p, generate_series(0, 63) AS b WHERE (p.bits >> b) & 1 = 1) AS rows`

// TestMigratePostingBlocks migrates a version 8 schema, a row per posting,
// and checks that each key's postings are one row per block of 64 records
// holding the same postings, that queries find them, and that an erasure
// clears its records' bits and deletes the blocks left empty.
func TestMigratePostingBlocks(t *testing.T) {
	ctx := t.Context()
	pool, schema := migratedTo(t, 8)
	defer pool.Close()
	k1, k2 := infertrail.KeyID{1, 1}, infertrail.KeyID{2, 2}
	const t1, t2 = "term=00112233445566778899aabb", "term=ffeeddccbbaa998877665544"
	// Records 0 to 199: model=m on every one; t1 on the first and last of
	// each block of 64, under k1; t2 on every third of the others, under
	// k2 (the server seals all of a record's content under one key).
	if _, err := pool.Exec(ctx, `INSERT INTO postings (key, seq) SELECT 'model=m'::bytea, g FROM generate_series(0, 199) AS g`); err != nil {
		t.Fatal(err)
	}
	for seq := range int64(200) {
		var terms []string
		switch {
		case seq%64 == 0 || seq%64 == 63:
			terms = append(terms, t1)
		case seq%3 == 0:
			terms = append(terms, t2)
		}
		for _, k := range terms {
			if _, err := pool.Exec(ctx, `INSERT INTO postings (key, seq) VALUES ($1, $2)`, storedKey(k), seq); err != nil {
				t.Fatal(err)
			}
			id := k1
			if k == t2 {
				id = k2
			}
			if _, err := pool.Exec(ctx, `INSERT INTO term_sources (data_key, seq, terms) VALUES ($1, $2, ARRAY[$3::bytea])
				ON CONFLICT (data_key, seq) DO UPDATE SET terms = term_sources.terms || EXCLUDED.terms`, id[:], seq, storedKey(k)); err != nil {
				t.Fatal(err)
			}
		}
	}
	// rowsOf reads the postings of table, a row per posting.
	rowsOf := func(db interface {
		Query(context.Context, string, ...any) (pgx.Rows, error)
	}, table string) []string {
		t.Helper()
		rows, err := db.Query(ctx, `SELECT CASE WHEN get_byte(key, 0) = 1 THEN encode(key, 'hex') ELSE convert_from(key, 'UTF8') END || '@' || seq
			FROM `+table+` ORDER BY key, seq`)
		if err != nil {
			t.Fatal(err)
		}
		out, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	before := rowsOf(pool, "postings")
	db := migrateRest(t, pool, schema)
	if got := rowsOf(db.pool, postingRows); !slices.Equal(got, before) {
		t.Errorf("postings after migration 9: %d, want the %d before, or not the same", len(got), len(before))
	}
	var blocks int
	if err := db.pool.QueryRow(ctx, `SELECT count(*) FROM postings`).Scan(&blocks); err != nil || blocks != 4+4+4 {
		t.Errorf("%d rows of postings after migration 9 (%v), want 12: 4 blocks of each key", blocks, err)
	}
	entries, blobs := storetest.MakeBatch(0, 200)
	appendEncrypted(t, db, entries, blobs)
	var got []int64
	if err := db.Query(ctx, infertrail.Query{Keys: []string{t1, "model=m"}}, func(e *infertrail.Entry) error { got = append(got, e.Seq); return nil }); err != nil {
		t.Fatal(err)
	}
	if w := []int64{192, 191, 128, 127, 64, 63, 0}; !slices.Equal(got, w) {
		t.Errorf("query %s and model=m after migration 9: %v, want %v", t1, got, w)
	}
	eraseKey(t, db, k1)
	left := slices.DeleteFunc(before, func(s string) bool { return strings.HasPrefix(s, hex.EncodeToString(storedKey(t1))+"@") })
	if got := rowsOf(db.pool, postingRows); !slices.Equal(got, left) {
		t.Errorf("postings after erasing the first key: %d, want %d, or not the same", len(got), len(left))
	}
	if err := db.pool.QueryRow(ctx, `SELECT count(*) FROM postings`).Scan(&blocks); err != nil || blocks != 8 {
		t.Errorf("%d rows of postings after the erasure (%v), want 8: the erased key's 4 blocks gone", blocks, err)
	}
}

// TestMigrateErasureLists migrates a version 9 schema, whose term_sources
// lists for each record the terms not listed before under its data key,
// and checks that key_records then holds each key's records and
// block_terms each block's term keys (packed, and kept as text with
// lengths of one and two bytes), and that erasing one key
// clears exactly its records' bits from the term postings, deletes the
// rows left empty and drops their keys from the lists, and leaves the
// other key's postings and those of keys not derived from content alone.
func TestMigrateErasureLists(t *testing.T) {
	ctx := t.Context()
	pool, schema := migratedTo(t, 9)
	defer pool.Close()
	k1, k2 := infertrail.KeyID{1, 1}, infertrail.KeyID{2, 2}
	term := func(i int) string { return fmt.Sprintf("term=%016x00000000", i) }
	// Records 0 to 139, blocks 0 to 2: model=m on every one. Records below
	// 100 are under k1 when even and k2 when odd, and have term 0; k1's
	// have term 1 when a multiple of 4, k2's term 2 when a multiple of 3;
	// record 70 alone has term 3 and two term keys stored as text, one
	// longer than 127 bytes. Records 100 on have no content.
	long := "term=" + strings.Repeat("x", 150)
	ps := twoKeyPostings(k1, k2, 100, term, term(3), "term=word", long)
	sorted := postings.Sort(ps)
	for _, b := range postings.Blocks(sorted) {
		if _, err := pool.Exec(ctx, `INSERT INTO postings (key, block, bits) VALUES ($1, $2, $3)`, storedKey(b.Key), b.Block, b.Bits); err != nil {
			t.Fatal(err)
		}
	}
	// term_sources as version 9 wrote it: a row per record and data key,
	// listing the terms not listed before under the key (some rows none).
	listed := map[infertrail.KeyID]map[string]bool{k1: {}, k2: {}}
	rows := map[infertrail.KeyID]map[int64][][]byte{k1: {}, k2: {}}
	for _, p := range ps {
		if p.DataKey.IsZero() {
			continue
		}
		r := rows[p.DataKey]
		if r[p.Seq] == nil {
			r[p.Seq] = [][]byte{}
		}
		if !listed[p.DataKey][p.Key] {
			listed[p.DataKey][p.Key] = true
			r[p.Seq] = append(r[p.Seq], storedKey(p.Key))
		}
	}
	for id, r := range rows {
		for seq, terms := range r {
			if _, err := pool.Exec(ctx, `INSERT INTO term_sources (data_key, seq, terms) VALUES ($1, $2, $3)`, id[:], seq, terms); err != nil {
				t.Fatal(err)
			}
		}
	}
	db := migrateRest(t, pool, schema)
	var n int
	if err := db.pool.QueryRow(ctx, `SELECT count(*) FROM information_schema.tables WHERE table_schema = $1 AND table_name = 'term_sources'`, schema).Scan(&n); err != nil || n != 0 {
		t.Errorf("term_sources left after migration 10 (%d, %v)", n, err)
	}
	if got, want := keyRecords(t, db), wantRecords(ps); !maps.EqualFunc(got, want, maps.Equal) {
		t.Errorf("key_records after migration 10: %v, want %v", got, want)
	}
	lists := map[int64][]string{
		0: {showKey(term(0)), showKey(term(1)), showKey(term(2))},
		1: {showKey(term(0)), showKey(term(1)), showKey(term(2)), showKey(term(3)), "term=word", long},
	}
	if got := blockLists(t, db); !maps.EqualFunc(got, lists, slices.Equal) {
		t.Errorf("block_terms after migration 10: %v, want %v", got, lists)
	}
	var rowsBefore int
	if err := db.pool.QueryRow(ctx, `SELECT count(*) FROM postings`).Scan(&rowsBefore); err != nil {
		t.Fatal(err)
	}

	entries, blobs := storetest.MakeBatch(0, 140)
	appendEncrypted(t, db, entries, blobs)
	eraseKey(t, db, k1)
	left := slices.DeleteFunc(slices.Clone(ps), func(p infertrail.Posting) bool { return p.DataKey == k1 })
	if got, want := postingsOf(t, db), showPostings(left); !slices.Equal(got, want) {
		t.Errorf("postings after erasing the first key: %d, want %d, or not the same", len(got), len(want))
	}
	// Term 1 had a row in blocks 0 and 1, term 3 and the text keys in
	// block 1: all k1's.
	var rowsAfter int
	if err := db.pool.QueryRow(ctx, `SELECT count(*) FROM postings`).Scan(&rowsAfter); err != nil || rowsAfter != rowsBefore-5 {
		t.Errorf("%d rows of postings after the erasure (%v), want %d: 5 emptied and deleted", rowsAfter, err, rowsBefore-5)
	}
	lists = map[int64][]string{0: {showKey(term(0)), showKey(term(2))}, 1: {showKey(term(0)), showKey(term(2))}}
	if got := blockLists(t, db); !maps.EqualFunc(got, lists, slices.Equal) {
		t.Errorf("block_terms after the erasure: %v, want %v", got, lists)
	}
	if got, want := keyRecords(t, db), wantRecords(left); !maps.EqualFunc(got, want, maps.Equal) {
		t.Errorf("key_records after the erasure: %v, want %v", got, want)
	}
	var got []int64
	if err := db.Query(ctx, infertrail.Query{Keys: []string{term(0)}, Limit: 1000}, func(e *infertrail.Entry) error { got = append(got, e.Seq); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 50 || slices.ContainsFunc(got, func(seq int64) bool { return seq%2 == 0 }) {
		t.Errorf("query %s after the erasure: %v, want the 50 odd records below 100", term(0), got)
	}
}

// TestMigrateShortTermKeys migrates a version 11 schema, whose packed term
// keys hold all 12 bytes of their tags in the postings and in the blocks'
// lists, and checks that they are cut to 8 with the same postings, that
// two keys cut to the same bytes become one with the records of both,
// that the lists name the keys as they are now stored, and that queries
// and an erasure find them.
func TestMigrateShortTermKeys(t *testing.T) {
	ctx := t.Context()
	pool, schema := migratedTo(t, 11)
	defer pool.Close()
	k1, k2 := infertrail.KeyID{1, 1}, infertrail.KeyID{2, 2}
	term := func(i int) string { return fmt.Sprintf("term=%016x00000000", i) }
	// full is a term key as version 11 stored it.
	full := func(k string) []byte {
		b, err := hex.DecodeString(k[5:])
		if err != nil || len(b) != postings.TagLen {
			t.Fatalf("%s is not a term key", k)
		}
		return append([]byte{postings.TagTerms}, b...)
	}
	// Records 0 to 139, all with content; "term=word" (kept as text) on
	// record 70.
	ps := twoKeyPostings(k1, k2, 140, term, "term=word")
	sorted := postings.Sort(ps)
	lists := map[int64][]string{}
	for _, b := range postings.Blocks(sorted) {
		stored := storedKey(b.Key)
		if stored[0] == postings.TagTerms {
			stored = full(b.Key)
		}
		if _, err := pool.Exec(ctx, `INSERT INTO postings (key, block, bits) VALUES ($1, $2, $3)`, stored, b.Block, b.Bits); err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(b.Key, "term=") {
			lists[b.Block] = append(lists[b.Block], string(stored))
		}
	}
	for block, keys := range lists {
		slices.Sort(keys)
		var enc []byte
		for _, k := range keys {
			if k[0] == postings.TagTerms {
				enc = append(enc, k...) // 13 bytes, as version 11 listed them
				continue
			}
			enc = append(binary.AppendUvarint(append(enc, 0), uint64(len(k))), k...)
		}
		if _, err := pool.Exec(ctx, `INSERT INTO block_terms (block, keys) VALUES ($1, $2)`, block, enc); err != nil {
			t.Fatal(err)
		}
	}
	for id, blocks := range wantRecords(ps) {
		for block, bits := range blocks {
			if _, err := pool.Exec(ctx, `INSERT INTO key_records (data_key, block, bits) VALUES ($1, $2, $3)`, id[:], block, bits); err != nil {
				t.Fatal(err)
			}
		}
	}
	// A key whose first 8 bytes are term 2's, for records 3, which has
	// term 2, and 5, which has not (both k2's).
	other := append(full(term(2))[:1+postings.StoredTagLen:1+postings.StoredTagLen], 0xff, 0xff, 0xff, 0xff)
	if _, err := pool.Exec(ctx, `INSERT INTO postings (key, block, bits) VALUES ($1, 0, $2)`, other, int64(1)<<3|int64(1)<<5); err != nil {
		t.Fatal(err)
	}
	ps = append(ps, infertrail.Posting{Key: term(2), Seq: 5, DataKey: k2})

	db := migrateRest(t, pool, schema)
	var long int
	if err := db.pool.QueryRow(ctx, `SELECT count(*) FROM postings WHERE get_byte(key, 0) = 1 AND length(key) <> 9`).Scan(&long); err != nil || long != 0 {
		t.Errorf("%d term keys not cut to 9 bytes (%v)", long, err)
	}
	if !checkIndexTables(t, db, ps, "after migration 12") {
		return
	}
	entries, blobs := storetest.MakeBatch(0, 140)
	appendEncrypted(t, db, entries, blobs)
	var got []int64
	if err := db.Query(ctx, infertrail.Query{Keys: []string{"term=" + hex.EncodeToString(other[1:])}, Limit: 3}, func(e *infertrail.Entry) error {
		got = append(got, e.Seq)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, []int64{135, 129, 123}) {
		t.Errorf("query by a term key cut to the bytes of another: %v, want [135 129 123]", got)
	}
	eraseKey(t, db, k2)
	left := slices.DeleteFunc(slices.Clone(ps), func(p infertrail.Posting) bool { return p.DataKey == k2 })
	checkIndexTables(t, db, left, "after erasing the second key")
}

// twoKeyPostings returns the postings of records 0 to 139: model=m on
// every one; below content, records under k1 when even and k2 when odd,
// with term 0, term 1 on k1's multiples of 4, term 2 on k2's multiples of
// 3, and the keys extra on record 70.
func twoKeyPostings(k1, k2 infertrail.KeyID, content int64, term func(int) string, extra ...string) []infertrail.Posting {
	var ps []infertrail.Posting
	for seq := range int64(140) {
		ps = append(ps, infertrail.Posting{Key: "model=m", Seq: seq})
		if seq >= content {
			continue
		}
		key, terms := k1, []string{term(0)}
		switch {
		case seq%2 == 1:
			key = k2
			if seq%3 == 0 {
				terms = append(terms, term(2))
			}
		case seq%4 == 0:
			terms = append(terms, term(1))
		}
		if seq == 70 {
			terms = append(terms, extra...)
		}
		for _, k := range terms {
			ps = append(ps, infertrail.Posting{Key: k, Seq: seq, DataKey: key})
		}
	}
	return ps
}

// eraseKey erases data key id in a transaction of its own.
func eraseKey(t *testing.T, db *DB, id infertrail.KeyID) {
	t.Helper()
	tx, err := db.BeginAppend(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	if _, err := tx.Erase(t.Context(), []infertrail.KeyID{id}, 0); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
}

// migratedTo returns a pool of one connection to a fresh schema migrated
// to version, and the schema.
// migrateRest applies the migrations after those migratedTo applied to
// schema, closes pool and opens the store on the schema, as a node of the
// new build would find it.
func migrateRest(t *testing.T, pool *pgxpool.Pool, schema string) *DB {
	t.Helper()
	if err := migrate(t.Context(), pool, schema); err != nil {
		t.Fatal(err)
	}
	pool.Close()
	db, _ := openTest(t, Config{Schema: schema, SkipMigrate: true})
	return db
}

func migratedTo(t *testing.T, version int) (*pgxpool.Pool, string) {
	t.Helper()
	dsn := testDSN(t)
	ctx := t.Context()
	schema := freshSchema(t, dsn)
	pool, _, err := connect(ctx, dsn, Config{Schema: schema, MaxConns: 1})
	if err != nil {
		t.Fatal(err)
	}
	ms, err := migrations()
	if err != nil {
		pool.Close()
		t.Fatal(err)
	}
	if err := migrateTo(ctx, pool, schema, ms[:version]); err != nil {
		pool.Close()
		t.Fatal(err)
	}
	return pool, schema
}
