package infertrail

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"strings"
)

// Posting says that the record with sequence number Seq carries the index
// key Key. The investigation index is a set of postings: a query for
// records of a trace, a model or a tool, or holding a search term, reads the
// postings of its keys instead of scanning the log. Postings are derived
// from the log and can be rebuilt from it; they are never evidence.
type Posting struct {
	Key string
	Seq int64
	// DataKey is the data key of the content the posting was derived from
	// (a search term); zero for a posting derived from the leaf. Erasing a
	// data key deletes its postings, so that shredded content leaves
	// nothing searchable.
	DataKey KeyID
}

// MaxIndexKey is the longest index key in bytes; IndexKey hashes longer
// values.
const MaxIndexKey = 200

// IndexKey returns the index key of a field's value, "field=value". A value
// that would make the key longer than MaxIndexKey is replaced by
// "#" and its SHA-256 in hex, which still matches exactly.
func IndexKey(field, value string) string {
	if len(field)+1+len(value) > MaxIndexKey {
		sum := sha256.Sum256([]byte(value))
		value = "#" + hex.EncodeToString(sum[:])
	}
	return field + "=" + value
}

// The index fields InferTrail derives from every record.
const (
	IndexTrace      = "trace"      // the record's trace id
	IndexSession    = "session"    // the record's session id
	IndexActor      = "actor"      // actor.id
	IndexModel      = "model"      // gen_ai.response.model, else gen_ai.request.model
	IndexTool       = "tool"       // gen_ai.tool.name
	IndexToolCall   = "tool_call"  // gen_ai.tool.call.id, and each id of gen_ai.response.tool_calls
	IndexDecision   = "decision"   // policy.result
	IndexCredential = "credential" // actor.credential_fingerprint
	IndexLink       = "link"       // the id of a record this one links to
	IndexFinding    = "finding"    // the detector of a finding about the record
	IndexTerm       = "term"       // a keyed hash of a word of the content
)

// Query selects committed entries, newest first. Zero fields do not filter.
type Query struct {
	// Tenants, when not nil, keeps only entries of these tenants: an empty
	// non-nil slice matches nothing.
	Tenants []string
	Kinds   []Kind
	// From and To bound the observed time, in Unix nanoseconds:
	// From <= Time < To. Zero leaves that end open.
	From, To int64
	// Keys are index keys every entry must carry (all of them).
	Keys []string
	// Before keeps only entries with Seq < Before: the cursor of the next
	// page is the Seq of the last entry of this one. Zero: no bound.
	Before int64
	// Limit is the most entries returned; zero means 100. Stores cap it at
	// MaxQueryLimit.
	Limit int
}

// MaxQueryLimit is the most entries one Query returns.
const MaxQueryLimit = 10000

// Severity says how urgently a finding needs a human.
type Severity string

// Severities.
const (
	SeverityLow    Severity = "low"
	SeverityMedium Severity = "medium"
	SeverityHigh   Severity = "high"
)

// Finding is what a detector flagged: a pattern across records that an
// investigator should look at. Findings are derived from the log; the
// records they name are the evidence.
type Finding struct {
	// ID is derived from the detector, the subject and the records, so
	// that finding the same thing twice stores it once.
	ID       UUID
	Detector string // such as hallucinated_tool_call; see docs/detectors.md
	Severity Severity
	Tenant   string
	Subject  string  // the index key of what was examined, such as "trace=4bf9…"
	Records  []int64 // the records it is about, by sequence number, ascending
	Summary  string  // one sentence for a human
	Time     int64   // when it was first detected, Unix nanoseconds
	// N is the store's sequence of findings, increasing in the order they
	// were added: the cursor for paging.
	N int64
}

// FindingQuery selects stored findings, newest first. Zero fields do not
// filter.
type FindingQuery struct {
	Tenants   []string // as in Query: nil is every tenant
	Detectors []string
	Subject   string
	Seq       int64 // only findings naming this record; -1: any (the zero value 0 is record 0)
	Before    int64 // only findings with N < Before; zero: no bound
	Limit     int   // zero means 100; capped at MaxQueryLimit
}

// Cursors keep named positions in the log for the processes that follow
// it: the indexer, the detectors, each SIEM stream. A cursor is the
// sequence number of the next entry to process. Safe for concurrent use;
// several nodes may race to advance a cursor, and exactly one wins.
type Cursors interface {
	// Cursor returns the named cursor, or 0 when it was never advanced.
	Cursor(ctx context.Context, name string) (int64, error)
	// AdvanceCursor moves the named cursor from from to to (to > from). If
	// the cursor is not at from, nothing changes and the error wraps
	// ErrConflict. It is durable once it returns.
	AdvanceCursor(ctx context.Context, name string, from, to int64) error
}

type foregroundKey struct{}

// Foreground marks ctx as a caller that waits for its writes to the index,
// such as a read bringing the index up to date: a store does not hold them
// back behind appends (see Index.AddPostings).
func Foreground(ctx context.Context) context.Context {
	return context.WithValue(ctx, foregroundKey{}, true)
}

// IsForeground reports whether ctx was marked by Foreground.
func IsForeground(ctx context.Context) bool {
	v, _ := ctx.Value(foregroundKey{}).(bool)
	return v
}

// Index keeps the investigation index and answers queries with it.
type Index interface {
	// AddPostings writes postings and advances the named cursor from from
	// to to: if the cursor is not at from, nothing is written and the
	// error wraps ErrConflict. A posting already stored is skipped. A
	// posting for a record whose data key is erased is skipped. A store
	// may hold the write back, for a bounded time, while it is appending
	// to the log, unless ctx is Foreground. It may write the postings in
	// several transactions, the cursor moving with the last: should
	// another caller move the cursor in between (both indexing the same
	// entries), the postings written before stay, and the error wraps
	// ErrConflict.
	AddPostings(ctx context.Context, cursor string, from, to int64, postings []Posting) error
	// Query calls fn for each committed entry q selects, newest first, with
	// at most q.Limit (or 100) calls. The Entry is only valid during the
	// call, and fn must not call back into the store. A query is answered
	// from indexes: with keys, from the postings of the rarest key first.
	Query(ctx context.Context, q Query, fn func(*Entry) error) error
}

// FindingStore keeps detectors' findings.
type FindingStore interface {
	// AddFindings stores findings; one whose ID is stored already is
	// skipped. Each stored finding also posts IndexKey(IndexFinding,
	// detector) for each of its records, so that Query filters on it. It
	// sets N and Time (when zero) of the findings it stores.
	AddFindings(ctx context.Context, fs []Finding) error
	// Findings calls fn for each stored finding q selects, newest first.
	Findings(ctx context.Context, q FindingQuery, fn func(*Finding) error) error
}

// SplitIndexKey splits an index key into its field and value.
func SplitIndexKey(key string) (field, value string, ok bool) {
	return strings.Cut(key, "=")
}
