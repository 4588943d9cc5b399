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
// at first. And a list of term keys may be packed as tagDelta: its
// changes to the list of the row before it of the same data key (the
// previous record of the session, which agents re-send whole), as the
// number of tags removed (an unsigned varint), the tags removed and the
// tags added, each 12 bytes, in order. At most maxDeltas deltas follow
// one list packed whole, which bounds what a list costs to read.
var (
	termEncoder, _ = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1), zstd.WithLowerEncoderMem(true))
	termDecoder, _ = zstd.NewReader(nil, zstd.WithDecoderConcurrency(0), zstd.WithDecoderMaxMemory(64<<20))
)

const (
	tagTerms  = postings.TagTerms
	tagDelta  = 0x02
	maxDeltas = 15
	termTag   = postings.TagLen
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

// packDelta packs keys as their changes to base, a list packed whole
// behind at most maxDeltas deltas (depth), when both are term keys and
// that is shorter than packTerms(keys); it returns the packed list and
// its depth (0: whole).
func packDelta(base []string, depth int, keys []string) ([]byte, int) {
	whole := packTerms(keys)
	if base == nil || depth >= maxDeltas {
		return whole, 0
	}
	var removed, added []string
	i, j := 0, 0
	for i < len(base) || j < len(keys) {
		switch {
		case j == len(keys) || i < len(base) && base[i] < keys[j]:
			removed = append(removed, base[i])
			i++
		case i == len(base) || keys[j] < base[i]:
			added = append(added, keys[j])
			j++
		default:
			i, j = i+1, j+1
		}
	}
	if termTag*(len(removed)+len(added)) >= len(whole) {
		return whole, 0
	}
	out := binary.AppendUvarint([]byte{tagDelta}, uint64(len(removed)))
	for _, k := range append(removed, added...) {
		var ok bool
		if out, ok = postings.AppendTag(out, k); !ok {
			return whole, 0 // not all term keys
		}
	}
	if len(out) >= len(whole) {
		return whole, 0
	}
	return out, depth + 1
}

// termLists unpacks the rows of one data key in order of sequence number,
// each of which may be a delta of the one before.
type termLists struct {
	keys  []string // the last row's list
	depth int      // its deltas since a list packed whole; -1: no row yet
}

func newTermLists() termLists { return termLists{depth: -1} }

// next returns the list of the row after the last, packed as b.
func (l *termLists) next(b []byte) ([]string, error) {
	if len(b) == 0 || b[0] != tagDelta {
		keys, err := unpackTerms(b)
		if err != nil {
			return nil, err
		}
		l.keys, l.depth = keys, 0
		return keys, nil
	}
	if l.depth < 0 {
		return nil, fmt.Errorf("unpack term keys: a delta with no list before it: %w", errDamagedTerms)
	}
	n, w := binary.Uvarint(b[1:])
	tags := b[1+max(w, 0):]
	if w <= 0 || len(tags)%termTag != 0 || n > uint64(len(tags)/termTag) {
		return nil, fmt.Errorf("unpack term keys: a damaged delta: %w", errDamagedTerms)
	}
	removed, added := tagKeys(tags[:int(n)*termTag]), tagKeys(tags[int(n)*termTag:])
	keys := make([]string, 0, len(l.keys)-len(removed)+len(added))
	i, j, r := 0, 0, 0
	for i < len(l.keys) || j < len(added) {
		switch {
		case j == len(added) || i < len(l.keys) && l.keys[i] < added[j]:
			if r < len(removed) && removed[r] == l.keys[i] {
				r++
			} else {
				keys = append(keys, l.keys[i])
			}
			i++
		case i == len(l.keys) || added[j] < l.keys[i]:
			keys = append(keys, added[j])
			j++
		default:
			return nil, fmt.Errorf("unpack term keys: a delta adds a key already there: %w", errDamagedTerms)
		}
	}
	if r != len(removed) {
		return nil, fmt.Errorf("unpack term keys: a delta removes a key not there: %w", errDamagedTerms)
	}
	l.keys, l.depth = keys, l.depth+1
	return keys, nil
}

// termsBefore returns the list of the last row of data key id before
// record seq, and its depth, or nil with no such row.
func termsBefore(ctx context.Context, st *sql.Stmt, id []byte, seq int64) ([]string, int, error) {
	rows, err := st.QueryContext(ctx, id, seq, maxDeltas+1)
	if err != nil {
		return nil, 0, err
	}
	var packed [][]byte // newest first, to the last whole list
	for rows.Next() {
		var b []byte
		if err := rows.Scan(&b); err != nil {
			rows.Close()
			return nil, 0, err
		}
		packed = append(packed, b)
		if len(b) > 0 && b[0] != tagDelta {
			break
		}
	}
	if err := rows.Close(); err != nil {
		return nil, 0, err
	}
	if len(packed) == 0 {
		return nil, 0, nil
	}
	l := newTermLists()
	for i := len(packed) - 1; i >= 0; i-- {
		if _, err := l.next(packed[i]); err != nil {
			return nil, 0, fmt.Errorf("the term sources before record %d: %w", seq, err)
		}
	}
	return l.keys, l.depth, nil
}

// insertTermSources records ts in tx, each list as a delta of the row
// before it of its data key where that is shorter (packDelta); a record
// already there for its key is left as it is (an index step done again
// derives the same terms). The indexer's steps follow the log, so the
// rows of a data key are inserted in order of sequence number, and none
// comes between a delta and the row it is of.
func insertTermSources(ctx context.Context, tx *sql.Tx, ts []postings.Source) error {
	if len(ts) == 0 {
		return nil
	}
	ins, err := tx.PrepareContext(ctx, `INSERT OR IGNORE INTO term_sources (data_key, seq, terms) VALUES (?, ?, ?)`)
	if err != nil {
		return fmt.Errorf("insert term sources: %w", err)
	}
	defer ins.Close()
	before, err := tx.PrepareContext(ctx, `SELECT terms FROM term_sources WHERE data_key = ? AND seq < ? ORDER BY seq DESC LIMIT ?`)
	if err != nil {
		return fmt.Errorf("insert term sources: %w", err)
	}
	defer before.Close()
	var (
		last  *postings.Source // inserted by the iteration before, if it did insert
		depth int              // of last's row
	)
	for i := range ts {
		t := &ts[i]
		// The base is the row this call inserted just before, of the
		// same key, or else read from the table: whatever was there
		// already, each delta is of the row before it.
		base, d := []string(nil), 0
		if last != nil && last.Key == t.Key {
			base, d = last.Keys, depth
		} else {
			var err error
			if base, d, err = termsBefore(ctx, before, t.Key[:], t.Seq); err != nil {
				return fmt.Errorf("insert term sources: %w", err)
			}
		}
		packed, d := packDelta(base, d, t.Keys)
		res, err := ins.ExecContext(ctx, t.Key[:], t.Seq, packed)
		if err != nil {
			return fmt.Errorf("insert term sources: %w", err)
		}
		last, depth = nil, d
		if n, err := res.RowsAffected(); err == nil && n == 1 {
			last = t
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
	lists := newTermLists()
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
			keys, err := lists.next(s.terms)
			if err != nil {
				return fmt.Errorf("record %d: %w", s.seq, err)
			}
			block, bit := postings.BlockOf(s.seq)
			for _, k := range keys {
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
// each list as a delta of the one before it of its data key where that is
// shorter, and puts the copy in the place of the old table.
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
		last  []byte
		lists termLists
		base  []string
		depth int
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
			last, lists, base, depth = id, newTermLists(), nil, 0
		}
		keys, err := lists.next(terms)
		if err != nil {
			return fmt.Errorf("repack term sources: record %d: %w", seq, err)
		}
		var packed []byte
		packed, depth = packDelta(base, depth, keys)
		if _, err := ins.ExecContext(ctx, id, seq, packed); err != nil {
			return fmt.Errorf("repack term sources: %w", err)
		}
		base = keys
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
