package sqlite

import (
	"errors"
	"slices"
	"testing"
)

// TestPackTerms: term keys pack as their tags, 12 bytes each; other lists
// as compressed text, the form of every list before, which still unpacks;
// a damaged list is an error that says so.
func TestPackTerms(t *testing.T) {
	tags := []string{"term=0123456789abcdef01234567", "term=fedcba987654321001234567"}
	for _, c := range []struct {
		name  string
		keys  []string
		short bool // packed as tags
	}{
		{"term keys", tags, true},
		{"none", nil, true},
		{"another key among them", append(slices.Clone(tags), "term=word"), false},
		{"upper-case hexadecimal", []string{"term=0123456789ABCDEF01234567"}, false},
		{"another field", []string{"tool=0123456789abcdef01234567"}, false},
	} {
		packed := packTerms(c.keys)
		if short := len(packed) > 0 && packed[0] == tagTerms; short != c.short {
			t.Errorf("%s: packed as tags: %v, want %v", c.name, short, c.short)
		}
		if c.short && len(packed) != 1+termTag*len(c.keys) {
			t.Errorf("%s: %d bytes packed, want %d", c.name, len(packed), 1+termTag*len(c.keys))
		}
		got, err := unpackTerms(packed)
		if err != nil || !slices.Equal(got, c.keys) && len(c.keys) > 0 {
			t.Errorf("%s: unpacked %q, %v; want %q", c.name, got, err, c.keys)
		}
	}
	for _, bad := range [][]byte{{tagTerms, 1, 2, 3}, {0x28, 0xb5, 0x2f, 0xfd, 0}, {0xff}} {
		if _, err := unpackTerms(bad); !errors.Is(err, errDamagedTerms) {
			t.Errorf("unpack %x: %v, want damaged", bad, err)
		}
	}
}
