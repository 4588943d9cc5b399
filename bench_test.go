package infertrail_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/infertrail/infertrail"
	"github.com/infertrail/infertrail/load"
)

func benchRecords(b *testing.B, mix load.Mix) [][]byte {
	g := load.NewGenerator(load.GenConfig{Mix: mix, Seed: 1})
	recs := make([][]byte, 1024)
	for i := range recs {
		recs[i] = g.Next()
	}
	return recs
}

// BenchmarkParseRecord measures decoding, validating and canonicalising one
// record as ingest receives it.
func BenchmarkParseRecord(b *testing.B) {
	for _, mix := range []load.Mix{load.MixFixed, load.MixAgent} {
		b.Run(mix.String(), func(b *testing.B) {
			recs := benchRecords(b, mix)
			var n int64
			for _, r := range recs {
				n += int64(len(r))
			}
			b.SetBytes(n / int64(len(recs)))
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				if _, _, err := infertrail.ParseRecord(recs[i%len(recs)], infertrail.Limits{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkValidate measures checking a record built in Go, as the gateways
// build them: a chat request's messages and a reply, in canonical form.
func BenchmarkValidate(b *testing.B) {
	messages := `[{"content":"You are a payments assistant for ACME. Never pay without an invoice.","role":"system"},` +
		`{"content":"` + strings.Repeat("Invoice 7 from ACME covers consulting for November; net 30 days. ", 30) + `","role":"user"}]`
	reply := `[{"content":"` + strings.Repeat("The invoice is approved and will be paid on the due date. ", 30) + `","role":"assistant"}]`
	b.SetBytes(int64(len(messages) + len(reply)))
	b.ReportAllocs()
	for b.Loop() {
		r := &infertrail.Record{Kind: infertrail.KindInference, Tenant: "acme",
			Attributes: map[string]json.RawMessage{"gen_ai.request.model": json.RawMessage(`"gpt-4o"`), "gen_ai.usage.input_tokens": json.RawMessage(`512`)},
			Content:    map[string]json.RawMessage{"gen_ai.input.messages": json.RawMessage(messages), "gen_ai.output.messages": json.RawMessage(reply)}}
		if err := r.Validate(infertrail.Limits{}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCanonicalize measures RFC 8785 canonicalisation of arbitrary JSON.
func BenchmarkCanonicalize(b *testing.B) {
	recs := benchRecords(b, load.MixAgent)
	b.SetBytes(int64(len(recs[0])))
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if _, err := infertrail.Canonicalize(recs[i%len(recs)]); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLeafCheck compares ParseLeaf with CheckLeaf, verification's leaf
// check, on the leaves of generated records.
func BenchmarkLeafCheck(b *testing.B) {
	for _, mix := range []load.Mix{load.MixFixed, load.MixAgent} {
		var leaves [][]byte
		for _, src := range benchRecords(b, mix) {
			r, _ := mustParse(b, string(src))
			sealRecord(b, r)
			leaves = append(leaves, r.AppendLeaf(nil))
		}
		b.Run(mix.String()+"/ParseLeaf", func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				if _, err := infertrail.ParseLeaf(leaves[i%len(leaves)]); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(mix.String()+"/CheckLeaf", func(b *testing.B) {
			b.ReportAllocs()
			var f infertrail.LeafFields
			for i := 0; b.Loop(); i++ {
				if err := infertrail.CheckLeaf(leaves[i%len(leaves)], &f); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkAppendString measures writing Go strings as canonical JSON
// strings, as the gateways' records and the policy input's digest do:
// prose with a line break every 80 bytes or so, and text that is not
// ASCII.
func BenchmarkAppendString(b *testing.B) {
	for _, tc := range []struct{ name, s string }{
		{"ascii-lines", strings.Repeat("Invoice 7 from ACME covers consulting for November; net 30 days. Pay by card.\n", 26)},
		{"ascii-plain", strings.Repeat("Invoice 7 from ACME covers consulting for November; net 30 days. Pay by card. ", 26)},
		{"non-ascii", strings.Repeat("Rechnung 7 über Beratung im November, zahlbar in 30 Tagen — danke. ", 30)},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.SetBytes(int64(len(tc.s)))
			dst := make([]byte, 0, 2*len(tc.s))
			for b.Loop() {
				dst = infertrail.AppendString(dst[:0], tc.s)
			}
		})
	}
}
