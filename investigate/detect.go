package investigate

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/infertrail/infertrail"
)

// The detectors. docs/detectors.md says what each flags and why.
const (
	HallucinatedToolCall = "hallucinated_tool_call"
	UnattributedAction   = "unattributed_action"
	PolicyGap            = "policy_gap"
	CredentialMisuse     = "credential_misuse"
	ModelDrift           = "model_drift"
	IncompleteRecord     = "incomplete_record"
)

// Detectors lists every detector.
var Detectors = []string{HallucinatedToolCall, UnattributedAction, PolicyGap, CredentialMisuse, ModelDrift, IncompleteRecord}

// DetectConfig configures the detectors. The zero value runs them all
// with the defaults.
type DetectConfig struct {
	// Window is how long after a record the detectors wait for what should
	// follow it (the execution of a requested tool call, the response of a
	// request) before they judge it (default 5 minutes).
	Window time.Duration
	// ApprovedModels, if not empty, are the model versions allowed to
	// answer, as path.Match patterns ("gpt-4o-2024-*"); an inference
	// answered by any other is a model_drift finding.
	ApprovedModels []string
	// Disabled names detectors not to run.
	Disabled []string
}

// DefaultWindow is the default DetectConfig.Window.
const DefaultWindow = 5 * time.Minute

func (c DetectConfig) window() time.Duration {
	if c.Window <= 0 {
		return DefaultWindow
	}
	return c.Window
}

// Validate checks the configuration.
func (c DetectConfig) Validate() error {
	for _, d := range c.Disabled {
		if !slices.Contains(Detectors, d) {
			return fmt.Errorf("detectors: disabled: unknown detector %q (known: %s): %w", d, strings.Join(Detectors, ", "), infertrail.ErrInvalid)
		}
	}
	for _, p := range c.ApprovedModels {
		if _, err := path.Match(p, ""); err != nil {
			return fmt.Errorf("detectors: approved_models: bad pattern %q: %w", p, infertrail.ErrInvalid)
		}
	}
	return nil
}

// Lookup finds records beyond a group: a tool execution in another trace,
// the lifecycle of a credential.
type Lookup func(ctx context.Context, tenant string, kinds []infertrail.Kind, keys ...string) ([]*infertrail.Record, error)

// detection is one run of the detectors over a group.
type detection struct {
	ctx    context.Context
	g      *Group
	look   Lookup
	cfg    DetectConfig
	now    time.Time
	tenant string
	out    []infertrail.Finding
}

// Detect runs the enabled detectors over a group of one tenant's records
// and returns what they found. Operations younger than the window are not
// judged yet where what should follow them may still come.
func Detect(ctx context.Context, g *Group, look Lookup, cfg DetectConfig, now time.Time) ([]infertrail.Finding, error) {
	if len(g.Records) == 0 {
		return nil, nil
	}
	d := &detection{ctx: ctx, g: g, look: look, cfg: cfg, now: now, tenant: g.Records[0].Tenant}
	steps := []struct {
		name string
		fn   func() error
	}{
		{HallucinatedToolCall, d.hallucinated},
		{UnattributedAction, d.unattributed},
		{PolicyGap, d.policyGap},
		{CredentialMisuse, d.credentialMisuse},
		{ModelDrift, d.modelDrift},
		{IncompleteRecord, d.incomplete},
	}
	for _, s := range steps {
		if slices.Contains(cfg.Disabled, s.name) {
			continue
		}
		if err := s.fn(); err != nil {
			return nil, fmt.Errorf("detect %s in %s: %w", s.name, g.Subject, err)
		}
	}
	return d.out, nil
}

// settled reports whether the window after t has passed.
func (d *detection) settled(t time.Time) bool { return d.now.Sub(t) >= d.cfg.window() }

// flag adds a finding. Its id depends on the detector, the reason and the
// records, not on the subject, so that the same finding reached from a
// trace and from a session is one.
func (d *detection) flag(detector, reason string, sev infertrail.Severity, seqs []int64, format string, args ...any) {
	seqs = slices.Clone(seqs)
	slices.Sort(seqs)
	seqs = slices.Compact(seqs)
	h := sha256.New()
	fmt.Fprintf(h, "infertrail finding v1\x00%s\x00%s\x00%s", d.tenant, detector, reason)
	for _, s := range seqs {
		h.Write(binary.BigEndian.AppendUint64(nil, uint64(s)))
	}
	var id infertrail.UUID
	copy(id[:], h.Sum(nil))
	id[6] = 0x80 | id[6]&0x0f // version 8: a custom, name-based id
	id[8] = 0x80 | id[8]&0x3f
	d.out = append(d.out, infertrail.Finding{ID: id, Detector: detector, Severity: sev, Tenant: d.tenant,
		Subject: d.g.Subject, Records: seqs, Summary: fmt.Sprintf(format, args...)})
}

func (d *detection) lookup(kinds []infertrail.Kind, keys ...string) ([]*infertrail.Record, error) {
	if d.look == nil {
		return nil, nil
	}
	return d.look(d.ctx, d.tenant, kinds, keys...)
}

// requested maps the tool call ids that the group's inferences asked for
// to the operation that asked.
func (d *detection) requested() map[string]*Op {
	m := map[string]*Op{}
	for _, op := range d.g.Ops {
		if op.Kind() != infertrail.KindInference {
			continue
		}
		for _, r := range op.Records() {
			for _, tc := range RequestedToolCalls(r) {
				if m[tc.ID] == nil {
					m[tc.ID] = op
				}
			}
		}
	}
	return m
}

// hallucinated flags tool calls a model asked for that nothing executed,
// or that a policy blocked, within the window.
func (d *detection) hallucinated() error {
	executed := map[string]bool{}
	for _, op := range d.g.Ops {
		if op.Kind() == infertrail.KindToolCall || op.Kind() == infertrail.KindPolicyDecision {
			if id := op.Attr("gen_ai.tool.call.id"); id != "" {
				executed[id] = true
			}
		}
	}
	for _, op := range d.g.Ops {
		if op.Kind() != infertrail.KindInference || !d.settled(op.Time()) {
			continue
		}
		for _, r := range op.Records() {
			for _, tc := range RequestedToolCalls(r) {
				if executed[tc.ID] {
					continue
				}
				others, err := d.lookup([]infertrail.Kind{infertrail.KindToolCall, infertrail.KindPolicyDecision},
					infertrail.IndexKey(infertrail.IndexToolCall, tc.ID))
				if err != nil {
					return err
				}
				if len(others) > 0 {
					executed[tc.ID] = true
					continue
				}
				d.flag(HallucinatedToolCall, "call "+tc.ID, infertrail.SeverityMedium, op.Seqs(),
					"the model asked for tool %q (call %s) and nothing executed it within %s", tc.Name, tc.ID, d.cfg.window())
			}
		}
	}
	return nil
}

// isAction reports whether an operation acted on the world: a tool
// execution, a downstream call, or the use of a credential.
func isAction(op *Op) bool {
	switch op.Kind() {
	case infertrail.KindToolCall:
		return true
	case infertrail.KindDownstreamCall:
		// An MCP gateway's protocol messages (initialize, tools/list, …)
		// are bookkeeping between agent and server, not actions.
		return op.Attr("mcp.method.name") == ""
	case infertrail.KindCredential:
		return op.Attr("credential.event") == "used"
	}
	return false
}

// unattributed flags actions that no inference asked for.
func (d *detection) unattributed() error {
	asked := d.requested()
	attributed := map[*Op]bool{}
	// Tool executions first: a downstream call is attributed through the
	// tool execution that made it.
	ordered := slices.Clone(d.g.Ops)
	slices.SortStableFunc(ordered, func(a, b *Op) int {
		return compareInt(actionRank(a), actionRank(b))
	})
	for _, op := range ordered {
		if !isAction(op) || op.refused() {
			continue
		}
		ok := false
		if id := op.Attr("gen_ai.tool.call.id"); id != "" && op.Kind() == infertrail.KindToolCall {
			if asked[id] != nil {
				ok = true
			} else {
				recs, err := d.lookup([]infertrail.Kind{infertrail.KindInference}, infertrail.IndexKey(infertrail.IndexToolCall, id))
				if err != nil {
					return err
				}
				ok = len(recs) > 0
			}
		}
		if !ok {
			for _, r := range op.Records() {
				d.g.ancestors(r, func(a *infertrail.Record) bool {
					aop := d.g.Op(a)
					if a.Kind == infertrail.KindInference || aop != nil && aop != op && attributed[aop] {
						ok = true
						return false
					}
					return true
				})
				if ok {
					break
				}
			}
		}
		attributed[op] = ok
		if !ok {
			what := string(op.Kind())
			if t := op.Attr("gen_ai.tool.name"); t != "" {
				what += " " + strconv.Quote(t)
			} else if u := op.Attr("url.full"); u != "" {
				what += " to " + u
			} else if s := op.Attr("server.address"); s != "" {
				what += " to " + s
			}
			d.flag(UnattributedAction, "action", infertrail.SeverityHigh, op.Seqs(),
				"a %s ran that no model asked for: possible injection, or an action outside the agent", what)
		}
	}
	return nil
}

func actionRank(op *Op) int64 {
	if op.Kind() == infertrail.KindToolCall {
		return 0
	}
	return 1
}

// policyGap flags tool executions without a policy decision, despite a
// deny, or without the approval a decision required.
func (d *detection) policyGap() error {
	for _, op := range d.g.Ops {
		if op.Kind() != infertrail.KindToolCall || op.pending() && !d.settled(op.Time()) || op.refused() {
			continue
		}
		decisions, err := d.decisionsFor(op)
		if err != nil {
			return err
		}
		tool := op.Attr("gen_ai.tool.name")
		if len(decisions) == 0 {
			d.flag(PolicyGap, "no decision", infertrail.SeverityMedium, op.Seqs(),
				"tool %q executed with no policy decision", tool)
			continue
		}
		for _, dec := range decisions {
			seqs := append(op.Seqs(), dec.Seq)
			switch Attr(dec, "policy.result") {
			case "deny":
				d.flag(PolicyGap, "despite deny", infertrail.SeverityHigh, seqs,
					"tool %q executed despite a policy decision that denied it", tool)
			case "require_approval":
				approved, err := d.approved(dec)
				if err != nil {
					return err
				}
				if !approved {
					d.flag(PolicyGap, "no approval", infertrail.SeverityHigh, seqs,
						"tool %q executed without the approval its policy decision required", tool)
				}
			}
		}
	}
	return nil
}

// decisionsFor returns the policy decisions that govern an operation.
func (d *detection) decisionsFor(op *Op) ([]*infertrail.Record, error) {
	var out []*infertrail.Record
	ids := map[infertrail.UUID]bool{}
	for _, r := range op.Records() {
		ids[r.ID] = true
	}
	callID := op.Attr("gen_ai.tool.call.id")
	for _, r := range d.g.Records {
		if r.Kind != infertrail.KindPolicyDecision {
			continue
		}
		governs := callID != "" && Attr(r, "gen_ai.tool.call.id") == callID
		for _, l := range r.Links {
			if l.Rel == "governs" && ids[l.ID] {
				governs = true
			}
		}
		if governs {
			out = append(out, r)
		}
	}
	if len(out) > 0 {
		return out, nil
	}
	return d.lookup([]infertrail.Kind{infertrail.KindPolicyDecision}, infertrail.IndexKey(infertrail.IndexLink, op.Request.ID.String()))
}

// approved reports whether an approval record approved what a decision
// held.
func (d *detection) approved(dec *infertrail.Record) (bool, error) {
	check := func(r *infertrail.Record) bool {
		if r.Kind != infertrail.KindApproval || Attr(r, "approval.decision") != "approved" {
			return false
		}
		for _, l := range r.Links {
			if l.ID == dec.ID {
				return true
			}
		}
		return false
	}
	for _, r := range d.g.Records {
		if check(r) {
			return true, nil
		}
	}
	recs, err := d.lookup([]infertrail.Kind{infertrail.KindApproval}, infertrail.IndexKey(infertrail.IndexLink, dec.ID.String()))
	if err != nil {
		return false, err
	}
	return slices.ContainsFunc(recs, check), nil
}

// lifecycle is what the credential records of one fingerprint say.
type lifecycle struct {
	issued  *infertrail.Record
	subject string
	expiry  time.Time
	revoked *infertrail.Record
}

var lifecycleEvents = map[string]bool{"issued": true, "rotated": true, "revoked": true, "expired": true}

// credentialMisuse flags credentials used after their revocation or
// expiry, or by an identity they were not issued to.
func (d *detection) credentialMisuse() error {
	cache := map[string]*lifecycle{}
	for _, r := range d.g.Records {
		fp := r.Actor.CredentialFingerprint
		if fp == "" || r.Kind == infertrail.KindCredential && lifecycleEvents[Attr(r, "credential.event")] {
			continue
		}
		lc := cache[fp]
		if lc == nil {
			recs, err := d.lookup([]infertrail.Kind{infertrail.KindCredential}, infertrail.IndexKey(infertrail.IndexCredential, fp))
			if err != nil {
				return err
			}
			lc = newLifecycle(recs)
			cache[fp] = lc
		}
		switch {
		case lc.revoked != nil && r.Time.After(lc.revoked.Time):
			d.flag(CredentialMisuse, "after revocation", infertrail.SeverityHigh, []int64{r.Seq, lc.revoked.Seq},
				"a credential was used at %s, after its revocation at %s", r.Time.UTC().Format(time.RFC3339), lc.revoked.Time.UTC().Format(time.RFC3339))
		case !lc.expiry.IsZero() && r.Time.After(lc.expiry):
			d.flag(CredentialMisuse, "after expiry", infertrail.SeverityHigh, []int64{r.Seq, lc.issued.Seq},
				"a credential was used at %s, after it expired at %s", r.Time.UTC().Format(time.RFC3339), lc.expiry.UTC().Format(time.RFC3339))
		}
		if lc.subject != "" && r.Actor.ID != "" && r.Actor.ID != lc.subject {
			d.flag(CredentialMisuse, "other identity", infertrail.SeverityHigh, []int64{r.Seq, lc.issued.Seq},
				"a credential issued to %q was used by %q", lc.subject, r.Actor.ID)
		}
	}
	return nil
}

func newLifecycle(recs []*infertrail.Record) *lifecycle {
	lc := &lifecycle{}
	slices.SortFunc(recs, func(a, b *infertrail.Record) int { return compareInt(a.Seq, b.Seq) })
	for _, r := range recs {
		switch Attr(r, "credential.event") {
		case "issued", "rotated":
			lc.issued = r
			lc.subject = Attr(r, "credential.subject")
			lc.expiry = time.Time{}
			if t, err := time.Parse(time.RFC3339Nano, Attr(r, "credential.expiry_time")); err == nil {
				lc.expiry = t
			} else if v, ok := r.Attributes["credential.ttl_seconds"]; ok {
				var ttl float64
				if json.Unmarshal(v, &ttl) == nil && ttl > 0 {
					lc.expiry = r.Time.Add(time.Duration(ttl * float64(time.Second)))
				}
			}
		case "revoked", "expired":
			if lc.revoked == nil || r.Time.Before(lc.revoked.Time) {
				lc.revoked = r
			}
		}
	}
	return lc
}

// modelDrift flags a change of the answering model version between
// inferences of a group, and versions not on the approved list.
func (d *detection) modelDrift() error {
	var prev *Op
	prevModel := ""
	ops := slices.Clone(d.g.Ops)
	slices.SortStableFunc(ops, func(a, b *Op) int { return a.Time().Compare(b.Time()) })
	for _, op := range ops {
		if op.Kind() != infertrail.KindInference {
			continue
		}
		m := op.Attr("gen_ai.response.model")
		if m == "" {
			continue
		}
		if len(d.cfg.ApprovedModels) > 0 && !slices.ContainsFunc(d.cfg.ApprovedModels, func(p string) bool {
			ok, _ := path.Match(p, m)
			return ok
		}) {
			d.flag(ModelDrift, "unapproved "+m, infertrail.SeverityHigh, op.Seqs(),
				"model %q answered, and it is not on the approved list", m)
		}
		if prev != nil && m != prevModel {
			d.flag(ModelDrift, "change", infertrail.SeverityMedium, append(prev.Seqs(), op.Seqs()...),
				"the answering model changed from %q to %q within %s", prevModel, m, d.g.Subject)
		}
		prev, prevModel = op, m
	}
	return nil
}

// The content fields that hold an inference's prompt and its response:
// the OpenTelemetry GenAI names (OTLP, native ingest), and the bodies the
// LLM gateway keeps as they went over the wire.
var (
	promptFields   = []string{"gen_ai.input.messages", "gen_ai.system_instructions", "request"}
	responseFields = []string{"gen_ai.output.messages", "response", "response.raw"}
)

// incomplete flags inferences whose records lack what evidence of an
// inference needs: the prompt, the response, the model version, the
// caller's identity.
func (d *detection) incomplete() error {
	for _, op := range d.g.Ops {
		if op.Kind() != infertrail.KindInference || op.refused() || !d.settled(op.Time()) {
			continue
		}
		var missing []string
		if !slices.ContainsFunc(promptFields, op.Has) {
			missing = append(missing, "prompt")
		}
		embeddings := op.Attr("gen_ai.operation.name") == "embeddings"
		if !embeddings && !slices.ContainsFunc(responseFields, op.Has) {
			missing = append(missing, "response")
		}
		if op.Attr("gen_ai.response.model") == "" {
			missing = append(missing, "model version")
		}
		identified := false
		for _, r := range op.Records() {
			if r.Actor.ID != "" || r.Actor.CredentialFingerprint != "" {
				identified = true
			}
		}
		if !identified {
			missing = append(missing, "caller identity")
		}
		if len(missing) > 0 {
			d.flag(IncompleteRecord, strings.Join(missing, ","), infertrail.SeverityMedium, op.Seqs(),
				"an inference was recorded without its %s", strings.Join(missing, ", "))
		}
	}
	return nil
}
