package httpapi

import (
	"strings"
	"testing"
)

// countBytewise is countTopLevel as first written, a byte at a time: the
// reference the faster one must agree with.
func countBytewise(b []byte) int {
	if len(b) == 0 || b[0] != '[' {
		return 0
	}
	depth, n, inStr, any := 0, 0, false, false
	for i := 0; i < len(b); i++ {
		c := b[i]
		if inStr {
			switch c {
			case '\\':
				i++
			case '"':
				inStr = false
			}
			continue
		}
		switch c {
		case '"':
			inStr = true
			if depth == 1 {
				any = true
			}
		case '[', '{':
			if depth == 1 {
				any = true
			}
			depth++
		case ']', '}':
			depth--
		case ',':
			if depth == 1 {
				n++
			}
		case ' ', '\t', '\r', '\n':
		default:
			if depth == 1 {
				any = true
			}
		}
	}
	if any {
		n++
	}
	return n
}

func FuzzCountTopLevel(f *testing.F) {
	for _, s := range []string{
		`[]`, `[1]`, `[1,2,3]`, `[{"a":"b,c"},{"d":[1,2]}]`, `["a\"b",",",2]`,
		`["\\",3]`, `["\\\"",",",4]`, `["x\`, `["a\\\\"` + `,5]`, `[{"k":"}],["}, 6]`,
		`[ "a" , "b" ]`, `["unterminated, 7]`, `[` + strings.Repeat(`"\\\\\"",`, 20) + `1]`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if got, want := countTopLevel(b), countBytewise(b); got != want {
			t.Fatalf("countTopLevel(%q) = %d, want %d", b, got, want)
		}
	})
}

// BenchmarkCountTopLevel counts a batch of 200 records of 1 KiB of text,
// as the load tool sends them: go test ./httpapi -run '^$' -bench CountTopLevel
func BenchmarkCountTopLevel(b *testing.B) {
	rec := `{"kind":"inference","source":"bench","content":{"prompt":"` + `\"Hi\", she said. ` + strings.Repeat(`lorem ipsum dolor sit amet, `, 36) + `"}}`
	batch := []byte("[" + strings.TrimSuffix(strings.Repeat(rec+",", 200), ",") + "]")
	for _, c := range []struct {
		name string
		fn   func([]byte) int
	}{{"bytewise", countBytewise}, {"indexbyte", countTopLevel}} {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(batch)))
			for b.Loop() {
				if c.fn(batch) != 200 {
					b.Fatal("miscounted")
				}
			}
		})
	}
}
