package investigate_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/infertrail/infertrail"
	"github.com/infertrail/infertrail/investigate"
	"github.com/infertrail/infertrail/keys"
	"github.com/infertrail/infertrail/ledger"
	"github.com/infertrail/infertrail/store/sqlite"
)

// benchStore is a store of agent traffic for the investigation
// benchmarks: INFERTRAIL_BENCH_RECORDS records (default 200,000) in traces
// of 20, with one 200-record trace (benchTrace) in the middle. With
// INFERTRAIL_BENCH_DIR set, the store is built there once and reused.
type benchStore struct {
	log *ledger.Log
	db  *sqlite.DB
	e   *investigate.Engine
}

const benchTrace = "0123456789abcdef0123456789abcdef"

func openBenchStore(b *testing.B) *benchStore {
	b.Helper()
	n := 200_000
	if v := os.Getenv("INFERTRAIL_BENCH_RECORDS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil {
			b.Fatal(err)
		}
	}
	dir := os.Getenv("INFERTRAIL_BENCH_DIR")
	if dir == "" {
		dir = b.TempDir()
	}
	dir = filepath.Join(dir, fmt.Sprintf("investigate-%d", n))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		b.Fatal(err)
	}
	secret := []byte("0123456789abcdef0123456789abcdef") // a fixed secret: the store is reused
	skey, err := os.ReadFile(filepath.Join(dir, "key"))
	if err != nil {
		s, _, err := ledger.GenerateKey(origin)
		if err != nil {
			b.Fatal(err)
		}
		skey = []byte(s)
		if err := os.WriteFile(filepath.Join(dir, "key"), skey, 0o600); err != nil {
			b.Fatal(err)
		}
	}
	signer, verifier, _, err := ledger.KeyPair(string(skey))
	if err != nil {
		b.Fatal(err)
	}
	kek, _, err := keys.OpenOrCreateKeyring(filepath.Join(dir, "kek"))
	if err != nil {
		b.Fatal(err)
	}
	db, err := sqlite.Open(context.Background(), filepath.Join(dir, "log.db"), sqlite.Config{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	l, err := ledger.Open(context.Background(), ledger.Config{Store: db, Signer: signer, Verifier: verifier, Origin: origin,
		Secret: secret, KEK: kek})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { l.Close() })
	terms, _ := investigate.NewTerms(secret)
	e, err := investigate.New(investigate.Config{Store: db, Terms: terms, Content: l.ContentReader().ReadParts, Batch: 5000,
		Checkpoint: func(ctx context.Context) (int64, tlog.Hash, error) {
			cp, err := l.LatestCheckpoint(ctx)
			return cp.Size, cp.Root, err
		}})
	if err != nil {
		b.Fatal(err)
	}
	s := &benchStore{log: l, db: db, e: e}
	size, _ := db.TreeSize(context.Background())
	if size < int64(n) {
		s.fill(b, size, int64(n))
	}
	for {
		k, err := e.IndexStep(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		if k == 0 {
			break
		}
	}
	if _, err := l.SignCheckpoint(context.Background()); err != nil {
		b.Fatal(err)
	}
	return s
}

// fill appends records from seq from to n.
func (s *benchStore) fill(b *testing.B, from, n int64) {
	b.Helper()
	start := time.Now()
	const batch = 1000
	var wg sync.WaitGroup
	next := make(chan int64)
	go func() {
		for i := from; i < n; i += batch {
			next <- i
		}
		close(next)
	}()
	for range 4 {
		wg.Go(func() {
			for first := range next {
				var recs []*infertrail.Record
				for i := first; i < min(first+batch, n); i++ {
					recs = append(recs, benchRecord(i, n))
				}
				if _, err := s.log.Record(context.Background(), recs...); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.Logf("appended %d records in %s", n-from, time.Since(start).Round(time.Second))
}

var benchModels = []string{"gpt-4o-2024-08-06", "gpt-4o-mini-2024-07-18", "claude-sonnet-4-20250514", "o3-2025-04-16", "llama-3.3-70b"}
var benchTools = []string{"pay", "refund", "lookup_invoice", "deploy", "read_secret", "search_docs", "send_email", "create_ticket"}

// benchRecord is record i of n: traces of 20 records (an inference, tool
// calls, decisions, downstream calls), and the 200 records around n/2 in
// benchTrace.
func benchRecord(i, n int64) *infertrail.Record {
	traceNo := i / 20
	trace := fmt.Sprintf("%032x", traceNo+1)
	if i >= n/2 && i < n/2+200 {
		trace = benchTrace
	}
	r := &infertrail.Record{Kind: infertrail.KindInference, Tenant: fmt.Sprintf("tenant-%d", traceNo%10), Source: "ingest",
		Actor: infertrail.Actor{ID: fmt.Sprintf("agent:%d", traceNo%100)}, SessionID: fmt.Sprintf("sess-%d", traceNo/5),
		TraceID: trace, Time: time.Unix(1_790_000_000+i/100, (i%100)*10_000_000), Attributes: map[string]json.RawMessage{}}
	if trace == benchTrace {
		r.Tenant = "tenant-0"
	}
	q := func(s string) json.RawMessage { return infertrail.AppendString(nil, s) }
	switch i % 5 {
	case 0:
		r.Attributes["gen_ai.request.model"] = q("gpt-4o")
		r.Attributes["gen_ai.response.model"] = q(benchModels[traceNo%5])
		r.Content = map[string]json.RawMessage{"gen_ai.input.messages": q(fmt.Sprintf("please handle invoice INV-%d for customer %d", i, traceNo%997))}
	case 1, 3:
		r.Kind = infertrail.KindToolCall
		r.Attributes["gen_ai.tool.name"] = q(benchTools[(i/3)%8])
		r.Content = map[string]json.RawMessage{"gen_ai.tool.call.arguments": json.RawMessage(fmt.Sprintf(`{"invoice":"INV-%d","amount":%d}`, i, i%5000))}
	case 2:
		r.Kind = infertrail.KindPolicyDecision
		r.Attributes["policy.result"] = q([]string{"allow", "allow", "allow", "deny", "require_approval"}[traceNo%5])
	case 4:
		r.Kind = infertrail.KindDownstreamCall
		r.Attributes["url.full"] = q("https://payments.internal/transfer")
	}
	return r
}

func quantiles(ds []time.Duration) (p50, p99 time.Duration) {
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	return ds[len(ds)/2], ds[len(ds)*99/100]
}

// BenchmarkTimeline200 reconstructs a 200-record trace, verifying each
// record against the latest checkpoint; the target is 50 ms p99
// on a 10-million-record store.
func BenchmarkTimeline200(b *testing.B) {
	s := openBenchStore(b)
	ctx := context.Background()
	var ds []time.Duration
	b.ResetTimer()
	for b.Loop() {
		t := time.Now()
		tl, err := s.e.Timeline(ctx, infertrail.IndexKey(infertrail.IndexTrace, benchTrace), []string{"tenant-0"})
		if err != nil {
			b.Fatal(err)
		}
		ds = append(ds, time.Since(t))
		if tl.Records != 200 || tl.Broken != 0 {
			b.Fatalf("timeline of %d records, %d broken", tl.Records, tl.Broken)
		}
	}
	p50, p99 := quantiles(ds)
	b.ReportMetric(float64(p50.Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(p99.Microseconds())/1000, "p99-ms")
}

// BenchmarkQueryFirstPage answers the first page (100 records) of
// filtered queries; the target is 100 ms p99 on a
// 10-million-record store.
func BenchmarkQueryFirstPage(b *testing.B) {
	s := openBenchStore(b)
	ctx := context.Background()
	size, _ := s.db.TreeSize(ctx)
	queries := []infertrail.Query{
		{Tenants: []string{"tenant-3"}, Kinds: []infertrail.Kind{infertrail.KindToolCall}},
		{Tenants: []string{"tenant-3"}, Keys: []string{infertrail.IndexKey(infertrail.IndexTool, "pay")}},
		{Keys: []string{infertrail.IndexKey(infertrail.IndexModel, "o3-2025-04-16"), infertrail.IndexKey(infertrail.IndexActor, "agent:13")}},
		{Keys: []string{infertrail.IndexKey(infertrail.IndexDecision, "deny")}, From: time.Unix(1_790_000_000+size/400, 0).UnixNano()},
		{Keys: s.e.Terms().QueryKeys("invoice customer 42")},
	}
	var ds []time.Duration
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		q := queries[i%len(queries)]
		q.Limit = 100
		t := time.Now()
		n := 0
		if err := s.db.Query(ctx, q, func(*infertrail.Entry) error { n++; return nil }); err != nil {
			b.Fatal(err)
		}
		ds = append(ds, time.Since(t))
		if n == 0 {
			b.Fatalf("query %d found nothing", i%len(queries))
		}
	}
	p50, p99 := quantiles(ds)
	b.ReportMetric(float64(p50.Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(p99.Microseconds())/1000, "p99-ms")
}

// BenchmarkIndexStep indexes agent traffic: each op is one record (its
// leaf keys, its content decrypted and its words hashed, the postings
// written).
func BenchmarkIndexStep(b *testing.B) {
	dir := b.TempDir()
	b.Setenv("INFERTRAIL_BENCH_DIR", dir)
	b.Setenv("INFERTRAIL_BENCH_RECORDS", "1")
	s := openBenchStore(b)
	s.fill(b, 1, int64(b.N)+1)
	b.ResetTimer()
	for {
		n, err := s.e.IndexStep(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		if n == 0 {
			break
		}
	}
}

// BenchmarkContentPostings hashes the words of 1 KiB of chat messages with
// about 150 distinct words, as the indexer does for each record of the
// throughput benchmark's traffic.
func BenchmarkContentPostings(b *testing.B) {
	terms, err := investigate.NewTerms(make([]byte, 32))
	if err != nil {
		b.Fatal(err)
	}
	var text []byte
	for i := 0; len(text) < 1000; i++ {
		text = fmt.Appendf(text, "w%x ", uint32(i)*2654435761)
	}
	msgs, _ := json.Marshal([]map[string]string{{"role": "user", "content": string(text[:600])}, {"role": "assistant", "content": string(text[600:])}})
	e := &infertrail.Entry{Seq: 1, Content: []infertrail.ContentRef{{Field: "gen_ai.input.messages"}}}
	content := map[string]json.RawMessage{"gen_ai.input.messages": msgs}
	b.ReportAllocs()
	for b.Loop() {
		if len(terms.ContentPostings(e, content)) < 100 {
			b.Fatal("too few words")
		}
	}
}
