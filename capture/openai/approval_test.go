package openai_test

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	sdk "github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/infertrail/infertrail"
	"github.com/infertrail/infertrail/approvals"
	"github.com/infertrail/infertrail/capture/gateway"
	"github.com/infertrail/infertrail/capture/gateway/gatewaytest"
	"github.com/infertrail/infertrail/capture/openai"
	"github.com/infertrail/infertrail/capture/openai/openaitest"
	"github.com/infertrail/infertrail/policy"
)

// heldPolicy asks for an approval of every call to the model gpt-held.
const heldPolicy = `package infertrail.inference.request

import rego.v1

default decision := {"result": "allow"}

decision := {"result": "require_approval", "reasons": ["gpt-held needs a human's approval"]} if input.inference.model == "gpt-held"
`

var approver = infertrail.Actor{ID: "oidc:https://login.acme.example#carol", Type: "user"}

// approvalRig is the official SDK → the gateway with a policy and an
// approvals service, over a real trail → the scripted upstream.
type approvalRig struct {
	*rig
	approvals *approvals.Service
}

func newApprovalRig(tb testing.TB, timeout time.Duration) *approvalRig {
	return newPolicyRig(tb, &openaitest.Upstream{Model: "gpt-held"}, map[string]string{"held.rego": heldPolicy}, timeout, nil)
}

// newPolicyRig is the official SDK → the gateway with the policy files
// given (name → text) and an approvals service with the timeout given,
// over a real trail → up. mod, if set, changes the gateway's
// configuration.
func newPolicyRig(tb testing.TB, up *openaitest.Upstream, files map[string]string, timeout time.Duration, mod func(*gateway.Config)) *approvalRig {
	tb.Helper()
	upSrv := httptest.NewServer(up)
	tb.Cleanup(upSrv.Close)
	trail := gatewaytest.NewTrail(tb)
	dir := tb.TempDir()
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o600); err != nil {
			tb.Fatal(err)
		}
	}
	engine, err := policy.New(tb.Context(), policy.Config{Dir: dir, Recorder: trail.Log})
	if err != nil {
		tb.Fatal(err)
	}
	svc, err := approvals.New(approvals.Config{Store: trail.DB, Recorder: trail.Log, Timeout: timeout, Poll: 20 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(tb.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { svc.Close(context.Background()) })
	cfg := gateway.Config{
		Recorder: trail.Log, Secret: gatewaytest.Secret, Policy: engine, Approvals: svc,
		Upstreams: []gateway.Upstream{{Provider: openai.Provider{}, BaseURL: upSrv.URL + "/v1"}},
	}
	if mod != nil {
		mod(&cfg)
	}
	gw, err := gateway.New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	srv := trail.Serve(tb, gw)
	t := &gatewaytest.Tee{}
	client := sdk.NewClient(option.WithBaseURL(srv.URL+"/openai/v1/"), option.WithAPIKey(callerKey), option.WithMaxRetries(0),
		option.WithHeader(gateway.HeaderSession, "sess-openai"), option.WithHTTPClient(&http.Client{Transport: t}))
	return &approvalRig{rig: &rig{up: up, trail: trail, gw: gw, srv: srv, client: client, tee: t}, approvals: svc}
}

// pending waits until the gateway holds a call, and returns its approval.
func (r *approvalRig) pending(tb testing.TB) infertrail.Approval {
	tb.Helper()
	for range 500 {
		list, err := r.approvals.List(tb.Context(), nil, infertrail.ApprovalPending, 0)
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

func heldParams() sdk.ChatCompletionNewParams {
	return sdk.ChatCompletionNewParams{Model: "gpt-held", Messages: []sdk.ChatCompletionMessageParamUnion{sdk.UserMessage("Pay invoice 7")}}
}

// byKind indexes records by kind, and the gateway's by phase.
func byKind(recs []gatewaytest.Record) map[string][]gatewaytest.Record {
	out := map[string][]gatewaytest.Record{}
	for _, r := range recs {
		k := string(r.Kind)
		if p, ok := r.Attr("infertrail.phase").(string); ok {
			k = p
		}
		out[k] = append(out[k], r)
	}
	return out
}

func linked(r gatewaytest.Record, rel string, id infertrail.UUID) bool {
	for _, l := range r.Links {
		if l.Rel == rel && l.ID == id {
			return true
		}
	}
	return false
}

// TestSDKApprovalApproved: a call that needs an approval is held — the
// upstream sees nothing, and the client nothing — until an approver
// approves it; then it goes ahead as usual, and the trail links the
// request, the decision, the approval and the response.
func TestSDKApprovalApproved(t *testing.T) {
	for _, stream := range []bool{false, true} {
		t.Run(map[bool]string{false: "chat", true: "stream"}[stream], func(t *testing.T) {
			rig := newApprovalRig(t, time.Minute)
			done := make(chan error, 1)
			go func() {
				if !stream {
					cc, err := rig.client.Chat.Completions.New(t.Context(), heldParams())
					if err == nil && cc.Choices[0].Message.Content != openaitest.DefaultText {
						err = errors.New("wrong reply: " + cc.Choices[0].Message.Content)
					}
					done <- err
					return
				}
				s := rig.client.Chat.Completions.NewStreaming(t.Context(), heldParams())
				var acc sdk.ChatCompletionAccumulator
				for s.Next() {
					acc.AddChunk(s.Current())
				}
				if err := s.Err(); err != nil {
					done <- err
					return
				}
				if acc.Choices[0].Message.Content != openaitest.DefaultText {
					done <- errors.New("wrong streamed reply: " + acc.Choices[0].Message.Content)
					return
				}
				done <- nil
			}()
			a := rig.pending(t)
			time.Sleep(100 * time.Millisecond) // several polls: still held
			select {
			case err := <-done:
				t.Fatalf("the held call returned before any decision: %v", err)
			default:
			}
			if rig.up.Count() != 0 || len(rig.tee.Last()) != 0 {
				t.Fatalf("while held: %d upstream calls, %d bytes to the client", rig.up.Count(), len(rig.tee.Last()))
			}
			if !strings.Contains(a.Summary, `model "gpt-held" via openai`) || a.Point != infertrail.PointInferenceRequest {
				t.Errorf("pending approval %+v", a)
			}
			d, err := rig.approvals.Decide(t.Context(), a.ID, infertrail.ApprovalApproved, "PO-2291 checked", approver, "approver")
			if err != nil {
				t.Fatal(err)
			}
			if err := <-done; err != nil {
				t.Fatalf("approved call: %v", err)
			}
			if rig.up.Count() != 1 {
				t.Fatalf("%d upstream calls, want 1", rig.up.Count())
			}
			rig.checkPassthrough(t)
			m := byKind(rig.records(t))
			req, dec, appr, resp := m["request"], m["policy_decision"], m["approval"], m["response"]
			if len(req) != 1 || len(dec) != 1 || len(appr) != 1 || len(resp) != 1 {
				t.Fatalf("records by kind: %d requests, %d decisions, %d approvals, %d responses", len(req), len(dec), len(appr), len(resp))
			}
			if dec[0].Attr("policy.result") != "require_approval" || !linked(dec[0], "governs", req[0].ID) {
				t.Errorf("decision %v %v", dec[0].Attributes, dec[0].Links)
			}
			ar := appr[0]
			if ar.ID != d.Approval.ApprovalRecord || ar.Actor != approver || ar.Attr("approval.decision") != "approved" ||
				ar.Attr("approval.approver") != approver.ID || ar.Attr("approval.approver_role") != "approver" || ar.Attr("approval.channel") != "api" ||
				string(ar.Content["approval.rationale"]) != `"PO-2291 checked"` || !linked(ar, "answers", dec[0].ID) || !linked(ar, "approves", req[0].ID) ||
				ar.SessionID != "sess-openai" || ar.TraceID != req[0].TraceID {
				t.Errorf("approval record %+v %v %s", ar.Record, ar.Attributes, ar.Content["approval.rationale"])
			}
			if !linked(resp[0], "answers", req[0].ID) || !linked(resp[0], "follows", ar.ID) || resp[0].Attr("http.response.status_code") != 200.0 ||
				resp[0].Attr("infertrail.held_ns") == nil || resp[0].Attr("infertrail.refused") != nil {
				t.Errorf("response %v %v", resp[0].Attributes, resp[0].Links)
			}
			if ar.Seq > resp[0].Seq || req[0].Seq > ar.Seq {
				t.Errorf("order: request %d, approval %d, response %d", req[0].Seq, ar.Seq, resp[0].Seq)
			}
		})
	}
}

// TestSDKApprovalRejected: a rejection answers the client with OpenAI's
// error shape (403), and the upstream never sees the call.
func TestSDKApprovalRejected(t *testing.T) {
	rig := newApprovalRig(t, time.Minute)
	done := make(chan error, 1)
	go func() {
		_, err := rig.client.Chat.Completions.New(t.Context(), heldParams())
		done <- err
	}()
	a := rig.pending(t)
	if _, err := rig.approvals.Decide(t.Context(), a.ID, infertrail.ApprovalRejected, "not budgeted", approver, "approver"); err != nil {
		t.Fatal(err)
	}
	err := <-done
	var ae *sdk.Error
	if !errors.As(err, &ae) || ae.StatusCode != http.StatusForbidden || !strings.Contains(ae.Message, "approval "+a.ID.String()+" rejected it") ||
		!strings.Contains(ae.Message, "gpt-held needs a human's approval") {
		t.Fatalf("rejected call: %v", err)
	}
	if rig.up.Count() != 0 {
		t.Fatal("the rejected call reached the upstream")
	}
	m := byKind(rig.records(t))
	appr, resp := m["approval"], m["response"]
	if len(appr) != 1 || appr[0].Attr("approval.decision") != "rejected" || linked(appr[0], "approves", m["request"][0].ID) {
		t.Fatalf("approval records %+v", appr)
	}
	if len(resp) != 1 || resp[0].Attr("infertrail.refused") == nil || resp[0].Attr("error.type") != "approval_rejected" ||
		resp[0].Attr("http.response.status_code") != 403.0 || !linked(resp[0], "follows", appr[0].ID) || !linked(resp[0], "answers", m["request"][0].ID) {
		t.Fatalf("refusal %v %v", resp, resp[0].Links)
	}
}

// TestSDKApprovalTimeout: nobody decides: at the deadline the call is
// denied, and the trail records the expiry.
func TestSDKApprovalTimeout(t *testing.T) {
	rig := newApprovalRig(t, 300*time.Millisecond)
	start := time.Now()
	_, err := rig.client.Chat.Completions.New(t.Context(), heldParams())
	var ae *sdk.Error
	if !errors.As(err, &ae) || ae.StatusCode != http.StatusForbidden || !strings.Contains(ae.Message, "expired: no approver decided within 300ms") {
		t.Fatalf("unanswered call: %v", err)
	}
	if time.Since(start) < 300*time.Millisecond || rig.up.Count() != 0 {
		t.Fatalf("answered after %v, %d upstream calls", time.Since(start), rig.up.Count())
	}
	m := byKind(rig.records(t))
	if appr := m["approval"]; len(appr) != 1 || appr[0].Attr("approval.decision") != "expired" || appr[0].Actor.ID != "infertrail" ||
		appr[0].Attr("approval.reason") != "timeout" || m["response"][0].Attr("error.type") != "approval_expired" {
		t.Fatalf("records %+v", m)
	}
}

// TestSDKApprovalClientGone: a client that gives up while its call is held
// cancels the wait; the upstream never sees the call.
func TestSDKApprovalClientGone(t *testing.T) {
	rig := newApprovalRig(t, time.Minute)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		_, err := rig.client.Chat.Completions.New(ctx, heldParams())
		done <- err
	}()
	a := rig.pending(t)
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled call: %v", err)
	}
	for range 500 {
		if got, _ := rig.approvals.Get(t.Context(), a.ID); got.Status != infertrail.ApprovalPending {
			if got.Status != infertrail.ApprovalCancelled {
				t.Fatalf("approval %+v", got)
			}
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	_, err := rig.approvals.Decide(t.Context(), a.ID, infertrail.ApprovalApproved, "too late", approver, "approver")
	if !errors.Is(err, infertrail.ErrConflict) {
		t.Errorf("decision after the client left: %v", err)
	}
	m := byKind(rig.records(t))
	if rig.up.Count() != 0 || len(m["approval"]) != 1 || m["approval"][0].Attr("approval.reason") != "client_disconnected" ||
		len(m["response"]) != 1 || m["response"][0].Attr("error.type") != "approval_cancelled" {
		t.Fatalf("%d upstream calls; records %+v", rig.up.Count(), m)
	}
}

// TestSDKApprovalClientGoneWhileRecording: a client that goes away while
// its held request's record commits gets no approval asked for, and the
// trail says why the request was not forwarded.
func TestSDKApprovalClientGoneWhileRecording(t *testing.T) {
	lr := &gatewaytest.LateRecorder{Committed: make(chan struct{})}
	rig := newPolicyRig(t, &openaitest.Upstream{Model: "gpt-held"}, map[string]string{"held.rego": heldPolicy}, time.Minute,
		func(c *gateway.Config) { lr.Recorder, c.Recorder = c.Recorder, lr })
	ctx, cancel := context.WithCancel(t.Context())
	go func() {
		<-lr.Committed
		cancel()
	}()
	if _, err := rig.client.Chat.Completions.New(ctx, heldParams()); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled call: %v", err)
	}
	m := byKind(rig.records(t))
	if rig.up.Count() != 0 || len(m["request"]) != 1 || len(m["policy_decision"]) != 1 || len(m["approval"]) != 0 ||
		len(m["response"]) != 1 || m["response"][0].Attr("error.type") != "client_disconnected" {
		t.Fatalf("%d upstream calls; records %+v", rig.up.Count(), m)
	}
	if list, err := rig.approvals.List(t.Context(), nil, "", 0); err != nil || len(list) != 0 {
		t.Fatalf("approvals %+v, %v: want none asked for", list, err)
	}
}
