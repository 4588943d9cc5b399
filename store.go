package infertrail

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"golang.org/x/mod/sumdb/tlog"
)

// Entry is one sequenced record as a store keeps it: the canonical leaf, the
// columns that queries filter on, and references to the record's content.
type Entry struct {
	Seq  int64
	ID   UUID
	Leaf []byte // the RFC 8785 canonical leaf; its hash is leaf Seq of the tree
	// MAC is a keyed digest of the record as it was submitted, so that a
	// retried record can be told from a different record reusing an id.
	MAC [16]byte

	// Copies of leaf fields, for filtering. The leaf is authoritative.
	Tenant    string
	Kind      Kind
	Time      int64 // observed time, Unix nanoseconds
	Received  int64 // server's received time, Unix nanoseconds
	SessionID string
	TraceID   string
	ActorID   string

	Content []ContentRef
}

// TimeBlockBits sizes the blocks of a store's time zone map: for each
// block of 1<<TimeBlockBits sequence numbers (Seq >> TimeBlockBits), the
// least and the greatest observed time of its entries, kept by the append
// transaction. It turns a query's time bounds into sequence bounds.
const TimeBlockBits = 12

// ContentRef locates one content field of a record. The field's value is the
// concatenation of its blobs (for an array: "[" blob "," blob … "]"), and its
// commitment in the leaf is SHA-256(Salt || value). Its blobs are encrypted
// under the data key Key (zero for content stored before encryption).
type ContentRef struct {
	Field string
	Salt  [SaltSize]byte
	Array bool
	Key   KeyID
	Blobs []BlobID
	// Omitted marks a field that is committed in the leaf but was not
	// stored, by the capture profile's choice: it has no blobs.
	Omitted bool
}

// SaltSize is the size in bytes of a content commitment's salt.
const SaltSize = 16

// BlobID names a content blob. A blob encrypted under a data key has an id
// that starts with the key's 16-byte id, followed by 12 bytes of a keyed
// hash of its plain bytes and 4 zero bytes (16 bytes of the hash, for
// blobs sealed before 2026-11-29): equal content is stored once per key without a
// plain hash of it ever being stored, a key's blobs are one range of ids
// (which is how an erasure finds them), and new blobs, whose keys are new,
// go at the end of the id index. A blob stored before encryption has an id
// that is the whole keyed hash.
type BlobID [32]byte

// Codec says how a blob's Data is encoded.
type Codec uint8

// Blob codecs.
const (
	CodecRaw  Codec = 0 // Data is the plain bytes
	CodecZstd Codec = 1 // Data is one zstd frame
	// Data is one zstd frame without the 4 bytes of its magic number,
	// which every frame begins with (blobs sealed since 2026-11-29)
	CodecZstdBare Codec = 2
)

// Blob is stored content: the canonical JSON bytes of one content value, or
// of one element of an array value, encoded with Codec and, when Key is not
// zero, then sealed with AES-256-GCM under that data key.
type Blob struct {
	ID    BlobID
	Key   KeyID
	Codec Codec
	Data  []byte
}

// StoredCheckpoint is a signed checkpoint as a store keeps it.
type StoredCheckpoint struct {
	Size int64
	Note []byte // the signed note, exactly as served at /checkpoint
}

// Store is everything the log keeps. Implementations are safe for
// concurrent use. Each of the interfaces it joins is consumed on its own.
// After Close every method returns an error; Close may be called twice.
type Store interface {
	Appender
	HashReader
	EntryReader
	CheckpointStore
	KeyStore
	HoldStore
	TokenStore
	Cursors
	Index
	FindingStore
	ApprovalStore
	io.Closer
}

// Appender starts append transactions.
type Appender interface {
	// BeginAppend starts the transaction that appends the next batch. At most
	// one append transaction runs at a time across every process that shares
	// the store: BeginAppend waits until it holds the log's write lock (bounded
	// by ctx, or by a store-specific lock timeout where the engine cannot be
	// interrupted). It returns an error wrapping ErrUnavailable when the store
	// cannot be reached.
	//
	// The transaction is bound to ctx: when ctx is done before Commit, the
	// transaction is rolled back and the write lock released, even if neither
	// Commit nor Rollback is called, and a later Commit fails.
	BeginAppend(ctx context.Context) (AppendTx, error)
}

// AppendTx is one open append transaction. It is used by one goroutine.
type AppendTx interface {
	// Size returns the tree size when the transaction began: the sequence
	// number the next entry must have.
	Size() int64
	// Erasures returns the number of Erase calls committed before the
	// transaction began, by any process sharing the store: a writer that
	// sees it change drops the data keys it holds in memory.
	Erasures() int64
	// Lookup returns the entries among ids that are already in the log, by
	// id, with at least Seq and MAC set. Ids not in the log are absent.
	Lookup(ctx context.Context, ids []UUID) (map[UUID]Entry, error)
	// ReadHashes reads stored tree hashes by their tlog stored-hash index,
	// inside the transaction, as tlog.HashReader does, including the hashes
	// earlier Append calls of this transaction wrote. An index past those is
	// an error wrapping ErrNotFound; a negative one wraps ErrInvalid.
	ReadHashes(ctx context.Context, indexes []int64) ([]tlog.Hash, error)
	// Append writes entries, whose Seq run on from the next sequence number
	// without gaps; the new blobs they reference; and the tree hashes the
	// entries add (the stored hashes from index tlog.StoredHashCount of the
	// first entry's Seq on). It may be called more than once in a
	// transaction; each call continues from the last.
	//
	// Entries may reference blobs that are already stored and not passed
	// again. A blob whose ID is already stored is skipped: the first copy
	// stored wins. A wrong Seq or a wrong number of hashes fails with
	// ErrInvalid; an id already in the log may fail with ErrConflict
	// (callers Lookup first, unless the transaction is UniqueIDs). After
	// Append fails the transaction can only be rolled back: Commit fails.
	Append(ctx context.Context, entries []Entry, blobs []Blob, hashes []tlog.Hash) error
	// AddKeys stores new data keys, before or after the Append calls whose
	// blobs they encrypt. A key whose id is already stored is skipped.
	AddKeys(ctx context.Context, keys []DataKey) error
	// Keys returns the stored keys that f selects, seeing the transaction's
	// own writes. Erasures use it to find what to erase under the write lock.
	Keys(ctx context.Context, f KeyFilter) ([]DataKey, error)
	// Holds returns the tenant's active legal holds.
	Holds(ctx context.Context, tenant string) ([]Hold, error)
	// Erase crypto-shreds the keys with the given ids: it destroys their
	// wrapped forms, marks them erased by the record with sequence number
	// by, and deletes the blobs encrypted under them (the blobs whose ids
	// start with the key's id), so that no copy is left in the live database. It returns how many blobs it deleted. Keys already
	// erased are left as they are.
	Erase(ctx context.Context, ids []KeyID, by int64) (int64, error)
	// Commit makes everything appended durable: once Commit returns nil, a
	// crash of the process or the machine loses none of it.
	Commit() error
	// Rollback abandons the transaction. It returns nil after Commit or an
	// earlier Rollback.
	Rollback() error
}

// UniqueIDs is implemented by an AppendTx whose Append always fails with
// an error wrapping ErrConflict when an entry's id is already in the log,
// leaving the transaction to be rolled back. Its caller may then append
// first and Lookup only after such a failure, in a new transaction: a
// commit then costs no lookup unless a record is resent.
type UniqueIDs interface {
	UniqueIDs() bool
}

// Room is implemented by a store that keeps a reserve of free space on
// its own disk (the SQLite store): Room returns an error wrapping
// ErrStorageFull, naming the free space and the reserve, while appends are
// refused for want of space. It is cheap enough to call before each append.
type Room interface {
	Room() error
}

// HashReader reads committed tree hashes.
type HashReader interface {
	// TreeSize returns the size of the committed tree.
	TreeSize(ctx context.Context) (int64, error)
	// ReadHashes returns the stored hashes with the given tlog stored-hash
	// indexes, in the same order. An index not yet committed is an error
	// wrapping ErrNotFound. It must be fast for scattered indexes: an
	// inclusion proof reads about 2·log2(size) of them.
	ReadHashes(ctx context.Context, indexes []int64) ([]tlog.Hash, error)
}

// EntryReader reads committed entries and content.
type EntryReader interface {
	// Entries calls fn for each committed entry with start <= Seq < end, in
	// order. It stops at the first error fn returns and returns it. The
	// Entry and its slices are only valid during the call, and fn must not
	// call back into the store.
	Entries(ctx context.Context, start, end int64, fn func(*Entry) error) error
	// EntryByID returns the entry with the id, or an error wrapping ErrNotFound.
	EntryByID(ctx context.Context, id UUID) (Entry, error)
	// Blobs returns the stored blobs among ids; missing ones are absent.
	Blobs(ctx context.Context, ids []BlobID) (map[BlobID]Blob, error)
}

// CheckpointStore keeps signed checkpoints.
type CheckpointStore interface {
	// AddCheckpoint stores a signed checkpoint for a committed tree size (a
	// size past the committed tree is an error wrapping ErrInvalid). Storing
	// a second checkpoint of the same size keeps the first and is not an
	// error (several nodes may sign the same size).
	AddCheckpoint(ctx context.Context, c StoredCheckpoint) error
	// LatestCheckpoint returns the checkpoint with the largest size, or an
	// error wrapping ErrNotFound when there is none.
	LatestCheckpoint(ctx context.Context) (StoredCheckpoint, error)
	// Checkpoints calls fn for each stored checkpoint with Size > after, in
	// increasing size.
	Checkpoints(ctx context.Context, after int64, fn func(StoredCheckpoint) error) error
}

// Cosigner is implemented by a store that keeps witnesses' cosignatures
// with its checkpoints (both stores do).
type Cosigner interface {
	// AddCosignatures adds signature lines (each "— name base64\n", as a
	// C2SP tlog-witness answers) to the note of the stored checkpoint of
	// size, but for those it has already, in one transaction, so that
	// what several nodes add at once is all kept (MergeSignatures). A
	// size with no stored checkpoint is an error wrapping ErrNotFound.
	AddCosignatures(ctx context.Context, size int64, lines []byte) error
}

// MergeSignatures returns the signed note with the signature lines of
// lines it lacks appended, and whether it gained any. A line that is not
// a signature line is an error wrapping ErrInvalid.
func MergeSignatures(signed, lines []byte) ([]byte, bool, error) {
	out := signed
	for len(lines) > 0 {
		line, rest, ok := bytes.Cut(lines, []byte("\n"))
		if !ok || !bytes.HasPrefix(line, []byte("— ")) || bytes.Count(line, []byte(" ")) != 2 {
			return nil, false, fmt.Errorf("signature line %q: want \"— name base64\" ending in a newline: %w", line, ErrInvalid)
		}
		lines = rest
		line = append(line[:len(line):len(line)], '\n')
		if bytes.Contains(out, append([]byte("\n"), line...)) {
			continue
		}
		if len(out) == len(signed) {
			out = append([]byte(nil), signed...)
		}
		out = append(out, line...)
	}
	return out, len(out) != len(signed), nil
}

// ReadEntry returns the committed entry with sequence number seq, or an error
// wrapping ErrNotFound.
func ReadEntry(ctx context.Context, r EntryReader, seq int64) (Entry, error) {
	var out Entry
	found := false
	err := r.Entries(ctx, seq, seq+1, func(e *Entry) error {
		out = e.Clone()
		found = true
		return nil
	})
	if err != nil {
		return Entry{}, err
	}
	if !found {
		return Entry{}, fmt.Errorf("read entry %d: %w", seq, ErrNotFound)
	}
	return out, nil
}

// Clone returns a deep copy of e.
func (e *Entry) Clone() Entry {
	c := *e
	c.Leaf = append([]byte(nil), e.Leaf...)
	c.Content = make([]ContentRef, len(e.Content))
	for i, r := range e.Content {
		r.Blobs = append([]BlobID(nil), r.Blobs...)
		c.Content[i] = r
	}
	return c
}

// MarshalContentRefs encodes refs in the compact binary form that stores
// keep in one column. A blob id that starts with its ref's data key id (as
// every encrypted blob's does) is stored without that prefix, and without
// its last ShortBlobZeros bytes when they are zero (as in the ids the
// ledger makes since 2026-11-29); a data key is stored once for the refs
// in a row that share it; and a field named in contentFieldNames is stored
// as its place there.
func MarshalContentRefs(refs []ContentRef) []byte { return marshalContentRefs(refs, 5) }

// ShortBlobZeros is how many bytes end the id of a blob the ledger seals
// now, all zero: its keyed hash is 12 bytes (version 5 of the content
// refs does not store them).
const ShortBlobZeros = 4

// marshalContentRefs encodes refs in version 3, 4 or 5 of the form.
func marshalContentRefs(refs []ContentRef, version byte) []byte {
	if len(refs) == 0 {
		return nil
	}
	n := 1
	for _, r := range refs {
		n += 2 + len(r.Field) + SaltSize + 1 + len(KeyID{}) + 2 + len(r.Blobs)*len(BlobID{})
	}
	b := make([]byte, 0, n)
	b = append(b, version) // 1 had no key, 2 no short blob ids, 3 no shared keys or field codes, 4 no shorter ids
	b = binary.AppendUvarint(b, uint64(len(refs)))
	for i, r := range refs {
		var flags byte
		if r.Array {
			flags |= refArray
		}
		if r.Omitted {
			flags |= refOmitted
		}
		short, shorter := !r.Key.IsZero(), version >= 5
		for _, id := range r.Blobs {
			short = short && KeyID(id[:len(KeyID{})]) == r.Key
			shorter = shorter && [ShortBlobZeros]byte(id[len(id)-ShortBlobZeros:]) == [ShortBlobZeros]byte{}
		}
		shorter = short && shorter
		if short {
			flags |= refShortIDs
		}
		if shorter {
			flags |= refShorterIDs
		}
		code, named := fieldCodes[r.Field]
		if version >= 4 {
			switch {
			case r.Key.IsZero():
				flags |= refNoKey
			case i > 0 && r.Key == refs[i-1].Key:
				flags |= refSameKey
			}
			if named {
				flags |= refNamed
			}
			b = append(b, flags)
		}
		if version >= 4 && named {
			b = append(b, code)
		} else {
			b = binary.AppendUvarint(b, uint64(len(r.Field)))
			b = append(b, r.Field...)
		}
		b = append(b, r.Salt[:]...)
		if version < 4 {
			b = append(b, flags)
		}
		if version < 4 || flags&(refNoKey|refSameKey) == 0 {
			b = append(b, r.Key[:]...)
		}
		b = binary.AppendUvarint(b, uint64(len(r.Blobs)))
		for _, id := range r.Blobs {
			switch {
			case shorter:
				b = append(b, id[len(KeyID{}):len(id)-ShortBlobZeros]...)
			case short:
				b = append(b, id[len(KeyID{}):]...)
			default:
				b = append(b, id[:]...)
			}
		}
	}
	return b
}

// Flags of a content ref in MarshalContentRefs.
const (
	refArray    = 1
	refOmitted  = 2
	refShortIDs = 4  // version 3: blob ids are stored without the key id they start with
	refSameKey  = 8  // version 4: the key is the previous ref's, not stored again
	refNoKey    = 16 // version 4: the key is zero, not stored
	refNamed    = 32 // version 4: the field is stored as its place in contentFieldNames
	// version 5, with refShortIDs: the blob ids end in ShortBlobZeros zero
	// bytes, not stored either
	refShorterIDs = 64
)

// contentFieldNames are the content fields that the gateways, receivers
// and records of InferTrail itself name, which version 4 of the content
// refs stores as one byte each. The list only grows: a name's place is
// stored.
var contentFieldNames = [...]string{
	"gen_ai.input.messages", "gen_ai.output.messages", "gen_ai.system_instructions",
	"gen_ai.tool.definitions", "gen_ai.tool.call.arguments", "gen_ai.tool.call.result",
	"gen_ai.tool.call.arguments.forwarded", "gen_ai.guardrail.verdict.reason",
	"request", "response", "error", "request.forwarded", "response.raw", "response.delivered",
	"mcp.message", "mcp.response", "mcp.error",
	"policy.input", "policy.result", "policy.reasons", "policy.obligations", "policy.sources",
	"approval.rationale", "otel.content_attributes", "otel.log.bodies",
	"exception.message", "exception.stacktrace", "tool.arguments", "prompt",
}

var fieldCodes = func() map[string]byte {
	m := make(map[string]byte, len(contentFieldNames))
	for i, f := range contentFieldNames {
		m[f] = byte(i)
	}
	return m
}()

var errRefs = errors.New("malformed content references")

// UnmarshalContentRefs decodes what MarshalContentRefs encoded.
func UnmarshalContentRefs(b []byte) ([]ContentRef, error) {
	if len(b) == 0 {
		return nil, nil
	}
	version := b[0]
	if version < 1 || version > 5 {
		return nil, fmt.Errorf("decode content refs: version %d: %w", b[0], errRefs)
	}
	b = b[1:]
	next := func() (uint64, bool) {
		v, n := binary.Uvarint(b)
		if n <= 0 {
			return 0, false
		}
		b = b[n:]
		return v, true
	}
	count, ok := next()
	if !ok || count > uint64(len(b)) {
		return nil, fmt.Errorf("decode content refs: %w", errRefs)
	}
	allowed := [...]byte{1: refArray, 2: refArray | refOmitted, 3: refArray | refOmitted | refShortIDs,
		4: refArray | refOmitted | refShortIDs | refSameKey | refNoKey | refNamed,
		5: refArray | refOmitted | refShortIDs | refSameKey | refNoKey | refNamed | refShorterIDs}[version]
	refs := make([]ContentRef, 0, count)
	for i := range count {
		var r ContentRef
		var flags byte
		if version >= 4 {
			if len(b) == 0 {
				return nil, fmt.Errorf("decode content refs: %w", errRefs)
			}
			flags, b = b[0], b[1:]
		}
		if flags&refNamed != 0 {
			if len(b) == 0 || int(b[0]) >= len(contentFieldNames) {
				return nil, fmt.Errorf("decode content refs: unknown field code: %w", errRefs)
			}
			r.Field, b = contentFieldNames[b[0]], b[1:]
		} else {
			l, ok := next()
			if !ok || l > uint64(len(b)) {
				return nil, fmt.Errorf("decode content refs: %w", errRefs)
			}
			r.Field = string(b[:l])
			b = b[l:]
		}
		if len(b) < SaltSize {
			return nil, fmt.Errorf("decode content refs: %w", errRefs)
		}
		copy(r.Salt[:], b)
		b = b[SaltSize:]
		if version < 4 {
			if len(b) == 0 {
				return nil, fmt.Errorf("decode content refs: %w", errRefs)
			}
			flags, b = b[0], b[1:]
		}
		if flags&^allowed != 0 {
			return nil, fmt.Errorf("decode content refs: flags %#x: %w", flags, errRefs)
		}
		r.Array, r.Omitted = flags&refArray != 0, flags&refOmitted != 0
		short, shorter := flags&refShortIDs != 0, flags&refShorterIDs != 0
		if shorter && !short {
			return nil, fmt.Errorf("decode content refs: shorter blob ids that are not short: %w", errRefs)
		}
		switch {
		case flags&refSameKey != 0 && (i == 0 || flags&refNoKey != 0):
			return nil, fmt.Errorf("decode content refs: a shared key with no key before it: %w", errRefs)
		case flags&refSameKey != 0:
			r.Key = refs[i-1].Key
		case flags&refNoKey != 0:
		case version >= 2:
			if len(b) < len(KeyID{}) {
				return nil, fmt.Errorf("decode content refs: %w", errRefs)
			}
			copy(r.Key[:], b)
			b = b[len(KeyID{}):]
		}
		if short && r.Key.IsZero() {
			return nil, fmt.Errorf("decode content refs: short blob ids without a key: %w", errRefs)
		}
		size := len(BlobID{})
		if short {
			size -= len(KeyID{})
		}
		if shorter {
			size -= ShortBlobZeros
		}
		nb, ok := next()
		if !ok || nb > uint64(len(b)/size) {
			return nil, fmt.Errorf("decode content refs: %w", errRefs)
		}
		r.Blobs = make([]BlobID, nb)
		for i := range r.Blobs {
			if short {
				copy(r.Blobs[i][:], r.Key[:])
				copy(r.Blobs[i][len(KeyID{}):], b[:size]) // zeros after, if shorter
			} else {
				copy(r.Blobs[i][:], b)
			}
			b = b[size:]
		}
		refs = append(refs, r)
	}
	if len(b) != 0 {
		return nil, fmt.Errorf("decode content refs: trailing bytes: %w", errRefs)
	}
	return refs, nil
}
