package postgres

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/infertrail/infertrail"
)

// AddApproval stores a new pending approval.
func (db *DB) AddApproval(ctx context.Context, a infertrail.Approval) error {
	if err := a.Validate(); err != nil {
		return err
	}
	_, err := db.pool.Exec(ctx, `INSERT INTO approvals (id, tenant, status, decision_id, governs, point, summary, trace_id, session_id, requested, deadline)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
		pgUUID(a.ID), a.Tenant, string(a.Status), pgUUID(a.DecisionID), pgUUID(a.Governs), string(a.Point), a.Summary, a.TraceID, a.SessionID,
		a.Requested.UnixNano(), a.Deadline.UnixNano())
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "23505" { // unique_violation
		return fmt.Errorf("add approval %v: the id is taken: %w", a.ID, infertrail.ErrConflict)
	}
	if err != nil {
		return fmt.Errorf("add approval %v: %w", a.ID, classify(err))
	}
	return nil
}

// Approval returns the approval with the id.
func (db *DB) Approval(ctx context.Context, id infertrail.UUID) (infertrail.Approval, error) {
	as, err := queryApprovals(ctx, db.pool, `SELECT `+approvalColumns+` FROM approvals WHERE id = $1`, pgUUID(id))
	if err != nil {
		return infertrail.Approval{}, fmt.Errorf("read approval %v: %w", id, classify(err))
	}
	if len(as) == 0 {
		return infertrail.Approval{}, fmt.Errorf("read approval %v: %w", id, infertrail.ErrNotFound)
	}
	return as[0], nil
}

// DecideApproval decides a pending approval. Of concurrent UPDATEs of one
// row, on any node, PostgreSQL lets one go first; the others wait for its
// row lock, then re-check status = 'pending' against the committed row
// (READ COMMITTED re-evaluates the WHERE clause), find it decided, and
// update nothing.
func (db *DB) DecideApproval(ctx context.Context, id infertrail.UUID, status infertrail.ApprovalStatus, approver string, at time.Time, record infertrail.UUID) error {
	if err := infertrail.CheckApprovalDecision(id, status, approver, at, record); err != nil {
		return err
	}
	tag, err := db.pool.Exec(ctx, `UPDATE approvals SET status = $2, approver = $3, decided = $4, record = $5
		WHERE id = $1 AND status = 'pending'`, pgUUID(id), string(status), approver, at.UnixNano(), pgUUID(record))
	if err != nil {
		return fmt.Errorf("decide approval %v: %w", id, classify(err))
	}
	if tag.RowsAffected() == 1 {
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
		args = append(args, tenants)
		where = append(where, `tenant = ANY($`+strconv.Itoa(len(args))+`)`)
	}
	if status != "" {
		args = append(args, string(status))
		where = append(where, `status = $`+strconv.Itoa(len(args)))
	}
	q := `SELECT ` + approvalColumns + ` FROM approvals`
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, ` AND `)
	}
	args = append(args, infertrail.ApprovalLimit(limit))
	return db.readApprovals(ctx, fn, q+` ORDER BY requested DESC, id DESC LIMIT $`+strconv.Itoa(len(args)), args...)
}

// ScanApprovals lists approvals in id order, after the id after.
func (db *DB) ScanApprovals(ctx context.Context, after infertrail.UUID, limit int, fn func(*infertrail.Approval) error) error {
	return db.readApprovals(ctx, fn, `SELECT `+approvalColumns+` FROM approvals WHERE id > $1 ORDER BY id LIMIT $2`, pgUUID(after), infertrail.ApprovalLimit(limit))
}

// readApprovals calls fn for each approval that q selects.
func (db *DB) readApprovals(ctx context.Context, fn func(*infertrail.Approval) error, q string, args ...any) error {
	as, err := queryApprovals(ctx, db.pool, q, args...)
	if err != nil {
		return fmt.Errorf("read approvals: %w", classify(err))
	}
	for i := range as {
		if err := fn(&as[i]); err != nil {
			return err
		}
	}
	return nil
}

func pgUUID(u infertrail.UUID) pgtype.UUID { return pgtype.UUID{Bytes: u, Valid: true} }

const approvalColumns = `id, tenant, status, decision_id, governs, point, summary, trace_id, session_id, requested, deadline,
	coalesce(approver, ''), coalesce(decided, 0), record`

func queryApprovals(ctx context.Context, q rowsQuerier, sql string, args ...any) ([]infertrail.Approval, error) {
	rows, err := q.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	var (
		a                            infertrail.Approval
		id, decision, governs, rec   pgtype.UUID
		status, point                string
		requested, deadline, decided int64
		out                          []infertrail.Approval
	)
	_, err = pgx.ForEachRow(rows, []any{&id, &a.Tenant, &status, &decision, &governs, &point, &a.Summary, &a.TraceID, &a.SessionID,
		&requested, &deadline, &a.Approver, &decided, &rec}, func() error {
		a.ID, a.DecisionID, a.Governs = id.Bytes, decision.Bytes, governs.Bytes
		a.ApprovalRecord = infertrail.UUID{}
		if rec.Valid {
			a.ApprovalRecord = rec.Bytes
		}
		a.Status, a.Point = infertrail.ApprovalStatus(status), infertrail.PolicyPoint(point)
		a.Requested, a.Deadline = time.Unix(0, requested).UTC(), time.Unix(0, deadline).UTC()
		a.Decided = time.Time{}
		if decided != 0 {
			a.Decided = time.Unix(0, decided).UTC()
		}
		out = append(out, a)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}
