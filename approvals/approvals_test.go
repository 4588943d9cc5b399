package approvals_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/infertrail/infertrail"
	"github.com/infertrail/infertrail/approvals"
	"github.com/infertrail/infertrail/capture/gateway/gatewaytest"
	"github.com/infertrail/infertrail/store/postgres"
)

var bob = infertrail.Actor{ID: "token/0193a5b0-7c1e-7000-8000-0000000000b0", Type: "token", CredentialFingerprint: "hmac-sha256:00"}

func newService(tb testing.TB, trail *gatewaytest.Trail, edit func(*approvals.Config)) *approvals.Service {
	tb.Helper()
	cfg := approvals.Config{Store: trail.DB, Recorder: trail.Log, Poll: time.Hour, Logger: slog.New(slog.DiscardHandler)}
	if edit != nil {
		edit(&cfg)
	}
	s, err := approvals.New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close(context.Background()) })
	return s
}

// request is what an enforcement point asks to hold.
func request() infertrail.Approval {
	return infertrail.Approval{Tenant: "acme", DecisionID: infertrail.NewUUID(), Governs: infertrail.NewUUID(),
		Point: infertrail.PointToolCall, Summary: `tool "pay" on server payments`,
		TraceID: "4bf92f3577b34da6a3ce929d0e0e4736", SessionID: "sess-42"}
}

type result struct {
	a   infertrail.Approval
	err error
}

// hold starts Await in the background and returns the pending approval's
// id once it is in the store, and where the result will come.
func hold(tb testing.TB, s *approvals.Service, ctx context.Context, req infertrail.Approval) (infertrail.UUID, <-chan result) {
	tb.Helper()
	done := make(chan result, 1)
	go func() {
		a, err := s.Await(ctx, req)
		done <- result{a, err}
	}()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		list, err := s.List(tb.Context(), nil, infertrail.ApprovalPending, 0)
		if err != nil {
			tb.Fatal(err)
		}
		for _, a := range list {
			if a.DecisionID == req.DecisionID {
				return a.ID, done
			}
		}
		select {
		case r := <-done:
			tb.Fatalf("Await returned before it was decided: %+v %v", r.a, r.err)
		case <-time.After(5 * time.Millisecond):
		}
	}
	tb.Fatal("the held call's approval never appeared")
	return infertrail.UUID{}, nil
}

func wait(tb testing.TB, done <-chan result, within time.Duration) infertrail.Approval {
	tb.Helper()
	select {
	case r := <-done:
		if r.err != nil {
			tb.Fatalf("Await: %v", r.err)
		}
		return r.a
	case <-time.After(within):
		tb.Fatalf("Await did not return within %v", within)
	}
	return infertrail.Approval{}
}

// approvalRecords returns the trail's approval records.
func approvalRecords(tb testing.TB, trail *gatewaytest.Trail) []gatewaytest.Record {
	tb.Helper()
	var out []gatewaytest.Record
	for _, r := range trail.Records(tb) {
		if r.Kind == infertrail.KindApproval {
			out = append(out, r)
		}
	}
	return out
}

func hasLink(r gatewaytest.Record, rel string, id infertrail.UUID) bool {
	for _, l := range r.Links {
		if l.Rel == rel && l.ID == id {
			return true
		}
	}
	return false
}

// TestApprove: a decision on the node that holds the call releases it at
// once (the poll interval here is an hour), and the approval record holds
// the approver, the rationale and the links.
func TestApprove(t *testing.T) {
	trail := gatewaytest.NewTrail(t)
	s := newService(t, trail, nil)
	req := request()
	id, done := hold(t, s, t.Context(), req)
	d, err := s.Decide(t.Context(), id, infertrail.ApprovalApproved, "  Invoice 7 matches PO-2291.  ", bob, "approver")
	if err != nil {
		t.Fatal(err)
	}
	a := wait(t, done, 5*time.Second)
	if a.Status != infertrail.ApprovalApproved || a.Approver != bob.ID || a.ApprovalRecord != d.Approval.ApprovalRecord || a.ApprovalRecord.IsZero() {
		t.Fatalf("Await = %+v, decision %+v", a, d.Approval)
	}
	recs := approvalRecords(t, trail)
	if len(recs) != 1 {
		t.Fatalf("%d approval records, want 1", len(recs))
	}
	r := recs[0]
	if r.ID != a.ApprovalRecord || r.Seq != d.Seq || r.Actor != bob || r.Tenant != "acme" || r.TraceID != req.TraceID || r.SessionID != req.SessionID ||
		!hasLink(r, "answers", req.DecisionID) || !hasLink(r, "approves", req.Governs) {
		t.Errorf("approval record %+v", r.Record)
	}
	for k, want := range map[string]any{"approval.decision": "approved", "approval.approver": bob.ID, "approval.approver_role": "approver",
		"approval.channel": "api", "approval.id": id.String(), "approval.summary": req.Summary, "approval.point": "tool.call",
		"approval.requested_time": a.Requested.Format(time.RFC3339Nano)} {
		if got := r.Attr(k); got != want {
			t.Errorf("%s = %v, want %v", k, got, want)
		}
	}
	if string(r.Content["approval.rationale"]) != `"Invoice 7 matches PO-2291."` {
		t.Errorf("rationale %s", r.Content["approval.rationale"])
	}
	// A second decision is refused, and nothing more is recorded.
	_, err = s.Decide(t.Context(), id, infertrail.ApprovalRejected, "changed my mind", bob, "approver")
	if !errors.Is(err, infertrail.ErrConflict) || !strings.Contains(err.Error(), "already approved by "+bob.ID) {
		t.Errorf("second decision: %v", err)
	}
	if n := len(approvalRecords(t, trail)); n != 1 {
		t.Errorf("%d approval records after a refused second decision", n)
	}
}

// TestReject: a rejection ends the wait, denied, and approves nothing.
func TestReject(t *testing.T) {
	trail := gatewaytest.NewTrail(t)
	s := newService(t, trail, nil)
	req := request()
	id, done := hold(t, s, t.Context(), req)
	if _, err := s.Decide(t.Context(), id, infertrail.ApprovalRejected, "vendor not verified", bob, "approver"); err != nil {
		t.Fatal(err)
	}
	if a := wait(t, done, 5*time.Second); a.Status != infertrail.ApprovalRejected {
		t.Fatalf("Await = %+v", a)
	}
	r := approvalRecords(t, trail)[0]
	if r.Attr("approval.decision") != "rejected" || !hasLink(r, "answers", req.DecisionID) || hasLink(r, "approves", req.Governs) {
		t.Errorf("rejection record %+v %v", r.Links, r.Attributes)
	}
}

// TestOtherNode: a decision taken through another node's service reaches
// the node that holds the call by polling the shared store.
func TestOtherNode(t *testing.T) {
	trail := gatewaytest.NewTrail(t)
	holder := newService(t, trail, func(c *approvals.Config) { c.Poll = 20 * time.Millisecond })
	other := newService(t, trail, nil)
	id, done := hold(t, holder, t.Context(), request())
	if _, err := other.Decide(t.Context(), id, infertrail.ApprovalApproved, "ok", bob, "approver"); err != nil {
		t.Fatal(err)
	}
	if a := wait(t, done, 5*time.Second); a.Status != infertrail.ApprovalApproved {
		t.Fatalf("Await = %+v", a)
	}
}

// TestTimeout: nobody decides: the approval expires at its deadline,
// InferTrail records it, and a decision after that is refused.
func TestTimeout(t *testing.T) {
	trail := gatewaytest.NewTrail(t)
	s := newService(t, trail, func(c *approvals.Config) { c.Timeout = 300 * time.Millisecond })
	req := request()
	start := time.Now()
	id, done := hold(t, s, t.Context(), req)
	a := wait(t, done, 5*time.Second)
	if a.Status != infertrail.ApprovalExpired || time.Since(start) < 300*time.Millisecond || !a.Deadline.Equal(a.Requested.Add(300*time.Millisecond)) {
		t.Fatalf("Await = %+v after %v", a, time.Since(start))
	}
	stored, err := s.Get(t.Context(), id)
	if err != nil || stored.Status != infertrail.ApprovalExpired || stored.Approver != approvals.ServiceActor || stored.ApprovalRecord != a.ApprovalRecord {
		t.Fatalf("stored %+v %v", stored, err)
	}
	recs := approvalRecords(t, trail)
	if len(recs) != 1 || recs[0].ID != a.ApprovalRecord || recs[0].Actor != (infertrail.Actor{ID: "infertrail", Type: "service"}) ||
		recs[0].Attr("approval.decision") != "expired" || recs[0].Attr("approval.reason") != "timeout" || !hasLink(recs[0], "answers", req.DecisionID) ||
		recs[0].Attr("approval.approver") != nil {
		t.Fatalf("records %+v", recs)
	}
	_, err = s.Decide(t.Context(), id, infertrail.ApprovalApproved, "sorry, late", bob, "approver")
	if !errors.Is(err, infertrail.ErrConflict) || !strings.Contains(err.Error(), "already expired") {
		t.Errorf("late decision: %v", err)
	}
}

// TestCancel: the caller goes away while held: the approval is cancelled
// and recorded so.
func TestCancel(t *testing.T) {
	trail := gatewaytest.NewTrail(t)
	s := newService(t, trail, nil)
	ctx, cancel := context.WithCancel(t.Context())
	id, done := hold(t, s, ctx, request())
	cancel()
	if a := wait(t, done, 5*time.Second); a.Status != infertrail.ApprovalCancelled {
		t.Fatalf("Await = %+v", a)
	}
	if a, _ := s.Get(t.Context(), id); a.Status != infertrail.ApprovalCancelled {
		t.Errorf("stored %+v", a)
	}
	if recs := approvalRecords(t, trail); len(recs) != 1 || recs[0].Attr("approval.decision") != "cancelled" || recs[0].Attr("approval.reason") != "client_disconnected" {
		t.Errorf("records %+v", recs)
	}
}

// lateCancel is a store whose AddApproval stores the approval, then ends
// the caller's context and reports the end of the context it was given,
// as a driver may when that context ends while the statement commits.
type lateCancel struct {
	infertrail.ApprovalStore
	cancel context.CancelFunc
}

func (s lateCancel) AddApproval(ctx context.Context, a infertrail.Approval) error {
	err := s.ApprovalStore.AddApproval(context.WithoutCancel(ctx), a)
	s.cancel()
	if err != nil {
		return err
	}
	return ctx.Err()
}

// TestCancelWhileAdding: a caller that goes away while its approval is
// being added leaves it cancelled, not pending with nothing waiting.
func TestCancelWhileAdding(t *testing.T) {
	trail := gatewaytest.NewTrail(t)
	ctx, cancel := context.WithCancel(t.Context())
	s := newService(t, trail, func(c *approvals.Config) { c.Store = lateCancel{trail.DB, cancel} })
	a, err := s.Await(ctx, request())
	if err != nil || a.Status != infertrail.ApprovalCancelled {
		t.Fatalf("Await = %+v, %v", a, err)
	}
	if got, _ := s.Get(t.Context(), a.ID); got.Status != infertrail.ApprovalCancelled {
		t.Errorf("stored %+v", got)
	}
	if recs := approvalRecords(t, trail); len(recs) != 1 || recs[0].Attr("approval.reason") != "client_disconnected" {
		t.Errorf("records %+v", recs)
	}
}

// TestClose: closing the service ends the waits it holds, cancelled, and
// refuses new ones.
func TestClose(t *testing.T) {
	trail := gatewaytest.NewTrail(t)
	s := newService(t, trail, nil)
	_, done := hold(t, s, t.Context(), request())
	if err := s.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	if a := wait(t, done, time.Second); a.Status != infertrail.ApprovalCancelled {
		t.Fatalf("Await = %+v", a)
	}
	if recs := approvalRecords(t, trail); len(recs) != 1 || recs[0].Attr("approval.reason") != "shutdown" {
		t.Errorf("records %+v", recs)
	}
	if _, err := s.Await(t.Context(), request()); !errors.Is(err, infertrail.ErrUnavailable) {
		t.Errorf("Await after Close: %v", err)
	}
}

// TestConcurrentDecisions: two approvers decide at once; exactly one
// decision takes effect. A loser that passed the first check has its
// record in the log, followed by one that says it came too late.
func TestConcurrentDecisions(t *testing.T) {
	trail := gatewaytest.NewTrail(t)
	s := newService(t, trail, nil)
	for range 5 {
		id, done := hold(t, s, t.Context(), request())
		var wg sync.WaitGroup
		errs := make([]error, 2)
		for i, dec := range []infertrail.ApprovalStatus{infertrail.ApprovalApproved, infertrail.ApprovalRejected} {
			wg.Go(func() { _, errs[i] = s.Decide(t.Context(), id, dec, "race", bob, "approver") })
		}
		wg.Wait()
		won := 0
		for _, err := range errs {
			if err == nil {
				won++
			} else if !errors.Is(err, infertrail.ErrConflict) {
				t.Fatalf("decision: %v", err)
			}
		}
		if won != 1 {
			t.Fatalf("%d decisions won: %v", won, errs)
		}
		wait(t, done, 5*time.Second)
	}
	// Every decision record without effect is followed by a too_late one.
	recs := approvalRecords(t, trail)
	effective := map[infertrail.UUID]bool{}
	late := map[infertrail.UUID]bool{}
	for _, r := range recs {
		if r.Attr("approval.outcome") == "too_late" {
			for _, l := range r.Links {
				if l.Rel == "follows" {
					late[l.ID] = true
				}
			}
		}
	}
	for _, r := range recs {
		if r.Attr("approval.outcome") == nil && !late[r.ID] {
			effective[r.ID] = true
		}
	}
	if len(effective) != 5 {
		t.Errorf("%d effective decision records, want 5 (%d records, %d too late)", len(effective), len(recs), len(late))
	}
}

func TestBadDecisions(t *testing.T) {
	trail := gatewaytest.NewTrail(t)
	s := newService(t, trail, nil)
	id, done := hold(t, s, t.Context(), request())
	for _, c := range []struct {
		decision  infertrail.ApprovalStatus
		rationale string
		field     string
		want      error
	}{
		{"maybe", "why not", "decision", infertrail.ErrInvalid},
		{infertrail.ApprovalExpired, "why not", "decision", infertrail.ErrInvalid},
		{infertrail.ApprovalApproved, "   ", "rationale", infertrail.ErrInvalid},
		{infertrail.ApprovalApproved, strings.Repeat("x", approvals.MaxRationale+1), "rationale", infertrail.ErrTooLarge},
		{infertrail.ApprovalApproved, "\xff", "rationale", infertrail.ErrInvalid},
	} {
		_, err := s.Decide(t.Context(), id, c.decision, c.rationale, bob, "approver")
		var fe *infertrail.FieldError
		if !errors.As(err, &fe) || fe.Field != c.field || !errors.Is(err, c.want) {
			t.Errorf("Decide(%q, %.10q): %v, want a %v on %s", c.decision, c.rationale, err, c.want, c.field)
		}
	}
	if _, err := s.Decide(t.Context(), infertrail.NewUUID(), infertrail.ApprovalApproved, "ok", bob, "approver"); !errors.Is(err, infertrail.ErrNotFound) {
		t.Errorf("unknown approval: %v", err)
	}
	if n := len(approvalRecords(t, trail)); n != 0 {
		t.Errorf("refused decisions left %d records", n)
	}
	s.Decide(t.Context(), id, infertrail.ApprovalRejected, "done", bob, "approver")
	wait(t, done, 5*time.Second)
}

// TestStale: a pending approval whose holder is gone (its node crashed)
// is expired, and recorded, by the next node that reads it.
func TestStale(t *testing.T) {
	trail := gatewaytest.NewTrail(t)
	s := newService(t, trail, nil)
	a := request()
	a.ID, a.Status = infertrail.NewUUID(), infertrail.ApprovalPending
	a.Requested = time.Now().Add(-10 * time.Minute)
	a.Deadline = a.Requested.Add(5 * time.Minute)
	if err := trail.DB.AddApproval(t.Context(), a); err != nil {
		t.Fatal(err)
	}
	list, err := s.List(t.Context(), []string{"acme"}, infertrail.ApprovalPending, 0)
	if err != nil || len(list) != 0 {
		t.Fatalf("pending list %+v %v", list, err)
	}
	got, err := s.Get(t.Context(), a.ID)
	if err != nil || got.Status != infertrail.ApprovalExpired {
		t.Fatalf("Get = %+v %v", got, err)
	}
	if recs := approvalRecords(t, trail); len(recs) != 1 || recs[0].Attr("approval.reason") != "holder_gone" {
		t.Errorf("records %+v", recs)
	}
}

func TestConfig(t *testing.T) {
	trail := gatewaytest.NewTrail(t)
	for _, cfg := range []approvals.Config{
		{Recorder: trail.Log},
		{Store: trail.DB},
		{Store: trail.DB, Recorder: trail.Log, Timeout: approvals.MaxTimeout + time.Second},
		{Store: trail.DB, Recorder: trail.Log, Timeout: -time.Second},
		{Store: trail.DB, Recorder: trail.Log, Poll: -time.Second},
	} {
		if _, err := approvals.New(cfg); err == nil {
			t.Errorf("New(%+v) succeeded", cfg)
		}
	}
	s, err := approvals.New(approvals.Config{Store: trail.DB, Recorder: trail.Log})
	if err != nil || s.Timeout() != approvals.DefaultTimeout {
		t.Errorf("defaults: %v %v", s, err)
	}
}

// TestOtherNodePostgres: two nodes, each with its own connection pool to
// one PostgreSQL store; the node that holds the call sees the other's
// decision by polling, and of two nodes racing to decide, one wins.
func TestOtherNodePostgres(t *testing.T) {
	dsn := os.Getenv("INFERTRAIL_TEST_POSTGRES")
	if dsn == "" {
		if os.Getenv("INFERTRAIL_REQUIRE_POSTGRES") == "1" {
			t.Fatal("INFERTRAIL_TEST_POSTGRES is unset and INFERTRAIL_REQUIRE_POSTGRES=1")
		}
		t.Skip("INFERTRAIL_TEST_POSTGRES is unset")
	}
	var b [6]byte
	rand.Read(b[:])
	schema := "infertrail_test_approvals_" + hex.EncodeToString(b[:])
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if conn, err := pgx.Connect(ctx, dsn); err == nil {
			conn.Exec(ctx, `DROP SCHEMA IF EXISTS `+pgx.Identifier{schema}.Sanitize()+` CASCADE`)
			conn.Close(ctx)
		}
	})
	open := func() *postgres.DB {
		db, err := postgres.Open(t.Context(), dsn, postgres.Config{Schema: schema})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return db
	}
	trail := gatewaytest.NewTrail(t) // where the records go; the approvals are in PostgreSQL
	node := func(db *postgres.DB, poll time.Duration) *approvals.Service {
		s, err := approvals.New(approvals.Config{Store: db, Recorder: trail.Log, Poll: poll, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close(context.Background()) })
		return s
	}
	holder := node(open(), 20*time.Millisecond)
	a, b2 := node(open(), time.Hour), node(open(), time.Hour)
	for round := range 3 {
		id, done := hold(t, holder, t.Context(), request())
		errs := make([]error, 2)
		var wg sync.WaitGroup
		for i, n := range []*approvals.Service{a, b2} {
			wg.Go(func() { _, errs[i] = n.Decide(t.Context(), id, infertrail.ApprovalApproved, "race", bob, "approver") })
		}
		wg.Wait()
		if (errs[0] == nil) == (errs[1] == nil) {
			t.Fatalf("round %d: decisions %v, want exactly one to win", round, errs)
		}
		if got := wait(t, done, 5*time.Second); got.Status != infertrail.ApprovalApproved {
			t.Fatalf("round %d: Await = %+v", round, got)
		}
	}
}
