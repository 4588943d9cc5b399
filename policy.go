package infertrail

import (
	"context"
	"encoding/json"
	"strconv"
	"time"
)

// PolicyPoint is where a policy is evaluated.
type PolicyPoint string

// The enforcement points.
const (
	PointInferenceRequest  PolicyPoint = "inference.request"  // before a model call is forwarded
	PointInferenceResponse PolicyPoint = "inference.response" // when a model's response is complete
	PointToolCall          PolicyPoint = "tool.call"          // before an MCP tools/call is forwarded
)

// PolicyResult is what a policy decided.
type PolicyResult string

// The results.
const (
	PolicyAllow           PolicyResult = "allow"
	PolicyDeny            PolicyResult = "deny"
	PolicyModify          PolicyResult = "modify" // allow, with obligations (such as redacting a field)
	PolicyRequireApproval PolicyResult = "require_approval"
)

// Decision is one policy evaluation's outcome.
type Decision struct {
	Result  PolicyResult
	Reasons []string
	// Obligations are what an allow or modify asks the enforcement point
	// to do, as the policy wrote them (such as {"redact": "messages"}).
	Obligations []json.RawMessage
	PolicyID    string        // the policy (Rego package) that decided
	Bundle      string        // "sha256:<hex>" of the loaded policy files
	InputDigest string        // "sha256:<hex>" of the canonical input document
	EvalTime    time.Duration // how long the evaluation took
}

// PolicyEngine decides on an enforcement point's input. Implementations
// are safe for concurrent use. An engine that cannot decide (no policy
// loaded for the point) returns Decision{Result: PolicyAllow} with no
// PolicyID, and the enforcement point records nothing; an error means the
// call must not go ahead (fail closed).
type PolicyEngine interface {
	Decide(ctx context.Context, point PolicyPoint, input map[string]any) (Decision, error)
}

// PointDefiner is implemented by a PolicyEngine that can tell whether a
// policy decides at a point, so that an enforcement point does work for
// it (such as holding a response) only when one does. An engine that
// does not implement it is taken to decide at every point.
type PointDefiner interface {
	Defines(point PolicyPoint) bool
}

// NewDecisionRecord returns the policy_decision record of d, taken at
// point about the record with id governs (zero: none). The caller sets
// the time, tenant, actor, session, trace and source, as for the record
// it governs.
func NewDecisionRecord(d Decision, point PolicyPoint, governs UUID) *Record {
	a := map[string]json.RawMessage{
		"policy.engine":  AppendString(nil, "opa"),
		"policy.point":   AppendString(nil, string(point)),
		"policy.result":  AppendString(nil, string(d.Result)),
		"policy.eval_ns": strconv.AppendInt(nil, d.EvalTime.Nanoseconds(), 10),
	}
	for k, v := range map[string]string{"policy.id": d.PolicyID, "policy.bundle_digest": d.Bundle, "policy.input_digest": d.InputDigest} {
		if v != "" {
			a[k] = AppendString(nil, v)
		}
	}
	r := &Record{ID: NewUUID(), Kind: KindPolicyDecision, Attributes: a}
	if !governs.IsZero() {
		r.Links = []Link{{Rel: "governs", ID: governs}}
	}
	if len(d.Reasons) > 0 || len(d.Obligations) > 0 {
		r.Content = map[string]json.RawMessage{}
		if len(d.Reasons) > 0 {
			b := []byte{'['}
			for i, s := range d.Reasons {
				if i > 0 {
					b = append(b, ',')
				}
				b = AppendString(b, s)
			}
			r.Content["policy.reasons"] = append(b, ']')
		}
		if len(d.Obligations) > 0 {
			if b, err := json.Marshal(d.Obligations); err == nil {
				r.Content["policy.obligations"] = b
			}
		}
	}
	return r
}
