package sqlite

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"net/url"
	"os"
	"sync"

	sqlite "modernc.org/sqlite"

	"github.com/infertrail/infertrail/store/internal/postings"
)

// attachingDriver is the driver of the reading connections: each attaches
// the index file of its database as schema idx once it is open, so that
// queries name postings, cursors and findings as if they were in the log's
// file (SQLite looks a table up in main first, then in attached schemas).
const attachingDriver = "sqlite+infertrail-index"

var attachOnce sync.Once

func registerAttaching() {
	attachOnce.Do(func() {
		d := &sqlite.Driver{}
		d.RegisterConnectionHook(func(c sqlite.ExecQuerierContext, name string) error {
			u, err := url.Parse(name)
			if err != nil {
				return fmt.Errorf("attach the index: %w", err)
			}
			path := IndexPath(u.Path)
			attach := path
			if q := u.Query(); q.Get("mode") == "ro" {
				// A read-only log (Config.ReadOnly) attaches its index
				// read-only too, if it has one.
				if _, err := os.Stat(path); err != nil {
					return nil
				}
				a := url.URL{Scheme: "file", Path: path, RawQuery: url.Values{"mode": {"ro"}, "immutable": q["immutable"]}.Encode()}
				attach = a.String()
			}
			if _, err := c.ExecContext(context.Background(), `ATTACH DATABASE ? AS idx`, []driver.NamedValue{{Ordinal: 1, Value: attach}}); err != nil {
				return fmt.Errorf("attach the index %s: %w", path, err)
			}
			return nil
		})
		sql.Register(attachingDriver, d)
	})
}

// moveIndex copies the tables that the index file now holds (postings,
// cursors, findings) from a log's file of schema version 8 or before into
// the index file, in one transaction of the index file, before the log's
// migration 9 drops them. The copies skip what is there already, so a move
// that a crash interrupted (copied, not yet dropped) is done again whole.
func (db *DB) moveIndex(ctx context.Context) error {
	var n int
	if err := db.writer.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = 'postings'`).Scan(&n); err != nil {
		return fmt.Errorf("move the index to %s: %w", db.indexPath, err)
	}
	if n == 0 {
		return nil
	}
	if err := db.copyIndex(ctx); err != nil {
		return fmt.Errorf("move the index to %s: %w", db.indexPath, err)
	}
	return nil
}

// copyIndex is moveIndex's copy, on the index file's connection, which
// attaches the log's file for as long as it takes.
func (db *DB) copyIndex(ctx context.Context) (err error) {
	conn, err := db.index.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, `ATTACH DATABASE ? AS log`, db.path); err != nil {
		return err
	}
	// The connection writes the index file alone from here on: a
	// transaction on it would otherwise lock the log's file too.
	defer func() {
		if _, derr := conn.ExecContext(context.WithoutCancel(ctx), `DETACH DATABASE log`); derr != nil && err == nil {
			err = derr
		}
	}()
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	for _, q := range []string{
		// A posting derived from content has its data key: its records
		// go in key_records, its key in its block's list.
		`INSERT INTO main.key_records (data_key, block, bits)
			SELECT data_key, seq >> 6, sum(1 << (seq & 63)) FROM (SELECT DISTINCT data_key, seq FROM log.postings WHERE data_key IS NOT NULL)
			WHERE true GROUP BY 1, 2 ON CONFLICT (data_key, block) DO UPDATE SET bits = bits | excluded.bits`,
		// A stored key's distinct sequence numbers: the sum of their bits
		// in a block is their union (as in the index file's migration 4).
		`INSERT INTO main.postings (key, block, bits) SELECT key, seq >> 6, sum(1 << (seq & 63))
			FROM (SELECT DISTINCT ` + storedKeySQL("key") + ` AS key, seq FROM log.postings)
			WHERE true GROUP BY 1, 2 ON CONFLICT (key, block) DO UPDATE SET bits = bits | excluded.bits`,
		`INSERT OR REPLACE INTO main.cursors (name, seq) SELECT name, seq FROM log.cursors`,
		`INSERT OR IGNORE INTO main.findings (n, id, detector, severity, tenant, subject, records, summary, time)
			SELECT n, id, detector, severity, tenant, subject, records, summary, time FROM log.findings`,
		`INSERT OR IGNORE INTO main.finding_records (seq, n) SELECT seq, n FROM log.finding_records`,
	} {
		if _, err := tx.ExecContext(ctx, q); err != nil {
			return err
		}
	}
	if err := fillLists(ctx, tx, `SELECT seq >> 6, key FROM log.postings WHERE data_key IS NOT NULL ORDER BY 1`); err != nil {
		return err
	}
	return tx.Commit()
}

// writeIndex runs fn in a write transaction of the index file (BEGIN
// IMMEDIATE on its connection) and commits it; what names it in errors.
// The transaction first deletes the postings of keys erased since the last
// such deletion (purge); fn may be nil.
func (db *DB) writeIndex(ctx context.Context, what string, fn func(tx *sql.Tx) error) (err error) {
	if db.readOnly {
		return fmt.Errorf("%s: %w", what, errReadOnly)
	}
	defer func() { giveBackWAL(db.index, db.busyTimeout, err) }()
	tx, err := db.index.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	defer tx.Rollback()
	purged, err := db.purge(ctx, tx)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if fn != nil {
		if err := fn(tx); err != nil {
			return fmt.Errorf("%s: %w", what, classify(err))
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("%s: %w", what, classify(err))
	}
	if purged {
		truncateWAL(db.index, db.busyTimeout)
	}
	return nil
}

// purge deletes, in tx (a write transaction of the index file), the
// postings of the keys erased since the erasure it last purged, and reports
// whether there were any. Erase marks each key it erases with the number of
// its erasure (data_keys.erasure: log_head.erasures once it commits);
// index_head.purged is the last number purged.
//
// It reads the log's file once tx holds the index file's write lock. An
// erasure deletes its keys' postings after its commit, in a transaction
// like tx; and AddPostings, in such a transaction, skips the postings of
// keys it reads as erased. So a posting of an erased key cannot outlive
// the erasure's purge: either the erasure committed before tx read the
// log, and tx sees it, or its purge waits for tx to commit. An erasure
// whose purge did not run (the process stopped, the index file was busy)
// is purged by the next write of the index, the first when the DB opens.
func (db *DB) purge(ctx context.Context, tx *sql.Tx) (bool, error) {
	var erasures, purged int64
	if err := db.readers.QueryRowContext(ctx, `SELECT erasures FROM log_head WHERE one = 1`).Scan(&erasures); err != nil {
		return false, fmt.Errorf("read the erasures: %w", err)
	}
	if err := tx.QueryRowContext(ctx, `SELECT purged FROM index_head WHERE one = 1`).Scan(&purged); err != nil {
		return false, fmt.Errorf("read the erasures purged: %w", err)
	}
	if erasures <= purged {
		return false, nil
	}
	// Keys of erasures after the count read above are purged too, and
	// again by the purge that counts them.
	ids, err := queryAll(ctx, db.readers, "read erased keys", func(r interface{ Scan(...any) error }) (id []byte, err error) {
		err = r.Scan(&id)
		return id, err
	}, `SELECT id FROM data_keys WHERE erasure > ?`, purged)
	if err != nil {
		return false, err
	}
	if err := deleteTerms(ctx, tx, ids); err != nil {
		err = fmt.Errorf("delete the postings of %d erased keys: %w", len(ids), err)
		if errors.Is(err, postings.ErrDamagedList) {
			// Until they are deleted, nothing more is indexed.
			err = indexError(db.indexPath, err)
		}
		return false, err
	}
	if _, err := tx.ExecContext(ctx, `UPDATE index_head SET purged = ? WHERE one = 1`, erasures); err != nil {
		return false, fmt.Errorf("purge erased keys: %w", err)
	}
	return true, nil
}
