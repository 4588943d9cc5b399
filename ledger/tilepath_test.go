package ledger

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"filippo.io/torchwood"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/infertrail/infertrail"
)

func TestTilePath(t *testing.T) {
	tests := []struct {
		level   int
		index   int64
		width   int
		entries bool
		path    string
	}{
		{0, 0, 256, false, "tile/0/000"},
		{0, 1234, 256, false, "tile/0/x001/234"},
		{1, 5, 17, false, "tile/1/005.p/17"},
		{0, 1234067, 256, false, "tile/0/x001/x234/067"},
		{2, 0, 1, false, "tile/2/000.p/1"},
		{63, 999, 255, false, "tile/63/999.p/255"},
		{0, 1000, 256, false, "tile/0/x001/000"},
		{0, 1 << 62, 256, false, "tile/0/x004/x611/x686/x018/x427/x387/904"},
		{-1, 0, 256, true, "tile/entries/000"},
		{-1, 1234, 3, true, "tile/entries/x001/234.p/3"},
		{-1, 9223372036854775807, 256, true, "tile/entries/x009/x223/x372/x036/x854/x775/807"},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			var got string
			if tt.entries {
				got = EntriesPath(tt.index, tt.width)
			} else {
				got = TilePath(tt.level, tt.index, tt.width)
			}
			if got != tt.path {
				t.Errorf("path = %q, want %q", got, tt.path)
			}
			// torchwood is an independent implementation of the same scheme.
			if tw := torchwood.TilePath(tlog.Tile{H: TileHeight, L: tt.level, N: tt.index, W: tt.width}); tw != tt.path {
				t.Errorf("torchwood.TilePath = %q, want %q", tw, tt.path)
			}
			level, index, width, entries, err := ParseTilePath(tt.path)
			if err != nil {
				t.Fatal(err)
			}
			if level != tt.level || index != tt.index || width != tt.width || entries != tt.entries {
				t.Errorf("ParseTilePath = %d, %d, %d, %v", level, index, width, entries)
			}
		})
	}
}

func TestParseTilePathInvalid(t *testing.T) {
	for _, p := range []string{
		"",
		"checkpoint",
		"tile/0",
		"tile/0/",
		"tile//000",
		"tile/00/000",
		"tile/01/000",
		"tile/64/000",
		"tile/-1/000",
		"tile/+1/000",
		"tile/a/000",
		"tile/0/00",
		"tile/0/0000",
		"tile/0/1",
		"tile/0/x000/001",
		"tile/0/x001",
		"tile/0/001/234",
		"tile/0/x001/x234",
		"tile/0/x01/234",
		"tile/0/y001/234",
		"tile/0/00a",
		"tile/0/000.p/0",
		"tile/0/000.p/256",
		"tile/0/000.p/300",
		"tile/0/000.p/01",
		"tile/0/000.p/",
		"tile/0/000.p/1/",
		"tile/0/000.p/-1",
		"tile/0/000.p/+1",
		"tile/0/000.P/1",
		"tile/0/000.p.p/1",
		"tile/0/x001.p/1/234",
		"tile/0/000/",
		"/tile/0/000",
		"tile/0/x010/x000/x000/x000/x000/x000/x000/000",
		"tile/0/x009/x223/x372/x036/x854/x775/808",
		"tile/entries",
		"tile/entries/",
		"tile/entry/000",
		"tile/entries/000.p/256",
		"tile/data/000",
		"tile/8/0/000",
	} {
		t.Run(p, func(t *testing.T) {
			if l, n, w, e, err := ParseTilePath(p); err == nil {
				t.Fatalf("ParseTilePath(%q) = %d, %d, %d, %v; want an error", p, l, n, w, e)
			} else if !errors.Is(err, infertrail.ErrInvalid) || !strings.Contains(err.Error(), "tile path") {
				t.Errorf("error %q does not name the tile path or match ErrInvalid", err)
			}
		})
	}
}

func TestTilePathPanics(t *testing.T) {
	for name, f := range map[string]func(){
		"negative index": func() { TilePath(0, -1, 1) },
		"zero width":     func() { TilePath(0, 0, 0) },
		"wide":           func() { EntriesPath(0, 257) },
		"level 64":       func() { TilePath(64, 0, 1) },
		"level -1":       func() { TilePath(-1, 0, 1) },
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Error("no panic")
				}
			}()
			f()
		})
	}
}

// FuzzParseTilePath checks that every accepted path is canonical: formatting
// what was parsed gives back the same path, and torchwood agrees.
func FuzzParseTilePath(f *testing.F) {
	for _, s := range []string{"tile/0/000", "tile/1/x001/234.p/17", "tile/entries/x123/456", "tile/63/999.p/255", "tile/0/x000/001", "tile/0/000.p/256"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		level, index, width, entries, err := ParseTilePath(p)
		if err != nil {
			return
		}
		var got string
		if entries {
			if level != -1 {
				t.Fatalf("entries path %q has level %d", p, level)
			}
			got = EntriesPath(index, width)
		} else {
			got = TilePath(level, index, width)
		}
		if got != p {
			t.Fatalf("ParseTilePath(%q) then format = %q", p, got)
		}
		tt, err := torchwood.ParseTilePath(p)
		if err != nil {
			t.Fatalf("torchwood rejects %q: %v", p, err)
		}
		if tt.L != level || tt.N != index || tt.W != width {
			t.Fatalf("torchwood parses %q as %+v", p, tt)
		}
	})
}

func TestEntryBundle(t *testing.T) {
	tests := []struct {
		name    string
		entries [][]byte
	}{
		{"one", [][]byte{[]byte("a")}},
		{"empty entry", [][]byte{{}}},
		{"several", [][]byte{[]byte("hello"), {}, []byte("world")}},
		{"max size", [][]byte{bytes.Repeat([]byte{7}, MaxEntrySize), []byte("x")}},
		{"full", func() [][]byte {
			var es [][]byte
			for i := range TileWidth {
				es = append(es, testEntry(i))
			}
			return es
		}()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b []byte
			for _, e := range tt.entries {
				b = AppendEntry(b, e)
			}
			var tw []byte
			for _, e := range tt.entries {
				var err error
				if tw, err = torchwood.AppendTileEntry(tw, e); err != nil {
					t.Fatal(err)
				}
			}
			if !bytes.Equal(b, tw) {
				t.Error("AppendEntry and torchwood.AppendTileEntry differ")
			}
			got, err := ParseEntryBundle(b)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.entries) {
				t.Fatalf("got %d entries, want %d", len(got), len(tt.entries))
			}
			for i := range got {
				if !bytes.Equal(got[i], tt.entries[i]) {
					t.Errorf("entry %d = %q, want %q", i, got[i], tt.entries[i])
				}
			}
		})
	}
}

func TestParseEntryBundleInvalid(t *testing.T) {
	full := []byte{}
	for range TileWidth {
		full = AppendEntry(full, []byte("e"))
	}
	tests := []struct {
		name string
		b    []byte
		want string
	}{
		{"empty", nil, "empty"},
		{"one byte", []byte{0}, "truncated length"},
		{"trailing byte", []byte{0, 1, 'a', 0}, "entry 1: truncated length"},
		{"short entry", []byte{0, 3, 'a', 'b'}, "entry 0: length 3"},
		{"too many", AppendEntry(full, nil), "more than 256"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseEntryBundle(tt.b)
			if err == nil || !strings.Contains(err.Error(), tt.want) || !errors.Is(err, infertrail.ErrInvalid) {
				t.Errorf("ParseEntryBundle error = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestAppendEntryTooLarge(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("AppendEntry did not panic on an oversized entry")
		}
	}()
	AppendEntry(nil, make([]byte, MaxEntrySize+1))
}

// FuzzParseEntryBundle checks that parsing then re-encoding a bundle gives
// back the same bytes.
func FuzzParseEntryBundle(f *testing.F) {
	f.Add([]byte{0, 1, 'a', 0, 0})
	f.Add([]byte{0, 3, 'a'})
	f.Fuzz(func(t *testing.T, b []byte) {
		entries, err := ParseEntryBundle(b)
		if err != nil {
			return
		}
		var again []byte
		for _, e := range entries {
			again = AppendEntry(again, e)
		}
		if !bytes.Equal(again, b) {
			t.Fatalf("round trip of %x gave %x", b, again)
		}
	})
}
