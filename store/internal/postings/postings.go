// Package postings holds what both stores do to the investigation index's
// postings before writing them: check, order, pack their keys, group them
// in blocks of records, and list what an erasure needs (erasable.go).
package postings

import (
	"cmp"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"

	"github.com/infertrail/infertrail"
)

// Check checks each posting's key and sequence number.
func Check(ps []infertrail.Posting) error {
	for i, p := range ps {
		if p.Key == "" || len(p.Key) > infertrail.MaxIndexKey {
			return fmt.Errorf("posting %d: field key: %d bytes, want 1 to %d: %w", i, len(p.Key), infertrail.MaxIndexKey, infertrail.ErrInvalid)
		}
		if p.Key[0] == TagTerms {
			return fmt.Errorf("posting %d: field key: begins with byte %#x, which marks a packed term key: %w", i, TagTerms, infertrail.ErrInvalid)
		}
		if p.Seq < 0 {
			return fmt.Errorf("posting %d: field seq: negative: %w", i, infertrail.ErrInvalid)
		}
	}
	return nil
}

// Sort returns a copy of ps in primary-key order (key, seq), without
// repeats, so that inserting it walks the B-tree once from left to right.
// A step of the indexer repeats each key over many records, in the order
// of their sequence numbers: the postings are grouped by key and only the
// distinct keys are sorted, which compares far fewer strings than sorting
// every posting.
func Sort(ps []infertrail.Posting) []infertrail.Posting {
	// Number the distinct keys, count each one's postings, and rank the
	// keys in order.
	ids := make(map[string]int32, len(ps)/8)
	var keys []string
	var counts []int
	of := make([]int32, len(ps))
	for i, p := range ps {
		id, ok := ids[p.Key]
		if !ok {
			id = int32(len(keys))
			ids[p.Key] = id
			keys = append(keys, p.Key)
			counts = append(counts, 0)
		}
		of[i] = id
		counts[id]++
	}
	order := make([]int32, len(keys))
	for i := range order {
		order[i] = int32(i)
	}
	slices.SortFunc(order, func(a, b int32) int { return strings.Compare(keys[a], keys[b]) })
	// Place each posting in its key's run, in the order they came.
	start := make([]int, len(keys)+1)
	at := 0
	for _, id := range order {
		start[id] = at
		at += counts[id]
	}
	next := slices.Clone(start[:len(keys)])
	placed := make([]infertrail.Posting, len(ps))
	for i, p := range ps {
		placed[next[of[i]]] = p
		next[of[i]]++
	}
	// Order each run by sequence number (the indexer's come in order), and
	// drop repeats, keeping the first.
	bySeq := func(a, b infertrail.Posting) int { return cmp.Compare(a.Seq, b.Seq) }
	out := placed[:0]
	for _, id := range order {
		run := placed[start[id] : start[id]+counts[id]]
		if !slices.IsSortedFunc(run, bySeq) {
			slices.SortStableFunc(run, bySeq)
		}
		for j, p := range run {
			if j == 0 || p.Seq != run[j-1].Seq {
				out = append(out, p)
			}
		}
	}
	return out
}

// Term keys, "term=" and 24 lowercase hexadecimal digits (the keys
// investigate.Terms makes, nearly every posting), are stored packed: a
// byte TagTerms and the first StoredTagLen of the 12 bytes the digits
// spell, 9 bytes instead of 29. The 12 bytes are a keyed hash of a word:
// 8 of them keep two words of a hundred million apart but for a chance of
// about 1 in 3,700 (were two to share their bytes, a search for one would
// also list the records of the other). Cutting the tag keeps the order of
// the keys, as the stores write them. (Until 2026-11-29 the stores kept
// all 12 bytes: the index file's migration 6 and PostgreSQL's migration 12
// cut them.)
const (
	TagTerms     = 0x01
	TagLen       = 12 // bytes a term key's digits spell
	StoredTagLen = 8  // of them stored
	keyAt        = len(infertrail.IndexTerm) + 1
)

// AppendTag appends the first StoredTagLen bytes of term key k's tag to
// dst, or reports that k is not a term key in lowercase hexadecimal
// (which, decoded, would not encode back the same).
func AppendTag(dst []byte, k string) ([]byte, bool) {
	if len(k) != keyAt+2*TagLen || k[:keyAt] != infertrail.IndexTerm+"=" {
		return dst, false
	}
	for _, c := range []byte(k[keyAt:]) {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return dst, false
		}
	}
	dst, _ = hex.AppendDecode(dst, []byte(k[keyAt:keyAt+2*StoredTagLen])) // checked above
	return dst, true
}

// Pack appends term key k packed, TagTerms and its stored tag, to *buf
// and returns that part of *buf, or reports that k is not a term key.
// Slices returned before stay valid when *buf grows.
func Pack(buf *[]byte, k string) ([]byte, bool) {
	n := len(*buf)
	b, ok := AppendTag(append(*buf, TagTerms), k)
	if !ok {
		return nil, false
	}
	*buf = b
	return b[n:len(b):len(b)], true
}
