package storetest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/infertrail/infertrail"
)

// Sequencer appends entries inside one open append transaction the way the
// ledger's sequencer does: it numbers them from the transaction's Size, and
// computes the tree hashes they add with tlog.StoredHashes, serving hashes
// appended earlier in the same transaction from memory and the rest from the
// transaction's ReadHashes. It is used by one goroutine.
type Sequencer struct {
	tx     infertrail.AppendTx
	base   int64               // tlog.StoredHashCount(tx.Size()): the first index this transaction writes
	next   int64               // the sequence number of the next entry
	hashes map[int64]tlog.Hash // hashes appended in this transaction, and committed ones already read
}

// NewSequencer returns a Sequencer for tx.
func NewSequencer(tx infertrail.AppendTx) *Sequencer {
	size := tx.Size()
	return &Sequencer{tx: tx, base: tlog.StoredHashCount(size), next: size, hashes: make(map[int64]tlog.Hash)}
}

// Next returns the sequence number the next appended entry gets.
func (s *Sequencer) Next() int64 { return s.next }

// Append sets the Seq of each entry, computes the tree hashes they add and
// calls the transaction's Append with them.
func (s *Sequencer) Append(ctx context.Context, entries []infertrail.Entry, blobs []infertrail.Blob) error {
	hashes, added, err := s.Hashes(ctx, entries)
	if err != nil {
		return err
	}
	if err := s.tx.Append(ctx, entries, blobs, hashes); err != nil {
		return err
	}
	for i, h := range hashes {
		s.hashes[added+int64(i)] = h
	}
	s.next += int64(len(entries))
	return nil
}

// Hashes sets the Seq of each entry as Append would and returns the stored
// hashes they add, with the stored-hash index of the first one, without
// appending anything. Tests use it to build deliberately wrong calls.
func (s *Sequencer) Hashes(ctx context.Context, entries []infertrail.Entry) ([]tlog.Hash, int64, error) {
	first := tlog.StoredHashCount(s.next)
	var out []tlog.Hash
	reader := tlog.HashReaderFunc(func(indexes []int64) ([]tlog.Hash, error) {
		hs := make([]tlog.Hash, len(indexes))
		var missing []int64
		var at []int
		for i, idx := range indexes {
			switch {
			case idx >= first:
				if idx-first >= int64(len(out)) {
					return nil, fmt.Errorf("read hash %d: not computed yet", idx)
				}
				hs[i] = out[idx-first]
			case idx >= s.base:
				h, ok := s.hashes[idx]
				if !ok {
					return nil, fmt.Errorf("read hash %d: not appended in this transaction", idx)
				}
				hs[i] = h
			default:
				if h, ok := s.hashes[idx]; ok {
					hs[i] = h
					continue
				}
				missing = append(missing, idx)
				at = append(at, i)
			}
		}
		if len(missing) > 0 {
			read, err := s.tx.ReadHashes(ctx, missing)
			if err != nil {
				return nil, err
			}
			if len(read) != len(missing) {
				return nil, fmt.Errorf("read hashes: got %d hashes for %d indexes", len(read), len(missing))
			}
			for j, h := range read {
				hs[at[j]] = h
				s.hashes[missing[j]] = h
			}
		}
		return hs, nil
	})
	for i := range entries {
		seq := s.next + int64(i)
		entries[i].Seq = seq
		hs, err := tlog.StoredHashes(seq, entries[i].Leaf, reader)
		if err != nil {
			return nil, 0, fmt.Errorf("compute hashes of entry %d: %w", seq, err)
		}
		out = append(out, hs...)
	}
	return out, first, nil
}

// AppendEntries appends entries and blobs to s in one transaction and
// commits it. It sets the Seq of each entry and returns the sequence numbers.
func AppendEntries(t testing.TB, s infertrail.Store, entries []infertrail.Entry, blobs []infertrail.Blob) []int64 {
	t.Helper()
	return AppendKeyed(t, s, nil, entries, blobs)
}

// AppendKeyed is AppendEntries storing the data keys keys first, in the
// same transaction.
func AppendKeyed(t testing.TB, s infertrail.Store, keys []infertrail.DataKey, entries []infertrail.Entry, blobs []infertrail.Blob) []int64 {
	t.Helper()
	ctx := t.Context()
	tx, err := s.BeginAppend(ctx)
	if err != nil {
		t.Fatalf("BeginAppend: %v", err)
	}
	defer tx.Rollback()
	if len(keys) > 0 {
		if err := tx.AddKeys(ctx, keys); err != nil {
			t.Fatalf("AddKeys: %v", err)
		}
	}
	if err := NewSequencer(tx).Append(ctx, entries, blobs); err != nil {
		t.Fatalf("append %d entries: %v", len(entries), err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	seqs := make([]int64, len(entries))
	for i := range entries {
		seqs[i] = entries[i].Seq
	}
	return seqs
}

// AppendLeaves appends one entry per leaf, with fresh ids and no content, to
// s in one transaction and returns their sequence numbers.
func AppendLeaves(t testing.TB, s infertrail.Store, leaves [][]byte) []int64 {
	t.Helper()
	entries := make([]infertrail.Entry, len(leaves))
	for i, l := range leaves {
		entries[i] = infertrail.Entry{
			ID:     infertrail.NewUUID(),
			Leaf:   l,
			Tenant: infertrail.DefaultTenant,
			Kind:   infertrail.KindInference,
		}
	}
	return AppendEntries(t, s, entries, nil)
}

// HashReader adapts r to a tlog.HashReader reading committed hashes.
func HashReader(ctx context.Context, r infertrail.HashReader) tlog.HashReader {
	return tlog.HashReaderFunc(func(indexes []int64) ([]tlog.Hash, error) {
		return r.ReadHashes(ctx, indexes)
	})
}

// RootHash returns the RFC 6962 Merkle tree hash of leaves, computed in
// memory without tlog's stored-hash machinery.
func RootHash(leaves [][]byte) tlog.Hash {
	hs := make([]tlog.Hash, len(leaves))
	for i, l := range leaves {
		hs[i] = tlog.RecordHash(l)
	}
	return rootOf(hs)
}

func rootOf(hs []tlog.Hash) tlog.Hash {
	switch len(hs) {
	case 0:
		return sha256.Sum256(nil)
	case 1:
		return hs[0]
	}
	k := 1
	for k*2 < len(hs) {
		k *= 2
	}
	l, r := rootOf(hs[:k]), rootOf(hs[k:])
	var b [1 + 2*tlog.HashSize]byte
	b[0] = 1
	copy(b[1:], l[:])
	copy(b[1+tlog.HashSize:], r[:])
	return sha256.Sum256(b[:])
}

// MakeEntry returns entry n of a deterministic sequence of realistic
// entries, with Seq unset, and the blobs its content references. Entries
// vary every column; they have 0 to 3 content fields, arrays among them with
// 0 to 2 blobs; and their "system" blob is shared by every fifth entry, so
// appending a range of them exercises blob deduplication. Equal BlobIDs
// always come with equal Blob values.
func MakeEntry(n int) (infertrail.Entry, []infertrail.Blob) {
	d := func(parts ...any) [32]byte { return sha256.Sum256(fmt.Append(nil, parts...)) }
	var e infertrail.Entry
	id := d("id", n)
	copy(e.ID[:], id[:])
	e.ID[6] = 0x70 | e.ID[6]&0x0f
	e.ID[8] = 0x80 | e.ID[8]&0x3f
	mac := d("mac", n)
	copy(e.MAC[:], mac[:])
	e.Tenant = []string{infertrail.DefaultTenant, "acme-corp", "tenant-ü✓"}[n%3]
	e.Kind = infertrail.Kinds[n%len(infertrail.Kinds)]
	e.Time = 1_750_000_000_123_456_789 + int64(n)*1_000_003
	e.Received = e.Time + int64(n%1000)*7919 + 1
	if n%5 != 0 {
		e.SessionID = fmt.Sprintf("sess-%d", n%13)
	}
	if n%7 != 0 {
		t := d("trace", n)
		e.TraceID = hex.EncodeToString(t[:16])
	}
	e.ActorID = fmt.Sprintf("agent:bot-%d", n%4)
	e.Leaf = fmt.Appendf(nil, `{"id":"%s","kind":"%s","n":%d,"pad":"%s"}`, e.ID, e.Kind, n, strings.Repeat("x", n%50))

	// Odd entries' own blobs are encrypted under their scope's data key.
	var key infertrail.KeyID
	if n%2 == 1 {
		key = TestKeyID(e.Tenant, e.SessionID)
	}
	var blobs []infertrail.Blob
	blob := func(id [32]byte, key infertrail.KeyID) infertrail.BlobID {
		var b infertrail.Blob
		b.ID = id
		if !key.IsZero() {
			copy(b.ID[:16], key[:]) // an encrypted blob's id starts with its key's
		}
		b.Key = key
		b.Codec = infertrail.Codec(id[0] % 2)
		b.Data = bytes.Repeat(id[:], 1+int(id[1]%6))
		blobs = append(blobs, b)
		return b.ID
	}
	fields := []string{"system", "response.output", "request.messages"}
	for j := range n % 4 {
		var r infertrail.ContentRef
		r.Field = fields[j%len(fields)]
		if j == 3 {
			r.Field = "tool.arguments"
		}
		salt := d("salt", n, j)
		copy(r.Salt[:], salt[:])
		switch j {
		case 0:
			r.Blobs = []infertrail.BlobID{blob(sharedBlobID(n%sharedBlobs), infertrail.KeyID{})}
		case 2:
			r.Array = true
			for k := range n % 3 {
				r.Blobs = append(r.Blobs, blob(d("elem", n, k), key))
			}
			if r.Blobs == nil {
				r.Blobs = []infertrail.BlobID{}
			}
		default:
			r.Blobs = []infertrail.BlobID{blob(d("blob", n, j), key)}
		}
		if j != 0 {
			r.Key = key
		}
		e.Content = append(e.Content, r)
	}
	return e, blobs
}

// TestKeyID is the id of the data key that MakeEntry's entries of the
// tenant and session use; TestKey returns that key.
func TestKeyID(tenant, session string) infertrail.KeyID {
	sum := sha256.Sum256(fmt.Appendf(nil, "key %s %s", tenant, session))
	return infertrail.KeyID(sum[:16])
}

// TestKey returns a data key for MakeEntry's entries of the tenant and
// session, as the ledger would store it (its wrapped form is fake).
func TestKey(tenant, session string) infertrail.DataKey {
	var b infertrail.ScopeBuilder
	b.Add("tenant", tenant)
	b.Add("session", session)
	id := TestKeyID(tenant, session)
	return infertrail.DataKey{
		ID: id, Tenant: tenant, Scope: b.Scope(), Kind: infertrail.KindInference,
		Period: 1_750_000_000 / 86400 * 86400, Created: 1_750_000_000_000_000_000,
		KEK: "kek-test", Wrapped: append([]byte("wrapped "), id[:]...), ErasedBy: -1,
	}
}

// MakeBatch returns entries first to first+count-1 of MakeEntry's sequence
// and every blob they reference, duplicates included.
func MakeBatch(first, count int) ([]infertrail.Entry, []infertrail.Blob) {
	entries := make([]infertrail.Entry, 0, count)
	var blobs []infertrail.Blob
	for n := first; n < first+count; n++ {
		e, bs := MakeEntry(n)
		entries = append(entries, e)
		blobs = append(blobs, bs...)
	}
	return entries, blobs
}

// DiffEntry describes how got differs from want, field by field, or
// returns "" when they are equal. Nil and empty slices are equal.
func DiffEntry(want, got *infertrail.Entry) string {
	var d []string
	f := func(name string, w, g any) {
		d = append(d, fmt.Sprintf("%s = %v, want %v", name, g, w))
	}
	if got.Seq != want.Seq {
		f("Seq", got.Seq, want.Seq)
	}
	if got.ID != want.ID {
		f("ID", got.ID, want.ID)
	}
	if !bytes.Equal(got.Leaf, want.Leaf) {
		f("Leaf", fmt.Sprintf("%q", got.Leaf), fmt.Sprintf("%q", want.Leaf))
	}
	if got.MAC != want.MAC {
		f("MAC", fmt.Sprintf("%x", got.MAC), fmt.Sprintf("%x", want.MAC))
	}
	if got.Tenant != want.Tenant {
		f("Tenant", fmt.Sprintf("%q", got.Tenant), fmt.Sprintf("%q", want.Tenant))
	}
	if got.Kind != want.Kind {
		f("Kind", got.Kind, want.Kind)
	}
	if got.Time != want.Time {
		f("Time", got.Time, want.Time)
	}
	if got.Received != want.Received {
		f("Received", got.Received, want.Received)
	}
	if got.SessionID != want.SessionID {
		f("SessionID", fmt.Sprintf("%q", got.SessionID), fmt.Sprintf("%q", want.SessionID))
	}
	if got.TraceID != want.TraceID {
		f("TraceID", fmt.Sprintf("%q", got.TraceID), fmt.Sprintf("%q", want.TraceID))
	}
	if got.ActorID != want.ActorID {
		f("ActorID", fmt.Sprintf("%q", got.ActorID), fmt.Sprintf("%q", want.ActorID))
	}
	if !bytes.Equal(infertrail.MarshalContentRefs(got.Content), infertrail.MarshalContentRefs(want.Content)) {
		f("Content", fmt.Sprintf("%+v", got.Content), fmt.Sprintf("%+v", want.Content))
	}
	if len(d) == 0 {
		return ""
	}
	return fmt.Sprintf("entry %d: %s", want.Seq, strings.Join(d, "; "))
}

// sharedBlobs is the number of distinct blobs that MakeEntry's entries share.
const sharedBlobs = 5

func sharedBlobID(k int) infertrail.BlobID {
	return sha256.Sum256(fmt.Appendf(nil, "shared %d", k))
}

// leafIndex encodes n for use in a leaf.
func leafIndex(prefix string, n int) []byte {
	return binary.BigEndian.AppendUint64([]byte(prefix), uint64(n))
}
