// Package obligation carries out what a policy decision obliges an
// enforcement point to do besides letting the call through: today,
// redacting a field of the call before it is forwarded or delivered.
//
// An obligation is a JSON object the policy returns in its decision's
// "obligations" array. The one kind an enforcement point carries out is
//
//	{"redact": "<field path>", "detectors": ["<detector id or class>", …]}
//
// which masks, in the named field of the call, every value the named
// detectors of InferTrail's redaction rules find (all of them when
// "detectors" is absent), each as "[redacted:<detector id>]". An obligation
// an enforcement point cannot carry out is an error: the call must not go
// ahead, since the policy allowed it only on that condition. It does not
// import the policy engine, so the gateways can use it cheaply.
package obligation

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/infertrail/infertrail"
	"github.com/infertrail/infertrail/redact"
)

// Redaction is one redact obligation.
type Redaction struct {
	// Field is the dotted path of the member to redact, such as "messages"
	// or "arguments.iban" (see Fields for what each point accepts).
	Field string `json:"redact"`
	// Detectors are the detector ids or classes ("secret", "pii") to
	// mask; empty means every detector.
	Detectors []string `json:"detectors,omitempty"`
}

// Set is a decision's obligations, parsed.
type Set struct {
	Redact []Redaction
}

// Empty says whether s asks for nothing.
func (s Set) Empty() bool { return len(s.Redact) == 0 }

// Roots are the first elements of the field paths each point accepts; the
// rest of a path names members inside. "prompt" stands for every prompt
// field of a model call (messages, system, input, instructions).
var Roots = map[infertrail.PolicyPoint][]string{
	infertrail.PointInferenceRequest:  {"prompt", "messages", "system", "input", "instructions", "tools", "metadata", "user"},
	infertrail.PointInferenceResponse: {"response"},
	infertrail.PointToolCall:          {"arguments"},
}

// PromptFields are the request members "prompt" stands for.
var PromptFields = []string{"messages", "system", "input", "instructions"}

// maxObligations bounds the obligations of one decision.
const maxObligations = 64

// Parse reads the obligations of a decision taken at point. An obligation
// that is not a redaction with a field path this point accepts is an
// error naming it, wrapping infertrail.ErrInvalid.
func Parse(point infertrail.PolicyPoint, obligations []json.RawMessage) (Set, error) {
	var s Set
	if len(obligations) > maxObligations {
		return s, fmt.Errorf("%d obligations; at most %d are carried out: %w", len(obligations), maxObligations, infertrail.ErrInvalid)
	}
	for i, raw := range obligations {
		var members map[string]json.RawMessage
		if err := json.Unmarshal(raw, &members); err != nil {
			return s, fmt.Errorf("obligations[%d] is %s, want an object such as {\"redact\": \"messages\"}: %w", i, brief(raw), infertrail.ErrInvalid)
		}
		if _, ok := members["redact"]; !ok {
			return s, fmt.Errorf("obligations[%d] %s is not one InferTrail can carry out (only \"redact\" is): %w", i, brief(raw), infertrail.ErrInvalid)
		}
		for k := range members {
			if k != "redact" && k != "detectors" {
				return s, fmt.Errorf("obligations[%d] has an unknown member %q (a redaction has redact and detectors): %w", i, k, infertrail.ErrInvalid)
			}
		}
		var r Redaction
		dec := json.NewDecoder(bytes.NewReader(raw))
		if err := dec.Decode(&r); err != nil {
			return s, fmt.Errorf("obligations[%d] %s: redact must be a field path and detectors an array of strings: %w", i, brief(raw), infertrail.ErrInvalid)
		}
		parts := strings.Split(r.Field, ".")
		if slices.Contains(parts, "") {
			return s, fmt.Errorf("obligations[%d]: redact %q is not a dotted field path: %w", i, r.Field, infertrail.ErrInvalid)
		}
		if !slices.Contains(Roots[point], parts[0]) {
			return s, fmt.Errorf("obligations[%d]: redact %q: at %s the field must start with one of %s: %w",
				i, r.Field, point, strings.Join(Roots[point], ", "), infertrail.ErrInvalid)
		}
		if parts[0] == "prompt" && len(parts) > 1 {
			return s, fmt.Errorf("obligations[%d]: redact %q: \"prompt\" names the whole prompt and has no members: %w", i, r.Field, infertrail.ErrInvalid)
		}
		s.Redact = append(s.Redact, r)
	}
	return s, nil
}

func brief(raw json.RawMessage) string {
	if len(raw) > 80 {
		return string(raw[:77]) + "..."
	}
	return string(raw)
}

// Redactors carries out redactions with one rule set. It keeps one
// redactor per distinct detector list (policies name few), and is safe
// for concurrent use.
type Redactors struct {
	secret []byte
	rules  *redact.Rules
	mu     sync.Mutex
	byKey  map[string]*redact.Redactor
}

// maxRedactors bounds the redactors kept; past it they are built per use.
const maxRedactors = 256

// NewRedactors returns Redactors over rules (nil: the default rules);
// secret keys fingerprints, as for redaction of stored content.
func NewRedactors(secret []byte, rules *redact.Rules) *Redactors {
	if rules == nil {
		rules = redact.DefaultRules()
	}
	return &Redactors{secret: secret, rules: rules, byKey: map[string]*redact.Redactor{}}
}

// For returns the redactor that masks what detectors (ids or classes;
// empty: all) find. An unknown detector is an error naming it.
func (rs *Redactors) For(detectors []string) (*redact.Redactor, error) {
	key := strings.Join(detectors, "\x00")
	rs.mu.Lock()
	r := rs.byKey[key]
	rs.mu.Unlock()
	if r != nil {
		return r, nil
	}
	all := rs.rules.Rules()
	want := map[string]bool{}
	for _, d := range detectors {
		known := d == "secret" || d == "pii"
		for _, rule := range all {
			known = known || rule.ID == d
		}
		if !known {
			return nil, fmt.Errorf("redact obligation: detector %q is neither a detector id of the rules nor a class (secret, pii): %w", d, infertrail.ErrInvalid)
		}
		want[d] = true
	}
	cfg := redact.Config{FingerprintSecret: rs.secret, Rules: rs.rules,
		Actions: map[string]redact.Action{"secret": redact.Mask, "pii": redact.Mask}}
	for _, rule := range all {
		cfg.Actions[rule.ID] = redact.Mask
		if len(want) > 0 && !want[rule.ID] && !want[rule.Class] {
			cfg.Disable = append(cfg.Disable, rule.ID)
		}
	}
	r, err := redact.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("redact obligation: %w", err)
	}
	rs.mu.Lock()
	if len(rs.byKey) < maxRedactors {
		rs.byKey[key] = r
	}
	rs.mu.Unlock()
	return r, nil
}

// Applied is what carrying out a set's redactions did.
type Applied struct {
	// Findings count what was masked, per field and detector; they never
	// hold a value.
	Findings []redact.Finding
}

// Changed says whether anything was masked.
func (a Applied) Changed() bool {
	for _, f := range a.Findings {
		if f.Count > 0 {
			return true
		}
	}
	return false
}

// Apply carries out the redactions on doc, a JSON object whose members
// are the paths' roots (for "prompt", the PromptFields), and returns the
// new document: doc itself when nothing was masked. A path that names no
// member is not an error: there is nothing to redact. A doc that is not a
// JSON object is an error, and so is an object on a path that has the
// path's member twice, or in another case (see member).
func (rs *Redactors) Apply(doc []byte, redactions []Redaction) ([]byte, Applied, error) {
	var applied Applied
	if len(redactions) == 0 {
		return doc, applied, nil
	}
	var root map[string]json.RawMessage
	if err := json.Unmarshal(doc, &root); err != nil || root == nil {
		return nil, applied, fmt.Errorf("redact obligation: the document is not a JSON object: %w", infertrail.ErrInvalid)
	}
	out := doc
	for _, red := range redactions {
		r, err := rs.For(red.Detectors)
		if err != nil {
			return nil, applied, err
		}
		paths := [][]string{strings.Split(red.Field, ".")}
		if red.Field == "prompt" {
			paths = paths[:0]
			for _, f := range PromptFields {
				paths = append(paths, []string{f})
			}
		}
		for _, p := range paths {
			if out, err = redactPath(r, out, p, red.Field, &applied); err != nil {
				return nil, applied, err
			}
		}
	}
	return out, applied, nil
}

// redactPath masks the member at path p of the JSON value v, and returns
// the new value: v itself when nothing changed, or when v is not an
// object that has the path.
func redactPath(r *redact.Redactor, v []byte, p []string, field string, applied *Applied) ([]byte, error) {
	if len(p) == 0 {
		out, findings, err := r.Redact(field, v)
		if err != nil {
			return nil, fmt.Errorf("redact obligation: %w", err)
		}
		applied.Findings = append(applied.Findings, findings...)
		return out, nil
	}
	m, _, _, err := Member(v, p[0])
	if err != nil {
		return nil, fmt.Errorf("redact obligation: %s: %w", field, err)
	}
	if m == nil {
		return v, nil // not an object, or no such member
	}
	out, err := redactPath(r, m, p[1:], field, applied)
	if err != nil || bytes.Equal(out, m) {
		return v, err
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(v, &obj); err != nil {
		return nil, fmt.Errorf("redact obligation: %w", err)
	}
	obj[p[0]] = out
	b, err := json.Marshal(obj)
	if err != nil {
		return nil, fmt.Errorf("redact obligation: %w", err)
	}
	return b, nil
}

// Member returns the member name of the JSON object obj, and where its
// value starts and ends in obj; nil when obj is not an object or has no
// such member. A name that is there twice, or in another case, is an
// error wrapping infertrail.ErrInvalid: receivers differ on which of them
// they read (encoding/json takes the last, and matches names regardless
// of case), so masking one could leave the one read unmasked.
func Member(obj []byte, name string) (v json.RawMessage, start, end int, err error) {
	dec := json.NewDecoder(bytes.NewReader(obj))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, 0, 0, nil
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, 0, 0, fmt.Errorf("not JSON: %w", infertrail.ErrInvalid)
		}
		k, _ := tok.(string)
		var val json.RawMessage
		if err := dec.Decode(&val); err != nil {
			return nil, 0, 0, fmt.Errorf("not JSON: %w", infertrail.ErrInvalid)
		}
		if !strings.EqualFold(k, name) {
			continue
		}
		if k != name {
			return nil, 0, 0, fmt.Errorf("the member %[1]q is there as %[2]q, which receivers read as %[1]q or not at all: %[3]w", name, k, infertrail.ErrInvalid)
		}
		if v != nil {
			return nil, 0, 0, fmt.Errorf("the member %q is there twice, and receivers differ on which they read: %w", name, infertrail.ErrInvalid)
		}
		end = int(dec.InputOffset())
		v, start = val, end-len(val)
	}
	return v, start, end, nil
}
