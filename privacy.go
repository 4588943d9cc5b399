package infertrail

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"
)

// KeyID names a data key: the AES-256-GCM key that encrypts the content of
// one erasure scope (for one record kind and one day). An id is the key's
// creation time in Unix milliseconds (6 bytes, big-endian) and 10 random
// bytes, so ids grow with time.
type KeyID [16]byte

// IsZero reports whether k is the zero id, which marks content stored
// before content encryption existed.
func (k KeyID) IsZero() bool { return k == KeyID{} }

// DataKey is a data key as a store keeps it: wrapped by a key-encryption key
// that lives outside the store. Erasing it destroys Wrapped, which makes
// every blob encrypted under it unreadable (crypto-shredding).
type DataKey struct {
	ID      KeyID
	Tenant  string
	Scope   Scope  // the erasure scope, such as tenant=acme,session=sess-42
	Kind    Kind   // the kind of the records whose content it encrypts
	Period  int64  // start of the UTC day of those records' observed time, Unix seconds
	Created int64  // Unix nanoseconds
	KEK     string // id of the key-encryption key that wrapped it; empty once erased
	Wrapped []byte // nil once erased
	// ErasedBy is the sequence number of the erasure record that destroyed
	// the key, or -1 while it is live.
	ErasedBy int64
}

// Live reports whether the key has not been erased.
func (k *DataKey) Live() bool { return k.ErasedBy < 0 }

// KeyFilter selects data keys. Zero fields select everything.
type KeyFilter struct {
	Tenant string
	// ScopePrefix selects keys whose scope starts with it (a coarse cut;
	// callers match the scope exactly with Scope.Covers). Stores need not
	// index it: with Tenant, it may scan the tenant's keys.
	ScopePrefix string
	// IDFrom, when not zero, selects keys with ids from it on. Key ids
	// start with their creation time in milliseconds, so this selects the
	// keys created since a moment, through the (tenant, id) index.
	IDFrom KeyID
	Kind   Kind
	// PeriodBefore, when not 0, selects keys with Period < PeriodBefore.
	PeriodBefore int64
	// Live selects keys that are not erased.
	Live bool
	// NotKEK, when set, selects live keys wrapped by another KEK.
	NotKEK string
}

// KeyStore keeps data keys outside append transactions. Implementations are
// safe for concurrent use.
type KeyStore interface {
	// DataKeys returns the stored keys among ids, erased ones included
	// (with Wrapped nil); missing ids are absent.
	DataKeys(ctx context.Context, ids []KeyID) (map[KeyID]DataKey, error)
	// ScanKeys calls fn for each stored key that f selects, in id order,
	// starting after the id after (the zero id starts at the beginning). It
	// stops at the first error fn returns and returns it. The key is only
	// valid during the call.
	ScanKeys(ctx context.Context, f KeyFilter, after KeyID, fn func(*DataKey) error) error
	// RewrapKey replaces a live key's wrapped form, if it is still old. It
	// returns false, not an error, when the key was erased or rewrapped
	// meanwhile.
	RewrapKey(ctx context.Context, id KeyID, old, new []byte, kek string) (bool, error)
}

// HoldStore keeps legal holds. Implementations are safe for concurrent use.
type HoldStore interface {
	// AddHold stores a new hold. It waits for an erasure that is committing
	// (so a hold and an erasure never both succeed on the same content).
	AddHold(ctx context.Context, h Hold) error
	// ReleaseHold marks the tenant's hold with the id released. A missing or
	// already released hold is an error wrapping ErrNotFound.
	ReleaseHold(ctx context.Context, tenant string, id UUID, by string, at int64) error
	// Holds returns the tenant's holds (every tenant's when tenant is ""),
	// oldest first; only active ones when active is true.
	Holds(ctx context.Context, tenant string, active bool) ([]Hold, error)
}

// Hold is a legal hold: content in its scope cannot be erased, by request
// or by retention, until it is released.
type Hold struct {
	ID         UUID
	Tenant     string
	Scope      Scope
	Reason     string
	CreatedBy  string
	Created    int64 // Unix nanoseconds
	ReleasedBy string
	Released   int64 // Unix nanoseconds; 0 while active
}

// Active reports whether the hold is in force.
func (h *Hold) Active() bool { return h.Released == 0 }

// ErrHeld means that content is under a legal hold and cannot be erased.
var ErrHeld = errors.New("under legal hold")

// ErasedError reports content that was crypto-shredded by an erasure record.
type ErasedError struct {
	Field    string
	ErasedBy int64 // sequence number of the erasure record
}

func (e *ErasedError) Error() string {
	return fmt.Sprintf("content field %q was erased by record %d", e.Field, e.ErasedBy)
}

// Is makes errors.Is(err, ErrNotFound) true: erased content is not there.
func (e *ErasedError) Is(target error) bool { return target == ErrNotFound }

// Scope names an erasure scope, or selects several: comma-separated
// name=value pairs, tenant first, such as "tenant=acme,session=sess-42".
// Values escape '%', ',' and '=' as %25, %2C and %3D. A data key's scope
// names every scope field configured for the log (an absent value is
// empty); a selector names tenant and any subset of them, and covers every
// scope whose pairs include its own.
type Scope string

// ScopeFields are the names a scope may use besides tenant, in the order a
// scope lists them.
var ScopeFields = []string{"session", "user", "actor", "trace"}

// MaxScopeLen bounds a scope's length in bytes.
const MaxScopeLen = 1024

// ParseScope validates and normalises a scope or selector: tenant is
// required and comes first, the other names are among ScopeFields, each at
// most once, in ScopeFields order.
func ParseScope(s string) (Scope, error) {
	if len(s) > MaxScopeLen {
		return "", fmt.Errorf("scope is %d bytes, more than %d: %w", len(s), MaxScopeLen, ErrInvalid)
	}
	if !utf8.ValidString(s) {
		return "", fmt.Errorf("scope is not UTF-8: %w", ErrInvalid)
	}
	pairs := map[string]string{}
	for p := range strings.SplitSeq(s, ",") {
		name, val, ok := strings.Cut(strings.TrimSpace(p), "=")
		if !ok {
			return "", fmt.Errorf("scope %q: %q is not name=value: %w", s, p, ErrInvalid)
		}
		if name != "tenant" && !slices.Contains(ScopeFields, name) {
			return "", fmt.Errorf("scope %q: unknown name %q (want tenant, %s): %w", s, name, strings.Join(ScopeFields, ", "), ErrInvalid)
		}
		if _, dup := pairs[name]; dup {
			return "", fmt.Errorf("scope %q: %s given twice: %w", s, name, ErrInvalid)
		}
		v, err := unescapeScope(val)
		if err != nil {
			return "", fmt.Errorf("scope %q: %s: %w", s, name, err)
		}
		pairs[name] = v
	}
	t, ok := pairs["tenant"]
	if !ok || t == "" {
		return "", fmt.Errorf("scope %q names no tenant (write tenant=NAME first): %w", s, ErrInvalid)
	}
	var b ScopeBuilder
	b.Add("tenant", t)
	for _, f := range ScopeFields {
		if v, ok := pairs[f]; ok {
			b.Add(f, v)
		}
	}
	return b.Scope(), nil
}

func unescapeScope(v string) (string, error) {
	if !strings.Contains(v, "%") {
		return v, nil
	}
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		if v[i] != '%' {
			b.WriteByte(v[i])
			continue
		}
		if i+2 >= len(v) {
			return "", fmt.Errorf("bad escape in %q: %w", v, ErrInvalid)
		}
		switch strings.ToUpper(v[i+1 : i+3]) {
		case "25":
			b.WriteByte('%')
		case "2C":
			b.WriteByte(',')
		case "3D":
			b.WriteByte('=')
		default:
			return "", fmt.Errorf("bad escape %q in %q (only %%25, %%2C and %%3D): %w", v[i:i+3], v, ErrInvalid)
		}
		i += 2
	}
	return b.String(), nil
}

var scopeEscaper = strings.NewReplacer("%", "%25", ",", "%2C", "=", "%3D")

// ScopeBuilder builds a scope pair by pair; callers add tenant first and
// the other names in ScopeFields order.
type ScopeBuilder struct{ b strings.Builder }

// Add appends one pair.
func (s *ScopeBuilder) Add(name, value string) {
	if s.b.Len() > 0 {
		s.b.WriteByte(',')
	}
	s.b.WriteString(name)
	s.b.WriteByte('=')
	if strings.ContainsAny(value, "%,=") {
		scopeEscaper.WriteString(&s.b, value)
	} else {
		s.b.WriteString(value)
	}
}

// Scope returns the scope built.
func (s *ScopeBuilder) Scope() Scope { return Scope(s.b.String()) }

// Pairs returns the scope's name=value pairs in order, unescaped.
func (s Scope) Pairs() [][2]string {
	var out [][2]string
	for p := range strings.SplitSeq(string(s), ",") {
		name, val, _ := strings.Cut(p, "=")
		v, err := unescapeScope(val)
		if err != nil {
			v = val
		}
		out = append(out, [2]string{name, v})
	}
	return out
}

// Tenant returns the scope's tenant.
func (s Scope) Tenant() string {
	for _, p := range s.Pairs() {
		if p[0] == "tenant" {
			return p[1]
		}
	}
	return ""
}

// Covers reports whether the selector s covers scope k: every pair of s is
// a pair of k.
func (s Scope) Covers(k Scope) bool {
	if s == k {
		return true
	}
	have := map[string]string{}
	for _, p := range k.Pairs() {
		have[p[0]] = p[1]
	}
	for _, p := range s.Pairs() {
		if v, ok := have[p[0]]; !ok || v != p[1] {
			return false
		}
	}
	return true
}

// Overlaps reports whether some scope could be covered by both selectors:
// they agree on every name they share.
func (s Scope) Overlaps(o Scope) bool {
	have := map[string]string{}
	for _, p := range s.Pairs() {
		have[p[0]] = p[1]
	}
	for _, p := range o.Pairs() {
		if v, ok := have[p[0]]; ok && v != p[1] {
			return false
		}
	}
	return true
}
