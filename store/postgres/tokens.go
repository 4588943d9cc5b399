package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/infertrail/infertrail"
)

// AddToken stores a new token, its roles sorted and without repeats.
func (db *DB) AddToken(ctx context.Context, t infertrail.Token) error {
	if err := t.Validate(); err != nil {
		return err
	}
	roles := infertrail.JoinRoles(t.Roles)
	var revokedBy pgtype.Text
	var revoked pgtype.Int8
	if t.Revoked != 0 {
		revokedBy, revoked = pgtype.Text{String: t.RevokedBy, Valid: true}, pgtype.Int8{Int64: t.Revoked, Valid: true}
	}
	_, err := db.pool.Exec(ctx, `INSERT INTO tokens (id, name, tenant, roles, hash, rate_limit, created_by, created, expires, revoked_by, revoked)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
		pgtype.UUID{Bytes: t.ID, Valid: true}, t.Name, t.Tenant, roles, t.Hash[:], t.RateLimit, t.CreatedBy, t.Created, t.Expires, revokedBy, revoked)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "23505" { // unique_violation
		taken := "id"
		if pgErr.ConstraintName == "tokens_hash_key" {
			taken = "hash"
		}
		return fmt.Errorf("add token %v: the %s is taken: %w", t.ID, taken, infertrail.ErrConflict)
	}
	if err != nil {
		return fmt.Errorf("add token %v: %w", t.ID, classify(err))
	}
	return nil
}

// TokenByHash returns the token with the hash, read from the database.
func (db *DB) TokenByHash(ctx context.Context, hash [32]byte) (infertrail.Token, error) {
	ts, err := queryTokens(ctx, db.pool, `SELECT `+tokenColumns+` FROM tokens WHERE hash = $1`, hash[:])
	if err != nil {
		return infertrail.Token{}, fmt.Errorf("read token: %w", classify(err))
	}
	if len(ts) == 0 {
		return infertrail.Token{}, fmt.Errorf("read token: no token with this hash: %w", infertrail.ErrNotFound)
	}
	return ts[0], nil
}

// RevokeToken marks a token revoked by by at time at (Unix nanoseconds,
// which must be positive: a Revoked of 0 means not revoked).
func (db *DB) RevokeToken(ctx context.Context, id infertrail.UUID, by string, at int64) error {
	if at <= 0 {
		return fmt.Errorf("revoke token %v: time %d is not positive: %w", id, at, infertrail.ErrInvalid)
	}
	tag, err := db.pool.Exec(ctx, `UPDATE tokens SET revoked_by = $2, revoked = $3 WHERE id = $1 AND revoked IS NULL`,
		pgtype.UUID{Bytes: id, Valid: true}, by, at)
	if err != nil {
		return fmt.Errorf("revoke token %v: %w", id, classify(err))
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("revoke token %v: no unrevoked token with this id: %w", id, infertrail.ErrNotFound)
	}
	return nil
}

// Tokens returns every token, oldest first (uuid compares bytewise).
func (db *DB) Tokens(ctx context.Context) ([]infertrail.Token, error) {
	ts, err := queryTokens(ctx, db.pool, `SELECT `+tokenColumns+` FROM tokens ORDER BY created, id`)
	if err != nil {
		return nil, fmt.Errorf("read tokens: %w", classify(err))
	}
	return ts, nil
}

const tokenColumns = `id, name, tenant, roles, hash, rate_limit, created_by, created, expires, coalesce(revoked_by, ''), coalesce(revoked, 0)`

func queryTokens(ctx context.Context, q rowsQuerier, sql string, args ...any) ([]infertrail.Token, error) {
	rows, err := q.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	var (
		t     infertrail.Token
		id    pgtype.UUID
		hash  []byte
		roles string
		out   []infertrail.Token
	)
	_, err = pgx.ForEachRow(rows, []any{&id, &t.Name, &t.Tenant, &roles, &hash, &t.RateLimit, &t.CreatedBy, &t.Created, &t.Expires, &t.RevokedBy, &t.Revoked}, func() error {
		if len(hash) != len(t.Hash) {
			return fmt.Errorf("token %v: hash of %d bytes", infertrail.UUID(id.Bytes), len(hash))
		}
		t.ID, t.Hash = id.Bytes, [32]byte(hash)
		t.Roles = nil
		for r := range strings.SplitSeq(roles, ",") {
			t.Roles = append(t.Roles, infertrail.Role(r))
		}
		out = append(out, t)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}
