package gateway

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/infertrail/infertrail"
	"github.com/infertrail/infertrail/policy"
	"github.com/infertrail/infertrail/policy/obligation"
	"github.com/infertrail/infertrail/redact"
)

// decidesResponses says whether the policy in force decides at the
// inference.response point, so that responses are held for it.
func (g *Gateway) decidesResponses() bool {
	if g.cfg.Policy == nil {
		return false
	}
	if d, ok := g.cfg.Policy.(infertrail.PointDefiner); ok {
		return d.Defines(infertrail.PointInferenceResponse)
	}
	return true
}

// policyInput is the input document of the inference.request point (see
// docs/policy.md): who calls, and what the request asks of the model.
func (ex *exchange) policyInput(body []byte) map[string]any {
	// The body was checked by the provider's ParseRequest; what does not
	// decode gives no prompt, as with json.Unmarshal.
	req, _ := policy.DecodeObject(body)
	inf := map[string]any{"provider": ex.rt.p.Name(), "model": ex.call.Model, "stream": ex.call.Stream,
		"operation": ex.rt.ep.Operation, "parameters": ex.call.Attributes}
	for _, k := range []string{"messages", "system", "input", "instructions", "tools"} {
		if v, ok := req[k]; ok {
			inf[k] = v
		}
	}
	inf["prompt_text"] = policy.PromptText(req)
	caller := map[string]any{"actor": map[string]any{"id": ex.id.actor.ID, "type": ex.id.actor.Type, "on_behalf_of": ex.id.actor.OnBehalfOf},
		"tenant": ex.id.tenant, "virtual_key": ex.id.vkey, "token": ex.id.token, "credential_fingerprint": ex.id.actor.CredentialFingerprint}
	return map[string]any{"point": string(infertrail.PointInferenceRequest), "time": ex.start.UTC().Format(time.RFC3339Nano),
		"caller": caller, "session_id": ex.session, "trace_id": ex.tc.TraceID, "inference": inf, "earlier": []any{}}
}

// responsePolicyInput is the input document of the inference.response
// point: the request's, and the response as rebuilt.
func (ex *exchange) responsePolicyInput(res *Response) map[string]any {
	in := make(map[string]any, len(ex.policyIn)+1)
	for k, v := range ex.policyIn {
		in[k] = v
	}
	in["point"] = string(infertrail.PointInferenceResponse)
	calls := make([]any, len(res.ToolCalls))
	for i, t := range res.ToolCalls {
		calls[i] = map[string]any{"id": t.ID, "name": t.Name, "arguments": t.Arguments}
	}
	resp := map[string]any{"model": res.Model, "text": responseText(res.Body), "tool_calls": calls, "stream": ex.stream, "complete": res.Done}
	if res.ID != "" {
		resp["id"] = res.ID
	}
	if len(res.FinishReasons) > 0 {
		resp["finish_reason"] = res.FinishReasons[0]
	}
	if len(res.Usage) > 0 {
		u := make(map[string]any, len(res.Usage))
		for k, v := range res.Usage {
			u[k] = v
		}
		resp["usage"] = u
	}
	if res.Truncated {
		resp["truncated"] = true
	}
	in["response"] = resp
	return in
}

// responseText is the text of a rebuilt response body, in the shape of
// each provider: OpenAI chat completions (choices[].message.content), the
// Responses API (output[].content[].text) and Anthropic messages
// (content[].text). Several texts are joined by newlines.
func responseText(body json.RawMessage) string {
	var b struct {
		Choices []struct {
			Message struct {
				Content json.RawMessage `json:"content"`
			} `json:"message"`
		} `json:"choices"`
		Output []struct {
			Content []textPart `json:"content"`
		} `json:"output"`
		Content []textPart `json:"content"`
	}
	if len(body) == 0 || json.Unmarshal(body, &b) != nil {
		return ""
	}
	var texts []string
	for _, c := range b.Choices {
		var s string
		var parts []textPart
		switch {
		case json.Unmarshal(c.Message.Content, &s) == nil:
			texts = append(texts, s)
		case json.Unmarshal(c.Message.Content, &parts) == nil:
			texts = appendTexts(texts, parts)
		}
	}
	for _, o := range b.Output {
		texts = appendTexts(texts, o.Content)
	}
	texts = appendTexts(texts, b.Content)
	return strings.Join(texts, "\n")
}

type textPart struct {
	Type string `json:"type"`
	Text string `json:"text"`
}

func appendTexts(texts []string, parts []textPart) []string {
	for _, p := range parts {
		if p.Text != "" && (p.Type == "text" || p.Type == "output_text") {
			texts = append(texts, p.Text)
		}
	}
	return texts
}

// obligations carries out a decision's obligations at point on doc, a
// JSON object (a request body; {"response": body}). It returns the
// document to use in its place (nil: unchanged) and what was masked.
func (ex *exchange) obligations(point infertrail.PolicyPoint, d []json.RawMessage, doc []byte) ([]byte, []redact.Finding, error) {
	set, err := obligation.Parse(point, d)
	if err != nil || set.Empty() {
		return nil, nil, err
	}
	out, applied, err := ex.rt.g.cfg.Redactors.Apply(doc, set.Redact)
	if err != nil || !applied.Changed() {
		return nil, nil, err
	}
	return out, applied.Findings, nil
}

// decisionRecord returns the policy_decision record of d, taken at point
// about the record with id governs, with this call's time, tenant, actor,
// session, trace and source.
func (ex *exchange) decisionRecord(d infertrail.Decision, point infertrail.PolicyPoint, governs infertrail.UUID) *infertrail.Record {
	r := infertrail.NewDecisionRecord(d, point, governs)
	b := ex.baseRecord()
	r.Time, r.Tenant, r.Actor, r.SessionID = b.Time, b.Tenant, b.Actor, b.SessionID
	r.TraceID, r.SpanID, r.ParentSpanID, r.Source = b.TraceID, b.SpanID, b.ParentSpanID, b.Source
	return r
}

// withhold keeps the upstream's response from the client, who gets an
// error in the provider's shape instead.
func (ex *exchange) withhold(status int, msg string) {
	ex.withheld, ex.withheldStatus = msg, status
	ex.gatewayBody = ex.rt.p.ErrorBody(status, msg)
}

// decideResponse evaluates the inference.response policy on a complete
// response, before its record is written. held says whether the response
// is still held back (it can be withheld or changed); a stream that has
// passed through cannot, and its decision is recorded as not enforced. It
// reports whether it has written the response record itself (a response
// held for an approval), so that the caller must not.
func (c *capture) decideResponse(res *Response) (finished bool) {
	ex := c.ex
	g := ex.rt.g
	d, err := g.cfg.Policy.Decide(ex.inCtx, infertrail.PointInferenceResponse, ex.responsePolicyInput(res))
	if err != nil {
		g.log.Error("gateway: response policy evaluation failed", "provider", ex.rt.p.Name(), "held", c.held, "err", err)
		ex.policyFailure = "its policy could not be evaluated: " + err.Error()
		if c.held {
			ex.withhold(http.StatusServiceUnavailable, "the model's response was withheld: its policy could not be evaluated")
		}
		return false
	}
	if d.PolicyID == "" {
		return false // the policy was unloaded meanwhile
	}
	dec := ex.decisionRecord(d, infertrail.PointInferenceResponse, ex.respID)
	ex.respDecision = dec
	notEnforced := func() { dec.Attributes["policy.enforced"] = json.RawMessage("false") }
	reasons := ""
	if len(d.Reasons) > 0 {
		reasons = ": " + strings.Join(d.Reasons, "; ")
	}
	switch d.Result {
	case infertrail.PolicyAllow, infertrail.PolicyModify:
		if len(d.Obligations) == 0 {
			return false
		}
		if !c.held {
			notEnforced()
			return false
		}
		if ex.stream {
			ex.withhold(http.StatusForbidden, "the model's response was withheld: its policy asks for a redaction, and a streamed response cannot be redacted")
			return false
		}
		doc, err := json.Marshal(map[string]json.RawMessage{"response": res.Body})
		if err == nil {
			var out []byte
			var found []redact.Finding
			out, found, err = ex.obligations(infertrail.PointInferenceResponse, d.Obligations, doc)
			if err == nil && out != nil {
				var m struct {
					Response json.RawMessage `json:"response"`
				}
				if err = json.Unmarshal(out, &m); err == nil {
					ex.delivered, ex.respRedactions = m.Response, found
				}
			}
		}
		if err != nil {
			ex.withhold(http.StatusForbidden, "the model's response was withheld: its policy's obligations cannot be carried out: "+err.Error())
		}
		return false
	case infertrail.PolicyDeny:
		if !c.held {
			notEnforced()
			return false
		}
		ex.withhold(http.StatusForbidden, "the model's response was withheld: denied by policy"+reasons)
		return false
	case infertrail.PolicyRequireApproval:
		switch {
		case !c.held:
			notEnforced()
			return false
		case g.cfg.Approvals == nil:
			ex.withhold(http.StatusForbidden, "the model's response needs an approval, and this gateway holds no calls for approval (no approvals service is configured); it was withheld"+reasons)
			return false
		}
		c.awaitResponseApproval(res, dec, d.Reasons)
		return true
	}
	return false
}

// awaitResponseApproval writes the response record and the decision
// durably, then holds the response until an approver decides or the wait
// ends. The approval record says how the wait ended; anything but
// approved withholds the response.
func (c *capture) awaitResponseApproval(res *Response, dec *infertrail.Record, reasons []string) {
	ex := c.ex
	g := ex.rt.g
	ex.finished.Store(true)
	g.m.request(ex.rt.p.Name(), ex.rt.ep.Operation, ex.status)
	r := ex.responseRecord(*res, "", c)
	seq, err := g.sp.RecordNow(ex.inCtx, r, dec)
	if err != nil {
		g.log.Warn("gateway: a response that needs an approval could not be recorded; it is withheld", "provider", ex.rt.p.Name(), "err", err)
		ex.withhold(http.StatusServiceUnavailable, "the model's response needs an approval, and InferTrail cannot record it right now; it was withheld")
		// Keep the evidence of what the model answered, after the fact.
		r.Attributes["infertrail.withheld"] = jsonString(ex.withheld)
		ex.writeLater(r, dec)
		return
	}
	ex.releaseSlots()
	c.respSeq = seq
	tenant := r.Tenant
	if tenant == "" {
		tenant = g.cfg.Tenant
	}
	start := time.Now()
	a, err := g.cfg.Approvals.Await(ex.inCtx, infertrail.Approval{Tenant: tenant, DecisionID: dec.ID, Governs: r.ID,
		Point: infertrail.PointInferenceResponse, Summary: "the response to a " + ex.approvalSummary(), TraceID: r.TraceID, SessionID: r.SessionID})
	ex.held += time.Since(start)
	switch {
	case err != nil:
		level := slog.LevelError
		if ex.inCtx.Err() != nil {
			level = slog.LevelDebug
		}
		g.log.Log(context.WithoutCancel(ex.inCtx), level, "gateway: a response that needs an approval could not be held; it is withheld", "provider", ex.rt.p.Name(), "err", err)
		ex.withhold(http.StatusServiceUnavailable, "the model's response needs an approval, and InferTrail cannot hold it for one right now; it was withheld")
	case a.Status != infertrail.ApprovalApproved:
		ex.withhold(http.StatusForbidden, ApprovalRefusal("response", "delivered", a, reasons))
	}
}

// writeLater writes the response's records after the fact, in the slots
// the call holds for them (written now, waiting, where it holds none), and
// gives back the slots it does not use.
func (ex *exchange) writeLater(recs ...*infertrail.Record) {
	sp := ex.rt.g.sp
	for _, r := range recs {
		switch {
		case r == nil:
		case ex.reserved:
			sp.WriteLater(r)
			ex.reserved = false
		case ex.decisionSlot:
			sp.WriteLater(r)
			ex.decisionSlot = false
		default:
			sp.Persist(r)
		}
	}
	ex.releaseSlots()
}

// releaseSlots gives back the spool slots the call holds for its
// response's records.
func (ex *exchange) releaseSlots() {
	if ex.reserved {
		ex.rt.g.sp.Release()
		ex.reserved = false
	}
	if ex.decisionSlot {
		ex.rt.g.sp.Release()
		ex.decisionSlot = false
	}
}
