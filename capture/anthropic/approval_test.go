package anthropic_test

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	sdk "github.com/anthropics/anthropic-sdk-go/v2"

	"github.com/infertrail/infertrail"
	"github.com/infertrail/infertrail/approvals"
	"github.com/infertrail/infertrail/capture/anthropic/anthropictest"
	"github.com/infertrail/infertrail/capture/gateway"
	"github.com/infertrail/infertrail/ledger"
	"github.com/infertrail/infertrail/policy"
)

// heldPolicy asks for an approval of every call to claude-opus-4-1.
const heldPolicy = `package infertrail.inference.request

import rego.v1

default decision := {"result": "allow"}

decision := {"result": "require_approval", "reasons": ["opus calls need a human's approval"]} if input.inference.model == "claude-opus-4-1"
`

// newApprovalRig is the rig with a policy and an approvals service.
func newApprovalRig(tb testing.TB, up *anthropictest.Upstream) (*rig, *approvals.Service) {
	tb.Helper()
	var svc *approvals.Service
	r := newRig(tb, up, callerKey, func(c *gateway.Config) {
		dir := tb.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "held.rego"), []byte(heldPolicy), 0o600); err != nil {
			tb.Fatal(err)
		}
		lg := c.Recorder.(*ledger.Log)
		e, err := policy.New(tb.Context(), policy.Config{Dir: dir, Recorder: lg})
		if err != nil {
			tb.Fatal(err)
		}
		if svc, err = approvals.New(approvals.Config{Store: lg.Store(), Recorder: lg, Poll: 20 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)}); err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { svc.Close(context.Background()) })
		c.Policy, c.Approvals = e, svc
	})
	return r, svc
}

func pendingApproval(tb testing.TB, svc *approvals.Service) infertrail.Approval {
	tb.Helper()
	for range 500 {
		list, err := svc.List(tb.Context(), nil, infertrail.ApprovalPending, 0)
		if err != nil {
			tb.Fatal(err)
		}
		if len(list) > 0 {
			return list[0]
		}
		time.Sleep(10 * time.Millisecond)
	}
	tb.Fatal("no call was held for approval")
	return infertrail.Approval{}
}

var carol = infertrail.Actor{ID: "oidc:https://login.acme.example#carol", Type: "user"}

// TestSDKApproval: a streamed Messages call that needs an approval is held
// (nothing reaches the upstream or the client) and streams once
// approved; a rejected one gets Anthropic's error shape.
func TestSDKApproval(t *testing.T) {
	up := &anthropictest.Upstream{}
	r, svc := newApprovalRig(t, up)
	p := params()
	p.Model = "claude-opus-4-1"

	done := make(chan error, 1)
	go func() {
		m, err := accumulate(t, r.client.Messages.NewStreaming(t.Context(), p))
		if err == nil && (len(m.Content) == 0 || m.Content[0].Text == "") {
			err = errors.New("empty reply")
		}
		done <- err
	}()
	a := pendingApproval(t, svc)
	time.Sleep(100 * time.Millisecond)
	if up.Count() != 0 || len(r.tee.Last()) != 0 {
		t.Fatalf("while held: %d upstream calls, %d bytes to the client", up.Count(), len(r.tee.Last()))
	}
	if _, err := svc.Decide(t.Context(), a.ID, infertrail.ApprovalApproved, "reviewed the prompt", carol, "approver"); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("approved stream: %v", err)
	}
	if up.Count() != 1 {
		t.Fatalf("%d upstream calls, want 1", up.Count())
	}

	go func() {
		_, err := r.client.Messages.New(t.Context(), p)
		done <- err
	}()
	a = pendingApproval(t, svc)
	if _, err := svc.Decide(t.Context(), a.ID, infertrail.ApprovalRejected, "no", carol, "approver"); err != nil {
		t.Fatal(err)
	}
	err := <-done
	var ae *sdk.Error
	if !errors.As(err, &ae) || ae.StatusCode != http.StatusForbidden || ae.Type() != "permission_error" ||
		!strings.Contains(ae.Error(), "rejected it") || !strings.Contains(ae.Error(), "opus calls need a human's approval") {
		t.Fatalf("rejected call: %v", err)
	}
	if up.Count() != 1 {
		t.Fatal("the rejected call reached the upstream")
	}
	var decisions []string
	for _, rec := range r.records(t) {
		if rec.Kind == infertrail.KindApproval {
			decisions = append(decisions, rec.Attr("approval.decision").(string))
		}
	}
	if strings.Join(decisions, " ") != "approved rejected" {
		t.Errorf("approval records %v", decisions)
	}
}

// falconPolicy denies a model response that names project Falcon, and
// masks e-mail addresses in one that has them.
const falconPolicy = `package infertrail.inference.response

import rego.v1

default decision := {"result": "allow"}

decision := {"result": "deny", "reasons": ["the response names project Falcon"]} if contains(input.response.text, "Falcon")

decision := {"result": "modify", "obligations": [{"redact": "response", "detectors": ["email"]}]} if contains(input.response.text, "@")
`

// TestSDKResponsePolicy: the inference.response point reads the text of
// Anthropic's content blocks; a denied response, streamed and held or
// not streamed, reaches the client as Anthropic's error, and a redacted
// one arrives masked.
func TestSDKResponsePolicy(t *testing.T) {
	rig := func(text string) *rig {
		return newRig(t, &anthropictest.Upstream{Text: text}, callerKey, func(c *gateway.Config) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "response.rego"), []byte(falconPolicy), 0o600); err != nil {
				t.Fatal(err)
			}
			e, err := policy.New(t.Context(), policy.Config{Dir: dir, Recorder: c.Recorder.(*ledger.Log)})
			if err != nil {
				t.Fatal(err)
			}
			c.Policy, c.HoldStreams = e, true
		})
	}
	denied := func(err error) {
		t.Helper()
		var ae *sdk.Error
		if !errors.As(err, &ae) || ae.StatusCode != http.StatusForbidden || ae.Type() != "permission_error" ||
			!strings.Contains(ae.Error(), "denied by policy: the response names project Falcon") {
			t.Fatalf("denied response: %v", err)
		}
	}
	r := rig("Project Falcon launches on Monday.")
	_, err := r.client.Messages.New(t.Context(), params())
	denied(err)
	_, err = accumulate(t, r.client.Messages.NewStreaming(t.Context(), params()))
	denied(err)
	var withheld int
	for _, rec := range r.records(t) {
		if rec.Attr("infertrail.withheld") != nil {
			withheld++
		}
	}
	if withheld != 2 {
		t.Fatalf("%d responses recorded as withheld, want 2", withheld)
	}

	r = rig("Write to bob@example.com about it.")
	m, err := r.client.Messages.New(t.Context(), params())
	if err != nil || len(m.Content) == 0 || m.Content[0].Text != "Write to [redacted:email] about it." {
		t.Fatalf("redacted response: %v %+v", err, m)
	}
}
