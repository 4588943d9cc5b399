package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"
)

//go:embed migrations/*.sql index_migrations/*.sql
var migrationFS embed.FS

// A schema is the migrations of one of a database's two files.
type schema struct {
	dir  string // of migrationFS
	what string // names the file in errors
	// appID marks an SQLite file as that file of an InferTrail database.
	appID int64
	// steps are migrations' Go parts, by version: each runs after that
	// version's SQL, in the same transaction.
	steps map[int]func(context.Context, *sql.Tx) error
}

var (
	// logSchema is the log's file: records, hashes, content, keys,
	// checkpoints, tokens, approvals.
	logSchema = schema{dir: "migrations", what: "InferTrail database", appID: 0x4954726c} // "ITrl"
	// indexSchema is the index file beside it: data derived from the log
	// (postings, cursors, findings).
	indexSchema = schema{dir: "index_migrations", what: "InferTrail index", appID: 0x49546978, // "ITix"
		steps: map[int]func(context.Context, *sql.Tx) error{2: splitTermSources, packedTerms: packPostings, erasureLists: listTerms, shortTerms: shortTermLists}}
)

type migration struct {
	version int
	name    string
	sql     string
}

// migrations returns the embedded migrations of sc, named NNNN_name.sql, in
// order. Their versions must run 1, 2, 3, … without gaps.
func (sc schema) migrations() ([]migration, error) {
	names, err := fs.Glob(migrationFS, sc.dir+"/*.sql")
	if err != nil {
		return nil, err
	}
	var ms []migration
	for _, n := range names {
		base := path.Base(n)
		num, _, ok := strings.Cut(base, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil {
			return nil, fmt.Errorf("migration %s: name must start with a version number and '_'", base)
		}
		b, err := migrationFS.ReadFile(n)
		if err != nil {
			return nil, err
		}
		ms = append(ms, migration{version: v, name: base, sql: string(b)})
	}
	slices.SortFunc(ms, func(a, b migration) int { return a.version - b.version })
	for i, m := range ms {
		if m.version != i+1 {
			return nil, fmt.Errorf("migration %s: version %d, want %d", m.name, m.version, i+1)
		}
	}
	return ms, nil
}

// SchemaVersion returns the newest schema version of the log's file this
// package knows.
func SchemaVersion() int {
	ms, err := logSchema.migrations()
	if err != nil {
		panic(err)
	}
	return len(ms)
}

// check checks that the file q reads (a database or a transaction) is
// empty or that file of an InferTrail database, and returns its
// application_id, 0 for a new file.
func (sc schema) check(ctx context.Context, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}) (int64, error) {
	var appID int64
	if err := q.QueryRowContext(ctx, `PRAGMA application_id`).Scan(&appID); err != nil {
		return 0, fmt.Errorf("migrate schema: %w", err)
	}
	if appID != 0 && appID != sc.appID {
		return 0, fmt.Errorf("not an %s: SQLite application_id is %#x, want %#x", sc.what, appID, sc.appID)
	}
	var tracked, others int
	err := q.QueryRowContext(ctx, `SELECT
		count(*) FILTER (WHERE name = 'schema_migrations'),
		count(*) FILTER (WHERE name <> 'schema_migrations' AND name NOT LIKE 'sqlite_%')
		FROM sqlite_schema WHERE type = 'table'`).Scan(&tracked, &others)
	if err != nil {
		return 0, fmt.Errorf("migrate schema: %w", err)
	}
	if tracked == 0 && others > 0 {
		return 0, fmt.Errorf("not an %s: it holds %d tables but no schema_migrations table", sc.what, others)
	}
	return appID, nil
}

// version returns the schema version of the file q reads: 0 for a file
// with no migrations.
func (sc schema) version(ctx context.Context, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}) (int, error) {
	var tracked int
	if err := q.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = 'schema_migrations'`).Scan(&tracked); err != nil || tracked == 0 {
		return 0, err
	}
	var v int
	if err := q.QueryRowContext(ctx, `SELECT coalesce(max(version), 0) FROM schema_migrations`).Scan(&v); err != nil {
		return 0, fmt.Errorf("read the %s's schema version: %w", sc.what, err)
	}
	return v, nil
}

// migrate brings the schema sc of the file that w writes up to date in one
// write transaction, after checking that the file is that file of an
// InferTrail database, with a schema not newer than this package knows. It
// returns the version the file was at (0: a new file).
func (sc schema) migrate(ctx context.Context, w *sql.DB) (from int, err error) {
	ms, err := sc.migrations()
	if err != nil {
		return 0, fmt.Errorf("load migrations: %w", err)
	}
	tx, err := w.BeginTx(ctx, nil) // BEGIN IMMEDIATE: one process migrates at a time
	if err != nil {
		return 0, fmt.Errorf("migrate schema: %w", err)
	}
	defer tx.Rollback()
	appID, err := sc.check(ctx, tx)
	if err != nil {
		return 0, err
	}
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    INTEGER PRIMARY KEY,
		name       TEXT    NOT NULL,
		applied_at INTEGER NOT NULL -- Unix nanoseconds
	)`); err != nil {
		return 0, fmt.Errorf("migrate schema: %w", err)
	}
	current, err := sc.version(ctx, tx)
	if err != nil {
		return 0, fmt.Errorf("migrate schema: %w", err)
	}
	if current > len(ms) {
		return 0, fmt.Errorf("%s schema version %d is newer than this build of infertrail knows (%d): use a newer infertrail", sc.what, current, len(ms))
	}
	for _, m := range ms[current:] {
		if _, err := tx.ExecContext(ctx, m.sql); err != nil {
			return 0, fmt.Errorf("apply migration %s: %w", m.name, err)
		}
		if step := sc.steps[m.version]; step != nil {
			if err := step(ctx, tx); err != nil {
				return 0, fmt.Errorf("apply migration %s: %w", m.name, err)
			}
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)`,
			m.version, m.name, time.Now().UnixNano()); err != nil {
			return 0, fmt.Errorf("apply migration %s: %w", m.name, err)
		}
	}
	if appID == 0 {
		if _, err := tx.ExecContext(ctx, fmt.Sprintf(`PRAGMA application_id = %d`, sc.appID)); err != nil {
			return 0, fmt.Errorf("migrate schema: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("migrate schema: %w", err)
	}
	return current, nil
}
