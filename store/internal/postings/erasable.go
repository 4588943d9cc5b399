package postings

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/infertrail/infertrail"
)

// An erasure of a data key clears, from the postings, the bits of the
// records whose content was under the key, for every key derived from
// content (search terms). Both stores keep two things for it:
//
//   - key_records: for each data key, the records whose content gave
//     postings under it, one bitmap per block of records (a KeyBlock);
//   - block_terms: for each block of records, the keys of the postings
//     derived from content in it, in their stored form, as one list
//     (a BlockList, encoded by AppendList).
//
// An erasure reads its key's blocks, clears its records' bits from every
// key each block lists, and drops from a block's list the keys left with
// no bit in it. A block's list holds each key once, however many records
// and sessions of the block carry it; lists per data key repeated the
// words of every session's system prompt and tool schemas, and took more
// room than the postings themselves. Only erased records' bits are
// cleared: a record whose content is under several keys keeps the bits an
// erasure of one of them cannot tell apart from the others' (the server
// seals all of a record's content under one key).

// A KeyBlock is the records of one block whose content was under data key
// Key: bit i of Bits set for record Block<<BlockBits + i.
type KeyBlock struct {
	Key   infertrail.KeyID
	Block int64
	Bits  int64
}

// A BlockList is the stored keys (Stored) of the postings derived from
// content in one block of records, in order, without repeats.
type BlockList struct {
	Block int64
	Keys  []string
}

// Erasable returns what ps, in Sort's order, adds for erasures: the blocks
// of each data key's records, in (key, block) order, and the keys of each
// block's postings derived from content, in block order. Postings derived
// from the leaf (no data key) add nothing.
func Erasable(ps []infertrail.Posting) ([]KeyBlock, []BlockList) {
	type at struct {
		key   infertrail.KeyID
		block int64
	}
	bits := map[at]int64{}
	byBlock := map[int64][]string{}
	var (
		last   string
		stored string
	)
	for i, p := range ps {
		if p.DataKey.IsZero() {
			continue
		}
		block, bit := BlockOf(p.Seq)
		bits[at{p.DataKey, block}] |= bit
		if i == 0 || p.Key != last {
			last, stored = p.Key, Stored(p.Key)
		}
		// A key's postings come together, so a repeat in a block is
		// the list's last key.
		l := byBlock[block]
		if n := len(l); n == 0 || l[n-1] != stored {
			byBlock[block] = append(l, stored)
		}
	}
	owners := make([]KeyBlock, 0, len(bits))
	for a, b := range bits {
		owners = append(owners, KeyBlock{Key: a.key, Block: a.block, Bits: b})
	}
	slices.SortFunc(owners, func(a, b KeyBlock) int {
		return cmp.Or(slices.Compare(a.Key[:], b.Key[:]), cmp.Compare(a.Block, b.Block))
	})
	lists := make([]BlockList, 0, len(byBlock))
	for b, keys := range byBlock {
		slices.Sort(keys)
		lists = append(lists, BlockList{Block: b, Keys: slices.Compact(keys)})
	}
	slices.SortFunc(lists, func(a, b BlockList) int { return cmp.Compare(a.Block, b.Block) })
	return owners, lists
}

// Stored returns index key k as both stores hold it: a term key packed
// (TagTerms and its tag, Pack), any other key as it is. No other key
// begins with TagTerms (Check).
func Stored(k string) string {
	var buf []byte
	if b, ok := Pack(&buf, k); ok {
		return string(b)
	}
	return k
}

// StoredLen is the length of a stored term key.
const StoredLen = 1 + StoredTagLen

// A list of stored keys is encoded as its keys one after the other: a
// packed term key as its StoredLen bytes (it begins with TagTerms), any
// other key as a zero byte, its length as an unsigned varint and its
// bytes.

// AppendList appends the encoding of keys, stored keys, to dst.
func AppendList(dst []byte, keys []string) []byte {
	for _, k := range keys {
		if len(k) == StoredLen && k[0] == TagTerms {
			dst = append(dst, k...)
			continue
		}
		dst = append(dst, 0)
		dst = binary.AppendUvarint(dst, uint64(len(k)))
		dst = append(dst, k...)
	}
	return dst
}

// ErrDamagedList marks a stored list of keys that cannot be decoded.
var ErrDamagedList = errors.New("the stored list of keys is damaged")

// ParseList returns the stored keys a list encodes, as AppendList wrote
// them.
func ParseList(b []byte) ([]string, error) {
	keys := make([]string, 0, len(b)/StoredLen)
	for len(b) > 0 {
		switch b[0] {
		case TagTerms:
			if len(b) < StoredLen {
				return nil, fmt.Errorf("key %d: %d bytes of a term key, want %d: %w", len(keys), len(b), StoredLen, ErrDamagedList)
			}
			keys = append(keys, string(b[:StoredLen]))
			b = b[StoredLen:]
		case 0:
			n, w := binary.Uvarint(b[1:])
			if w <= 0 || n == 0 || n > uint64(len(b)-1-w) {
				return nil, fmt.Errorf("key %d: a damaged length: %w", len(keys), ErrDamagedList)
			}
			keys = append(keys, string(b[1+w:1+w+int(n)]))
			b = b[1+w+int(n):]
		default:
			return nil, fmt.Errorf("key %d: begins with byte %#x: %w", len(keys), b[0], ErrDamagedList)
		}
	}
	return keys, nil
}

// Merge returns the union of a and b, both in order and without repeats.
func Merge(a, b []string) []string {
	out := make([]string, 0, len(a)+len(b))
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		switch {
		case j == len(b) || i < len(a) && a[i] < b[j]:
			out = append(out, a[i])
			i++
		case i == len(a) || b[j] < a[i]:
			out = append(out, b[j])
			j++
		default:
			out = append(out, a[i])
			i, j = i+1, j+1
		}
	}
	return out
}
