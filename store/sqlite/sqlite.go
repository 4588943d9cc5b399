// Package sqlite is the embedded infertrail.Store: one SQLite database file
// in WAL mode, written through modernc.org/sqlite (pure Go, no cgo).
//
// # Durability
//
// The writer connection runs with synchronous=FULL. In WAL mode that makes
// SQLite fsync the write-ahead log at every COMMIT, before COMMIT returns:
// the frames of a committed transaction, and the commit frame that marks it
// complete, are on stable storage when AppendTx.Commit returns nil. After a
// crash of the process, the operating system or the machine (power loss
// included), the next open replays the WAL up to its last complete commit
// frame, so every acknowledged record, its blobs, its tree hashes and the new
// tree size survive, together or not at all. With synchronous=NORMAL SQLite
// would fsync the WAL only at checkpoints: the database would stay consistent,
// but the last transactions before a power loss or kernel crash could roll
// back after they were acknowledged, which breaks "acknowledged means durable".
// Group commit makes FULL cheap: one fsync is shared by a whole batch.
//
// # Locking
//
// Append transactions run on one dedicated writer connection and start with
// BEGIN IMMEDIATE, so SQLite's write lock is the log's write lock: it
// serialises appends within a process and across processes sharing the file.
// Readers use a separate pool of read-only connections that WAL lets run
// while a write is in progress; each sees the last committed state.
//
// # The index file
//
// What is derived from the log — the investigation index, the cursors of
// the processes that follow the log, the detectors' findings — is in a
// second database file beside the first (IndexPath: infertrail-index.db
// for infertrail.db), written by a connection of its own. Its write lock
// is not the log's, so an append never waits for the index's commit (with
// one file, a step of the index held the writer 3 to 7 ms while appends
// queued behind it). Readers attach it as schema idx, so a query joins
// postings and records in one read transaction. Each cursor moves in the
// transaction that writes what it covers, and the file runs with
// synchronous=FULL like the log's, so that a cursor that has moved stays
// moved (a SIEM stream's, say); its syncs are its own, not an append's
// (measured with synchronous=NORMAL: no faster appends). An erasure
// deletes the postings of the keys it erases from this file after the
// log's commit (see DB.purge).
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/mod/sumdb/tlog"
	sqlite "modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/infertrail/infertrail"
	"github.com/infertrail/infertrail/store/internal/behind"
	"github.com/infertrail/infertrail/store/internal/leafcol"
)

var _ infertrail.Store = (*DB)(nil)

// Config configures a DB. The zero value is ready to use.
type Config struct {
	// BusyTimeout is how long a connection waits for a lock that another
	// connection or process holds (SQLite's busy_timeout) before failing.
	// It bounds how long BeginAppend waits for another process's append
	// transaction. Zero means 10 seconds.
	BusyTimeout time.Duration
	// Readers is the number of read-only connections. Zero means 4.
	Readers int
	// MinFree is the free space, in bytes, that records leave on the file
	// system of the database files (DB.Room): below it the ledger refuses
	// them with an error wrapping infertrail.ErrStorageFull, and nothing
	// of them is stored. The reserve keeps room for what must still be
	// written when the disk fills: the WAL's checkpoints, signed
	// checkpoints, erasures (which write before they free anything) and
	// the records of operators' tokens and holds. The investigation index
	// stops at twice the reserve. Zero means DefaultMinFree; a negative
	// value keeps no reserve (appends then fail only when the disk is
	// full, and the index only then).
	MinFree int64
	// ReadOnly opens the database for reading only, and writes nothing
	// to its files: no migration, no index file made beside it, its
	// journal mode left as it is. A backup, or a copy handed to an
	// auditor, keeps its bytes while it is verified. The file must exist
	// and its schema be at SchemaVersion (an error wrapping
	// ErrSchemaOlder if it is older: open a copy without ReadOnly to
	// migrate that). The index file beside it is read, read-only, if
	// there is one; without it (a backup holds none) what reads it
	// (queries, cursors, findings) fails with infertrail.ErrNoIndex.
	// Every write fails.
	ReadOnly bool
}

// ErrSchemaOlder means that a database opened with Config.ReadOnly has a
// schema older than this package's, which reading it needs migrated.
var ErrSchemaOlder = errors.New("the schema must be migrated to be read")

// errNoIndex is the error of a read of the index of a DB opened with
// Config.ReadOnly and no index file.
var errNoIndex = fmt.Errorf("%w: the log was opened read-only, with no index file beside it", infertrail.ErrNoIndex)

// errReadOnly is the error of a write to a DB opened with Config.ReadOnly.
var errReadOnly = fmt.Errorf("the database was opened read-only: %w", infertrail.ErrInvalid)

// walLimit is the size a WAL file is cut back to when a checkpoint empties
// it: 16 MiB.
const walLimit = "journal_size_limit(16777216)"

// DefaultMinFree is the free space appends leave by default: 64 MiB.
const DefaultMinFree = 64 << 20

func (c *Config) setDefaults() error {
	if c.BusyTimeout < 0 {
		return fmt.Errorf("config: BusyTimeout %v is negative: %w", c.BusyTimeout, infertrail.ErrInvalid)
	}
	if c.BusyTimeout == 0 {
		c.BusyTimeout = 10 * time.Second
	}
	if c.Readers < 0 {
		return fmt.Errorf("config: Readers %d is negative: %w", c.Readers, infertrail.ErrInvalid)
	}
	if c.Readers == 0 {
		c.Readers = 4
	}
	if c.MinFree == 0 {
		c.MinFree = DefaultMinFree
	}
	return nil
}

// DB is an infertrail.Store in one SQLite database file. It is safe for
// concurrent use, and several DBs, in one process or several, may share a
// file.
type DB struct {
	path        string
	indexPath   string
	busyTimeout time.Duration
	writer      *sql.DB // one connection: append transactions and checkpoint writes
	// walkStmts holds the statements of walks of postings (walkStmt).
	walkStmts struct {
		sync.Mutex
		m map[string]*sql.Stmt
	}
	// index is one connection to the index file: postings, cursors and
	// findings (see The index file).
	index   *sql.DB
	readers *sql.DB // read-only connections, with the index file attached
	// points holds read-only connections of their own for the point reads
	// that requests make (pointRow), so that an authentication never waits
	// behind a long scan (an export, a search) on the readers.
	points *sql.DB

	// Prepared statements on writer, used inside append transactions.
	insRecord, insBlob, putChunk, getChunkW, lookupID, lookupIDSmall, readSize, putBlock *sql.Stmt
	// The same inserts, of multiRows rows at once.
	insRecords, insBlobs *sql.Stmt
	insKey, insKeys      *sql.Stmt
	// Prepared statements on readers.
	getChunk, getChunks, getChunkRange, entryByID, blobsByID, keysByID, blobRange, keyRange *sql.Stmt
	// Point reads that requests make, on points, run by pointRow.
	tokenByHash, latestCheckpoint, treeSize *sql.Stmt
	nreaders                                int
	minFree                                 int64        // Config.MinFree; negative: none
	readOnly                                bool         // Config.ReadOnly: index is nil
	noIndex                                 bool         // read-only, and no index file to attach
	roomAt                                  atomic.Int64 // when Room last found room (UnixNano)

	// chunkSize is the number of stored hashes packed in one hash_chunks
	// row: log_head.chunk_size, fixed when the log is made.
	chunkSize int64

	// appends counts append transactions, which the index's and the
	// detectors' writes go after.
	appends behind.Appends

	// block is the time block this process last widened, as committed:
	// the database's bounds of that block hold at least these.
	blockMu sync.Mutex
	block   timeBlock

	// edge is the hash chunk at the tree's right edge as this process
	// last committed it, with the tree size then. A transaction that
	// finds the tree at that size (no other process has appended since:
	// the log only grows) extends it without reading it again.
	edgeMu sync.Mutex
	edge   edgeChunk

	closeOnce sync.Once
	closeErr  error
}

// Open opens the InferTrail database at path, creating it if it does not
// exist, and brings its schema up to date. It refuses a file that is not an
// InferTrail database, and one whose schema is newer than this package knows.
func Open(ctx context.Context, path string, cfg Config) (*DB, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	if fi, err := os.Stat(abs); err == nil && fi.IsDir() {
		return nil, fmt.Errorf("open %s: is a directory, not a database file", abs)
	}
	busy := fmt.Sprintf("busy_timeout(%d)", cfg.BusyTimeout.Milliseconds())
	db := &DB{path: abs, indexPath: IndexPath(abs), busyTimeout: cfg.BusyTimeout, minFree: cfg.MinFree, readOnly: cfg.ReadOnly}
	if cfg.ReadOnly {
		return openReadOnly(ctx, db, cfg, busy)
	}
	// The log's file is made with 8 KiB pages. A commit writes each page
	// it dirtied whole to the WAL, and inserts into the indexes on random
	// ids dirty pages at random, so small pages write less; but a records
	// row of agent traffic is about 800 bytes, and a 4 KiB page holds
	// four or five of them and leaves a tenth of itself empty. 8 KiB pages
	// kept the log 3.5% smaller with no change to a commit's latency
	// (BenchmarkRecordOne); 16 KiB pages 5% smaller but each commit a
	// fifth slower. A file keeps the page size it was made with (the WAL
	// fixes it), so logs made before stay at 4 KiB. The index file's
	// postings fill pages no better at 8 KiB: it keeps SQLite's default.
	// The WAL is checkpointed past 500 pages, 4 MiB at 8 KiB. A large
	// transaction (an erasure of a tenant) grows the WAL file past that,
	// and SQLite reuses the file without shrinking it: journal_size_limit
	// (walLimit) truncates it at the next checkpoint.
	pool := func(driver, file string, conns int, txlock string, pragmas ...string) *sql.DB {
		p, e := openPool(driver, file, conns, txlock, pragmas...)
		if e != nil {
			err = e
		}
		return p
	}
	registerAttaching()
	db.writer = pool("sqlite", abs, 1, "immediate", busy, "page_size(8192)", "journal_mode(WAL)", "synchronous(FULL)", "secure_delete(1)", "cache_size(-32768)", "wal_autocheckpoint(500)", walLimit)
	db.index = pool("sqlite", db.indexPath, 1, "immediate", busy, "journal_mode(WAL)", "synchronous(FULL)", "secure_delete(1)", "cache_size(-16384)", "wal_autocheckpoint(1000)", walLimit)
	db.readers = pool(attachingDriver, abs, cfg.Readers, "", busy, "query_only(1)")
	db.nreaders = cfg.Readers
	db.points = pool("sqlite", abs, pointConns, "", busy, "query_only(1)")
	if err != nil {
		db.closePools()
		return nil, fmt.Errorf("open %s: %w", abs, err)
	}

	if err := db.open(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("open %s: %w", abs, err)
	}
	return db, nil
}

// openPool opens a pool of conns connections to file, which it keeps open
// for the life of the DB.
func openPool(driver, file string, conns int, txlock string, pragmas ...string) (*sql.DB, error) {
	p, err := sql.Open(driver, dsn(file, txlock, pragmas...))
	if err != nil {
		return nil, err
	}
	p.SetMaxOpenConns(conns)
	p.SetMaxIdleConns(conns)
	p.SetConnMaxLifetime(0)
	p.SetConnMaxIdleTime(0)
	return p, nil
}

// Not pragmas: given to dsn with the pragmas, readOnlyMode opens the file
// read-only (SQLite's URI parameter mode=ro), so that nothing, not even
// the journal mode, is written to it; immutableFile (immutable=1) also
// tells SQLite that nothing else writes to the file, so that it takes no
// locks and needs no shared-memory file beside a file in WAL mode.
const (
	readOnlyMode  = "mode(ro)"
	immutableFile = "immutable(1)"
)

// openReadOnly is Open with Config.ReadOnly: every connection opens the log's
// file read-only, and the readers attach the index file read-only if there
// is one; without it, what reads the index fails with infertrail.ErrNoIndex.
//
// A reader of a file in WAL mode needs its shared-memory file, and makes
// it (and an empty WAL) when there is none; on a read-only medium (a
// snapshot, a write-once share) it cannot. If the file has no WAL there,
// or an empty one, everything committed is in the file itself, which is
// then opened as immutable. A WAL that holds commits cannot be read
// without its shared-memory file: the folder must then be copied to
// writable storage.
func openReadOnly(ctx context.Context, db *DB, cfg Config, busy string) (*DB, error) {
	if _, err := os.Stat(db.path); err != nil {
		return nil, fmt.Errorf("open %s read-only: %w", db.path, err)
	}
	db.minFree = -1 // nothing is written, so nothing needs room
	db.nreaders = cfg.Readers
	err := db.openReadPools(ctx, readOnlyMode, busy, "query_only(1)")
	var se *sqlite.Error
	if errors.As(err, &se) && se.Code()&0xff == sqlite3.SQLITE_CANTOPEN {
		if fi, werr := os.Stat(db.path + "-wal"); errors.Is(werr, fs.ErrNotExist) || werr == nil && fi.Size() == 0 {
			err = db.openReadPools(ctx, readOnlyMode, immutableFile, "query_only(1)")
		} else {
			err = fmt.Errorf("%w (its WAL file holds commits, which cannot be read without the shared-memory file %s-shm; on a read-only medium, copy the folder to writable storage first)", err, filepath.Base(db.path))
		}
	}
	if err != nil {
		return nil, fmt.Errorf("open %s read-only: %w", db.path, err)
	}
	return db, nil
}

// openReadPools opens db's pools on its log's file with pragmas, then
// openRead; on failure it closes them again.
func (db *DB) openReadPools(ctx context.Context, pragmas ...string) error {
	var errs []error
	pool := func(driver string, conns int) *sql.DB {
		p, err := openPool(driver, db.path, conns, "", pragmas...)
		errs = append(errs, err)
		return p
	}
	// The readers attach the index file, read-only, if there is one.
	registerAttaching()
	_, err := os.Stat(db.indexPath)
	db.noIndex = err != nil
	db.writer, db.readers, db.points = pool("sqlite", 1), pool(attachingDriver, db.nreaders), pool("sqlite", pointConns)
	err = errors.Join(errs...)
	if err == nil {
		err = db.openRead(ctx)
	}
	if err != nil {
		db.closePools()
		db.writer, db.readers, db.points = nil, nil, nil
	}
	return err
}

// openRead checks, without writing, that the log's file holds an
// InferTrail log at this package's schema version, then prepares the
// statements.
func (db *DB) openRead(ctx context.Context) error {
	if err := db.writer.PingContext(ctx); err != nil {
		return explain(err)
	}
	if _, err := logSchema.check(ctx, db.writer); err != nil {
		return explain(err)
	}
	have, err := logSchema.version(ctx, db.writer)
	if err != nil {
		return explain(err)
	}
	switch want := SchemaVersion(); {
	case have < want:
		return fmt.Errorf("schema version %d, older than this build's %d: %w", have, want, ErrSchemaOlder)
	case have > want:
		return fmt.Errorf("schema version %d is newer than this build of infertrail knows (%d): use a newer infertrail", have, want)
	}
	return db.prepare(ctx)
}

// Checkpoints move committed pages from the write-ahead log into the
// database file. The writer runs them itself when a commit takes the WAL past
// 500 pages (4 MiB at the log's 8 KiB pages, SQLite's default size; 2 MiB in
// a log made with 4 KiB pages): a checkpoint then completes, so the WAL is
// reused and stays bounded, and each one is small, which keeps the
// acknowledgement tail short (measured at 5,000 records/s with 4 KiB pages:
// p99 16 ms at 4 MiB, 32 ms at 16 MiB, 50 ms at 64 MiB). A checkpoint on
// a connection of its own, in the background, measured worse: under constant
// writes it never completes, the WAL grows, and its writes still stall the
// writer's fsync. Durability does not depend on checkpoints: a commit is
// durable once its WAL frames are synced.

func (db *DB) open(ctx context.Context) error {
	if err := db.writer.PingContext(ctx); err != nil {
		return explain(err)
	}
	// The log's file is checked before the index file is made beside it.
	if _, err := logSchema.check(ctx, db.writer); err != nil {
		return explain(err)
	}
	if err := db.index.PingContext(ctx); err != nil {
		return indexError(db.indexPath, err)
	}
	from, err := indexSchema.migrate(ctx, db.index)
	if err != nil {
		return indexError(db.indexPath, err)
	}
	if from > 0 && from < shortTerms {
		// The old postings' pages are free now: give them back. This
		// is only room, so a VACUUM that fails (another process has the
		// file open) leaves them to be reused by later postings.
		_, _ = db.index.ExecContext(ctx, `VACUUM`)
	}
	if err := db.moveIndex(ctx); err != nil {
		return err
	}
	if _, err := logSchema.migrate(ctx, db.writer); err != nil {
		return explain(err)
	}
	if err := db.prepare(ctx); err != nil {
		return err
	}
	// Delete the postings of keys whose erasure's purge did not run.
	return db.writeIndex(ctx, "open the index", nil)
}

// prepare reads the log's hash chunk size and prepares the statements.
func (db *DB) prepare(ctx context.Context) error {
	if err := db.writer.QueryRowContext(ctx, `SELECT chunk_size FROM log_head`).Scan(&db.chunkSize); err != nil {
		return fmt.Errorf("read hash chunk size: %w", explain(err))
	}
	if db.chunkSize < 1 || db.chunkSize > 127 {
		return fmt.Errorf("hash chunk size %d in log_head: want 1 to 127", db.chunkSize)
	}
	prepare := func(on *sql.DB, dst **sql.Stmt, query string) error {
		s, err := on.PrepareContext(ctx, query)
		if err != nil {
			return fmt.Errorf("prepare %q: %w", query, err)
		}
		*dst = s
		return nil
	}
	w, r, pt := db.writer, db.readers, db.points
	for _, p := range []struct {
		on    *sql.DB
		dst   **sql.Stmt
		query string
	}{
		{w, &db.insRecord, insertRecords + values(1, 12)},
		{w, &db.insRecords, insertRecords + values(multiRows, 12)},
		{w, &db.insBlob, insertBlobs + values(1, 4)},
		{w, &db.insBlobs, insertBlobs + values(multiRows, 4)},
		{w, &db.insKey, insertKeys + values(1, 8)},
		{w, &db.insKeys, insertKeys + values(multiRows, 8)},
		{w, &db.putChunk, `INSERT OR REPLACE INTO hash_chunks (chunk, hashes) VALUES (?, ?)`},
		{w, &db.getChunkW, `SELECT hashes FROM hash_chunks WHERE chunk = ?`},
		{w, &db.lookupID, `SELECT id, seq, mac FROM records WHERE id IN (?` + strings.Repeat(", ?", lookupBatch-1) + `)`},
		{w, &db.lookupIDSmall, `SELECT id, seq, mac FROM records WHERE id IN (?` + strings.Repeat(", ?", lookupSmall-1) + `)`},
		{w, &db.readSize, `SELECT ` + sizeExpr + `, erasures FROM log_head WHERE one = 1`},
		{w, &db.putBlock, `INSERT INTO time_blocks (block, min_time, max_time) VALUES (?, ?, ?)
			ON CONFLICT (block) DO UPDATE SET min_time = min(min_time, excluded.min_time), max_time = max(max_time, excluded.max_time)`},
		{r, &db.getChunk, `SELECT hashes FROM hash_chunks WHERE chunk = ?`},
		{r, &db.getChunks, `SELECT chunk, hashes FROM hash_chunks WHERE chunk IN (?` + strings.Repeat(", ?", lookupBatch-1) + `)`},
		{r, &db.getChunkRange, `SELECT chunk, hashes FROM hash_chunks WHERE chunk BETWEEN ? AND ?`},
		{r, &db.entryByID, `SELECT ` + entryColumns + ` FROM records WHERE id = ?`},
		{r, &db.blobsByID, `SELECT id, codec, data, ` + blobKeyColumn + ` FROM blobs WHERE id IN (?` + strings.Repeat(", ?", lookupBatch-1) + `)`},
		{r, &db.keysByID, `SELECT ` + keyColumns + ` FROM data_keys WHERE id IN (?` + strings.Repeat(", ?", lookupBatch-1) + `)`},
		{r, &db.blobRange, `SELECT id, codec, data, ` + blobKeyColumn + ` FROM blobs WHERE id BETWEEN ? AND ? ORDER BY id LIMIT ?`},
		{r, &db.keyRange, `SELECT ` + keyColumns + ` FROM data_keys WHERE id BETWEEN ? AND ? ORDER BY id LIMIT ?`},
		{pt, &db.tokenByHash, `SELECT ` + tokenColumns + ` FROM tokens WHERE hash = ?`},
		{pt, &db.latestCheckpoint, `SELECT size, note FROM checkpoints ORDER BY size DESC LIMIT 1`},
		{pt, &db.treeSize, `SELECT ` + sizeExpr},
	} {
		if err := prepare(p.on, p.dst, p.query); err != nil {
			return err
		}
	}
	return nil
}

const (
	insertRecords = `INSERT INTO records (seq, id, mac, tenant, kind, time, received, session_id, trace_id, actor_id, leaf, content) VALUES `
	insertBlobs   = `INSERT OR IGNORE INTO blobs (id, codec, data, key_id) VALUES `
	insertKeys    = `INSERT OR IGNORE INTO data_keys (id, tenant, scope, kind, period, created, kek, wrapped) VALUES `
	// multiRows is the number of rows that one multi-row insert writes.
	multiRows = 32
	// lookupBatch is the number of ids that one Lookup query asks for;
	// a Lookup of at most lookupSmall ids (a proxied call's records) uses a
	// query with that many, since binding unused parameters costs.
	lookupBatch = 64
	lookupSmall = 4
	// pointConns is the number of connections for point reads: each takes
	// tens of microseconds, so two serve tens of thousands a second.
	pointConns = 2
)

// values returns the VALUES list of an insert of rows rows of cols columns.
func values(rows, cols int) string {
	row := "(?" + strings.Repeat(", ?", cols-1) + ")"
	return row + strings.Repeat(", "+row, rows-1)
}

// explain turns SQLite's answer to a file that is not a database into an
// error that says so.
func explain(err error) error {
	var se *sqlite.Error
	if errors.As(err, &se) && se.Code()&0xff == sqlite3.SQLITE_NOTADB {
		return fmt.Errorf("not an InferTrail database (not an SQLite file, or encrypted): %w", err)
	}
	return err
}

// indexError is err, met opening the index file at path, with what to do.
func indexError(path string, err error) error {
	return fmt.Errorf("index %s: %w (the file holds only what is derived from the log: moved away, it is rebuilt from the log)", path, explain(err))
}

// dsn returns the modernc.org/sqlite data source name for the file at the
// absolute path abs.
func dsn(abs, txlock string, pragmas ...string) string {
	q := url.Values{}
	if txlock != "" {
		q.Set("_txlock", txlock)
	}
	for _, p := range pragmas {
		// The driver runs the _pragma list in lexicographic order, and
		// journal_mode(WAL) before page_size would fix a new file's page
		// size at the default: its own key runs after the list.
		if m, ok := strings.CutPrefix(p, "journal_mode("); ok {
			q.Set("_journal_mode", strings.TrimSuffix(m, ")"))
			continue
		}
		switch p {
		case readOnlyMode:
			q.Set("mode", "ro")
			continue
		case immutableFile:
			q.Set("immutable", "1")
			continue
		}
		q.Add("_pragma", p)
	}
	u := url.URL{Scheme: "file", Path: abs, RawQuery: q.Encode()}
	return u.String()
}

// closePools closes those of the DB's connection pools that are open.
func (db *DB) closePools() error {
	var errs []error
	for _, p := range []*sql.DB{db.points, db.readers, db.index, db.writer} {
		if p != nil {
			errs = append(errs, p.Close())
		}
	}
	return errors.Join(errs...)
}

// Path returns the absolute path of the database file.
func (db *DB) Path() string { return db.path }

// IndexPath returns the path of the index file of the database file at
// path: its name without ".db", then "-index.db".
func IndexPath(path string) string {
	return strings.TrimSuffix(path, ".db") + "-index.db"
}

// Close closes the database. Append transactions still open are rolled back.
func (db *DB) Close() error {
	db.closeOnce.Do(func() {
		var errs []error
		for _, s := range []*sql.Stmt{db.insRecord, db.insRecords, db.insBlob, db.insBlobs, db.insKey, db.insKeys, db.putChunk, db.getChunkW, db.lookupID, db.lookupIDSmall,
			db.readSize, db.putBlock, db.getChunk, db.getChunks, db.getChunkRange, db.entryByID, db.blobsByID, db.keysByID, db.blobRange, db.keyRange, db.tokenByHash, db.latestCheckpoint, db.treeSize} {
			if s != nil {
				errs = append(errs, s.Close())
			}
		}
		db.walkStmts.Lock()
		for _, s := range db.walkStmts.m {
			errs = append(errs, s.Close())
		}
		db.walkStmts.Unlock()
		errs = append(errs, db.closePools())
		if err := errors.Join(errs...); err != nil {
			db.closeErr = fmt.Errorf("close %s: %w", db.path, err)
		}
	})
	return db.closeErr
}

// Stats describes a database for operators.
type Stats struct {
	TreeSize    int64 // committed entries
	Checkpoints int64 // stored checkpoints
	FileBytes   int64 // size of the database file
	WALBytes    int64 // size of the write-ahead log file
	FreeBytes   int64 // unused pages inside the database file
	IndexBytes  int64 // size of the index file and its write-ahead log
}

// Stats returns the database's sizes.
func (db *DB) Stats(ctx context.Context) (Stats, error) {
	var s Stats
	var pageSize, free int64
	err := db.readers.QueryRowContext(ctx, `SELECT
		`+sizeExpr+`,
		(SELECT count(*) FROM checkpoints),
		(SELECT page_size FROM pragma_page_size()),
		(SELECT freelist_count FROM pragma_freelist_count())`).Scan(&s.TreeSize, &s.Checkpoints, &pageSize, &free)
	if err != nil {
		return Stats{}, fmt.Errorf("read stats of %s: %w", db.path, err)
	}
	s.FreeBytes = pageSize * free
	if fi, err := os.Stat(db.path); err == nil {
		s.FileBytes = fi.Size()
	}
	if fi, err := os.Stat(db.path + "-wal"); err == nil {
		s.WALBytes = fi.Size()
	}
	for _, f := range []string{db.indexPath, db.indexPath + "-wal"} {
		if fi, err := os.Stat(f); err == nil {
			s.IndexBytes += fi.Size()
		}
	}
	return s, nil
}

// sizeExpr is the tree size: one past the last record's sequence number
// (records are never deleted). SQLite reads max(seq) of the INTEGER
// PRIMARY KEY from the end of the table's b-tree.
const sizeExpr = `(SELECT coalesce(max(seq), -1) + 1 FROM records)`

// TreeSize returns the size of the committed tree.
func (db *DB) TreeSize(ctx context.Context) (int64, error) {
	var n int64
	if err := db.pointRow(ctx, db.treeSize).Scan(&n); err != nil {
		return 0, fmt.Errorf("read tree size: %w", err)
	}
	return n, nil
}

// pointRow runs st, a prepared query on db.points that reads a row or two
// by key, as each authenticated request, proof and checkpoint request
// does. It runs without a cancellation watcher, which the driver makes a
// goroutine for and which costs more than such a query: ctx is checked
// first, a reader in WAL mode does not wait for the writer, and the
// connections are held only by such reads. A ctx that has ended is the
// error Scan returns.
func (db *DB) pointRow(ctx context.Context, st *sql.Stmt, args ...any) interface{ Scan(...any) error } {
	if err := ctx.Err(); err != nil {
		return errRow{err}
	}
	return st.QueryRowContext(context.WithoutCancel(ctx), args...)
}

// errRow is a row that was not read: its Scan returns err.
type errRow struct{ err error }

func (r errRow) Scan(...any) error { return r.err }

// ReadHashes returns the committed stored hashes with the given indexes. It
// reads each distinct chunk once, with one primary-key lookup.
func (db *DB) ReadHashes(ctx context.Context, indexes []int64) ([]tlog.Hash, error) {
	// Fetch every chunk the indexes need with as few queries as possible:
	// an inclusion proof touches about 40 chunks at random, verification
	// long contiguous runs.
	var ks []int64
	for _, idx := range indexes {
		if idx >= 0 {
			ks = append(ks, idx/db.chunkSize)
		}
	}
	slices.Sort(ks)
	ks = slices.Compact(ks)
	chunks := make(map[int64][]byte, len(ks))
	read := func(rows *sql.Rows, err error) error {
		if err != nil {
			return fmt.Errorf("read hash chunks: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			var k int64
			var b []byte
			if err := rows.Scan(&k, &b); err != nil {
				return fmt.Errorf("read hash chunks: %w", err)
			}
			chunks[k] = b
		}
		return rows.Err()
	}
	switch {
	case len(ks) <= 1:
	case ks[len(ks)-1]-ks[0]+1 == int64(len(ks)):
		if err := read(db.getChunkRange.QueryContext(ctx, ks[0], ks[len(ks)-1])); err != nil {
			return nil, err
		}
	default:
		args := make([]any, lookupBatch)
		for i := 0; i < len(ks); i += lookupBatch {
			batch := ks[i:min(i+lookupBatch, len(ks))]
			for j := range args {
				args[j] = batch[min(j, len(batch)-1)]
			}
			if err := read(db.getChunks.QueryContext(ctx, args...)); err != nil {
				return nil, err
			}
		}
	}
	return readHashes(ctx, indexes, -1, db.chunkSize, func(chunk int64) ([]byte, error) {
		if b, ok := chunks[chunk]; ok {
			return b, nil
		}
		var b []byte
		err := db.getChunk.QueryRowContext(ctx, chunk).Scan(&b)
		return b, err
	})
}

// readHashes reads indexes through get, which returns one chunk of size
// hashes. Indexes at or past limit, when limit >= 0, and indexes a chunk
// does not hold yet are not found.
func readHashes(ctx context.Context, indexes []int64, limit, size int64, get func(chunk int64) ([]byte, error)) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	var chunks map[int64][]byte
	for i, idx := range indexes {
		if idx < 0 {
			return nil, fmt.Errorf("read hash %d: negative index: %w", idx, infertrail.ErrInvalid)
		}
		if limit >= 0 && idx >= limit {
			return nil, fmt.Errorf("read hash %d: past the tree's %d hashes: %w", idx, limit, infertrail.ErrNotFound)
		}
		k := idx / size
		b, ok := chunks[k]
		if !ok {
			if err := ctx.Err(); err != nil {
				return nil, fmt.Errorf("read hash %d: %w", idx, err)
			}
			var err error
			b, err = get(k)
			if errors.Is(err, sql.ErrNoRows) {
				return nil, fmt.Errorf("read hash %d: %w", idx, infertrail.ErrNotFound)
			}
			if err != nil {
				return nil, fmt.Errorf("read hash %d: %w", idx, err)
			}
			if chunks == nil {
				chunks = make(map[int64][]byte)
			}
			chunks[k] = b
		}
		off := (idx % size) * tlog.HashSize
		if int64(len(b)) < off+tlog.HashSize {
			return nil, fmt.Errorf("read hash %d: %w", idx, infertrail.ErrNotFound)
		}
		copy(out[i][:], b[off:])
	}
	return out, nil
}

const entryColumns = `seq, id, mac, tenant, kind, time, received, session_id, trace_id, actor_id, leaf, content`

// entryScanner scans rows of entryColumns into one reused Entry.
type entryScanner struct {
	e             infertrail.Entry
	id, mac, leaf sql.RawBytes
	content       sql.RawBytes
	kind          string
	plain         []byte // the decompressed leaf
	sc            leafcol.Scratch
}

func (s *entryScanner) scan(row interface{ Scan(...any) error }) error {
	e := &s.e
	err := row.Scan(&e.Seq, &s.id, &s.mac, &e.Tenant, &s.kind, &e.Time, &e.Received,
		&e.SessionID, &e.TraceID, &e.ActorID, &s.leaf, &s.content)
	if err != nil {
		return err
	}
	if len(s.id) != len(e.ID) || len(s.mac) != len(e.MAC) {
		return &infertrail.CorruptError{Seq: e.Seq, Err: errors.New("id or mac of the wrong length")}
	}
	copy(e.ID[:], s.id)
	copy(e.MAC[:], s.mac)
	e.Kind = infertrail.Kind(s.kind)
	if s.plain, err = leafcol.Expand(s.plain[:0], s.leaf, &s.sc); err != nil {
		return &infertrail.CorruptError{Seq: e.Seq, Err: err}
	}
	e.Leaf = s.plain
	e.Content, err = infertrail.UnmarshalContentRefs(s.content)
	if err != nil {
		return &infertrail.CorruptError{Seq: e.Seq, Err: err}
	}
	return nil
}

// Entries calls fn for each committed entry with start <= Seq < end.
func (db *DB) Entries(ctx context.Context, start, end int64, fn func(*infertrail.Entry) error) error {
	if start >= end {
		return nil
	}
	rows, err := db.readers.QueryContext(ctx, `SELECT `+entryColumns+` FROM records WHERE seq >= ? AND seq < ? ORDER BY seq`, start, end)
	if err != nil {
		return fmt.Errorf("read entries [%d, %d): %w", start, end, err)
	}
	defer rows.Close()
	var s entryScanner
	for rows.Next() {
		if err := s.scan(rows); err != nil {
			return fmt.Errorf("read entries [%d, %d): %w", start, end, err)
		}
		if err := fn(&s.e); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read entries [%d, %d): %w", start, end, err)
	}
	return nil
}

// EntryByID returns the committed entry with the id.
func (db *DB) EntryByID(ctx context.Context, id infertrail.UUID) (infertrail.Entry, error) {
	rows, err := db.entryByID.QueryContext(ctx, id[:])
	if err != nil {
		return infertrail.Entry{}, fmt.Errorf("read entry %v: %w", id, err)
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return infertrail.Entry{}, fmt.Errorf("read entry %v: %w", id, err)
		}
		return infertrail.Entry{}, fmt.Errorf("read entry %v: %w", id, infertrail.ErrNotFound)
	}
	var s entryScanner
	if err := s.scan(rows); err != nil {
		return infertrail.Entry{}, fmt.Errorf("read entry %v: %w", id, err)
	}
	return s.e.Clone(), nil
}

// exec runs one statement on the writer connection. ctx bounds the wait
// for the connection, not the statement: the driver reports a statement
// whose context ended while it ran as failed, even when it committed, and
// a caller told that a write failed must be able to trust it.
func (db *DB) exec(ctx context.Context, query string, args ...any) (sql.Result, error) {
	conn, err := db.writer.Conn(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	res, err := conn.ExecContext(context.WithoutCancel(ctx), query, args...)
	return res, classify(err)
}

// AddCosignatures adds the signature lines to the stored checkpoint of
// size, in one write transaction (infertrail.Cosigner).
func (db *DB) AddCosignatures(ctx context.Context, size int64, lines []byte) error {
	if db.readOnly {
		return fmt.Errorf("add cosignatures to checkpoint %d: %w", size, errReadOnly)
	}
	if _, _, err := infertrail.MergeSignatures(nil, lines); err != nil {
		return fmt.Errorf("add cosignatures to checkpoint %d: %w", size, err)
	}
	conn, err := db.writer.Conn(ctx)
	if err != nil {
		return fmt.Errorf("add cosignatures to checkpoint %d: %w", size, classify(err))
	}
	defer conn.Close()
	ctx = context.WithoutCancel(ctx)  // as exec: a write reported failed must have failed
	tx, err := conn.BeginTx(ctx, nil) // BEGIN IMMEDIATE: the note read is the one updated
	if err != nil {
		return fmt.Errorf("add cosignatures to checkpoint %d: %w", size, classify(err))
	}
	defer tx.Rollback()
	var note []byte
	err = tx.QueryRowContext(ctx, `SELECT note FROM checkpoints WHERE size = ?`, size).Scan(&note)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("add cosignatures to checkpoint %d: %w", size, infertrail.ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("add cosignatures to checkpoint %d: %w", size, classify(err))
	}
	merged, changed, err := infertrail.MergeSignatures(note, lines)
	if err != nil || !changed {
		return err
	}
	if _, err := tx.ExecContext(ctx, `UPDATE checkpoints SET note = ? WHERE size = ?`, merged, size); err != nil {
		return fmt.Errorf("add cosignatures to checkpoint %d: %w", size, classify(err))
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("add cosignatures to checkpoint %d: %w", size, classify(err))
	}
	return nil
}

// AddCheckpoint stores c unless a checkpoint of its size is already stored.
func (db *DB) AddCheckpoint(ctx context.Context, c infertrail.StoredCheckpoint) error {
	if c.Size < 0 || len(c.Note) == 0 {
		return fmt.Errorf("add checkpoint %d: negative size or empty note: %w", c.Size, infertrail.ErrInvalid)
	}
	_, err := db.exec(ctx, `INSERT OR IGNORE INTO checkpoints (size, note) VALUES (?, ?)`, c.Size, c.Note)
	if err != nil {
		return fmt.Errorf("add checkpoint %d: %w", c.Size, err)
	}
	return nil
}

// LatestCheckpoint returns the stored checkpoint with the largest size.
func (db *DB) LatestCheckpoint(ctx context.Context) (infertrail.StoredCheckpoint, error) {
	var c infertrail.StoredCheckpoint
	err := db.pointRow(ctx, db.latestCheckpoint).Scan(&c.Size, &c.Note)
	if errors.Is(err, sql.ErrNoRows) {
		return c, fmt.Errorf("read latest checkpoint: %w", infertrail.ErrNotFound)
	}
	if err != nil {
		return c, fmt.Errorf("read latest checkpoint: %w", err)
	}
	return c, nil
}

// Checkpoints calls fn for each stored checkpoint with Size > after, in
// increasing size.
func (db *DB) Checkpoints(ctx context.Context, after int64, fn func(infertrail.StoredCheckpoint) error) error {
	rows, err := db.readers.QueryContext(ctx, `SELECT size, note FROM checkpoints WHERE size > ? ORDER BY size`, after)
	if err != nil {
		return fmt.Errorf("read checkpoints after %d: %w", after, err)
	}
	defer rows.Close()
	for rows.Next() {
		var c infertrail.StoredCheckpoint
		if err := rows.Scan(&c.Size, &c.Note); err != nil {
			return fmt.Errorf("read checkpoints after %d: %w", after, err)
		}
		if err := fn(c); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read checkpoints after %d: %w", after, err)
	}
	return nil
}

// DecodeLeafColumn returns the leaf that a value of the records table's
// leaf column holds. It is for tools and tests that read the file directly.
func DecodeLeafColumn(v []byte) ([]byte, error) { return leafcol.Decode(v) }
