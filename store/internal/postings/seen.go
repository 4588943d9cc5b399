package postings

import (
	"sync"

	"github.com/infertrail/infertrail"
)

// Both stores list, for each record and data key, the record's search
// terms in term_sources, so that an erasure of the key can find the
// postings to delete. A session re-sends its history with every call, so
// a record's terms are mostly terms of the records before it: a row lists
// only the terms not listed before under its key. The rows of a key up to
// a record then hold every term the record has, and an erasure clears
// each term from the first record that lists it on, among the key's
// records (a later record that no longer has the term has no bit of its
// to clear). The server seals all of a record's content under one data
// key; were a record's content under several, erasing one would clear
// the bits of the terms it lists from that record whichever key gave
// them: never fewer than it should.
//
// Seen holds what a store knows was listed: for the data keys it listed
// terms under lately, every term listed up to a record. What it does not
// know (after a restart, for a key it forgot, or of rows another process
// wrote) only makes rows longer.
type Seen struct {
	mu    sync.Mutex
	keys  map[infertrail.KeyID]Listed
	terms int // in keys
}

// Listed is the terms listed under a data key in the rows up to record
// Seq, in order.
type Listed struct {
	Seq   int64
	Terms []string
}

// MaxSeen bounds the terms a Seen holds: about 50 MB of strings.
const MaxSeen = 1 << 20

// Get returns what was listed under data key k.
func (s *Seen) Get(k infertrail.KeyID) (Listed, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	l, ok := s.keys[k]
	return l, ok
}

// Set records what a committed step listed, forgetting other keys when
// there is no room.
func (s *Seen) Set(next map[infertrail.KeyID]Listed) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.keys == nil {
		s.keys = map[infertrail.KeyID]Listed{}
	}
	for k, l := range next {
		if old, ok := s.keys[k]; ok {
			if old.Seq > l.Seq {
				continue // a step done again by another cursor
			}
			s.terms -= len(old.Terms)
			delete(s.keys, k)
		}
		for k2, old := range s.keys {
			if s.terms+len(l.Terms) <= MaxSeen {
				break
			}
			s.terms -= len(old.Terms)
			delete(s.keys, k2)
		}
		if s.terms+len(l.Terms) <= MaxSeen {
			s.keys[k] = l
			s.terms += len(l.Terms)
		}
	}
}

// List returns the terms of the row of record seq under data key k, whose
// terms are keys (in order): those not listed before, by next (this
// step's rows so far) or seen (steps before); and records in next what is
// listed up to seq. Sources must come in order of key and record.
func List(seen *Seen, next map[infertrail.KeyID]Listed, k infertrail.KeyID, seq int64, keys []string) []string {
	before, ok := next[k]
	if !ok && seen != nil {
		before, ok = seen.Get(k)
	}
	// Only what was listed before this record will do: a step done
	// again by another cursor comes after later ones.
	if !ok || before.Seq >= seq {
		next[k] = Listed{seq, keys}
		return keys
	}
	added := make([]string, 0, len(keys))
	i := 0
	for _, t := range keys {
		for i < len(before.Terms) && before.Terms[i] < t {
			i++
		}
		if i == len(before.Terms) || before.Terms[i] != t {
			added = append(added, t)
		}
	}
	next[k] = Listed{seq, Merge(before.Terms, added)}
	return added
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
