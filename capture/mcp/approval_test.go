package mcp_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/infertrail/infertrail"
	"github.com/infertrail/infertrail/approvals"
	"github.com/infertrail/infertrail/capture/gateway/gatewaytest"
	"github.com/infertrail/infertrail/capture/mcp"
	"github.com/infertrail/infertrail/ledger"
	"github.com/infertrail/infertrail/policy"
)

// paymentPolicy asks for an approval of payments above 1,000 EUR.
const paymentPolicy = `package infertrail.tool.call

import rego.v1

default decision := {"result": "allow"}

decision := {
	"result": "require_approval",
	"reasons": [sprintf("a payment of %v EUR needs approval", [input.tool.arguments.amount_eur])],
	"obligations": [{"redact": "arguments.invoice", "detectors": ["email"]}],
} if {
	input.tool.name == "pay"
	input.tool.arguments.amount_eur > 1000
}
`

var dave = infertrail.Actor{ID: "token/0193a5b0-7c1e-7000-8000-0000000000da", Type: "token"}

// approvalRig is the rig with a payment policy and an approvals service;
// toolCalls counts the tools/call requests that reach the server.
type approvalRig struct {
	*rig
	approvals *approvals.Service
	toolCalls *atomic.Int32
	lastCall  atomic.Value // []byte: the last tools/call as the server got it
}

func newApprovalRig(tb testing.TB, timeout time.Duration) *approvalRig {
	tb.Helper()
	ar := &approvalRig{toolCalls: &atomic.Int32{}}
	ar.rig = newRig(tb, func(c *mcp.Config) {
		dir := tb.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "payments.rego"), []byte(paymentPolicy), 0o600); err != nil {
			tb.Fatal(err)
		}
		lg := c.Recorder.(*ledger.Log)
		e, err := policy.New(tb.Context(), policy.Config{Dir: dir, Recorder: lg})
		if err != nil {
			tb.Fatal(err)
		}
		svc, err := approvals.New(approvals.Config{Store: lg.Store(), Recorder: lg, Timeout: timeout, Poll: 20 * time.Millisecond,
			Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { svc.Close(context.Background()) })
		c.Policy, c.Approvals, ar.approvals = e, svc, svc
	})
	h := ar.upstream.Config.Handler
	ar.upstream.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if bytes.Contains(body, []byte(`"tools/call"`)) {
			ar.toolCalls.Add(1)
			ar.lastCall.Store(body)
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		h.ServeHTTP(w, r)
	})
	return ar
}

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

var bigPayment = &sdk.CallToolParams{Name: "pay", Arguments: map[string]any{"invoice": "INV-7 (receipt to bob@example.com)", "amount_eur": 1200},
	Meta: sdk.Meta{"io.infertrail/tool_call_id": "call_pay_7"}}

func hasLink(r gatewaytest.Record, rel string, id infertrail.UUID) bool {
	for _, l := range r.Links {
		if l.Rel == rel && l.ID == id {
			return true
		}
	}
	return false
}

// TestApprovalApproved: a tools/call that needs an approval is held, the
// server sees nothing, until an approver approves it; then it runs, and
// the trail links the call, the decision, the approval and the result.
func TestApprovalApproved(t *testing.T) {
	r := newApprovalRig(t, time.Minute)
	cs := r.connect(t, "", nil)
	if _, err := cs.CallTool(t.Context(), &sdk.CallToolParams{Name: "pay", Arguments: map[string]any{"invoice": "INV-1", "amount_eur": 10}}); err != nil {
		t.Fatalf("small payment: %v", err)
	}
	type result struct {
		res *sdk.CallToolResult
		err error
	}
	done := make(chan result, 1)
	go func() {
		res, err := cs.CallTool(t.Context(), bigPayment)
		done <- result{res, err}
	}()
	a := r.pending(t)
	time.Sleep(100 * time.Millisecond)
	select {
	case res := <-done:
		t.Fatalf("the held call returned before any decision: %+v", res)
	default:
	}
	if n := r.toolCalls.Load(); n != 1 {
		t.Fatalf("%d tool calls reached the server while one was held, want 1 (the small payment)", n)
	}
	if a.Summary != `tool "pay" on server payments by mcp-client:finance-agent` || a.Point != infertrail.PointToolCall {
		t.Errorf("pending approval %+v", a)
	}
	if _, err := r.approvals.Decide(t.Context(), a.ID, infertrail.ApprovalApproved, "INV-7 matches PO-2291", dave, "approver"); err != nil {
		t.Fatal(err)
	}
	res := <-done
	if res.err != nil || res.res.IsError || !strings.Contains(res.res.Content[0].(*sdk.TextContent).Text, "paid INV-7") {
		t.Fatalf("approved call: %+v %v", res.res, res.err)
	}
	if n := r.toolCalls.Load(); n != 2 {
		t.Fatalf("%d tool calls reached the server, want 2", n)
	}
	// Approved, it ran as its obligations made it.
	if got, _ := r.lastCall.Load().([]byte); bytes.Contains(got, []byte("bob@example.com")) || !bytes.Contains(got, []byte("INV-7 (receipt to [redacted:email])")) {
		t.Errorf("the server got %s", got)
	}
	cs.Close()
	m := byMethod(r.records(t))
	var req, resp gatewaytest.Record
	for _, rec := range m["tools/call request"] {
		if rec.Attr("gen_ai.tool.call.id") == "call_pay_7" {
			req = rec
		}
	}
	for _, rec := range m["tools/call response"] {
		if hasLink(rec, "answers", req.ID) {
			resp = rec
		}
	}
	var dec, appr gatewaytest.Record
	for _, rec := range m[""] {
		switch {
		case rec.Kind == infertrail.KindPolicyDecision && hasLink(rec, "governs", req.ID):
			dec = rec
		case rec.Kind == infertrail.KindApproval:
			appr = rec
		}
	}
	if req.Record == nil || resp.Record == nil || dec.Record == nil || appr.Record == nil {
		t.Fatalf("records %v", keys(m))
	}
	if dec.Attr("policy.result") != "require_approval" || !strings.Contains(string(dec.Content["policy.reasons"]), "1200 EUR needs approval") {
		t.Errorf("decision %v %s", dec.Attributes, dec.Content["policy.reasons"])
	}
	if appr.Actor != dave || appr.Attr("approval.decision") != "approved" || appr.Attr("approval.approver") != dave.ID ||
		string(appr.Content["approval.rationale"]) != `"INV-7 matches PO-2291"` || !hasLink(appr, "answers", dec.ID) || !hasLink(appr, "approves", req.ID) ||
		appr.SessionID != req.SessionID || appr.TraceID != req.TraceID {
		t.Errorf("approval %+v %v", appr.Record, appr.Attributes)
	}
	if !hasLink(resp, "follows", appr.ID) || resp.Attr("mcp.tool.is_error") != false || resp.Attr("infertrail.held_ns") == nil {
		t.Errorf("response %v %v", resp.Attributes, resp.Links)
	}
}

// TestApprovalDenied: a rejection, or a wait that times out, answers the
// call with JSON-RPC error -32011 and the server never sees it; a client
// that goes away while held cancels the wait.
func TestApprovalDenied(t *testing.T) {
	for _, c := range []struct {
		name    string
		timeout time.Duration
		end     func(t *testing.T, r *approvalRig, a infertrail.Approval, cancel context.CancelFunc)
		status  infertrail.ApprovalStatus
		reason  string // approval.reason of the approval record
		message string
	}{
		{"rejected", time.Minute, func(t *testing.T, r *approvalRig, a infertrail.Approval, _ context.CancelFunc) {
			if _, err := r.approvals.Decide(t.Context(), a.ID, infertrail.ApprovalRejected, "duplicate invoice", dave, "approver"); err != nil {
				t.Fatal(err)
			}
		}, infertrail.ApprovalRejected, "", "rejected it; it was not run: a payment of 1200 EUR needs approval"},
		{"timeout", 300 * time.Millisecond, func(*testing.T, *approvalRig, infertrail.Approval, context.CancelFunc) {},
			infertrail.ApprovalExpired, "timeout", "expired: no approver decided within 300ms"},
		{"client gone", time.Minute, func(_ *testing.T, _ *approvalRig, _ infertrail.Approval, cancel context.CancelFunc) { cancel() },
			infertrail.ApprovalCancelled, "client_disconnected", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := newApprovalRig(t, c.timeout)
			cs := r.connect(t, "", nil)
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			done := make(chan error, 1)
			go func() {
				_, err := cs.CallTool(ctx, bigPayment)
				done <- err
			}()
			a := r.pending(t)
			c.end(t, r, a, cancel)
			err := <-done
			if c.message != "" && (err == nil || !strings.Contains(err.Error(), c.message)) {
				t.Fatalf("call: %v, want an error saying %q", err, c.message)
			}
			// The SDK sees the gateway's own error, not one of its own
			// conditions (it reports -32003 as a closed connection).
			var je *jsonrpc.Error
			if c.message != "" && (!errors.As(err, &je) || je.Code != -32011 || errors.Is(err, sdk.ErrConnectionClosed)) {
				t.Fatalf("call: %#v, want JSON-RPC error -32011", err)
			}
			if c.message == "" && !errors.Is(err, context.Canceled) {
				t.Fatalf("cancelled call: %v", err)
			}
			for range 500 {
				if got, _ := r.approvals.Get(t.Context(), a.ID); got.Status != infertrail.ApprovalPending {
					if got.Status != c.status {
						t.Fatalf("approval %+v, want %s", got, c.status)
					}
					break
				}
				time.Sleep(10 * time.Millisecond)
			}
			if n := r.toolCalls.Load(); n != 0 {
				t.Fatalf("%d tool calls reached the server", n)
			}
			cs.Close()
			m := byMethod(r.records(t))
			var appr gatewaytest.Record
			for _, rec := range m[""] {
				if rec.Kind == infertrail.KindApproval {
					appr = rec
				}
			}
			resp := m["tools/call response"]
			if appr.Record == nil || appr.Attr("approval.decision") != string(c.status) || c.reason != "" && appr.Attr("approval.reason") != c.reason {
				t.Fatalf("approval record %+v", appr)
			}
			if len(resp) != 1 || resp[0].Attr("infertrail.refused") == nil || resp[0].Attr("error.type") != "-32011" || !hasLink(resp[0], "follows", appr.ID) {
				t.Fatalf("refusal records %+v", resp)
			}
		})
	}
}
