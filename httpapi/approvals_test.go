package httpapi_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/infertrail/infertrail"
	"github.com/infertrail/infertrail/access"
	"github.com/infertrail/infertrail/approvals"
	"github.com/infertrail/infertrail/httpapi"
)

// withApprovals gives the API an approvals service over its log.
func withApprovals(tb testing.TB, c *httpapi.Config) {
	tb.Helper()
	svc, err := approvals.New(approvals.Config{Store: c.Log.Store(), Recorder: c.Log, Poll: 20 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { svc.Close(context.Background()) })
	c.Approvals = svc
}

// pendingApproval adds a pending approval in the tenant, as a gateway
// holding a call does, and returns its id.
func pendingApproval(tb testing.TB, s *testServer, tenant string) infertrail.UUID {
	tb.Helper()
	now := time.Now()
	a := infertrail.Approval{ID: infertrail.NewUUID(), Tenant: tenant, Status: infertrail.ApprovalPending,
		DecisionID: infertrail.NewUUID(), Governs: infertrail.NewUUID(), Point: infertrail.PointToolCall,
		Summary: `tool "pay" on server payments`, TraceID: matrixTrace[tenant], Requested: now, Deadline: now.Add(time.Minute)}
	if err := s.db.AddApproval(tb.Context(), a); err != nil {
		tb.Fatal(err)
	}
	return a.ID
}

// TestApprovals: approvers list, read and decide on held calls through
// the API, and a decision releases the call held on this node at once;
// each decision is an approval record naming the approver; a second
// decision is refused with 409 naming the outcome, and so are bad
// requests, other tenants' approvals and callers without the approve
// permission, all without appending anything.
func TestApprovals(t *testing.T) {
	var svc *approvals.Service
	s := newAuthServer(t, func(c *httpapi.Config, _ *access.Config) {
		withApprovals(t, c)
		svc = c.Approvals
	})
	approver, tok := s.token(t, "acme", time.Hour, infertrail.RoleApprover)
	investigator, _ := s.token(t, "acme", time.Hour, infertrail.RoleInvestigator)
	admin, _ := s.token(t, infertrail.AllTenants, time.Hour, infertrail.RoleAdmin)
	globex, _ := s.token(t, "globex", time.Hour, infertrail.RoleApprover)

	// A call held by this node's service.
	decision, governs := infertrail.NewUUID(), infertrail.NewUUID()
	held := make(chan infertrail.Approval, 1)
	go func() {
		a, err := svc.Await(t.Context(), infertrail.Approval{Tenant: "acme", DecisionID: decision, Governs: governs,
			Point: infertrail.PointToolCall, Summary: `tool "pay" on server payments`, TraceID: matrixTrace["acme"], SessionID: "s-acme"})
		if err != nil {
			t.Error(err)
		}
		held <- a
	}()
	other := pendingApproval(t, s.testServer, "globex")

	var list struct{ Approvals []httpapi.ApprovalJSON }
	for range 500 {
		resp, b := s.as(t, approver, "GET", "/v1/approvals?status=pending", "", "", nil)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("list = %d %s", resp.StatusCode, b)
		}
		if err := json.Unmarshal(b, &list); err != nil {
			t.Fatal(err)
		}
		if len(list.Approvals) > 0 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if len(list.Approvals) != 1 || list.Approvals[0].Tenant != "acme" || list.Approvals[0].DecisionID != decision.String() ||
		list.Approvals[0].Governs != governs.String() || list.Approvals[0].Status != "pending" || list.Approvals[0].Summary != `tool "pay" on server payments` {
		t.Fatalf("acme's pending approvals: %+v", list.Approvals)
	}
	id := list.Approvals[0].ID
	for _, c := range []struct {
		token, path string
		want        int
	}{
		{approver, "/v1/approvals/" + id, 200},
		{investigator, "/v1/approvals/" + id, 200},
		{globex, "/v1/approvals/" + id, 404},
		{approver, "/v1/approvals/" + other.String(), 404},
		{admin, "/v1/approvals/" + other.String(), 200},
		{approver, "/v1/approvals/" + infertrail.NewUUID().String(), 404},
		{approver, "/v1/approvals/not-a-uuid", 400},
		{approver, "/v1/approvals?status=maybe", 400},
		{approver, "/v1/approvals?tenant=globex", 403},
		{approver, "/v1/approvals?colour=red", 400},
	} {
		if resp, b := s.as(t, c.token, "GET", c.path, "", "", nil); resp.StatusCode != c.want {
			t.Errorf("GET %s = %d %s, want %d", c.path, resp.StatusCode, b, c.want)
		}
	}

	before := s.size(t)
	for _, c := range []struct {
		token, id, body string
		want            int
		says            string
	}{
		{investigator, id, `{"decision":"approved","rationale":"ok"}`, 403, "approver"},
		{admin, id, `{"decision":"approved","rationale":"ok"}`, 403, "approver"},
		{globex, id, `{"decision":"approved","rationale":"ok"}`, 404, ""},
		{approver, other.String(), `{"decision":"approved","rationale":"ok"}`, 404, ""},
		{approver, id, `{"decision":"approved"}`, 400, "rationale"},
		{approver, id, `{"decision":"approved","rationale":"  "}`, 400, "rationale"},
		{approver, id, `{"decision":"maybe","rationale":"ok"}`, 400, "decision"},
		{approver, id, `{"decision":"expired","rationale":"ok"}`, 400, "decision"},
		{approver, id, `{"decision":"approved","rationale":"ok","amount":1}`, 400, "amount"},
		{approver, id, `{"decision":"approved","rationale":"` + strings.Repeat("x", approvals.MaxRationale+1) + `"}`, 413, "rationale"},
		{approver, id, `not json`, 400, "body"},
	} {
		resp, b := s.as(t, c.token, "POST", "/v1/approvals/"+c.id, "application/json", c.body, nil)
		if resp.StatusCode != c.want || !strings.Contains(string(b), c.says) {
			t.Errorf("POST %.60s = %d %s, want %d saying %q", c.body, resp.StatusCode, b, c.want, c.says)
		}
	}
	if s.size(t) != before {
		t.Fatal("refused decisions appended records")
	}
	select {
	case a := <-held:
		t.Fatalf("the call was released by refused decisions: %+v", a)
	default:
	}

	resp, b := s.as(t, approver, "POST", "/v1/approvals/"+id, "application/json", `{"decision":"approved","rationale":"INV-7 matches PO-2291"}`, nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("approve = %d %s", resp.StatusCode, b)
	}
	var out struct {
		Approval httpapi.ApprovalJSON
		Record   int64
	}
	if err := json.Unmarshal(b, &out); err != nil || out.Approval.Status != "approved" || out.Approval.Approver != "token/"+tok.ID.String() || out.Approval.ApprovalRecord == "" {
		t.Fatalf("approve answer %s", b)
	}
	select {
	case a := <-held:
		if a.Status != infertrail.ApprovalApproved || a.ApprovalRecord.String() != out.Approval.ApprovalRecord {
			t.Fatalf("held call released with %+v", a)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the approval did not release the held call")
	}
	var rec struct {
		Kind       string
		ID         string
		Actor      infertrail.Actor
		Links      []infertrail.Link
		Attributes map[string]any
	}
	if err := json.Unmarshal(s.entry(t, out.Record).Leaf, &rec); err != nil {
		t.Fatal(err)
	}
	if rec.Kind != "approval" || rec.ID != out.Approval.ApprovalRecord || rec.Actor.ID != "token/"+tok.ID.String() ||
		rec.Attributes["approval.approver_role"] != "approver" || rec.Attributes["approval.channel"] != "api" ||
		len(rec.Links) != 2 || rec.Links[0] != (infertrail.Link{Rel: "answers", ID: decision}) || rec.Links[1] != (infertrail.Link{Rel: "approves", ID: governs}) {
		t.Errorf("approval record %+v", rec)
	}

	// A second decision: 409, naming the outcome, and nothing appended.
	before = s.size(t)
	resp, b = s.as(t, approver, "POST", "/v1/approvals/"+id, "application/json", `{"decision":"rejected","rationale":"second thoughts"}`, nil)
	if resp.StatusCode != http.StatusConflict || !strings.Contains(string(b), "already approved by token/"+tok.ID.String()) {
		t.Errorf("second decision = %d %s", resp.StatusCode, b)
	}
	if s.size(t) != before {
		t.Error("a refused second decision appended a record")
	}
	resp, b = s.as(t, approver, "GET", "/v1/approvals?status=approved", "", "", nil)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), id) {
		t.Errorf("approved list = %d %s", resp.StatusCode, b)
	}
}
