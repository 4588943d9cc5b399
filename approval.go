package infertrail

import (
	"context"
	"fmt"
	"time"
	"unicode/utf8"
)

// ApprovalStatus is where an approval stands.
type ApprovalStatus string

// The statuses. An approval starts pending and is decided once: by an
// approver (approved, rejected), by its deadline (expired), or by the held
// call ending first (cancelled: the client went away, or the server shut
// down). A decided approval never changes again.
const (
	ApprovalPending   ApprovalStatus = "pending"
	ApprovalApproved  ApprovalStatus = "approved"
	ApprovalRejected  ApprovalStatus = "rejected"
	ApprovalExpired   ApprovalStatus = "expired"
	ApprovalCancelled ApprovalStatus = "cancelled"
)

// Valid reports whether s is one of the statuses.
func (s ApprovalStatus) Valid() bool {
	switch s {
	case ApprovalPending, ApprovalApproved, ApprovalRejected, ApprovalExpired, ApprovalCancelled:
		return true
	}
	return false
}

// MaxApprovalSummary bounds an approval's summary, in bytes.
const MaxApprovalSummary = 512

// Approval is a call held at an enforcement point until a human decides
// on it: a policy decided require_approval. It is operational state, kept
// beside the log; the evidence is the policy_decision record that asked
// for it and the approval record that answers it.
type Approval struct {
	ID     UUID
	Tenant string
	Status ApprovalStatus
	// DecisionID is the policy_decision record that asked for the
	// approval; Governs the request record of the call held.
	DecisionID UUID
	Governs    UUID
	Point      PolicyPoint
	// Summary says what waits, for approvers who may not read content,
	// such as `tool "pay" on server payments`: names that records carry
	// in clear, never arguments or prompts.
	Summary   string
	TraceID   string
	SessionID string
	Requested time.Time
	Deadline  time.Time // when the wait ends: the call is then denied
	// Approver is who decided (an actor id; "infertrail" for an expiry or
	// a cancellation), Decided when, and ApprovalRecord the id of the
	// approval record that says so. All three are zero while pending.
	Approver       string
	Decided        time.Time
	ApprovalRecord UUID
}

// Validate checks a new approval before a store adds it: it needs an id,
// a valid tenant, status pending, the decision and the request it holds,
// a point, a summary of at most MaxApprovalSummary bytes of UTF-8, and a
// deadline after its request time. The error wraps ErrInvalid.
func (a *Approval) Validate() error {
	switch {
	case a.ID.IsZero():
		return fmt.Errorf("add approval: no id: %w", ErrInvalid)
	case !ValidTenant(a.Tenant):
		return fmt.Errorf("add approval %v: tenant %q is not a valid tenant name: %w", a.ID, a.Tenant, ErrInvalid)
	case a.Status != ApprovalPending:
		return fmt.Errorf("add approval %v: status %q, want pending: %w", a.ID, a.Status, ErrInvalid)
	case a.DecisionID.IsZero() || a.Governs.IsZero():
		return fmt.Errorf("add approval %v: no decision or no governed record: %w", a.ID, ErrInvalid)
	case a.Point == "":
		return fmt.Errorf("add approval %v: no enforcement point: %w", a.ID, ErrInvalid)
	case a.Summary == "" || len(a.Summary) > MaxApprovalSummary || !utf8.ValidString(a.Summary):
		return fmt.Errorf("add approval %v: summary must be 1 to %d bytes of UTF-8: %w", a.ID, MaxApprovalSummary, ErrInvalid)
	case a.Requested.IsZero() || !a.Deadline.After(a.Requested):
		return fmt.Errorf("add approval %v: deadline %v is not after the request time %v: %w", a.ID, a.Deadline, a.Requested, ErrInvalid)
	case a.Approver != "" || !a.Decided.IsZero() || !a.ApprovalRecord.IsZero():
		return fmt.Errorf("add approval %v: a pending approval has no approver, decision time or record: %w", a.ID, ErrInvalid)
	}
	return nil
}

// ApprovalStore keeps approvals. Implementations are safe for concurrent
// use, and several processes may share one store: the node that holds a
// call polls it for the decision another node wrote.
type ApprovalStore interface {
	// AddApproval stores a new pending approval (see Approval.Validate,
	// whose error it returns). An id already stored is an error wrapping
	// ErrConflict. It is durable once it returns.
	AddApproval(ctx context.Context, a Approval) error
	// Approval returns the approval with the id, read from the store each
	// time; a missing one is an error wrapping ErrNotFound.
	Approval(ctx context.Context, id UUID) (Approval, error)
	// DecideApproval moves a pending approval to status (any but pending),
	// decided by approver at time at, as the approval record with id
	// record says. It is a compare-and-set: of concurrent calls, on any
	// node, exactly one succeeds; the others, and any call on an approval
	// that is decided already, fail with an error wrapping ErrConflict. A
	// missing approval is an error wrapping ErrNotFound; a pending status,
	// an empty approver, a zero time or a zero record, one wrapping
	// ErrInvalid. It is durable once it returns.
	DecideApproval(ctx context.Context, id UUID, status ApprovalStatus, approver string, at time.Time, record UUID) error
	// Approvals calls fn for each approval of the tenants (nil: every
	// tenant; empty and not nil: none) with the status ("": any), newest
	// request first, at most limit of them (0: 100; capped at
	// MaxQueryLimit). It stops at the first error fn returns and returns
	// it. fn must not call back into the store.
	Approvals(ctx context.Context, tenants []string, status ApprovalStatus, limit int, fn func(*Approval) error) error
	// ScanApprovals calls fn for each approval, every tenant's, whose id
	// is greater than after (the zero id: from the first), in id order, at
	// most limit of them (0: 100; capped at MaxQueryLimit): a page of all
	// the approvals, for a copy of the whole store. It stops at the first
	// error fn returns and returns it. fn must not call back into the
	// store.
	ScanApprovals(ctx context.Context, after UUID, limit int, fn func(*Approval) error) error
}

// ApprovalLimit is how many approvals a listing of at most limit gives:
// 100 for zero or less, never more than MaxQueryLimit.
func ApprovalLimit(limit int) int {
	if limit <= 0 {
		return 100
	}
	return min(limit, MaxQueryLimit)
}

// CheckApprovalDecision checks the arguments of
// ApprovalStore.DecideApproval: status is a decision (not pending), and
// approver, at and record are set. The error wraps ErrInvalid.
func CheckApprovalDecision(id UUID, status ApprovalStatus, approver string, at time.Time, record UUID) error {
	switch {
	case !status.Valid() || status == ApprovalPending:
		return fmt.Errorf("decide approval %v: status %q is not a decision: %w", id, status, ErrInvalid)
	case approver == "":
		return fmt.Errorf("decide approval %v: no approver: %w", id, ErrInvalid)
	case at.IsZero():
		return fmt.Errorf("decide approval %v: no time: %w", id, ErrInvalid)
	case record.IsZero():
		return fmt.Errorf("decide approval %v: no approval record: %w", id, ErrInvalid)
	}
	return nil
}
