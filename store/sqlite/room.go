package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"time"

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
// filled, which only a compacted copy (Backup) gives back.
func (db *DB) Room() error {
	// The ledger asks before it queues each call's records, and a statfs
	// costs about 2 µs: while the disk has at least twice the reserve
	// free, an answer of "room" is taken again for 50 ms (less than the
	// reserve can be written in that time).
	now := time.Now().UnixNano()
	if now-db.roomAt.Load() < int64(roomFor) {
		return nil
	}
	free, err := db.room(db.minFree, false, "less than the %s kept in reserve for checkpoints, erasure and operators' records (storage.min_free_bytes): records are refused until space is freed")
	if err == nil && (db.minFree <= 0 || free >= 2*db.minFree) {
		db.roomAt.Store(now)
	}
	return err
}

// roomFor is how long Room takes an answer of "room" again.
const roomFor = 50 * time.Millisecond

// indexRoom is Room for the investigation index, which stops adding
// postings at twice the reserve: the evidence comes before what is
// derived from it, so as the disk fills the index falls behind first
// (infertrail_index_lag_records grows), and records are refused only
// later. Its own file's empty pages count as free.
func (db *DB) indexRoom() error {
	_, err := db.room(2*db.minFree, true, "less than the %s the index leaves free (twice storage.min_free_bytes): the index waits until space is freed")
	return err
}

// room is Room with the reserve given, and returns the free space found
// (-1 when there is no reserve or it cannot be read); then says what a
// shortfall means, with a %s for the reserve.
func (db *DB) room(reserve int64, index bool, then string) (int64, error) {
	if reserve <= 0 {
		return -1, nil
	}
	free, ok := db.FreeBytes()
	if !ok {
		return -1, nil
	}
	if free >= reserve {
		return free, nil
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
		return free, nil
	}
	return free, fmt.Errorf("%w: %s has %s free, "+then, infertrail.ErrStorageFull, filepath.Dir(db.path), mebibytes(free), mebibytes(reserve))
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

// giveBackWAL empties the write-ahead log that w writes when err says a
// transaction failed for want of space. The rolled-back frames stay in the
// WAL file, which SQLite reuses but does not shrink: on a full disk the
// space a large erasure took would stay taken, and records be refused for
// good.
func giveBackWAL(w *sql.DB, timeout time.Duration, err error) {
	if errors.Is(err, infertrail.ErrStorageFull) {
		truncateWAL(w, timeout)
	}
}

// classify marks err as wrapping infertrail.ErrStorageFull when SQLite
// failed for want of space (SQLITE_FULL: the disk, or a file size limit),
// and as wrapping infertrail.ErrStorageFailed when the disk failed the
// write (SQLITE_IOERR) or the file became read-only under the writer
// (SQLITE_READONLY: a file system remounted read-only). SQLite rolls the
// statement back, and the transaction stays usable only to be rolled
// back: nothing of the failed write is kept.
func classify(err error) error {
	var se *sqlite.Error
	if err == nil || errors.Is(err, infertrail.ErrUnavailable) || !errors.As(err, &se) {
		return err
	}
	switch se.Code() & 0xff {
	case sqlite3.SQLITE_FULL:
		return fmt.Errorf("%w: %w", infertrail.ErrStorageFull, err)
	case sqlite3.SQLITE_IOERR, sqlite3.SQLITE_READONLY:
		return fmt.Errorf("%w (an I/O error, or its file system went read-only: see the kernel's log): %w", infertrail.ErrStorageFailed, err)
	}
	return err
}
