package sqlite

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/infertrail/infertrail"
	"github.com/infertrail/infertrail/internal/cpu"
	"github.com/infertrail/infertrail/store/internal/postings"
)

// Cursor returns the named cursor, or 0 when it was never advanced.
func (db *DB) Cursor(ctx context.Context, name string) (int64, error) {
	if db.noIndex {
		return 0, fmt.Errorf("read cursor %q: %w", name, errNoIndex)
	}
	var seq int64
	err := db.readers.QueryRowContext(ctx, `SELECT seq FROM cursors WHERE name = ?`, name).Scan(&seq)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read cursor %q: %w", name, err)
	}
	return seq, nil
}

// AdvanceCursor moves the named cursor from from to to, in a write
// transaction of its own on the index file.
func (db *DB) AdvanceCursor(ctx context.Context, name string, from, to int64) error {
	if err := checkAdvance(name, from, to); err != nil {
		return fmt.Errorf("advance cursor: %w", err)
	}
	return db.writeBehind(ctx, fmt.Sprintf("advance cursor %q from %d to %d", name, from, to), func(tx *sql.Tx) error {
		return advance(ctx, tx, name, from, to)
	})
}

// AddPostings writes postings and advances the cursor, in one write
// transaction of the index file, which checks first that the cursor is at
// from, so that a step another process has taken writes nothing. The
// postings of keys erased (read from the log's file once the transaction
// holds the index file's write lock) are left out: see DB.purge.
func (db *DB) AddPostings(ctx context.Context, cursor string, from, to int64, in []infertrail.Posting) error {
	if err := checkAdvance(cursor, from, to); err != nil {
		return fmt.Errorf("add postings: %w", err)
	}
	if err := postings.Check(in); err != nil {
		return fmt.Errorf("add postings: %w", err)
	}
	ps := postings.Sort(in)
	what := fmt.Sprintf("add %d postings, cursor %q from %d to %d", len(ps), cursor, from, to)
	if err := db.indexRoom(); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return db.writeBehind(ctx, what, func(tx *sql.Tx) error {
		if err := atCursor(ctx, tx, cursor, from); err != nil {
			return err
		}
		erased, err := db.erasedKeys(ctx, ps)
		if err != nil {
			return err
		}
		if len(erased) > 0 {
			ps = slices.DeleteFunc(ps, func(p infertrail.Posting) bool { return erased[p.DataKey] })
		}
		if err := insertPostings(ctx, tx, ps); err != nil {
			return err
		}
		owners, lists := postings.Erasable(ps)
		if err := insertErasable(ctx, tx, owners, lists); err != nil {
			if errors.Is(err, postings.ErrDamagedList) {
				// A list it cannot extend: nothing more is indexed.
				err = indexError(db.indexPath, err)
			}
			return err
		}
		return advance(ctx, tx, cursor, from, to)
	})
}

// writeBehind is writeIndex for the index and the detectors, which go
// after the log's appends (see behind.Appends): they no longer share a
// write lock, but they share the CPU, and evidence comes first.
func (db *DB) writeBehind(ctx context.Context, what string, fn func(tx *sql.Tx) error) error {
	return db.appends.Write(ctx, func() error { return db.writeIndex(ctx, what, fn) })
}

func checkAdvance(name string, from, to int64) error {
	if name == "" {
		return fmt.Errorf("field cursor: empty name: %w", infertrail.ErrInvalid)
	}
	if from < 0 || to <= from {
		return fmt.Errorf("cursor %q: from %d to %d: want 0 <= from < to: %w", name, from, to, infertrail.ErrInvalid)
	}
	return nil
}

// advance moves the named cursor from from to to inside tx, or fails with
// an error wrapping ErrConflict. A cursor never advanced has no row; every
// row holds a position > 0, since to > from >= 0.
func advance(ctx context.Context, tx *sql.Tx, name string, from, to int64) error {
	var (
		res sql.Result
		err error
	)
	if from == 0 {
		res, err = tx.ExecContext(ctx, `INSERT INTO cursors (name, seq) VALUES (?, ?) ON CONFLICT (name) DO NOTHING`, name, to)
	} else {
		res, err = tx.ExecContext(ctx, `UPDATE cursors SET seq = ? WHERE name = ? AND seq = ?`, to, name, from)
	}
	if err != nil {
		return fmt.Errorf("move cursor: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil || n != 1 {
		var at int64
		tx.QueryRowContext(ctx, `SELECT seq FROM cursors WHERE name = ?`, name).Scan(&at)
		return fmt.Errorf("cursor is at %d, not %d: %w", at, from, infertrail.ErrConflict)
	}
	return nil
}

// atCursor checks that the named cursor is at from.
func atCursor(ctx context.Context, tx *sql.Tx, name string, from int64) error {
	var at int64
	err := tx.QueryRowContext(ctx, `SELECT seq FROM cursors WHERE name = ?`, name).Scan(&at)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("read cursor: %w", err)
	}
	if at != from {
		return fmt.Errorf("cursor is at %d, not %d: %w", at, from, infertrail.ErrConflict)
	}
	return nil
}

// erasedKeys returns the erased data keys among those of ps, as the log's
// file holds them now.
func (db *DB) erasedKeys(ctx context.Context, ps []infertrail.Posting) (map[infertrail.KeyID]bool, error) {
	seen := map[infertrail.KeyID]bool{}
	var ids []any
	for _, p := range ps {
		if !p.DataKey.IsZero() && !seen[p.DataKey] {
			seen[p.DataKey] = true
			ids = append(ids, p.DataKey[:])
		}
	}
	erased := map[infertrail.KeyID]bool{}
	for len(ids) > 0 {
		batch := ids[:min(len(ids), lookupBatch)]
		ids = ids[len(batch):]
		rows, err := db.readers.QueryContext(ctx, `SELECT id FROM data_keys WHERE erased_by IS NOT NULL AND id IN (?`+strings.Repeat(", ?", len(batch)-1)+`)`, batch...)
		if err != nil {
			return nil, fmt.Errorf("read erased keys: %w", err)
		}
		for rows.Next() {
			var id []byte
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return nil, fmt.Errorf("read erased keys: %w", err)
			}
			erased[infertrail.KeyID(id)] = true
		}
		if err := rows.Close(); err != nil {
			return nil, fmt.Errorf("read erased keys: %w", err)
		}
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("read erased keys: %w", err)
		}
	}
	return erased, nil
}

// blockRows is the number of blocks one multi-row insert writes.
const blockRows = 64

// insertPostings adds ps, in Sort's order, to the postings table: each key's
// postings in a block of records are one row (postings.Blocks), and a row
// stored already gets their bits too. blockRows rows at a time go through
// one prepared statement. What an erasure needs of them goes in
// key_records and block_terms (insertErasable).
func insertPostings(ctx context.Context, tx *sql.Tx, ps []infertrail.Posting) error {
	const (
		insert = `INSERT INTO postings (key, block, bits) VALUES `
		merge  = ` ON CONFLICT (key, block) DO UPDATE SET bits = bits | excluded.bits`
	)
	var many, one *sql.Stmt
	defer func() {
		for _, s := range []*sql.Stmt{many, one} {
			if s != nil {
				s.Close()
			}
		}
	}()
	bs := postings.Blocks(ps)
	args := make([]any, 0, blockRows*3)
	tags := make([]byte, 0, blockRows*postings.StoredLen)
	for len(bs) > 0 {
		n := min(len(bs), blockRows)
		var st **sql.Stmt
		query := insert + values(blockRows, 3) + merge
		if n < blockRows {
			n, st, query = 1, &one, insert+values(1, 3)+merge
		} else {
			st = &many
		}
		if *st == nil {
			var err error
			if *st, err = tx.PrepareContext(ctx, query); err != nil {
				return fmt.Errorf("insert postings: %w", err)
			}
		}
		cpu.Defer(ctx)
		args, tags = args[:0], tags[:0]
		for _, b := range bs[:n] {
			args = append(args, appendStoredKey(&tags, b.Key), b.Block, b.Bits)
		}
		if _, err := (*st).ExecContext(ctx, args...); err != nil {
			return fmt.Errorf("insert postings: %w", err)
		}
		bs = bs[n:]
	}
	return nil
}

// Query limits.
const (
	defaultQueryLimit = 100
	// maxTenantArms is the most tenants whose entries a query without keys
	// plans one at a time; with more, it walks the log.
	maxTenantArms = 32
)

// Counts that choose a plan. Tests lower them.
var (
	// walkSpan is the most entries of the log a query without keys walks
	// through, by its estimate, to reach a tenant's time range, rather than
	// read the range whole: about 25 ms.
	walkSpan int64 = 50_000
	// rareCount is how many postings of each key, at most, Query counts to
	// find the rarest key of a query with several: about a millisecond.
	rareCount = 10_000
	// rangeCount is how many of a tenant's entries in a time range, at
	// most, a query without keys counts (about 3 ms), and reads and sorts
	// rather than walks the log (about 7 ms, or 25 ms with kinds, which
	// need each entry's row).
	rangeCount = 20_000
)

// queryLimit checks a limit and returns the one to use.
func queryLimit(limit int) (int, error) {
	switch {
	case limit < 0:
		return 0, fmt.Errorf("field limit: %d is negative: %w", limit, infertrail.ErrInvalid)
	case limit == 0:
		return defaultQueryLimit, nil
	}
	return min(limit, infertrail.MaxQueryLimit), nil
}

// entryColumnsR is entryColumns of the table aliased r.
var entryColumnsR = "r." + strings.ReplaceAll(entryColumns, ", ", ", r.")

// Query calls fn for each committed entry q selects, newest first, from one
// read transaction (the counts that plan it and its answer see the same
// snapshot). Every plan either walks an index newest first and stops at the
// limit, or reads a bounded range of records_tenant_time and sorts its
// sequence numbers. EXPLAIN QUERY PLAN of each (checked by TestQueryPlans):
//
//   - With keys, the blocks of postings of the rarest key (the fewest
//     blocks below Before, counted up to rareCount each), newest first, a
//     page at a time, each other key's block of the same records one
//     primary-key lookup: SEARCH p USING PRIMARY KEY (key=? AND block>? AND
//     block<?); SEARCH k0 USING PRIMARY KEY (key=? AND block=?). The
//     records their bits share are then read, newest first, by rowid and
//     filtered: SEARCH r USING INTEGER PRIMARY KEY (rowid=?) (keyWalk).
//   - Without keys, and without tenants or time bounds, the log newest
//     first: SEARCH r USING INTEGER PRIMARY KEY (rowid<?).
//   - Without keys, with tenants (or, with a time bound, every tenant in
//     the log, up to maxTenantArms), the entries of each tenant in the time
//     bounds are counted up to rangeCount in records_tenant_time. A tenant
//     with fewer has its range read and its sequence numbers sorted:
//     SEARCH r USING COVERING INDEX records_tenant_time (tenant=? AND
//     time>? AND time<?); USE TEMP B-TREE FOR ORDER BY. The others are
//     found by walking the log newest first, if the newest of their
//     entries in the range (by time) is within walkSpan entries of the
//     log's newest, else their range is read too. Several tenants'
//     sequence numbers are merged (MERGE (UNION ALL), LIMIT) before the
//     entries are read by rowid.
//
// So the first page of a query reads about its limit of postings (a
// sixty-fourth as many blocks, or fewer), a few
// times rangeCount index entries, or walkSpan entries. Kinds do not drive a
// query: a query for a rare kind of a busy tenant walks many entries. The
// worst case is a tenant with many entries both in and after the time
// range (a range of months, open at the start, say): its range is read.
// BenchmarkQuery on 10 million records, with a row per posting: a
// 200-record trace 1.5 ms, the first page of every other query under 25
// ms (medians), but for a range open at the start that ends mid-log, of a
// tenant with 2.5 million entries: 640 ms. On 1 million records, the
// walk of blocks against a row per posting, two runs each on 2026-11-29:
// the trace 1.1–1.6 → 2.7–2.8 ms, a first page by an actor's key
// 0.7–0.9 → 1.45 ms, by two keys 4.8–4.9 → 2.4–2.8 ms.
func (db *DB) Query(ctx context.Context, q infertrail.Query, fn func(*infertrail.Entry) error) error {
	if db.noIndex {
		return fmt.Errorf("query entries: %w", errNoIndex)
	}
	tx, err := db.readers.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("query entries: %w", err)
	}
	defer tx.Rollback()
	p, err := planQuery(ctx, tx, q)
	if err != nil {
		return fmt.Errorf("query entries: %w", err)
	}
	// fn's own error is returned as it is; the store's are named.
	var fnErr error
	call := func(e *infertrail.Entry) error {
		fnErr = fn(e)
		return fnErr
	}
	switch {
	case p.keys != nil:
		err = p.keys.run(ctx, db, tx, call)
	case p.query != "":
		var rows *sql.Rows
		if rows, err = tx.QueryContext(ctx, p.query, p.args...); err == nil {
			err = scanEntries(rows, func(e *infertrail.Entry) (bool, error) { return true, call(e) })
		}
	}
	switch {
	case fnErr != nil:
		return fnErr
	case err != nil:
		return fmt.Errorf("query entries: %w", err)
	}
	return nil
}

// scanEntries calls fn for each entry of rows, until fn says to stop, and
// closes rows.
func scanEntries(rows *sql.Rows, fn func(*infertrail.Entry) (bool, error)) error {
	defer rows.Close()
	var s entryScanner
	for rows.Next() {
		if err := s.scan(rows); err != nil {
			return err
		}
		if more, err := fn(&s.e); err != nil || !more {
			return err
		}
	}
	return rows.Err()
}

// A plan answers a query: the SQL statement that selects its entries, or
// a walk of the postings of its keys; neither when it selects nothing.
type plan struct {
	query string
	args  []any
	keys  *keyWalk
}

// planQuery returns the plan that answers q.
func planQuery(ctx context.Context, tx *sql.Tx, q infertrail.Query) (plan, error) {
	limit, err := queryLimit(q.Limit)
	if err != nil {
		return plan{}, err
	}
	if q.Before < 0 {
		return plan{}, fmt.Errorf("field before: %d is negative: %w", q.Before, infertrail.ErrInvalid)
	}
	for i, k := range q.Keys {
		if k == "" {
			return plan{}, fmt.Errorf("field keys[%d]: empty: %w", i, infertrail.ErrInvalid)
		}
	}
	if q.Tenants != nil && len(q.Tenants) == 0 || q.From != 0 && q.To != 0 && q.From >= q.To {
		return plan{}, nil
	}
	before := q.Before
	if before == 0 {
		before = math.MaxInt64
	}
	// The time bounds, as sequence bounds (the zone map of time_blocks):
	// walks by sequence number start at the last block that can hold a
	// record before q.To and stop at the first that can hold one from
	// q.From.
	floor := int64(0)
	if q.To != 0 || q.From != 0 {
		var last, first sql.NullInt64
		// One pass over the map: one row per 4,096 records.
		if err := tx.QueryRowContext(ctx, `SELECT max(CASE WHEN ? = 0 OR min_time < ? THEN block END),
			min(CASE WHEN max_time >= ? THEN block END) FROM time_blocks`, q.To, q.To, q.From).Scan(&last, &first); err != nil {
			return plan{}, fmt.Errorf("read the time blocks: %w", err)
		}
		if !last.Valid || !first.Valid || first.Int64 > last.Int64 {
			return plan{}, nil // no block holds a record in the range
		}
		before = min(before, (last.Int64+1)<<infertrail.TimeBlockBits)
		floor = first.Int64 << infertrail.TimeBlockBits
	}
	tenants := uniq(q.Tenants)
	if keys := uniq(q.Keys); len(keys) > 0 {
		w, err := planKeys(ctx, tx, q, keys, tenants, before, floor, limit)
		return plan{keys: w}, err
	}
	walk := func(tenants []string) (string, []any) {
		conds, args := entryFilters(q, "r", tenants, true)
		if floor > 0 {
			conds, args = ` AND r.seq >= ?`+conds, append([]any{floor}, args...)
		}
		return ` FROM records r NOT INDEXED WHERE r.seq < ?` + conds + ` ORDER BY r.seq DESC LIMIT ?`,
			slices.Concat([]any{before}, args, []any{limit})
	}
	if tenants == nil && (q.From != 0 || q.To != 0) {
		// A time range of the whole log is the union of its tenants'.
		if tenants, err = logTenants(ctx, tx, maxTenantArms+1); err != nil {
			return plan{}, err
		}
		if len(tenants) == 0 {
			return plan{}, nil
		}
		if len(tenants) > maxTenantArms {
			tenants = nil
		}
	}
	if len(tenants) == 0 || len(tenants) > maxTenantArms {
		from, args := walk(tenants)
		return plan{query: `SELECT ` + entryColumnsR + from, args: args}, nil
	}
	var newest int64
	err = tx.QueryRowContext(ctx, `SELECT seq FROM records WHERE seq < ? ORDER BY seq DESC LIMIT 1`, before).Scan(&newest)
	if errors.Is(err, sql.ErrNoRows) {
		return plan{}, nil
	}
	if err != nil {
		return plan{}, fmt.Errorf("read the newest entry: %w", err)
	}
	times, targs := entryFilters(infertrail.Query{From: q.From, To: q.To}, "r", nil, false)
	kinds, kargs := entryFilters(infertrail.Query{Kinds: q.Kinds}, "r", nil, false)
	var (
		arms   []string
		args   []any
		walked []string // the tenants found by walking the log
	)
	for _, t := range tenants {
		var (
			n    int
			last sql.NullInt64
		)
		err := tx.QueryRowContext(ctx, `SELECT
			(SELECT count(*) FROM (SELECT 1 FROM records r INDEXED BY records_tenant_time WHERE r.tenant = ? AND r.seq < ?`+times+` LIMIT ?)),
			(SELECT r.seq FROM records r INDEXED BY records_tenant_time WHERE r.tenant = ?`+times+` ORDER BY r.time DESC, r.seq DESC LIMIT 1)`,
			slices.Concat([]any{t, before}, targs, []any{rangeCount, t}, targs)...).Scan(&n, &last)
		if err != nil {
			return plan{}, fmt.Errorf("count the entries of tenant %q: %w", t, err)
		}
		switch {
		case n == 0:
		case n >= rangeCount && newest-last.Int64 < walkSpan:
			walked = append(walked, t)
		default:
			arms = append(arms, `SELECT seq FROM (SELECT r.seq FROM records r INDEXED BY records_tenant_time WHERE r.tenant = ? AND r.seq < ?`+
				times+kinds+` ORDER BY r.seq DESC LIMIT ?)`)
			args = append(slices.Concat(args, []any{t, before}, targs, kargs), limit)
		}
	}
	if len(walked) > 0 {
		from, wargs := walk(walked)
		if len(arms) == 0 {
			return plan{query: `SELECT ` + entryColumnsR + from, args: wargs}, nil
		}
		arms = append(arms, `SELECT seq FROM (SELECT r.seq`+from+`)`)
		args = append(args, wargs...)
	}
	if len(arms) == 0 {
		return plan{}, nil
	}
	// The arms' sequence numbers are merged, and only the first limit of
	// them read.
	return plan{query: `SELECT ` + entryColumnsR + ` FROM records r WHERE r.seq IN (` + strings.Join(arms, ` UNION ALL `) +
		` ORDER BY 1 DESC LIMIT ?) ORDER BY r.seq DESC`, args: append(args, limit)}, nil
}

// logTenants returns up to n of the tenants in the log, with one index seek
// each.
func logTenants(ctx context.Context, tx *sql.Tx, n int) ([]string, error) {
	var out []string
	for len(out) < n {
		// The first seek is >= "": the empty tenant is valid, in theory.
		cond, after := `tenant >= ?`, ""
		if len(out) > 0 {
			cond, after = `tenant > ?`, out[len(out)-1]
		}
		var t string
		err := tx.QueryRowContext(ctx, `SELECT tenant FROM records INDEXED BY records_tenant_time WHERE `+cond+` ORDER BY tenant LIMIT 1`, after).Scan(&t)
		if errors.Is(err, sql.ErrNoRows) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("list tenants: %w", err)
		}
		out = append(out, t)
	}
	return out, nil
}

// planKeys plans a query with index keys: a walk of the blocks of the
// rarest key, newest first, in which each other key's block of the same
// records is looked up, and the entries of the records all of them mark.
// It returns nil when no record carries every key.
func planKeys(ctx context.Context, tx *sql.Tx, q infertrail.Query, keys, tenants []string, before, floor int64, limit int) (*keyWalk, error) {
	lo, hi := postings.BlockRange(floor, before)
	if len(keys) > 1 {
		counts := make(map[string]int, len(keys))
		for _, k := range keys {
			var n int
			err := tx.QueryRowContext(ctx, `SELECT count(*) FROM (SELECT 1 FROM postings WHERE key = ? AND block <= ? AND block >= ? LIMIT ?)`,
				storedKey(k), hi, lo, rareCount).Scan(&n)
			if err != nil {
				return nil, fmt.Errorf("count postings of %q: %w", k, err)
			}
			if n == 0 {
				return nil, nil // no entry carries every key
			}
			counts[k] = n
		}
		slices.SortStableFunc(keys, func(a, b string) int { return cmp.Compare(counts[a], counts[b]) })
	}
	w := &keyWalk{Walk: postings.Walk{Floor: floor, Before: before, Lo: lo, Hi: hi, Limit: limit}}
	var b strings.Builder
	b.WriteString(`SELECT p.block, p.bits`)
	for i := range keys[1:] {
		fmt.Fprintf(&b, ` & k%d.bits`, i)
	}
	b.WriteString(` FROM postings p`)
	for i, k := range keys[1:] {
		fmt.Fprintf(&b, ` CROSS JOIN postings k%d ON k%d.key = ? AND k%d.block = p.block`, i, i, i)
		w.blockArgs = append(w.blockArgs, storedKey(k))
	}
	b.WriteString(` WHERE p.key = ? AND p.block <= ? AND p.block >= ?`)
	w.blockArgs = append(w.blockArgs, storedKey(keys[0]))
	if len(keys) > 1 {
		b.WriteString(` AND p.bits`)
		for i := range keys[1:] {
			fmt.Fprintf(&b, ` & k%d.bits`, i)
		}
		b.WriteString(` != 0`)
	}
	b.WriteString(` ORDER BY p.block DESC LIMIT ?`)
	w.blocks = b.String()
	conds, fargs := entryFilters(q, "r", tenants, true)
	w.Filtered = conds != ""
	w.entries = `SELECT ` + entryColumnsR + ` FROM records r NOT INDEXED WHERE r.seq IN (SELECT value FROM json_each(?))` + conds + ` ORDER BY r.seq DESC LIMIT ?`
	w.entryArgs = fargs
	return w, nil
}

// A keyWalk is a postings.Walk through the index file: the statements that
// read its blocks and its entries.
type keyWalk struct {
	postings.Walk
	blocks    string // the blocks: their number and the bits every key has, given the blocks' range and a page size
	blockArgs []any  // before the range and the page size
	entries   string // the entries among a JSON array of sequence numbers that pass the filters, newest first, given a limit
	entryArgs []any  // after the array, before the limit
}

// run calls fn for each entry the walk selects, newest first, up to its
// limit, in tx, a read transaction of db.
func (w *keyWalk) run(ctx context.Context, db *DB, tx *sql.Tx, fn func(*infertrail.Entry) error) error {
	blocks, err := db.walkStmt(ctx, tx, w.blocks)
	if err != nil {
		return fmt.Errorf("read postings: %w", err)
	}
	defer blocks.Close()
	entries, err := db.walkStmt(ctx, tx, w.entries)
	if err != nil {
		return fmt.Errorf("read entries: %w", err)
	}
	defer entries.Close()
	return w.Run(func(hi int64, page int, fn func(block, bits int64)) error {
		rows, err := blocks.QueryContext(ctx, append(w.blockArgs, hi, w.Lo, page)...)
		if err != nil {
			return fmt.Errorf("read postings: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			var block, bits int64
			if err := rows.Scan(&block, &bits); err != nil {
				return fmt.Errorf("read postings: %w", err)
			}
			fn(block, bits)
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("read postings: %w", err)
		}
		return nil
	}, func(seqs []int64, want int) (int, error) {
		rows, err := entries.QueryContext(ctx, slices.Concat([]any{encodeSeqs(seqs)}, w.entryArgs, []any{want})...)
		if err != nil {
			return 0, fmt.Errorf("read entries: %w", err)
		}
		n := 0
		err = scanEntries(rows, func(e *infertrail.Entry) (bool, error) {
			n++
			return true, fn(e)
		})
		return n, err
	})
}

// walkStmt returns query prepared for tx. Walks of postings prepare few
// different statements (by the number of keys and the filters), and
// preparing one took a fifth of a short walk's time: db keeps up to
// maxWalkStmts of them, prepared once on each read connection.
func (db *DB) walkStmt(ctx context.Context, tx *sql.Tx, query string) (*sql.Stmt, error) {
	db.walkStmts.Lock()
	st, ok := db.walkStmts.m[query]
	if !ok && len(db.walkStmts.m) < maxWalkStmts {
		var err error
		if st, err = db.readers.PrepareContext(ctx, query); err != nil {
			db.walkStmts.Unlock()
			return nil, err
		}
		if db.walkStmts.m == nil {
			db.walkStmts.m = map[string]*sql.Stmt{}
		}
		db.walkStmts.m[query], ok = st, true
	}
	db.walkStmts.Unlock()
	if !ok {
		return tx.PrepareContext(ctx, query)
	}
	return tx.StmtContext(ctx, st), nil
}

// maxWalkStmts bounds DB.walkStmts.
const maxWalkStmts = 64

// entryFilters returns the conditions, each starting with " AND ", that
// keep the entries of table alias a that q's kinds and time bounds select,
// and those of tenants when withTenants is set, and their arguments.
func entryFilters(q infertrail.Query, a string, tenants []string, withTenants bool) (string, []any) {
	var b strings.Builder
	var args []any
	in := func(col string, vals []string) {
		b.WriteString(" AND " + a + "." + col + " IN (?" + strings.Repeat(", ?", len(vals)-1) + ")")
		for _, v := range vals {
			args = append(args, v)
		}
	}
	if withTenants && len(tenants) > 0 {
		in("tenant", tenants)
	}
	if kinds := uniq(q.Kinds); len(kinds) > 0 {
		ks := make([]string, len(kinds))
		for i, k := range kinds {
			ks[i] = string(k)
		}
		in("kind", ks)
	}
	if q.From != 0 {
		b.WriteString(" AND " + a + ".time >= ?")
		args = append(args, q.From)
	}
	if q.To != 0 {
		b.WriteString(" AND " + a + ".time < ?")
		args = append(args, q.To)
	}
	return b.String(), args
}

// uniq returns vs without repeats, in their first order; nil for nil.
func uniq[T comparable](vs []T) []T {
	if len(vs) < 2 {
		return vs
	}
	seen := make(map[T]bool, len(vs))
	out := make([]T, 0, len(vs))
	for _, v := range vs {
		if !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	return out
}

// AddFindings stores the findings whose ids are not stored yet, with their
// records and their finding=<detector> postings, in one write transaction,
// and then sets their N and (when zero) Time.
func (db *DB) AddFindings(ctx context.Context, fs []infertrail.Finding) error {
	for i := range fs {
		if err := checkFinding(&fs[i]); err != nil {
			return fmt.Errorf("add findings: finding %d: %w", i, err)
		}
	}
	if len(fs) == 0 {
		return nil
	}
	now := time.Now().UnixNano()
	ns, times := make([]int64, len(fs)), make([]int64, len(fs))
	err := db.writeBehind(ctx, fmt.Sprintf("add %d findings", len(fs)), func(tx *sql.Tx) error {
		ins, err := tx.PrepareContext(ctx, `INSERT INTO findings (id, detector, severity, tenant, subject, records, summary, time)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING RETURNING n`)
		if err != nil {
			return err
		}
		defer ins.Close()
		rec, err := tx.PrepareContext(ctx, `INSERT OR IGNORE INTO finding_records (seq, n) VALUES (?, ?)`)
		if err != nil {
			return err
		}
		defer rec.Close()
		var ps []infertrail.Posting
		for i := range fs {
			f := &fs[i]
			t := cmp.Or(f.Time, now)
			var n int64
			err := ins.QueryRowContext(ctx, f.ID[:], f.Detector, string(f.Severity), f.Tenant, f.Subject,
				encodeSeqs(f.Records), f.Summary, t).Scan(&n)
			if errors.Is(err, sql.ErrNoRows) {
				continue // stored already
			}
			if err != nil {
				return fmt.Errorf("insert finding %v: %w", f.ID, err)
			}
			ns[i], times[i] = n, t
			key := infertrail.IndexKey(infertrail.IndexFinding, f.Detector)
			for _, seq := range f.Records {
				if _, err := rec.ExecContext(ctx, seq, n); err != nil {
					return fmt.Errorf("insert records of finding %v: %w", f.ID, err)
				}
				ps = append(ps, infertrail.Posting{Key: key, Seq: seq})
			}
		}
		return insertPostings(ctx, tx, postings.Sort(ps))
	})
	if err != nil {
		return err
	}
	for i := range fs {
		if ns[i] != 0 {
			fs[i].N, fs[i].Time = ns[i], times[i]
		}
	}
	return nil
}

func checkFinding(f *infertrail.Finding) error {
	if f.ID.IsZero() {
		return fmt.Errorf("field id: nil: %w", infertrail.ErrInvalid)
	}
	if f.Detector == "" {
		return fmt.Errorf("field detector: empty: %w", infertrail.ErrInvalid)
	}
	for j, seq := range f.Records {
		if seq < 0 {
			return fmt.Errorf("field records[%d]: %d is negative: %w", j, seq, infertrail.ErrInvalid)
		}
	}
	return nil
}

// encodeSeqs encodes sequence numbers as a JSON array.
func encodeSeqs(seqs []int64) string {
	b := []byte{'['}
	for i, s := range seqs {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendInt(b, s, 10)
	}
	return string(append(b, ']'))
}

// Findings calls fn for each stored finding q selects, newest first. It
// reads them all before the first call, so fn may call the store. With Seq,
// the finding_records range of the record drives the query; else the
// findings are walked newest first, through the index of the tenant,
// detector or subject where SQLite finds one selective.
func (db *DB) Findings(ctx context.Context, q infertrail.FindingQuery, fn func(*infertrail.Finding) error) error {
	if db.noIndex {
		return fmt.Errorf("query findings: %w", errNoIndex)
	}
	limit, err := queryLimit(q.Limit)
	if err != nil {
		return fmt.Errorf("query findings: %w", err)
	}
	if q.Seq < -1 || q.Before < 0 {
		return fmt.Errorf("query findings: field seq or before: negative: %w", infertrail.ErrInvalid)
	}
	if q.Tenants != nil && len(q.Tenants) == 0 {
		return nil
	}
	before := q.Before
	if before == 0 {
		before = math.MaxInt64
	}
	var b strings.Builder
	args := []any{before}
	b.WriteString(`SELECT n, id, detector, severity, tenant, subject, records, summary, time FROM findings f WHERE f.n < ?`)
	in := func(col string, vals []string) {
		b.WriteString(" AND f." + col + " IN (?" + strings.Repeat(", ?", len(vals)-1) + ")")
		for _, v := range vals {
			args = append(args, v)
		}
	}
	if len(q.Tenants) > 0 {
		in("tenant", uniq(q.Tenants))
	}
	if len(q.Detectors) > 0 {
		in("detector", uniq(q.Detectors))
	}
	if q.Subject != "" {
		b.WriteString(" AND f.subject = ?")
		args = append(args, q.Subject)
	}
	if q.Seq >= 0 {
		b.WriteString(" AND f.n IN (SELECT n FROM finding_records WHERE seq = ?)")
		args = append(args, q.Seq)
	}
	b.WriteString(" ORDER BY f.n DESC LIMIT ?")
	args = append(args, limit)
	out, err := queryAll(ctx, db.readers, "query findings", scanFinding, b.String(), args...)
	if err != nil {
		return err
	}
	for i := range out {
		if err := fn(&out[i]); err != nil {
			return err
		}
	}
	return nil
}

func scanFinding(row interface{ Scan(...any) error }) (infertrail.Finding, error) {
	var (
		f         infertrail.Finding
		id        []byte
		sev, seqs string
		detector  string
	)
	if err := row.Scan(&f.N, &id, &detector, &sev, &f.Tenant, &f.Subject, &seqs, &f.Summary, &f.Time); err != nil {
		return f, err
	}
	if len(id) != len(f.ID) {
		return f, fmt.Errorf("finding %d: id of %d bytes", f.N, len(id))
	}
	copy(f.ID[:], id)
	f.Detector, f.Severity = detector, infertrail.Severity(sev)
	if err := json.Unmarshal([]byte(seqs), &f.Records); err != nil {
		return f, fmt.Errorf("finding %d: records: %w", f.N, err)
	}
	return f, nil
}
