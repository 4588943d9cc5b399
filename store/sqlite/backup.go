package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/infertrail/infertrail"
)

// Backup writes a consistent copy of the log's file — records, content,
// tree hashes, checkpoints, data keys, tokens — to path, a file that must
// not exist yet, while appends go on: the copy is the log as of one
// commit, and it returns that tree size. The copy is compacted (SQLite's
// VACUUM INTO): pages that erasures and retention left partly empty are
// packed, so a copy restored in place of the file gives their space back.
// The index file is not copied: it is made again from the log.
func (db *DB) Backup(ctx context.Context, path string) (int64, error) {
	abs, err := copyLog(ctx, db.path, path, db.busyTimeout)
	if err != nil {
		return 0, fmt.Errorf("back up to %s: %w", abs, err)
	}
	copied, err := sql.Open("sqlite", dsn(abs, "", "query_only(1)"))
	if err != nil {
		return 0, fmt.Errorf("back up to %s: open the copy: %w", abs, err)
	}
	defer copied.Close()
	var size int64
	if err := copied.QueryRowContext(ctx, `SELECT `+sizeExpr+` FROM log_head WHERE one = 1`).Scan(&size); err != nil {
		return 0, fmt.Errorf("back up to %s: read the copy's tree size: %w", abs, err)
	}
	return size, nil
}

// Copy writes a consistent, compacted copy of the log's file at src to dst,
// a file that must not exist yet, as Backup does, and writes nothing to src
// (it is opened read-only), whatever its schema version: opened without
// Config.ReadOnly, the copy is migrated, and src stays as it was.
func Copy(ctx context.Context, src, dst string) error {
	abs, err := copyLog(ctx, src, dst, 10*time.Second)
	if err != nil {
		return fmt.Errorf("copy %s to %s: %w", src, abs, err)
	}
	return nil
}

// copyLog is Backup's and Copy's copy of src to the new file dst; it
// returns dst's absolute path.
func copyLog(ctx context.Context, src, dst string, busy time.Duration) (string, error) {
	abs, err := filepath.Abs(dst)
	if err != nil {
		return dst, err
	}
	if _, err := os.Lstat(abs); err == nil {
		return abs, fmt.Errorf("the file exists; give a new file: %w", infertrail.ErrInvalid)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return abs, err
	}
	if fi, err := os.Stat(filepath.Dir(abs)); err != nil || !fi.IsDir() {
		return abs, fmt.Errorf("no folder %s: %w", filepath.Dir(abs), infertrail.ErrInvalid)
	}
	src, err = filepath.Abs(src)
	if err != nil {
		return abs, err
	}
	if _, err := os.Stat(src); err != nil {
		return abs, err
	}
	// A read-only connection of its own: SQLite refuses VACUUM INTO on
	// the readers' query_only connections.
	from, err := sql.Open("sqlite", dsn(src, "", readOnlyMode, fmt.Sprintf("busy_timeout(%d)", busy.Milliseconds())))
	if err != nil {
		return abs, err
	}
	defer from.Close()
	if _, err := from.ExecContext(ctx, `VACUUM main INTO ?`, abs); err != nil {
		os.Remove(abs) // a partial copy is no copy
		return abs, classify(err)
	}
	return abs, nil
}
