package keys

import (
	"bytes"
	"strings"
	"testing"
)

func TestFormatParse(t *testing.T) {
	a, err := generateEntry(nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := generateEntry(map[string]*entry{a.id: a})
	if err != nil {
		t.Fatal(err)
	}
	// a is current although b is as new: the marker decides.
	r := newRing([]*entry{a, b}, a)
	src := r.format()
	got, err := parseKeyring(src)
	if err != nil {
		t.Fatalf("parse what format wrote: %v\n%s", err, src)
	}
	if got.current.id != a.id || len(got.keks) != 2 {
		t.Fatalf("parsed current %q, %d KEKs", got.current.id, len(got.keks))
	}
	for i, e := range got.keks {
		w := r.keks[i]
		if e.id != w.id || e.key != w.key || !e.created.Equal(w.created) {
			t.Fatalf("KEK %d: parsed %s %v, wrote %s %v", i, e.id, e.created, w.id, w.created)
		}
	}
	if !bytes.Equal(got.format(), src) {
		t.Fatalf("format is not stable:\n%s\n%s", src, got.format())
	}
	if !strings.HasPrefix(string(src), "# ") || strings.Count(string(src), " current\n") != 1 {
		t.Fatalf("unexpected file:\n%s", src)
	}
}

// FuzzParseKeyring checks that no input makes the parser panic, that what
// it accepts formats to a file it accepts again with the same KEKs, and
// that its errors never quote a key.
func FuzzParseKeyring(f *testing.F) {
	const key = "0101010101010101010101010101010101010101010101010101010101010101"
	f.Add([]byte(fileComment + fileMagic + "\nkek-0a1b2c3d 2026-11-26T10:00:00Z " + key + " current\n"))
	f.Add([]byte(fileMagic + "\nkek-a 2026-11-26T10:00:00.5+02:00 " + key + "\nkek-b 2026-11-27T10:00:00Z " + strings.ToUpper(key) + "\n"))
	f.Add([]byte(fileMagic + "\n"))
	f.Add([]byte(fileMagic + "\nkek-a 2026-11-26T10:00:00Z " + key[:40]))
	f.Add([]byte("\x00\xff\n#\n"))
	f.Fuzz(func(t *testing.T, src []byte) {
		r, err := parseKeyring(src)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "line ") {
				t.Fatalf("error does not name a line: %v", err)
			}
			return
		}
		if r.current == nil || len(r.keks) == 0 || len(r.byID) != len(r.keks) {
			t.Fatalf("parsed a keyring without KEKs or current")
		}
		out := r.format()
		again, err := parseKeyring(out)
		if err != nil {
			t.Fatalf("parse formatted keyring: %v\n%s", err, out)
		}
		if again.current.id != r.current.id || len(again.keks) != len(r.keks) {
			t.Fatalf("formatting changed the keyring")
		}
		for i, e := range again.keks {
			if e.id != r.keks[i].id || e.key != r.keks[i].key || !e.created.Equal(r.keks[i].created) {
				t.Fatalf("formatting changed KEK %d", i)
			}
		}
		if !bytes.Equal(again.format(), out) {
			t.Fatalf("format is not a fixed point")
		}
	})
}
