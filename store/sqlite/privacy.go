package sqlite

import (
	"bytes"
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

// keyArg is the key_id column value of a blob: NULL when not encrypted.
func keyArg(k infertrail.KeyID) any {
	if k.IsZero() {
		return nil
	}
	return k[:]
}

// blobKeyArg is the key_id column value of blob b: NULL when not
// encrypted, and empty when b's id starts with the key's id, as every
// encrypted blob's does, so that the id is not stored twice (blobKeyColumn
// reads it back).
func blobKeyArg(b *infertrail.Blob) any {
	if !b.Key.IsZero() && infertrail.KeyID(b.ID[:len(b.Key)]) == b.Key {
		return []byte{}
	}
	return keyArg(b.Key)
}

// blobKeyColumn reads what blobKeyArg wrote: the key id, or NULL.
const blobKeyColumn = `CASE WHEN length(key_id) = 0 THEN substr(id, 1, 16) ELSE key_id END`

const keyColumns = `id, tenant, scope, kind, period, created, kek, wrapped, erased_by`

func scanKey(row interface{ Scan(...any) error }) (infertrail.DataKey, error) {
	var (
		k       infertrail.DataKey
		id      []byte
		scope   string
		kind    string
		kek     sql.NullString
		erased  sql.NullInt64
		wrapped []byte
	)
	if err := row.Scan(&id, &k.Tenant, &scope, &kind, &k.Period, &k.Created, &kek, &wrapped, &erased); err != nil {
		return k, err
	}
	copy(k.ID[:], id)
	k.Scope, k.Kind, k.KEK, k.Wrapped = infertrail.Scope(scope), infertrail.Kind(kind), kek.String, wrapped
	k.ErasedBy = -1
	if erased.Valid {
		k.ErasedBy = erased.Int64
	}
	return k, nil
}

// keyWhere returns the WHERE clause and arguments that select f.
func keyWhere(f infertrail.KeyFilter) (string, []any) {
	var (
		conds []string
		args  []any
	)
	if f.Tenant != "" {
		conds, args = append(conds, "tenant = ?"), append(args, f.Tenant)
	}
	if f.ScopePrefix != "" {
		// SQLite compares text bytewise.
		conds, args = append(conds, "scope >= ? AND scope < ?"), append(args, f.ScopePrefix, prefixEnd(f.ScopePrefix))
	}
	if !f.IDFrom.IsZero() {
		conds, args = append(conds, "id >= ?"), append(args, f.IDFrom[:])
	}
	if f.Kind != "" {
		conds, args = append(conds, "kind = ?"), append(args, string(f.Kind))
	}
	if f.PeriodBefore != 0 {
		conds, args = append(conds, "period < ?"), append(args, f.PeriodBefore)
	}
	if f.Live || f.NotKEK != "" {
		conds = append(conds, "erased_by IS NULL")
	}
	if f.NotKEK != "" {
		conds, args = append(conds, "kek <> ?"), append(args, f.NotKEK)
	}
	if len(conds) == 0 {
		return "", nil
	}
	return " WHERE " + strings.Join(conds, " AND "), args
}

// prefixEnd returns the least string greater than every string that starts
// with p (p is not empty and does not end in 0xff: scopes are UTF-8).
func prefixEnd(p string) string {
	b := []byte(p)
	b[len(b)-1]++
	return string(b)
}

func (t *appendTx) AddKeys(ctx context.Context, keys []infertrail.DataKey) error {
	if t.done.Load() {
		return fmt.Errorf("add keys: %w", sql.ErrTxDone)
	}
	for _, k := range keys {
		if k.ID.IsZero() || len(k.Wrapped) == 0 || k.Scope == "" {
			return fmt.Errorf("add key %x: no id, scope or wrapped key: %w", k.ID[:4], infertrail.ErrInvalid)
		}
	}
	one := t.stmt(ctx, &t.insKey, t.db.insKey)
	many := t.stmt(ctx, &t.insKeys, t.db.insKeys)
	args := make([]any, 0, multiRows*8)
	for i := 0; i < len(keys); {
		n := min(len(keys)-i, multiRows)
		st := many
		if n < multiRows {
			n, st = 1, one
		}
		args = args[:0]
		for _, k := range keys[i : i+n] {
			args = append(args, k.ID[:], k.Tenant, string(k.Scope), string(k.Kind), k.Period, k.Created, k.KEK, k.Wrapped)
		}
		if _, err := st.ExecContext(context.WithoutCancel(ctx), args...); err != nil {
			t.failed = classify(err)
			return fmt.Errorf("add %d keys: %w", n, t.failed)
		}
		i += n
	}
	return nil
}

func (t *appendTx) Keys(ctx context.Context, f infertrail.KeyFilter) ([]infertrail.DataKey, error) {
	where, args := keyWhere(f)
	return queryAll(ctx, t.tx, "read keys", scanKey, `SELECT `+keyColumns+` FROM data_keys`+where+` ORDER BY id`, args...)
}

func (t *appendTx) Holds(ctx context.Context, tenant string) ([]infertrail.Hold, error) {
	return queryHolds(ctx, t.tx, tenant, true)
}

func (t *appendTx) Erase(ctx context.Context, ids []infertrail.KeyID, by int64) (int64, error) {
	if t.done.Load() {
		return 0, fmt.Errorf("erase: %w", sql.ErrTxDone)
	}
	if by < 0 || by >= t.next {
		return 0, fmt.Errorf("erase: erasure record %d is not in the log (size %d): %w", by, t.next, infertrail.ErrInvalid)
	}
	var blobs int64
	for _, id := range ids {
		// erasure numbers the erasure, for the purge of the key's
		// postings from the index file (DB.purge); Commit purges them.
		res, err := t.tx.ExecContext(ctx, `UPDATE data_keys SET wrapped = NULL, kek = NULL, erased_by = ?,
			erasure = (SELECT erasures + 1 FROM log_head WHERE one = 1) WHERE id = ? AND erased_by IS NULL`, by, id[:])
		if err != nil {
			t.failed = classify(err)
			return 0, fmt.Errorf("erase key %x: %w", id[:4], t.failed)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			continue
		}
		lo, hi := keyBlobRange(id)
		res, err = t.tx.ExecContext(ctx, `DELETE FROM blobs WHERE id BETWEEN ? AND ?`, lo, hi)
		if err != nil {
			t.failed = classify(err)
			return 0, fmt.Errorf("erase content of key %x: %w", id[:4], t.failed)
		}
		n, _ := res.RowsAffected()
		blobs += n
		t.erased = true
	}
	if t.erased {
		if _, err := t.tx.ExecContext(ctx, `UPDATE log_head SET erasures = erasures + 1 WHERE one = 1`); err != nil {
			t.failed = classify(err)
			return 0, fmt.Errorf("erase: %w", t.failed)
		}
	}
	return blobs, nil
}

// truncateWAL copies every committed page into the file that w writes and
// empties its write-ahead log, so that no frame still holds a page as it was
// before an erasure (secure_delete has zeroed the erased rows in the new
// pages). It is best effort: a reader holding an old snapshot makes SQLite
// skip the truncation, and the old frames are overwritten as the log is
// reused.
func truncateWAL(w *sql.DB, timeout time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	w.ExecContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`)
}

// ScanKeys calls fn for each key f selects, in id order, after the id after.
func (db *DB) ScanKeys(ctx context.Context, f infertrail.KeyFilter, after infertrail.KeyID, fn func(*infertrail.DataKey) error) error {
	where, args := keyWhere(f)
	if where == "" {
		where = " WHERE id > ?"
	} else {
		where += " AND id > ?"
	}
	args = append(args, after[:])
	rows, err := db.readers.QueryContext(ctx, `SELECT `+keyColumns+` FROM data_keys`+where+` ORDER BY id`, args...)
	if err != nil {
		return fmt.Errorf("scan keys: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		k, err := scanKey(rows)
		if err != nil {
			return fmt.Errorf("scan keys: %w", err)
		}
		if err := fn(&k); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("scan keys: %w", err)
	}
	return nil
}

// RewrapKey replaces a live key's wrapped form if it is still old.
func (db *DB) RewrapKey(ctx context.Context, id infertrail.KeyID, old, new []byte, kek string) (bool, error) {
	if len(new) == 0 || kek == "" {
		return false, fmt.Errorf("rewrap key %x: no wrapped key or KEK: %w", id[:4], infertrail.ErrInvalid)
	}
	res, err := db.exec(ctx, `UPDATE data_keys SET wrapped = ?, kek = ? WHERE id = ? AND wrapped = ? AND erased_by IS NULL`, new, kek, id[:], old)
	if err != nil {
		return false, fmt.Errorf("rewrap key %x: %w", id[:4], err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("rewrap key %x: %w", id[:4], err)
	}
	return n == 1, nil
}

// AddHold stores a new hold. The writer connection is the one append
// transactions use, so it waits for an erasure that is committing.
func (db *DB) AddHold(ctx context.Context, h infertrail.Hold) error {
	if err := checkHold(h); err != nil {
		return err
	}
	_, err := db.exec(ctx, `INSERT INTO holds (id, tenant, scope, reason, created_by, created) VALUES (?, ?, ?, ?, ?, ?)`,
		h.ID[:], h.Tenant, string(h.Scope), h.Reason, h.CreatedBy, h.Created)
	var se *sqlite.Error
	if errors.As(err, &se) && se.Code()&0xff == sqlite3.SQLITE_CONSTRAINT {
		return fmt.Errorf("add hold %v: the id is taken: %w", h.ID, infertrail.ErrConflict)
	}
	if err != nil {
		return fmt.Errorf("add hold %v: %w", h.ID, err)
	}
	return nil
}

func checkHold(h infertrail.Hold) error {
	switch {
	case h.ID.IsZero():
		return fmt.Errorf("add hold: no id: %w", infertrail.ErrInvalid)
	case h.Tenant == "" || h.Scope.Tenant() != h.Tenant:
		return fmt.Errorf("add hold %v: scope %q is not in tenant %q: %w", h.ID, h.Scope, h.Tenant, infertrail.ErrInvalid)
	case h.Reason == "":
		return fmt.Errorf("add hold %v: no reason: %w", h.ID, infertrail.ErrInvalid)
	}
	return nil
}

// ReleaseHold marks an active hold released.
func (db *DB) ReleaseHold(ctx context.Context, tenant string, id infertrail.UUID, by string, at int64) error {
	res, err := db.exec(ctx, `UPDATE holds SET released_by = ?, released = ? WHERE id = ? AND tenant = ? AND released IS NULL`, by, at, id[:], tenant)
	if err != nil {
		return fmt.Errorf("release hold %v: %w", id, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("release hold %v: no active hold with this id in tenant %q: %w", id, tenant, infertrail.ErrNotFound)
	}
	return nil
}

// Holds returns the tenant's holds, oldest first.
func (db *DB) Holds(ctx context.Context, tenant string, active bool) ([]infertrail.Hold, error) {
	return queryHolds(ctx, db.readers, tenant, active)
}

type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// queryAll runs a query and scans every row with scan; what names the
// read in errors ("read keys").
func queryAll[T any](ctx context.Context, q querier, what string, scan func(interface{ Scan(...any) error }) (T, error), query string, args ...any) ([]T, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return out, nil
}

func queryHolds(ctx context.Context, q querier, tenant string, active bool) ([]infertrail.Hold, error) {
	query := `SELECT id, tenant, scope, reason, created_by, created, coalesce(released_by, ''), coalesce(released, 0) FROM holds WHERE (? = '' OR tenant = ?)`
	if active {
		query += ` AND released IS NULL`
	}
	rows, err := q.QueryContext(ctx, query+` ORDER BY created, id`, tenant, tenant)
	if err != nil {
		return nil, fmt.Errorf("read holds: %w", err)
	}
	defer rows.Close()
	var out []infertrail.Hold
	for rows.Next() {
		var (
			h     infertrail.Hold
			id    []byte
			scope string
		)
		if err := rows.Scan(&id, &h.Tenant, &scope, &h.Reason, &h.CreatedBy, &h.Created, &h.ReleasedBy, &h.Released); err != nil {
			return nil, fmt.Errorf("read holds: %w", err)
		}
		copy(h.ID[:], id)
		h.Scope = infertrail.Scope(scope)
		out = append(out, h)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read holds: %w", err)
	}
	return out, nil
}

// keyBlobRange returns bounds of the stored ids of a key's blobs: the key
// id itself, which they all begin with, and the greatest whole id.
func keyBlobRange(k infertrail.KeyID) ([]byte, []byte) {
	lo := k[:len(k):len(k)]
	hi := append(k[:len(k):len(k)], bytes.Repeat([]byte{0xff}, 16)...)
	return lo, hi
}

// A blob id whose last infertrail.ShortBlobZeros bytes are zero, as the
// ids the ledger makes since 2026-11-29 are, is stored without them in
// blobs.id (and its index): 28 bytes instead of 32. Cutting them keeps the
// ids in order. A blob stored before whose id happened to end in zeros
// kept all 32 bytes: Blobs looks an id that is not found again whole.

// StoredBlobID returns id as a new row of blobs.id holds it.
func StoredBlobID(id *infertrail.BlobID) []byte { return storedBlobID(id) }

// storedBlobID returns id as blobs.id holds it.
func storedBlobID(id *infertrail.BlobID) []byte {
	if n := len(id) - infertrail.ShortBlobZeros; [infertrail.ShortBlobZeros]byte(id[n:]) == [infertrail.ShortBlobZeros]byte{} {
		return id[:n]
	}
	return id[:]
}
