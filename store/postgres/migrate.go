package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// ErrSchemaVersion means that the database schema is at a version this
// binary cannot run on: older (run Migrate) or newer (upgrade the binary).
// An error for a newer schema wraps ErrSchemaNewer too.
var (
	ErrSchemaVersion = errors.New("schema version mismatch")
	ErrSchemaNewer   = fmt.Errorf("%w: the schema is newer than this binary", ErrSchemaVersion)
)

// migrateLockClass is the first key of the advisory lock that serialises
// migrations; the second is a hash of the schema name.
const migrateLockClass = 0x1f7a11

type migration struct {
	version int
	name    string
	sql     string
}

// migrations returns the embedded migrations in version order. File names
// are NNNN_description.sql.
func migrations() ([]migration, error) {
	names, err := fs.Glob(migrationFiles, "migrations/*.sql")
	if err != nil {
		return nil, fmt.Errorf("list migrations: %w", err)
	}
	var ms []migration
	for _, name := range names {
		base := path.Base(name)
		num, _, ok := strings.Cut(base, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("list migrations: %s: name is not NNNN_description.sql", base)
		}
		b, err := migrationFiles.ReadFile(name)
		if err != nil {
			return nil, fmt.Errorf("read migration %s: %w", base, err)
		}
		ms = append(ms, migration{version: v, name: base, sql: string(b)})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].version < ms[j].version })
	for i, m := range ms {
		if m.version != i+1 {
			return nil, fmt.Errorf("list migrations: %s: want version %d", m.name, i+1)
		}
	}
	return ms, nil
}

// SchemaVersion is the schema version this package writes and reads: the
// number of its embedded migrations.
func SchemaVersion() int {
	ms, err := migrations()
	if err != nil {
		panic("postgres: " + err.Error())
	}
	return len(ms)
}

// Migrate brings the schema of the database at dsn up to date, creating it
// if needed, and returns. The schema is the DSN's search_path parameter
// when that names one schema, else "public". Running it again, or from
// several processes at once, is safe: migrations run one at a time, under an
// advisory lock, each in the transaction that records it. It fails, with an
// error wrapping ErrSchemaVersion, if the schema is newer than this binary.
func Migrate(ctx context.Context, dsn string) error {
	pool, schema, err := connect(ctx, dsn, Config{MaxConns: 1})
	if err != nil {
		return err
	}
	defer pool.Close()
	return migrate(ctx, pool, schema)
}

func migrate(ctx context.Context, pool *pgxpool.Pool, schema string) error {
	ms, err := migrations()
	if err != nil {
		return err
	}
	return migrateTo(ctx, pool, schema, ms)
}

// migrateTo applies those of ms, the first migrations in order, that the
// schema lacks.
func migrateTo(ctx context.Context, pool *pgxpool.Pool, schema string, ms []migration) error {
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1, hashtext($2))`, migrateLockClass, schema); err != nil {
			return fmt.Errorf("lock schema: %w", err)
		}
		ddl := `CREATE SCHEMA IF NOT EXISTS ` + pgx.Identifier{schema}.Sanitize() + `;
			CREATE TABLE IF NOT EXISTS schema_migrations (
				version    integer PRIMARY KEY,
				name       text NOT NULL,
				applied_at timestamptz NOT NULL DEFAULT now()
			)`
		if _, err := tx.Exec(ctx, ddl); err != nil {
			return fmt.Errorf("create schema_migrations: %w", err)
		}
		have, err := schemaVersion(ctx, tx)
		if err != nil {
			return err
		}
		if have > len(ms) {
			return fmt.Errorf("schema %q is at version %d, newer than this binary's %d: %w", schema, have, len(ms), ErrSchemaNewer)
		}
		for _, m := range ms[have:] {
			if _, err := tx.Exec(ctx, m.sql); err != nil {
				return fmt.Errorf("apply %s: %w", m.name, err)
			}
			if _, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version, name) VALUES ($1, $2)`, m.version, m.name); err != nil {
				return fmt.Errorf("record %s: %w", m.name, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("migrate schema %q: %w", schema, classify(err))
	}
	return nil
}

// checkVersion fails unless the schema is exactly at SchemaVersion.
func checkVersion(ctx context.Context, pool *pgxpool.Pool, schema string) error {
	have, err := schemaVersion(ctx, pool)
	if err != nil {
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "42P01" { // undefined_table
			return fmt.Errorf("check schema %q: %w", schema, classify(err))
		}
		have = 0
	}
	switch want := SchemaVersion(); {
	case have < want:
		return fmt.Errorf("check schema %q: at version %d, this binary needs %d; run the migration first: %w", schema, have, want, ErrSchemaVersion)
	case have > want:
		return fmt.Errorf("check schema %q: at version %d, newer than this binary's %d: %w", schema, have, want, ErrSchemaNewer)
	}
	return nil
}

type querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

func schemaVersion(ctx context.Context, q querier) (int, error) {
	var v int
	if err := q.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM schema_migrations`).Scan(&v); err != nil {
		return 0, fmt.Errorf("read schema version: %w", err)
	}
	return v, nil
}
