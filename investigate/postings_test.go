package investigate

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/infertrail/infertrail"
)

// wholeFieldPostings is ContentPostings as it was before it went element
// by element: the words of each whole field.
func wholeFieldPostings(t *Terms, e *infertrail.Entry, content map[string]json.RawMessage) []infertrail.Posting {
	var out []infertrail.Posting
	seen := map[string]bool{}
	k := t.keyer()
	for _, ref := range e.Content {
		v, ok := content[ref.Field]
		if !ok {
			continue
		}
		max := MaxTermsPerRecord - len(seen)
		if max <= 0 {
			break
		}
		var b strings.Builder
		for t := range infertrail.Texts(v) {
			b.WriteString(t)
			b.WriteByte(' ')
			if b.Len() > maxFieldText {
				break
			}
		}
		for _, w := range Words(b.String(), max) {
			if key := k.key(w); !seen[key] {
				seen[key] = true
				out = append(out, infertrail.Posting{Key: key, Seq: e.Seq, DataKey: ref.Key})
			}
		}
		if len(seen) >= MaxTermsPerRecord {
			break
		}
	}
	return out
}

// TestContentPostingsByElement: the postings of a record computed element
// by element (as the engine does, each element's terms cached by blob) are
// those of its whole fields, in the same order, the bound of
// MaxTermsPerRecord included.
func TestContentPostingsByElement(t *testing.T) {
	terms, err := NewTerms(make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	text := func(words, vocab int) string {
		var b strings.Builder
		for i := range words {
			if i > 0 {
				b.WriteString([]string{" ", ", ", ". ", "\n"}[rng.IntN(4)])
			}
			switch rng.IntN(10) {
			case 0:
				fmt.Fprintf(&b, "call_%x", rng.IntN(vocab))
			case 1:
				fmt.Fprintf(&b, "user%d@acme.example", rng.IntN(vocab))
			default:
				fmt.Fprintf(&b, "w%d", rng.IntN(vocab))
			}
		}
		return b.String()
	}
	value := func(vocab int) any {
		switch rng.IntN(4) {
		case 0:
			return text(1+rng.IntN(40), vocab)
		case 1:
			return rng.IntN(100000)
		case 2:
			return map[string]any{"role": "user", "content": text(1+rng.IntN(300), vocab), "n": rng.Float64()}
		default:
			return []any{text(rng.IntN(5), vocab), map[string]any{"type": "text", "text": text(1+rng.IntN(100), vocab)}}
		}
	}
	for n := range 300 {
		vocab := []int{20, 500, 5000}[n%3]
		e := &infertrail.Entry{Seq: int64(n)}
		content := map[string]json.RawMessage{}
		for f := range 1 + rng.IntN(4) {
			name := fmt.Sprintf("field%d", f)
			var v any = value(vocab)
			if rng.IntN(2) == 0 {
				els := make([]any, rng.IntN(12))
				for i := range els {
					els[i] = value(vocab)
				}
				v = els
			}
			if n%50 == 0 && f == 0 {
				v = text(6000, 100000) // past MaxTermsPerRecord alone
			}
			raw, _ := json.Marshal(v)
			canon, err := infertrail.Canonicalize(raw)
			if err != nil {
				t.Fatal(err)
			}
			content[name] = canon
			e.Content = append(e.Content, infertrail.ContentRef{Field: name, Key: infertrail.KeyID{byte(f + 1)}})
		}
		if n%7 == 0 {
			e.Content = append(e.Content, infertrail.ContentRef{Field: "missing"})
		}
		got := terms.ContentPostings(e, content)
		want := wholeFieldPostings(terms, e, content)
		if !slices.Equal(got, want) {
			t.Fatalf("record %d: %d postings element by element, %d field by field (first difference at %d)",
				n, len(got), len(want), firstDifference(got, want))
		}
		if n%50 == 0 && len(got) != MaxTermsPerRecord {
			t.Errorf("record %d: %d postings, want the bound %d", n, len(got), MaxTermsPerRecord)
		}
	}
}

func firstDifference(a, b []infertrail.Posting) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// TestTermCacheBounded: the cache keeps about its limit in bytes, the
// newest entries, and an entry read from the old generation stays.
func TestTermCacheBounded(t *testing.T) {
	c := newTermCache(100 << 10)
	et := elementTerms{keys: []string{"term=0123456789abcdef01234567"}, text: 10}
	id := func(i int) infertrail.BlobID { return infertrail.BlobID{byte(i), byte(i >> 8), byte(i >> 16)} }
	keep := id(0)
	c.put(keep, et)
	for i := 1; i < 10000; i++ {
		c.put(id(i), et)
		if i%100 == 0 {
			if _, ok := c.get(keep); !ok {
				t.Fatalf("entry read every 100 puts is gone after %d", i)
			}
		}
	}
	if _, ok := c.get(id(9999)); !ok {
		t.Error("the newest entry is gone")
	}
	if _, ok := c.get(id(1)); ok {
		t.Error("an old entry never read again is still there")
	}
	n := 0
	for i := range 10000 {
		if _, ok, _ := c.m.Peek(id(i)); ok {
			n++
		}
	}
	if max := 100 << 10 / et.size(); n > max+1 {
		t.Errorf("%d entries kept, more than the %d the limit holds", n, max)
	}
}
