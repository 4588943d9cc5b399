package openai_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	sdk "github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/responses"

	"github.com/infertrail/infertrail"
	"github.com/infertrail/infertrail/capture/gateway"
	"github.com/infertrail/infertrail/capture/gateway/gatewaytest"
	"github.com/infertrail/infertrail/capture/openai/openaitest"
)

// responsePolicy decides on model responses by their text: one that names
// project Falcon is denied, one about a wire transfer needs an approval,
// e-mail addresses are masked, anything else is allowed.
const responsePolicy = `package infertrail.inference.response

import rego.v1

default decision := {"result": "allow"}

decision := {"result": "deny", "reasons": ["the response names project Falcon"]} if contains(input.response.text, "Falcon")

decision := {"result": "require_approval", "reasons": ["wire transfers need a human's approval"]} if contains(input.response.text, "wire")

decision := {"result": "modify", "obligations": [{"redact": "response", "detectors": ["email"]}]} if contains(input.response.text, "@")
`

// requestObligations masks e-mail addresses in prompts, and asks for what
// the gateway cannot do when a prompt says "notify".
const requestObligations = `package infertrail.inference.request

import rego.v1

default decision := {"result": "allow"}

decision := {"result": "modify", "obligations": [{"redact": "prompt", "detectors": ["email"]}]} if {
	contains(json.marshal(input.inference.messages), "@")
}

decision := {"result": "allow", "obligations": [{"notify": "secops"}]} if {
	contains(json.marshal(input.inference.messages), "notify")
}
`

func newResponseRig(tb testing.TB, text string, hold bool) *approvalRig {
	return newPolicyRig(tb, &openaitest.Upstream{Text: text}, map[string]string{"response.rego": responsePolicy}, time.Minute,
		func(c *gateway.Config) { c.HoldStreams = hold })
}

func chat(prompt string) sdk.ChatCompletionNewParams {
	return sdk.ChatCompletionNewParams{Model: "gpt-4o", Messages: []sdk.ChatCompletionMessageParamUnion{sdk.UserMessage(prompt)}}
}

// stream reads a streamed chat completion to its end, and returns its
// text and the stream's error.
func stream(r *approvalRig, t *testing.T, p sdk.ChatCompletionNewParams) (string, error) {
	s := r.client.Chat.Completions.NewStreaming(t.Context(), p)
	var acc sdk.ChatCompletionAccumulator
	for s.Next() {
		acc.AddChunk(s.Current())
	}
	if err := s.Err(); err != nil {
		return "", err
	}
	if len(acc.Choices) == 0 {
		return "", errors.New("no choices")
	}
	return acc.Choices[0].Message.Content, nil
}

// responseDecision returns the one decision at inference.response, and
// checks that it governs the response record.
func responseDecision(t *testing.T, m map[string][]gatewaytest.Record) gatewaytest.Record {
	t.Helper()
	var found []gatewaytest.Record
	for _, d := range m["policy_decision"] {
		if d.Attr("policy.point") == "inference.response" {
			found = append(found, d)
		}
	}
	if len(found) != 1 || len(m["response"]) != 1 {
		t.Fatalf("%d response decisions, %d responses", len(found), len(m["response"]))
	}
	d := found[0]
	if !linked(d, "governs", m["response"][0].ID) || d.Attr("policy.id") != "infertrail.inference.response" {
		t.Fatalf("response decision %v %v", d.Attributes, d.Links)
	}
	return d
}

func forbidden(t *testing.T, err error, want string) {
	t.Helper()
	var ae *sdk.Error
	if !errors.As(err, &ae) || ae.StatusCode != http.StatusForbidden || !strings.Contains(ae.Message, want) {
		t.Fatalf("got %v, want a 403 saying %q", err, want)
	}
}

// TestSDKResponsePolicy: a response that is not streamed is held until its
// policy decides: allowed, it reaches the client unchanged; denied, the
// client gets OpenAI's error shape, and the trail keeps what the model
// said, marked withheld, with the decision governing it.
func TestSDKResponsePolicy(t *testing.T) {
	t.Run("allow", func(t *testing.T) {
		rig := newResponseRig(t, "", false)
		cc, err := rig.client.Chat.Completions.New(t.Context(), chat("Hello"))
		if err != nil || cc.Choices[0].Message.Content != openaitest.DefaultText {
			t.Fatalf("%v %+v", err, cc)
		}
		rig.checkPassthrough(t)
		m := byKind(rig.records(t))
		if d := responseDecision(t, m); d.Attr("policy.result") != "allow" || d.Attr("policy.enforced") != nil {
			t.Fatalf("decision %v", d.Attributes)
		}
		if m["response"][0].Attr("infertrail.withheld") != nil {
			t.Fatal("an allowed response is marked withheld")
		}
	})
	t.Run("deny", func(t *testing.T) {
		rig := newResponseRig(t, "Project Falcon launches on Monday.", false)
		_, err := rig.client.Chat.Completions.New(t.Context(), chat("What launches Monday?"))
		forbidden(t, err, "withheld: denied by policy: the response names project Falcon")
		if strings.Contains(string(rig.tee.Last()), "Falcon launches") {
			t.Fatal("the client got the denied text")
		}
		m := byKind(rig.records(t))
		d := responseDecision(t, m)
		resp := m["response"][0]
		if d.Attr("policy.result") != "deny" || !strings.Contains(string(d.Content["policy.reasons"]), "Falcon") {
			t.Fatalf("decision %v %s", d.Attributes, d.Content["policy.reasons"])
		}
		if !strings.Contains(resp.Attr("infertrail.withheld").(string), "denied by policy") || resp.Attr("error.type") != "withheld" ||
			!strings.Contains(string(resp.Content["response"]), "Falcon launches") || !strings.Contains(string(resp.Content["response.delivered"]), `"error"`) {
			t.Fatalf("response record %v %s", resp.Attributes, resp.Content)
		}
		if d.Seq < m["request"][0].Seq {
			t.Fatal("the response decision precedes the request")
		}
	})
	t.Run("responses-api", func(t *testing.T) {
		rig := newResponseRig(t, "Project Falcon launches on Monday.", false)
		_, err := rig.client.Responses.New(t.Context(), responses.ResponseNewParams{
			Model: "gpt-4o", Input: responses.ResponseNewParamsInputUnion{OfString: sdk.String("What launches Monday?")}})
		forbidden(t, err, "denied by policy: the response names project Falcon")
	})
	t.Run("redact", func(t *testing.T) {
		rig := newResponseRig(t, "Write to bob@example.com about it.", false)
		cc, err := rig.client.Chat.Completions.New(t.Context(), chat("Who do I write to?"))
		if err != nil || cc.Choices[0].Message.Content != "Write to [redacted:email] about it." {
			t.Fatalf("%v %+v", err, cc)
		}
		m := byKind(rig.records(t))
		d := responseDecision(t, m)
		resp := m["response"][0]
		if d.Attr("policy.result") != "modify" || !strings.Contains(string(d.Content["policy.obligations"]), `"redact":"response"`) {
			t.Fatalf("decision %v %s", d.Attributes, d.Content)
		}
		if !strings.Contains(string(resp.Content["response"]), "bob@example.com") || !strings.Contains(string(resp.Content["response.delivered"]), "[redacted:email]") ||
			!strings.Contains(string(resp.Attributes["infertrail.redactions"]), `"detector":"email"`) {
			t.Fatalf("response record %v %s", resp.Attributes, resp.Content)
		}
	})
}

// TestSDKResponsePolicyStream: a stream passes through as it comes by
// default, so a denial is recorded as not enforced; with HoldStreams it is
// held whole until decided, then delivered at once or refused.
func TestSDKResponsePolicyStream(t *testing.T) {
	t.Run("pass", func(t *testing.T) {
		rig := newResponseRig(t, "Project Falcon launches on Monday.", false)
		text, err := stream(rig, t, chat("What launches Monday?"))
		if err != nil || text != "Project Falcon launches on Monday." {
			t.Fatalf("%q %v", text, err)
		}
		rig.checkPassthrough(t)
		m := byKind(rig.records(t))
		if d := responseDecision(t, m); d.Attr("policy.result") != "deny" || d.Attr("policy.enforced") != false {
			t.Fatalf("decision %v", d.Attributes)
		}
		if m["response"][0].Attr("infertrail.withheld") != nil {
			t.Fatal("a stream that passed is marked withheld")
		}
	})
	t.Run("hold-allow", func(t *testing.T) {
		rig := newResponseRig(t, "", true)
		text, err := stream(rig, t, chat("Hello"))
		if err != nil || text != openaitest.DefaultText {
			t.Fatalf("%q %v", text, err)
		}
		rig.checkPassthrough(t)
		if d := responseDecision(t, byKind(rig.records(t))); d.Attr("policy.result") != "allow" {
			t.Fatalf("decision %v", d.Attributes)
		}
	})
	t.Run("hold-deny", func(t *testing.T) {
		rig := newResponseRig(t, "Project Falcon launches on Monday.", true)
		_, err := stream(rig, t, chat("What launches Monday?"))
		forbidden(t, err, "denied by policy: the response names project Falcon")
		m := byKind(rig.records(t))
		if d := responseDecision(t, m); d.Attr("policy.enforced") != nil || m["response"][0].Attr("infertrail.withheld") == nil {
			t.Fatalf("decision %v, response %v", d.Attributes, m["response"][0].Attributes)
		}
	})
	t.Run("hold-redact", func(t *testing.T) {
		rig := newResponseRig(t, "Write to bob@example.com about it.", true)
		_, err := stream(rig, t, chat("Who do I write to?"))
		forbidden(t, err, "a streamed response cannot be redacted")
	})
}

// TestSDKResponseApproval: a response that needs an approval is held, its
// record and decision durable first, until an approver decides.
func TestSDKResponseApproval(t *testing.T) {
	for _, approve := range []bool{true, false} {
		t.Run(map[bool]string{true: "approved", false: "rejected"}[approve], func(t *testing.T) {
			rig := newResponseRig(t, "Send the wire to account 7 today.", false)
			type result struct {
				cc  *sdk.ChatCompletion
				err error
			}
			done := make(chan result, 1)
			go func() {
				cc, err := rig.client.Chat.Completions.New(t.Context(), chat("What now?"))
				done <- result{cc, err}
			}()
			a := rig.pending(t)
			if a.Point != infertrail.PointInferenceResponse || !strings.HasPrefix(a.Summary, "the response to a chat request") {
				t.Fatalf("approval %+v", a)
			}
			if rig.up.Count() != 1 || len(rig.tee.Last()) != 0 {
				t.Fatalf("while held: %d upstream calls, %d bytes to the client", rig.up.Count(), len(rig.tee.Last()))
			}
			status := infertrail.ApprovalRejected
			if approve {
				status = infertrail.ApprovalApproved
			}
			if _, err := rig.approvals.Decide(t.Context(), a.ID, status, "checked", approver, "approver"); err != nil {
				t.Fatal(err)
			}
			res := <-done
			if approve {
				if res.err != nil || res.cc.Choices[0].Message.Content != "Send the wire to account 7 today." {
					t.Fatalf("approved: %v %+v", res.err, res.cc)
				}
				rig.checkPassthrough(t)
			} else {
				forbidden(t, res.err, "approval "+a.ID.String()+" rejected it; it was not delivered: wire transfers need a human's approval")
			}
			m := byKind(rig.records(t))
			d := responseDecision(t, m)
			if d.Attr("policy.result") != "require_approval" || len(m["approval"]) != 1 || !linked(m["approval"][0], "answers", d.ID) ||
				a.Governs != m["response"][0].ID || m["response"][0].Seq > m["approval"][0].Seq {
				t.Fatalf("decision %v, approvals %+v", d.Attributes, m["approval"])
			}
		})
	}
}

// TestSDKRequestObligations: a redact obligation masks the prompt before it
// is forwarded, and the trail keeps both the request as sent and as
// forwarded; an obligation the gateway cannot carry out refuses the call.
func TestSDKRequestObligations(t *testing.T) {
	rig := newPolicyRig(t, &openaitest.Upstream{}, map[string]string{"request.rego": requestObligations}, time.Minute, nil)
	if _, err := rig.client.Chat.Completions.New(t.Context(), chat("Mail carol@example.com the report")); err != nil {
		t.Fatal(err)
	}
	last, _ := rig.up.Last()
	if strings.Contains(string(last.Body), "carol@example.com") || !strings.Contains(string(last.Body), "Mail [redacted:email] the report") {
		t.Fatalf("the upstream got %s", last.Body)
	}
	_, err := rig.client.Chat.Completions.New(t.Context(), chat("Do it and notify me"))
	forbidden(t, err, `its policy's obligations cannot be carried out: obligations[0] {"notify":"secops"} is not one InferTrail can carry out`)
	if rig.up.Count() != 1 {
		t.Fatalf("%d upstream calls, want 1", rig.up.Count())
	}
	m := byKind(rig.records(t))
	req := m["request"]
	if len(req) != 2 {
		t.Fatalf("%d request records", len(req))
	}
	if !strings.Contains(string(req[0].Content["request"]), "carol@example.com") || !strings.Contains(string(req[0].Content["request.forwarded"]), "[redacted:email]") ||
		!strings.Contains(string(req[0].Attributes["infertrail.redactions"]), `"count":1`) {
		t.Fatalf("redacted request record %v %s", req[0].Attributes, req[0].Content)
	}
	if req[1].Attr("infertrail.refused") == nil || req[1].Content["request.forwarded"] != nil {
		t.Fatalf("refused request record %v", req[1].Attributes)
	}
}

// TestSDKApprovalWithObligations: a request held for approval goes ahead,
// once approved, with its obligations carried out.
func TestSDKApprovalWithObligations(t *testing.T) {
	const held = `package infertrail.inference.request

import rego.v1

default decision := {"result": "require_approval", "reasons": ["every call needs a look"], "obligations": [{"redact": "prompt", "detectors": ["email"]}]}
`
	rig := newPolicyRig(t, &openaitest.Upstream{}, map[string]string{"held.rego": held}, time.Minute, nil)
	done := make(chan error, 1)
	go func() {
		_, err := rig.client.Chat.Completions.New(t.Context(), chat("Mail carol@example.com the report"))
		done <- err
	}()
	a := rig.pending(t)
	if _, err := rig.approvals.Decide(t.Context(), a.ID, infertrail.ApprovalApproved, "fine", approver, "approver"); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if last, _ := rig.up.Last(); strings.Contains(string(last.Body), "carol@example.com") || !strings.Contains(string(last.Body), "[redacted:email]") {
		t.Fatalf("the upstream got %s", last.Body)
	}
}

// TestSDKResponseApprovalClientGone: a client that gives up while its
// response waits for an approval ends the wait: the approval is cancelled,
// and the response record, written before the wait, keeps what the model
// said.
func TestSDKResponseApprovalClientGone(t *testing.T) {
	rig := newResponseRig(t, "Send the wire to account 7 today.", false)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		_, err := rig.client.Chat.Completions.New(ctx, chat("What now?"))
		done <- err
	}()
	a := rig.pending(t)
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled call: %v", err)
	}
	var got infertrail.Approval
	for range 500 {
		if got, _ = rig.approvals.Get(t.Context(), a.ID); got.Status != infertrail.ApprovalPending {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got.Status != infertrail.ApprovalCancelled {
		t.Fatalf("approval %+v, want cancelled", got)
	}
	m := byKind(rig.records(t))
	if len(m["response"]) != 1 || !strings.Contains(string(m["response"][0].Content["response"]), "Send the wire") ||
		len(m["approval"]) != 1 || m["approval"][0].Attr("approval.reason") != "client_disconnected" {
		t.Fatalf("records: %d responses, approvals %+v", len(m["response"]), m["approval"])
	}
}
