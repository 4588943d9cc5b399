package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	sqlite "modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/infertrail/infertrail"
)

// AddToken stores a new token, its roles sorted and without repeats.
func (db *DB) AddToken(ctx context.Context, t infertrail.Token) error {
	if err := t.Validate(); err != nil {
		return err
	}
	roles := infertrail.JoinRoles(t.Roles)
	var revokedBy, revoked any
	if t.Revoked != 0 {
		revokedBy, revoked = t.RevokedBy, t.Revoked
	}
	_, err := db.exec(ctx, `INSERT INTO tokens (id, name, tenant, roles, hash, rate_limit, created_by, created, expires, revoked_by, revoked)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		t.ID[:], t.Name, t.Tenant, roles, t.Hash[:], t.RateLimit, t.CreatedBy, t.Created, t.Expires, revokedBy, revoked)
	var se *sqlite.Error
	if errors.As(err, &se) && (se.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY || se.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE) {
		return fmt.Errorf("add token %v: the id or hash is taken: %w", t.ID, infertrail.ErrConflict)
	}
	if err != nil {
		return fmt.Errorf("add token %v: %w", t.ID, err)
	}
	return nil
}

// TokenByHash returns the token with the hash, read from the database.
func (db *DB) TokenByHash(ctx context.Context, hash [32]byte) (infertrail.Token, error) {
	t, err := scanToken(db.pointRow(ctx, db.tokenByHash, hash[:]))
	if errors.Is(err, sql.ErrNoRows) {
		return infertrail.Token{}, fmt.Errorf("read token: no token with this hash: %w", infertrail.ErrNotFound)
	}
	if err != nil {
		return infertrail.Token{}, fmt.Errorf("read token: %w", err)
	}
	return t, nil
}

// RevokeToken marks a token revoked by by at time at (Unix nanoseconds,
// which must be positive: a Revoked of 0 means not revoked).
func (db *DB) RevokeToken(ctx context.Context, id infertrail.UUID, by string, at int64) error {
	if at <= 0 {
		return fmt.Errorf("revoke token %v: time %d is not positive: %w", id, at, infertrail.ErrInvalid)
	}
	res, err := db.exec(ctx, `UPDATE tokens SET revoked_by = ?, revoked = ? WHERE id = ? AND revoked IS NULL`, by, at, id[:])
	if err != nil {
		return fmt.Errorf("revoke token %v: %w", id, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("revoke token %v: no unrevoked token with this id: %w", id, infertrail.ErrNotFound)
	}
	return nil
}

// Tokens returns every token, oldest first.
func (db *DB) Tokens(ctx context.Context) ([]infertrail.Token, error) {
	return queryAll(ctx, db.readers, "read tokens", scanToken, `SELECT `+tokenColumns+` FROM tokens ORDER BY created, id`)
}

const tokenColumns = `id, name, tenant, roles, hash, rate_limit, created_by, created, expires, coalesce(revoked_by, ''), coalesce(revoked, 0)`

func scanToken(row interface{ Scan(...any) error }) (infertrail.Token, error) {
	var (
		t        infertrail.Token
		id, hash []byte
		roles    string
	)
	if err := row.Scan(&id, &t.Name, &t.Tenant, &roles, &hash, &t.RateLimit, &t.CreatedBy, &t.Created, &t.Expires, &t.RevokedBy, &t.Revoked); err != nil {
		return t, err
	}
	if len(id) != len(t.ID) || len(hash) != len(t.Hash) {
		return t, errors.New("token id or hash of the wrong length")
	}
	copy(t.ID[:], id)
	copy(t.Hash[:], hash)
	for r := range strings.SplitSeq(roles, ",") {
		t.Roles = append(t.Roles, infertrail.Role(r))
	}
	return t, nil
}
