package infertrail

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sync"
	"time"
)

// Kind is what a record is evidence of.
type Kind string

// The record kinds.
const (
	KindInference      Kind = "inference"       // a model call: request, response, model identity
	KindPolicyDecision Kind = "policy_decision" // a policy engine's decision about another record
	KindToolCall       Kind = "tool_call"       // a tool invocation as it was executed
	KindDownstreamCall Kind = "downstream_call" // an observed call to another system
	KindRetrieval      Kind = "retrieval"       // documents retrieved for a prompt
	KindCredential     Kind = "credential"      // a non-human identity's credential lifecycle event
	KindApproval       Kind = "approval"        // a human decision
	KindAccess         Kind = "access"          // someone read or exported evidence
	KindErasure        Kind = "erasure"         // content of a scope was crypto-shredded
)

// Kinds lists every record kind.
var Kinds = []Kind{KindInference, KindPolicyDecision, KindToolCall, KindDownstreamCall,
	KindRetrieval, KindCredential, KindApproval, KindAccess, KindErasure}

// Valid reports whether k is one of Kinds.
func (k Kind) Valid() bool {
	switch k {
	case KindInference, KindPolicyDecision, KindToolCall, KindDownstreamCall,
		KindRetrieval, KindCredential, KindApproval, KindAccess, KindErasure:
		return true
	}
	return false
}

// SchemaVersion is the version of the leaf envelope this package writes.
const SchemaVersion = 1

// DefaultTenant is the tenant of a record submitted without one.
const DefaultTenant = "default"

// Actor is the non-human identity that acted, and the human it acted for.
type Actor struct {
	ID         string `json:"id,omitempty"`           // agent or workload id, such as "agent:payments-bot"
	Type       string `json:"type,omitempty"`         // agent, workload, service, user, …
	OnBehalfOf string `json:"on_behalf_of,omitempty"` // the human principal, if any
	Workload   string `json:"workload,omitempty"`     // workload identity, such as a SPIFFE id
	// CredentialFingerprint is a keyed fingerprint of the credential used,
	// never the credential.
	CredentialFingerprint string `json:"credential_fingerprint,omitempty"`
}

// Link points from a record to another record it relates to.
type Link struct {
	Rel string `json:"rel"` // answers, governs, follows, …: a lowercase token
	ID  UUID   `json:"id"`
}

// Record is one piece of evidence. Attributes and Content hold RFC 8785
// canonical JSON values; Commitments is set when a record is read back from
// the log.
type Record struct {
	Seq          int64
	ID           UUID
	Kind         Kind
	Time         time.Time // when it happened, as observed by the capture point
	ReceivedTime time.Time // when the server received it
	Tenant       string
	Actor        Actor
	SessionID    string
	TraceID      string // W3C trace id, 32 lowercase hex digits
	SpanID       string // W3C span id, 16 lowercase hex digits
	ParentSpanID string
	Source       string // the capture path: ingest, openai, anthropic, mcp, otlp, …
	Links        []Link
	Attributes   map[string]json.RawMessage
	Content      map[string]json.RawMessage
	Commitments  map[string]string // field → "sha256:<hex>"; in the leaf instead of Content
}

// UUID is a record id. New ids are UUIDv7: time-ordered.
type UUID [16]byte

// String returns the canonical lowercase hyphenated form.
func (u UUID) String() string {
	var b [36]byte
	u.encode(b[:])
	return string(b[:])
}

func (u UUID) encode(b []byte) {
	hex.Encode(b[0:8], u[0:4])
	b[8] = '-'
	hex.Encode(b[9:13], u[4:6])
	b[13] = '-'
	hex.Encode(b[14:18], u[6:8])
	b[18] = '-'
	hex.Encode(b[19:23], u[8:10])
	b[23] = '-'
	hex.Encode(b[24:], u[10:])
}

// IsZero reports whether u is the nil UUID.
func (u UUID) IsZero() bool { return u == UUID{} }

// MarshalText implements encoding.TextMarshaler.
func (u UUID) MarshalText() ([]byte, error) {
	b := make([]byte, 36)
	u.encode(b)
	return b, nil
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (u *UUID) UnmarshalText(b []byte) error {
	v, err := ParseUUID(string(b))
	if err != nil {
		return err
	}
	*u = v
	return nil
}

// ParseUUID parses the hyphenated form (either case). It accepts any
// version, but not the nil UUID.
func ParseUUID(s string) (UUID, error) {
	var u UUID
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return u, fmt.Errorf("parse uuid %q: want the form xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx: %w", s, ErrInvalid)
	}
	var h [32]byte
	copy(h[0:8], s[0:8])
	copy(h[8:12], s[9:13])
	copy(h[12:16], s[14:18])
	copy(h[16:20], s[19:23])
	copy(h[20:32], s[24:36])
	if _, err := hex.Decode(u[:], h[:]); err != nil {
		return UUID{}, fmt.Errorf("parse uuid %q: not hexadecimal: %w", s, ErrInvalid)
	}
	if u.IsZero() {
		return UUID{}, fmt.Errorf("parse uuid: the nil uuid is not a record id: %w", ErrInvalid)
	}
	return u, nil
}

var uuidState struct {
	sync.Mutex
	last int64 // last milliseconds·4096 + counter issued
}

// NewUUID returns a new UUIDv7 (RFC 9562): 48 bits of Unix milliseconds, a
// 12-bit counter that keeps ids from one process strictly increasing, and 62
// random bits.
func NewUUID() UUID {
	var u UUID
	if _, err := rand.Read(u[:]); err != nil {
		panic("infertrail: crypto/rand failed: " + err.Error())
	}
	ms := time.Now().UnixMilli()
	uuidState.Lock()
	v := ms << 12
	if v <= uuidState.last {
		v = uuidState.last + 1
	}
	uuidState.last = v
	uuidState.Unlock()
	ms, seq := v>>12, v&0xfff
	var t [8]byte
	binary.BigEndian.PutUint64(t[:], uint64(ms)<<16)
	copy(u[0:6], t[0:6])
	u[6] = 0x70 | byte(seq>>8)
	u[7] = byte(seq)
	u[8] = 0x80 | u[8]&0x3f
	return u
}
