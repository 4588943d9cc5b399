package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	sqlite "modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/infertrail/infertrail"
)

// AddApproval stores a new pending approval.
func (db *DB) AddApproval(ctx context.Context, a infertrail.Approval) error {
	if err := a.Validate(); err != nil {
		return err
	}
	_, err := db.exec(ctx, `INSERT INTO approvals (id, tenant, status, decision_id, governs, point, summary, trace_id, session_id, requested, deadline)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		a.ID[:], a.Tenant, string(a.Status), a.DecisionID[:], a.Governs[:], string(a.Point), a.Summary, a.TraceID, a.SessionID,
		a.Requested.UnixNano(), a.Deadline.UnixNano())
	var se *sqlite.Error
	if errors.As(err, &se) && se.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY {
		return fmt.Errorf("add approval %v: the id is taken: %w", a.ID, infertrail.ErrConflict)
	}
	if err != nil {
		return fmt.Errorf("add approval %v: %w", a.ID, err)
	}
	return nil
}

// Approval returns the approval with the id.
func (db *DB) Approval(ctx context.Context, id infertrail.UUID) (infertrail.Approval, error) {
	a, err := scanApproval(db.readers.QueryRowContext(ctx, `SELECT `+approvalColumns+` FROM approvals WHERE id = ?`, id[:]))
	if errors.Is(err, sql.ErrNoRows) {
		return infertrail.Approval{}, fmt.Errorf("read approval %v: %w", id, infertrail.ErrNotFound)
	}
	if err != nil {
		return infertrail.Approval{}, fmt.Errorf("read approval %v: %w", id, err)
	}
	return a, nil
}

// DecideApproval decides a pending approval. The UPDATE runs on the one
// writer connection, and SQLite's write lock serialises it with every
// other process's: of concurrent calls, the first to commit finds the row
// pending, the others do not.
func (db *DB) DecideApproval(ctx context.Context, id infertrail.UUID, status infertrail.ApprovalStatus, approver string, at time.Time, record infertrail.UUID) error {
	if err := infertrail.CheckApprovalDecision(id, status, approver, at, record); err != nil {
		return err
	}
	res, err := db.exec(ctx, `UPDATE approvals SET status = ?, approver = ?, decided = ?, record = ?
		WHERE id = ? AND status = 'pending'`, string(status), approver, at.UnixNano(), record[:], id[:])
	if err != nil {
		return fmt.Errorf("decide approval %v: %w", id, err)
	}
	if n, _ := res.RowsAffected(); n == 1 {
		return nil
	}
	a, err := db.Approval(ctx, id)
	if err != nil {
		return fmt.Errorf("decide approval: %w", err)
	}
	return fmt.Errorf("decide approval %v: it is %s already: %w", id, a.Status, infertrail.ErrConflict)
}

// Approvals lists approvals, newest request first.
func (db *DB) Approvals(ctx context.Context, tenants []string, status infertrail.ApprovalStatus, limit int, fn func(*infertrail.Approval) error) error {
	if tenants != nil && len(tenants) == 0 {
		return nil
	}
	var where []string
	var args []any
	if tenants != nil {
		where = append(where, `tenant IN (?`+strings.Repeat(", ?", len(tenants)-1)+`)`)
		for _, t := range tenants {
			args = append(args, t)
		}
	}
	if status != "" {
		where = append(where, `status = ?`)
		args = append(args, string(status))
	}
	q := `SELECT ` + approvalColumns + ` FROM approvals`
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, ` AND `)
	}
	return db.readApprovals(ctx, fn, q+` ORDER BY requested DESC, id DESC LIMIT ?`, append(args, infertrail.ApprovalLimit(limit))...)
}

// ScanApprovals lists approvals in id order, after the id after.
func (db *DB) ScanApprovals(ctx context.Context, after infertrail.UUID, limit int, fn func(*infertrail.Approval) error) error {
	return db.readApprovals(ctx, fn, `SELECT `+approvalColumns+` FROM approvals WHERE id > ? ORDER BY id LIMIT ?`, after[:], infertrail.ApprovalLimit(limit))
}

// readApprovals calls fn for each approval that q selects.
func (db *DB) readApprovals(ctx context.Context, fn func(*infertrail.Approval) error, q string, args ...any) error {
	as, err := queryAll(ctx, db.readers, "read approvals", scanApproval, q, args...)
	if err != nil {
		return err
	}
	for i := range as {
		if err := fn(&as[i]); err != nil {
			return err
		}
	}
	return nil
}

const approvalColumns = `id, tenant, status, decision_id, governs, point, summary, trace_id, session_id, requested, deadline,
	coalesce(approver, ''), coalesce(decided, 0), record`

func scanApproval(row interface{ Scan(...any) error }) (infertrail.Approval, error) {
	var (
		a                            infertrail.Approval
		id, decision, governs, rec   []byte
		status, point                string
		requested, deadline, decided int64
	)
	if err := row.Scan(&id, &a.Tenant, &status, &decision, &governs, &point, &a.Summary, &a.TraceID, &a.SessionID,
		&requested, &deadline, &a.Approver, &decided, &rec); err != nil {
		return a, err
	}
	for _, c := range []struct {
		dst *infertrail.UUID
		b   []byte
	}{{&a.ID, id}, {&a.DecisionID, decision}, {&a.Governs, governs}, {&a.ApprovalRecord, rec}} {
		if len(c.b) != len(c.dst) && !(c.b == nil && c.dst == &a.ApprovalRecord) { // record is NULL while pending
			return a, errors.New("approval id of the wrong length")
		}
		copy(c.dst[:], c.b)
	}
	a.Status, a.Point = infertrail.ApprovalStatus(status), infertrail.PolicyPoint(point)
	a.Requested, a.Deadline = time.Unix(0, requested).UTC(), time.Unix(0, deadline).UTC()
	if decided != 0 {
		a.Decided = time.Unix(0, decided).UTC()
	}
	return a, nil
}
