package sqlite

import (
	"encoding/hex"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/infertrail/infertrail"
	"github.com/infertrail/infertrail/store/internal/postings"
)

// TestPackTerms: term keys pack as their tags, 12 bytes each; other lists
// as compressed text, the form of every list before, which still unpacks;
// a damaged list is an error that says so.
func TestPackTerms(t *testing.T) {
	tags := []string{"term=0123456789abcdef01234567", "term=fedcba987654321001234567"}
	for _, c := range []struct {
		name  string
		keys  []string
		short bool // packed as tags
	}{
		{"term keys", tags, true},
		{"none", nil, true},
		{"another key among them", append(slices.Clone(tags), "term=word"), false},
		{"upper-case hexadecimal", []string{"term=0123456789ABCDEF01234567"}, false},
		{"another field", []string{"tool=0123456789abcdef01234567"}, false},
	} {
		packed := packTerms(c.keys)
		if short := len(packed) > 0 && packed[0] == tagTerms; short != c.short {
			t.Errorf("%s: packed as tags: %v, want %v", c.name, short, c.short)
		}
		if c.short && len(packed) != 1+termTag*len(c.keys) {
			t.Errorf("%s: %d bytes packed, want %d", c.name, len(packed), 1+termTag*len(c.keys))
		}
		got, err := unpackTerms(packed)
		if err != nil || !slices.Equal(got, c.keys) && len(c.keys) > 0 {
			t.Errorf("%s: unpacked %q, %v; want %q", c.name, got, err, c.keys)
		}
	}
	for _, bad := range [][]byte{{tagTerms, 1, 2, 3}, {0x28, 0xb5, 0x2f, 0xfd, 0}, {0xff}} {
		if _, err := unpackTerms(bad); !errors.Is(err, errDamagedTerms) {
			t.Errorf("unpack %x: %v, want damaged", bad, err)
		}
	}
}

// TestStoredKey: a term key in investigate.Terms' form is stored as a blob
// of its tag, any other key as its text; storedKeySQL, which migration 3
// and the move of an old log's postings use, gives the same answers.
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
		} else if ok && (len(b) != 13 || b[0] != tagTerms || hex.EncodeToString(b[1:]) != k[5:]) {
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

// TestPackPostings: an index file of version 2, whose term keys are text
// and whose term lists are whole, opens with the keys packed and each list
// holding only its record's new terms, its postings otherwise the same and
// the room they took given back; queries and an erasure find the packed
// keys.
func TestPackPostings(t *testing.T) {
	ctx := t.Context()
	db, path, keys := openKeyed(t, 300)
	var ps []infertrail.Posting
	for seq := range int64(300) {
		ps = append(ps, infertrail.Posting{Key: fmt.Sprintf("leaf=%d", seq%7), Seq: seq},
			infertrail.Posting{Key: fmt.Sprintf("term=%024x", seq%5), Seq: seq},
			infertrail.Posting{Key: "term=word", Seq: seq, DataKey: keys[seq%2].ID})
		for w := range int64(20) {
			ps = append(ps, infertrail.Posting{Key: fmt.Sprintf("term=%024x", 1000+seq/2+w), Seq: seq, DataKey: keys[seq%2].ID})
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
	// listed counts the terms term_sources lists: each record's new ones
	// (postings.List), or with whole lists as many as the postings of
	// content.
	listed := func() (n int) {
		t.Helper()
		rows, err := db.index.QueryContext(ctx, `SELECT terms FROM term_sources`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		for rows.Next() {
			var b []byte
			if err := rows.Scan(&b); err != nil {
				t.Fatal(err)
			}
			terms, _, err := listedTerms(b)
			if err != nil {
				t.Fatal(err)
			}
			n += len(terms)
		}
		return n
	}
	content := 0
	for _, p := range want {
		if !p.DataKey.IsZero() {
			content++
		}
	}
	if n := listed(); n >= content {
		t.Fatalf("term_sources lists %d terms of %d postings of content, want fewer", n, content)
	}
	// Back to version 2: a row per posting, every key as text, every list
	// whole.
	rowPostings(t, db.index)
	for _, q := range []string{`UPDATE postings SET key = 'term=' || lower(hex(substr(key, 2))) WHERE typeof(key) = 'blob'`,
		`DELETE FROM schema_migrations WHERE version >= 3`} {
		if _, err := db.index.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	for _, src := range postings.Sources(want) {
		if _, err := db.index.ExecContext(ctx, `UPDATE term_sources SET terms = ? WHERE data_key = ? AND seq = ?`, packTerms(src.Keys), src.Key[:], src.Seq); err != nil {
			t.Fatal(err)
		}
	}
	if blobs, n := count("blob"), listed(); blobs != 0 || n != content {
		t.Fatalf("%d keys left packed, %d terms listed, want 0 and %d", blobs, n, content)
	}
	db = reopen(t, db, path, want, "migrations 3 and 4")
	if blobs, texts := count("blob"), count("text"); blobs != 300*21 || texts != 300*2 {
		t.Errorf("after migration 3: %d keys packed and %d text, want %d and %d", blobs, texts, 300*21, 300*2)
	}
	if n := listed(); n >= content {
		t.Errorf("after migration 3: %d terms listed of %d postings of content, want fewer", n, content)
	}
	var free int
	if err := db.index.QueryRowContext(ctx, `PRAGMA freelist_count`).Scan(&free); err != nil || free != 0 {
		t.Errorf("%d free pages in the index file after migration 3 (%v), want 0", free, err)
	}
	var got []int64
	if err := db.Query(ctx, infertrail.Query{Keys: []string{fmt.Sprintf("term=%024x", 3), "leaf=1"}}, func(e *infertrail.Entry) error {
		got = append(got, e.Seq)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(got) != 9 || got[0] != 288 {
		t.Errorf("query by a term key and a leaf key after migration 3: %v; want the 9 records from 288 down that are 3 mod 5 and 1 mod 7", got)
	}
	eraseKey(t, db, 300, keys[0].ID)
	left := slices.DeleteFunc(slices.Clone(want), func(p infertrail.Posting) bool { return p.DataKey == keys[0].ID })
	if got := indexPostings(t, db); !slices.Equal(got, left) {
		t.Errorf("after erasing the first key: %d postings, want %d", len(got), len(left))
	}
}

// TestTermDeltas: a record's list of term keys is stored as its changes to
// the row before it of the same data key when that is shorter, with a
// list packed whole at least every maxDeltas+1 rows; every list reads back
// as it was, across index steps, and an erasure deletes every posting.
func TestTermSourcesListed(t *testing.T) {
	ctx := t.Context()
	const n = 60
	db, _, keys := openKeyed(t, n)
	defer db.Close()
	term := func(i int) string { return fmt.Sprintf("term=%024x", i) }
	// Records under the first key re-send a growing history: each adds
	// three words and, every seventh, drops the oldest ten; the second
	// key's records share no words. Record 20 holds a key that is not a
	// term key; record 30 is a whole new list.
	var ps []infertrail.Posting
	lo, hi := 0, 40
	for seq := range int64(n) {
		k := keys[seq%2].ID
		if seq%2 == 1 {
			for w := range 30 {
				ps = append(ps, infertrail.Posting{Key: term(100000 + int(seq)*100 + w), Seq: seq, DataKey: k})
			}
			continue
		}
		hi += 3
		if seq%7 == 0 {
			lo += 10
		}
		if seq == 30 {
			lo, hi = 5000, 5040
		}
		for w := lo; w < hi; w++ {
			ps = append(ps, infertrail.Posting{Key: term(w), Seq: seq, DataKey: k})
		}
		if seq == 20 {
			ps = append(ps, infertrail.Posting{Key: "term=word", Seq: seq, DataKey: k})
		}
	}
	// Three index steps.
	for i, at := range []int64{0, 17, 41, n} {
		if i == 0 {
			continue
		}
		var step []infertrail.Posting
		for _, p := range ps {
			if p.Seq >= []int64{0, 17, 41, n}[i-1] && p.Seq < at {
				step = append(step, p)
			}
		}
		if err := db.AddPostings(ctx, "indexer", []int64{0, 17, 41, n}[i-1], at, step); err != nil {
			t.Fatal(err)
		}
	}
	want := postings.Sort(ps)
	if got := indexPostings(t, db); !slices.Equal(got, want) {
		t.Fatalf("postings read back through their term sources: %d, want %d, or not the same", len(got), len(want))
	}
	// Each row lists the terms new to its key: three a record (whose
	// history grows by three words), none after a drop, forty at record
	// 30, one more at record 20.
	lens := map[int64]int{}
	rows, err := db.index.QueryContext(ctx, `SELECT seq, terms FROM term_sources WHERE data_key = ? ORDER BY seq`, keys[0].ID[:])
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var (
			seq   int64
			terms []byte
		)
		if err := rows.Scan(&seq, &terms); err != nil {
			t.Fatal(err)
		}
		listed, delta, err := listedTerms(terms)
		if err != nil || delta {
			t.Fatalf("record %d: %v, delta %v", seq, err, delta)
		}
		lens[seq] = len(listed)
	}
	rows.Close()
	for seq, want := range map[int64]int{0: 33, 2: 3, 16: 3, 18: 3, 20: 4, 30: 40, 32: 3, 58: 3} {
		if lens[seq] != want {
			t.Errorf("record %d lists %d terms, want %d", seq, lens[seq], want)
		}
	}
	eraseKey(t, db, n, keys[0].ID)
	// The purge right after the erasure may take longer than openKeyed's
	// 100 ms (with -race); the next write of the index does it then.
	if err := db.writeIndex(ctx, "purge", nil); err != nil {
		t.Fatal(err)
	}
	left := slices.DeleteFunc(slices.Clone(want), func(p infertrail.Posting) bool { return p.DataKey == keys[0].ID })
	if got := indexPostings(t, db); !slices.Equal(got, left) {
		t.Errorf("after erasing the first key: %d postings, want %d", len(got), len(left))
	}
}

// TestTermListsDamaged: a delta that does not apply to the list before it,
// or has none before it, is an error that says the list is damaged.
func TestTermListsDamaged(t *testing.T) {
	var tags []string
	for i := range 12 {
		tags = append(tags, fmt.Sprintf("term=%024x", i))
	}
	// A row of 2026-11-28's form: two tags removed, three added.
	delta := []byte{tagDelta, 2}
	for _, k := range slices.Concat(tags[:2], tags[9:]) {
		delta, _ = postings.AppendTag(delta, k)
	}
	if got, d, err := listedTerms(packTerms(tags[:11])); err != nil || d || !slices.Equal(got, tags[:11]) {
		t.Fatalf("whole: %q, %v, %v", got, d, err)
	}
	if got, d, err := listedTerms(delta); err != nil || !d || !slices.Equal(got, tags[9:]) {
		t.Fatalf("delta: %q, %v, %v; want the tags added", got, d, err)
	}
	for name, b := range map[string][]byte{
		"cut short":       delta[:len(delta)-1],
		"counts too many": append([]byte{tagDelta, 9}, delta[2:]...),
		"no count":        {tagDelta},
	} {
		if _, _, err := listedTerms(b); !errors.Is(err, errDamagedTerms) {
			t.Errorf("%s: %v, want damaged", name, err)
		}
	}
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
			infertrail.Posting{Key: "term=" + strings.Repeat("ab", termTag), Seq: seq, DataKey: keys[seq%2].ID})
		if seq%64 == 62 || seq%64 == 0 {
			// The first bit of each block and one near its end, records
			// of the first key (the second's have bit 63).
			ps = append(ps, infertrail.Posting{Key: "term=" + strings.Repeat("cd", termTag), Seq: seq, DataKey: keys[0].ID})
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
	if err := db.Query(ctx, infertrail.Query{Keys: []string{"term=" + strings.Repeat("cd", termTag), "leaf=0"}}, func(e *infertrail.Entry) error {
		got = append(got, e.Seq)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, []int64{126, 0}) {
		t.Errorf("query after migration 4: %v, want [126 0] (0 or 62 mod 64, and 0 mod 7)", got)
	}
	eraseKey(t, db, 300, keys[0].ID)
	left := slices.DeleteFunc(slices.Clone(want), func(p infertrail.Posting) bool { return p.DataKey == keys[0].ID })
	if got := indexPostings(t, db); !slices.Equal(got, left) {
		t.Errorf("after erasing the first key: %d postings, want %d", len(got), len(left))
	}
	// The third key's blocks are empty, and gone; the second's are half full.
	if n := rows(); n != blocks-5 {
		t.Errorf("%d rows of postings after the erasure, want %d", n, blocks-5)
	}
}

// TestOldDeltaRows: term lists that an index file of 2026-11-28 holds as
// changes to the row before (tagDelta) are read for an erasure as the
// terms they add, and the erasure still deletes every posting of its key.
func TestOldDeltaRows(t *testing.T) {
	ctx := t.Context()
	db, _, keys := openKeyed(t, 3)
	defer db.Close()
	term := func(s string) string { return "term=" + strings.Repeat(s, termTag) }
	k, other := keys[0].ID, keys[1].ID
	ps := []infertrail.Posting{
		{Key: term("aa"), Seq: 0, DataKey: k}, {Key: term("bb"), Seq: 0, DataKey: k},
		{Key: term("dd"), Seq: 1, DataKey: other},
		{Key: term("aa"), Seq: 2, DataKey: k}, {Key: term("cc"), Seq: 2, DataKey: k},
	}
	if err := db.AddPostings(ctx, "indexer", 0, 3, ps); err != nil {
		t.Fatal(err)
	}
	// Record 2's row as that build wrote it: bb removed, cc added.
	delta := []byte{tagDelta, 1}
	delta, _ = postings.AppendTag(delta, term("bb"))
	delta, _ = postings.AppendTag(delta, term("cc"))
	for seq, b := range map[int64][]byte{0: packTerms([]string{term("aa"), term("bb")}), 2: delta} {
		if _, err := db.index.ExecContext(ctx, `UPDATE term_sources SET terms = ? WHERE data_key = ? AND seq = ?`, b, k[:], seq); err != nil {
			t.Fatal(err)
		}
	}
	eraseKey(t, db, 3, k)
	if err := db.writeIndex(ctx, "purge", nil); err != nil {
		t.Fatal(err)
	}
	if got, want := indexPostings(t, db), []infertrail.Posting{ps[2]}; !slices.Equal(got, want) {
		t.Errorf("after the erasure: %+v, want %+v", got, want)
	}
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
