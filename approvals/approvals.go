// Package approvals holds the calls a policy says need a human's approval
// until an approver decides on them or the wait ends, and records every
// decision as an approval record.
//
// An enforcement point (the LLM gateway, the MCP gateway) that gets
// require_approval writes the call's request record and the policy
// decision durably, then calls Service.Await, which adds a pending
// approval to the store and waits. An approver decides through
// Service.Decide (POST /v1/approvals/{id}, or the CLI): the approval
// record is appended first, and only then is the approval marked decided.
// The wait ends, denying the call, at the deadline, when the caller goes
// away, or when the service closes; that ending is recorded too, by
// InferTrail itself.
//
// Several nodes may share one store. The node that holds a call reads its
// approval from the store every poll interval, so a decision posted to
// any node reaches it within one interval; a decision posted to the node
// that holds the call wakes the wait at once.
package approvals

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/infertrail/infertrail"
)

// Defaults and bounds.
const (
	DefaultTimeout = 5 * time.Minute
	// MaxTimeout bounds the wait: a held call keeps its client's request
	// open, and clients, proxies and load balancers give up on requests
	// that stay silent much longer.
	MaxTimeout  = time.Hour
	DefaultPoll = 250 * time.Millisecond
	// MaxRationale bounds an approver's rationale, in bytes.
	MaxRationale = 4096
	// ServiceActor is the actor of the approval records InferTrail writes
	// itself (an expiry, a cancellation), and the approver their store
	// rows name.
	ServiceActor = "infertrail"
	// staleAfter is how long past its deadline a pending approval is
	// taken for one whose holder is gone (a node that crashed): it is
	// then expired by whoever reads it.
	staleAfter = time.Minute
	// settleTimeout bounds recording an expiry or a cancellation.
	settleTimeout = 30 * time.Second
)

// Reasons an approval ended without a human decision, in the attribute
// approval.reason of its record.
const (
	ReasonTimeout            = "timeout"             // expired: nobody decided in time
	ReasonHolderGone         = "holder_gone"         // expired: the node holding the call stopped without ending the wait
	ReasonClientDisconnected = "client_disconnected" // cancelled: the caller went away
	ReasonShutdown           = "shutdown"            // cancelled: the server shut down
	ReasonCallerDeadline     = "caller_deadline"     // cancelled: the enforcement point's own bound on the call ended first
)

// Config configures a Service. Zero values are documented defaults.
type Config struct {
	Store    infertrail.ApprovalStore // required
	Recorder infertrail.Recorder      // required: where approval records go (the ledger)
	// Timeout is how long a call waits for a decision before it is
	// denied (default DefaultTimeout, at most MaxTimeout).
	Timeout time.Duration
	// Poll is how often a waiting call reads its approval from the store,
	// to see decisions made on other nodes (default DefaultPoll).
	Poll time.Duration
	// Channel is how approvers reach this service, recorded as
	// approval.channel (default "api").
	Channel string
	Logger  *slog.Logger // default slog.Default()
	Now     func() time.Time
}

// Service holds calls for approval and takes approvers' decisions. It is
// safe for concurrent use.
type Service struct {
	cfg Config
	log *slog.Logger

	mu      sync.Mutex
	waiters map[infertrail.UUID]chan struct{} // the calls this node holds, by approval id
	closed  bool
	closing chan struct{}
	wg      sync.WaitGroup
}

// New returns a service over cfg.
func New(cfg Config) (*Service, error) {
	if cfg.Store == nil || cfg.Recorder == nil {
		return nil, errors.New("new approvals: Store and Recorder are required")
	}
	switch {
	case cfg.Timeout < 0:
		return nil, fmt.Errorf("new approvals: timeout %v is negative: %w", cfg.Timeout, infertrail.ErrInvalid)
	case cfg.Timeout == 0:
		cfg.Timeout = DefaultTimeout
	case cfg.Timeout > MaxTimeout:
		return nil, fmt.Errorf("new approvals: timeout %v is longer than %v, the most a call is held: %w", cfg.Timeout, MaxTimeout, infertrail.ErrInvalid)
	}
	switch {
	case cfg.Poll < 0:
		return nil, fmt.Errorf("new approvals: poll interval %v is negative: %w", cfg.Poll, infertrail.ErrInvalid)
	case cfg.Poll == 0:
		cfg.Poll = DefaultPoll
	}
	if cfg.Channel == "" {
		cfg.Channel = "api"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Service{cfg: cfg, log: cfg.Logger, waiters: map[infertrail.UUID]chan struct{}{}, closing: make(chan struct{})}, nil
}

// Timeout returns how long a call waits for a decision.
func (s *Service) Timeout() time.Duration { return s.cfg.Timeout }

func (s *Service) now() time.Time { return s.cfg.Now().UTC() }

// Await holds a call until it is approved or the wait ends. req says what
// waits: Tenant, DecisionID (the policy_decision record, durable before
// Await is called), Governs (the held call's request record, durable
// too), Point, Summary (names in clear, never content; clipped to
// infertrail.MaxApprovalSummary), TraceID and SessionID; Await sets the
// rest. It adds the pending approval and waits until:
//
//   - an approver decides: the decided approval is returned, approved or
//     rejected;
//   - the deadline (Timeout after the request) passes: the approval is
//     marked expired and an approval record says so;
//   - ctx is done (the caller went away, or its own bound ended), or the
//     service closes: the approval is marked cancelled, and recorded.
//
// When marking it expired or cancelled loses the race to an approver's
// decision, the approver's decision is returned. Only an approved
// approval lets the call go ahead; every other status denies it. An
// error means the approval could not be added (the call must be denied
// as well); once it is added, Await returns no error.
func (s *Service) Await(ctx context.Context, req infertrail.Approval) (infertrail.Approval, error) {
	now := s.now()
	a := infertrail.Approval{ID: infertrail.NewUUID(), Tenant: req.Tenant, Status: infertrail.ApprovalPending,
		DecisionID: req.DecisionID, Governs: req.Governs, Point: req.Point, Summary: clip(req.Summary, infertrail.MaxApprovalSummary),
		TraceID: req.TraceID, SessionID: req.SessionID, Requested: now, Deadline: now.Add(s.cfg.Timeout)}
	wake := make(chan struct{}, 1)
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return a, fmt.Errorf("hold for approval: the server is shutting down: %w", infertrail.ErrUnavailable)
	}
	s.waiters[a.ID] = wake
	s.wg.Add(1)
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.waiters, a.ID)
		s.mu.Unlock()
		s.wg.Done()
	}()
	if err := ctx.Err(); err != nil {
		return a, fmt.Errorf("hold for approval: %w", err)
	}
	// Added whether or not the caller stays: a store may report a write
	// that committed as failed when its context ends meanwhile, which would
	// leave a pending approval that nothing waits for. A caller gone by now
	// is seen below, and its approval cancelled.
	addCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), settleTimeout)
	err := s.cfg.Store.AddApproval(addCtx, a)
	cancel()
	if err != nil {
		return a, fmt.Errorf("hold for approval: %w", err)
	}
	s.log.Info("approval: a call waits for approval", "approval", a.ID.String(), "tenant", a.Tenant, "point", string(a.Point),
		"summary", a.Summary, "deadline", a.Deadline.Format(time.RFC3339))
	deadline := time.NewTimer(a.Deadline.Sub(now))
	defer deadline.Stop()
	poll := time.NewTicker(s.cfg.Poll)
	defer poll.Stop()
	for {
		select {
		case <-wake:
		case <-poll.C:
		case <-deadline.C:
			return s.settle(a, infertrail.ApprovalExpired, ReasonTimeout), nil
		case <-ctx.Done():
			reason := ReasonClientDisconnected
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				reason = ReasonCallerDeadline
			}
			return s.settle(a, infertrail.ApprovalCancelled, reason), nil
		case <-s.closing:
			return s.settle(a, infertrail.ApprovalCancelled, ReasonShutdown), nil
		}
		got, err := s.cfg.Store.Approval(ctx, a.ID)
		switch {
		case err != nil && ctx.Err() == nil:
			// The deadline still holds: a store that stays away denies the call.
			s.log.Warn("approval: reading a held call's approval failed", "approval", a.ID.String(), "err", err)
		case err == nil && got.Status != infertrail.ApprovalPending:
			return got, nil
		}
	}
}

// settle ends a wait without a human decision: it marks the approval
// status (expired or cancelled), unless an approver decided first, and
// records it. It returns the approval as it ends: denied in every case
// but an approver's approval that won the race.
func (s *Service) settle(a infertrail.Approval, status infertrail.ApprovalStatus, reason string) infertrail.Approval {
	ctx, cancel := context.WithTimeout(context.Background(), settleTimeout)
	defer cancel()
	at := s.now()
	id := infertrail.NewUUID()
	err := s.cfg.Store.DecideApproval(ctx, a.ID, status, ServiceActor, at, id)
	if errors.Is(err, infertrail.ErrConflict) {
		if got, err := s.cfg.Store.Approval(ctx, a.ID); err == nil {
			return got
		}
	}
	a.Status, a.Approver, a.Decided = status, ServiceActor, at
	if err != nil {
		// The call is denied all the same. The row stays pending until
		// it is found stale and expired (see staleAfter).
		s.log.Error("approval: marking an approval "+string(status)+" failed; the call is denied", "approval", a.ID.String(), "err", err)
		return a
	}
	a.ApprovalRecord = id
	r := s.record(a, id, at, infertrail.Actor{ID: ServiceActor, Type: "service"})
	r.Attributes["approval.reason"] = infertrail.AppendString(nil, reason)
	s.log.Info("approval: the wait ended without an approval; the call is denied", "approval", a.ID.String(), "status", string(status), "reason", reason)
	if err := s.append(ctx, r); err != nil {
		s.log.Error("approval: the approval record of an "+string(status)+" approval could not be written", "approval", a.ID.String(), "record", id.String(), "err", err)
	}
	return a
}

// append records r, retrying while the trail is busy or unavailable,
// until ctx ends.
func (s *Service) append(ctx context.Context, r *infertrail.Record) error {
	backoff := 10 * time.Millisecond
	for {
		_, err := s.cfg.Recorder.Record(ctx, r)
		if err == nil || errors.Is(err, infertrail.ErrInvalid) || errors.Is(err, infertrail.ErrTooLarge) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, time.Second)
	}
}

// record returns the approval record of a's decision: in a's tenant,
// trace and session, answering the decision that asked and, when it is
// an approval, approving the held call.
func (s *Service) record(a infertrail.Approval, id infertrail.UUID, at time.Time, by infertrail.Actor) *infertrail.Record {
	str := func(v string) json.RawMessage { return infertrail.AppendString(nil, v) }
	r := &infertrail.Record{ID: id, Kind: infertrail.KindApproval, Time: at, Tenant: a.Tenant, Actor: by,
		SessionID: a.SessionID, TraceID: a.TraceID, Source: "approvals",
		Links: []infertrail.Link{{Rel: "answers", ID: a.DecisionID}},
		Attributes: map[string]json.RawMessage{
			"approval.id":             str(a.ID.String()),
			"approval.decision":       str(string(a.Status)),
			"approval.point":          str(string(a.Point)),
			"approval.summary":        str(a.Summary),
			"approval.requested_time": str(a.Requested.Format(time.RFC3339Nano)),
			"approval.deadline":       str(a.Deadline.Format(time.RFC3339Nano)),
		}}
	if a.Status == infertrail.ApprovalApproved {
		r.Links = append(r.Links, infertrail.Link{Rel: "approves", ID: a.Governs})
	}
	return r
}

// Decision is what an approver decided, and where it is on record.
type Decision struct {
	Approval infertrail.Approval
	Seq      int64 // the approval record's sequence number
}

// Decide takes an approver's decision on a pending approval: decision is
// approved or rejected, rationale says why (required, at most
// MaxRationale bytes), approver is who decides and role the role that
// lets them (recorded as approval.approver_role). The approval record is
// appended first, durably, with the rationale as its content; only then
// is the approval marked decided, which releases or denies the held call
// on whichever node holds it.
//
// An approval that is decided already, or whose deadline has passed, is
// an error wrapping ErrConflict that names its outcome, and nothing is
// recorded. If another decision is taken at the same moment and wins,
// this one's record is already in the log: a second approval record,
// approval.outcome "too_late", follows it to say that it had no effect,
// and the error wraps ErrConflict. A missing approval is an error
// wrapping ErrNotFound; a bad decision or rationale, a
// *infertrail.FieldError naming the field.
func (s *Service) Decide(ctx context.Context, id infertrail.UUID, decision infertrail.ApprovalStatus, rationale string, approver infertrail.Actor, role string) (Decision, error) {
	if decision != infertrail.ApprovalApproved && decision != infertrail.ApprovalRejected {
		return Decision{}, &infertrail.FieldError{Record: -1, Field: "decision", Reason: fmt.Sprintf("%q: want approved or rejected", decision), Err: infertrail.ErrInvalid}
	}
	rationale = strings.TrimSpace(rationale)
	switch {
	case rationale == "":
		return Decision{}, &infertrail.FieldError{Record: -1, Field: "rationale", Reason: "required: say why (the approval record keeps it)", Err: infertrail.ErrInvalid}
	case len(rationale) > MaxRationale:
		return Decision{}, &infertrail.FieldError{Record: -1, Field: "rationale", Reason: fmt.Sprintf("longer than %d bytes", MaxRationale), Err: infertrail.ErrTooLarge}
	case !utf8.ValidString(rationale):
		return Decision{}, &infertrail.FieldError{Record: -1, Field: "rationale", Reason: "not UTF-8", Err: infertrail.ErrInvalid}
	}
	if approver.ID == "" {
		return Decision{}, fmt.Errorf("decide approval %v: no approver: %w", id, infertrail.ErrInvalid)
	}
	a, err := s.Get(ctx, id)
	if err != nil {
		return Decision{}, err
	}
	at := s.now()
	if err := decidable(a, at); err != nil {
		return Decision{}, err
	}
	a.Status, a.Approver, a.Decided = decision, approver.ID, at
	rec := infertrail.NewUUID()
	r := s.record(a, rec, at, approver)
	r.Attributes["approval.approver"] = infertrail.AppendString(nil, approver.ID)
	if role != "" {
		r.Attributes["approval.approver_role"] = infertrail.AppendString(nil, role)
	}
	r.Attributes["approval.channel"] = infertrail.AppendString(nil, s.cfg.Channel)
	r.Content = map[string]json.RawMessage{"approval.rationale": infertrail.AppendString(nil, rationale)}
	// From here on the decision is carried through even if the approver
	// goes away: a record without its effect would need explaining.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), settleTimeout)
	defer cancel()
	seqs, err := s.cfg.Recorder.Record(ctx, r)
	if err != nil {
		return Decision{}, fmt.Errorf("record the decision on approval %v: %w", id, err)
	}
	if err = s.cfg.Store.DecideApproval(ctx, id, decision, approver.ID, at, rec); err != nil {
		// The record is in the log. Unless the store took the decision
		// after all (its answer was lost), it has no effect: say so in
		// the log.
		now, gerr := s.cfg.Store.Approval(ctx, id)
		switch {
		case gerr == nil && now.ApprovalRecord == rec:
			err = nil
		case gerr != nil && !errors.Is(err, infertrail.ErrConflict):
			s.log.Error("approval: a decision is on record, and whether it took effect is unknown", "approval", id.String(), "record", rec.String(), "err", err)
			return Decision{}, fmt.Errorf("decide approval %v: %w", id, err)
		}
	}
	if err != nil {
		outcome := "not_applied"
		if errors.Is(err, infertrail.ErrConflict) {
			outcome = "too_late"
			if now, gerr := s.cfg.Store.Approval(ctx, id); gerr == nil && now.Status != infertrail.ApprovalPending {
				err = decidedError(now)
			}
		}
		c := s.record(a, infertrail.NewUUID(), s.now(), approver)
		c.Links = append(c.Links, infertrail.Link{Rel: "follows", ID: rec})
		c.Attributes["approval.approver"] = infertrail.AppendString(nil, approver.ID)
		c.Attributes["approval.outcome"] = infertrail.AppendString(nil, outcome)
		if aerr := s.append(ctx, c); aerr != nil {
			s.log.Error("approval: the record saying a decision had no effect could not be written", "approval", id.String(), "record", rec.String(), "err", aerr)
		}
		return Decision{}, err
	}
	a.ApprovalRecord = rec
	s.mu.Lock()
	if wake := s.waiters[id]; wake != nil {
		select {
		case wake <- struct{}{}:
		default:
		}
	}
	s.mu.Unlock()
	s.log.Info("approval: decided", "approval", id.String(), "decision", string(decision), "approver", approver.ID, "record", seqs[0])
	return Decision{Approval: a, Seq: seqs[0]}, nil
}

// decidable reports, as an error wrapping ErrConflict, why a cannot be
// decided at time at, or nil when it can.
func decidable(a infertrail.Approval, at time.Time) error {
	if a.Status != infertrail.ApprovalPending {
		return decidedError(a)
	}
	if !at.Before(a.Deadline) {
		return fmt.Errorf("approval %v expired at %s, so the call was denied; this decision was not recorded: %w",
			a.ID, a.Deadline.Format(time.RFC3339), infertrail.ErrConflict)
	}
	return nil
}

func decidedError(a infertrail.Approval) error {
	by := ""
	if a.Approver != "" && a.Approver != ServiceActor {
		by = " by " + a.Approver
	}
	return fmt.Errorf("approval %v is already %s%s at %s; this decision was not recorded: %w",
		a.ID, a.Status, by, a.Decided.Format(time.RFC3339), infertrail.ErrConflict)
}

// Get returns the approval with the id. A pending approval found well
// past its deadline, whose holder must be gone (a node that stopped
// without ending its waits), is expired and recorded first.
func (s *Service) Get(ctx context.Context, id infertrail.UUID) (infertrail.Approval, error) {
	a, err := s.cfg.Store.Approval(ctx, id)
	if err != nil {
		return a, err
	}
	return s.sweep(a), nil
}

// List returns at most limit approvals of the tenants (nil: every
// tenant) with the status ("": any), newest first, expiring stale ones
// as Get does.
func (s *Service) List(ctx context.Context, tenants []string, status infertrail.ApprovalStatus, limit int) ([]infertrail.Approval, error) {
	var out []infertrail.Approval
	err := s.cfg.Store.Approvals(ctx, tenants, status, limit, func(a *infertrail.Approval) error {
		out = append(out, *a)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list approvals: %w", err)
	}
	kept := out[:0]
	for _, a := range out {
		if a = s.sweep(a); status == "" || a.Status == status {
			kept = append(kept, a)
		}
	}
	return kept, nil
}

// sweep expires a if it is pending and stale.
func (s *Service) sweep(a infertrail.Approval) infertrail.Approval {
	if a.Status != infertrail.ApprovalPending || s.now().Before(a.Deadline.Add(staleAfter)) {
		return a
	}
	s.mu.Lock()
	_, mine := s.waiters[a.ID]
	s.mu.Unlock()
	if mine {
		return a // this node holds it and will settle it
	}
	return s.settle(a, infertrail.ApprovalExpired, ReasonHolderGone)
}

// Close ends every wait on this node, as cancelled (the calls are
// denied), refuses new ones, and waits until the waits have ended and
// been recorded, or ctx ends.
func (s *Service) Close(ctx context.Context) error {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		close(s.closing)
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("close approvals: calls still held: %w", ctx.Err())
	}
}

// clip returns s cut to at most n bytes of valid UTF-8.
func clip(s string, n int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "")
}
