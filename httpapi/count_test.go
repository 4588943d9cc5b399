package httpapi

import (
	"encoding/json"
	"strings"
	"testing"
)

// FuzzCountTopLevel: on a JSON array countTopLevel counts its elements as
// encoding/json does; on anything else it only must not fail.
func FuzzCountTopLevel(f *testing.F) {
	for _, s := range []string{
		`[]`, `[1]`, `[1,2,3]`, `[{"a":"b,c"},{"d":[1,2]}]`, `["a\"b",",",2]`,
		`["\\",3]`, `["\\\"",",",4]`, `["x\`, `["a\\\\"` + `,5]`, `[{"k":"}],["}, 6]`,
		`[ "a" , "b" ]`, `["unterminated, 7]`, `[` + strings.Repeat(`"\\\\\"",`, 20) + `1]`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got := countTopLevel(b)
		var elems []json.RawMessage
		if len(b) > 0 && b[0] == '[' && json.Unmarshal(b, &elems) == nil && got != len(elems) {
			t.Fatalf("countTopLevel(%q) = %d, want %d", b, got, len(elems))
		}
	})
}

// BenchmarkCountTopLevel counts a batch of 200 records of 1 KiB of text,
// as the load tool sends them: go test ./httpapi -run '^$' -bench CountTopLevel
func BenchmarkCountTopLevel(b *testing.B) {
	rec := `{"kind":"inference","source":"bench","content":{"prompt":"` + `\"Hi\", she said. ` + strings.Repeat(`lorem ipsum dolor sit amet, `, 36) + `"}}`
	batch := []byte("[" + strings.TrimSuffix(strings.Repeat(rec+",", 200), ",") + "]")
	b.SetBytes(int64(len(batch)))
	for b.Loop() {
		if countTopLevel(batch) != 200 {
			b.Fatal("miscounted")
		}
	}
}
