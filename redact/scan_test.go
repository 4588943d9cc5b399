package redact

import (
	"bytes"
	"testing"
)

// TestScanCacheAdmit: a string's scan result is remembered on its second
// sight, not its first, and then comes from the cache, the same as a scan.
func TestScanCacheAdmit(t *testing.T) {
	r, err := New(Config{FingerprintSecret: bytes.Repeat([]byte{1}, 32)})
	if err != nil {
		t.Fatal(err)
	}
	s := "a long enough message with card 4111 1111 1111 1111 and nothing else"
	var sc scratch
	for sight := 1; sight <= 3; sight++ {
		_, cached := r.seen.get(s)
		if want := sight == 3; cached != want {
			t.Fatalf("sight %d: remembered %v, want %v", sight, cached, want)
		}
		r.find(&sc, s, "", 0)
		if len(sc.matches) != 1 {
			t.Fatalf("sight %d: %d matches, want 1 (the card number)", sight, len(sc.matches))
		}
	}
	if _, cached := r.seen.get("another string, long enough to be remembered, seen once"); cached {
		t.Error("a string never scanned is remembered")
	}
}
