package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

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
	abs, err := filepath.Abs(path)
	if err != nil {
		return 0, fmt.Errorf("back up to %s: %w", path, err)
	}
	if _, err := os.Lstat(abs); err == nil {
		return 0, fmt.Errorf("back up to %s: the file exists; give a new file: %w", abs, infertrail.ErrInvalid)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return 0, fmt.Errorf("back up to %s: %w", abs, err)
	}
	if fi, err := os.Stat(filepath.Dir(abs)); err != nil || !fi.IsDir() {
		return 0, fmt.Errorf("back up to %s: no folder %s: %w", abs, filepath.Dir(abs), infertrail.ErrInvalid)
	}
	// A connection of its own: VACUUM INTO only reads the log, but SQLite
	// refuses it on the readers' query_only connections.
	src, err := sql.Open("sqlite", dsn(db.path, "", fmt.Sprintf("busy_timeout(%d)", db.busyTimeout.Milliseconds())))
	if err != nil {
		return 0, fmt.Errorf("back up to %s: %w", abs, err)
	}
	defer src.Close()
	if _, err := src.ExecContext(ctx, `VACUUM main INTO ?`, abs); err != nil {
		os.Remove(abs) // a partial copy is no backup
		return 0, fmt.Errorf("back up to %s: %w", abs, classify(err))
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
