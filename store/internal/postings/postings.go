// Package postings holds what both stores do to the investigation index's
// postings before writing them: check, order, and group the postings of
// search terms by the data key their content was under.
package postings

import (
	"cmp"
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
		if p.Seq < 0 {
			return fmt.Errorf("posting %d: field seq: negative: %w", i, infertrail.ErrInvalid)
		}
	}
	return nil
}

// Sort returns a copy of ps in primary-key order (key, seq), without
// repeats, so that inserting it walks the B-tree once from left to right.
func Sort(ps []infertrail.Posting) []infertrail.Posting {
	out := slices.Clone(ps)
	slices.SortFunc(out, func(a, b infertrail.Posting) int {
		return cmp.Or(strings.Compare(a.Key, b.Key), cmp.Compare(a.Seq, b.Seq))
	})
	return slices.CompactFunc(out, func(a, b infertrail.Posting) bool { return a.Key == b.Key && a.Seq == b.Seq })
}

// A Source is the postings of one record derived from content under one
// data key: what erasing that key deletes.
//
// Both stores keep a row per source (term_sources) instead of the data key
// on each posting with an index on it: that index was an entry per
// posting, as large as the postings and as costly to write, and an
// erasure, which needs it, is rare next to indexing.
type Source struct {
	Key  infertrail.KeyID
	Seq  int64
	Keys []string // the postings' keys, in order
}

// Sources groups the postings of ps that carry a data key by key and
// record, in (data key, seq) order. ps is in Sort's order, so each
// source's keys are too.
func Sources(ps []infertrail.Posting) []Source {
	type at struct {
		key infertrail.KeyID
		seq int64
	}
	groups := map[at]int{}
	var out []Source
	for _, p := range ps {
		if p.DataKey.IsZero() {
			continue
		}
		i, ok := groups[at{p.DataKey, p.Seq}]
		if !ok {
			i = len(out)
			groups[at{p.DataKey, p.Seq}] = i
			out = append(out, Source{Key: p.DataKey, Seq: p.Seq})
		}
		out[i].Keys = append(out[i].Keys, p.Key)
	}
	slices.SortFunc(out, func(a, b Source) int {
		return cmp.Or(slices.Compare(a.Key[:], b.Key[:]), cmp.Compare(a.Seq, b.Seq))
	})
	return out
}
