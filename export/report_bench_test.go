package export_test

import (
	"context"
	"testing"
	"time"

	"github.com/infertrail/infertrail"
	"github.com/infertrail/infertrail/export"
	"github.com/infertrail/infertrail/ledger"
	"github.com/infertrail/infertrail/load"
)

// BenchmarkReport builds the compliance report over a log of 100,000
// realistic agent records (load.MixAgent) in a real SQLite store, with a
// signed checkpoint every 1,000 records, and reports records/s. Building
// the log takes a while and is not timed.
//
//	go test ./export -run '^$' -bench BenchmarkReport -benchtime 5x
func BenchmarkReport(b *testing.B) {
	const records, perCheckpoint = 100_000, 1000
	l := newRptLog(b)
	ctx := context.Background()
	g := load.NewGenerator(load.GenConfig{Mix: load.MixAgent, Seed: 1})
	start := time.Now()
	for n := 0; n < records; n += perCheckpoint {
		subs := make([]ledger.Submission, perCheckpoint)
		for i := range subs {
			r, raw, err := infertrail.ParseRecord(g.Next(), infertrail.Limits{})
			if err != nil {
				b.Fatal(err)
			}
			r.Source = "ingest"
			subs[i] = ledger.Submission{Record: r, Raw: raw}
		}
		if _, err := l.Append(ctx, subs); err != nil {
			b.Fatal(err)
		}
		l.sign(b)
	}
	to := time.Now().Add(time.Minute)
	from := start.Add(-time.Minute)
	controls, err := export.LoadControls("")
	if err != nil {
		b.Fatal(err)
	}
	src := export.LogSource(l.Log)
	b.ResetTimer()
	for b.Loop() {
		r, err := export.BuildReport(ctx, src, from, to, controls)
		if err != nil {
			b.Fatal(err)
		}
		if r.Scan.Records != records || r.Sections.Integrity.Checkpoints != records/perCheckpoint {
			b.Fatalf("report saw %d records, %d checkpoints", r.Scan.Records, r.Sections.Integrity.Checkpoints)
		}
	}
	b.ReportMetric(float64(records)*float64(b.N)/b.Elapsed().Seconds(), "records/s")
}
