package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/infertrail/infertrail"
	"github.com/infertrail/infertrail/approvals"
	"github.com/infertrail/infertrail/httpapi"
	"github.com/infertrail/infertrail/ledger"
)

// newApprovals returns the approvals service that serve gives the
// gateways (which hold calls with it) and the API (which takes
// approvers' decisions with it): timeout is policy.approval_timeout
// (0: the default, 5 minutes).
func newApprovals(st infertrail.ApprovalStore, lg *ledger.Log, timeout time.Duration, logger *slog.Logger) (*approvals.Service, error) {
	svc, err := approvals.New(approvals.Config{Store: st, Recorder: lg, Timeout: timeout, Logger: logger})
	if err != nil {
		return nil, withHint(fmt.Errorf("config policy.approval_timeout: %w", err),
			fmt.Sprintf("give a duration such as 5m, at most %s: how long a call waits for an approver", approvals.MaxTimeout))
	}
	return svc, nil
}

const approvalsUsage = "infertrail approvals list [--status pending|approved|rejected|expired|cancelled|all] | approve ID --rationale TEXT | reject ID --rationale TEXT  (--data DIR | --server URL)"

func approvalsCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return withHint(errors.New("approvals: want a subcommand"), approvalsUsage)
	}
	sub, args := args[0], args[1:]
	fs := newFlagSet("approvals "+sub, stderr)
	t := addTarget(fs)
	switch sub {
	case "list":
		status := fs.String("status", "pending", "only approvals with this `status`: pending, approved, rejected, expired, cancelled, or all")
		tenant := fs.String("tenant", "", "only this tenant's approvals")
		limit := fs.Int("limit", 100, "at most this many, newest first")
		if err := parseFlags(fs, args); err != nil {
			return err
		}
		if err := t.check(); err != nil {
			return err
		}
		st := *status
		if st == "all" {
			st = ""
		}
		if st != "" && (!infertrail.ApprovalStatus(st).Valid()) {
			return withHint(fmt.Errorf("approvals list: status %q", *status), "give pending, approved, rejected, expired, cancelled or all")
		}
		if *limit < 1 || *limit > 1000 {
			return errors.New("approvals list: --limit must be from 1 to 1000")
		}
		var list []httpapi.ApprovalJSON
		if *t.server != "" {
			q := url.Values{"limit": {strconv.Itoa(*limit)}}
			if st != "" {
				q.Set("status", st)
			}
			if *tenant != "" {
				q.Set("tenant", *tenant)
			}
			var out struct {
				Approvals []httpapi.ApprovalJSON `json:"approvals"`
			}
			if err := t.call(ctx, "GET", "v1/approvals?"+q.Encode(), nil, &out); err != nil {
				return err
			}
			list = out.Approvals
		} else {
			svc, closeLog, err := t.approvals(ctx, stderr)
			if err != nil {
				return err
			}
			defer closeLog()
			var tenants []string
			if *tenant != "" {
				tenants = []string{*tenant}
			}
			as, err := svc.List(ctx, tenants, infertrail.ApprovalStatus(st), *limit)
			if err != nil {
				return err
			}
			for _, a := range as {
				list = append(list, httpapi.ToApprovalJSON(a))
			}
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tTENANT\tSTATUS\tWHAT WAITS\tREQUESTED\tDEADLINE\tDECIDED BY")
		for _, a := range list {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", a.ID, a.Tenant, a.Status, a.Summary, shortTime(a.Requested), shortTime(a.Deadline), a.Approver)
		}
		return tw.Flush()
	case "approve", "reject":
		if len(args) == 0 || strings.HasPrefix(args[0], "-") {
			return withHint(fmt.Errorf("approvals %s: want the approval's id", sub), "'infertrail approvals list' shows the calls waiting; then: infertrail approvals "+sub+" ID --rationale TEXT")
		}
		idText := args[0]
		rationale := fs.String("rationale", "", "why (required); the approval record keeps it")
		if err := parseFlags(fs, args[1:]); err != nil {
			return err
		}
		if strings.TrimSpace(*rationale) == "" {
			return withHint(fmt.Errorf("approvals %s: --rationale is required", sub), `infertrail approvals `+sub+` ID --rationale "invoice 7 matches PO-2291"`)
		}
		if err := t.check(); err != nil {
			return err
		}
		id, err := infertrail.ParseUUID(idText)
		if err != nil {
			return fmt.Errorf("approval id %q: %w", idText, err)
		}
		decision := infertrail.ApprovalApproved
		if sub == "reject" {
			decision = infertrail.ApprovalRejected
		}
		var seq int64
		if *t.server != "" {
			var out struct {
				Record int64 `json:"record"`
			}
			if err := t.call(ctx, "POST", "v1/approvals/"+id.String(), map[string]string{"decision": string(decision), "rationale": *rationale}, &out); err != nil {
				return err
			}
			seq = out.Record
		} else {
			svc, closeLog, err := t.approvals(ctx, stderr)
			if err != nil {
				return err
			}
			defer closeLog()
			d, err := svc.Decide(ctx, id, decision, *rationale, cliActor(), "operator")
			if err != nil {
				return err
			}
			seq = d.Seq
		}
		if decision == infertrail.ApprovalApproved {
			fmt.Fprintf(stdout, "Approved %s: the held call goes ahead.\n", id)
		} else {
			fmt.Fprintf(stdout, "Rejected %s: the held call is refused.\n", id)
		}
		fmt.Fprintf(stdout, "Approval record: %d.\n", seq)
		return nil
	}
	return withHint(fmt.Errorf("approvals: unknown subcommand %q", sub), approvalsUsage)
}

// approvals opens the data folder's log and an approvals service over it,
// whose decisions are recorded with approval.channel "cli". The server
// that holds a call sees a decision taken here when it next polls.
func (t target) approvals(ctx context.Context, stderr io.Writer) (*approvals.Service, func(), error) {
	lg, _, closeLog, err := t.openLog(ctx, stderr)
	if err != nil {
		return nil, nil, err
	}
	svc, err := approvals.New(approvals.Config{Store: lg.Store(), Recorder: lg, Channel: "cli",
		Logger: slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		closeLog()
		return nil, nil, err
	}
	return svc, closeLog, nil
}

// shortTime shows an RFC 3339 time to the second.
func shortTime(s string) string {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t.UTC().Format(time.RFC3339)
	}
	return s
}
