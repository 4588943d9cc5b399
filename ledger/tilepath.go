package ledger

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/tlog"
)

// Tile geometry of C2SP tlog-tiles (https://c2sp.org/tlog-tiles).
const (
	TileHeight = 8               // each tile spans 8 tree levels
	TileWidth  = 1 << TileHeight // a full tile holds 256 hashes or entries
	MaxLevel   = 63              // highest tile level a path may name
)

// MaxEntrySize is the largest entry, in bytes, an entry bundle can carry.
const MaxEntrySize = 0xFFFF

// TilePath returns the tlog-tiles path of the Merkle tile at level and index
// holding width hashes, such as "tile/0/x001/234" for a full tile or
// "tile/1/005.p/17" for a partial one. It panics if level is outside
// [0, MaxLevel], index is negative or width is outside [1, TileWidth].
func TilePath(level int, index int64, width int) string {
	if level < 0 || level > MaxLevel {
		panic(fmt.Sprintf("ledger: tile level %d out of range", level))
	}
	return tilePath(strconv.Itoa(level), index, width)
}

// EntriesPath returns the tlog-tiles path of the entry bundle with the given
// index holding width entries, such as "tile/entries/x001/234" or
// "tile/entries/000.p/3". It panics if index is negative or width is outside
// [1, TileWidth].
func EntriesPath(index int64, width int) string {
	return tilePath("entries", index, width)
}

func tilePath(kind string, index int64, width int) string {
	if index < 0 {
		panic(fmt.Sprintf("ledger: negative tile index %d", index))
	}
	if width < 1 || width > TileWidth {
		panic(fmt.Sprintf("ledger: tile width %d out of range", width))
	}
	var groups []int64
	for n := index; ; n /= 1000 {
		groups = append(groups, n%1000)
		if n < 1000 {
			break
		}
	}
	b := make([]byte, 0, 32)
	b = append(b, "tile/"...)
	b = append(b, kind...)
	for i := len(groups) - 1; i >= 0; i-- {
		b = append(b, '/')
		if i > 0 {
			b = append(b, 'x')
		}
		g := groups[i]
		b = append(b, byte('0'+g/100), byte('0'+g/10%10), byte('0'+g%10))
	}
	if width < TileWidth {
		b = append(b, ".p/"...)
		b = strconv.AppendInt(b, int64(width), 10)
	}
	return string(b)
}

// ParseTilePath parses a tlog-tiles path of a Merkle tile ("tile/<L>/<N>")
// or of an entry bundle ("tile/entries/<N>"), with an optional ".p/<W>"
// partial suffix. For entry bundles level is -1 and entries is true. Full
// tiles have width TileWidth. Only the canonical encoding is accepted, so
// that TilePath or EntriesPath gives back p.
func ParseTilePath(p string) (level int, index int64, width int, entries bool, err error) {
	fail := func(reason string, args ...any) (int, int64, int, bool, error) {
		return 0, 0, 0, false, malformed("tile path", "%q: %s", p, fmt.Sprintf(reason, args...))
	}
	rest, ok := strings.CutPrefix(p, "tile/")
	if !ok {
		return fail("does not start with tile/")
	}
	kind, rest, ok := strings.Cut(rest, "/")
	if !ok {
		return fail("no index")
	}
	if kind == "entries" {
		level, entries = -1, true
	} else {
		l, err := parseDecimal(kind)
		if err != nil {
			return fail("level: %v", err)
		}
		if l > MaxLevel {
			return fail("level %d above %d", l, MaxLevel)
		}
		level = int(l)
	}
	width = TileWidth
	if i := strings.Index(rest, ".p/"); i >= 0 {
		w, err := parseDecimal(rest[i+len(".p/"):])
		if err != nil {
			return fail("width: %v", err)
		}
		if w < 1 || w >= TileWidth {
			return fail("partial width %d outside [1, %d]", w, TileWidth-1)
		}
		width, rest = int(w), rest[:i]
	}
	index, err = parseTileIndex(rest)
	if err != nil {
		return fail("index: %v", err)
	}
	return level, index, width, entries, nil
}

// parseTileIndex parses the "x001/x234/067" encoding of a tile index.
func parseTileIndex(s string) (int64, error) {
	elems := strings.Split(s, "/")
	var n int64
	for i, e := range elems {
		last := i == len(elems)-1
		if !last {
			var ok bool
			if e, ok = strings.CutPrefix(e, "x"); !ok {
				return 0, fmt.Errorf("element %d lacks the x prefix", i+1)
			}
		}
		if len(e) != 3 || e[0] < '0' || e[0] > '9' || e[1] < '0' || e[1] > '9' || e[2] < '0' || e[2] > '9' {
			return 0, fmt.Errorf("element %d is not three digits", i+1)
		}
		g := int64(e[0]-'0')*100 + int64(e[1]-'0')*10 + int64(e[2]-'0')
		if i == 0 && g == 0 && !last {
			return 0, errors.New("leading zero group")
		}
		if n > (1<<63-1-g)/1000 {
			return 0, errors.New("out of range")
		}
		n = n*1000 + g
	}
	return n, nil
}

// tileCovered reports whether a tree of treeSize leaves fully covers the
// width hashes of the Merkle tile at level and index, that is whether
// (index*TileWidth + width) * TileWidth**level <= treeSize.
func tileCovered(treeSize int64, level int, index int64, width int) bool {
	if treeSize < 0 || level < 0 || level > MaxLevel || index < 0 || width < 1 || width > TileWidth {
		return false
	}
	if index > (math.MaxInt64-TileWidth)/TileWidth {
		return false
	}
	end := index*TileWidth + int64(width) // in hashes at tree level 8*level
	return end <= treeSize>>(uint(level)*TileHeight)
}

// ReadTile returns the bytes of the Merkle tile at level and index with
// width hashes (the concatenated hashes, as served) for a tree of treeSize
// leaves, reading the stored hashes from r. It fails if the tree does not
// fully cover the tile at that width.
func ReadTile(r tlog.HashReader, treeSize int64, level int, index int64, width int) ([]byte, error) {
	if !tileCovered(treeSize, level, index, width) {
		return nil, fmt.Errorf("read tile level %d index %d width %d: %w", level, index, width,
			malformed("tile", "not covered by a tree of size %d", treeSize))
	}
	t := tlog.Tile{H: TileHeight, L: level, N: index, W: width}
	data, err := tlog.ReadTileData(t, r)
	if err != nil {
		return nil, fmt.Errorf("read tile %s: %w", TilePath(level, index, width), err)
	}
	return data, nil
}

// AppendEntry appends entry to the entry bundle dst with its 2-byte
// big-endian length prefix and returns the extended bundle. It panics if
// entry is longer than MaxEntrySize; callers check the size when they accept
// an entry.
func AppendEntry(dst, entry []byte) []byte {
	if len(entry) > MaxEntrySize {
		panic(fmt.Sprintf("ledger: entry of %d bytes exceeds %d", len(entry), MaxEntrySize))
	}
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(entry)))
	return append(dst, entry...)
}

// ParseEntryBundle splits an entry bundle into its entries, which alias b.
// It fails on an empty bundle, on a truncated length or entry, and on more
// than TileWidth entries.
func ParseEntryBundle(b []byte) ([][]byte, error) {
	if len(b) == 0 {
		return nil, malformed("entry bundle", "empty")
	}
	var entries [][]byte
	for off := 0; off < len(b); {
		if len(entries) == TileWidth {
			return nil, malformed("entry bundle", "more than %d entries (trailing bytes at offset %d)", TileWidth, off)
		}
		if len(b)-off < 2 {
			return nil, malformed("entry bundle", "entry %d: truncated length prefix at offset %d", len(entries), off)
		}
		n := int(binary.BigEndian.Uint16(b[off:]))
		off += 2
		if len(b)-off < n {
			return nil, malformed("entry bundle", "entry %d: length %d but only %d bytes left", len(entries), n, len(b)-off)
		}
		entries = append(entries, b[off:off+n:off+n])
		off += n
	}
	return entries, nil
}
