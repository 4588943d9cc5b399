package ledger_test

import (
	"context"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/infertrail/infertrail"
	"github.com/infertrail/infertrail/investigate"
	"github.com/infertrail/infertrail/ledger"
	"github.com/infertrail/infertrail/ledger/ledgertest"
	"github.com/infertrail/infertrail/load"
	"github.com/infertrail/infertrail/store/sqlite"
)

var storageScope = flag.String("storage.scope", "", "erasure scope fields, space-separated (default: session; \"tenant\" for the tenant alone)")

var storageRecords = flag.Int("storage.records", 20000, "records BenchmarkStorage appends")

var storageKeep = flag.String("storage.keep", "", "copy the database BenchmarkStorage wrote to this file (and, with -storage.index, the index file beside it), to inspect them")

var storageSeed = flag.Int64("storage.seed", 1, "the agent traffic generator's seed")

var storageIndex = flag.Bool("storage.index", false, "also build the investigation index, full text included, as infertrail serve does, and report the data folder's bytes")

// BenchmarkStorage appends realistic agent traffic (load.MixAgent: repeated
// system prompts, tool schemas and re-sent histories) through the ledger
// into SQLite, and reports the bytes on disk per byte of raw content and per
// record. With -storage.index it builds the investigation index too, and
// reports the data folder (the log's file and the index file).
//
//	go test ./ledger -run '^$' -bench Storage -benchtime 1x -storage.records 50000
//	go test ./ledger -run '^$' -bench Storage -benchtime 1x -storage.index
func BenchmarkStorage(b *testing.B) {
	for b.Loop() {
		dir := b.TempDir()
		path := filepath.Join(dir, "infertrail.db")
		st, err := sqlite.Open(b.Context(), path, sqlite.Config{})
		if err != nil {
			b.Fatal(err)
		}
		skey, _, err := ledger.GenerateKey("bench.example/storage")
		if err != nil {
			b.Fatal(err)
		}
		signer, verifier, _, err := ledger.KeyPair(skey)
		if err != nil {
			b.Fatal(err)
		}
		l, err := ledger.Open(b.Context(), ledger.Config{Store: st, Signer: signer, Verifier: verifier,
			Origin: "bench.example/storage", Secret: make([]byte, 32), KEK: ledgertest.NewKEK(b), CheckpointInterval: time.Second,
			ScopeFields: strings.Fields(*storageScope)})
		if err != nil {
			b.Fatal(err)
		}
		g := load.NewGenerator(load.GenConfig{Mix: load.MixAgent, Seed: *storageSeed})
		var raw int64
		const batch = 200
		for n := 0; n < *storageRecords; n += batch {
			subs := make([]ledger.Submission, 0, batch)
			for range batch {
				rec := g.Next()
				c, err := load.ContentSize(rec)
				if err != nil {
					b.Fatal(err)
				}
				raw += int64(c)
				r, canon, err := infertrail.ParseRecord(rec, infertrail.Limits{})
				if err != nil {
					b.Fatal(err)
				}
				r.Source = "ingest"
				subs = append(subs, ledger.Submission{Record: r, Raw: canon})
			}
			if _, err := l.Append(b.Context(), subs); err != nil {
				b.Fatal(err)
			}
		}
		if *storageIndex {
			terms, err := investigate.NewTerms(make([]byte, 32))
			if err != nil {
				b.Fatal(err)
			}
			e, err := investigate.New(investigate.Config{Store: st, Terms: terms, Content: l.ContentReader().ReadParts,
				Checkpoint: func(ctx context.Context) (int64, tlog.Hash, error) {
					cp, err := l.LatestCheckpoint(ctx)
					return cp.Size, cp.Root, err
				}})
			if err != nil {
				b.Fatal(err)
			}
			if err := e.CatchUp(b.Context()); err != nil {
				b.Fatal(err)
			}
		}
		l.Close()
		st.Close() // checkpoints the WAL into the file
		size := func(paths ...string) (n int64) {
			for _, p := range paths {
				for _, f := range []string{p, p + "-wal"} {
					if fi, err := os.Stat(f); err == nil {
						n += fi.Size()
					}
				}
			}
			return n
		}
		disk := size(path)
		if *storageIndex {
			folder := size(path, sqlite.IndexPath(path))
			b.ReportMetric(float64(folder)/float64(raw), "folder-bytes/raw-content-byte")
			b.ReportMetric(float64(folder-disk)/float64(*storageRecords), "index-bytes/record")
		}
		if *storageKeep != "" {
			keep := map[string]string{path: *storageKeep}
			if *storageIndex {
				keep[sqlite.IndexPath(path)] = sqlite.IndexPath(*storageKeep)
			}
			for from, to := range keep {
				data, err := os.ReadFile(from)
				if err != nil {
					b.Fatal(err)
				}
				if err := os.WriteFile(to, data, 0o600); err != nil {
					b.Fatal(err)
				}
			}
		}
		b.ReportMetric(float64(disk)/float64(raw), "disk-bytes/raw-content-byte")
		b.ReportMetric(float64(disk)/float64(*storageRecords), "disk-bytes/record")
		b.ReportMetric(float64(raw)/float64(*storageRecords), "raw-content-bytes/record")
	}
}
