// Package postgres is an InferTrail store on PostgreSQL, for several
// stateless nodes that append to one log.
//
// # Sequencing
//
// [DB.BeginAppend] begins a transaction and locks the single log_head row
// (SELECT … FOR UPDATE). Whichever node holds that lock appends; the others
// wait in the database. Records, their content, the new tree hashes and the
// new tree size commit or roll back together, so the tree stays one
// gap-free log whatever the number of nodes, and a transaction interrupted
// mid-batch leaves nothing behind. Every connection runs with
// synchronous_commit on, whatever the server's default: once Commit returns
// nil, the batch is on the database's disk (and on its synchronous replicas,
// if the server has any).
//
// # Schema and partitioning
//
// Records and content blobs are range-partitioned by append period: the UTC
// calendar month, on the clock of the database server, of the transaction
// that appended them (never earlier than the previous append's period, so
// a clock stepping back cannot reorder periods). Partitioning by append
// period rather than by a record's own received time, or by fixed ranges of
// sequence numbers, gives both properties the log needs:
//
//   - Periods increase with sequence numbers, so each partition is one
//     contiguous run of the log. A table of each period's first sequence
//     number lets [DB.Entries] touch only the partitions its range covers,
//     however many there are.
//   - Retention is by time: dropping the oldest month drops two tables, at
//     any row count, with no DELETE and no vacuum. A record's received time
//     cannot scatter it into an old or a future partition (a node with a
//     skewed clock, or a backdated import, still writes to the current
//     month), so no append ever needs a partition that is not the current
//     one.
//
// A month's partitions, and the next month's, are created inside the first
// append transaction of the month, as new tables attached to the parent
// (ATTACH PARTITION takes only a SHARE UPDATE EXCLUSIVE lock, so readers and
// long exports are never blocked). An append never fails for a missing
// partition.
//
// Blobs are partitioned too, and deduplicated within a period only: each
// month's partition holds every blob that the month's records reference. A
// blob that an earlier month already holds is stored again the first time a
// record of the current month references it — from the batch if the caller
// sends it, else copied from the earlier month inside the append (callers
// skip blobs they know are stored). So retention drops a month with no
// reference counting or garbage collection across billions of blobs, and
// never takes content that a later month's records still reference. The
// cost is one copy of a recurring blob (a shared system prompt, say) per
// month.
//
// Tree hashes are not partitioned: the tree outlives retention, and it costs
// about 64 bytes a record. They are packed 64 consecutive stored-hash indexes
// to a row, so reading the hashes of an inclusion proof is one index lookup
// per distinct chunk.
//
// Record ids are unique within a period (a unique index on id and period,
// which costs no more than the plain index on id that lookups need). Across
// periods, uniqueness rests on the serialised append path, which looks ids
// up before it appends; looking an id up probes one index per month kept.
//
// # Erasure
//
// An erasure (the append transaction's Erase) clears the data keys' wrapped
// forms and deletes the blobs sealed under them from every period's
// partition, through a partial index on key_id in each. At commit the
// content is gone from the live database: no query, replica or new backup
// can return it. The old row versions stay on disk as dead tuples until
// VACUUM reclaims them and new rows overwrite their pages, and they stay in
// the WAL, in WAL archives and in earlier backups, for as long as those are
// kept. The store does not run VACUUM after an erasure (autovacuum reclaims
// the space; VACUUM would not reach the other copies). To make an erasure
// reach those copies, rotate the key-encryption key (rewrap the live data
// keys under a new one) and destroy the old one: the wrapped data keys in
// old copies can then no longer be unwrapped, so their blobs cannot be read.
//
// A legal hold and an erasure never both succeed on the same content:
// [DB.AddHold] locks the log head FOR SHARE in the transaction that inserts
// the hold, so it waits for an append transaction to end, and an append
// transaction begun meanwhile waits for the hold and then sees it.
//
// # Schema versions
//
// The schema is versioned in a schema_migrations table and migrated from
// migrations embedded in the binary, under an advisory lock, so several
// nodes starting at once do not race. [Open] migrates unless
// [Config.SkipMigrate] is set; [Migrate] does it alone, for an explicit
// migration step. A store refuses to run on a schema older than the binary
// (when it does not migrate) or newer than it.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/infertrail/infertrail"
	"github.com/infertrail/infertrail/store/internal/behind"
)

// Config configures a store. Its zero value is a valid configuration.
type Config struct {
	// Schema is the PostgreSQL schema that holds the store's tables; it is
	// created if missing. The default is the DSN's search_path parameter when
	// that names one schema, else "public".
	Schema string
	// MaxConns is the largest number of open connections. The default is 8.
	// A BeginAppend waiting for the log head holds one while it waits.
	MaxConns int32
	// ConnectTimeout bounds each connection attempt. The default is the
	// DSN's connect_timeout, else 5 seconds.
	ConnectTimeout time.Duration
	// SkipMigrate stops Open from migrating the schema; Open then fails,
	// with an error wrapping ErrSchemaVersion, unless the schema is exactly
	// at the version this package expects. Run Migrate first.
	SkipMigrate bool
	// ReadOnly opens the store for reading only, as SkipMigrate does, with
	// every session's transactions read-only
	// (default_transaction_read_only): nothing the process does writes to
	// the database, and a role granted only SELECT suffices. For
	// verification; appends and every other write fail.
	ReadOnly bool
	// Now, if set, is the clock that decides the append period (the month
	// whose partition an append writes to). The default is the database
	// server's clock, which every node shares.
	Now func() time.Time
}

// DefaultConnectTimeout is the connection timeout when neither Config nor the
// DSN sets one.
const DefaultConnectTimeout = 5 * time.Second

// idleInTransactionTimeout is how long the server lets a transaction of the
// store sit idle before it ends the session, releasing the log head.
const idleInTransactionTimeout = "60s"

// DB is an InferTrail store in a PostgreSQL database. It is safe for
// concurrent use.
type DB struct {
	pool   *pgxpool.Pool
	schema string
	now    func() time.Time
	// rollbackTimeout bounds a rollback, which has no caller context.
	rollbackTimeout time.Duration
	// appends counts this node's append transactions, which its index's
	// and detectors' writes go after: they share the node's CPU, and
	// PostgreSQL's, with ingest.
	appends behind.Appends
}

var _ infertrail.Store = (*DB)(nil)

// Open connects to the database at dsn (a postgres:// URL or a key=value
// connection string), migrates its schema unless cfg.SkipMigrate is set, and
// returns the store. An unreachable database is an error wrapping
// infertrail.ErrUnavailable. Once open, the store reconnects by itself when
// connections drop.
func Open(ctx context.Context, dsn string, cfg Config) (*DB, error) {
	pool, schema, err := connect(ctx, dsn, cfg)
	if err != nil {
		return nil, err
	}
	if cfg.SkipMigrate || cfg.ReadOnly {
		err = checkVersion(ctx, pool, schema)
	} else {
		err = migrate(ctx, pool, schema)
	}
	if err != nil {
		pool.Close()
		return nil, err
	}
	return &DB{
		pool:            pool,
		schema:          schema,
		now:             cfg.Now,
		rollbackTimeout: pool.Config().ConnConfig.ConnectTimeout,
	}, nil
}

// connect opens a pool whose connections use the store's schema and
// synchronous commit, and checks that the database answers.
func connect(ctx context.Context, dsn string, cfg Config) (*pgxpool.Pool, string, error) {
	if cfg.MaxConns < 0 {
		return nil, "", fmt.Errorf("open postgres store: max conns %d is negative: %w", cfg.MaxConns, infertrail.ErrInvalid)
	}
	if cfg.ConnectTimeout < 0 {
		return nil, "", fmt.Errorf("open postgres store: connect timeout %v is negative: %w", cfg.ConnectTimeout, infertrail.ErrInvalid)
	}
	pc, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// The parse error can echo the DSN, password included.
		return nil, "", fmt.Errorf("open postgres store: parse dsn %s: %w", redactDSN(dsn), infertrail.ErrInvalid)
	}
	schema := cfg.Schema
	if schema == "" {
		schema = "public"
		if sp := strings.TrimSpace(pc.ConnConfig.RuntimeParams["search_path"]); sp != "" && !strings.ContainsAny(sp, `,"`) {
			schema = sp
		}
	}
	if len(schema) > 63 || strings.ContainsRune(schema, 0) {
		return nil, "", fmt.Errorf("open postgres store: schema %q: not a valid identifier: %w", schema, infertrail.ErrInvalid)
	}
	pc.ConnConfig.RuntimeParams["search_path"] = pgx.Identifier{schema}.Sanitize()
	pc.ConnConfig.RuntimeParams["synchronous_commit"] = "on"
	if cfg.ReadOnly {
		pc.ConnConfig.RuntimeParams["default_transaction_read_only"] = "on"
	}
	// A node that stops responding in the middle of an append (a frozen VM
	// keeps its TCP connection open) must not hold the log head for ever.
	pc.ConnConfig.RuntimeParams["idle_in_transaction_session_timeout"] = idleInTransactionTimeout
	if pc.ConnConfig.RuntimeParams["application_name"] == "" {
		pc.ConnConfig.RuntimeParams["application_name"] = "infertrail"
	}
	switch {
	case cfg.ConnectTimeout > 0:
		pc.ConnConfig.ConnectTimeout = cfg.ConnectTimeout
	case pc.ConnConfig.ConnectTimeout == 0:
		pc.ConnConfig.ConnectTimeout = DefaultConnectTimeout
	}
	pc.MaxConns = 8
	if cfg.MaxConns > 0 {
		pc.MaxConns = cfg.MaxConns
	}
	pc.MinConns = 0
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, "", fmt.Errorf("open postgres store: %w", classify(err))
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, "", fmt.Errorf("open postgres store: connect: %w", classify(err))
	}
	return pool, schema, nil
}

// redactDSN returns dsn without its password, for error messages.
func redactDSN(dsn string) string {
	if u, err := url.Parse(dsn); err == nil && u.Scheme != "" {
		return u.Redacted()
	}
	return "(connection string)"
}

// Close closes the store's connections. It waits for open append
// transactions to commit or roll back.
func (db *DB) Close() error {
	db.pool.Close()
	return nil
}

// classify marks err as wrapping infertrail.ErrUnavailable when it says
// that the database could not be reached or the connection was lost, and
// as wrapping infertrail.ErrStorageFull when the database's disk is full
// (disk_full, 53100), so that callers can answer "retry later". Other
// errors are returned as they are.
func classify(err error) error {
	if err == nil || errors.Is(err, infertrail.ErrUnavailable) {
		return err
	}
	if pgErr := (*pgconn.PgError)(nil); errors.As(err, &pgErr) && pgErr.Code == "53100" {
		return fmt.Errorf("%w: %w", infertrail.ErrStorageFull, err)
	}
	if !unavailable(err) {
		return err
	}
	return fmt.Errorf("%w: %w", infertrail.ErrUnavailable, err)
}

func unavailable(err error) bool {
	if errors.Is(err, context.Canceled) {
		// The caller gave up; the database may be fine.
		return false
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch {
		case strings.HasPrefix(pgErr.Code, "08"), // connection exception
			pgErr.Code == "57P01", // admin shutdown (pg_terminate_backend too)
			pgErr.Code == "57P02", // crash shutdown
			pgErr.Code == "57P03", // cannot connect now (starting up)
			pgErr.Code == "53300", // too many connections
			pgErr.Code == "25006": // read-only transaction: a standby after failover
			return true
		}
		return false
	}
	var connectErr *pgconn.ConnectError
	var netErr net.Error
	return errors.As(err, &connectErr) ||
		errors.As(err, &netErr) ||
		pgconn.SafeToRetry(err) ||
		pgconn.Timeout(err) ||
		errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, io.EOF) ||
		errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, pgconn.ErrConnClosed) // lost mid-operation, after a failure earlier in it
}
