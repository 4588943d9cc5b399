package leafcol

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
)

// compact is Compact with a copy of its result.
func compact(leaf []byte) []byte {
	col, _ := Compact(leaf, new(Scratch))
	return bytes.Clone(col)
}

func TestLeafColumn(t *testing.T) {
	long := fmt.Appendf(nil, `{"actor":{"id":"agent:payments-bot","type":"agent"},"attributes":{"gen_ai.operation.name":"chat","gen_ai.request.model":"gpt-4o"},"id":"0193a5b0-7c1e-7000-8000-000000000001","kind":"inference","received_time":"2026-11-26T19:02:29.571614499Z","schema_version":1,"seq":42,"source":"ingest","tenant":"acme","time":"2026-11-26T10:00:00.123456Z"}`)
	for _, leaf := range [][]byte{long, []byte(`{"kind":"x"}`), bytes.Repeat([]byte("{"), 70000)[:65535]} {
		col := compact(leaf)
		if len(leaf) >= 64 && len(col) >= len(leaf) && !bytes.Equal(col, leaf) {
			t.Errorf("Compact grew a leaf of %d bytes to %d", len(leaf), len(col))
		}
		got, err := Decode(col)
		if err != nil || !bytes.Equal(got, leaf) {
			t.Fatalf("round trip of a %d-byte leaf: %v", len(leaf), err)
		}
	}
	if col := compact(long); col[0] != tagS2Packed || len(col) > len(long)*3/4 {
		t.Errorf("a typical leaf of %d bytes is stored in %d bytes, tag 0x%02x", len(long), len(col), col[0])
	}
	for name, col := range map[string][]byte{
		"unknown tag":         {0x7f, 1, 2, 3},
		"truncated":           compact(long)[:20],
		"huge length":         {tagS2Dict1, 0xff, 0xff, 0xff, 0xff, 0x0f},
		"packed, huge length": {tagS2Packed, 0xff, 0xff, 0xff, 0xff, 0x0f},
		"packed, truncated":   compact(long)[:20],
	} {
		if _, err := Decode(col); err == nil {
			t.Errorf("%s: decoded without error", name)
		}
	}
}

// agentLeaf is a leaf of agent traffic as the ledger writes it.
const agentLeaf = `{"actor":{"id":"agent:procurement-bot","on_behalf_of":"user:alice@initech.example","type":"agent","workload":"spiffe://initech.example/agent/procurement-bot"},"attributes":{"gen_ai.agent.name":"procurement-bot","gen_ai.operation.name":"chat","gen_ai.provider.name":"anthropic","gen_ai.request.max_tokens":1024,"gen_ai.request.model":"claude-sonnet-4-5","gen_ai.request.temperature":0.3,"gen_ai.response.finish_reasons":["tool_call"],"gen_ai.response.id":"resp_4629c44b0d922ce1","gen_ai.response.model":"claude-sonnet-4-5-20250929","gen_ai.usage.input_tokens":1877,"gen_ai.usage.output_tokens":46},"commitments":{"gen_ai.input.messages":"sha256:c8ff0fa3b2bf88ad9730ff1d3bb75f0521f462e1c32aea5302dcc336611a1d46","gen_ai.output.messages":"sha256:2d4e971bbdfe01b1e3aec7c33488607c47d9a7474a2acce3f4795043e2cdcb99","gen_ai.tool.definitions":"sha256:8c251b84bc60cab9c9309fac6f0fa2dee88202f511bc8cd1482cc571c6fb7624"},"id":"019b76da-a808-71ad-b4ef-42a8cdf1465a","kind":"inference","parent_span_id":"fd3e92b7ca9e726d","received_time":"2026-11-29T04:35:25.803393304Z","schema_version":1,"seq":6,"session_id":"sess-e6e217b961fee78d","source":"ingest","span_id":"9f01bb971693c589","tenant":"initech","time":"2026-01-01T00:00:00.008424Z","trace_id":"e8c8fb0d33f5831c017c0c03dae0d03a"}`

func TestPackedLeaf(t *testing.T) {
	hexRun := func(n int) string { return strings.Repeat("0123456789abcdef", n/16+1)[:n] }
	uuid := "019b76da-a808-71ad-b4ef-42a8cdf1465a"
	cases := []string{
		agentLeaf,
		`{"a":"` + hexRun(15) + `","b":"` + hexRun(16) + `","c":"` + hexRun(17) + `"}`,
		`{"a":"` + hexRun(509) + `","b":"` + hexRun(510) + `","c":"` + hexRun(511) + `","d":"` + hexRun(1037) + `"}`,
		`{"id":"` + uuid + `","x":"` + uuid + `0","y":"0` + uuid + `","z":"` + strings.ToUpper(uuid) + `","w":"` + uuid[:35] + `"}`,
		`{"n":1234567890123456789012,"h":"ABCDEF0123456789ABCDEF","end":"` + uuid + `"}` + hexRun(40),
		"{" + hexRun(64),
		"{" + uuid,
		`{"tail":"` + uuid[:34] + `"}`,
		`{"x":"\u0001\u0002 é ` + hexRun(20) + `"}`,
	}
	for _, leaf := range cases {
		p := packLeaf(nil, []byte(leaf))
		if p == nil {
			t.Fatalf("packLeaf(%.40q) refused a leaf with no control bytes", leaf)
		}
		got, err := unpackLeaf(nil, p)
		if err != nil || string(got) != leaf {
			t.Fatalf("unpack(pack(%.60q)) = %.60q, %v", leaf, got, err)
		}
		col := compact([]byte(leaf))
		got, err = Decode(col)
		if err != nil || string(got) != leaf {
			t.Fatalf("leaf column round trip of %.60q: %.60q, %v", leaf, got, err)
		}
	}
	// The hex of a commitment is stored as its 32 bytes.
	if p := packLeaf(nil, []byte(agentLeaf)); len(p) > len(agentLeaf)*9/10 {
		t.Errorf("packed %d bytes into %d", len(agentLeaf), len(p))
	}
	if col := compact([]byte(agentLeaf)); col[0] != tagS2Packed || len(col) > 560 {
		t.Errorf("an agent leaf of %d bytes is stored in %d bytes, tag 0x%02x", len(agentLeaf), len(col), col[0])
	}
	// A leaf with raw control bytes is not canonical JSON: stored unpacked.
	odd := []byte(`{"a":"` + "\x01" + hexRun(100) + `"}`)
	odd[6] = 0x01
	if packLeaf(nil, odd) != nil {
		t.Error("packLeaf packed a leaf holding a raw 0x01")
	}
	col := compact(odd)
	if col[0] != tagS2Dict1 {
		t.Errorf("a leaf with a raw 0x01 is stored with tag 0x%02x", col[0])
	}
	if got, err := Decode(col); err != nil || !bytes.Equal(got, odd) {
		t.Fatalf("round trip of a leaf with a raw 0x01: %v", err)
	}
	// Damaged packing is an error, never a wrong leaf.
	var huge []byte
	for range 200 {
		huge = append(append(huge, packHex, 255), bytes.Repeat([]byte{0xab}, 255)...)
	}
	for name, p := range map[string][]byte{
		"longer than a leaf":   huge,
		"hex run past the end": {'{', packHex, 10, 1, 2},
		"empty hex run":        {'{', packHex, 0},
		"marker at the end":    {'{', packHex},
		"uuid past the end":    {'{', packUUID, 1, 2, 3},
		"unknown control byte": {'{', 0x03, '}'},
	} {
		if got, err := unpackLeaf(nil, p); err == nil {
			t.Errorf("%s: unpacked to %q", name, got)
		}
		col := append([]byte{tagS2Packed}, dict2.Encode(nil, p)...)
		if _, err := Decode(col); err == nil {
			t.Errorf("%s: decoded from the column without error", name)
		}
	}
	// Leaves stored before packing still read.
	old := append([]byte{tagS2Dict1}, dict1.Encode(nil, []byte(agentLeaf))...)
	if got, err := Decode(old); err != nil || string(got) != agentLeaf {
		t.Fatalf("a leaf stored with tag 0x01: %v", err)
	}
}

func BenchmarkLeafColumn(b *testing.B) {
	leaf := []byte(agentLeaf)
	b.Run("compact", func(b *testing.B) {
		b.SetBytes(int64(len(leaf)))
		var sc Scratch
		for b.Loop() {
			Compact(leaf, &sc)
		}
	})
	col := compact(leaf)
	b.Run("expand", func(b *testing.B) {
		b.SetBytes(int64(len(leaf)))
		var (
			dst []byte
			sc  Scratch
		)
		for b.Loop() {
			dst, _ = Expand(dst[:0], col, &sc)
		}
	})
}

func FuzzLeafColumn(f *testing.F) {
	f.Add([]byte(agentLeaf))
	f.Add([]byte(`{"id":"019b76da-a808-71ad-b4ef-42a8cdf1465a","h":"0123456789abcdef0123"}`))
	f.Add(compact([]byte(agentLeaf)))
	f.Fuzz(func(t *testing.T, b []byte) {
		// Any leaf round-trips through the column.
		if len(b) <= maxLeaf && (len(b) == 0 || b[0] == '{') {
			got, err := Decode(compact(b))
			if err != nil || !bytes.Equal(got, b) {
				t.Fatalf("round trip of %q: %q, %v", b, got, err)
			}
		}
		// Any column value decodes or fails; a packed one unpacks or fails.
		Decode(b)
		if p, err := unpackLeaf(nil, b); err == nil && len(p) > maxLeaf {
			t.Fatalf("unpacked %d bytes", len(p))
		}
	})
}
