package main

import (
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/infertrail/infertrail"
	"github.com/infertrail/infertrail/approvals"
	"github.com/infertrail/infertrail/store/sqlite"
)

func TestNewApprovals(t *testing.T) {
	db, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), dbFile), sqlite.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	logger := slog.New(slog.DiscardHandler)
	_, err = newApprovals(db, nil, 2*time.Hour, logger)
	var he *hintError
	if err == nil || !strings.Contains(err.Error(), "policy.approval_timeout") || !errors.As(err, &he) {
		t.Errorf("newApprovals with a 2h timeout: %v", err)
	}
	svc, err := newApprovals(db, nil, 0, logger)
	if err != nil || svc.Timeout() != approvals.DefaultTimeout {
		t.Errorf("newApprovals with no timeout: %v", err)
	}
}

// TestE2EApprovalsCLI: an operator lists and decides held calls on the
// data folder while the server runs; the decision is an approval record
// the server serves, and a second decision is refused.
func TestE2EApprovalsCLI(t *testing.T) {
	dir := t.TempDir()
	s := startServer(t, dir)
	db, err := sqlite.Open(t.Context(), filepath.Join(dir, dbFile), sqlite.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	now := time.Now()
	held := infertrail.Approval{ID: infertrail.NewUUID(), Tenant: "acme", Status: infertrail.ApprovalPending,
		DecisionID: infertrail.NewUUID(), Governs: infertrail.NewUUID(), Point: infertrail.PointToolCall,
		Summary: `tool "pay" on server payments by agent:payments-bot`, Requested: now, Deadline: now.Add(time.Hour)}
	if err := db.AddApproval(t.Context(), held); err != nil {
		t.Fatal(err)
	}

	r := runCLI(t, nil, time.Minute, "approvals", "list", "--data", dir)
	if r.code != 0 || !strings.Contains(r.stdout, held.ID.String()) || !strings.Contains(r.stdout, `tool "pay" on server payments`) || !strings.Contains(r.stdout, "pending") {
		t.Fatalf("approvals list: %s", r)
	}
	for _, c := range []struct {
		args []string
		says string
	}{
		{[]string{"approvals", "approve", held.ID.String(), "--data", dir}, "--rationale is required"},
		{[]string{"approvals", "approve", "--rationale", "x", "--data", dir}, "want the approval's id"},
		{[]string{"approvals", "reject", "not-an-id", "--rationale", "x", "--data", dir}, "approval id"},
		{[]string{"approvals", "approve", held.ID.String(), "--rationale", "x"}, "give --data DIR or --server URL"},
		{[]string{"approvals", "list", "--status", "maybe", "--data", dir}, "status"},
		{[]string{"approvals", "sign", "--data", dir}, "unknown subcommand"},
	} {
		if r := runCLI(t, nil, time.Minute, c.args...); r.code == 0 || !strings.Contains(r.stderr, c.says) {
			t.Errorf("infertrail %s: want a failure saying %q, got %s", strings.Join(c.args, " "), c.says, r)
		}
	}

	r = runCLI(t, nil, time.Minute, "approvals", "approve", held.ID.String(), "--rationale", "invoice 7 matches PO-2291", "--data", dir)
	m := regexp.MustCompile(`Approval record: (\d+)\.`).FindStringSubmatch(r.stdout)
	if r.code != 0 || m == nil || !strings.Contains(r.stdout, "Approved "+held.ID.String()) {
		t.Fatalf("approvals approve: %s", r)
	}
	var seq int64
	fmt.Sscan(m[1], &seq)
	rec, found, err := getRecord(t.Context(), s.url, seq)
	if err != nil || !found {
		t.Fatalf("the server does not serve approval record %d: %v", seq, err)
	}
	for _, want := range []string{`"kind":"approval"`, `"approval.decision":"approved"`, `"approval.channel":"cli"`, `"approval.approver_role":"operator"`,
		`"approval.id":"` + held.ID.String() + `"`, `{"id":"` + held.Governs.String() + `","rel":"approves"}`} {
		if !strings.Contains(string(rec.Record), want) {
			t.Errorf("approval record lacks %s: %s", want, rec.Record)
		}
	}
	got, err := db.Approval(t.Context(), held.ID)
	if err != nil || got.Status != infertrail.ApprovalApproved || !strings.HasPrefix(got.Approver, "cli:") {
		t.Errorf("stored approval %+v %v", got, err)
	}

	r = runCLI(t, nil, time.Minute, "approvals", "reject", held.ID.String(), "--rationale", "second thoughts", "--data", dir)
	if r.code == 0 || !strings.Contains(r.stderr, "already approved by cli:") {
		t.Errorf("second decision: %s", r)
	}
	r = runCLI(t, nil, time.Minute, "approvals", "list", "--status", "all", "--data", dir)
	if r.code != 0 || !strings.Contains(r.stdout, "approved") || !strings.Contains(r.stdout, "cli:") {
		t.Errorf("approvals list --status all: %s", r)
	}
}
