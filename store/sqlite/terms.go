package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/infertrail/infertrail/store/internal/postings"
)

// A posting's key is stored in postings.key as its text, except a term
// key (nearly every posting), which is stored as a blob: TagTerms and the
// first 8 bytes of its tag (postings.Pack), 9 bytes instead of 29. SQLite
// keeps a blob in a column of TEXT affinity as it is, and orders every
// blob after every text, so the two forms never meet.

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
	return `CASE WHEN ` + isTermKeySQL(col) + ` THEN unhex('01' || substr(` + col + `, 6, 16)) ELSE ` + col + ` END`
}

// storedListKey returns a key of a block's list (postings.Stored) as
// postings.key holds it: a packed term key as a blob, any other as text.
func storedListKey(k string) any {
	if len(k) == postings.StoredLen && k[0] == postings.TagTerms {
		return []byte(k)
	}
	return k
}

// An erasure reads two tables of the index file (store/internal/postings,
// erasable.go): key_records, the blocks of records whose content was under
// each data key, and block_terms, the stored keys of each block's postings
// derived from content.

// insertErasable records what an erasure of the keys of a step's postings
// needs: owners' bits are added to key_records, and each block's keys are
// merged into its list in block_terms.
func insertErasable(ctx context.Context, tx *sql.Tx, owners []postings.KeyBlock, lists []postings.BlockList) error {
	if len(owners) > 0 {
		ins, err := tx.PrepareContext(ctx, `INSERT INTO key_records (data_key, block, bits) VALUES (?, ?, ?)
			ON CONFLICT (data_key, block) DO UPDATE SET bits = bits | excluded.bits`)
		if err != nil {
			return fmt.Errorf("insert key records: %w", err)
		}
		defer ins.Close()
		for _, o := range owners {
			if _, err := ins.ExecContext(ctx, o.Key[:], o.Block, o.Bits); err != nil {
				return fmt.Errorf("insert key records: %w", err)
			}
		}
	}
	for _, l := range lists {
		if err := mergeList(ctx, tx, l.Block, l.Keys); err != nil {
			return err
		}
	}
	return nil
}

// mergeList adds keys, stored keys in order, to the list of block.
func mergeList(ctx context.Context, tx *sql.Tx, block int64, keys []string) error {
	old, err := readList(ctx, tx, block)
	if err != nil {
		return err
	}
	merged := postings.Merge(old, keys)
	if len(merged) == len(old) {
		return nil
	}
	if _, err := tx.ExecContext(ctx, `INSERT OR REPLACE INTO block_terms (block, keys) VALUES (?, ?)`, block, postings.AppendList(nil, merged)); err != nil {
		return fmt.Errorf("write the keys of block %d: %w", block, err)
	}
	return nil
}

// readList returns the keys block_terms lists for block.
func readList(ctx context.Context, tx *sql.Tx, block int64) ([]string, error) {
	var b []byte
	err := tx.QueryRowContext(ctx, `SELECT keys FROM block_terms WHERE block = ?`, block).Scan(&b)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the keys of block %d: %w", block, err)
	}
	keys, err := postings.ParseList(b)
	if err != nil {
		return nil, fmt.Errorf("read the keys of block %d: %w", block, err)
	}
	return keys, nil
}

// deleteTerms deletes, in tx, the postings derived from the content of
// the data keys ids: the bits of their records (key_records), ORed per
// block, from every key their blocks list (block_terms), the postings left
// with none, and those keys from the lists; then the keys' key_records
// rows. Each block is cleared once, however many of the keys have records
// in it.
func deleteTerms(ctx context.Context, tx *sql.Tx, ids [][]byte) error {
	masks := map[int64]int64{}
	for _, id := range ids {
		rows, err := tx.QueryContext(ctx, `SELECT block, bits FROM key_records WHERE data_key = ?`, id)
		if err != nil {
			return fmt.Errorf("read the key's records: %w", err)
		}
		for rows.Next() {
			var block, bits int64
			if err := rows.Scan(&block, &bits); err != nil {
				rows.Close()
				return fmt.Errorf("read the key's records: %w", err)
			}
			masks[block] |= bits
		}
		if err := rows.Close(); err != nil {
			return fmt.Errorf("read the key's records: %w", err)
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("read the key's records: %w", err)
		}
	}
	if len(masks) == 0 {
		return nil
	}
	clearBits, err := tx.PrepareContext(ctx, `UPDATE postings SET bits = bits & ~? WHERE key = ? AND block = ? AND bits & ? <> 0 RETURNING bits`)
	if err != nil {
		return err
	}
	defer clearBits.Close()
	del, err := tx.PrepareContext(ctx, `DELETE FROM postings WHERE key = ? AND block = ? AND bits = 0`)
	if err != nil {
		return err
	}
	defer del.Close()
	for _, block := range slices.Sorted(maps.Keys(masks)) {
		mask := masks[block]
		keys, err := readList(ctx, tx, block)
		if err != nil {
			return err
		}
		left := keys[:0]
		for _, k := range keys {
			key := storedListKey(k)
			var bits int64
			err := clearBits.QueryRowContext(ctx, mask, key, block, mask).Scan(&bits)
			switch {
			case errors.Is(err, sql.ErrNoRows):
				// No bit of an erased record: the row stays as it is.
			case err != nil:
				return err
			case bits == 0:
				if _, err := del.ExecContext(ctx, key, block); err != nil {
					return err
				}
				continue
			}
			left = append(left, k)
		}
		if len(left) == len(keys) {
			continue
		}
		if len(left) == 0 {
			_, err = tx.ExecContext(ctx, `DELETE FROM block_terms WHERE block = ?`, block)
		} else {
			_, err = tx.ExecContext(ctx, `UPDATE block_terms SET keys = ? WHERE block = ?`, postings.AppendList(nil, left), block)
		}
		if err != nil {
			return fmt.Errorf("write the keys of block %d: %w", block, err)
		}
	}
	for _, id := range ids {
		if _, err := tx.ExecContext(ctx, `DELETE FROM key_records WHERE data_key = ?`, id); err != nil {
			return err
		}
	}
	return nil
}

// fillLists writes block_terms from rows of (block, stored key), in block
// order, as an index file's migration or the move of an old log's postings
// finds them.
func fillLists(ctx context.Context, tx *sql.Tx, query string) error {
	rows, err := tx.QueryContext(ctx, query)
	if err != nil {
		return fmt.Errorf("list the keys of each block: %w", err)
	}
	defer rows.Close()
	var (
		block = int64(-1)
		keys  []string
	)
	flush := func() error {
		if len(keys) == 0 {
			return nil
		}
		slices.Sort(keys)
		err := mergeList(ctx, tx, block, slices.Compact(keys))
		keys = keys[:0]
		return err
	}
	for rows.Next() {
		var (
			b   int64
			key any
		)
		if err := rows.Scan(&b, &key); err != nil {
			return fmt.Errorf("list the keys of each block: %w", err)
		}
		if b != block {
			if err := flush(); err != nil {
				return err
			}
			block = b
		}
		switch k := key.(type) {
		case []byte:
			keys = append(keys, string(k))
		case string:
			keys = append(keys, postings.Stored(k))
		default:
			return fmt.Errorf("list the keys of block %d: a key of type %T", b, key)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("list the keys of each block: %w", err)
	}
	return flush()
}

// The index file's migrations whose Go steps fill erasure lists: 2 moved
// the postings' data keys into term_sources, 3 packed term keys and 5
// replaced term_sources by key_records and block_terms, which it fills from
// term_sources (its records) and the postings (the term keys of each
// block). Migrations 2 and 3 run only on files that 5 then converts, so
// they keep only what 5 reads of term_sources: its data keys and records.
// 6 cut the stored term keys to 9 bytes and lists them again.
const (
	packedTerms   = 3
	postingBlocks = 4
	erasureLists  = 5
	shortTerms    = 6
)

// termKeysByBlock reads each block's term keys from the postings, packed
// (of any length: migration 5 may read keys that 6 then cuts) or not, in
// order of block, for fillLists.
const termKeysByBlock = `SELECT block, key FROM postings
	WHERE key >= x'01' AND key < x'02' OR key >= 'term=' AND key < 'term>' ORDER BY block`

// splitTermSources is the index file's migration 2 after its SQL: the
// term postings' data keys move from the postings table, and its index on
// them, into term_sources.
func splitTermSources(ctx context.Context, tx *sql.Tx) error {
	for _, q := range []string{
		`INSERT INTO term_sources (data_key, seq, terms) SELECT data_key, seq, x'' FROM postings WHERE data_key IS NOT NULL GROUP BY data_key, seq`,
		`DROP INDEX IF EXISTS postings_data_key`,
		`ALTER TABLE postings DROP COLUMN data_key`,
	} {
		if _, err := tx.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("move the postings' data keys: %w", err)
		}
	}
	return nil
}

// packPostings is the index file's migration 3 after its SQL: the postings
// move to postings_packed with their term keys packed, in two passes that
// each read and write in key order (texts, then the term keys, which become
// blobs ordered as their hexadecimal digits were), and it takes the old
// table's name. term_sources stays as it is (see erasureLists). It packs
// keys as they are packed now, so migration 6 finds none to cut; two keys
// whose packed forms are one are one posting.
func packPostings(ctx context.Context, tx *sql.Tx) error {
	for _, q := range []string{
		`INSERT INTO postings_packed (key, seq) SELECT key, seq FROM postings WHERE NOT ` + isTermKeySQL("key") + ` ORDER BY key, seq`,
		`INSERT OR IGNORE INTO postings_packed (key, seq) SELECT ` + storedKeySQL("key") + `, seq FROM postings WHERE ` + isTermKeySQL("key") + ` ORDER BY key, seq`,
		`DROP TABLE postings`,
		`ALTER TABLE postings_packed RENAME TO postings`,
		`DROP TABLE term_sources_packed`,
	} {
		if _, err := tx.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("pack the postings' term keys: %w", err)
		}
	}
	return nil
}

// listTerms is the index file's migration 5 after its SQL: each block's
// list is every term key it has postings of, packed or not (search terms
// are the keys derived from content), and term_sources goes. A term of a
// record with no data key (content stored before it was encrypted) is
// listed too, but never cleared: only records under an erased key are.
func listTerms(ctx context.Context, tx *sql.Tx) error {
	if err := fillLists(ctx, tx, termKeysByBlock); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `DROP TABLE term_sources`); err != nil {
		return fmt.Errorf("drop term_sources: %w", err)
	}
	return nil
}

// shortTermLists is the index file's migration 6 after its SQL, which cut
// the postings' term keys and emptied block_terms: each block's list is
// again every term key it has postings of, as migration 5 made them.
func shortTermLists(ctx context.Context, tx *sql.Tx) error {
	return fillLists(ctx, tx, termKeysByBlock)
}
