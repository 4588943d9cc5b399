package sqlite

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	"github.com/klauspost/compress/zstd"

	"github.com/infertrail/infertrail"
	"github.com/infertrail/infertrail/store/internal/postings"
)

// term_sources holds a row per postings.Source: the keys of a record's
// term postings under one data key, packed. Rows are written in data-key
// order (key ids begin with their time), so mostly at the end of their
// B-tree; an erasure reads its keys' rows and deletes those postings by
// primary key.

// Keys are packed in one of three forms, told apart by their first byte.
// Term keys, "term=" and 24 lowercase hexadecimal digits
// (investigate.Terms), are packed as tagTerms and the 12 bytes of each
// tag: no compression to do, and smaller than compressed text. Any other
// list is each key's length as an unsigned varint and its bytes,
// compressed with zstd (whose frames begin with 0x28), as every list was
// at first. A row lists the terms of its record not listed before under
// its data key (postings.List). Index files written on 2026-11-28 also
// hold rows packed as tagDelta: the changes to the list of the row before
// it of the same data key, as the number of tags removed (an unsigned
// varint), the tags removed and the tags added, each 12 bytes, in order;
// what such a row lists is its tags added, and the first row of a key is
// never one.
var (
	termEncoder, _ = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1), zstd.WithLowerEncoderMem(true))
	termDecoder, _ = zstd.NewReader(nil, zstd.WithDecoderConcurrency(0), zstd.WithDecoderMaxMemory(64<<20))
)

const (
	tagTerms = postings.TagTerms
	tagDelta = 0x02
	termTag  = postings.TagLen
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
		var ok bool
		if out, ok = postings.AppendTag(out, k); !ok {
			return nil, false
		}
	}
	return out, true
}

// A posting's key is stored in postings.key as its text, except a term
// key (nearly every posting), which is stored as a blob: tagTerms and the
// 12 bytes of its tag, 13 bytes instead of 29. SQLite keeps a blob in a
// column of TEXT affinity as it is, and orders every blob after every
// text, so the two forms never meet.

// storedKey returns posting key k as postings.key holds it.
func storedKey(k string) any {
	return appendStoredKey(new([]byte), k)
}

// appendStoredKey is storedKey for a batch of inserts: a packed key is
// appended to *buf (postings.Pack).
func appendStoredKey(buf *[]byte, k string) any {
	if b, ok := postings.Pack(buf, k); ok {
		return b
	}
	return k
}

// isTermKeySQL is the SQL condition that the column col holds a key that
// storedKey packs, and storedKeySQL is storedKey in SQL: what the index
// file's migration 3 and the move of an old log's postings store
// (TestStoredKey holds them to storedKey's answers).
func isTermKeySQL(col string) string {
	return strings.ReplaceAll(`(typeof($) = 'text' AND length($) = 29 AND substr($, 1, 5) = 'term=' AND NOT substr($, 6) GLOB '*[^0-9a-f]*')`, "$", col)
}

func storedKeySQL(col string) string {
	return `CASE WHEN ` + isTermKeySQL(col) + ` THEN unhex('01' || substr(` + col + `, 6)) ELSE ` + col + ` END`
}

// unpackTerms returns the keys packTerms packed.
func unpackTerms(b []byte) ([]string, error) {
	if len(b) > 0 && b[0] == tagTerms {
		b = b[1:]
		if len(b)%termTag != 0 {
			return nil, fmt.Errorf("unpack term keys: %d bytes of tags: %w", len(b), errDamagedTerms)
		}
		return tagKeys(b), nil
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

// tagKeys returns the term keys of tags, a whole number of tags.
func tagKeys(tags []byte) []string {
	keys := make([]string, 0, len(tags)/termTag)
	for ; len(tags) > 0; tags = tags[termTag:] {
		keys = append(keys, postings.TagKey(tags[:termTag]))
	}
	return keys
}

// errDamagedTerms marks a term_sources row whose keys cannot be unpacked.
var errDamagedTerms = errors.New("the stored list is damaged")

// listedTerms returns the terms a row lists, packed as b; delta reports
// a row packed as tagDelta, which cannot be the first of its key.
func listedTerms(b []byte) (terms []string, delta bool, err error) {
	if len(b) == 0 || b[0] != tagDelta {
		terms, err = unpackTerms(b)
		return terms, false, err
	}
	n, w := binary.Uvarint(b[1:])
	tags := b[1+max(w, 0):]
	if w <= 0 || len(tags)%termTag != 0 || n > uint64(len(tags)/termTag) {
		return nil, true, fmt.Errorf("unpack term keys: a damaged delta: %w", errDamagedTerms)
	}
	return tagKeys(tags[int(n)*termTag:]), true, nil
}

// insertTermSources records ts in tx, each row listing the terms of its
// record not listed before under its data key, by seen (steps before)
// or next (this one, which gets what it lists): see postings.List. A
// record already there for its key is left as it is (an index step done
// again derives the same terms).
func insertTermSources(ctx context.Context, tx *sql.Tx, ts []postings.Source, seen *postings.Seen, next map[infertrail.KeyID]postings.Listed) error {
	if len(ts) == 0 {
		return nil
	}
	ins, err := tx.PrepareContext(ctx, `INSERT OR IGNORE INTO term_sources (data_key, seq, terms) VALUES (?, ?, ?)`)
	if err != nil {
		return fmt.Errorf("insert term sources: %w", err)
	}
	defer ins.Close()
	for i := range ts {
		t := &ts[i]
		keys := postings.List(seen, next, t.Key, t.Seq, t.Keys)
		if _, err := ins.ExecContext(ctx, t.Key[:], t.Seq, packTerms(keys)); err != nil {
			return fmt.Errorf("insert term sources: %w", err)
		}
	}
	return nil
}

// purgeBatch is how many records' term sources a purge reads at a time.
const purgeBatch = 256

// deleteTerms deletes, in tx, the term postings of data key id and its
// term_sources rows: the bits of its records in their blocks, and the
// blocks left with none.
func deleteTerms(ctx context.Context, tx *sql.Tx, id []byte) error {
	clearBits, err := tx.PrepareContext(ctx, `UPDATE postings SET bits = bits & ~? WHERE key = ? AND block = ? RETURNING bits`)
	if err != nil {
		return err
	}
	defer clearBits.Close()
	del, err := tx.PrepareContext(ctx, `DELETE FROM postings WHERE key = ? AND block = ? AND bits = 0`)
	if err != nil {
		return err
	}
	defer del.Close()
	type at struct {
		key   string
		block int64
	}
	after := int64(-1)
	var listed []string // up to the record read last
	first := true
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
		// The bits of a batch of records, by block.
		masks := map[at]int64{}
		var order []at
		for _, s := range srcs {
			// Each row lists the terms not listed before: a record has
			// no term not listed up to it.
			terms, delta, err := listedTerms(s.terms)
			if err == nil && delta && first {
				err = fmt.Errorf("unpack term keys: a delta with no list before it: %w", errDamagedTerms)
			}
			if err != nil {
				return fmt.Errorf("record %d: %w", s.seq, err)
			}
			first = false
			listed = postings.Merge(listed, terms)
			block, bit := postings.BlockOf(s.seq)
			for _, k := range listed {
				a := at{k, block}
				if _, ok := masks[a]; !ok {
					order = append(order, a)
				}
				masks[a] |= bit
			}
			after = s.seq
		}
		for _, a := range order {
			key := storedKey(a.key)
			var left int64
			err := clearBits.QueryRowContext(ctx, masks[a], key, a.block).Scan(&left)
			switch {
			case errors.Is(err, sql.ErrNoRows):
				continue // deleted already
			case err != nil:
				return err
			case left == 0:
				if _, err := del.ExecContext(ctx, key, a.block); err != nil {
					return err
				}
			}
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
	// What the rows of the data key being moved listed: rows come in
	// order of key, and a batch may end within a key.
	next := map[infertrail.KeyID]postings.Listed{}
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		err := insertTermSources(ctx, tx, postings.Sources(postings.Sort(batch)), nil, next)
		at := batch[len(batch)-1].DataKey
		for k := range next {
			if k != at {
				delete(next, k)
			}
		}
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

// packedTerms is the version of the index file's schema whose postings
// hold term keys packed, and postingBlocks the one whose postings are
// blocks (after which the file is compacted).
const (
	packedTerms   = 3
	postingBlocks = 4
)

// packPostings is the index file's migration 3 after its SQL: the postings
// move to postings_packed with their term keys packed, in two passes that
// each read and write in key order (texts, then the term keys, which become
// blobs ordered as their hexadecimal digits were), and it takes the old
// table's name.
func packPostings(ctx context.Context, tx *sql.Tx) error {
	for _, q := range []string{
		`INSERT INTO postings_packed (key, seq) SELECT key, seq FROM postings WHERE NOT ` + isTermKeySQL("key") + ` ORDER BY key, seq`,
		`INSERT INTO postings_packed (key, seq) SELECT ` + storedKeySQL("key") + `, seq FROM postings WHERE ` + isTermKeySQL("key") + ` ORDER BY key, seq`,
		`DROP TABLE postings`,
		`ALTER TABLE postings_packed RENAME TO postings`,
	} {
		if _, err := tx.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("pack the postings' term keys: %w", err)
		}
	}
	return repackTermSources(ctx, tx)
}

// repackTermSources copies term_sources to term_sources_packed in order,
// each row listing the terms of its record not listed before under its
// data key (postings.List), and puts the copy in the place of the old
// table.
func repackTermSources(ctx context.Context, tx *sql.Tx) error {
	ins, err := tx.PrepareContext(ctx, `INSERT INTO term_sources_packed (data_key, seq, terms) VALUES (?, ?, ?)`)
	if err != nil {
		return fmt.Errorf("repack term sources: %w", err)
	}
	defer ins.Close()
	rows, err := tx.QueryContext(ctx, `SELECT data_key, seq, terms FROM term_sources ORDER BY data_key, seq`)
	if err != nil {
		return fmt.Errorf("repack term sources: %w", err)
	}
	defer rows.Close()
	var (
		last []byte
		next map[infertrail.KeyID]postings.Listed // of the key last
	)
	for rows.Next() {
		var (
			id, terms []byte
			seq       int64
		)
		if err := rows.Scan(&id, &seq, &terms); err != nil {
			return fmt.Errorf("repack term sources: %w", err)
		}
		if !bytes.Equal(id, last) {
			last, next = id, map[infertrail.KeyID]postings.Listed{}
		}
		keys, err := unpackTerms(terms) // whole, in a file of version 2
		if err != nil {
			return fmt.Errorf("repack term sources: record %d: %w", seq, err)
		}
		packed := packTerms(postings.List(nil, next, infertrail.KeyID(id), seq, keys))
		if _, err := ins.ExecContext(ctx, id, seq, packed); err != nil {
			return fmt.Errorf("repack term sources: %w", err)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("repack term sources: %w", err)
	}
	for _, q := range []string{`DROP TABLE term_sources`, `ALTER TABLE term_sources_packed RENAME TO term_sources`} {
		if _, err := tx.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("repack term sources: %w", err)
		}
	}
	return nil
}
