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
// and whose term lists are whole, opens with the keys packed and the lists
// as deltas where shorter, its postings otherwise the same and the room
// they took given back; queries and an erasure find the packed keys.
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
	deltas := func() (n int) {
		t.Helper()
		if err := db.index.QueryRowContext(ctx, `SELECT count(*) FROM term_sources WHERE substr(terms, 1, 1) = ?`, []byte{tagDelta}).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if deltas() == 0 {
		t.Fatal("no term list stored as a delta")
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
	if blobs, d := count("blob"), deltas(); blobs != 0 || d != 0 {
		t.Fatalf("%d keys left packed, %d lists as deltas", blobs, d)
	}
	db.Close()

	db, err := Open(ctx, path, Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { db.Close() }()
	if got := indexPostings(t, db); !slices.Equal(got, want) {
		t.Errorf("postings after migrations 3 and 4: %d, want %d, or not the same", len(got), len(want))
	}
	if blobs, texts := count("blob"), count("text"); blobs != 300*21 || texts != 300*2 {
		t.Errorf("after migration 3: %d keys packed and %d text, want %d and %d", blobs, texts, 300*21, 300*2)
	}
	if deltas() == 0 {
		t.Error("after migration 3: no term list stored as a delta")
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
func TestTermDeltas(t *testing.T) {
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
	forms := map[int64]byte{}
	rows, err := db.index.QueryContext(ctx, `SELECT seq, terms FROM term_sources WHERE data_key = ? ORDER BY seq`, keys[0].ID[:])
	if err != nil {
		t.Fatal(err)
	}
	deltas, run := 0, 0
	for rows.Next() {
		var (
			seq   int64
			terms []byte
		)
		if err := rows.Scan(&seq, &terms); err != nil {
			t.Fatal(err)
		}
		forms[seq] = terms[0]
		if terms[0] == tagDelta {
			deltas++
			if run++; run > maxDeltas {
				t.Errorf("record %d: the %dth delta in a row", seq, run)
			}
		} else {
			run = 0
		}
	}
	rows.Close()
	if forms[0] != tagTerms || forms[2] != tagDelta || forms[20] == tagDelta || forms[22] == tagDelta || forms[30] != tagTerms || forms[32] != tagDelta {
		t.Errorf("forms of rows 0, 2, 20, 22, 30, 32: %x %x %x %x %x %x; want whole, delta, not a delta, whole (after a list of other keys), whole (all new), delta",
			forms[0], forms[2], forms[20], forms[22], forms[30], forms[32])
	}
	if deltas < 20 {
		t.Errorf("%d of %d rows are deltas", deltas, len(forms))
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
	whole := packTerms(tags[:11])
	delta, depth := packDelta(tags[:11], 0, tags[1:])
	if delta[0] != tagDelta || depth != 1 {
		t.Fatalf("packDelta: %x, depth %d", delta, depth)
	}
	l := newTermLists()
	if got, err := l.next(whole); err != nil || !slices.Equal(got, tags[:11]) {
		t.Fatalf("whole: %q, %v", got, err)
	}
	if got, err := l.next(delta); err != nil || !slices.Equal(got, tags[1:]) {
		t.Fatalf("delta: %q, %v", got, err)
	}
	for name, c := range map[string]struct{ before, delta []byte }{
		"no list before":       {nil, delta},
		"removes a key absent": {packTerms(tags[1:11]), delta},
		"adds a key present":   {packTerms(tags), delta},
		"cut short":            {whole, delta[:len(delta)-1]},
		"counts too many":      {whole, append([]byte{tagDelta, 9}, delta[2:]...)},
	} {
		l := newTermLists()
		if c.before != nil {
			if _, err := l.next(c.before); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := l.next(c.delta); !errors.Is(err, errDamagedTerms) {
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
		if seq%64 == 63 || seq%64 == 0 {
			// The first and last bit of each block, under the first key alone.
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
	db.Close()

	db, err := Open(ctx, path, Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { db.Close() }()
	if got := indexPostings(t, db); !slices.Equal(got, want) {
		t.Errorf("postings after migration 4: %d, want %d, or not the same", len(got), len(want))
	}
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
	if !slices.Equal(got, []int64{63, 0}) {
		t.Errorf("query after migration 4: %v, want [63 0] (the first or last of a block, and 0 mod 7)", got)
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
