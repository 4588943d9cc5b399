package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/infertrail/infertrail"
	"github.com/infertrail/infertrail/store/internal/leafcol"
)

// TreeSize returns the committed tree size.
func (db *DB) TreeSize(ctx context.Context) (int64, error) {
	var n int64
	if err := db.pool.QueryRow(ctx, `SELECT size FROM log_head WHERE id`).Scan(&n); err != nil {
		return 0, fmt.Errorf("read tree size: %w", classify(err))
	}
	return n, nil
}

// ReadHashes returns committed stored hashes, reading each distinct chunk of
// 64 once.
func (db *DB) ReadHashes(ctx context.Context, indexes []int64) ([]tlog.Hash, error) {
	return readHashes(ctx, db.pool, indexes)
}

type rowsQuerier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

func readHashes(ctx context.Context, q rowsQuerier, indexes []int64) ([]tlog.Hash, error) {
	if len(indexes) == 0 {
		return []tlog.Hash{}, nil
	}
	chunks := make([]int64, 0, len(indexes))
	seen := make(map[int64]bool, len(indexes))
	for _, i := range indexes {
		if i < 0 {
			return nil, fmt.Errorf("read hash %d: negative index: %w", i, infertrail.ErrInvalid)
		}
		if c := i / hashesPerChunk; !seen[c] {
			seen[c] = true
			chunks = append(chunks, c)
		}
	}
	rows, err := q.Query(ctx, `SELECT chunk, data FROM hashes WHERE chunk = ANY($1)`, chunks)
	if err != nil {
		return nil, fmt.Errorf("read hashes: %w", classify(err))
	}
	data := make(map[int64][]byte, len(chunks))
	var (
		chunk int64
		b     []byte
	)
	if _, err := pgx.ForEachRow(rows, []any{&chunk, &b}, func() error {
		data[chunk] = b
		b = nil
		return nil
	}); err != nil {
		return nil, fmt.Errorf("read hashes: %w", classify(err))
	}
	out := make([]tlog.Hash, len(indexes))
	for k, i := range indexes {
		off := int(i%hashesPerChunk) * tlog.HashSize
		d := data[i/hashesPerChunk]
		if off+tlog.HashSize > len(d) {
			return nil, fmt.Errorf("read hash %d: %w", i, infertrail.ErrNotFound)
		}
		copy(out[k][:], d[off:])
	}
	return out, nil
}

// entriesPerQuery is how many entries Entries reads with one query. It
// holds no connection while fn runs.
const entriesPerQuery = 1000

const entryColumns = `seq, id, mac, tenant, kind, observed, received, session_id, trace_id, actor_id, leaf, content`

// Entries calls fn for each committed entry with start <= Seq < end, in
// order, reading only the partitions that hold the range.
func (db *DB) Entries(ctx context.Context, start, end int64, fn func(*infertrail.Entry) error) error {
	start = max(start, 0)
	if end <= start {
		return nil
	}
	size, err := db.TreeSize(ctx)
	if err != nil {
		return fmt.Errorf("read entries %d to %d: %w", start, end, err)
	}
	end = min(end, size)
	var e infertrail.Entry
	batch := make([]infertrail.Entry, 0, entriesPerQuery)
	for ; start < end; start += entriesPerQuery {
		hi := min(end, start+entriesPerQuery)
		// The periods that hold seq start to hi-1. The first is the latest
		// to begin at or before start (or the oldest kept, once retention
		// has dropped older ones).
		var lo, up pgtype.Int4
		err := db.pool.QueryRow(ctx, `SELECT
			coalesce((SELECT period FROM periods WHERE first_seq <= $1 ORDER BY first_seq DESC, period DESC LIMIT 1),
				(SELECT min(period) FROM periods)),
			(SELECT max(period) FROM periods WHERE first_seq < $2)`, start, hi).Scan(&lo, &up)
		if err != nil {
			return fmt.Errorf("read entries %d to %d: %w", start, end, classify(err))
		}
		if !lo.Valid || !up.Valid {
			continue
		}
		rows, err := db.pool.Query(ctx, `SELECT `+entryColumns+` FROM records
			WHERE period BETWEEN $1 AND $2 AND seq >= $3 AND seq < $4 ORDER BY seq`, lo.Int32, up.Int32, start, hi)
		if err != nil {
			return fmt.Errorf("read entries %d to %d: %w", start, end, classify(err))
		}
		batch = batch[:0]
		for rows.Next() {
			if err := scanEntry(rows, &e); err != nil {
				rows.Close()
				return fmt.Errorf("read entries %d to %d: %w", start, end, err)
			}
			batch = append(batch, e)
			e = infertrail.Entry{}
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("read entries %d to %d: %w", start, end, classify(err))
		}
		for i := range batch {
			if err := fn(&batch[i]); err != nil {
				return err
			}
		}
	}
	return nil
}

// EntryByID returns the committed entry with the id, or an error wrapping
// infertrail.ErrNotFound.
func (db *DB) EntryByID(ctx context.Context, id infertrail.UUID) (infertrail.Entry, error) {
	rows, err := db.pool.Query(ctx, `SELECT `+entryColumns+` FROM records WHERE id = $1 LIMIT 1`, pgtype.UUID{Bytes: id, Valid: true})
	if err != nil {
		return infertrail.Entry{}, fmt.Errorf("read entry %s: %w", id, classify(err))
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return infertrail.Entry{}, fmt.Errorf("read entry %s: %w", id, classify(err))
		}
		return infertrail.Entry{}, fmt.Errorf("read entry %s: %w", id, infertrail.ErrNotFound)
	}
	var e infertrail.Entry
	if err := scanEntry(rows, &e); err != nil {
		return infertrail.Entry{}, fmt.Errorf("read entry %s: %w", id, err)
	}
	return e, nil
}

func scanEntry(rows pgx.Rows, e *infertrail.Entry) error {
	var (
		id      pgtype.UUID
		mac     []byte
		kind    string
		leaf    []byte
		content []byte
	)
	err := rows.Scan(&e.Seq, &id, &mac, &e.Tenant, &kind, &e.Time, &e.Received,
		&e.SessionID, &e.TraceID, &e.ActorID, &leaf, &content)
	if err != nil {
		return classify(err)
	}
	// The column holds a plain leaf as it is, so it needs no copy then.
	if len(leaf) > 0 && leaf[0] == '{' {
		e.Leaf = leaf
	} else if e.Leaf, err = leafcol.Expand(nil, leaf, nil); err != nil {
		return &infertrail.CorruptError{Seq: e.Seq, Err: err}
	}
	e.ID = id.Bytes
	copy(e.MAC[:], mac)
	e.Kind = infertrail.Kind(kind)
	if e.Content, err = infertrail.UnmarshalContentRefs(content); err != nil {
		return fmt.Errorf("entry %d: %w", e.Seq, err)
	}
	return nil
}

// Blobs returns the stored blobs among ids.
func (db *DB) Blobs(ctx context.Context, ids []infertrail.BlobID) (map[infertrail.BlobID]infertrail.Blob, error) {
	out := make(map[infertrail.BlobID]infertrail.Blob, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	keys := make([][]byte, len(ids))
	for i := range ids {
		keys[i] = ids[i][:]
	}
	// A blob may be stored once in each period; the first stored is the one.
	rows, err := db.pool.Query(ctx, `SELECT DISTINCT ON (id) id, codec, data, key_id FROM blobs WHERE id = ANY($1) ORDER BY id, period`, keys)
	if err != nil {
		return nil, fmt.Errorf("read blobs: %w", classify(err))
	}
	var (
		id    []byte
		codec int16
		data  []byte
		key   []byte
	)
	if _, err := pgx.ForEachRow(rows, []any{&id, &codec, &data, &key}, func() error {
		var b infertrail.Blob
		if len(id) != len(b.ID) {
			return fmt.Errorf("blob id of %d bytes", len(id))
		}
		if key != nil && len(key) != len(b.Key) {
			return fmt.Errorf("blob %x: key id of %d bytes", id[:4], len(key))
		}
		copy(b.ID[:], id)
		copy(b.Key[:], key)
		b.Codec, b.Data = infertrail.Codec(codec), data
		out[b.ID] = b
		data = nil
		return nil
	}); err != nil {
		return nil, fmt.Errorf("read blobs: %w", classify(err))
	}
	return out, nil
}

// AddCheckpoint stores a signed checkpoint. A second checkpoint of a size
// already stored is ignored. A checkpoint larger than the committed tree is
// an error wrapping infertrail.ErrInvalid.
func (db *DB) AddCheckpoint(ctx context.Context, c infertrail.StoredCheckpoint) error {
	if c.Size < 0 || len(c.Note) == 0 {
		return fmt.Errorf("add checkpoint of size %d: no note or negative size: %w", c.Size, infertrail.ErrInvalid)
	}
	var inserted, committed bool
	err := db.pool.QueryRow(ctx, `WITH ins AS (
			INSERT INTO checkpoints (size, note)
			SELECT $1, $2 WHERE $1 <= (SELECT size FROM log_head WHERE id)
			ON CONFLICT DO NOTHING
			RETURNING 1)
		SELECT EXISTS (SELECT FROM ins), $1 <= (SELECT size FROM log_head WHERE id)`, c.Size, c.Note).Scan(&inserted, &committed)
	if err != nil {
		return fmt.Errorf("add checkpoint of size %d: %w", c.Size, classify(err))
	}
	if !inserted && !committed {
		return fmt.Errorf("add checkpoint of size %d: tree is smaller: %w", c.Size, infertrail.ErrInvalid)
	}
	return nil
}

// AddCosignatures adds the signature lines to the stored checkpoint of
// size, in one transaction that locks its row (infertrail.Cosigner).
func (db *DB) AddCosignatures(ctx context.Context, size int64, lines []byte) error {
	if _, _, err := infertrail.MergeSignatures(nil, lines); err != nil {
		return fmt.Errorf("add cosignatures to checkpoint %d: %w", size, err)
	}
	err := pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		var note []byte
		err := tx.QueryRow(ctx, `SELECT note FROM checkpoints WHERE size = $1 FOR UPDATE`, size).Scan(&note)
		if errors.Is(err, pgx.ErrNoRows) {
			return infertrail.ErrNotFound
		}
		if err != nil {
			return err
		}
		merged, changed, err := infertrail.MergeSignatures(note, lines)
		if err != nil || !changed {
			return err
		}
		_, err = tx.Exec(ctx, `UPDATE checkpoints SET note = $1 WHERE size = $2`, merged, size)
		return err
	})
	if err != nil {
		return fmt.Errorf("add cosignatures to checkpoint %d: %w", size, classify(err))
	}
	return nil
}

// LatestCheckpoint returns the checkpoint with the largest size.
func (db *DB) LatestCheckpoint(ctx context.Context) (infertrail.StoredCheckpoint, error) {
	var c infertrail.StoredCheckpoint
	err := db.pool.QueryRow(ctx, `SELECT size, note FROM checkpoints ORDER BY size DESC LIMIT 1`).Scan(&c.Size, &c.Note)
	if errors.Is(err, pgx.ErrNoRows) {
		return c, fmt.Errorf("read latest checkpoint: %w", infertrail.ErrNotFound)
	}
	if err != nil {
		return c, fmt.Errorf("read latest checkpoint: %w", classify(err))
	}
	return c, nil
}

// checkpointsPerQuery is how many checkpoints Checkpoints reads with one
// query. It holds no connection while fn runs.
const checkpointsPerQuery = 256

// Checkpoints calls fn for each stored checkpoint with Size > after, in
// increasing size.
func (db *DB) Checkpoints(ctx context.Context, after int64, fn func(infertrail.StoredCheckpoint) error) error {
	for {
		rows, err := db.pool.Query(ctx, `SELECT size, note FROM checkpoints WHERE size > $1 ORDER BY size LIMIT $2`, after, checkpointsPerQuery)
		if err != nil {
			return fmt.Errorf("read checkpoints after %d: %w", after, classify(err))
		}
		cs, err := pgx.CollectRows(rows, pgx.RowToStructByPos[infertrail.StoredCheckpoint])
		if err != nil {
			return fmt.Errorf("read checkpoints after %d: %w", after, classify(err))
		}
		for _, c := range cs {
			if err := fn(c); err != nil {
				return err
			}
		}
		if len(cs) < checkpointsPerQuery {
			return nil
		}
		after = cs[len(cs)-1].Size
	}
}
