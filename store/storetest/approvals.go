package storetest

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/infertrail/infertrail"
)

// approvalTests are Run's subtests of approvals.
var approvalTests = []struct {
	name string
	fn   func(t *testing.T, s infertrail.Store)
}{
	{"ApprovalsAddAndRead", testApprovalsAddAndRead},
	{"ApprovalsInvalid", testApprovalsInvalid},
	{"ApprovalsDecide", testApprovalsDecide},
	{"ApprovalsList", testApprovalsList},
	{"ApprovalsScan", testApprovalsScan},
	{"ApprovalsConcurrentDecide", testApprovalsConcurrentDecide},
}

// approvalEpoch is the request time of testApproval(0): a time with
// nanoseconds, which stores must keep.
var approvalEpoch = time.Date(2026, 11, 26, 10, 0, 1, 120_000_789, time.UTC)

// testApproval returns the nth test approval: pending, in tenant acme,
// requested n seconds after approvalEpoch, with a five-minute deadline.
func testApproval(n int) infertrail.Approval {
	id := func(kind byte) infertrail.UUID {
		var u infertrail.UUID
		u[0], u[1], u[2], u[15] = kind, byte(n>>8), byte(n), 9
		return u
	}
	req := approvalEpoch.Add(time.Duration(n) * time.Second)
	return infertrail.Approval{
		ID: id(0xa1), Tenant: "acme", Status: infertrail.ApprovalPending,
		DecisionID: id(0xd1), Governs: id(0xe1), Point: infertrail.PointToolCall,
		Summary: fmt.Sprintf(`tool "pay" on server payments (%d)`, n),
		TraceID: "4bf92f3577b34da6a3ce929d0e0e4736", SessionID: "sess-42",
		Requested: req, Deadline: req.Add(5 * time.Minute),
	}
}

func addApproval(t *testing.T, s infertrail.Store, a infertrail.Approval) {
	t.Helper()
	if err := s.AddApproval(t.Context(), a); err != nil {
		t.Fatalf("AddApproval(%s): %v", a.Summary, err)
	}
}

// sameApproval compares approvals, times by instant.
func sameApproval(a, b infertrail.Approval) bool {
	return a.ID == b.ID && a.Tenant == b.Tenant && a.Status == b.Status && a.DecisionID == b.DecisionID && a.Governs == b.Governs &&
		a.Point == b.Point && a.Summary == b.Summary && a.TraceID == b.TraceID && a.SessionID == b.SessionID &&
		a.Requested.Equal(b.Requested) && a.Deadline.Equal(b.Deadline) && a.Approver == b.Approver &&
		a.Decided.Equal(b.Decided) && a.ApprovalRecord == b.ApprovalRecord
}

func listApprovals(t *testing.T, s infertrail.Store, tenants []string, status infertrail.ApprovalStatus, limit int) []string {
	t.Helper()
	var out []string
	err := s.Approvals(t.Context(), tenants, status, limit, func(a *infertrail.Approval) error {
		out = append(out, a.Summary)
		return nil
	})
	if err != nil {
		t.Fatalf("Approvals(%v, %q, %d): %v", tenants, status, limit, err)
	}
	return out
}

func testApprovalsAddAndRead(t *testing.T, s infertrail.Store) {
	ctx := t.Context()
	if _, err := s.Approval(ctx, testApproval(1).ID); !errors.Is(err, infertrail.ErrNotFound) {
		t.Errorf("Approval of an empty store: err = %v, want ErrNotFound", err)
	}
	plain := testApproval(1)
	full := testApproval(2)
	full.Tenant, full.Point = "tenant-2.b_c", infertrail.PointInferenceRequest
	full.Summary = `model "gpt-4o" via openai (chat) — ü✓, "quoted"` + strings.Repeat("x", infertrail.MaxApprovalSummary-60)
	full.TraceID, full.SessionID = "", ""
	addApproval(t, s, plain)
	addApproval(t, s, full)
	for _, want := range []infertrail.Approval{plain, full} {
		got, err := s.Approval(ctx, want.ID)
		if err != nil {
			t.Fatalf("Approval(%v): %v", want.ID, err)
		}
		if !sameApproval(got, want) {
			t.Errorf("Approval(%v) =\n%+v\nwant\n%+v", want.ID, got, want)
		}
		if got.Requested.Location() != time.UTC || !got.Decided.IsZero() || !got.ApprovalRecord.IsZero() {
			t.Errorf("Approval(%v): requested in %v, decided %v, record %v", want.ID, got.Requested.Location(), got.Decided, got.ApprovalRecord)
		}
	}
	dup := testApproval(3)
	dup.ID = plain.ID
	if err := s.AddApproval(ctx, dup); !errors.Is(err, infertrail.ErrConflict) {
		t.Errorf("AddApproval with a taken id: err = %v, want ErrConflict", err)
	}
	if got, _ := s.Approval(ctx, plain.ID); !sameApproval(got, plain) {
		t.Errorf("a refused AddApproval changed the stored approval: %+v", got)
	}
}

func testApprovalsInvalid(t *testing.T, s infertrail.Store) {
	for _, c := range []struct {
		name string
		edit func(a *infertrail.Approval)
	}{
		{"no id", func(a *infertrail.Approval) { a.ID = infertrail.UUID{} }},
		{"no tenant", func(a *infertrail.Approval) { a.Tenant = "" }},
		{"bad tenant", func(a *infertrail.Approval) { a.Tenant = "Not a tenant!" }},
		{"decided", func(a *infertrail.Approval) { a.Status = infertrail.ApprovalApproved }},
		{"unknown status", func(a *infertrail.Approval) { a.Status = "maybe" }},
		{"no decision", func(a *infertrail.Approval) { a.DecisionID = infertrail.UUID{} }},
		{"no governed record", func(a *infertrail.Approval) { a.Governs = infertrail.UUID{} }},
		{"no point", func(a *infertrail.Approval) { a.Point = "" }},
		{"no summary", func(a *infertrail.Approval) { a.Summary = "" }},
		{"long summary", func(a *infertrail.Approval) { a.Summary = strings.Repeat("x", infertrail.MaxApprovalSummary+1) }},
		{"summary not UTF-8", func(a *infertrail.Approval) { a.Summary = "\xff" }},
		{"no request time", func(a *infertrail.Approval) { a.Requested = time.Time{} }},
		{"deadline not after", func(a *infertrail.Approval) { a.Deadline = a.Requested }},
		{"approver", func(a *infertrail.Approval) { a.Approver = "user:bob" }},
		{"record", func(a *infertrail.Approval) { a.ApprovalRecord = a.ID }},
	} {
		a := testApproval(1)
		c.edit(&a)
		if err := s.AddApproval(t.Context(), a); !errors.Is(err, infertrail.ErrInvalid) {
			t.Errorf("AddApproval (%s): err = %v, want ErrInvalid", c.name, err)
		}
	}
	if got := listApprovals(t, s, nil, "", 0); len(got) != 0 {
		t.Errorf("refused approvals were stored: %q", got)
	}
}

func testApprovalsDecide(t *testing.T, s infertrail.Store) {
	ctx := t.Context()
	a := testApproval(1)
	addApproval(t, s, a)
	record := testApproval(99).ID
	at := approvalEpoch.Add(3*time.Minute + 7)
	for _, c := range []struct {
		name     string
		status   infertrail.ApprovalStatus
		approver string
		at       time.Time
		record   infertrail.UUID
	}{
		{"pending", infertrail.ApprovalPending, "user:bob", at, record},
		{"unknown status", "maybe", "user:bob", at, record},
		{"no approver", infertrail.ApprovalApproved, "", at, record},
		{"no time", infertrail.ApprovalApproved, "user:bob", time.Time{}, record},
		{"no record", infertrail.ApprovalApproved, "user:bob", at, infertrail.UUID{}},
	} {
		if err := s.DecideApproval(ctx, a.ID, c.status, c.approver, c.at, c.record); !errors.Is(err, infertrail.ErrInvalid) {
			t.Errorf("DecideApproval (%s): err = %v, want ErrInvalid", c.name, err)
		}
	}
	if got, _ := s.Approval(ctx, a.ID); !sameApproval(got, a) {
		t.Fatalf("refused decisions changed the approval: %+v", got)
	}
	if err := s.DecideApproval(ctx, testApproval(2).ID, infertrail.ApprovalApproved, "user:bob", at, record); !errors.Is(err, infertrail.ErrNotFound) {
		t.Errorf("DecideApproval of a missing approval: err = %v, want ErrNotFound", err)
	}
	if err := s.DecideApproval(ctx, a.ID, infertrail.ApprovalRejected, "token/0193a5b0-7c1e-7000-8000-00000000000b", at, record); err != nil {
		t.Fatalf("DecideApproval: %v", err)
	}
	want := a
	want.Status, want.Approver, want.Decided, want.ApprovalRecord = infertrail.ApprovalRejected, "token/0193a5b0-7c1e-7000-8000-00000000000b", at, record
	got, err := s.Approval(ctx, a.ID)
	if err != nil || !sameApproval(got, want) {
		t.Fatalf("decided approval = %+v, %v\nwant %+v", got, err, want)
	}
	for _, st := range []infertrail.ApprovalStatus{infertrail.ApprovalApproved, infertrail.ApprovalRejected, infertrail.ApprovalExpired, infertrail.ApprovalCancelled} {
		err := s.DecideApproval(ctx, a.ID, st, "infertrail", at.Add(time.Second), testApproval(98).ID)
		if !errors.Is(err, infertrail.ErrConflict) || !strings.Contains(err.Error(), "rejected") {
			t.Errorf("DecideApproval(%s) of a rejected approval: err = %v, want ErrConflict naming its status", st, err)
		}
	}
	if got, _ := s.Approval(ctx, a.ID); !sameApproval(got, want) {
		t.Errorf("a second decision changed the approval: %+v", got)
	}
	// Each decided status is kept.
	for i, st := range []infertrail.ApprovalStatus{infertrail.ApprovalApproved, infertrail.ApprovalExpired, infertrail.ApprovalCancelled} {
		b := testApproval(10 + i)
		addApproval(t, s, b)
		if err := s.DecideApproval(ctx, b.ID, st, "infertrail", at, record); err != nil {
			t.Fatalf("DecideApproval(%s): %v", st, err)
		}
		if got, _ := s.Approval(ctx, b.ID); got.Status != st {
			t.Errorf("approval decided %s reads back %s", st, got.Status)
		}
	}
}

func testApprovalsList(t *testing.T, s infertrail.Store) {
	ctx := t.Context()
	if got := listApprovals(t, s, nil, "", 0); len(got) != 0 {
		t.Errorf("Approvals of an empty store = %q", got)
	}
	// Added out of order: listings go by request time, newest first.
	for _, n := range []int{3, 1, 4, 0, 2, 5} {
		a := testApproval(n)
		a.Summary = fmt.Sprint(n)
		if n%2 == 1 {
			a.Tenant = "globex"
		}
		addApproval(t, s, a)
	}
	for _, n := range []int{1, 2} {
		if err := s.DecideApproval(ctx, testApproval(n).ID, infertrail.ApprovalApproved, "user:bob", approvalEpoch.Add(time.Hour), testApproval(90+n).ID); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct {
		tenants []string
		status  infertrail.ApprovalStatus
		limit   int
		want    string
	}{
		{nil, "", 0, "5 4 3 2 1 0"},
		{nil, "", 2, "5 4"},
		{[]string{"acme"}, "", 0, "4 2 0"},
		{[]string{"globex", "acme"}, "", 0, "5 4 3 2 1 0"},
		{[]string{"initech"}, "", 0, ""},
		{[]string{}, "", 0, ""},
		{nil, infertrail.ApprovalPending, 0, "5 4 3 0"},
		{nil, infertrail.ApprovalApproved, 0, "2 1"},
		{nil, infertrail.ApprovalExpired, 0, ""},
		{[]string{"globex"}, infertrail.ApprovalPending, 1, "5"},
		{[]string{"acme"}, infertrail.ApprovalApproved, 0, "2"},
	} {
		if got := strings.Join(listApprovals(t, s, c.tenants, c.status, c.limit), " "); got != c.want {
			t.Errorf("Approvals(%q, %q, %d) = %q, want %q", c.tenants, c.status, c.limit, got, c.want)
		}
	}
	var full []infertrail.Approval
	s.Approvals(ctx, []string{"acme"}, infertrail.ApprovalApproved, 0, func(a *infertrail.Approval) error {
		full = append(full, *a)
		return nil
	})
	if len(full) != 1 || full[0].Approver != "user:bob" || full[0].ApprovalRecord != testApproval(92).ID || full[0].Tenant != "acme" {
		t.Errorf("listed approval %+v", full)
	}
	stop := errors.New("stop")
	calls := 0
	err := s.Approvals(ctx, nil, "", 0, func(*infertrail.Approval) error { calls++; return stop })
	if !errors.Is(err, stop) || calls != 1 {
		t.Errorf("Approvals with fn failing: %d calls, err = %v; want 1 call and fn's error", calls, err)
	}
}

// testApprovalsConcurrentDecide: of concurrent decisions of one approval,
// exactly one wins, and the stored decision is the winner's.
func testApprovalsConcurrentDecide(t *testing.T, s infertrail.Store) {
	const rounds, deciders = 8, 6
	statuses := []infertrail.ApprovalStatus{infertrail.ApprovalApproved, infertrail.ApprovalRejected, infertrail.ApprovalExpired}
	for r := range rounds {
		a := testApproval(100 + r)
		addApproval(t, s, a)
		errs := make([]error, deciders)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for d := range deciders {
			wg.Go(func() {
				<-start
				errs[d] = s.DecideApproval(t.Context(), a.ID, statuses[d%len(statuses)], fmt.Sprintf("decider %d", d),
					approvalEpoch.Add(time.Duration(d+1)), testApproval(200+d).ID)
			})
		}
		close(start)
		wg.Wait()
		winner := -1
		for d, err := range errs {
			switch {
			case err == nil && winner >= 0:
				t.Fatalf("round %d: deciders %d and %d both won", r, winner, d)
			case err == nil:
				winner = d
			case !errors.Is(err, infertrail.ErrConflict):
				t.Fatalf("round %d: decider %d: err = %v, want nil or ErrConflict", r, d, err)
			}
		}
		if winner < 0 {
			t.Fatalf("round %d: no decider won: %v", r, errs)
		}
		got, err := s.Approval(t.Context(), a.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.Status != statuses[winner%len(statuses)] || got.Approver != fmt.Sprintf("decider %d", winner) || got.ApprovalRecord != testApproval(200+winner).ID {
			t.Errorf("round %d: stored %s by %s (record %v), but decider %d won", r, got.Status, got.Approver, got.ApprovalRecord, winner)
		}
	}
}

// testApprovalsScan pages through every approval in id order, as a copy
// of the whole store does.
func testApprovalsScan(t *testing.T, s infertrail.Store) {
	ctx := t.Context()
	scan := func(after infertrail.UUID, limit int) []infertrail.Approval {
		t.Helper()
		var out []infertrail.Approval
		if err := s.ScanApprovals(ctx, after, limit, func(a *infertrail.Approval) error {
			out = append(out, *a)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return out
	}
	if got := scan(infertrail.UUID{}, 0); len(got) != 0 {
		t.Errorf("ScanApprovals of an empty store: %d approvals", len(got))
	}
	want := map[infertrail.UUID]infertrail.Approval{}
	for _, n := range []int{3, 1, 4, 0, 2, 5} { // ids in the order of n
		a := testApproval(n)
		a.Summary = fmt.Sprint(n)
		if n%2 == 1 {
			a.Tenant = "globex"
		}
		addApproval(t, s, a)
		want[a.ID] = a
	}
	decided := testApproval(2)
	if err := s.DecideApproval(ctx, decided.ID, infertrail.ApprovalRejected, "user:bob", approvalEpoch.Add(time.Hour), testApproval(92).ID); err != nil {
		t.Fatal(err)
	}
	decided.Status, decided.Approver, decided.Decided, decided.ApprovalRecord = infertrail.ApprovalRejected, "user:bob", approvalEpoch.Add(time.Hour), testApproval(92).ID
	decided.Summary = "2"
	want[decided.ID] = decided
	var got []string
	var after infertrail.UUID
	for page := 0; ; page++ {
		as := scan(after, 4)
		if len(as) > 4 || page > 3 {
			t.Fatalf("ScanApprovals(%v, 4): %d approvals (page %d)", after, len(as), page)
		}
		for _, a := range as {
			got = append(got, a.Summary)
			if !sameApproval(a, want[a.ID]) {
				t.Errorf("ScanApprovals: %+v, want %+v", a, want[a.ID])
			}
		}
		if len(as) < 4 {
			break
		}
		after = as[len(as)-1].ID
	}
	if strings.Join(got, " ") != "0 1 2 3 4 5" {
		t.Errorf("ScanApprovals in pages of 4: %q, want every approval in id order", got)
	}
	if rest := scan(testApproval(5).ID, 0); len(rest) != 0 {
		t.Errorf("ScanApprovals after the last: %d approvals", len(rest))
	}
	if two := scan(testApproval(1).ID, 2); len(two) != 2 || two[0].Summary != "2" || two[1].Summary != "3" {
		t.Errorf("ScanApprovals after approval 1, 2 of them: %v", two)
	}
}
