package postgres

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/infertrail/infertrail"
	"github.com/infertrail/infertrail/store/internal/postings"
)

// Cursor returns the named cursor, or 0 when it was never advanced.
func (db *DB) Cursor(ctx context.Context, name string) (int64, error) {
	var seq int64
	err := db.pool.QueryRow(ctx, `SELECT seq FROM cursors WHERE name = $1`, name).Scan(&seq)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read cursor %q: %w", name, classify(err))
	}
	return seq, nil
}

// AdvanceCursor moves the named cursor from from to to, in a transaction of
// its own. Of several nodes advancing it at once, one wins: the others wait
// for its row lock, then find the cursor moved.
func (db *DB) AdvanceCursor(ctx context.Context, name string, from, to int64) error {
	if err := checkAdvance(name, from, to); err != nil {
		return fmt.Errorf("advance cursor: %w", err)
	}
	err := db.appends.Write(ctx, func() error {
		return pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error { return advance(ctx, tx, name, from, to) })
	})
	if err != nil {
		return fmt.Errorf("advance cursor %q from %d to %d: %w", name, from, to, classify(err))
	}
	return nil
}

// AddPostings advances the cursor and writes postings in one transaction.
//
// An erasure may run at the same time, in an append transaction on another
// connection or node. So that no posting of an erased data key survives,
// AddPostings locks the data_keys rows of the keys it posts FOR SHARE and
// reads whether they are erased under the lock, and Erase locks those rows
// (FOR NO KEY UPDATE, which conflicts) before, in a later statement, it
// deletes their postings: if the erasure locks a row first, AddPostings
// waits for it to commit and then sees the key erased; if AddPostings locks
// first, the erasure waits, and its delete then sees the committed
// postings. Both lock in id order, so they cannot deadlock. After the data
// keys, AddPostings locks the rows it writes in this order: postings in
// order of block and key, key_records in primary-key order, block_terms in
// block order (insertPostings); an erasure locks postings and block_terms
// rows in the same orders (erasePostings).
func (db *DB) AddPostings(ctx context.Context, cursor string, from, to int64, in []infertrail.Posting) error {
	if err := checkAdvance(cursor, from, to); err != nil {
		return fmt.Errorf("add postings: %w", err)
	}
	if err := postings.Check(in); err != nil {
		return fmt.Errorf("add postings: %w", err)
	}
	ps := postings.Sort(in)
	err := db.appends.Write(ctx, func() error {
		return pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
			if err := advance(ctx, tx, cursor, from, to); err != nil {
				return err
			}
			erased, err := lockKeys(ctx, tx, ps)
			if err != nil {
				return err
			}
			if len(erased) > 0 {
				ps = slices.DeleteFunc(ps, func(p infertrail.Posting) bool { return erased[p.DataKey] })
			}
			return insertPostings(ctx, tx, ps)
		})
	})
	if err != nil {
		return fmt.Errorf("add %d postings, cursor %q from %d to %d: %w", len(in), cursor, from, to, classify(err))
	}
	return nil
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
// an error wrapping ErrConflict. Racing transactions serialise on the
// cursor's row (or, for its first advance, on its primary key), and each
// loser finds it moved.
func advance(ctx context.Context, tx pgx.Tx, name string, from, to int64) error {
	var err error
	var n int64
	if from == 0 {
		tag, e := tx.Exec(ctx, `INSERT INTO cursors (name, seq) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING`, name, to)
		n, err = tag.RowsAffected(), e
	} else {
		tag, e := tx.Exec(ctx, `UPDATE cursors SET seq = $3 WHERE name = $1 AND seq = $2`, name, from, to)
		n, err = tag.RowsAffected(), e
	}
	if err != nil {
		return fmt.Errorf("move cursor: %w", err)
	}
	if n != 1 {
		var at int64
		if err := tx.QueryRow(ctx, `SELECT coalesce(max(seq), 0) FROM cursors WHERE name = $1`, name).Scan(&at); err != nil {
			return fmt.Errorf("read cursor: %w", err)
		}
		return fmt.Errorf("cursor is at %d, not %d: %w", at, from, infertrail.ErrConflict)
	}
	return nil
}

// lockKeys locks the data_keys rows of the data keys of ps FOR SHARE, in id
// order, and returns those that are erased.
func lockKeys(ctx context.Context, tx pgx.Tx, ps []infertrail.Posting) (map[infertrail.KeyID]bool, error) {
	var ids [][]byte
	seen := map[infertrail.KeyID]bool{}
	for i := range ps {
		if k := &ps[i].DataKey; !k.IsZero() && !seen[*k] {
			seen[*k] = true
			ids = append(ids, k[:])
		}
	}
	erased := map[infertrail.KeyID]bool{}
	if len(ids) == 0 {
		return erased, nil
	}
	rows, err := tx.Query(ctx, `SELECT id, erased_by IS NOT NULL FROM data_keys WHERE id = ANY($1) ORDER BY id FOR SHARE`, ids)
	if err != nil {
		return nil, fmt.Errorf("lock data keys: %w", err)
	}
	var (
		id []byte
		is bool
	)
	if _, err := pgx.ForEachRow(rows, []any{&id, &is}, func() error {
		if is {
			erased[infertrail.KeyID(id)] = true
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("lock data keys: %w", err)
	}
	return erased, nil
}

// A posting's key is stored in postings.key (bytea) as its bytes, except
// a term key (nearly every posting), stored packed: postings.TagTerms and
// the first 8 bytes of its tag (postings.Pack), 9 bytes instead of 29. No other key begins with
// that byte (postings.Check), and bytea orders as the "C" collation of the
// text keys did.

// storedKey returns posting key k as postings.key holds it.
func storedKey(k string) []byte {
	return storedKeys([]string{k}, func(k string) string { return k })[0]
}

// storedKeys returns the stored keys of vs, packed term keys sharing one
// array.
func storedKeys[T any](vs []T, key func(T) string) [][]byte {
	out := make([][]byte, len(vs))
	buf := make([]byte, 0, len(vs)*postings.StoredLen)
	for i, v := range vs {
		k := key(v)
		if b, ok := postings.Pack(&buf, k); ok {
			out[i] = b
		} else {
			out[i] = []byte(k)
		}
	}
	return out
}

// insertPostings adds ps, in Sort's order, to the postings table: each key's
// postings in a block of records are one row (postings.Blocks), and a row
// stored already gets their bits too. The rows are written in order of
// block and key, as an erasure locks them, a few blocks at a time, so that
// the two cannot deadlock.
//
// For an erasure, the postings derived from content (those with a data
// key) are also recorded as postings.Erasable gives them: each data key's
// records, a bitmap per block, in key_records, and each block's keys in
// its list in block_terms (mergeLists).
func insertPostings(ctx context.Context, tx pgx.Tx, ps []infertrail.Posting) error {
	if len(ps) == 0 {
		return nil
	}
	bs := postings.Blocks(ps)
	keys := storedKeys(bs, func(b postings.Block) string { return b.Key })
	blocks, bits := make([]int64, len(bs)), make([]int64, len(bs))
	for i, b := range bs {
		blocks[i], bits[i] = b.Block, b.Bits
	}
	_, err := tx.Exec(ctx, `INSERT INTO postings (key, block, bits)
		SELECT key, block, bits FROM unnest($1::bytea[], $2::int8[], $3::int8[]) AS b (key, block, bits) ORDER BY block, key
		ON CONFLICT (key, block) DO UPDATE SET bits = postings.bits | EXCLUDED.bits`, keys, blocks, bits)
	if err != nil {
		return fmt.Errorf("insert postings: %w", err)
	}
	owners, lists := postings.Erasable(ps)
	if len(owners) == 0 {
		return nil
	}
	ids, blocks, bits := make([][]byte, len(owners)), make([]int64, len(owners)), make([]int64, len(owners))
	for i := range owners {
		ids[i], blocks[i], bits[i] = owners[i].Key[:], owners[i].Block, owners[i].Bits
	}
	_, err = tx.Exec(ctx, `INSERT INTO key_records (data_key, block, bits)
		SELECT data_key, block, bits FROM unnest($1::bytea[], $2::int8[], $3::int8[]) WITH ORDINALITY AS r (data_key, block, bits, n) ORDER BY n
		ON CONFLICT (data_key, block) DO UPDATE SET bits = key_records.bits | EXCLUDED.bits`, ids, blocks, bits)
	if err != nil {
		return fmt.Errorf("insert key records: %w", err)
	}
	return mergeLists(ctx, tx, lists)
}

// mergeLists merges the keys of lists, in block order, into the blocks'
// lists in block_terms, locking the rows in block order.
//
// One statement inserts the rows of new blocks and locks those stored
// already: ON CONFLICT DO UPDATE locks the conflicting row, and its WHERE
// false leaves it unwritten. A row that an erasure deletes (its list
// emptied) while the statement waits for its lock is inserted again once
// the erasure commits. Inserting with DO NOTHING and then locking with
// SELECT … FOR UPDATE would leave a gap between the two in which an
// erasure could delete the row; the SELECT would then skip it, and this
// step's keys would be listed nowhere.
func mergeLists(ctx context.Context, tx pgx.Tx, lists []postings.BlockList) error {
	blocks := make([]int64, len(lists))
	for i, l := range lists {
		blocks[i] = l.Block
	}
	_, err := tx.Exec(ctx, `INSERT INTO block_terms (block, keys)
		SELECT block, ''::bytea FROM unnest($1::int8[]) WITH ORDINALITY AS b (block, n) ORDER BY n
		ON CONFLICT (block) DO UPDATE SET keys = EXCLUDED.keys WHERE false`, blocks)
	if err != nil {
		return fmt.Errorf("lock the key lists of %d blocks: %w", len(blocks), err)
	}
	// The rows are locked: a plain read sees their latest versions.
	stored, err := readLists(ctx, tx, blocks, false)
	if err != nil {
		return err
	}
	var (
		changed []int64
		encoded [][]byte
	)
	for _, l := range lists {
		old, ok := stored[l.Block]
		if !ok {
			return fmt.Errorf("merge the key list of block %d: its row is missing after it was locked", l.Block)
		}
		// Merge returns the union, as long as the old list only when that
		// holds every key of the step's already.
		merged := postings.Merge(old, l.Keys)
		if len(merged) == len(old) {
			continue
		}
		changed, encoded = append(changed, l.Block), append(encoded, postings.AppendList(nil, merged))
	}
	if len(changed) == 0 {
		return nil
	}
	if _, err := tx.Exec(ctx, `UPDATE block_terms b SET keys = u.keys FROM unnest($1::int8[], $2::bytea[]) AS u (block, keys)
		WHERE b.block = u.block`, changed, encoded); err != nil {
		return fmt.Errorf("write the key lists of %d blocks: %w", len(changed), err)
	}
	return nil
}

// Query limits.
const (
	defaultQueryLimit = 100
	// rareCount is how many postings of each key, at most, Query counts to
	// find the rarest key of a query with several.
	rareCount = 10_000
	// maxTenantArms is the most tenants whose entries a query without keys
	// plans one at a time; with more, it walks the log.
	maxTenantArms = 32
)

// Counts that choose a plan. Tests lower them.
var (
	// rangeCount is how many of a tenant's entries in a time range, at
	// most, a query without keys counts, and reads and sorts rather than
	// walks the log.
	rangeCount = 20_000
	// walkSpan is the most entries of the log a query without keys walks
	// through, by its estimate, to reach a tenant's time range, rather than
	// read the range whole.
	walkSpan int64 = 50_000
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

// Query calls fn for each committed entry q selects, newest first. It reads
// them all before the first call, so it holds no connection while fn runs.
// Each query runs as an unnamed statement, planned for its own arguments (a
// plan cached for a tenant with most of the log would walk the log for a
// tenant with none of it). The plans, as EXPLAIN ANALYZE shows them on a
// million records (BenchmarkQuery -queryplans):
//
//   - With keys, the blocks of postings of the rarest key (the fewest
//     blocks below Before, counted up to rareCount each) newest first, a
//     page at a time, each other key's block of the same records looked
//     up: Limit; Nested Loop; Index Scan Backward using postings_pkey;
//     Index Scan using postings_pkey. The records their bits share are
//     then read by primary key and filtered, in the same snapshot (a
//     read-only transaction): Append of Index Scan using each partition's
//     records primary key (keyWalk).
//   - Without keys, tenants or time bounds, the log newest first: Limit;
//     Merge Append of Index Scan Backward using each partition's records
//     primary key.
//   - Without keys, with tenants (or, with a time bound, every tenant in
//     the log, up to maxTenantArms), the entries of each tenant in the time
//     bounds are counted up to rangeCount in records_tenant_observed. A
//     tenant with fewer has its range read and its sequence numbers sorted
//     (Index Only Scan using records_..._tenant_observed_idx; Sort). So
//     have the others whose range ends (by time) further than walkSpan
//     entries from the log's newest entry; the rest are found by walking
//     the log newest first. The arms' sequence numbers are merged, limited,
//     and their entries read by primary key.
//
// PostgreSQL does not choose between reading a tenant's time range and
// walking the log itself because it takes the range's entries to be
// spread evenly over the log: for an hour in the middle of a million
// records it walked half the log (700 ms). Kinds do not drive a query: a
// query for a rare kind of a busy tenant walks many entries. The worst case
// is a tenant with many entries both in and after the time range (a range
// of months, open at the start, say): its range is read. BenchmarkQuery on
// 10 million records, with a row per posting: a 200-record trace 3.7 ms,
// the first page of every other query under 30 ms (medians), but 390 ms
// for a range open at the start that ends mid-log, of a tenant with 2.5
// million entries. On 1 million records, the walk of blocks against a
// row per posting, two runs each on 2026-11-29: the trace 1.9–3.7 →
// 3.5–6.5 ms, a first page by an actor's key 0.9–1.4 → 1.8–3.1 ms, by a
// model's key in one tenant 1.4–1.5 → 4.5–7.8 ms.
func (db *DB) Query(ctx context.Context, q infertrail.Query, fn func(*infertrail.Entry) error) error {
	p, err := db.planQuery(ctx, q)
	if err != nil {
		return fmt.Errorf("query entries: %w", err)
	}
	var entries []infertrail.Entry
	switch {
	case p.keys != nil:
		entries, err = p.keys.run(ctx, db.pool)
	case p.query != "":
		// Planned for its own arguments: the plans of a query without
		// keys depend on them (a tenant's share of the log, a time range).
		entries, err = readEntries(ctx, db.pool, p.query, append([]any{pgx.QueryExecModeExec}, p.args...), nil)
	}
	if err != nil {
		return fmt.Errorf("query entries: %w", classify(err))
	}
	for i := range entries {
		if err := fn(&entries[i]); err != nil {
			return err
		}
	}
	return nil
}

// readEntries appends to dst the entries query selects (args may begin
// with a pgx.QueryExecMode).
func readEntries(ctx context.Context, q rowsQuerier, query string, args []any, dst []infertrail.Entry) ([]infertrail.Entry, error) {
	rows, err := q.Query(ctx, query, args...)
	if err != nil {
		return dst, err
	}
	defer rows.Close()
	for rows.Next() {
		var e infertrail.Entry
		if err := scanEntry(rows, &e); err != nil {
			return dst, err
		}
		dst = append(dst, e)
	}
	return dst, rows.Err()
}

// A plan answers a query: the SQL statement that selects its entries, or
// a walk of the postings of its keys; neither when it selects nothing.
type plan struct {
	query string
	args  []any
	keys  *keyWalk
}

// A keyWalk is a postings.Walk through the postings table: the keys and
// filters of its statements.
type keyWalk struct {
	postings.Walk
	keys    [][]byte // stored, the rarest first
	filters func(*sqlArgs) string
}

// blocksQuery returns the statement that reads a page of the walk's
// blocks from hi down, with the bits every key has, and its arguments.
func (w *keyWalk) blocksQuery(hi int64, page int) (string, []any) {
	var (
		b      strings.Builder
		args   sqlArgs
		shared = "p.bits"
	)
	for i := range w.keys[1:] {
		shared += fmt.Sprintf(" & k%d.bits", i)
	}
	b.WriteString(`SELECT p.block, ` + shared + ` FROM postings p`)
	for i, k := range w.keys[1:] {
		fmt.Fprintf(&b, ` JOIN postings k%d ON k%d.key = %s AND k%d.block = p.block`, i, i, args.add(k), i)
	}
	b.WriteString(` WHERE p.key = ` + args.add(w.keys[0]) + ` AND p.block <= ` + args.add(hi) + ` AND p.block >= ` + args.add(w.Lo))
	if len(w.keys) > 1 {
		b.WriteString(` AND ` + shared + ` <> 0`)
	}
	b.WriteString(` ORDER BY p.block DESC LIMIT ` + args.add(page))
	return b.String(), args
}

// entriesQuery returns the statement that reads the entries of seqs that
// pass the walk's filters, newest first, up to limit, and its arguments.
func (w *keyWalk) entriesQuery(seqs []int64, limit int) (string, []any) {
	var args sqlArgs
	return `SELECT ` + entryColumnsR + ` FROM records r WHERE r.seq = ANY(` + args.add(seqs) + `::int8[])` + w.filters(&args) +
		` ORDER BY r.seq DESC LIMIT ` + args.add(limit), args
}

// run returns the entries the walk selects, newest first, up to its limit,
// read in one read-only transaction (one snapshot). Its two statements
// are prepared once per connection (pgx's statement cache): one plan fits
// every key and page (a walk of the primary keys of postings and
// records), and planning them for each page cost about as much as running
// them (BenchmarkQuery on PostgreSQL, a query by actor: p50 2.1–2.8 ms
// planned each time, 1.05–1.08 ms prepared).
func (w *keyWalk) run(ctx context.Context, pool *pgxpool.Pool) ([]infertrail.Entry, error) {
	var out []infertrail.Entry
	err := pgx.BeginTxFunc(ctx, pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		out = out[:0]
		return w.Run(func(hi int64, page int, fn func(block, bits int64)) error {
			query, args := w.blocksQuery(hi, page)
			rows, err := tx.Query(ctx, query, args...)
			if err != nil {
				return fmt.Errorf("read postings: %w", err)
			}
			var block, bits int64
			if _, err := pgx.ForEachRow(rows, []any{&block, &bits}, func() error {
				fn(block, bits)
				return nil
			}); err != nil {
				return fmt.Errorf("read postings: %w", err)
			}
			return nil
		}, func(seqs []int64, want int) (int, error) {
			n := len(out)
			query, args := w.entriesQuery(seqs, want)
			var err error
			out, err = readEntries(ctx, tx, query, args, out)
			return len(out) - n, err
		})
	})
	return out, err
}

// sqlArgs collects the arguments of an SQL statement.
type sqlArgs []any

// add appends v and returns its placeholder.
func (a *sqlArgs) add(v any) string {
	*a = append(*a, v)
	return "$" + strconv.Itoa(len(*a))
}

// entryFilters returns the conditions, each starting with " AND ", that
// keep the entries of records aliased r that q's kinds and time bounds
// select, and those of tenants.
func entryFilters(a *sqlArgs, q infertrail.Query, tenants []string) string {
	var b strings.Builder
	switch len(tenants) {
	case 0:
	case 1:
		b.WriteString(` AND r.tenant = ` + a.add(tenants[0]))
	default:
		b.WriteString(` AND r.tenant = ANY(` + a.add(tenants) + `::text[])`)
	}
	if kinds := uniq(q.Kinds); len(kinds) > 0 {
		ks := make([]string, len(kinds))
		for i, k := range kinds {
			ks[i] = string(k)
		}
		b.WriteString(` AND r.kind = ANY(` + a.add(ks) + `::text[])`)
	}
	if q.From != 0 {
		b.WriteString(` AND r.observed >= ` + a.add(q.From))
	}
	if q.To != 0 {
		b.WriteString(` AND r.observed < ` + a.add(q.To))
	}
	return b.String()
}

// planQuery returns the plan that answers q.
func (db *DB) planQuery(ctx context.Context, q infertrail.Query) (plan, error) {
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
	// record before q.To, and a walk of postings stops at the first block
	// that can hold one from q.From. (A walk of records gets no lower
	// bound: the planner then reads a bitmap of the range and sorts it,
	// where walking the primary key backward stops at the page's end.)
	floor := int64(0)
	if q.To != 0 || q.From != 0 {
		var last, first *int64
		// One pass over the map: one row per 4,096 records.
		if err := db.pool.QueryRow(ctx, `SELECT max(block) FILTER (WHERE $1::bigint = 0 OR min_time < $1),
			min(block) FILTER (WHERE max_time >= $2) FROM time_blocks`, q.To, q.From).Scan(&last, &first); err != nil {
			return plan{}, fmt.Errorf("read the time blocks: %w", classify(err))
		}
		if last == nil || first == nil || *first > *last {
			return plan{}, nil // no block holds a record in the range
		}
		before = min(before, (*last+1)<<infertrail.TimeBlockBits)
		floor = *first << infertrail.TimeBlockBits
	}
	tenants := uniq(q.Tenants)
	var args sqlArgs
	if keys := uniq(q.Keys); len(keys) > 0 {
		lo, hi := postings.BlockRange(floor, before)
		if len(keys) > 1 {
			if keys, err = db.rarestFirst(ctx, keys, lo, hi); err != nil || keys == nil {
				return plan{}, err // keys == nil: no entry carries every key
			}
		}
		w := &keyWalk{Walk: postings.Walk{Floor: floor, Before: before, Lo: lo, Hi: hi, Limit: limit},
			keys: storedKeys(keys, func(k string) string { return k })}
		w.filters = func(a *sqlArgs) string { return entryFilters(a, q, tenants) }
		w.Filtered = w.filters(new(sqlArgs)) != ""
		return plan{keys: w}, nil
	}
	timed := q.From != 0 || q.To != 0
	if tenants == nil && timed {
		// A time range of the whole log is the union of its tenants'.
		if tenants, err = db.logTenants(ctx, maxTenantArms+1); err != nil {
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
		return plan{query: `SELECT ` + entryColumnsR + ` FROM records r WHERE r.seq < ` + args.add(before) + entryFilters(&args, q, tenants) +
			` ORDER BY r.seq DESC LIMIT ` + args.add(limit), args: args}, nil
	}
	ranged, walked, err := db.chooseArms(ctx, q, tenants, before)
	if err != nil {
		return plan{}, err
	}
	var arms []string
	for _, t := range ranged {
		// OFFSET 0 keeps the planner from walking the log to order the
		// range: it reads the range, and the sort takes its newest.
		arms = append(arms, `(SELECT seq, period FROM (SELECT r.seq, r.period FROM records r WHERE r.seq < `+args.add(before)+
			entryFilters(&args, q, []string{t})+` OFFSET 0) x ORDER BY seq DESC LIMIT `+args.add(limit)+`)`)
	}
	if len(walked) > 0 {
		if len(arms) == 0 {
			return plan{query: `SELECT ` + entryColumnsR + ` FROM records r WHERE r.seq < ` + args.add(before) + entryFilters(&args, q, walked) +
				` ORDER BY r.seq DESC LIMIT ` + args.add(limit), args: args}, nil
		}
		arms = append(arms, `(SELECT r.seq, r.period FROM records r WHERE r.seq < `+args.add(before)+entryFilters(&args, q, walked)+
			` ORDER BY r.seq DESC LIMIT `+args.add(limit)+`)`)
	}
	if len(arms) == 0 {
		return plan{}, nil
	}
	return plan{query: `SELECT ` + entryColumnsR + ` FROM (SELECT seq, period FROM (` + strings.Join(arms, ` UNION ALL `) + `) u ORDER BY seq DESC LIMIT ` +
		args.add(limit) + `) c JOIN records r ON r.seq = c.seq AND r.period = c.period ORDER BY r.seq DESC`, args: args}, nil
}

// chooseArms splits tenants into those whose entries in q's time bounds a
// query reads from records_tenant_observed and those it finds by walking
// the log; tenants without such entries are in neither. It counts each
// tenant's entries in the bounds up to rangeCount, and finds the log's
// newest entry and each tenant's newest in the bounds by time, in one
// statement.
func (db *DB) chooseArms(ctx context.Context, q infertrail.Query, tenants []string, before int64) (ranged, walked []string, err error) {
	var (
		b    strings.Builder
		args sqlArgs
	)
	b.WriteString(`SELECT (SELECT coalesce(max(seq), -1) FROM records WHERE seq < ` + args.add(before) + `)`)
	times := infertrail.Query{From: q.From, To: q.To}
	for _, t := range tenants {
		b.WriteString(`, (SELECT count(*) FROM (SELECT FROM records r WHERE r.seq < ` + args.add(before) + entryFilters(&args, times, []string{t}) +
			` LIMIT ` + args.add(rangeCount) + `) c)`)
		b.WriteString(`, (SELECT r.seq FROM records r WHERE true` + entryFilters(&args, times, []string{t}) + ` ORDER BY r.observed DESC LIMIT 1)`)
	}
	counts := make([]int64, len(tenants))
	lasts := make([]pgtype.Int8, len(tenants))
	var newest int64
	dst := []any{&newest}
	for i := range tenants {
		dst = append(dst, &counts[i], &lasts[i])
	}
	if err := db.pool.QueryRow(ctx, b.String(), append([]any{pgx.QueryExecModeExec}, args...)...).Scan(dst...); err != nil {
		return nil, nil, fmt.Errorf("count the entries of %d tenants: %w", len(tenants), classify(err))
	}
	for i, t := range tenants {
		switch {
		case counts[i] == 0:
		case counts[i] >= int64(rangeCount) && newest-lasts[i].Int64 < walkSpan:
			walked = append(walked, t)
		default:
			ranged = append(ranged, t)
		}
	}
	return ranged, walked, nil
}

// logTenants returns up to n of the tenants in the log, with one index seek
// each (a loose index scan of records_tenant_observed).
func (db *DB) logTenants(ctx context.Context, n int) ([]string, error) {
	rows, err := db.pool.Query(ctx, `WITH RECURSIVE t (tenant) AS (
			(SELECT tenant FROM records ORDER BY tenant LIMIT 1)
			UNION ALL
			SELECT (SELECT r.tenant FROM records r WHERE r.tenant > t.tenant ORDER BY r.tenant LIMIT 1) FROM t WHERE t.tenant IS NOT NULL)
		SELECT tenant FROM t WHERE tenant IS NOT NULL LIMIT $1`, n)
	if err != nil {
		return nil, fmt.Errorf("list tenants: %w", classify(err))
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("list tenants: %w", classify(err))
	}
	return out, nil
}

// rarestFirst returns keys ordered by their number of blocks of postings
// from block lo to hi, counted up to rareCount each, fewest first; or nil
// if a key has none.
func (db *DB) rarestFirst(ctx context.Context, keys []string, lo, hi int64) ([]string, error) {
	rows, err := db.pool.Query(ctx, `SELECT k.n, (SELECT count(*) FROM (SELECT FROM postings p WHERE p.key = k.key AND p.block <= $2 AND p.block >= $3 LIMIT $4) c)
		FROM unnest($1::bytea[]) WITH ORDINALITY AS k (key, n)`, storedKeys(keys, func(k string) string { return k }), hi, lo, rareCount)
	if err != nil {
		return nil, fmt.Errorf("count postings: %w", classify(err))
	}
	counts := make(map[string]int64, len(keys))
	var i, n int64
	if _, err := pgx.ForEachRow(rows, []any{&i, &n}, func() error {
		if i < 1 || i > int64(len(keys)) {
			return fmt.Errorf("count of key %d of %d", i, len(keys))
		}
		counts[keys[i-1]] = n
		return nil
	}); err != nil {
		return nil, fmt.Errorf("count postings: %w", classify(err))
	}
	for _, k := range keys {
		if counts[k] == 0 {
			return nil, nil
		}
	}
	out := slices.Clone(keys)
	slices.SortStableFunc(out, func(a, b string) int { return cmp.Compare(counts[a], counts[b]) })
	return out, nil
}

// uniq returns vs without repeats, in their first order.
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
// records and their finding=<detector> postings, in one transaction, and
// then sets their N and (when zero) Time. It locks the findings table
// against other writers (readers go on), so that N increases in commit
// order and a reader paging with Before never skips a finding that commits
// later with a smaller N.
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
	insert := func(tx pgx.Tx) error {
		clear(ns)
		if _, err := tx.Exec(ctx, `LOCK TABLE findings IN SHARE ROW EXCLUSIVE MODE`); err != nil {
			return fmt.Errorf("lock findings: %w", err)
		}
		b := &pgx.Batch{}
		for i := range fs {
			f := &fs[i]
			times[i] = cmp.Or(f.Time, now)
			records := f.Records
			if records == nil {
				records = []int64{}
			}
			b.Queue(`INSERT INTO findings (id, detector, severity, tenant, subject, records, summary, time)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (id) DO NOTHING RETURNING n`,
				pgtype.UUID{Bytes: f.ID, Valid: true}, f.Detector, string(f.Severity), f.Tenant, f.Subject, records, f.Summary, times[i]).
				QueryRow(func(row pgx.Row) error {
					err := row.Scan(&ns[i])
					if errors.Is(err, pgx.ErrNoRows) {
						return nil // stored already
					}
					return err
				})
		}
		if err := tx.SendBatch(ctx, b).Close(); err != nil {
			return fmt.Errorf("insert findings: %w", err)
		}
		var (
			seqs, fns []int64
			ps        []infertrail.Posting
		)
		for i := range fs {
			if ns[i] == 0 {
				continue
			}
			key := infertrail.IndexKey(infertrail.IndexFinding, fs[i].Detector)
			for _, seq := range fs[i].Records {
				seqs, fns = append(seqs, seq), append(fns, ns[i])
				ps = append(ps, infertrail.Posting{Key: key, Seq: seq})
			}
		}
		if len(seqs) > 0 {
			if _, err := tx.Exec(ctx, `INSERT INTO finding_records (seq, n) SELECT * FROM unnest($1::int8[], $2::int8[]) ON CONFLICT DO NOTHING`, seqs, fns); err != nil {
				return fmt.Errorf("insert records of findings: %w", err)
			}
		}
		return insertPostings(ctx, tx, postings.Sort(ps))
	}
	err := db.appends.Write(ctx, func() error { return pgx.BeginFunc(ctx, db.pool, insert) })
	if err != nil {
		return fmt.Errorf("add %d findings: %w", len(fs), classify(err))
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

// Findings calls fn for each stored finding q selects, newest first. It
// reads them all before the first call, so fn may call the store. With Seq,
// the finding_records range of the record drives the query; else the
// findings are walked newest first, through the (tenant, n), (detector, n)
// or (subject, n) index where PostgreSQL finds one selective.
func (db *DB) Findings(ctx context.Context, q infertrail.FindingQuery, fn func(*infertrail.Finding) error) error {
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
	var (
		b    strings.Builder
		args []any
	)
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	b.WriteString(`SELECT n, id, detector, severity, tenant, subject, records, summary, time FROM findings f WHERE f.n < ` + arg(before))
	if len(q.Tenants) > 0 {
		b.WriteString(` AND f.tenant = ANY(` + arg(uniq(q.Tenants)) + `::text[])`)
	}
	if len(q.Detectors) > 0 {
		b.WriteString(` AND f.detector = ANY(` + arg(uniq(q.Detectors)) + `::text[])`)
	}
	if q.Subject != "" {
		b.WriteString(` AND f.subject = ` + arg(q.Subject))
	}
	if q.Seq >= 0 {
		b.WriteString(` AND f.n IN (SELECT n FROM finding_records WHERE seq = ` + arg(q.Seq) + `)`)
	}
	b.WriteString(` ORDER BY f.n DESC LIMIT ` + arg(limit))
	rows, err := db.pool.Query(ctx, b.String(), append([]any{pgx.QueryExecModeExec}, args...)...)
	if err != nil {
		return fmt.Errorf("query findings: %w", classify(err))
	}
	var (
		out      []infertrail.Finding
		f        infertrail.Finding
		id       pgtype.UUID
		sev      string
		detector string
	)
	_, err = pgx.ForEachRow(rows, []any{&f.N, &id, &detector, &sev, &f.Tenant, &f.Subject, &f.Records, &f.Summary, &f.Time}, func() error {
		f.ID, f.Detector, f.Severity = id.Bytes, detector, infertrail.Severity(sev)
		out = append(out, f)
		f.Records = nil
		return nil
	})
	if err != nil {
		return fmt.Errorf("query findings: %w", classify(err))
	}
	for i := range out {
		if err := fn(&out[i]); err != nil {
			return err
		}
	}
	return nil
}
