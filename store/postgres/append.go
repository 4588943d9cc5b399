package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/infertrail/infertrail"
	"github.com/infertrail/infertrail/store/internal/leafcol"
)

// hashesPerChunk is the number of consecutive stored hashes in one row of
// the hashes table.
const hashesPerChunk = 64

// periodOf returns the append period of t: its UTC month, counted from
// January of year 0.
func periodOf(t time.Time) int32 {
	t = t.UTC()
	return int32(t.Year()*12 + int(t.Month()) - 1)
}

// partitionName returns the name of table's partition for period p, such
// as records_2025_01.
func partitionName(table string, p int32) string {
	return fmt.Sprintf("%s_%04d_%02d", table, p/12, p%12+1)
}

// partitioned lists the tables partitioned by append period.
var partitioned = []string{"records", "blobs"}

// ensurePartitions creates the partitions of period p of every partitioned
// table that are missing. It runs in an append transaction, which holds the
// log head, so no two nodes create partitions at once. A partition is
// created as a table of its own and then attached: ATTACH PARTITION locks
// the parent in SHARE UPDATE EXCLUSIVE mode, which does not block readers,
// where CREATE TABLE … PARTITION OF would lock them out.
func ensurePartitions(ctx context.Context, tx pgx.Tx, p int32) error {
	for _, table := range partitioned {
		name := partitionName(table, p)
		var exists bool
		if err := tx.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, pgx.Identifier{name}.Sanitize()).Scan(&exists); err != nil {
			return fmt.Errorf("look up partition %s: %w", name, err)
		}
		if exists {
			continue
		}
		id, parent := pgx.Identifier{name}.Sanitize(), pgx.Identifier{table}.Sanitize()
		sql := fmt.Sprintf(`CREATE TABLE %s (LIKE %s INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING STORAGE);
			ALTER TABLE %s ATTACH PARTITION %s FOR VALUES FROM (%d) TO (%d)`, id, parent, parent, id, p, p+1)
		if _, err := tx.Exec(ctx, sql); err != nil {
			return fmt.Errorf("create partition %s: %w", name, err)
		}
	}
	return nil
}

// BeginAppend begins a transaction and locks the log head, waiting (bounded
// by ctx) while another transaction, from this process or another, holds
// it. The transaction lives no longer than ctx: once ctx is done, its
// connection is closed, which makes the server roll it back and release the
// log head even if neither Commit nor Rollback is ever called. Call one of
// them all the same, to return the connection to the pool.
//
// The first append transaction of a month creates that month's partitions
// and the next month's, if missing.
func (db *DB) BeginAppend(ctx context.Context) (infertrail.AppendTx, error) {
	db.appends.Begin() // until Commit or Rollback: the index's writes wait
	tx, err := db.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.ReadCommitted})
	if err != nil {
		db.appends.End()
		return nil, fmt.Errorf("begin append: %w", classify(err))
	}
	t := &appendTx{db: db, tx: tx, ctx: ctx}
	t.stop = context.AfterFunc(ctx, t.abandon)
	if err := t.begin(ctx); err != nil {
		_ = t.Rollback()
		return nil, fmt.Errorf("begin append: %w", classify(err))
	}
	return t, nil
}

type appendTx struct {
	db   *DB
	tx   pgx.Tx
	ctx  context.Context // BeginAppend's, for Commit
	stop func() bool     // stops abandon from running when ctx is done
	// mu keeps abandon from closing the connection once Commit or
	// Rollback has handed it back to the pool.
	mu sync.Mutex

	size     int64 // tree size when the transaction began
	erasures int64 // log_head.erasures when the transaction began
	n        int64 // entries appended so far
	period   int32
	// failed is the first error of a statement run in the transaction;
	// PostgreSQL has then aborted it, and it can only be rolled back.
	failed error
	done   bool
}

// abandon closes the transaction's connection when BeginAppend's context is
// done. Closing a net.Conn is safe while another goroutine uses it.
func (t *appendTx) abandon() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.done {
		_ = t.tx.Conn().PgConn().Conn().Close()
	}
}

func (t *appendTx) begin(ctx context.Context) error {
	var head int32
	var now time.Time
	err := t.tx.QueryRow(ctx, `SELECT size, period, erasures, clock_timestamp() FROM log_head WHERE id FOR UPDATE`).Scan(&t.size, &head, &t.erasures, &now)
	if err != nil {
		return fmt.Errorf("lock log head: %w", err)
	}
	if t.db.now != nil {
		now = t.db.now()
	}
	t.period = max(head, periodOf(now))
	if t.period == head {
		return nil
	}
	for _, p := range []int32{t.period, t.period + 1} {
		if err := ensurePartitions(ctx, t.tx, p); err != nil {
			return err
		}
	}
	b := &pgx.Batch{}
	b.Queue(`INSERT INTO periods (period, first_seq) VALUES ($1, $2) ON CONFLICT DO NOTHING`, t.period, t.size)
	b.Queue(`UPDATE log_head SET period = $1 WHERE id`, t.period)
	if err := t.tx.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("start period %s: %w", partitionName("records", t.period), err)
	}
	return nil
}

func (t *appendTx) Size() int64 { return t.size }

func (t *appendTx) Erasures() int64 { return t.erasures }

// fail records err, the error of a statement run in the transaction, which
// PostgreSQL has therefore aborted, and returns it.
func (t *appendTx) fail(err error) error {
	if t.failed == nil {
		t.failed = err
	}
	return err
}

func (t *appendTx) usable() error {
	switch {
	case t.done:
		return fmt.Errorf("append transaction: %w", pgx.ErrTxClosed)
	case t.failed != nil:
		return fmt.Errorf("append transaction failed earlier: %w", t.failed)
	}
	return nil
}

func (t *appendTx) Lookup(ctx context.Context, ids []infertrail.UUID) (map[infertrail.UUID]infertrail.Entry, error) {
	if err := t.usable(); err != nil {
		return nil, err
	}
	out := make(map[infertrail.UUID]infertrail.Entry)
	if len(ids) == 0 {
		return out, nil
	}
	rows, err := t.tx.Query(ctx, `SELECT id, seq, mac FROM records WHERE id = ANY($1)`, uuids(ids))
	if err != nil {
		return nil, fmt.Errorf("look up ids: %w", classify(err))
	}
	var (
		id  pgtype.UUID
		e   infertrail.Entry
		mac []byte
	)
	_, err = pgx.ForEachRow(rows, []any{&id, &e.Seq, &mac}, func() error {
		e.ID = id.Bytes
		copy(e.MAC[:], mac)
		out[e.ID] = e
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("look up ids: %w", classify(err))
	}
	return out, nil
}

func (t *appendTx) ReadHashes(ctx context.Context, indexes []int64) ([]tlog.Hash, error) {
	if err := t.usable(); err != nil {
		return nil, err
	}
	// Hashes this transaction appended are readable too, so that a later
	// Append of the same transaction can build on them.
	limit := tlog.StoredHashCount(t.size + t.n)
	for _, i := range indexes {
		if i >= limit {
			return nil, fmt.Errorf("read hash %d: tree of size %d has %d: %w", i, t.size+t.n, limit, infertrail.ErrNotFound)
		}
	}
	return readHashes(ctx, t.tx, indexes)
}

// Append writes entries with COPY, and blobs and hashes in one more round
// trip. An id already appended in the current period fails it with an error
// wrapping infertrail.ErrConflict; ids of earlier periods are only caught by
// Lookup, which the caller must call first.
func (t *appendTx) Append(ctx context.Context, entries []infertrail.Entry, blobs []infertrail.Blob, hashes []tlog.Hash) error {
	if err := t.usable(); err != nil {
		return err
	}
	next := t.size + t.n
	if err := validate(next, entries, blobs, hashes); err != nil {
		return err
	}
	err := t.append(ctx, next, entries, blobs, hashes)
	if err != nil {
		t.failed = err
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "23505" && strings.HasSuffix(pgErr.ConstraintName, "_id_period_key") {
			err = fmt.Errorf("%w: an id is already in the log: %w", infertrail.ErrConflict, err)
		}
		return fmt.Errorf("append %d entries at %d: %w", len(entries), next, classify(err))
	}
	t.n += int64(len(entries))
	return nil
}

func validate(next int64, entries []infertrail.Entry, blobs []infertrail.Blob, hashes []tlog.Hash) error {
	for i := range entries {
		e := &entries[i]
		if e.Seq != next+int64(i) {
			return fmt.Errorf("append: entry %d has seq %d, want %d: %w", i, e.Seq, next+int64(i), infertrail.ErrInvalid)
		}
		if e.ID.IsZero() {
			return fmt.Errorf("append: entry %d: nil id: %w", i, infertrail.ErrInvalid)
		}
	}
	for i := range blobs {
		if b := &blobs[i]; b.Data == nil {
			return fmt.Errorf("append: blob %d: no data: %w", i, infertrail.ErrInvalid)
		}
	}
	end := next + int64(len(entries))
	if want := tlog.StoredHashCount(end) - tlog.StoredHashCount(next); int64(len(hashes)) != want {
		return fmt.Errorf("append: %d hashes for entries %d to %d, want %d: %w", len(hashes), next, end, want, infertrail.ErrInvalid)
	}
	return nil
}

func (t *appendTx) append(ctx context.Context, next int64, entries []infertrail.Entry, blobs []infertrail.Blob, hashes []tlog.Hash) error {
	if len(entries) > 0 {
		// Straight into the period's partition, which exists since the
		// transaction began: COPY skips routing rows through the parent.
		if _, err := t.tx.CopyFrom(ctx, pgx.Identifier{partitionName("records", t.period)}, recordColumns, &entrySource{period: t.period, entries: entries, leaves: leafcol.CompactAll(entries), i: -1}); err != nil {
			return fmt.Errorf("copy records: %w", err)
		}
	}
	b := &pgx.Batch{}
	if len(blobs) >= copyMin {
		if err := writeBlobs(ctx, t.tx, t.period, blobs); err != nil {
			return fmt.Errorf("write blobs: %w", err)
		}
	} else if len(blobs) > 0 {
		b.Queue(insertBlobs, blobArgs(t.period, blobs)...)
	}
	if missing := unsentBlobs(entries, blobs); len(missing) > 0 {
		// Blobs that entries reference but that the caller did not send,
		// because it knows they are stored, may be stored only in earlier
		// periods. Copy them into this one, so that each period holds every
		// blob its records reference and retention can drop whole periods.
		b.Queue(`WITH need AS MATERIALIZED (
				SELECT u.id FROM unnest($2::bytea[]) AS u (id)
				WHERE NOT EXISTS (SELECT FROM blobs c WHERE c.period = $1 AND c.id = u.id))
			INSERT INTO blobs (period, id, codec, data, key_id)
			SELECT DISTINCT ON (o.id) $1, o.id, o.codec, o.data, o.key_id
			FROM need JOIN blobs o ON o.id = need.id AND o.period < $1
			ORDER BY o.id, o.period
			ON CONFLICT DO NOTHING`, t.period, missing)
	}
	if len(hashes) > 0 {
		first := tlog.StoredHashCount(next)
		chunk, off := first/hashesPerChunk, first%hashesPerChunk
		if off != 0 {
			k := min(int(hashesPerChunk-off), len(hashes))
			want := off * tlog.HashSize
			b.Queue(`UPDATE hashes SET data = data || $2 WHERE chunk = $1 AND length(data) = $3`,
				chunk, packHashes(hashes[:k]), want).Exec(func(tag pgconn.CommandTag) error {
				if tag.RowsAffected() != 1 {
					return fmt.Errorf("extend hash chunk %d: it does not hold %d bytes", chunk, want)
				}
				return nil
			})
			hashes = hashes[k:]
			chunk++
		}
		if len(hashes) > 0 {
			var chunks []int64
			var data [][]byte
			for len(hashes) > 0 {
				k := min(hashesPerChunk, len(hashes))
				chunks = append(chunks, chunk)
				data = append(data, packHashes(hashes[:k]))
				hashes = hashes[k:]
				chunk++
			}
			b.Queue(`INSERT INTO hashes (chunk, data) SELECT * FROM unnest($1::bigint[], $2::bytea[])`, chunks, data)
		}
	}
	if len(entries) > 0 {
		// Widen the time zone map by the entries' times, one row per
		// block of sequence numbers they fall in.
		for i := 0; i < len(entries); {
			block := entries[i].Seq >> infertrail.TimeBlockBits
			lo, hi := entries[i].Time, entries[i].Time
			j := i + 1
			for ; j < len(entries) && entries[j].Seq>>infertrail.TimeBlockBits == block; j++ {
				lo, hi = min(lo, entries[j].Time), max(hi, entries[j].Time)
			}
			b.Queue(`INSERT INTO time_blocks (block, min_time, max_time) VALUES ($1, $2, $3)
				ON CONFLICT (block) DO UPDATE SET min_time = least(time_blocks.min_time, excluded.min_time),
				max_time = greatest(time_blocks.max_time, excluded.max_time)`, block, lo, hi)
			i = j
		}
		b.Queue(`UPDATE log_head SET size = $1 WHERE id`, next+int64(len(entries)))
	}
	if b.Len() == 0 {
		return nil
	}
	if err := t.tx.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("write blobs and hashes: %w", err)
	}
	return nil
}

// copyMin is the fewest rows that a transaction writes with COPY (see
// copyNew) rather than with one INSERT in its batch of statements: below
// it, the round trips of the savepoint cost more than COPY saves.
const copyMin = 32

// copyNew inserts n rows, expected to be new, into table with COPY, in a
// savepoint; if one is already stored (a unique violation), it rolls back to
// the savepoint and runs insert, which must skip rows already stored (INSERT
// … ON CONFLICT DO NOTHING). For a commit's worth of data keys or blobs,
// COPY takes 0.6–0.7 of the time of such an INSERT over unnested arrays
// (BenchmarkWriteRows), for one more round trip (the savepoint).
func copyNew(ctx context.Context, tx pgx.Tx, table string, columns []string, n int, row func(i int) []any, insert func() error) error {
	sp, err := tx.Begin(ctx)
	if err != nil {
		return err
	}
	_, err = sp.CopyFrom(ctx, pgx.Identifier{table}, columns, pgx.CopyFromSlice(n, func(i int) ([]any, error) {
		return row(i), nil
	}))
	if err == nil {
		// The savepoint is left as it is: the transaction's commit commits
		// what was written after it too, and releasing it would cost a
		// round trip, which under load is milliseconds of the log head's
		// time. (A later savepoint nests in it; rolling back to that one
		// undoes only what followed it.)
		return nil
	}
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "23505" { // unique_violation
		return err
	}
	if err := sp.Rollback(ctx); err != nil {
		return err
	}
	return insert()
}

// writeBlobs writes blobs into period's partition, skipping ids stored
// there. Blobs are content-addressed and the sealer sends only those it does
// not know to be stored, so they are new but for one it has forgotten or
// another node stored: they are copied (copyNew).
func writeBlobs(ctx context.Context, tx pgx.Tx, period int32, blobs []infertrail.Blob) error {
	return copyNew(ctx, tx, partitionName("blobs", period), []string{"period", "id", "codec", "data", "key_id"}, len(blobs), func(i int) []any {
		return []any{period, blobs[i].ID[:], int16(blobs[i].Codec), blobs[i].Data, keyArg(&blobs[i].Key)}
	}, func() error {
		_, err := tx.Exec(ctx, insertBlobs, blobArgs(period, blobs)...)
		return err
	})
}

// insertBlobs inserts the blobs of blobArgs into a period in one
// statement, skipping ids stored there; of an id repeated, the first copy
// is stored.
const insertBlobs = `INSERT INTO blobs (period, id, codec, data, key_id)
	SELECT $1, u.id, u.codec, u.data, u.key_id
	FROM unnest($2::bytea[], $3::int2[], $4::bytea[], $5::bytea[]) WITH ORDINALITY AS u (id, codec, data, key_id, n)
	ORDER BY u.n
	ON CONFLICT DO NOTHING`

func blobArgs(period int32, blobs []infertrail.Blob) []any {
	ids := make([][]byte, len(blobs))
	codecs := make([]int16, len(blobs))
	data := make([][]byte, len(blobs))
	keys := make([][]byte, len(blobs)) // nil, which is NULL, when not encrypted
	for i := range blobs {
		ids[i], codecs[i], data[i], keys[i] = blobs[i].ID[:], int16(blobs[i].Codec), blobs[i].Data, keyArg(&blobs[i].Key)
	}
	return []any{period, ids, codecs, data, keys}
}

// unsentBlobs returns the ids of the blobs that entries reference and blobs
// does not hold.
func unsentBlobs(entries []infertrail.Entry, blobs []infertrail.Blob) [][]byte {
	sent := make(map[infertrail.BlobID]bool, len(blobs))
	for i := range blobs {
		sent[blobs[i].ID] = true
	}
	var out [][]byte
	for i := range entries {
		for _, r := range entries[i].Content {
			for k := range r.Blobs {
				if id := &r.Blobs[k]; !sent[*id] {
					sent[*id] = true
					out = append(out, id[:])
				}
			}
		}
	}
	return out
}

func packHashes(hs []tlog.Hash) []byte {
	b := make([]byte, 0, len(hs)*tlog.HashSize)
	for _, h := range hs {
		b = append(b, h[:]...)
	}
	return b
}

var recordColumns = []string{"period", "seq", "id", "mac", "tenant", "kind", "observed", "received",
	"session_id", "trace_id", "actor_id", "leaf", "content"}

// entrySource feeds entries to COPY.
type entrySource struct {
	period  int32
	entries []infertrail.Entry
	leaves  [][]byte // the entries' leaves as the leaf column keeps them
	i       int
	row     [13]any
}

func (s *entrySource) Next() bool {
	s.i++
	return s.i < len(s.entries)
}

func (s *entrySource) Values() ([]any, error) {
	e := &s.entries[s.i]
	s.row = [13]any{s.period, e.Seq, pgtype.UUID{Bytes: e.ID, Valid: true}, e.MAC[:], e.Tenant, string(e.Kind),
		e.Time, e.Received, e.SessionID, e.TraceID, e.ActorID, s.leaves[s.i], infertrail.MarshalContentRefs(e.Content)}
	return s.row[:], nil
}

func (s *entrySource) Err() error { return nil }

// Commit commits the transaction, bounded by the context given to
// BeginAppend. Once it returns nil, the batch is durable (synchronous_commit
// is on for every connection of the store). If the connection drops during
// Commit, the error wraps infertrail.ErrUnavailable and the outcome is
// unknown: look the batch's ids up before appending it again.
func (t *appendTx) Commit() error {
	if err := t.usable(); err != nil {
		_ = t.Rollback()
		return fmt.Errorf("commit append: %w", err)
	}
	t.stop()
	t.mu.Lock()
	defer t.mu.Unlock()
	t.done = true
	defer t.db.appends.End()
	if err := t.tx.Commit(t.ctx); err != nil {
		return fmt.Errorf("commit append: %w", classify(err))
	}
	return nil
}

// Rollback abandons the transaction. It cannot fail: when the rollback
// statement itself fails, the connection is closed, and the server rolls
// back the transaction of a closed connection.
func (t *appendTx) Rollback() error {
	if t.done {
		return nil
	}
	t.stop()
	t.mu.Lock()
	defer t.mu.Unlock()
	t.done = true
	defer t.db.appends.End()
	ctx, cancel := context.WithTimeout(context.Background(), t.db.rollbackTimeout)
	defer cancel()
	_ = t.tx.Rollback(ctx)
	return nil
}

func uuids(ids []infertrail.UUID) []pgtype.UUID {
	out := make([]pgtype.UUID, len(ids))
	for i, id := range ids {
		out[i] = pgtype.UUID{Bytes: id, Valid: true}
	}
	return out
}
