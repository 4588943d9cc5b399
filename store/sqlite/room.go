package sqlite

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"

	sqlite "modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/infertrail/infertrail"
)

// Room returns an error wrapping infertrail.ErrStorageFull when the file
// system of the database files has less free space than the reserve
// (Config.MinFree), naming the folder, the free space and the reserve. It
// is nil when there is no reserve, or when the free space cannot be read
// (a platform without statfs): appends then fail only when the disk does.
//
// Pages of the log's file that hold nothing any more count as free:
// SQLite fills them before it grows the file. Retention, which erases the
// oldest content, empties whole pages; an erasure of content that is
// interleaved with others' (a tenant's, a session's) leaves pages partly
// filled, which only a VACUUM gives back.
func (db *DB) Room() error {
	return db.room(db.minFree, false, "less than the %s kept in reserve for checkpoints, erasure and operators' records (storage.min_free_bytes): records are refused until space is freed")
}

// indexRoom is Room for the investigation index, which stops adding
// postings at twice the reserve: the evidence comes before what is
// derived from it, so as the disk fills the index falls behind first
// (infertrail_index_lag_records grows), and records are refused only
// later. Its own file's empty pages count as free.
func (db *DB) indexRoom() error {
	return db.room(2*db.minFree, true, "less than the %s the index leaves free (twice storage.min_free_bytes): the index waits until space is freed")
}

// room is Room with the reserve given; then says what the shortfall means,
// with a %s for the reserve.
func (db *DB) room(reserve int64, index bool, then string) error {
	if reserve <= 0 {
		return nil
	}
	free, ok := db.FreeBytes()
	if !ok || free >= reserve {
		return nil
	}
	file := db.points
	if index {
		file = db.index
	}
	var pages int64
	ctx, cancel := context.WithTimeout(context.Background(), db.busyTimeout)
	defer cancel()
	if err := file.QueryRowContext(ctx, `SELECT freelist_count * page_size FROM pragma_freelist_count, pragma_page_size`).Scan(&pages); err == nil {
		free += pages
	}
	if free >= reserve {
		return nil
	}
	return fmt.Errorf("%w: %s has %s free, "+then, infertrail.ErrStorageFull, filepath.Dir(db.path), mebibytes(free), mebibytes(reserve))
}

// FreeBytes returns the space that the file system of the database files
// has free for an unprivileged writer, and whether it could be read.
func (db *DB) FreeBytes() (int64, bool) {
	return freeBytes(filepath.Dir(db.path))
}

// MinFree returns the reserve of free space appends leave, in bytes
// (Config.MinFree; negative: none).
func (db *DB) MinFree() int64 { return db.minFree }

func mebibytes(n int64) string {
	return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
}

// classify marks err as wrapping infertrail.ErrStorageFull when SQLite
// failed for want of space (SQLITE_FULL: the disk, or a file size limit).
// SQLite rolls the statement back, and the transaction stays usable only
// to be rolled back: nothing of the failed write is kept.
func classify(err error) error {
	var se *sqlite.Error
	if err == nil || errors.Is(err, infertrail.ErrStorageFull) || !errors.As(err, &se) || se.Code()&0xff != sqlite3.SQLITE_FULL {
		return err
	}
	return fmt.Errorf("%w: %w", infertrail.ErrStorageFull, err)
}
