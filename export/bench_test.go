package export_test

import (
	"bytes"
	"fmt"
	"io"
	"testing"

	"github.com/infertrail/infertrail/export"
)

// benchRecords is the size of the benchmarked bundle.
const benchRecords = 10_000

// BenchmarkBundle measures writing an evidence bundle of 10,000 records
// with their content from a SQLite log, and verifying it offline.
//
//	go test -run '^$' -bench Bundle -benchtime 5x ./export/
func BenchmarkBundle(b *testing.B) {
	l := newTestLog(b)
	var seqs []int64
	for len(seqs) < benchRecords {
		srcs := make([]string, 1000)
		for i := range srcs {
			n := len(seqs) + i
			srcs[i] = fmt.Sprintf(`{"kind":"inference","tenant":"acme","session_id":"sess-%d","trace_id":"%032x","actor":{"id":"agent:bench","type":"agent"},
				"attributes":{"gen_ai.request.model":"gpt-4o","gen_ai.response.model":"gpt-4o-2024-08-06","gen_ai.usage.input_tokens":%d},
				"content":{"gen_ai.input.messages":[{"role":"user","parts":[{"type":"text","content":"Question %d: what is the status of invoice %d?"}]}],
				"gen_ai.output.messages":[{"role":"assistant","parts":[{"type":"text","content":"Invoice %d was paid on 2026-11-%02d."}]}]}}`,
				n/50, n/10+1, n, n, n, n, n%28+1)
		}
		seqs = append(seqs, l.appendJSON(b, srcs...)...)
	}
	l.sign(b)
	opts := export.BundleOptions{Seqs: seqs, Content: true, Title: "benchmark", VerifierKey: l.vkey}

	var bundle []byte
	b.Run("write", func(b *testing.B) {
		for b.Loop() {
			var buf bytes.Buffer
			if _, err := export.WriteBundle(b.Context(), &buf, l.Log, opts); err != nil {
				b.Fatal(err)
			}
			bundle = buf.Bytes()
		}
		b.ReportMetric(float64(benchRecords)*float64(b.N)/b.Elapsed().Seconds(), "records/s")
		b.ReportMetric(float64(len(bundle)), "bundle-bytes")
	})
	if bundle == nil {
		var buf bytes.Buffer
		if _, err := export.WriteBundle(b.Context(), &buf, l.Log, opts); err != nil {
			b.Fatal(err)
		}
		bundle = buf.Bytes()
	}
	b.Run("verify", func(b *testing.B) {
		for b.Loop() {
			rep, err := export.VerifyBundle(bytes.NewReader(bundle), int64(len(bundle)), l.verifier)
			if err != nil || len(rep.Records) != benchRecords {
				b.Fatalf("VerifyBundle: %v", err)
			}
		}
		b.ReportMetric(float64(benchRecords)*float64(b.N)/b.Elapsed().Seconds(), "records/s")
	})
	b.Run("report", func(b *testing.B) {
		rep, _ := export.VerifyBundle(bytes.NewReader(bundle), int64(len(bundle)), l.verifier)
		for b.Loop() {
			rep.Write(io.Discard)
		}
	})
}
