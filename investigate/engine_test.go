package investigate_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/infertrail/infertrail"
	"github.com/infertrail/infertrail/investigate"
	"github.com/infertrail/infertrail/investigate/investigatetest"
	"github.com/infertrail/infertrail/ledger"
	"github.com/infertrail/infertrail/ledger/ledgertest"
	"github.com/infertrail/infertrail/store/sqlite"
)

const origin = "example.com/infertrail/investigate-test"

type fixture struct {
	log    *ledger.Log
	db     *sqlite.DB
	path   string
	secret []byte
	now    time.Time
}

func newFixture(tb testing.TB) *fixture {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "log.db")
	db, err := sqlite.Open(context.Background(), path, sqlite.Config{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	skey, _, err := ledger.GenerateKey(origin)
	if err != nil {
		tb.Fatal(err)
	}
	s, v, _, err := ledger.KeyPair(skey)
	if err != nil {
		tb.Fatal(err)
	}
	secret := make([]byte, 32)
	rand.Read(secret)
	l, err := ledger.Open(context.Background(), ledger.Config{Store: db, Signer: s, Verifier: v, Origin: origin, Secret: secret,
		KEK: ledgertest.NewKEK(tb), CheckpointInterval: 20 * time.Millisecond})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { l.Close() })
	return &fixture{log: l, db: db, path: path, secret: secret, now: time.Now()}
}

func (f *fixture) engine(tb testing.TB) *investigate.Engine {
	tb.Helper()
	terms, err := investigate.NewTerms(f.secret)
	if err != nil {
		tb.Fatal(err)
	}
	e, err := investigate.New(investigate.Config{Store: f.db, Terms: terms, Content: f.log.ContentReader().ReadParts,
		Checkpoint: func(ctx context.Context) (int64, tlog.Hash, error) {
			cp, err := f.log.LatestCheckpoint(ctx)
			return cp.Size, cp.Root, err
		},
		Batch: 7, // several steps even for a small log
		Now:   func() time.Time { return f.now },
	})
	if err != nil {
		tb.Fatal(err)
	}
	return e
}

const traceID = investigatetest.TraceID

// paymentTrace records a finance agent's trace (investigatetest.PaymentTrace).
func (f *fixture) paymentTrace(tb testing.TB) map[string]*infertrail.Record {
	tb.Helper()
	r, err := investigatetest.RecordPaymentTrace(context.Background(), f.log)
	if err != nil {
		tb.Fatal(err)
	}
	return r
}

func (f *fixture) query(tb testing.TB, q infertrail.Query) []int64 {
	tb.Helper()
	var out []int64
	if err := f.db.Query(context.Background(), q, func(e *infertrail.Entry) error {
		out = append(out, e.Seq)
		return nil
	}); err != nil {
		tb.Fatal(err)
	}
	slices.Sort(out)
	return out
}

func (f *fixture) waitCheckpoint(tb testing.TB) {
	tb.Helper()
	if _, err := f.log.SignCheckpoint(context.Background()); err != nil {
		tb.Fatal(err)
	}
}

func TestIndexAndQuery(t *testing.T) {
	f := newFixture(t)
	r := f.paymentTrace(t)
	e := f.engine(t)
	ctx := t.Context()
	indexed, err := e.IndexCurrent(ctx, 100)
	if err != nil {
		t.Fatal(err)
	}
	if indexed != 8 {
		t.Fatalf("indexed through %d, want 8", indexed)
	}
	all := []int64{0, 1, 2, 3, 4, 5, 6, 7}
	for _, tc := range []struct {
		name string
		keys []string
		want []int64
	}{
		{"trace", []string{infertrail.IndexKey(infertrail.IndexTrace, traceID)}, all},
		{"model", []string{infertrail.IndexKey(infertrail.IndexModel, "gpt-4o-2024-08-06")}, []int64{r["answer"].Seq}},
		{"tool", []string{infertrail.IndexKey(infertrail.IndexTool, "pay")}, []int64{r["answer"].Seq, r["call"].Seq, r["result"].Seq}},
		{"tool call id", []string{infertrail.IndexKey(infertrail.IndexToolCall, "call_pay1")}, []int64{r["answer"].Seq, r["call"].Seq, r["result"].Seq}},
		{"decision", []string{infertrail.IndexKey(infertrail.IndexDecision, "require_approval")}, []int64{r["decision"].Seq}},
		{"link", []string{infertrail.IndexKey(infertrail.IndexLink, r["decision"].ID.String())}, []int64{r["approval"].Seq}},
		{"words", e.Terms().QueryKeys("INV-7731 globex"), []int64{r["prompt"].Seq}},
		{"words in arguments", e.Terms().QueryKeys("inv-7731"), []int64{r["prompt"].Seq, r["answer"].Seq, r["call"].Seq}},
		{"number", e.Terms().QueryKeys("1500"), []int64{r["call"].Seq}},
		{"absent word", e.Terms().QueryKeys("initech"), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := f.query(t, infertrail.Query{Keys: tc.keys})
			if !slices.Equal(got, tc.want) {
				t.Errorf("records %v, want %v", got, tc.want)
			}
		})
	}
	if got := f.query(t, infertrail.Query{Tenants: []string{"other"}, Keys: []string{infertrail.IndexKey(infertrail.IndexTrace, traceID)}}); len(got) != 0 {
		t.Errorf("another tenant sees %v", got)
	}
}

func TestTimeline(t *testing.T) {
	f := newFixture(t)
	r := f.paymentTrace(t)
	f.waitCheckpoint(t)
	e := f.engine(t)
	ctx := t.Context()
	if _, err := e.IndexCurrent(ctx, 100); err != nil {
		t.Fatal(err)
	}
	tl, err := e.Timeline(ctx, infertrail.IndexKey(infertrail.IndexTrace, traceID), []string{"acme"})
	if err != nil {
		t.Fatal(err)
	}
	parent := map[int64]int64{}
	status := map[int64]string{}
	var walk func(ns []*investigate.Node, p int64)
	walk = func(ns []*investigate.Node, p int64) {
		for _, n := range ns {
			parent[n.Seq] = p
			status[n.Seq] = n.Status
			walk(n.Children, n.Seq)
		}
	}
	walk(tl.Roots, -1)
	want := map[string]string{"prompt": "", "answer": "prompt", "call": "answer", "decision": "call",
		"approval": "decision", "result": "call", "payment": "call", "stray": ""}
	for k, p := range want {
		wp := int64(-1)
		if p != "" {
			wp = r[p].Seq
		}
		if parent[r[k].Seq] != wp {
			t.Errorf("%s (#%d) hangs under #%d, want %s (#%d)", k, r[k].Seq, parent[r[k].Seq], p, wp)
		}
		if status[r[k].Seq] != investigate.Verified {
			t.Errorf("%s: status %s, want verified", k, status[r[k].Seq])
		}
	}
	if _, err := e.Timeline(ctx, infertrail.IndexKey(infertrail.IndexTrace, traceID), []string{"other"}); !errorsIsNotFound(err) {
		t.Errorf("another tenant's timeline: err = %v, want not found", err)
	}

	// Tamper with a stored record behind the store's back: its badge
	// turns red.
	db, err := sql.Open("sqlite", "file:"+f.path+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var leaf []byte
	if err := db.QueryRow("SELECT leaf FROM records WHERE seq = ?", r["payment"].Seq).Scan(&leaf); err != nil {
		t.Fatal(err)
	}
	plain, err := sqlite.DecodeLeafColumn(leaf)
	if err != nil {
		t.Fatal(err)
	}
	altered := []byte(strings.Replace(string(plain), "payments.internal", "paymentz.internal", 1))
	if _, err := db.Exec("UPDATE records SET leaf = ? WHERE seq = ?", altered, r["payment"].Seq); err != nil {
		t.Fatal(err)
	}
	tl, err = e.Timeline(ctx, infertrail.IndexKey(infertrail.IndexTrace, traceID), nil)
	if err != nil {
		t.Fatal(err)
	}
	tl.Walk(func(n *investigate.Node) {
		want := investigate.Verified
		if n.Seq == r["payment"].Seq {
			want = investigate.Failed
		}
		if n.Status != want {
			t.Errorf("after tampering, #%d is %s, want %s", n.Seq, n.Status, want)
		}
	})
	if tl.Broken != 1 {
		t.Errorf("broken = %d, want 1", tl.Broken)
	}
}

func errorsIsNotFound(err error) bool { return errors.Is(err, infertrail.ErrNotFound) }

func TestDetectionSweep(t *testing.T) {
	f := newFixture(t)
	r := f.paymentTrace(t)
	e := f.engine(t)
	ctx := t.Context()
	// Within the window nothing is swept.
	if err := e.CatchUp(ctx); err != nil {
		t.Fatal(err)
	}
	if n := countFindings(t, f.db); n != 0 {
		t.Fatalf("%d findings before the window passed", n)
	}
	f.now = f.now.Add(time.Hour)
	// Two engines (two nodes) race over the same store.
	e2 := f.engine(t)
	var wg sync.WaitGroup
	for _, en := range []*investigate.Engine{e, e2} {
		wg.Go(func() {
			if err := en.CatchUp(ctx); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	var found []infertrail.Finding
	f.db.Findings(ctx, infertrail.FindingQuery{Seq: -1, Limit: 100}, func(fd *infertrail.Finding) error {
		found = append(found, *fd)
		return nil
	})
	if len(found) != 1 || found[0].Detector != investigate.UnattributedAction || !slices.Equal(found[0].Records, []int64{r["stray"].Seq}) {
		t.Fatalf("findings = %+v, want one unattributed_action on the stray call", found)
	}
	got := f.query(t, infertrail.Query{Keys: []string{infertrail.IndexKey(infertrail.IndexFinding, investigate.UnattributedAction)}})
	if !slices.Equal(got, []int64{r["stray"].Seq}) {
		t.Errorf("query by finding: %v", got)
	}
	_, lag, err := e.Lag(ctx)
	if err != nil || lag != 0 {
		t.Errorf("detect lag = %d, %v; want 0", lag, err)
	}
}

func countFindings(tb testing.TB, db *sqlite.DB) int {
	tb.Helper()
	n := 0
	if err := db.Findings(context.Background(), infertrail.FindingQuery{Seq: -1, Limit: 1000}, func(*infertrail.Finding) error {
		n++
		return nil
	}); err != nil {
		tb.Fatal(err)
	}
	return n
}

func TestErasureLeavesNothingSearchable(t *testing.T) {
	f := newFixture(t)
	f.paymentTrace(t)
	e := f.engine(t)
	ctx := t.Context()
	if _, err := e.IndexCurrent(ctx, 100); err != nil {
		t.Fatal(err)
	}
	if got := f.query(t, infertrail.Query{Keys: e.Terms().QueryKeys("globex")}); len(got) != 1 {
		t.Fatalf("before erasure, globex finds %v", got)
	}
	if _, err := f.log.Erase(ctx, ledger.Erasure{Scope: "tenant=acme,session=sess-42", Reason: "GDPR Art. 17 request 2026-113",
		Actor: infertrail.Actor{ID: "user:dpo"}}); err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"globex", "inv-7731", "1500", "po-2231"} {
		if got := f.query(t, infertrail.Query{Keys: e.Terms().QueryKeys(w)}); len(got) != 0 {
			t.Errorf("after erasure, %q still finds %v", w, got)
		}
	}
	// Metadata stays: it is in the leaf, which erasure never changes.
	if got := f.query(t, infertrail.Query{Keys: []string{infertrail.IndexKey(infertrail.IndexTool, "pay")}}); len(got) != 3 {
		t.Errorf("after erasure, tool=pay finds %v", got)
	}
	// Indexing more records after the erasure does not bring it back.
	if _, err := f.log.Record(ctx, &infertrail.Record{Kind: infertrail.KindInference, Tenant: "acme", SessionID: "sess-43", Source: "ingest",
		Content: map[string]json.RawMessage{"gen_ai.input.messages": json.RawMessage(`"nothing about that company"`)}}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.IndexCurrent(ctx, 100); err != nil {
		t.Fatal(err)
	}
	if got := f.query(t, infertrail.Query{Keys: e.Terms().QueryKeys("globex")}); len(got) != 0 {
		t.Errorf("globex finds %v", got)
	}
	if got := f.query(t, infertrail.Query{Keys: e.Terms().QueryKeys("company")}); len(got) != 1 {
		t.Errorf("company finds %v, want the new record", got)
	}
}

func TestIndexerSkipsWhatItCannotParse(t *testing.T) {
	f := newFixture(t)
	r := f.paymentTrace(t)
	db, err := sql.Open("sqlite", "file:"+f.path+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec("UPDATE records SET leaf = ? WHERE seq = ?", []byte(`{"not":"a leaf"}`), r["call"].Seq); err != nil {
		t.Fatal(err)
	}
	e := f.engine(t)
	if n, err := e.IndexCurrent(t.Context(), 100); err != nil || n != 8 {
		t.Fatalf("IndexCurrent = %d, %v; want 8", n, err)
	}
}

// TestIndexStepBounded: a step of records with many words stops short of
// its batch, so that its postings stay bounded; the store writes them in
// chunks (SQLite), and steps until caught up index every record.
func TestIndexStepBounded(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	const records, words = 300, 600
	f.uniqueWords(t, "r", records, words)
	e, terms := f.stepEngine(t)
	// A step of 65,536 postings ends after about 108 records.
	n, err := e.IndexStep(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n < 90 || n > 125 {
		t.Errorf("a step indexed %d records, want about 108 of %d", n, records)
	}
	if c, err := f.db.Cursor(ctx, investigate.IndexCursor); err != nil || c != int64(n) {
		t.Errorf("cursor at %d (%v) after a step of %d", c, err, n)
	}
	if err := e.CatchUp(ctx); err != nil {
		t.Fatal(err)
	}
	if c, err := f.db.Cursor(ctx, investigate.IndexCursor); err != nil || c != records {
		t.Fatalf("cursor at %d (%v) after catching up, want %d", c, err, records)
	}
	for seq := range int64(records) {
		word := fmt.Sprintf("r%dw%d", seq, seq%words)
		if got := f.query(t, infertrail.Query{Keys: terms.QueryKeys(word)}); !slices.Equal(got, []int64{seq}) {
			t.Errorf("search %q = %v, want [%d]", word, got, seq)
		}
	}
}

// TestLagCollector: the lag gauges count what the index and the
// detectors have still to do.
func TestLagCollector(t *testing.T) {
	f := newFixture(t)
	f.paymentTrace(t)
	e := f.engine(t)
	want := func(index, detect int) string {
		return fmt.Sprintf(`# HELP infertrail_detect_lag_records Committed records the detectors have still to examine; they wait out their window (investigate.window) before they examine a record.
# TYPE infertrail_detect_lag_records gauge
infertrail_detect_lag_records %d
# HELP infertrail_index_lag_records Committed records the investigation index has still to index.
# TYPE infertrail_index_lag_records gauge
infertrail_index_lag_records %d
`, detect, index)
	}
	if err := testutil.CollectAndCompare(e.Collector(), strings.NewReader(want(8, 8))); err != nil {
		t.Error(err)
	}
	if _, err := e.IndexCurrent(t.Context(), 10); err != nil {
		t.Fatal(err)
	}
	if err := testutil.CollectAndCompare(e.Collector(), strings.NewReader(want(0, 8))); err != nil {
		t.Error(err)
	}
}

// TestIndexRepeatedContent: an agent re-sends its history with every call.
// The index reads and hashes each message once, and still posts every
// record carrying a word; content erased while the cache holds its terms
// is not posted from the cache.
func TestIndexRepeatedContent(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	const calls = 6
	var history []map[string]string
	history = append(history, map[string]string{"role": "system", "content": "you are ledgerbot for acme"})
	for k := 1; k <= calls; k++ {
		history = append(history, map[string]string{"role": "user", "content": fmt.Sprintf("question turn%d", k)})
		msgs, _ := json.Marshal(history)
		if _, err := f.log.Record(ctx, &infertrail.Record{Kind: infertrail.KindInference, Tenant: "acme", SessionID: "agent-1", Source: "test",
			Actor:   infertrail.Actor{ID: "agent:ledgerbot"},
			Content: map[string]json.RawMessage{"gen_ai.input.messages": msgs, "gen_ai.output.messages": json.RawMessage(fmt.Sprintf(`"answer %d"`, k))}}); err != nil {
			t.Fatal(err)
		}
		history = append(history, map[string]string{"role": "assistant", "content": fmt.Sprintf("answer %d", k)})
	}
	terms, err := investigate.NewTerms(f.secret)
	if err != nil {
		t.Fatal(err)
	}
	read := map[infertrail.BlobID]int{}
	var mu sync.Mutex
	content := func(ctx context.Context, es []infertrail.Entry, skip func(infertrail.BlobID) bool) (map[infertrail.BlobID][]byte, error) {
		parts, err := f.log.ContentReader().ReadParts(ctx, es, skip)
		mu.Lock()
		defer mu.Unlock()
		for id := range parts {
			read[id]++
		}
		return parts, err
	}
	e, err := investigate.New(investigate.Config{Store: f.db, Terms: terms, Content: content, Batch: 2})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.IndexCurrent(ctx, 100); err != nil {
		t.Fatal(err)
	}
	for id, n := range read {
		if n != 1 {
			t.Errorf("blob %x read %d times", id[:8], n)
		}
	}
	// The system message, 6 questions, 5 answers in the history and 6 as
	// outputs.
	if len(read) != 1+calls+(calls-1)+calls {
		t.Errorf("%d blobs read, want %d", len(read), 1+calls+(calls-1)+calls)
	}
	all := []int64{0, 1, 2, 3, 4, 5}
	for word, want := range map[string][]int64{"ledgerbot": all, "turn1": all, "turn4": all[3:], "turn6": all[5:], "answer": all} {
		if got := f.query(t, infertrail.Query{Keys: terms.QueryKeys(word)}); !slices.Equal(got, want) {
			t.Errorf("search %q = %v, want %v", word, got, want)
		}
	}

	// A session erased between two steps of an engine whose cache holds its
	// terms: what the later step takes from the cache is not posted.
	f2 := newFixture(t)
	for k := range 4 {
		// The instructions repeat: records 2 and 3 have them from the cache.
		msgs := fmt.Sprintf(`[{"role":"user","content":"step%d"}]`, k)
		if _, err := f2.log.Record(ctx, &infertrail.Record{Kind: infertrail.KindInference, Tenant: "acme", SessionID: "s-9", Source: "test",
			Content: map[string]json.RawMessage{"gen_ai.system_instructions": json.RawMessage(`"globex contract"`),
				"gen_ai.input.messages": json.RawMessage(msgs)}}); err != nil {
			t.Fatal(err)
		}
	}
	e2, err := investigate.New(investigate.Config{Store: f2.db, Terms: terms, Content: f2.log.ContentReader().ReadParts, Batch: 2})
	if err != nil {
		t.Fatal(err)
	}
	if n, err := e2.IndexStep(ctx); err != nil || n != 2 {
		t.Fatalf("IndexStep = %d, %v", n, err)
	}
	if got := f2.query(t, infertrail.Query{Keys: terms.QueryKeys("globex")}); !slices.Equal(got, []int64{0, 1}) {
		t.Fatalf("before the erasure, globex finds %v", got)
	}
	if _, err := f2.log.Erase(ctx, ledger.Erasure{Scope: "tenant=acme,session=s-9", Reason: "test", Actor: infertrail.Actor{ID: "user:dpo"}}); err != nil {
		t.Fatal(err)
	}
	if err := e2.CatchUp(ctx); err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"globex", "contract", "step0", "step3"} {
		if got := f2.query(t, infertrail.Query{Keys: terms.QueryKeys(w)}); len(got) != 0 {
			t.Errorf("after the erasure, %q finds %v", w, got)
		}
	}
}

// TestIndexStepHeavyIngest: while the log grows by thousands of records a
// second, a step ends once its postings take about 2,048 rows (a few
// records of 600 unique words), so that its commit holds the disk the
// log syncs to for less; a read's step, and steps once ingest slows, are
// long again.
func TestIndexStepHeavyIngest(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	const records, words = 150, 600
	f.uniqueWords(t, "h", records, words)
	e, terms := f.stepEngine(t)
	step := func(ctx context.Context) int {
		t.Helper()
		n, err := e.IndexStep(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	investigate.SetGrowth(e, f.now, 0, 5000)
	if n := step(ctx); n < 2 || n > 6 {
		t.Errorf("under heavy ingest a step indexed %d records, want about 4", n)
	}
	if n := step(infertrail.Foreground(ctx)); n < 90 {
		t.Errorf("a read's step under heavy ingest indexed %d records, want about 108", n)
	}
	investigate.SetGrowth(e, f.now, 0, 500)
	if n := step(ctx); n < 20 {
		t.Errorf("under light ingest a step indexed %d records, want the rest", n)
	}
	if c, err := f.db.Cursor(ctx, investigate.IndexCursor); err != nil || c != records {
		t.Fatalf("cursor at %d (%v), want %d", c, err, records)
	}
	for _, seq := range []int64{0, 5, 140} {
		word := fmt.Sprintf("h%dw%d", seq, seq%words)
		if got := f.query(t, infertrail.Query{Keys: terms.QueryKeys(word)}); !slices.Equal(got, []int64{seq}) {
			t.Errorf("search %q = %v, want [%d]", word, got, seq)
		}
	}
}

// uniqueWords records n chat records of words unique words each: word w
// of record i is prefix, i, "w", w.
func (f *fixture) uniqueWords(tb testing.TB, prefix string, n, words int) {
	tb.Helper()
	for i := range n {
		var text []byte
		for w := range words {
			text = fmt.Appendf(text, "%s%dw%d ", prefix, i, w)
		}
		msgs, _ := json.Marshal([]map[string]string{{"role": "user", "content": string(text)}})
		rec := &infertrail.Record{Kind: infertrail.KindInference, Tenant: "acme", Source: "test", Actor: infertrail.Actor{ID: "agent:a"},
			Content: map[string]json.RawMessage{"gen_ai.input.messages": msgs}}
		if _, err := f.log.Record(context.Background(), rec); err != nil {
			tb.Fatal(err)
		}
	}
}

// stepEngine returns an engine with the default step bounds over f's
// log, and its terms.
func (f *fixture) stepEngine(tb testing.TB) (*investigate.Engine, *investigate.Terms) {
	tb.Helper()
	terms, err := investigate.NewTerms(f.secret)
	if err != nil {
		tb.Fatal(err)
	}
	e, err := investigate.New(investigate.Config{Store: f.db, Terms: terms, Content: f.log.ContentReader().ReadParts,
		Now: func() time.Time { return f.now }})
	if err != nil {
		tb.Fatal(err)
	}
	return e, terms
}
