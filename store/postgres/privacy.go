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
	"github.com/infertrail/infertrail/store/internal/postings"
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
	// The postings derived from the keys' content (search terms) go too,
	// in statements that start once the keys' rows are locked: their
	// snapshots see every posting of an AddPostings that locked them first
	// (and had the lock above wait for it), and an AddPostings that locks
	// them later waits, then sees them erased (see AddPostings).
	if err := erasePostings(ctx, t.tx, ids); err != nil {
		return 0, fmt.Errorf("erase postings of %d keys: %w", len(ids), classify(t.fail(err)))
	}
	return blobs, nil
}

// eraseBlocks is how many blocks of records an erasure clears, and then
// prunes the lists of, with one statement each: some 50,000 (key, block)
// rows with agent traffic. Tests lower it.
var eraseBlocks = 64

// erasePostings clears, from the postings derived from content, the bits
// of the records whose content was under the data keys ids, and deletes
// the rows left with none (postings.Erasable describes the tables):
//
//  1. It deletes the keys' key_records rows: their bits, ORed per block,
//     are the erased records of each block (keys erased earlier have no
//     rows left).
//  2. A few blocks at a time, in block order, it reads the blocks' lists
//     in block_terms without a lock (every key with a bit of an erased
//     record in a block is listed there already, since the AddPostings
//     that wrote the bit has committed), clears the erased records' bits
//     from each listed key's row of the block, locking the rows first in
//     (block, key) order, as AddPostings writes them, and deletes the rows
//     left with no bit. A row with no bit of an erased record is neither
//     locked nor written.
//  3. Then, a few at a time in block order, it locks the lists of the
//     blocks where it deleted rows, as AddPostings does, and drops from
//     each the keys with no row left in the block; a list left empty goes
//     with its row.
//
// The erasure and AddPostings thus lock in the same order (data_keys,
// postings by block and key, block_terms by block), so they cannot
// deadlock, and the erasure holds no more than a few blocks' rows in
// memory at a time, whatever it erases. An AddPostings that adds a row
// the erasure deleted waits for the deleted tuple, and after the erasure
// commits inserts the row and merges its key back into the block's list;
// one whose block's list the erasure deletes inserts it again
// (mergeLists). A damaged list fails the erasure: skipping it would leave
// the erased content's postings searchable.
func erasePostings(ctx context.Context, tx pgx.Tx, ids []infertrail.KeyID) error {
	rows, err := tx.Query(ctx, `WITH d AS (DELETE FROM key_records WHERE data_key = ANY($1) RETURNING block, bits)
		SELECT block, bit_or(bits) FROM d GROUP BY block ORDER BY block`, keyIDs(ids))
	if err != nil {
		return fmt.Errorf("delete the keys' records: %w", err)
	}
	var blocks, masks []int64
	var block, bits int64
	if _, err := pgx.ForEachRow(rows, []any{&block, &bits}, func() error {
		blocks, masks = append(blocks, block), append(masks, bits)
		return nil
	}); err != nil {
		return fmt.Errorf("delete the keys' records: %w", err)
	}
	var pruned []int64 // blocks where rows were deleted, in order
	for i := 0; i < len(blocks); i += eraseBlocks {
		j := min(i+eraseBlocks, len(blocks))
		deleted, err := clearBlocks(ctx, tx, blocks[i:j], masks[i:j])
		if err != nil {
			return err
		}
		pruned = append(pruned, deleted...)
	}
	for chunk := range slices.Chunk(pruned, eraseBlocks) {
		if err := pruneLists(ctx, tx, chunk); err != nil {
			return err
		}
	}
	return nil
}

// clearBlocks clears masks[i] from the rows of blocks[i] (in order) of the
// keys listed for it, and deletes the rows left with no bit; it returns
// the blocks where it deleted rows, in order.
func clearBlocks(ctx context.Context, tx pgx.Tx, blocks, masks []int64) ([]int64, error) {
	lists, err := readLists(ctx, tx, blocks, false)
	if err != nil {
		return nil, err
	}
	var (
		keys       [][]byte
		pairBlocks []int64
		pairMasks  []int64
	)
	for i, b := range blocks {
		for _, k := range lists[b] { // in order
			keys, pairBlocks, pairMasks = append(keys, []byte(k)), append(pairBlocks, b), append(pairMasks, masks[i])
		}
	}
	if len(keys) == 0 {
		return nil, nil
	}
	rows, err := tx.Query(ctx, `WITH locked AS (
			SELECT p.key, p.block, m.mask FROM postings p
			JOIN unnest($1::bytea[], $2::int8[], $3::int8[]) AS m (key, block, mask) ON p.key = m.key AND p.block = m.block
			WHERE p.bits & m.mask <> 0
			ORDER BY p.block, p.key FOR UPDATE OF p),
		cleared AS (
			UPDATE postings p SET bits = p.bits & ~l.mask FROM locked l
			WHERE p.key = l.key AND p.block = l.block RETURNING p.key, p.block, p.bits)
		SELECT key, block FROM cleared WHERE bits = 0`, keys, pairBlocks, pairMasks)
	if err != nil {
		return nil, fmt.Errorf("clear the erased records' postings: %w", err)
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
		return nil, fmt.Errorf("clear the erased records' postings: %w", err)
	}
	if len(emptyKeys) == 0 {
		return nil, nil
	}
	// A statement of its own: one that updates a row cannot delete it too.
	rows, err = tx.Query(ctx, `WITH deleted AS (
			DELETE FROM postings p USING unnest($1::bytea[], $2::int8[]) AS e (key, block)
			WHERE p.key = e.key AND p.block = e.block AND p.bits = 0 RETURNING p.block)
		SELECT DISTINCT block FROM deleted ORDER BY block`, emptyKeys, emptyBlocks)
	if err != nil {
		return nil, fmt.Errorf("delete the emptied postings: %w", err)
	}
	deleted, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, fmt.Errorf("delete the emptied postings: %w", err)
	}
	return deleted, nil
}

// readLists returns the parsed lists of blocks, locked FOR UPDATE in block
// order when lock is set.
func readLists(ctx context.Context, q rowsQuerier, blocks []int64, lock bool) (map[int64][]string, error) {
	query := `SELECT block, keys FROM block_terms WHERE block = ANY($1)`
	if lock {
		query += ` ORDER BY block FOR UPDATE`
	}
	rows, err := q.Query(ctx, query, blocks)
	if err != nil {
		return nil, fmt.Errorf("read the key lists of %d blocks: %w", len(blocks), err)
	}
	out := make(map[int64][]string, len(blocks))
	var (
		block int64
		list  []byte
	)
	if _, err := pgx.ForEachRow(rows, []any{&block, &list}, func() error {
		keys, err := postings.ParseList(list)
		if err != nil {
			return fmt.Errorf("block %d: %w", block, err)
		}
		out[block] = keys
		return nil
	}); err != nil {
		return nil, fmt.Errorf("read the key lists of %d blocks: %w", len(blocks), err)
	}
	return out, nil
}

// pruneLists locks the lists of blocks, in block order, and drops from
// each the keys with no postings row left in the block, deleting a list
// left empty.
func pruneLists(ctx context.Context, tx pgx.Tx, blocks []int64) error {
	lists, err := readLists(ctx, tx, blocks, true)
	if err != nil {
		return err
	}
	var (
		keys       [][]byte
		pairBlocks []int64
	)
	for _, b := range blocks {
		for _, k := range lists[b] {
			keys, pairBlocks = append(keys, []byte(k)), append(pairBlocks, b)
		}
	}
	rows, err := tx.Query(ctx, `SELECT p.block, p.key FROM postings p
		JOIN unnest($1::bytea[], $2::int8[]) AS l (key, block) ON p.key = l.key AND p.block = l.block`, keys, pairBlocks)
	if err != nil {
		return fmt.Errorf("read the listed postings of %d blocks: %w", len(blocks), err)
	}
	type at struct {
		block int64
		key   string
	}
	left := map[at]bool{}
	var (
		block int64
		key   []byte
	)
	if _, err := pgx.ForEachRow(rows, []any{&block, &key}, func() error {
		left[at{block, string(key)}] = true
		return nil
	}); err != nil {
		return fmt.Errorf("read the listed postings of %d blocks: %w", len(blocks), err)
	}
	var changed, emptied []int64
	var encoded [][]byte
	for _, b := range blocks {
		l, ok := lists[b]
		if !ok {
			continue
		}
		kept := slices.DeleteFunc(slices.Clone(l), func(k string) bool { return !left[at{b, k}] })
		switch {
		case len(kept) == 0:
			emptied = append(emptied, b)
		case len(kept) < len(l):
			changed, encoded = append(changed, b), append(encoded, postings.AppendList(nil, kept))
		}
	}
	if len(changed) == 0 && len(emptied) == 0 {
		return nil
	}
	if _, err := tx.Exec(ctx, `WITH emptied AS (DELETE FROM block_terms WHERE block = ANY($3))
		UPDATE block_terms b SET keys = u.keys FROM unnest($1::int8[], $2::bytea[]) AS u (block, keys) WHERE b.block = u.block`,
		changed, encoded, emptied); err != nil {
		return fmt.Errorf("write the key lists of %d blocks: %w", len(changed)+len(emptied), err)
	}
	return nil
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
