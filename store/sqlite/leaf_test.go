package sqlite

import (
	"bytes"
	"fmt"
	"testing"
)

func TestLeafColumn(t *testing.T) {
	long := fmt.Appendf(nil, `{"actor":{"id":"agent:payments-bot","type":"agent"},"attributes":{"gen_ai.operation.name":"chat","gen_ai.request.model":"gpt-4o"},"id":"0193a5b0-7c1e-7000-8000-000000000001","kind":"inference","received_time":"2026-11-26T19:02:29.571614499Z","schema_version":1,"seq":42,"source":"ingest","tenant":"acme","time":"2026-11-26T10:00:00.123456Z"}`)
	for _, leaf := range [][]byte{long, []byte(`{"kind":"x"}`), bytes.Repeat([]byte("{"), 70000)[:65535]} {
		col := compactLeaf(leaf)
		if len(leaf) >= 64 && len(col) >= len(leaf) && !bytes.Equal(col, leaf) {
			t.Errorf("compactLeaf grew a leaf of %d bytes to %d", len(leaf), len(col))
		}
		got, err := DecodeLeafColumn(col)
		if err != nil || !bytes.Equal(got, leaf) {
			t.Fatalf("round trip of a %d-byte leaf: %v", len(leaf), err)
		}
	}
	if col := compactLeaf(long); col[0] != tagS2Dict1 || len(col) > len(long)*3/4 {
		t.Errorf("a typical leaf of %d bytes is stored in %d bytes, tag 0x%02x", len(long), len(col), col[0])
	}
	for name, col := range map[string][]byte{
		"unknown tag": {0x7f, 1, 2, 3},
		"truncated":   compactLeaf(long)[:20],
		"huge length": {tagS2Dict1, 0xff, 0xff, 0xff, 0xff, 0x0f},
	} {
		if _, err := DecodeLeafColumn(col); err == nil {
			t.Errorf("%s: decoded without error", name)
		}
	}
}
