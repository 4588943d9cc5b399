package httpapi

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/infertrail/infertrail"
	"github.com/infertrail/infertrail/approvals"
)

// ApprovalJSON is an approval as the API shows it. It holds no content:
// what the held call asks is in its records, for readers of content.
type ApprovalJSON struct {
	ID         string `json:"id"`
	Tenant     string `json:"tenant"`
	Status     string `json:"status"`
	Point      string `json:"point"`
	Summary    string `json:"summary"`
	DecisionID string `json:"decision_id"` // the policy_decision record that asked
	Governs    string `json:"governs"`     // the request record of the call held
	TraceID    string `json:"trace_id,omitempty"`
	SessionID  string `json:"session_id,omitempty"`
	Requested  string `json:"requested"`
	Deadline   string `json:"deadline"`
	Approver   string `json:"approver,omitempty"`
	Decided    string `json:"decided,omitempty"`
	// ApprovalRecord is the id of the approval record of the decision.
	ApprovalRecord string `json:"approval_record,omitempty"`
}

// ToApprovalJSON shows an approval.
func ToApprovalJSON(a infertrail.Approval) ApprovalJSON {
	j := ApprovalJSON{ID: a.ID.String(), Tenant: a.Tenant, Status: string(a.Status), Point: string(a.Point), Summary: a.Summary,
		DecisionID: a.DecisionID.String(), Governs: a.Governs.String(), TraceID: a.TraceID, SessionID: a.SessionID,
		Requested: a.Requested.UTC().Format(time.RFC3339Nano), Deadline: a.Deadline.UTC().Format(time.RFC3339Nano), Approver: a.Approver}
	if !a.Decided.IsZero() {
		j.Decided = a.Decided.UTC().Format(time.RFC3339Nano)
	}
	if !a.ApprovalRecord.IsZero() {
		j.ApprovalRecord = a.ApprovalRecord.String()
	}
	return j
}

// approvalsOrUnavailable returns the approvals service, or an error when
// the server holds no calls for approval.
func (s *Server) approvalsOrUnavailable() (*approvals.Service, error) {
	if s.cfg.Approvals == nil {
		return nil, fmt.Errorf("this server holds no calls for approval (no approvals service is configured): %w", infertrail.ErrUnavailable)
	}
	return s.cfg.Approvals, nil
}

var approvalStatuses = []string{"pending", "approved", "rejected", "expired", "cancelled"}

func (s *Server) listApprovals(w http.ResponseWriter, r *http.Request) {
	v := r.URL.Query()
	if err := knownParams(v, "tenant", "status", "limit"); err != nil {
		s.writeError(w, r, err)
		return
	}
	svc, err := s.approvalsOrUnavailable()
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	tenants, err := tenantsOf(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	status := v.Get("status")
	if status != "" && !slices.Contains(approvalStatuses, status) {
		s.writeError(w, r, invalidParam("status", "%q: want one of %s", status, strings.Join(approvalStatuses, ", ")))
		return
	}
	_, limit, err := pageParams(v)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	as, err := svc.List(r.Context(), tenants, infertrail.ApprovalStatus(status), limit)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	out := make([]ApprovalJSON, len(as))
	for i, a := range as {
		out[i] = ToApprovalJSON(a)
	}
	writeJSON(w, http.StatusOK, map[string][]ApprovalJSON{"approvals": out})
}

// approval returns the approval the path names, as if it did not exist
// when it is another tenant's.
func (s *Server) approval(r *http.Request) (*approvals.Service, infertrail.Approval, error) {
	svc, err := s.approvalsOrUnavailable()
	if err != nil {
		return nil, infertrail.Approval{}, err
	}
	id, err := uuidParam("id", r.PathValue("id"))
	if err != nil {
		return nil, infertrail.Approval{}, err
	}
	a, err := svc.Get(r.Context(), id)
	if err == nil && !principal(r).Reaches(a.Tenant) {
		err = fmt.Errorf("read approval %v: %w", id, infertrail.ErrNotFound)
	}
	return svc, a, err
}

func (s *Server) getApproval(w http.ResponseWriter, r *http.Request) {
	_, a, err := s.approval(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, ToApprovalJSON(a))
}

type decisionRequest struct {
	Decision  string `json:"decision"`
	Rationale string `json:"rationale"`
}

// decideApproval takes an approver's decision: the approval record is
// appended, naming the caller, before the decision takes effect.
func (s *Server) decideApproval(w http.ResponseWriter, r *http.Request) {
	var req decisionRequest
	if err := decodeBody(r, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	svc, a, err := s.approval(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	role := joinRoles(principal(r).Roles)
	if principal(r).ID == "" {
		role = "operator" // authentication is off
	}
	d, err := svc.Decide(r.Context(), a.ID, infertrail.ApprovalStatus(req.Decision), req.Rationale, actor(r), role)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, struct {
		Approval ApprovalJSON `json:"approval"`
		Record   int64        `json:"record"`
	}{ToApprovalJSON(d.Approval), d.Seq})
}
