package sqlite

import (
	"cmp"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/infertrail/infertrail"
	"github.com/infertrail/infertrail/store/internal/postings"
)

// TestStoredKey: a term key in investigate.Terms' form is stored as a blob
// of the first 8 bytes of its tag, any other key as its text;
// storedKeySQL, which migration 3 and the move of an old log's postings
// use, gives the same answers.
func TestStoredKey(t *testing.T) {
	db, _, _ := openKeyed(t, 0)
	defer db.Close()
	keys := []string{
		"term=0123456789abcdef01234567", "term=ffffffffffffffffffffffff", "term=000000000000000000000000",
		"term=0123456789ABCDEF01234567", "term=0123456789abcdef0123456", "term=0123456789abcdef012345678",
		"term=0123456789abcdef0123456g", "term=0123456789abcdef 1234567", "term=word", "term=",
		"tool=0123456789abcdef01234567", "Term=0123456789abcdef01234567", "model=gpt-4o", "a=é",
	}
	var buf []byte
	for _, k := range keys {
		want := storedKey(k)
		if b, ok := want.([]byte); ok != (len(k) == 29 && k[:5] == "term=" && k == strings.ToLower(k) && !strings.ContainsAny(k[5:], " g")) {
			t.Errorf("storedKey(%q) = %v", k, want)
		} else if ok && (len(b) != 9 || b[0] != postings.TagTerms || hex.EncodeToString(b[1:]) != k[5:21]) {
			t.Errorf("storedKey(%q) = %x", k, b)
		}
		if got := appendStoredKey(&buf, k); !reflect.DeepEqual(got, want) {
			t.Errorf("appendStoredKey(%q) = %v, want %v", k, got, want)
		}
		var got any
		if err := db.index.QueryRowContext(t.Context(), `SELECT `+storedKeySQL("?1"), k).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("storedKeySQL(%q) = %#v, storedKey %#v", k, got, want)
		}
	}
}

// TestPackPostings: an index file of version 2, whose term keys are text,
// opens with the keys packed, its postings otherwise the same and the room
// they took given back; queries and an erasure find the packed keys.
func TestPackPostings(t *testing.T) {
	ctx := t.Context()
	db, path, keys := openKeyed(t, 300)
	var ps []infertrail.Posting
	for seq := range int64(300) {
		ps = append(ps, infertrail.Posting{Key: fmt.Sprintf("leaf=%d", seq%7), Seq: seq},
			infertrail.Posting{Key: fmt.Sprintf("term=%016x00000000", seq%5), Seq: seq, DataKey: keys[seq%2].ID},
			infertrail.Posting{Key: "term=word", Seq: seq, DataKey: keys[seq%2].ID})
		for w := range int64(20) {
			ps = append(ps, infertrail.Posting{Key: fmt.Sprintf("term=%016x00000000", 1000+seq/2+w), Seq: seq, DataKey: keys[seq%2].ID})
		}
	}
	if err := db.AddPostings(ctx, "indexer", 0, 300, ps); err != nil {
		t.Fatal(err)
	}
	want := indexPostings(t, db)
	if len(want) != len(ps) {
		t.Fatalf("%d postings stored, want %d", len(want), len(ps))
	}
	// count counts the postings whose keys are stored as typ, in blocks
	// or a row each.
	count := func(typ string) (n int) {
		t.Helper()
		q := `SELECT count(*) FROM postings WHERE typeof(key) = ?`
		var blocks bool
		if err := db.index.QueryRowContext(ctx, `SELECT count(*) > 0 FROM pragma_table_info('postings') WHERE name = 'bits'`).Scan(&blocks); err != nil {
			t.Fatal(err)
		}
		if blocks {
			q = `WITH RECURSIVE b (i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM b WHERE i < 63)
				SELECT count(*) FROM postings p, b WHERE typeof(p.key) = ? AND (p.bits >> b.i) & 1`
		}
		if err := db.index.QueryRowContext(ctx, q, typ).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if blobs := count("blob"); blobs != 300*21 {
		t.Fatalf("%d term keys stored packed, want %d", blobs, 300*21)
	}
	// Back to version 2: a row per posting, every key as text, the
	// records of each data key in term_sources.
	rowPostings(t, db.index)
	for _, q := range []string{`UPDATE postings SET key = 'term=' || lower(hex(substr(key, 2))) || '00000000' WHERE typeof(key) = 'blob'`,
		`DELETE FROM schema_migrations WHERE version >= 3`} {
		if _, err := db.index.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	if blobs := count("blob"); blobs != 0 {
		t.Fatalf("%d keys left packed, want 0", blobs)
	}
	db = reopen(t, db, path, want, "migrations 3 to 5")
	if blobs, texts := count("blob"), count("text"); blobs != 300*21 || texts != 300*2 {
		t.Errorf("after migration 3: %d keys packed and %d text, want %d and %d", blobs, texts, 300*21, 300*2)
	}
	var free int
	if err := db.index.QueryRowContext(ctx, `PRAGMA freelist_count`).Scan(&free); err != nil || free != 0 {
		t.Errorf("%d free pages in the index file after migration 3 (%v), want 0", free, err)
	}
	var got []int64
	if err := db.Query(ctx, infertrail.Query{Keys: []string{fmt.Sprintf("term=%016x00000000", 3), "leaf=1"}}, func(e *infertrail.Entry) error {
		got = append(got, e.Seq)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(got) != 9 || got[0] != 288 {
		t.Errorf("query by a term key and a leaf key after migration 3: %v; want the 9 records from 288 down that are 3 mod 5 and 1 mod 7", got)
	}
	eraseChecked(t, db, 300, keys[0].ID, want, "the first key")
}

// TestPostingBlocks: an index file of version 3, a row per posting, opens
// with a row per key and block of 64 records holding the same postings,
// the room the rows took given back; a query and an erasure then read and
// clear the blocks' bits, and a block left empty is deleted.
func TestPostingBlocks(t *testing.T) {
	ctx := t.Context()
	db, path, keys := openKeyed(t, 300)
	var ps []infertrail.Posting
	for seq := range int64(300) {
		ps = append(ps, infertrail.Posting{Key: fmt.Sprintf("leaf=%d", seq%7), Seq: seq},
			infertrail.Posting{Key: "term=" + strings.Repeat("ab", postings.TagLen), Seq: seq, DataKey: keys[seq%2].ID})
		if seq%64 == 62 || seq%64 == 0 {
			// The first bit of each block and one near its end, records
			// of the first key (the second's have bit 63).
			ps = append(ps, infertrail.Posting{Key: "term=" + strings.Repeat("cd", postings.TagLen), Seq: seq, DataKey: keys[0].ID})
		}
	}
	if err := db.AddPostings(ctx, "indexer", 0, 300, ps); err != nil {
		t.Fatal(err)
	}
	want := indexPostings(t, db)
	if len(want) != len(ps) {
		t.Fatalf("%d postings stored, want %d", len(want), len(ps))
	}
	rows := func() (n int) {
		t.Helper()
		if err := db.index.QueryRowContext(ctx, `SELECT count(*) FROM postings`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	// 7 leaf keys and one term key in each of 5 blocks, but leaf keys
	// 3 to 6 skip no block, nor does the third key, in 5 blocks too.
	const blocks = 7*5 + 5 + 5
	if n := rows(); n != blocks {
		t.Fatalf("%d rows of postings, want %d", n, blocks)
	}
	rowPostings(t, db.index)
	if n := rows(); n != len(ps) {
		t.Fatalf("%d rows after going back to version 3, want %d", n, len(ps))
	}
	db = reopen(t, db, path, want, "migration 4")
	if n := rows(); n != blocks {
		t.Errorf("%d rows of postings after migration 4, want %d", n, blocks)
	}
	var free int
	if err := db.index.QueryRowContext(ctx, `PRAGMA freelist_count`).Scan(&free); err != nil || free != 0 {
		t.Errorf("%d free pages in the index file after migration 4 (%v), want 0", free, err)
	}
	var got []int64
	if err := db.Query(ctx, infertrail.Query{Keys: []string{"term=" + strings.Repeat("cd", postings.TagLen), "leaf=0"}}, func(e *infertrail.Entry) error {
		got = append(got, e.Seq)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, []int64{126, 0}) {
		t.Errorf("query after migration 4: %v, want [126 0] (0 or 62 mod 64, and 0 mod 7)", got)
	}
	eraseChecked(t, db, 300, keys[0].ID, want, "the first key")
	// The third key's blocks are empty, and gone; the second's are half full.
	if n := rows(); n != blocks-5 {
		t.Errorf("%d rows of postings after the erasure, want %d", n, blocks-5)
	}
}

// TestErasureLists: records of two sessions (data keys) interleaved in
// the same blocks, re-sending a growing history with words of both, over
// three index steps: each block lists every key of content its records
// posted, once; an erasure of one key clears its records' bits and no
// other's, deletes the postings left empty, drops their keys from the
// lists and the key's rows from key_records.
func TestErasureLists(t *testing.T) {
	ctx := t.Context()
	const n = 200
	db, _, keys := openKeyed(t, n)
	defer db.Close()
	term := func(i int) string { return fmt.Sprintf("term=%016x00000000", i) }
	var ps []infertrail.Posting
	for seq := range int64(n) {
		k := keys[seq%2].ID
		ps = append(ps, infertrail.Posting{Key: fmt.Sprintf("leaf=%d", seq%3), Seq: seq})
		// Words shared by both sessions, the session's own history, and
		// the record's new words.
		for w := range 5 {
			ps = append(ps, infertrail.Posting{Key: term(w), Seq: seq, DataKey: k})
		}
		for w := int(seq % 2 * 1000); w < int(seq%2*1000+seq/4); w++ {
			ps = append(ps, infertrail.Posting{Key: term(100 + w), Seq: seq, DataKey: k})
		}
		ps = append(ps, infertrail.Posting{Key: term(10000 + int(seq)), Seq: seq, DataKey: k})
	}
	steps := []int64{0, 17, 101, n}
	for i := 1; i < len(steps); i++ {
		step := slices.DeleteFunc(slices.Clone(ps), func(p infertrail.Posting) bool { return p.Seq < steps[i-1] || p.Seq >= steps[i] })
		if err := db.AddPostings(ctx, "indexer", steps[i-1], steps[i], step); err != nil {
			t.Fatal(err)
		}
	}
	want := postings.Sort(ps)
	if got := indexPostings(t, db); !slices.Equal(got, want) {
		t.Fatalf("postings read back through key_records and block_terms: %d, want %d, or not the same", len(got), len(want))
	}
	// lists returns each block's list, and checks that each key it lists
	// has postings in the block.
	lists := func() map[int64][]string {
		t.Helper()
		out := blockLists(t, db)
		for block, keys := range out {
			for _, k := range keys {
				var bits int64
				if err := db.index.QueryRowContext(ctx, `SELECT bits FROM postings WHERE key = ? AND block = ?`, storedListKey(k), block).Scan(&bits); err != nil || bits == 0 {
					t.Errorf("block %d lists %x, which has no postings there (%v)", block, k, err)
				}
			}
		}
		return out
	}
	// Each block lists the distinct keys of content of its records.
	wantLists := map[int64][]string{}
	for _, p := range want {
		if !p.DataKey.IsZero() {
			b := p.Seq >> 6
			wantLists[b] = append(wantLists[b], postings.Stored(p.Key))
		}
	}
	for b, l := range wantLists {
		slices.Sort(l)
		wantLists[b] = slices.Compact(l)
	}
	if got := lists(); !reflect.DeepEqual(got, wantLists) {
		t.Errorf("block lists: %d blocks, want %d, or not the same", len(got), len(wantLists))
	}
	// The purge right after the erasure may take longer than openKeyed's
	// 100 ms (with -race); the next write of the index does it then.
	eraseChecked(t, db, n, keys[0].ID, want, "the first key")
	// The shared words stay in every block, the first session's own go.
	for b, l := range lists() {
		if !slices.Contains(l, postings.Stored(term(0))) || slices.Contains(l, postings.Stored(term(100))) || slices.Contains(l, postings.Stored(term(10000))) {
			t.Errorf("block %d lists %d keys after the erasure: the shared words, and none of the erased session's own, wanted", b, len(l))
		}
	}
	var owned int
	if err := db.index.QueryRowContext(ctx, `SELECT count(*) FROM key_records WHERE data_key = ?`, keys[0].ID[:]).Scan(&owned); err != nil || owned != 0 {
		t.Errorf("%d blocks of records of the erased key left (%v)", owned, err)
	}
	for _, w := range []int{0, 1100} {
		var got []int64
		if err := db.Query(ctx, infertrail.Query{Keys: []string{term(w)}}, func(e *infertrail.Entry) error {
			if e.Seq%2 == 0 {
				t.Errorf("record %d of the erased session found by %s", e.Seq, term(w))
			}
			got = append(got, e.Seq)
			return nil
		}); err != nil || len(got) == 0 {
			t.Errorf("query %s after the erasure: %d records, %v; want the second session's", term(w), len(got), err)
		}
	}
}

// eraseChecked appends erasure record n erasing data key id, purges the
// index file of its postings (as the next write of the index would), and
// checks that the postings left are want less those of id's records.
func eraseChecked(t *testing.T, db *DB, n int, id infertrail.KeyID, want []infertrail.Posting, what string) {
	t.Helper()
	eraseKey(t, db, n, id)
	if err := db.writeIndex(t.Context(), "purge", nil); err != nil {
		t.Fatal(err)
	}
	left := slices.DeleteFunc(slices.Clone(want), func(p infertrail.Posting) bool { return p.DataKey == id })
	if got := indexPostings(t, db); !slices.Equal(got, left) {
		t.Errorf("after erasing %s: %d postings, want %d, or not the same", what, len(got), len(left))
	}
}

// addSessionPostings indexes 300 records of two sessions, under keys[0]
// when even and keys[1] when odd: a leaf key, "term=word" and 20 term keys
// each, which overlap those of the records before; it returns the stored
// postings.
func addSessionPostings(t *testing.T, db *DB, keys []infertrail.DataKey) []infertrail.Posting {
	t.Helper()
	var ps []infertrail.Posting
	for seq := range int64(300) {
		ps = append(ps, infertrail.Posting{Key: fmt.Sprintf("leaf=%d", seq%7), Seq: seq},
			infertrail.Posting{Key: "term=word", Seq: seq, DataKey: keys[seq%2].ID})
		for w := range int64(20) {
			ps = append(ps, infertrail.Posting{Key: fmt.Sprintf("term=%016x00000000", seq%2*1000+seq/3+w), Seq: seq, DataKey: keys[seq%2].ID})
		}
	}
	if err := db.AddPostings(t.Context(), "indexer", 0, 300, ps); err != nil {
		t.Fatal(err)
	}
	want := indexPostings(t, db)
	if len(want) != len(ps) {
		t.Fatalf("%d postings stored, want %d", len(want), len(ps))
	}
	return want
}

// TestMigrateErasureLists: an index file of version 4, whose term_sources
// lists terms per record in any of the forms written before (here, bytes
// no build wrote: migration 5 reads only their records), opens with
// key_records and block_terms in its place, the same postings and the room
// given back; an erasure then clears its key's records and no others.
func TestMigrateErasureLists(t *testing.T) {
	ctx := t.Context()
	db, path, keys := openKeyed(t, 300)
	want := addSessionPostings(t, db, keys)
	termSources(t, db.index)
	if _, err := db.index.ExecContext(ctx, `UPDATE term_sources SET terms = x'02ff'`); err != nil {
		t.Fatal(err)
	}
	db = reopen(t, db, path, want, "migration 5")
	var n, free int
	if err := db.index.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_schema WHERE name = 'term_sources'`).Scan(&n); err != nil || n != 0 {
		t.Errorf("term_sources left after migration 5 (%d, %v)", n, err)
	}
	if err := db.index.QueryRowContext(ctx, `PRAGMA freelist_count`).Scan(&free); err != nil || free != 0 {
		t.Errorf("%d free pages in the index file after migration 5 (%v), want 0", free, err)
	}
	eraseChecked(t, db, 300, keys[1].ID, want, "the second key")
}

// reopen closes db, opens the database at path again (which migrates its
// files), and checks that its postings are want, after what names the
// migration.
func reopen(t *testing.T, db *DB, path string, want []infertrail.Posting, what string) *DB {
	t.Helper()
	db.Close()
	db, err := Open(t.Context(), path, Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if got := indexPostings(t, db); !slices.Equal(got, want) {
		t.Errorf("postings after %s: %d, want %d, or not the same", what, len(got), len(want))
	}
	return db
}

// TestMigrateShortTermKeys: an index file of version 5, whose term keys
// hold all 12 bytes of their tags in the postings and in the blocks'
// lists, opens with them cut to 8, the same postings, lists that an
// erasure reads, and the room given back. Two keys cut to the same bytes
// become one, with the records of both.
func TestMigrateShortTermKeys(t *testing.T) {
	ctx := t.Context()
	db, path, keys := openKeyed(t, 300)
	want := addSessionPostings(t, db, keys)
	// Back to version 5: each packed key with 4 more bytes (the tests'
	// keys end in 8 zero digits), in the postings and in the lists.
	lists := blockLists(t, db)
	for _, q := range []string{
		`UPDATE postings SET key = unhex(hex(key) || '00000000') WHERE typeof(key) = 'blob'`,
		`DELETE FROM schema_migrations WHERE version >= 6`,
	} {
		if _, err := db.index.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	for block, keys := range lists {
		var old []byte
		for _, k := range keys {
			if len(k) == postings.StoredLen && k[0] == postings.TagTerms {
				old = append(append(old, k...), 0, 0, 0, 0)
				continue
			}
			old = append(binary.AppendUvarint(append(old, 0), uint64(len(k))), k...)
		}
		if _, err := db.index.ExecContext(ctx, `UPDATE block_terms SET keys = ? WHERE block = ?`, old, block); err != nil {
			t.Fatal(err)
		}
	}
	// A key whose first 8 bytes are another's, for records 131, which
	// has that other key, and 135, which has not (both under the second
	// data key, in block 2): it joins the other key.
	other := fmt.Sprintf("term=%016x", 1000+131/3)
	tag, _ := hex.DecodeString(other[5:])
	if _, err := db.index.ExecContext(ctx, `INSERT INTO postings (key, block, bits) VALUES (?, 2, ?)`,
		append(append([]byte{postings.TagTerms}, tag...), 0xff, 0xff, 0xff, 0xff), int64(1)<<(131&63)|int64(1)<<(135&63)); err != nil {
		t.Fatal(err)
	}
	want = append(want, infertrail.Posting{Key: other + "00000000", Seq: 135, DataKey: keys[1].ID})
	slices.SortFunc(want, func(a, b infertrail.Posting) int {
		return cmp.Or(strings.Compare(a.Key, b.Key), cmp.Compare(a.Seq, b.Seq))
	})
	db = reopen(t, db, path, want, "migration 6")
	var long, free int
	if err := db.index.QueryRowContext(ctx, `SELECT count(*) FROM postings WHERE typeof(key) = 'blob' AND length(key) != 9`).Scan(&long); err != nil || long != 0 {
		t.Errorf("%d term keys not cut to 9 bytes (%v)", long, err)
	}
	if err := db.index.QueryRowContext(ctx, `PRAGMA freelist_count`).Scan(&free); err != nil || free != 0 {
		t.Errorf("%d free pages in the index file after migration 6 (%v), want 0", free, err)
	}
	var got []int64
	if err := db.Query(ctx, infertrail.Query{Keys: []string{other + "ffffffff"}, Limit: 3}, func(e *infertrail.Entry) error {
		got = append(got, e.Seq)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, []int64{135, 131, 129}) {
		t.Errorf("query by a term key after migration 6: %v; want [135 131 129]", got)
	}
	eraseChecked(t, db, 300, keys[0].ID, want, "the first key")
}
