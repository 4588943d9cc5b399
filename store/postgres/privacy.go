package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/infertrail/infertrail"
)

// keyArg is the key_id column value of a blob: nil, which pgx sends as
// NULL, when it is not encrypted.
func keyArg(k *infertrail.KeyID) []byte {
	if k.IsZero() {
		return nil
	}
	return k[:]
}

func keyIDs(ids []infertrail.KeyID) [][]byte {
	out := make([][]byte, len(ids))
	for i := range ids {
		out[i] = ids[i][:]
	}
	return out
}

const keyColumns = `id, tenant, scope, kind, period, created, kek, wrapped, erased_by`

// scanKey scans a row of keyColumns into k. k.Wrapped is the row's own
// copy.
func scanKey(row pgx.Row, k *infertrail.DataKey) error {
	var (
		id     []byte
		scope  string
		kind   string
		kek    pgtype.Text
		erased pgtype.Int8
	)
	*k = infertrail.DataKey{}
	if err := row.Scan(&id, &k.Tenant, &scope, &kind, &k.Period, &k.Created, &kek, &k.Wrapped, &erased); err != nil {
		return err
	}
	if len(id) != len(k.ID) {
		return fmt.Errorf("data key id of %d bytes", len(id))
	}
	copy(k.ID[:], id)
	k.Scope, k.Kind, k.KEK = infertrail.Scope(scope), infertrail.Kind(kind), kek.String
	k.ErasedBy = -1
	if erased.Valid {
		k.ErasedBy = erased.Int64
	}
	return nil
}

// keyWhere returns the conditions that select f, joined by AND (or "true"),
// and their arguments, numbered from $1.
func keyWhere(f infertrail.KeyFilter) (string, []any) {
	var (
		conds []string
		args  []any
	)
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	if f.Tenant != "" {
		conds = append(conds, "tenant = "+arg(f.Tenant))
	}
	if f.ScopePrefix != "" {
		// scope's "C" collation compares bytes.
		conds = append(conds, "scope >= "+arg(f.ScopePrefix)+" AND scope < "+arg(prefixEnd(f.ScopePrefix)))
	}
	if !f.IDFrom.IsZero() {
		conds = append(conds, "id >= "+arg(f.IDFrom[:]))
	}
	if f.Kind != "" {
		conds = append(conds, "kind = "+arg(string(f.Kind)))
	}
	if f.PeriodBefore != 0 {
		conds = append(conds, "period < "+arg(f.PeriodBefore))
	}
	if f.Live || f.NotKEK != "" {
		conds = append(conds, "erased_by IS NULL")
	}
	if f.NotKEK != "" {
		conds = append(conds, "kek <> "+arg(f.NotKEK))
	}
	if len(conds) == 0 {
		return "true", nil
	}
	return strings.Join(conds, " AND "), args
}

// prefixEnd returns the least string greater than every string that starts
// with p (p is not empty and does not end in 0xff: scopes are UTF-8).
func prefixEnd(p string) string {
	b := []byte(p)
	b[len(b)-1]++
	return string(b)
}

// AddKeys stores new data keys in one statement; ids already stored are
// skipped, the first copy stored wins.
func (t *appendTx) AddKeys(ctx context.Context, keys []infertrail.DataKey) error {
	if err := t.usable(); err != nil {
		return fmt.Errorf("add keys: %w", err)
	}
	for i := range keys {
		if k := &keys[i]; k.ID.IsZero() || len(k.Wrapped) == 0 || k.Scope == "" {
			return fmt.Errorf("add key %x: no id, scope or wrapped key: %w", k.ID[:4], infertrail.ErrInvalid)
		}
	}
	if len(keys) == 0 {
		return nil
	}
	if err := writeKeys(ctx, t.tx, keys); err != nil {
		return fmt.Errorf("add %d keys: %w", len(keys), classify(t.fail(err)))
	}
	return nil
}

// writeKeys inserts keys, skipping ids already stored. Keys are new but
// for one whose commit was reported failed and went through: many are
// copied (copyNew).
func writeKeys(ctx context.Context, tx pgx.Tx, keys []infertrail.DataKey) error {
	if len(keys) < copyMin {
		return insertKeys(ctx, tx, keys)
	}
	return copyNew(ctx, tx, "data_keys", []string{"id", "tenant", "scope", "kind", "period", "created", "kek", "wrapped"}, len(keys), func(i int) []any {
		k := &keys[i]
		return []any{k.ID[:], k.Tenant, string(k.Scope), string(k.Kind), k.Period, k.Created, k.KEK, k.Wrapped}
	}, func() error { return insertKeys(ctx, tx, keys) })
}

// insertKeys inserts keys in one statement, skipping ids already stored;
// of an id repeated in keys, the first copy is stored.
func insertKeys(ctx context.Context, tx pgx.Tx, keys []infertrail.DataKey) error {
	var (
		ids, wrapped                [][]byte
		tenants, scopes, kinds, kek []string
		periods, created            []int64
	)
	for i := range keys {
		k := &keys[i]
		ids, wrapped = append(ids, k.ID[:]), append(wrapped, k.Wrapped)
		tenants, scopes, kinds, kek = append(tenants, k.Tenant), append(scopes, string(k.Scope)), append(kinds, string(k.Kind)), append(kek, k.KEK)
		periods, created = append(periods, k.Period), append(created, k.Created)
	}
	_, err := tx.Exec(ctx, `INSERT INTO data_keys (id, tenant, scope, kind, period, created, kek, wrapped)
		SELECT u.id, u.tenant, u.scope, u.kind, u.period, u.created, u.kek, u.wrapped
		FROM unnest($1::bytea[], $2::text[], $3::text[], $4::text[], $5::int8[], $6::int8[], $7::text[], $8::bytea[])
			WITH ORDINALITY AS u (id, tenant, scope, kind, period, created, kek, wrapped, n)
		ORDER BY u.n
		ON CONFLICT (id) DO NOTHING`, ids, tenants, scopes, kinds, periods, created, kek, wrapped)
	return err
}

// Keys returns the keys f selects, in id order, as the transaction sees
// them.
func (t *appendTx) Keys(ctx context.Context, f infertrail.KeyFilter) ([]infertrail.DataKey, error) {
	if err := t.usable(); err != nil {
		return nil, fmt.Errorf("read keys: %w", err)
	}
	where, args := keyWhere(f)
	keys, err := queryKeys(ctx, t.tx, `SELECT `+keyColumns+` FROM data_keys WHERE `+where+` ORDER BY id`, args...)
	if err != nil {
		return nil, fmt.Errorf("read keys: %w", classify(t.fail(err)))
	}
	return keys, nil
}

func queryKeys(ctx context.Context, q rowsQuerier, sql string, args ...any) ([]infertrail.DataKey, error) {
	rows, err := q.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []infertrail.DataKey
	for rows.Next() {
		var k infertrail.DataKey
		if err := scanKey(rows, &k); err != nil {
			return nil, err
		}
		out = append(out, k)
	}
	return out, rows.Err()
}

// Holds returns the tenant's active holds, as the transaction sees them:
// those committed before the statement runs. A hold being added waits for
// the transaction (see DB.AddHold), so none can commit between this read
// and the transaction's commit.
func (t *appendTx) Holds(ctx context.Context, tenant string) ([]infertrail.Hold, error) {
	if err := t.usable(); err != nil {
		return nil, fmt.Errorf("read holds: %w", err)
	}
	hs, err := queryHolds(ctx, t.tx, tenant, true)
	if err != nil {
		return nil, fmt.Errorf("read holds: %w", classify(t.fail(err)))
	}
	return hs, nil
}

// Erase crypto-shreds the live keys among ids: it locks their rows, then in
// one statement clears their wrapped forms, marks them erased by the record
// by, deletes their blobs from every period's partition (through each
// partition's key_id index), and counts the erasure in the log head; then
// it deletes the postings derived from their content. It returns the
// number of distinct blobs deleted: a blob stored in several periods
// counts once.
//
// It does not run VACUUM. The deleted rows are invisible at commit and
// autovacuum reclaims their space; a VACUUM here would run outside the
// transaction, after the append path has released the log head, for minutes
// on a large table, and still not reach the copies that matter (WAL,
// archives, backups: see the package documentation).
func (t *appendTx) Erase(ctx context.Context, ids []infertrail.KeyID, by int64) (int64, error) {
	if err := t.usable(); err != nil {
		return 0, fmt.Errorf("erase: %w", err)
	}
	if next := t.size + t.n; by < 0 || by >= next {
		return 0, fmt.Errorf("erase: erasure record %d is not in the log (size %d): %w", by, next, infertrail.ErrInvalid)
	}
	if len(ids) == 0 {
		return 0, nil
	}
	// Lock the keys' rows in id order, as AddPostings does (FOR SHARE), so
	// that the two cannot deadlock on keys they lock in opposite orders.
	if _, err := t.tx.Exec(ctx, `SELECT FROM data_keys WHERE id = ANY($1) ORDER BY id FOR NO KEY UPDATE`, keyIDs(ids)); err != nil {
		return 0, fmt.Errorf("erase %d keys: lock them: %w", len(ids), classify(t.fail(err)))
	}
	// An encrypted blob's id starts with its key's id: each erased key's
	// blobs are one range of every partition's primary key.
	var blobs int64
	err := t.tx.QueryRow(ctx, `WITH erased AS (
			UPDATE data_keys SET wrapped = NULL, kek = NULL, erased_by = $2
			WHERE id = ANY($1) AND erased_by IS NULL
			RETURNING id),
		deleted AS (
			DELETE FROM blobs b USING erased e
			WHERE b.id > e.id AND b.id <= e.id || '\xffffffffffffffffffffffffffffffff'::bytea
			RETURNING b.id),
		counted AS (
			UPDATE log_head SET erasures = erasures + 1
			WHERE id AND EXISTS (SELECT FROM erased))
		SELECT count(DISTINCT id) FROM deleted`, keyIDs(ids), by).Scan(&blobs)
	if err != nil {
		return 0, fmt.Errorf("erase %d keys: %w", len(ids), classify(t.fail(err)))
	}
	// The postings derived from the keys' content (search terms) go too, in
	// a statement that starts once the keys' rows are locked: its snapshot
	// sees every posting of an AddPostings that locked them first (and had
	// the lock above wait for it), and an AddPostings that locks them later
	// waits, then sees them erased (see AddPostings). Keys erased earlier
	// have no term sources left; deleting by every id costs one probe of
	// term_sources each.
	//
	// A posting is a bit of its key's block of records: the keys' bits are
	// cleared from their blocks, which are locked first in primary-key
	// order, as AddPostings writes them, so that the two cannot deadlock;
	// the blocks left empty are deleted after.
	//
	// A record's row lists the terms not listed before under its key
	// (postings.List), so the rows of a key up to a record hold every term
	// it has: each term's bit is cleared from the first record that lists
	// it on, of those of the key. (A term the later records no longer
	// have has no bit of theirs to clear.)
	rows, err := t.tx.Query(ctx, `WITH sources AS (
			DELETE FROM term_sources WHERE data_key = ANY($1) RETURNING data_key, seq, terms),
		firsts AS (
			SELECT s.data_key, t.key, min(s.seq) AS seq FROM sources s, unnest(s.terms) AS t (key) GROUP BY 1, 2),
		masks AS (
			SELECT f.key, s.seq >> 6 AS block, bit_or(1::int8 << (s.seq & 63)::int) AS mask
			FROM firsts f JOIN sources s ON s.data_key = f.data_key AND s.seq >= f.seq GROUP BY 1, 2),
		locked AS (
			SELECT p.key, p.block, m.mask FROM postings p JOIN masks m ON m.key = p.key AND m.block = p.block
			ORDER BY p.key, p.block FOR UPDATE OF p),
		cleared AS (
			UPDATE postings p SET bits = p.bits & ~l.mask FROM locked l
			WHERE p.key = l.key AND p.block = l.block RETURNING p.key, p.block, p.bits)
		SELECT key, block FROM cleared WHERE bits = 0`, keyIDs(ids))
	if err != nil {
		return 0, fmt.Errorf("erase postings of %d keys: %w", len(ids), classify(t.fail(err)))
	}
	var (
		emptyKeys   [][]byte
		emptyBlocks []int64
		key         []byte
		block       int64
	)
	if _, err := pgx.ForEachRow(rows, []any{&key, &block}, func() error {
		emptyKeys, emptyBlocks = append(emptyKeys, slices.Clone(key)), append(emptyBlocks, block)
		return nil
	}); err != nil {
		return 0, fmt.Errorf("erase postings of %d keys: %w", len(ids), classify(t.fail(err)))
	}
	if len(emptyKeys) > 0 {
		if _, err := t.tx.Exec(ctx, `DELETE FROM postings p USING unnest($1::bytea[], $2::int8[]) AS e (key, block)
			WHERE p.key = e.key AND p.block = e.block AND p.bits = 0`, emptyKeys, emptyBlocks); err != nil {
			return 0, fmt.Errorf("erase postings of %d keys: %w", len(ids), classify(t.fail(err)))
		}
	}
	return blobs, nil
}

// DataKeys returns the stored keys among ids.
func (db *DB) DataKeys(ctx context.Context, ids []infertrail.KeyID) (map[infertrail.KeyID]infertrail.DataKey, error) {
	out := make(map[infertrail.KeyID]infertrail.DataKey, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	keys, err := queryKeys(ctx, db.pool, `SELECT `+keyColumns+` FROM data_keys WHERE id = ANY($1)`, keyIDs(ids))
	if err != nil {
		return nil, fmt.Errorf("read %d keys: %w", len(ids), classify(err))
	}
	for _, k := range keys {
		out[k.ID] = k
	}
	return out, nil
}

// keysPerQuery is how many keys ScanKeys reads with one query. It holds no
// connection while fn runs, so fn may call the store (RewrapKey, say).
const keysPerQuery = 1000

// ScanKeys calls fn for each key f selects, in id order (bytea compares
// bytewise), after the id after.
func (db *DB) ScanKeys(ctx context.Context, f infertrail.KeyFilter, after infertrail.KeyID, fn func(*infertrail.DataKey) error) error {
	where, args := keyWhere(f)
	n := len(args)
	sql := `SELECT ` + keyColumns + ` FROM data_keys WHERE ` + where +
		` AND id > $` + strconv.Itoa(n+1) + ` ORDER BY id LIMIT ` + strconv.Itoa(keysPerQuery)
	args = append(args, nil)
	for {
		args[n] = after[:]
		keys, err := queryKeys(ctx, db.pool, sql, args...)
		if err != nil {
			return fmt.Errorf("scan keys: %w", classify(err))
		}
		for i := range keys {
			if err := fn(&keys[i]); err != nil {
				return err
			}
		}
		if len(keys) < keysPerQuery {
			return nil
		}
		after = keys[len(keys)-1].ID
	}
}

// RewrapKey replaces a live key's wrapped form if it is still old.
func (db *DB) RewrapKey(ctx context.Context, id infertrail.KeyID, old, new []byte, kek string) (bool, error) {
	if len(new) == 0 {
		return false, fmt.Errorf("rewrap key %x: no wrapped key: %w", id[:4], infertrail.ErrInvalid)
	}
	tag, err := db.pool.Exec(ctx, `UPDATE data_keys SET wrapped = $3, kek = $4
		WHERE id = $1 AND wrapped = $2 AND erased_by IS NULL`, id[:], old, new, kek)
	if err != nil {
		return false, fmt.Errorf("rewrap key %x: %w", id[:4], classify(err))
	}
	return tag.RowsAffected() == 1, nil
}

// AddHold stores a new hold. It locks the log head FOR SHARE in the
// transaction that inserts the hold, so it waits for an append transaction
// (which may be erasing content the hold covers) to end, from this process
// or another, and an append transaction begun meanwhile waits for it, and
// then sees the hold. A hold whose id is stored already is an error
// wrapping infertrail.ErrConflict.
func (db *DB) AddHold(ctx context.Context, h infertrail.Hold) error {
	if err := checkHold(h); err != nil {
		return err
	}
	err := pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT FROM log_head WHERE id FOR SHARE`); err != nil {
			return fmt.Errorf("lock log head: %w", err)
		}
		_, err := tx.Exec(ctx, `INSERT INTO holds (id, tenant, scope, reason, created_by, created) VALUES ($1, $2, $3, $4, $5, $6)`,
			pgtype.UUID{Bytes: h.ID, Valid: true}, h.Tenant, string(h.Scope), h.Reason, h.CreatedBy, h.Created)
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "23505" { // unique_violation
			return fmt.Errorf("%w: hold id already stored: %w", infertrail.ErrConflict, err)
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("add hold %v: %w", h.ID, classify(err))
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

// ReleaseHold marks the tenant's active hold with the id released.
func (db *DB) ReleaseHold(ctx context.Context, tenant string, id infertrail.UUID, by string, at int64) error {
	tag, err := db.pool.Exec(ctx, `UPDATE holds SET released_by = $3, released = $4
		WHERE id = $1 AND tenant = $2 AND released IS NULL`, pgtype.UUID{Bytes: id, Valid: true}, tenant, by, at)
	if err != nil {
		return fmt.Errorf("release hold %v: %w", id, classify(err))
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("release hold %v: no active hold with this id in tenant %q: %w", id, tenant, infertrail.ErrNotFound)
	}
	return nil
}

// Holds returns the tenant's holds (every tenant's when tenant is ""),
// oldest first.
func (db *DB) Holds(ctx context.Context, tenant string, active bool) ([]infertrail.Hold, error) {
	hs, err := queryHolds(ctx, db.pool, tenant, active)
	if err != nil {
		return nil, fmt.Errorf("read holds: %w", classify(err))
	}
	return hs, nil
}

func queryHolds(ctx context.Context, q rowsQuerier, tenant string, active bool) ([]infertrail.Hold, error) {
	sql := `SELECT id, tenant, scope, reason, created_by, created, coalesce(released_by, ''), coalesce(released, 0) FROM holds WHERE true`
	var args []any
	if tenant != "" {
		sql, args = sql+` AND tenant = $1`, append(args, tenant)
	}
	if active {
		sql += ` AND released IS NULL`
	}
	rows, err := q.Query(ctx, sql+` ORDER BY created, id`, args...)
	if err != nil {
		return nil, err
	}
	var (
		h     infertrail.Hold
		id    pgtype.UUID
		scope string
		out   []infertrail.Hold
	)
	_, err = pgx.ForEachRow(rows, []any{&id, &h.Tenant, &scope, &h.Reason, &h.CreatedBy, &h.Created, &h.ReleasedBy, &h.Released}, func() error {
		h.ID, h.Scope = id.Bytes, infertrail.Scope(scope)
		out = append(out, h)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}
