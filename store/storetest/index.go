package storetest

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/infertrail/infertrail"
)

// indexTests are Run's subtests of cursors, the investigation index and
// findings. They check the contract in package infertrail and these
// clarifications of it:
//
//   - AdvanceCursor and AddPostings refuse, with an error wrapping
//     ErrInvalid, an empty cursor name, from < 0 and to <= from; AddPostings
//     refuses a posting with an empty key, a key longer than MaxIndexKey or
//     a negative Seq. Either writes nothing then.
//   - A posting of a record not in the log yet is stored, and finds the
//     record once it is appended.
//   - Query refuses a negative Limit or Before, and an empty key, with an
//     error wrapping ErrInvalid; From >= To (both set) selects nothing.
//   - AddFindings refuses a batch with a finding with a nil ID, no detector
//     or a negative record, with an error wrapping ErrInvalid naming the
//     field, and stores none of it. Of two findings with one ID in a batch,
//     the first is stored. Findings refuses a Seq below -1, a negative
//     Before or Limit; it reads every finding before calling fn, so fn may
//     call the store.
var indexTests = []struct {
	name string
	fn   func(t *testing.T, s infertrail.Store)
}{
	{"Cursors", testCursors},
	{"CursorsConcurrent", testCursorsConcurrent},
	{"Query", testQuery},
	{"QueryPaging", testQueryPaging},
	{"QueryTenants", testQueryTenants},
	{"QueryLate", testQueryLate},
	{"QueryKeysSparse", testQueryKeysSparse},
	{"PostingsConflict", testPostingsConflict},
	{"PostingsDuplicate", testPostingsDuplicate},
	{"PostingsErased", testPostingsErased},
	{"Findings", testFindings},
	{"FindingsQuery", testFindingsQuery},
	{"IndexClose", testIndexClose},
}

func testCursors(t *testing.T, s infertrail.Store) {
	ctx := t.Context()
	cursor := func(name string) int64 {
		t.Helper()
		n, err := s.Cursor(ctx, name)
		if err != nil {
			t.Fatalf("Cursor(%q): %v", name, err)
		}
		return n
	}
	if n := cursor("indexer"); n != 0 {
		t.Errorf("Cursor of a new name = %d, want 0", n)
	}
	if err := s.AdvanceCursor(ctx, "indexer", 0, 5); err != nil {
		t.Fatalf("AdvanceCursor(0, 5): %v", err)
	}
	if n := cursor("indexer"); n != 5 {
		t.Errorf("Cursor = %d after advancing to 5", n)
	}
	for _, from := range []int64{0, 4, 6} {
		if err := s.AdvanceCursor(ctx, "indexer", from, 9); !errors.Is(err, infertrail.ErrConflict) {
			t.Errorf("AdvanceCursor(%d, 9) of a cursor at 5: err = %v, want ErrConflict", from, err)
		}
	}
	if n := cursor("indexer"); n != 5 {
		t.Errorf("Cursor = %d after failed advances, want 5", n)
	}
	if err := s.AdvanceCursor(ctx, "indexer", 5, 9); err != nil {
		t.Fatalf("AdvanceCursor(5, 9): %v", err)
	}
	if err := s.AdvanceCursor(ctx, "siem/splunk", 5, 6); !errors.Is(err, infertrail.ErrConflict) {
		t.Errorf("AdvanceCursor(5, 6) of a cursor never advanced: err = %v, want ErrConflict", err)
	}
	if err := s.AdvanceCursor(ctx, "siem/splunk", 0, 1); err != nil {
		t.Fatalf("AdvanceCursor of a second cursor: %v", err)
	}
	if a, b := cursor("indexer"), cursor("siem/splunk"); a != 9 || b != 1 {
		t.Errorf("cursors = %d, %d; want 9, 1", a, b)
	}
	for _, c := range []struct {
		name     string
		from, to int64
	}{
		{"indexer", 9, 9},
		{"indexer", 9, 8},
		{"indexer", -1, 3},
		{"", 0, 1},
	} {
		if err := s.AdvanceCursor(ctx, c.name, c.from, c.to); !errors.Is(err, infertrail.ErrInvalid) {
			t.Errorf("AdvanceCursor(%q, %d, %d): err = %v, want ErrInvalid", c.name, c.from, c.to, err)
		}
		if err := s.AddPostings(ctx, c.name, c.from, c.to, nil); !errors.Is(err, infertrail.ErrInvalid) {
			t.Errorf("AddPostings(%q, %d, %d): err = %v, want ErrInvalid", c.name, c.from, c.to, err)
		}
	}
	if n := cursor("indexer"); n != 9 {
		t.Errorf("Cursor = %d after invalid advances, want 9", n)
	}
}

// testCursorsConcurrent has several goroutines race to advance one cursor
// at each step, through AdvanceCursor and AddPostings: exactly one wins.
func testCursorsConcurrent(t *testing.T, s infertrail.Store) {
	ctx := t.Context()
	const workers, steps = 6, 8
	for step := range int64(steps) {
		var (
			wg   sync.WaitGroup
			mu   sync.Mutex
			wins int
		)
		for w := range workers {
			wg.Go(func() {
				var err error
				if w%2 == 0 {
					err = s.AdvanceCursor(ctx, "race", step, step+1)
				} else {
					err = s.AddPostings(ctx, "race", step, step+1, []infertrail.Posting{{Key: fmt.Sprintf("race=%d", w), Seq: step}})
				}
				switch {
				case err == nil:
					mu.Lock()
					wins++
					mu.Unlock()
				case !errors.Is(err, infertrail.ErrConflict):
					t.Errorf("step %d, worker %d: err = %v, want nil or ErrConflict", step, w, err)
				}
			})
		}
		wg.Wait()
		if wins != 1 {
			t.Fatalf("step %d: %d of %d advances won, want 1", step, wins, workers)
		}
		if n, err := s.Cursor(ctx, "race"); err != nil || n != step+1 {
			t.Fatalf("Cursor after step %d = %d, %v; want %d", step, n, err, step+1)
		}
	}
}

// indexKeys returns the index keys the tests post for entry e: its actor,
// session and trace, "mod3=" its Seq modulo 3, and a term key in the form
// investigate.Terms makes (which a store may pack) of its Seq modulo 5.
func indexKeys(e *infertrail.Entry) []string {
	keys := []string{infertrail.IndexKey(infertrail.IndexActor, e.ActorID), fmt.Sprintf("mod3=%d", e.Seq%3), termMod5(e.Seq)}
	if e.SessionID != "" {
		keys = append(keys, infertrail.IndexKey(infertrail.IndexSession, e.SessionID))
	}
	if e.TraceID != "" {
		keys = append(keys, infertrail.IndexKey(infertrail.IndexTrace, e.TraceID))
	}
	return keys
}

// termMod5 is the term key of indexKeys for Seq seq.
func termMod5(seq int64) string { return fmt.Sprintf("term=%016x00000000", seq%5) }

// indexedEntries appends count entries of MakeEntry's sequence, posts
// their indexKeys with cursor "indexer", and returns them.
func indexedEntries(t *testing.T, s infertrail.Store, count int) []infertrail.Entry {
	t.Helper()
	entries, blobs := MakeBatch(0, count)
	AppendEntries(t, s, entries, blobs)
	var ps []infertrail.Posting
	for i := range entries {
		for _, k := range indexKeys(&entries[i]) {
			ps = append(ps, infertrail.Posting{Key: k, Seq: entries[i].Seq})
		}
	}
	// Two batches, as an indexer following the log posts them.
	half := len(ps) / 2
	if err := s.AddPostings(t.Context(), "indexer", 0, int64(count/2), ps[:half]); err != nil {
		t.Fatalf("AddPostings: %v", err)
	}
	if err := s.AddPostings(t.Context(), "indexer", int64(count/2), int64(count), ps[half:]); err != nil {
		t.Fatalf("AddPostings: %v", err)
	}
	return entries
}

// wantQuery returns the sequence numbers of the entries q selects, by the
// contract, newest first; keysOf gives each entry's index keys.
func wantQuery(entries []infertrail.Entry, keysOf func(*infertrail.Entry) []string, q infertrail.Query) []int64 {
	var out []int64
	for i := len(entries) - 1; i >= 0; i-- {
		e := &entries[i]
		keys := keysOf(e)
		switch {
		case q.Tenants != nil && !slices.Contains(q.Tenants, e.Tenant),
			len(q.Kinds) > 0 && !slices.Contains(q.Kinds, e.Kind),
			q.From != 0 && e.Time < q.From,
			q.To != 0 && e.Time >= q.To,
			q.Before != 0 && e.Seq >= q.Before,
			slices.ContainsFunc(q.Keys, func(k string) bool { return !slices.Contains(keys, k) }):
			continue
		}
		out = append(out, e.Seq)
	}
	limit := q.Limit
	if limit == 0 {
		limit = 100
	}
	return out[:min(len(out), limit)]
}

// query runs q and returns the sequence numbers of its entries, checking
// each against want.
func query(t *testing.T, s infertrail.Index, q infertrail.Query, want []infertrail.Entry) []int64 {
	t.Helper()
	var got []int64
	err := s.Query(t.Context(), q, func(e *infertrail.Entry) error {
		if e.Seq >= 0 && e.Seq < int64(len(want)) {
			if d := DiffEntry(&want[e.Seq], e); d != "" {
				t.Errorf("Query(%+v): %s", q, d)
			}
		}
		got = append(got, e.Seq)
		return nil
	})
	if err != nil {
		t.Fatalf("Query(%+v): %v", q, err)
	}
	return got
}

func testQuery(t *testing.T, s infertrail.Store) {
	entries := indexedEntries(t, s, 90)
	e := func(n int) *infertrail.Entry { return &entries[n] }
	actor1 := infertrail.IndexKey(infertrail.IndexActor, "agent:bot-1")
	actor2 := infertrail.IndexKey(infertrail.IndexActor, "agent:bot-2")
	sess := infertrail.IndexKey(infertrail.IndexSession, e(14).SessionID)
	trace := infertrail.IndexKey(infertrail.IndexTrace, e(40).TraceID)
	acme, umlaut := "acme-corp", "tenant-ü✓"
	for _, q := range []infertrail.Query{
		{},
		{Limit: 7},
		{Limit: 200},
		{Limit: infertrail.MaxQueryLimit + 1},
		{Before: 50},
		{Before: 1},
		{Before: 1000},
		{Tenants: []string{acme}},
		{Tenants: []string{acme, umlaut, acme}},
		{Tenants: []string{}},
		{Tenants: []string{"nobody"}},
		{Tenants: []string{infertrail.DefaultTenant, "nobody"}, Limit: 5},
		{Kinds: []infertrail.Kind{infertrail.KindToolCall}},
		{Kinds: []infertrail.Kind{infertrail.KindToolCall, infertrail.KindApproval}},
		{From: e(10).Time},
		{To: e(20).Time},
		{From: e(10).Time, To: e(20).Time},
		{From: e(10).Time + 1, To: e(20).Time + 1},
		{From: e(20).Time, To: e(10).Time},
		{From: e(20).Time, To: e(20).Time},
		{Tenants: []string{acme}, From: e(10).Time, To: e(40).Time},
		{Tenants: []string{acme, umlaut}, From: e(10).Time, To: e(40).Time, Limit: 6},
		{Tenants: []string{acme}, Kinds: []infertrail.Kind{infertrail.KindApproval}},
		{Tenants: []string{acme}, Kinds: []infertrail.Kind{infertrail.KindApproval}, Before: 50, From: e(2).Time, Limit: 2},
		{Keys: []string{actor1}},
		{Keys: []string{sess}},
		{Keys: []string{trace}},
		{Keys: []string{"actor=nobody"}},
		{Keys: []string{actor1, "mod3=2"}},
		{Keys: []string{"mod3=2", actor1, actor1}},
		{Keys: []string{actor1, actor2}},
		{Keys: []string{actor1, sess}},
		{Keys: []string{actor1, "actor=nobody"}},
		{Keys: []string{"mod3=0"}, Tenants: []string{acme}},
		{Keys: []string{"mod3=0"}, Tenants: []string{}},
		{Keys: []string{"mod3=0"}, Kinds: []infertrail.Kind{infertrail.KindInference, infertrail.KindRetrieval}},
		{Keys: []string{"mod3=1", actor2}, Tenants: []string{acme, umlaut}, From: e(5).Time, To: e(80).Time, Before: 70, Limit: 4},
		{Keys: []string{actor2}, Before: 30, Limit: 3},
		{Keys: []string{termMod5(2)}},
		{Keys: []string{termMod5(3), actor1}},
		{Keys: []string{"mod3=1", termMod5(4)}, Before: 60, Limit: 3},
		{Keys: []string{termMod5(0), termMod5(1)}},
	} {
		got := query(t, s, q, entries)
		if want := wantQuery(entries, indexKeys, q); !slices.Equal(got, want) {
			t.Errorf("Query(%+v) = %v, want %v", q, got, want)
		}
	}
	for _, q := range []infertrail.Query{
		{Limit: -1},
		{Before: -1},
		{Keys: []string{""}},
	} {
		if err := s.Query(t.Context(), q, func(*infertrail.Entry) error { return nil }); !errors.Is(err, infertrail.ErrInvalid) {
			t.Errorf("Query(%+v): err = %v, want ErrInvalid", q, err)
		}
	}
	stop := errors.New("stop")
	calls := 0
	err := s.Query(t.Context(), infertrail.Query{Keys: []string{actor1}}, func(*infertrail.Entry) error {
		calls++
		return stop
	})
	if err != stop || calls != 1 {
		t.Errorf("Query whose fn fails: %d calls, err = %v; want 1 call and fn's error, as it is", calls, err)
	}
}

// testQueryPaging pages through queries with Before: every entry comes
// exactly once, in order.
func testQueryPaging(t *testing.T, s infertrail.Store) {
	entries := indexedEntries(t, s, 70)
	for _, q := range []infertrail.Query{
		{},
		{Tenants: []string{"acme-corp"}},
		{Tenants: []string{"acme-corp", infertrail.DefaultTenant}, From: entries[3].Time},
		{Keys: []string{"mod3=1"}},
		{Keys: []string{"mod3=1", infertrail.IndexKey(infertrail.IndexActor, "agent:bot-2")}},
	} {
		full := q
		full.Limit = 1000
		want := wantQuery(entries, indexKeys, full)
		var got []int64
		q.Limit = 4
		for page := 0; ; page++ {
			seqs := query(t, s, q, entries)
			got = append(got, seqs...)
			if len(seqs) < q.Limit {
				break
			}
			if page > len(entries) {
				t.Fatalf("Query(%+v): paging does not end", q)
			}
			q.Before = seqs[len(seqs)-1]
		}
		if !slices.Equal(got, want) {
			t.Errorf("pages of Query(%+v) = %v, want %v", full, got, want)
		}
	}
}

// testQueryTenants queries the tenants and time ranges of a log whose
// tenants are skewed (BenchEntries), where a store may plan each tenant's
// part of a query its own way.
func testQueryTenants(t *testing.T, s infertrail.Store) {
	const n = 2000
	entries, ps := BenchEntries(0, n)
	keys := appendIndexed(t, s, entries, ps)
	at := func(i int64) int64 { return BenchTime(i) }
	policy := []infertrail.Kind{infertrail.KindPolicyDecision}
	for _, q := range []infertrail.Query{
		{Tenants: []string{"t0"}},
		{Tenants: []string{"t4"}},
		{Tenants: []string{"t4", "t0", "t3"}, Limit: 30},
		{Tenants: []string{"t1"}, Kinds: policy},
		{Tenants: []string{"t0", "t3"}, From: at(100), To: at(300)},
		{Tenants: []string{"t0", "t3"}, From: at(1990)},
		{Tenants: []string{"t0", "t3"}, To: at(1000), Limit: 500},
		{Tenants: []string{"t1", "t2", "t3", "t4"}, From: at(500), To: at(1700), Before: 1200},
		{From: at(100), To: at(300)},
		{From: at(1500), Kinds: policy},
		{To: at(50)},
		{From: at(600), To: at(1400), Limit: 1000},
		{Tenants: []string{"t0", "t4"}, Keys: []string{infertrail.IndexKey(infertrail.IndexModel, "gpt-1")}, From: at(10)},
	} {
		want := wantQuery(entries, func(e *infertrail.Entry) []string { return keys[e.Seq] }, q)
		if got := query(t, s, q, entries); !slices.Equal(got, want) {
			t.Errorf("Query(%+v) = %v, want %v", q, got, want)
		}
	}
}

// appendIndexed appends entries, adds their postings ps, and returns
// each entry's index keys by sequence number.
func appendIndexed(t *testing.T, s infertrail.Store, entries []infertrail.Entry, ps []infertrail.Posting) map[int64][]string {
	t.Helper()
	AppendEntries(t, s, entries, nil)
	if err := s.AddPostings(t.Context(), "indexer", 0, int64(len(entries)), ps); err != nil {
		t.Fatal(err)
	}
	keys := map[int64][]string{}
	for _, p := range ps {
		keys[p.Seq] = append(keys[p.Seq], p.Key)
	}
	return keys
}

// testQueryLate: records whose observed time is far from their neighbours'
// (an old record appended late, a clock ahead) are found by time bounds
// like any other, across many blocks of the time zone map.
func testQueryLate(t *testing.T, s infertrail.Store) {
	const n = 3*(1<<infertrail.TimeBlockBits) + 500
	entries, ps := BenchEntries(0, n)
	late := []int64{n - 1, n - 7, 2*(1<<infertrail.TimeBlockBits) + 3} // appended late: older than every other
	ahead := []int64{5, 1<<infertrail.TimeBlockBits + 9}               // from a clock ahead: newer than every other
	for _, i := range late {
		entries[i].Time = BenchTime(0) - int64(i)
	}
	for _, i := range ahead {
		entries[i].Time = BenchTime(n) + int64(i)
	}
	keys := appendIndexed(t, s, entries, ps)
	at := BenchTime
	for _, q := range []infertrail.Query{
		{To: at(0)},
		{To: at(1)},
		{Tenants: []string{"t0", "t1", "t2", "t3", "t4"}, To: at(0)},
		{Tenants: []string{"t2"}, To: at(100)},
		{From: at(n)},
		{Tenants: []string{"t0", "t4"}, From: at(n - 1)},
		{From: at(100), To: at(200)},
		{Tenants: []string{"t1"}, To: at(n / 2), Limit: 50},
		{Keys: []string{infertrail.IndexKey(infertrail.IndexModel, "gpt-1")}, To: at(3)},
		{Keys: []string{infertrail.IndexKey(infertrail.IndexModel, "gpt-1")}, From: at(n)},
	} {
		want := wantQuery(entries, func(e *infertrail.Entry) []string { return keys[e.Seq] }, q)
		if got := query(t, s, q, entries); !slices.Equal(got, want) {
			t.Errorf("Query(%+v) = %v, want %v", q, got, want)
		}
	}
}

// testQueryKeysSparse: queries by keys that few records carry together,
// spread over a log of many records, or whose records the other filters
// mostly drop, answer every record, in order and without repeats, at
// every limit and cursor (a store may walk its postings a page at a time).
func testQueryKeysSparse(t *testing.T, s infertrail.Store) {
	const n = 3000
	entries, _ := BenchEntries(0, n)
	var ps []infertrail.Posting
	for i := range int64(n) {
		for _, k := range []string{fmt.Sprintf("m7=%d", i%7), fmt.Sprintf("m11=%d", i%11), termMod5(i)} {
			ps = append(ps, infertrail.Posting{Key: k, Seq: i})
		}
		if i%997 == 5 || i == 64 || i == 63 {
			ps = append(ps, infertrail.Posting{Key: "few=1", Seq: i})
		}
	}
	keys := appendIndexed(t, s, entries, ps)
	keysOf := func(e *infertrail.Entry) []string { return keys[e.Seq] }
	at := BenchTime
	for _, q := range []infertrail.Query{
		{Keys: []string{"m7=3", "m11=5"}},
		{Keys: []string{"m7=3", "m11=5"}, Limit: 1000},
		{Keys: []string{"m7=3", "m11=5", termMod5(2)}, Limit: 1000},
		{Keys: []string{"m7=3", "m11=5"}, Before: 2000, Limit: 7},
		{Keys: []string{"m7=3", "m11=5"}, From: at(700), To: at(2200), Limit: 1000},
		{Keys: []string{"m7=3"}, Tenants: []string{"t3"}, Limit: 1000},
		{Keys: []string{"m7=3"}, Tenants: []string{"t4", "t3"}, Kinds: []infertrail.Kind{infertrail.KindToolCall}, Limit: 1000},
		{Keys: []string{"m11=0"}, Before: 1000, Limit: 1000},
		{Keys: []string{"m11=0"}, Before: 65, Limit: 1000},
		{Keys: []string{"m11=0"}, Before: 64, Limit: 3},
		{Keys: []string{"few=1"}, Limit: 1000},
		{Keys: []string{"few=1"}, Before: 64},
		{Keys: []string{"few=1", "m7=0"}},
		{Keys: []string{"few=1", "m7=1"}},
	} {
		want := wantQuery(entries, keysOf, q)
		if got := query(t, s, q, entries); !slices.Equal(got, want) {
			t.Errorf("Query(%+v) = %v, want %v", q, got, want)
		}
	}
	// Paging through a sparse intersection, a few at a time.
	q := infertrail.Query{Keys: []string{"m11=5", "m7=3"}, Limit: 3}
	full := q
	full.Limit = 1000
	want := wantQuery(entries, keysOf, full)
	var got []int64
	for len(got) <= len(want) {
		seqs := query(t, s, q, entries)
		got = append(got, seqs...)
		if len(seqs) < q.Limit {
			break
		}
		q.Before = seqs[len(seqs)-1]
	}
	if !slices.Equal(got, want) {
		t.Errorf("pages of Query(%+v) = %v, want %v", full, got, want)
	}
}

func testPostingsConflict(t *testing.T, s infertrail.Store) {
	ctx := t.Context()
	entries, blobs := MakeBatch(0, 10)
	AppendEntries(t, s, entries, blobs)
	ps := []infertrail.Posting{{Key: "k=a", Seq: 1}, {Key: "k=a", Seq: 3}}
	if err := s.AddPostings(ctx, "indexer", 0, 5, ps); err != nil {
		t.Fatal(err)
	}
	lost := []infertrail.Posting{{Key: "k=a", Seq: 7}, {Key: "k=b", Seq: 7}}
	for _, from := range []int64{0, 4} {
		if err := s.AddPostings(ctx, "indexer", from, 10, lost); !errors.Is(err, infertrail.ErrConflict) {
			t.Errorf("AddPostings from %d of a cursor at 5: err = %v, want ErrConflict", from, err)
		}
	}
	if n, err := s.Cursor(ctx, "indexer"); err != nil || n != 5 {
		t.Errorf("Cursor = %d, %v after conflicts; want 5", n, err)
	}
	if got := query(t, s, infertrail.Query{Keys: []string{"k=a"}}, entries); !slices.Equal(got, []int64{3, 1}) {
		t.Errorf("Query(k=a) = %v after a conflicting AddPostings, want [3 1]", got)
	}
	if got := query(t, s, infertrail.Query{Keys: []string{"k=b"}}, entries); len(got) != 0 {
		t.Errorf("Query(k=b) = %v after a conflicting AddPostings, want none", got)
	}
	for _, bad := range [][]infertrail.Posting{
		{{Key: "", Seq: 1}},
		{{Key: "k=a", Seq: -1}},
		{{Key: "k=" + strings.Repeat("x", infertrail.MaxIndexKey), Seq: 1}},
	} {
		if err := s.AddPostings(ctx, "indexer", 5, 10, bad); !errors.Is(err, infertrail.ErrInvalid) {
			t.Errorf("AddPostings(%+v): err = %v, want ErrInvalid", bad, err)
		}
	}
	if n, _ := s.Cursor(ctx, "indexer"); n != 5 {
		t.Errorf("Cursor = %d after invalid postings, want 5", n)
	}
}

func testPostingsDuplicate(t *testing.T, s infertrail.Store) {
	ctx := t.Context()
	entries, blobs := MakeBatch(0, 10)
	AppendEntries(t, s, entries, blobs)
	ps := []infertrail.Posting{{Key: "k=a", Seq: 2}, {Key: "k=a", Seq: 2}, {Key: "k=a", Seq: 4}}
	if err := s.AddPostings(ctx, "indexer", 0, 5, ps); err != nil {
		t.Fatal(err)
	}
	// Re-indexing, by another cursor: postings already stored are skipped.
	if err := s.AddPostings(ctx, "reindex", 0, 10, append(ps, infertrail.Posting{Key: "k=a", Seq: 9})); err != nil {
		t.Fatalf("AddPostings of stored postings: %v", err)
	}
	if got := query(t, s, infertrail.Query{Keys: []string{"k=a"}}, entries); !slices.Equal(got, []int64{9, 4, 2}) {
		t.Errorf("Query(k=a) = %v, want [9 4 2]", got)
	}
	// A posting of a record not in the log yet finds nothing, until the
	// record is appended.
	if err := s.AddPostings(ctx, "indexer", 5, 11, []infertrail.Posting{{Key: "k=a", Seq: 10}}); err != nil {
		t.Fatal(err)
	}
	if got := query(t, s, infertrail.Query{Keys: []string{"k=a"}, Limit: 1}, entries); !slices.Equal(got, []int64{9}) {
		t.Errorf("Query(k=a) = %v with a posting past the log, want [9]", got)
	}
	more, mb := MakeBatch(10, 1)
	AppendEntries(t, s, more, mb)
	if got := query(t, s, infertrail.Query{Keys: []string{"k=a"}}, append(entries, more...)); !slices.Equal(got, []int64{10, 9, 4, 2}) {
		t.Errorf("Query(k=a) = %v once the posted record is appended, want [10 9 4 2]", got)
	}
}

// testPostingsErased checks that erasing a data key deletes the postings
// derived from its content, and that postings of an erased key are
// skipped.
func testPostingsErased(t *testing.T, s infertrail.Store) {
	ctx := t.Context()
	entries, _, keys := encryptedEntries(t, s, 30)
	// The entries whose content each key encrypts.
	byKey := map[infertrail.KeyID][]int64{}
	for _, e := range entries {
		for _, r := range e.Content {
			if !r.Key.IsZero() && !slices.Contains(byKey[r.Key], e.Seq) {
				byKey[r.Key] = append(byKey[r.Key], e.Seq)
			}
		}
	}
	var victim, other infertrail.KeyID
	for id := range keys {
		if victim.IsZero() {
			victim = id
		} else if other.IsZero() {
			other = id
		}
	}
	if other.IsZero() || len(byKey[victim]) == 0 || len(byKey[other]) == 0 {
		t.Fatalf("test data has %d keys", len(keys))
	}
	// Term keys in the form investigate.Terms makes (24 hexadecimal
	// digits, which a store may pack) and in others.
	const shared = "term=00112233445566778899aabb"
	termOf := func(k infertrail.KeyID) string { return fmt.Sprintf("term=%x", k[4:]) }
	var ps []infertrail.Posting
	for _, k := range []infertrail.KeyID{victim, other} {
		for _, seq := range byKey[k] {
			ps = append(ps,
				infertrail.Posting{Key: shared, Seq: seq, DataKey: k},
				infertrail.Posting{Key: "term=shared", Seq: seq, DataKey: k},
				infertrail.Posting{Key: termOf(k), Seq: seq, DataKey: k},
				infertrail.Posting{Key: "leaf=x", Seq: seq})
		}
	}
	if err := s.AddPostings(ctx, "indexer", 0, int64(len(entries)), ps); err != nil {
		t.Fatal(err)
	}
	count := func(key string) int {
		t.Helper()
		return len(query(t, s, infertrail.Query{Keys: []string{key}}, entries))
	}
	vKey, oKey := termOf(victim), termOf(other)
	nv, no := len(byKey[victim]), len(byKey[other])
	if count(vKey) != nv || count(oKey) != no || count(shared) != nv+no || count("term=shared") != nv+no {
		t.Fatalf("before erasure: %d, %d, %d, %d postings; want %d, %d, %d, %d", count(vKey), count(oKey), count(shared), count("term=shared"), nv, no, nv+no, nv+no)
	}

	tx, err := s.BeginAppend(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	rec, _ := MakeEntry(1000)
	rec.Content = nil
	if err := NewSequencer(tx).Append(ctx, []infertrail.Entry{rec}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Erase(ctx, []infertrail.KeyID{victim}, rec.Seq); err != nil {
		t.Fatalf("Erase: %v", err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if n := count(vKey); n != 0 {
		t.Errorf("Query by a term of the erased key found %d entries, want none", n)
	}
	for _, k := range []string{shared, "term=shared"} {
		if n := count(k); n != no {
			t.Errorf("Query by %s, a term of both keys, found %d entries after erasing one, want %d", k, n, no)
		}
	}
	if count(oKey) != no || count("leaf=x") != nv+no {
		t.Errorf("erasure removed postings of another key or of no key: %d, %d; want %d, %d", count(oKey), count("leaf=x"), no, nv+no)
	}
	// Postings of the erased key are skipped; the others in the same call
	// are stored.
	seq := byKey[victim][0]
	late := []infertrail.Posting{
		{Key: "term=late", Seq: seq, DataKey: victim},
		{Key: "term=ffeeddccbbaa998877665544", Seq: seq, DataKey: other},
		{Key: "leaf=late", Seq: seq},
	}
	if err := s.AddPostings(ctx, "indexer", int64(len(entries)), int64(len(entries))+1, late); err != nil {
		t.Fatal(err)
	}
	if count("term=late") != 0 || count("term=ffeeddccbbaa998877665544") != 1 || count("leaf=late") != 1 {
		t.Errorf("after AddPostings with an erased key: %d, %d, %d entries; want 0, 1, 1", count("term=late"), count("term=ffeeddccbbaa998877665544"), count("leaf=late"))
	}
}

// testFinding returns the nth test finding.
func testFinding(n int, detector, tenant string, records ...int64) infertrail.Finding {
	var id infertrail.UUID
	id[0], id[1], id[15] = byte(n>>8), byte(n), 0xf1
	return infertrail.Finding{
		ID:       id,
		Detector: detector,
		Severity: []infertrail.Severity{infertrail.SeverityLow, infertrail.SeverityMedium, infertrail.SeverityHigh}[n%3],
		Tenant:   tenant,
		Subject:  fmt.Sprintf("trace=t%d", n%4),
		Records:  records,
		Summary:  fmt.Sprintf("finding %d", n),
	}
}

func sameFinding(a, b infertrail.Finding) bool {
	return a.ID == b.ID && a.Detector == b.Detector && a.Severity == b.Severity && a.Tenant == b.Tenant &&
		a.Subject == b.Subject && slices.Equal(a.Records, b.Records) && a.Summary == b.Summary && a.Time == b.Time && a.N == b.N
}

func findings(t *testing.T, s infertrail.FindingStore, q infertrail.FindingQuery) []infertrail.Finding {
	t.Helper()
	var out []infertrail.Finding
	if err := s.Findings(t.Context(), q, func(f *infertrail.Finding) error {
		out = append(out, *f)
		return nil
	}); err != nil {
		t.Fatalf("Findings(%+v): %v", q, err)
	}
	return out
}

func testFindings(t *testing.T, s infertrail.Store) {
	ctx := t.Context()
	entries, blobs := MakeBatch(0, 12)
	AppendEntries(t, s, entries, blobs)
	fs := []infertrail.Finding{
		testFinding(1, "hallucinated_tool_call", "acme", 2, 5),
		testFinding(2, "prompt_injection", "acme", 5),
		testFinding(3, "hallucinated_tool_call", "beta", 0, 7, 11),
	}
	fs[1].Time = 12345
	if err := s.AddFindings(ctx, fs); err != nil {
		t.Fatalf("AddFindings: %v", err)
	}
	if !(fs[0].N > 0 && fs[1].N > fs[0].N && fs[2].N > fs[1].N) {
		t.Errorf("N = %d, %d, %d; want increasing from above 0", fs[0].N, fs[1].N, fs[2].N)
	}
	if fs[0].Time == 0 || fs[2].Time == 0 || fs[1].Time != 12345 {
		t.Errorf("Time = %d, %d, %d; want set, 12345, set", fs[0].Time, fs[1].Time, fs[2].Time)
	}
	// A finding stored already is skipped, even in the batch that stores
	// it first; N and Time of what is skipped stay as they were.
	dup := testFinding(1, "other", "acme", 3)
	more := []infertrail.Finding{dup, testFinding(4, "prompt_injection", "beta", 7), testFinding(4, "prompt_injection", "beta", 8)}
	if err := s.AddFindings(ctx, more); err != nil {
		t.Fatalf("AddFindings with stored ids: %v", err)
	}
	if more[0].N != 0 || more[0].Time != 0 || more[2].N != 0 || more[1].N <= fs[2].N {
		t.Errorf("N = %d, %d, %d; want 0, more than %d, 0", more[0].N, more[1].N, more[2].N, fs[2].N)
	}
	want := []infertrail.Finding{more[1], fs[2], fs[1], fs[0]}
	got := findings(t, s, infertrail.FindingQuery{Seq: -1})
	if len(got) != len(want) {
		t.Fatalf("Findings = %d findings, want %d", len(got), len(want))
	}
	for i := range want {
		if !sameFinding(got[i], want[i]) {
			t.Errorf("finding %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	if err := s.AddFindings(ctx, nil); err != nil {
		t.Errorf("AddFindings(nil): %v", err)
	}
	for _, bad := range []infertrail.Finding{
		{Detector: "x", Records: []int64{1}},
		testFinding(9, "", "acme", 1),
		testFinding(10, "x", "acme", 1, -2),
	} {
		err := s.AddFindings(ctx, []infertrail.Finding{testFinding(11, "ok", "acme", 1), bad})
		if !errors.Is(err, infertrail.ErrInvalid) {
			t.Errorf("AddFindings(%+v): err = %v, want ErrInvalid", bad, err)
		}
	}
	if n := len(findings(t, s, infertrail.FindingQuery{Seq: -1})); n != 4 {
		t.Errorf("%d findings after invalid AddFindings, want 4 (nothing of a failed batch is stored)", n)
	}

	// Each stored finding posts finding=<detector> for its records.
	for _, c := range []struct {
		detector string
		want     []int64
	}{
		{"hallucinated_tool_call", []int64{11, 7, 5, 2, 0}},
		{"prompt_injection", []int64{7, 5}},
		{"other", nil},
	} {
		q := infertrail.Query{Keys: []string{infertrail.IndexKey(infertrail.IndexFinding, c.detector)}}
		if got := query(t, s, q, entries); !slices.Equal(got, c.want) {
			t.Errorf("Query(%+v) = %v, want %v", q, got, c.want)
		}
	}
}

func testFindingsQuery(t *testing.T, s infertrail.Store) {
	ctx := t.Context()
	var all []infertrail.Finding
	for n := range 30 {
		f := testFinding(n+1, []string{"a", "b", "c"}[n%3], []string{"acme", "beta"}[n%2], int64(n%5), int64(n%5+10))
		all = append(all, f)
	}
	// One batch, then one at a time.
	if err := s.AddFindings(ctx, all[:10]); err != nil {
		t.Fatal(err)
	}
	for i := 10; i < len(all); i++ {
		if err := s.AddFindings(ctx, all[i:i+1]); err != nil {
			t.Fatal(err)
		}
	}
	wantOf := func(q infertrail.FindingQuery) []int64 {
		var out []int64
		for i := len(all) - 1; i >= 0; i-- {
			f := &all[i]
			switch {
			case q.Tenants != nil && !slices.Contains(q.Tenants, f.Tenant),
				len(q.Detectors) > 0 && !slices.Contains(q.Detectors, f.Detector),
				q.Subject != "" && f.Subject != q.Subject,
				q.Seq != -1 && !slices.Contains(f.Records, q.Seq),
				q.Before != 0 && f.N >= q.Before:
				continue
			}
			out = append(out, f.N)
		}
		limit := cmp.Or(q.Limit, 100)
		return out[:min(len(out), limit)]
	}
	mid := all[15].N
	for _, q := range []infertrail.FindingQuery{
		{Seq: -1},
		{},
		{Seq: 3},
		{Seq: 13},
		{Seq: 99},
		{Seq: -1, Limit: 4},
		{Seq: -1, Before: mid},
		{Seq: -1, Before: 1},
		{Seq: -1, Tenants: []string{"beta"}},
		{Seq: -1, Tenants: []string{"beta", "acme"}},
		{Seq: -1, Tenants: []string{}},
		{Seq: -1, Detectors: []string{"a", "c"}},
		{Seq: -1, Subject: "trace=t2"},
		{Seq: 12, Tenants: []string{"acme"}, Detectors: []string{"a", "b"}, Before: mid, Limit: 2},
		{Seq: -1, Tenants: []string{"acme"}, Detectors: []string{"c"}, Subject: "trace=t3"},
	} {
		var got []int64
		for _, f := range findings(t, s, q) {
			got = append(got, f.N)
		}
		if want := wantOf(q); !slices.Equal(got, want) {
			t.Errorf("Findings(%+v) = %v, want %v", q, got, want)
		}
	}
	// Paging with Before gives every finding once.
	var paged []int64
	q := infertrail.FindingQuery{Seq: -1, Limit: 7}
	for {
		page := findings(t, s, q)
		for _, f := range page {
			paged = append(paged, f.N)
		}
		if len(page) < q.Limit {
			break
		}
		q.Before = page[len(page)-1].N
	}
	if want := wantOf(infertrail.FindingQuery{Seq: -1}); !slices.Equal(paged, want) {
		t.Errorf("paged findings = %v, want %v", paged, want)
	}
	for _, bad := range []infertrail.FindingQuery{{Seq: -1, Limit: -1}, {Seq: -2}, {Seq: -1, Before: -1}} {
		if err := s.Findings(ctx, bad, func(*infertrail.Finding) error { return nil }); !errors.Is(err, infertrail.ErrInvalid) {
			t.Errorf("Findings(%+v): err = %v, want ErrInvalid", bad, err)
		}
	}
	stop := errors.New("stop")
	if err := s.Findings(ctx, infertrail.FindingQuery{Seq: -1}, func(*infertrail.Finding) error { return stop }); !errors.Is(err, stop) {
		t.Errorf("Findings returned %v, want fn's error", err)
	}
	// fn may call the store.
	err := s.Findings(ctx, infertrail.FindingQuery{Seq: -1, Limit: 3}, func(f *infertrail.Finding) error {
		return s.Findings(ctx, infertrail.FindingQuery{Seq: -1, Before: f.N, Limit: 1}, func(*infertrail.Finding) error { return nil })
	})
	if err != nil {
		t.Errorf("Findings whose fn lists findings: %v", err)
	}
}

// testIndexClose checks that the index's methods fail after Close.
func testIndexClose(t *testing.T, s infertrail.Store) {
	ctx := t.Context()
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := s.Cursor(ctx, "indexer"); err == nil {
		t.Errorf("Cursor after Close succeeded")
	}
	if err := s.AdvanceCursor(ctx, "indexer", 0, 1); err == nil {
		t.Errorf("AdvanceCursor after Close succeeded")
	}
	if err := s.AddPostings(ctx, "indexer", 0, 1, []infertrail.Posting{{Key: "k=v", Seq: 0}}); err == nil {
		t.Errorf("AddPostings after Close succeeded")
	}
	if err := s.Query(ctx, infertrail.Query{Keys: []string{"k=v"}}, func(*infertrail.Entry) error { return nil }); err == nil {
		t.Errorf("Query after Close succeeded")
	}
	if err := s.Query(ctx, infertrail.Query{}, func(*infertrail.Entry) error { return nil }); err == nil {
		t.Errorf("Query after Close succeeded")
	}
	if err := s.AddFindings(ctx, []infertrail.Finding{testFinding(1, "d", "acme", 1)}); err == nil {
		t.Errorf("AddFindings after Close succeeded")
	}
	if err := s.Findings(ctx, infertrail.FindingQuery{Seq: -1}, func(*infertrail.Finding) error { return nil }); err == nil {
		t.Errorf("Findings after Close succeeded")
	}
}

// BenchTime is the observed time of record i of BenchEntries' log: records
// run 100 ms apart (a day holds 864,000), with up to 500 ms of jitter.
func BenchTime(i int64) int64 {
	return 1_780_000_000_000_000_000 + i*int64(100*time.Millisecond) + (i*7919)%int64(500*time.Millisecond)
}

// BenchEntries returns records start to end-1 of a synthetic log of agent
// traffic, without content, for query benchmarks, and the postings an
// indexer would make of them: a trace, a session, an actor, and a model or
// a tool each. Tenants are skewed: t0 has 60% of the records, t1 25%, t2
// 14%, t3 0.9%, t4 0.1%, and "rare" one in 100,000. So are kinds: 60%
// inference, 30% tool calls, 10% policy decisions. Traces hold 20
// consecutive records, but for trace "big", which holds one record in
// 5,000 (200 of a million). There are 50 actors, 3 models and 20 tools.
// Leaves are JSON of about 900 bytes. The entries' Seq is their number.
func BenchEntries(start, end int64) ([]infertrail.Entry, []infertrail.Posting) {
	var entries []infertrail.Entry
	var ps []infertrail.Posting
	for i := start; i < end; i++ {
		e := infertrail.Entry{Seq: i, ID: infertrail.NewUUID(), Kind: infertrail.KindInference}
		switch m := i % 1000; {
		case i%100_000 == 7:
			e.Tenant = "rare"
		case m < 600:
			e.Tenant = "t0"
		case m < 850:
			e.Tenant = "t1"
		case m < 990:
			e.Tenant = "t2"
		case m < 999:
			e.Tenant = "t3"
		default:
			e.Tenant = "t4"
		}
		tool, model := "", fmt.Sprintf("gpt-%d", i%3)
		switch i % 10 {
		case 6, 7, 8:
			e.Kind, tool, model = infertrail.KindToolCall, fmt.Sprintf("tool-%d", i%20), ""
		case 9:
			e.Kind, model = infertrail.KindPolicyDecision, ""
		}
		e.Time = BenchTime(i)
		e.Received = e.Time + 1000
		e.SessionID = fmt.Sprintf("sess-%d", i/100)
		e.TraceID = fmt.Sprint(i / 20)
		if i%5000 == 3 {
			e.TraceID = "big"
		}
		e.ActorID = fmt.Sprintf("agent:a%d", i%50)
		e.MAC[0], e.MAC[1] = byte(i), byte(i>>8)
		e.Leaf = fmt.Appendf(nil, `{"actor":{"id":"%s","type":"agent"},"attributes":{"gen_ai.operation.name":"chat",`+
			`"gen_ai.request.model":"%s","gen_ai.tool.name":"%s","gen_ai.usage.input_tokens":%d,"gen_ai.usage.output_tokens":%d},`+
			`"commitments":{"gen_ai.input.messages":"sha256:%064x","gen_ai.output.messages":"sha256:%064x"},`+
			`"id":"%s","kind":"%s","received_time":"%s","schema_version":1,"seq":%d,"session_id":"%s","source":"ingest",`+
			`"span_id":"%016x","tenant":"%s","time":"%s","trace_id":"%s"}`,
			e.ActorID, model, tool, i%4000, i%700, i*31, i*37, e.ID, e.Kind, time.Unix(0, e.Received).UTC().Format(time.RFC3339Nano),
			i, e.SessionID, i*13, e.Tenant, time.Unix(0, e.Time).UTC().Format(time.RFC3339Nano), e.TraceID)
		entries = append(entries, e)
		post := func(field, value string) {
			ps = append(ps, infertrail.Posting{Key: infertrail.IndexKey(field, value), Seq: i})
		}
		post(infertrail.IndexTrace, e.TraceID)
		post(infertrail.IndexSession, e.SessionID)
		post(infertrail.IndexActor, e.ActorID)
		if model != "" {
			post(infertrail.IndexModel, model)
		}
		if tool != "" {
			post(infertrail.IndexTool, tool)
		}
	}
	return entries, ps
}

// BuildQueryLog appends records from to end-1 of BenchEntries' log to s,
// whose size must be from, in batches of 10,000, and posts their postings
// with the cursor "bench".
func BuildQueryLog(t testing.TB, s infertrail.Store, from, end int64) {
	ctx := t.Context()
	const batch = 10_000
	for start := from; start < end; start += batch {
		entries, ps := BenchEntries(start, min(start+batch, end))
		AppendEntries(t, s, entries, nil)
		if entries[0].Seq != start {
			t.Fatalf("BuildQueryLog: a log of size %d, want %d", entries[0].Seq, start)
		}
		if err := s.AddPostings(ctx, "bench", start, start+int64(len(entries)), ps); err != nil {
			t.Fatal(err)
		}
	}
}

// BenchQueries times investigation queries on s, which holds the first n
// records of BenchEntries' log, one sub-benchmark each, reporting the
// median and the 99th percentile latency and the entries returned.
func BenchQueries(b *testing.B, s infertrail.Index, n int64) {
	mid := BenchTime(n / 2)
	hour := int64(time.Hour)
	bigTrace := infertrail.IndexKey(infertrail.IndexTrace, "big")
	actor := infertrail.IndexKey(infertrail.IndexActor, "agent:a7")
	policy := []infertrail.Kind{infertrail.KindPolicyDecision}
	for _, c := range []struct {
		name string
		q    infertrail.Query
	}{
		{"trace-200", infertrail.Query{Keys: []string{bigTrace}, Limit: 200}},
		{"trace-20", infertrail.Query{Keys: []string{infertrail.IndexKey(infertrail.IndexTrace, fmt.Sprint(n/40))}}},
		{"newest", infertrail.Query{}},
		{"tenant-60%", infertrail.Query{Tenants: []string{"t0"}}},
		{"tenant-0.1%", infertrail.Query{Tenants: []string{"t4"}}},
		{"tenant-rare", infertrail.Query{Tenants: []string{"rare"}}},
		{"tenants-25%-0.9%", infertrail.Query{Tenants: []string{"t1", "t3"}}},
		{"tenant-kind", infertrail.Query{Tenants: []string{"t1"}, Kinds: policy}},
		{"tenant-hour-mid", infertrail.Query{Tenants: []string{"t0"}, From: mid, To: mid + hour}},
		{"tenant-minute-mid", infertrail.Query{Tenants: []string{"t0"}, From: mid, To: mid + int64(time.Minute)}},
		{"tenant-since-mid", infertrail.Query{Tenants: []string{"t2"}, From: mid}},
		{"tenant-until-mid", infertrail.Query{Tenants: []string{"t1"}, To: mid}},
		{"hour-mid", infertrail.Query{From: mid, To: mid + hour}},
		{"kind-hour-mid", infertrail.Query{Kinds: policy, From: mid, To: mid + hour}},
		{"kind", infertrail.Query{Kinds: policy}},
		{"actor", infertrail.Query{Keys: []string{actor}}},
		{"actor-page-mid", infertrail.Query{Keys: []string{actor}, Before: n / 2}},
		{"model-tenant", infertrail.Query{Keys: []string{infertrail.IndexKey(infertrail.IndexModel, "gpt-1")}, Tenants: []string{"t2"}}},
		{"actor-tool", infertrail.Query{Keys: []string{actor, infertrail.IndexKey(infertrail.IndexTool, "tool-7")}}},
		{"model-trace", infertrail.Query{Keys: []string{infertrail.IndexKey(infertrail.IndexModel, "gpt-1"), bigTrace}}},
	} {
		b.Run(c.name, func(b *testing.B) {
			var lat []time.Duration
			got := 0
			for b.Loop() {
				got = 0
				start := time.Now()
				if err := s.Query(b.Context(), c.q, func(*infertrail.Entry) error { got++; return nil }); err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(start))
			}
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
			b.ReportMetric(float64(got), "entries")
		})
	}
}
