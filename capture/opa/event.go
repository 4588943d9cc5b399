package opa

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/infertrail/infertrail"
)

// event is a decision event as OPA's decision_logs plugin uploads it
// (EventV1 in github.com/open-policy-agent/opa/v1/plugins/logs). Fields
// it does not name are ignored, so that what a newer OPA adds does not
// fail an upload.
type event struct {
	Labels              map[string]string          `json:"labels"`
	DecisionID          string                     `json:"decision_id"`
	BatchDecisionID     string                     `json:"batch_decision_id"`
	TraceID             string                     `json:"trace_id"`
	SpanID              string                     `json:"span_id"`
	Revision            string                     `json:"revision"` // deprecated by OPA for bundles
	Bundles             map[string]bundleInfo      `json:"bundles"`
	Path                string                     `json:"path"`
	Query               string                     `json:"query"`
	Input               json.RawMessage            `json:"input"`
	Result              json.RawMessage            `json:"result"`
	IntermediateResults json.RawMessage            `json:"intermediate_results"`
	MappedResult        json.RawMessage            `json:"mapped_result"`
	NDBuiltinCache      json.RawMessage            `json:"nd_builtin_cache"`
	Erased              []string                   `json:"erased"`
	Masked              []string                   `json:"masked"`
	Error               json.RawMessage            `json:"error"`
	RequestedBy         string                     `json:"requested_by"`
	Timestamp           string                     `json:"timestamp"`
	Metrics             map[string]json.RawMessage `json:"metrics"`
	RequestID           uint64                     `json:"req_id"`
	RuleLabels          json.RawMessage            `json:"rule_labels"`
	RequestContext      json.RawMessage            `json:"request_context"`
	Custom              json.RawMessage            `json:"custom"`
}

type bundleInfo struct {
	Revision string `json:"revision"`
}

// maxIDBytes bounds a decision id and an OPA instance id.
const maxIDBytes = 1000

// Map maps an uploaded JSON array of decision events (gzip already undone)
// to one policy_decision record per event, in order, for the tenant. A
// malformed event is a *infertrail.FieldError wrapping ErrInvalid whose
// Record is the event's index, and no record is returned.
func Map(body []byte, tenant string) ([]*infertrail.Record, error) {
	events, err := split(body)
	if err != nil {
		return nil, err
	}
	return mapEvents(events, tenant)
}

// split reads the body as a JSON array of values.
func split(body []byte) ([]json.RawMessage, error) {
	b := bytes.TrimSpace(body)
	if len(b) == 0 || b[0] != '[' {
		return nil, fmt.Errorf("the body is not a JSON array of decision events: %w", infertrail.ErrInvalid)
	}
	var events []json.RawMessage
	if err := json.Unmarshal(b, &events); err != nil {
		return nil, fmt.Errorf("the body is not a JSON array of decision events: %v: %w", err, infertrail.ErrInvalid)
	}
	return events, nil
}

func mapEvents(events []json.RawMessage, tenant string) ([]*infertrail.Record, error) {
	recs := make([]*infertrail.Record, len(events))
	for i, raw := range events {
		r, err := mapEvent(raw, tenant)
		if err != nil {
			var fe *infertrail.FieldError
			if errors.As(err, &fe) {
				fe.Record = i
			}
			return nil, err
		}
		recs[i] = r
	}
	return recs, nil
}

func invalid(field, format string, args ...any) *infertrail.FieldError {
	return &infertrail.FieldError{Record: -1, Field: field, Reason: fmt.Sprintf(format, args...), Err: infertrail.ErrInvalid}
}

// RecordID is the id of the record of OPA decision decisionID in the
// tenant: a UUIDv8 from SHA-256("opa-decision\x00" tenant "\x00"
// decisionID). An upload OPA sends again (it does, after any answer but
// 2xx) maps to the same records, which the trail takes as duplicates.
func RecordID(tenant, decisionID string) infertrail.UUID {
	sum := sha256.Sum256([]byte("opa-decision\x00" + tenant + "\x00" + decisionID))
	var u infertrail.UUID
	copy(u[:], sum[:16])
	u[6] = 0x80 | u[6]&0x0f
	u[8] = 0x80 | u[8]&0x3f
	return u
}

// mapEvent maps one decision event to its record.
func mapEvent(raw json.RawMessage, tenant string) (*infertrail.Record, error) {
	if b := bytes.TrimSpace(raw); len(b) == 0 || b[0] != '{' {
		return nil, invalid("", "not a JSON object")
	}
	var e event
	if err := json.Unmarshal(raw, &e); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return nil, invalid(te.Field, "a JSON %s, want %s", te.Value, jsonType(te.Type.Kind().String()))
		}
		return nil, invalid("", "%v", err)
	}
	switch {
	case e.DecisionID == "":
		return nil, invalid("decision_id", "missing")
	case len(e.DecisionID) > maxIDBytes:
		return nil, invalid("decision_id", "%d bytes, the limit is %d", len(e.DecisionID), maxIDBytes)
	case e.Timestamp == "":
		return nil, invalid("timestamp", "missing")
	}
	t, err := time.Parse(time.RFC3339Nano, e.Timestamp)
	if err != nil {
		return nil, invalid("timestamp", "%q is not an RFC 3339 time", e.Timestamp)
	}
	instance := e.Labels["id"]
	if len(instance) > maxIDBytes || !utf8.ValidString(instance) || strings.ContainsFunc(instance, isControl) {
		return nil, invalid("labels.id", "want at most %d bytes of UTF-8 without control characters", maxIDBytes)
	}
	actor := infertrail.Actor{ID: "opa", Type: "service"}
	if instance != "" {
		actor.ID += ":" + instance
	}
	r := &infertrail.Record{
		ID:         RecordID(tenant, e.DecisionID),
		Kind:       infertrail.KindPolicyDecision,
		Time:       t.UTC(),
		Tenant:     tenant,
		Actor:      actor,
		Source:     "opa",
		Attributes: map[string]json.RawMessage{},
		Content:    map[string]json.RawMessage{},
	}
	if validHexID(e.TraceID, 32) && validHexID(e.SpanID, 16) {
		r.TraceID, r.SpanID = e.TraceID, e.SpanID
	}
	a, c := r.Attributes, r.Content
	a["policy.engine"] = jsonString("opa")
	a["policy.decision_id"] = jsonString(e.DecisionID)
	if p := strings.Trim(e.Path, "/"); p != "" {
		a["policy.id"] = jsonString(p)
	}
	if e.BatchDecisionID != "" {
		a["opa.batch_decision_id"] = jsonString(e.BatchDecisionID)
	}
	if len(e.Bundles) > 0 {
		a["policy.bundle"] = jsonStrings(bundleList(e.Bundles))
	}
	if e.Revision != "" {
		a["opa.revision"] = jsonString(e.Revision)
	}
	if present(e.Result) {
		c["policy.result"] = e.Result
		res, reasons := decide(e.Path, e.Result)
		if res != "" {
			a["policy.result"] = jsonString(string(res))
		}
		if len(reasons) > 0 {
			c["policy.reasons"] = jsonStrings(reasons) // content: a reason may quote the input
		}
	}
	if present(e.Input) {
		c["policy.input"] = e.Input
		// The digest is of the input OPA evaluated only if OPA sent all of
		// it: a masked or erased input would give a digest of nothing that
		// was ever decided on.
		if !touchesInput(e.Erased) && !touchesInput(e.Masked) {
			canon, err := infertrail.Canonicalize(e.Input)
			if err != nil {
				return nil, invalid("input", "%v", err)
			}
			sum := sha256.Sum256(canon)
			a["policy.input_digest"] = jsonString("sha256:" + hex.EncodeToString(sum[:]))
		}
	}
	if instance != "" {
		a["opa.instance.id"] = jsonString(instance)
	}
	if v := e.Labels["version"]; v != "" {
		a["opa.version"] = jsonString(v)
	}
	if other := otherLabels(e.Labels); other != nil {
		a["opa.labels"] = other
	}
	for _, k := range [...]string{"timer_rego_query_eval_ns", "timer_sdk_decision_eval_ns"} {
		if v := e.Metrics[k]; isNumber(v) {
			a["policy.eval_ns"] = v
			break
		}
	}
	if len(e.Erased) > 0 {
		a["opa.erased"] = jsonStrings(e.Erased)
	}
	if len(e.Masked) > 0 {
		a["opa.masked"] = jsonStrings(e.Masked)
	}
	if e.RequestedBy != "" {
		a["policy.requested_by"] = jsonString(e.RequestedBy)
	}
	if e.RequestID != 0 {
		a["opa.request_id"] = strconv.AppendUint(nil, e.RequestID, 10)
	}
	if present(e.Error) {
		c["opa.error"] = e.Error
		var oe struct {
			Code string `json:"code"`
		}
		if json.Unmarshal(e.Error, &oe) == nil && oe.Code != "" {
			a["error.type"] = jsonString(oe.Code)
		}
	}
	if e.Query != "" {
		c["opa.query"] = jsonString(e.Query)
	}
	for _, f := range [...]struct {
		name string
		v    json.RawMessage
	}{
		{"opa.mapped_result", e.MappedResult},
		{"opa.intermediate_results", e.IntermediateResults},
		{"opa.nd_builtin_cache", e.NDBuiltinCache},
		{"opa.rule_labels", e.RuleLabels},
		{"opa.request_context", e.RequestContext},
		{"opa.custom", e.Custom},
	} {
		if present(f.v) {
			c[f.name] = f.v
		}
	}
	if len(c) == 0 {
		r.Content = nil
	}
	return r, nil
}

// bundleList lists the bundles as name@revision (the name alone without a
// revision), sorted.
func bundleList(bundles map[string]bundleInfo) []string {
	out := make([]string, 0, len(bundles))
	for name, b := range bundles {
		if b.Revision != "" {
			name += "@" + b.Revision
		}
		out = append(out, name)
	}
	slices.Sort(out)
	return out
}

// otherLabels is the labels but id and version, as a JSON object; nil if
// there are none.
func otherLabels(labels map[string]string) json.RawMessage {
	other := map[string]string{}
	for k, v := range labels {
		if k != "id" && k != "version" {
			other[k] = v
		}
	}
	if len(other) == 0 {
		return nil
	}
	b, _ := json.Marshal(other)
	return b
}

// touchesInput reports whether one of the erased or masked paths is the
// input or part of it.
func touchesInput(paths []string) bool {
	for _, p := range paths {
		if p == "/input" || strings.HasPrefix(p, "/input/") {
			return true
		}
	}
	return false
}

// decide reads a decision out of a result, when it is recognisable: a
// boolean (true is allow, except for a rule named deny or violation, where
// it is deny); a string that names a decision; a set of messages of a
// deny or violation rule (non-empty is deny); or an object with a
// "decision" or "result" string, or an "allow" or "allowed" boolean. An
// object's "reasons" (strings) or "reason" (a string) are the reasons.
func decide(path string, result json.RawMessage) (infertrail.PolicyResult, []string) {
	dec := json.NewDecoder(bytes.NewReader(result))
	dec.UseNumber()
	var v any
	if dec.Decode(&v) != nil {
		return "", nil
	}
	rule := path[strings.LastIndexByte(path, '/')+1:]
	negative := rule == "deny" || rule == "violation" || rule == "violations"
	switch x := v.(type) {
	case bool:
		if x != negative {
			return infertrail.PolicyAllow, nil
		}
		return infertrail.PolicyDeny, nil
	case string:
		return normalize(x), nil
	case []any:
		if !negative {
			return "", nil
		}
		if len(x) == 0 {
			return infertrail.PolicyAllow, nil
		}
		return infertrail.PolicyDeny, stringsOf(x)
	case map[string]any:
		var res infertrail.PolicyResult
		for _, k := range [...]string{"decision", "result"} {
			if s, ok := x[k].(string); ok {
				if res = normalize(s); res != "" {
					break
				}
			}
		}
		if res == "" {
			for _, k := range [...]string{"allow", "allowed"} {
				if b, ok := x[k].(bool); ok {
					res = infertrail.PolicyDeny
					if b {
						res = infertrail.PolicyAllow
					}
					break
				}
			}
		}
		var reasons []string
		switch rs := x["reasons"].(type) {
		case []any:
			reasons = stringsOf(rs)
		default:
			if s, ok := x["reason"].(string); ok && s != "" {
				reasons = stringsOf([]any{s})
			}
		}
		return res, reasons
	}
	return "", nil
}

// stringsOf returns the values as reasons, if they are all strings and
// few and short enough to be attributes; nil otherwise (they are still in
// the result, in content).
func stringsOf(vs []any) []string {
	if len(vs) > 32 {
		return nil
	}
	out := make([]string, 0, len(vs))
	for _, v := range vs {
		s, ok := v.(string)
		if !ok || len(s) > 512 {
			return nil
		}
		out = append(out, s)
	}
	return out
}

// normalize maps the words policies use for their decisions to allow,
// deny, modify or require_approval; an unknown word to "".
func normalize(s string) infertrail.PolicyResult {
	s = strings.NewReplacer("-", "_", " ", "_").Replace(strings.ToLower(strings.TrimSpace(s)))
	switch s {
	case "allow", "allowed", "permit", "permitted", "accept", "accepted", "approve", "approved", "pass", "ok":
		return infertrail.PolicyAllow
	case "deny", "denied", "forbid", "forbidden", "reject", "rejected", "block", "blocked", "refuse", "refused":
		return infertrail.PolicyDeny
	case "modify", "modified", "redact", "redacted", "mask", "masked", "mutate", "mutated":
		return infertrail.PolicyModify
	case "require_approval", "requires_approval", "approval_required", "needs_approval", "review",
		"human_review", "escalate", "ask", "confirm":
		return infertrail.PolicyRequireApproval
	}
	return ""
}

// present reports whether a field was given, and not as null.
func present(v json.RawMessage) bool {
	v = bytes.TrimSpace(v)
	return len(v) > 0 && !bytes.Equal(v, []byte("null"))
}

func isNumber(v json.RawMessage) bool {
	v = bytes.TrimSpace(v)
	if len(v) == 0 || !(v[0] == '-' || v[0] >= '0' && v[0] <= '9') {
		return false
	}
	var n json.Number
	return json.Unmarshal(v, &n) == nil
}

// validHexID reports whether s is n lowercase hex digits, not all zero:
// a W3C trace or span id.
func validHexID(s string, n int) bool {
	if len(s) != n || strings.Trim(s, "0") == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f }

// jsonType names a Go kind as the JSON type it decodes from.
func jsonType(kind string) string {
	switch kind {
	case "string":
		return "a string"
	case "map", "struct":
		return "an object"
	case "slice", "array":
		return "an array"
	case "bool":
		return "a boolean"
	case "uint", "uint8", "uint16", "uint32", "uint64":
		return "a whole number from 0"
	}
	return "a number"
}

func jsonString(s string) json.RawMessage { return infertrail.AppendString(nil, s) }

func jsonStrings(ss []string) json.RawMessage {
	b := []byte{'['}
	for i, s := range ss {
		if i > 0 {
			b = append(b, ',')
		}
		b = infertrail.AppendString(b, s)
	}
	return append(b, ']')
}
