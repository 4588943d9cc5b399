package sqlite

import (
	"context"
	"database/sql"
	"encoding/binary"
	"encoding/hex"
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

// Keys are packed in one of two forms, told apart by their first byte.
// Term keys, "term=" and 24 lowercase hexadecimal digits
// (investigate.Terms), are packed as tagTerms and the 12 bytes of each
// tag: no compression to do, and smaller than compressed text. Any other
// list is each key's length as an unsigned varint and its bytes,
// compressed with zstd (whose frames begin with 0x28), as every list was
// at first.
var (
	termEncoder, _ = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1), zstd.WithLowerEncoderMem(true))
	termDecoder, _ = zstd.NewReader(nil, zstd.WithDecoderConcurrency(0), zstd.WithDecoderMaxMemory(64<<20))
)

const (
	tagTerms  = 0x01
	termTag   = 12 // bytes of a term key's tag
	termKeyAt = len(infertrail.IndexTerm) + 1
)

// packTerms packs keys for term_sources.terms.
func packTerms(keys []string) []byte {
	if packed, ok := packTags(keys); ok {
		return packed
	}
	var raw []byte
	for _, k := range keys {
		raw = binary.AppendUvarint(raw, uint64(len(k)))
		raw = append(raw, k...)
	}
	return termEncoder.EncodeAll(raw, nil)
}

// packTags packs term keys as their tags, or reports that keys are not all
// term keys in lowercase hexadecimal.
func packTags(keys []string) ([]byte, bool) {
	out := make([]byte, 1, 1+termTag*len(keys))
	out[0] = tagTerms
	for _, k := range keys {
		if len(k) != termKeyAt+2*termTag || k[:termKeyAt] != infertrail.IndexTerm+"=" {
			return nil, false
		}
		for _, c := range []byte(k[termKeyAt:]) {
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
				return nil, false // decoded, it would not encode back the same
			}
		}
		out, _ = hex.AppendDecode(out, []byte(k[termKeyAt:]))
	}
	return out, true
}

// unpackTerms returns the keys packTerms packed.
func unpackTerms(b []byte) ([]string, error) {
	if len(b) > 0 && b[0] == tagTerms {
		b = b[1:]
		if len(b)%termTag != 0 {
			return nil, fmt.Errorf("unpack term keys: %d bytes of tags: %w", len(b), errDamagedTerms)
		}
		keys := make([]string, 0, len(b)/termTag)
		for ; len(b) > 0; b = b[termTag:] {
			keys = append(keys, infertrail.IndexTerm+"="+hex.EncodeToString(b[:termTag]))
		}
		return keys, nil
	}
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
