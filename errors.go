package infertrail

import (
	"errors"
	"fmt"
	"time"
)

// Sentinel errors that callers branch on. Errors returned by this module wrap
// one of them where one applies; test with errors.Is.
var (
	// ErrNotFound means that what was asked for does not exist (yet).
	ErrNotFound = errors.New("not found")
	// ErrInvalid means that input was malformed or broke a rule; the error
	// text names the field.
	ErrInvalid = errors.New("invalid input")
	// ErrTooLarge means that input exceeded a size limit.
	ErrTooLarge = errors.New("too large")
	// ErrConflict means that a record id is already taken by a different record.
	ErrConflict = errors.New("conflict")
	// ErrPushback means that the log cannot take more work right now; the
	// caller should retry later (HTTP 503 with Retry-After).
	ErrPushback = errors.New("busy, retry later")
	// ErrUnavailable means that the store cannot be reached right now.
	ErrUnavailable = errors.New("store unavailable")
	// ErrStorageFull means that the store cannot take more data: its disk
	// is full, or its free space is down to the reserve kept for erasure,
	// checkpoints and the index. Nothing of the refused write is stored;
	// it can be retried once space is freed. It wraps ErrUnavailable, so
	// every caller that refuses work while the store is unreachable (the
	// gateways forward nothing unrecorded) refuses it here too.
	ErrStorageFull error = &kindOf{"storage full", ErrUnavailable}
	// ErrStorageFailed means that the store's storage failed a write: an
	// I/O error, or a file system that went read-only under it (ext4's
	// errors=remount-ro does so after an I/O error). Nothing of the
	// failed write is stored; writes fail until the storage is repaired.
	// It wraps ErrUnavailable, as ErrStorageFull does.
	ErrStorageFailed error = &kindOf{"storage failed", ErrUnavailable}
	// ErrNoIndex means that the store was opened without its
	// investigation index (a backup, which holds none, opened read-only),
	// so queries, cursors and findings cannot be read. It wraps
	// ErrNotFound.
	ErrNoIndex error = &kindOf{"no investigation index", ErrNotFound}
	// ErrUnauthenticated means that a request carried no credential, or one
	// that is unknown, expired or revoked (HTTP 401).
	ErrUnauthenticated = errors.New("unauthenticated")
	// ErrForbidden means that the caller is known but may not do what it
	// asked, or not in that tenant (HTTP 403).
	ErrForbidden = errors.New("forbidden")
	// ErrRateLimited means that the caller sent more requests than its rate
	// limit allows (HTTP 429); a *RateLimitError says when to retry.
	ErrRateLimited = errors.New("rate limited")
)

// RateLimitError is a request refused by a rate limit.
type RateLimitError struct {
	Limit      float64 // requests per second
	RetryAfter time.Duration
}

func (e *RateLimitError) Error() string {
	return fmt.Sprintf("more than %g requests per second; retry in %s", e.Limit, e.RetryAfter.Round(time.Millisecond))
}

func (e *RateLimitError) Unwrap() error { return ErrRateLimited }

// FieldError reports a problem with one field of one record of a batch.
type FieldError struct {
	Record int    // index of the record in its batch, -1 when not in a batch
	Field  string // path of the field, such as actor.id, links[2].rel or attributes["gen_ai.request.model"]
	Reason string
	Err    error // ErrInvalid or ErrTooLarge
}

func (e *FieldError) Error() string {
	if e.Record >= 0 {
		return fmt.Sprintf("record %d: field %s: %s", e.Record, e.Field, e.Reason)
	}
	return fmt.Sprintf("field %s: %s", e.Field, e.Reason)
}

func (e *FieldError) Unwrap() error { return e.Err }

func invalid(field, format string, args ...any) *FieldError {
	return &FieldError{Record: -1, Field: field, Reason: fmt.Sprintf(format, args...), Err: ErrInvalid}
}

func tooLarge(field, format string, args ...any) *FieldError {
	return &FieldError{Record: -1, Field: field, Reason: fmt.Sprintf(format, args...), Err: ErrTooLarge}
}

// CorruptError reports a stored record that a store cannot even decode (its
// bytes were damaged). Verification reports it as a failure of that record.
type CorruptError struct {
	Seq int64
	Err error
}

func (e *CorruptError) Error() string { return fmt.Sprintf("record %d is corrupt: %v", e.Seq, e.Err) }

func (e *CorruptError) Unwrap() error { return e.Err }

// kindOf is a sentinel error that is a kind of another: errors.Is matches
// both, and its text is its own.
type kindOf struct {
	msg    string
	parent error
}

func (e *kindOf) Error() string { return e.msg }
func (e *kindOf) Unwrap() error { return e.parent }
