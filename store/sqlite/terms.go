package sqlite

import (
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/klauspost/compress/zstd"

	"github.com/infertrail/infertrail"
	"github.com/infertrail/infertrail/store/internal/postings"
)

// term_sources holds a row per postings.Source: the keys of a record's
// term postings under one data key, packed. Rows are written in data-key
// order (key ids begin with their time), so mostly at the end of their
// B-tree; an erasure reads its keys' rows and deletes those postings by
// primary key.

// Packed keys are each an unsigned varint length and the key's bytes,
// compressed with zstd: term keys are hexadecimal tags behind a common
// prefix, which zstd stores in about half the bytes.
var (
	termEncoder, _ = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1), zstd.WithLowerEncoderMem(true))
	termDecoder, _ = zstd.NewReader(nil, zstd.WithDecoderConcurrency(0), zstd.WithDecoderMaxMemory(64<<20))
)

// packTerms packs keys for term_sources.terms.
func packTerms(keys []string) []byte {
	var raw []byte
	for _, k := range keys {
		raw = binary.AppendUvarint(raw, uint64(len(k)))
		raw = append(raw, k...)
	}
	return termEncoder.EncodeAll(raw, nil)
}

// unpackTerms returns the keys packTerms packed.
func unpackTerms(b []byte) ([]string, error) {
	raw, err := termDecoder.DecodeAll(b, nil)
	if err != nil {
		return nil, fmt.Errorf("unpack term keys: %w: %w", errDamagedTerms, err)
	}
	var keys []string
	for len(raw) > 0 {
		n, w := binary.Uvarint(raw)
		if w <= 0 || n == 0 || n > uint64(len(raw)-w) {
			return nil, fmt.Errorf("unpack term keys: %w", errDamagedTerms)
		}
		keys = append(keys, string(raw[w:w+int(n)]))
		raw = raw[w+int(n):]
	}
	return keys, nil
}

// errDamagedTerms marks a term_sources row whose keys cannot be unpacked.
var errDamagedTerms = errors.New("the stored list is damaged")

// insertTermSources records ts in tx; a record already there for its key
// is left as it is (an index step done again derives the same terms).
func insertTermSources(ctx context.Context, tx *sql.Tx, ts []postings.Source) error {
	if len(ts) == 0 {
		return nil
	}
	st, err := tx.PrepareContext(ctx, `INSERT OR IGNORE INTO term_sources (data_key, seq, terms) VALUES (?, ?, ?)`)
	if err != nil {
		return fmt.Errorf("insert term sources: %w", err)
	}
	defer st.Close()
	for _, t := range ts {
		if _, err := st.ExecContext(ctx, t.Key[:], t.Seq, packTerms(t.Keys)); err != nil {
			return fmt.Errorf("insert term sources: %w", err)
		}
	}
	return nil
}

// purgeBatch is how many records' term sources a purge reads at a time.
const purgeBatch = 256

// deleteTerms deletes, in tx, the term postings of data key id and its
// term_sources rows.
func deleteTerms(ctx context.Context, tx *sql.Tx, id []byte) error {
	del, err := tx.PrepareContext(ctx, `DELETE FROM postings WHERE key = ? AND seq = ?`)
	if err != nil {
		return err
	}
	defer del.Close()
	after := int64(-1)
	for {
		type source struct {
			seq   int64
			terms []byte
		}
		srcs, err := queryAll(ctx, tx, "read term sources", func(r interface{ Scan(...any) error }) (s source, err error) {
			err = r.Scan(&s.seq, &s.terms)
			return s, err
		}, `SELECT seq, terms FROM term_sources WHERE data_key = ? AND seq > ? ORDER BY seq LIMIT ?`, id, after, purgeBatch)
		if err != nil {
			return err
		}
		for _, s := range srcs {
			keys, err := unpackTerms(s.terms)
			if err != nil {
				return fmt.Errorf("record %d: %w", s.seq, err)
			}
			for _, k := range keys {
				if _, err := del.ExecContext(ctx, k, s.seq); err != nil {
					return err
				}
			}
			after = s.seq
		}
		if len(srcs) < purgeBatch {
			break
		}
	}
	_, err = tx.ExecContext(ctx, `DELETE FROM term_sources WHERE data_key = ?`, id)
	return err
}

// moveTermSources fills term_sources from the data_key column of the
// postings table of schema from (main, or log for a log's file of schema
// version 8 or before), streaming, in tx.
func moveTermSources(ctx context.Context, tx *sql.Tx, from string) error {
	rows, err := tx.QueryContext(ctx, `SELECT data_key, seq, key FROM `+from+`.postings WHERE data_key IS NOT NULL ORDER BY data_key, seq`)
	if err != nil {
		return fmt.Errorf("read term postings: %w", err)
	}
	defer rows.Close()
	var batch []infertrail.Posting
	flush := func() error {
		err := insertTermSources(ctx, tx, postings.Sources(postings.Sort(batch)))
		batch = batch[:0]
		return err
	}
	for rows.Next() {
		var (
			p   infertrail.Posting
			key []byte
		)
		if err := rows.Scan(&key, &p.Seq, &p.Key); err != nil {
			return fmt.Errorf("read term postings: %w", err)
		}
		p.DataKey = infertrail.KeyID(key)
		// A flush between two records: the batch holds whole records.
		if n := len(batch); n >= 1<<14 && (batch[n-1].DataKey != p.DataKey || batch[n-1].Seq != p.Seq) {
			if err := flush(); err != nil {
				return err
			}
		}
		batch = append(batch, p)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read term postings: %w", err)
	}
	return flush()
}

// splitTermSources is the index file's migration 2 after its SQL: the
// term postings' data keys move from the postings table, and its index on
// them, into term_sources.
func splitTermSources(ctx context.Context, tx *sql.Tx) error {
	if err := moveTermSources(ctx, tx, "main"); err != nil {
		return err
	}
	for _, q := range []string{
		`DROP INDEX IF EXISTS postings_data_key`,
		`ALTER TABLE postings DROP COLUMN data_key`,
	} {
		if _, err := tx.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("drop the postings' data keys: %w", err)
		}
	}
	return nil
}
