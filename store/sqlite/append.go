package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/mod/sumdb/tlog"
	sqlite "modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/infertrail/infertrail"
	"github.com/infertrail/infertrail/store/internal/leafcol"
)

// BeginAppend starts an append transaction with BEGIN IMMEDIATE on the
// writer connection. It waits for the connection while ctx allows, and for
// another process's write lock up to Config.BusyTimeout. The transaction is
// bound to ctx: when ctx is done it is rolled back, and Commit fails.
//
// The binding is a context.AfterFunc, not the driver's: given a
// cancellable context, the driver starts a watcher goroutine for BEGIN and
// another for COMMIT, whose wake-ups the callers waiting for the commit
// pay for.
func (db *DB) BeginAppend(ctx context.Context) (infertrail.AppendTx, error) {
	if db.readOnly {
		return nil, fmt.Errorf("begin append: %w", errReadOnly)
	}
	db.appends.Begin() // until Commit or Rollback: the index's writes wait
	conn, err := db.writer.Conn(ctx)
	var tx *sql.Tx
	if err == nil {
		tx, err = conn.BeginTx(context.WithoutCancel(ctx), nil)
		if err != nil {
			conn.Close()
		}
	}
	if err != nil {
		db.appends.End()
		if ctx.Err() != nil {
			return nil, fmt.Errorf("begin append: %w", ctx.Err())
		}
		return nil, fmt.Errorf("begin append: %w: %w", infertrail.ErrUnavailable, err)
	}
	t := &appendTx{db: db, ctx: ctx, tx: tx, conn: conn}
	// Under t.end: when ctx is done already, the rollback runs at once,
	// and must find t.stop set.
	t.end.Lock()
	t.stop = context.AfterFunc(ctx, func() { t.Rollback() })
	t.end.Unlock()
	// Statements inside the transaction run without cancellation (see
	// write): ctx is checked between them.
	if err := tx.StmtContext(ctx, db.readSize).QueryRowContext(context.WithoutCancel(ctx)).Scan(&t.size, &t.erasures); err != nil {
		t.Rollback()
		return nil, fmt.Errorf("begin append: read tree size: %w", err)
	}
	t.next = t.size
	t.nhash = tlog.StoredHashCount(t.size)
	db.edgeMu.Lock()
	if e := db.edge; e.data != nil && e.size == t.size {
		t.tail, t.tailChunk, t.tailLoaded = e.data, e.chunk, true
	}
	db.edgeMu.Unlock()
	return t, nil
}

// edgeChunk is a hash chunk at the tree's right edge: the chunk the next
// stored hashes of a tree of the size go into.
type edgeChunk struct {
	size, chunk int64
	data        []byte
}

// appendTx is one open append transaction.
type appendTx struct {
	db    *DB
	ctx   context.Context // of BeginAppend
	stop  func() bool     // stops the rollback when ctx is done
	conn  *sql.Conn       // the writer connection, held until Commit or Rollback
	tx    *sql.Tx
	size  int64 // tree size when the transaction began
	next  int64 // Seq of the next entry
	nhash int64 // tlog.StoredHashCount(next)

	// tail holds the hashes of the last, partial chunk once loaded.
	tail       []byte
	tailChunk  int64
	tailLoaded bool

	insRecord, insRecords, insBlob, insBlobs, putChunk, getChunk *sql.Stmt
	insKey, insKeys, putBlock                                    *sql.Stmt

	failed error // set when an Append failed after writing: Commit must not commit
	end    sync.Mutex
	done   atomic.Bool // Commit or Rollback has begun

	erasures int64     // log_head.erasures when the transaction began
	erased   bool      // Erase deleted something: truncate the WAL after commit
	block    timeBlock // the last time block committed or written, for DB.block after commit
}

func (t *appendTx) Size() int64 { return t.size }

func (t *appendTx) Erasures() int64 { return t.erasures }

func (t *appendTx) stmt(ctx context.Context, dst **sql.Stmt, s *sql.Stmt) *sql.Stmt {
	if *dst == nil {
		*dst = t.tx.StmtContext(ctx, s)
	}
	return *dst
}

// UniqueIDs implements infertrail.UniqueIDs: records.id is UNIQUE, and
// Append reports a violation as ErrConflict.
func (t *appendTx) UniqueIDs() bool { return true }

func (t *appendTx) Lookup(ctx context.Context, ids []infertrail.UUID) (map[infertrail.UUID]infertrail.Entry, error) {
	out := make(map[infertrail.UUID]infertrail.Entry)
	if len(ids) == 0 {
		return out, nil
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("look up ids: %w", err)
	}
	ctx = context.WithoutCancel(ctx)
	stmt, n := t.db.lookupID, lookupBatch
	if len(ids) <= lookupSmall {
		stmt, n = t.db.lookupIDSmall, lookupSmall
	}
	st := t.tx.StmtContext(ctx, stmt)
	defer st.Close()
	args := make([]any, n)
	for i := 0; i < len(ids); i += n {
		batch := ids[i:min(i+n, len(ids))]
		for j := range args {
			// A short last batch repeats its last id: IN ignores repeats.
			id := batch[min(j, len(batch)-1)]
			args[j] = id[:]
		}
		if err := t.lookup(ctx, st, args, out); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (t *appendTx) lookup(ctx context.Context, st *sql.Stmt, args []any, out map[infertrail.UUID]infertrail.Entry) error {
	rows, err := st.QueryContext(ctx, args...)
	if err != nil {
		return fmt.Errorf("look up ids: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id, mac []byte
		var e infertrail.Entry
		if err := rows.Scan(&id, &e.Seq, &mac); err != nil {
			return fmt.Errorf("look up ids: %w", err)
		}
		copy(e.ID[:], id)
		copy(e.MAC[:], mac)
		out[e.ID] = e
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("look up ids: %w", err)
	}
	return nil
}

func (t *appendTx) ReadHashes(ctx context.Context, indexes []int64) ([]tlog.Hash, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("read hashes: %w", err)
	}
	ctx = context.WithoutCancel(ctx)
	st := t.stmt(ctx, &t.getChunk, t.db.getChunkW)
	return readHashes(ctx, indexes, tlog.StoredHashCount(t.size), t.db.chunkSize, func(chunk int64) ([]byte, error) {
		if t.tailLoaded && t.tailChunk == chunk {
			return t.tail, nil
		}
		var b []byte
		if err := st.QueryRowContext(ctx, chunk).Scan(&b); err != nil {
			return nil, err
		}
		if chunk == t.nhash/t.db.chunkSize {
			// The chunk the next hashes extend: writeHashes needs it too.
			t.tail, t.tailChunk, t.tailLoaded = b, chunk, true
		}
		return b, nil
	})
}

func (t *appendTx) Append(ctx context.Context, entries []infertrail.Entry, blobs []infertrail.Blob, hashes []tlog.Hash) error {
	if t.done.Load() {
		return fmt.Errorf("append: %w", sql.ErrTxDone)
	}
	if t.failed != nil {
		return fmt.Errorf("append: an earlier append in this transaction failed: %w", t.failed)
	}
	for i := range entries {
		e := &entries[i]
		if want := t.next + int64(i); e.Seq != want {
			return fmt.Errorf("append entry %d of %d: seq %d, want %d: %w", i, len(entries), e.Seq, want, infertrail.ErrInvalid)
		}
		if e.ID.IsZero() {
			return fmt.Errorf("append entry %d: nil id: %w", e.Seq, infertrail.ErrInvalid)
		}
	}
	end := t.next + int64(len(entries))
	if want := tlog.StoredHashCount(end) - t.nhash; int64(len(hashes)) != want {
		return fmt.Errorf("append entries [%d, %d): got %d hashes, want %d: %w", t.next, end, len(hashes), want, infertrail.ErrInvalid)
	}
	if err := t.write(ctx, entries, blobs, hashes); err != nil {
		t.failed = classify(err)
		return t.failed
	}
	t.next = end
	t.nhash += int64(len(hashes))
	return nil
}

func (t *appendTx) write(ctx context.Context, entries []infertrail.Entry, blobs []infertrail.Blob, hashes []tlog.Hash) error {
	// Executing statements with a context that cannot be cancelled spares
	// the driver a watcher goroutine per statement; ctx is checked between
	// statements instead, and Commit checks the context of BeginAppend.
	rowCtx := context.WithoutCancel(ctx)
	args := make([]any, 0, multiRows*12)

	one := t.stmt(ctx, &t.insBlob, t.db.insBlob)
	many := t.stmt(ctx, &t.insBlobs, t.db.insBlobs)
	for i := 0; i < len(blobs); {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("append blobs: %w", err)
		}
		n := min(len(blobs)-i, multiRows)
		st := many
		if n < multiRows {
			n, st = 1, one
		}
		args = args[:0]
		for _, b := range blobs[i : i+n] {
			args = append(args, storedBlobID(&b.ID), int64(b.Codec), nonNil(b.Data), blobKeyArg(&b))
		}
		if _, err := st.ExecContext(rowCtx, args...); err != nil {
			return fmt.Errorf("append blobs: %w", err)
		}
		i += n
	}

	leaves := leafcol.CompactAll(entries)
	one = t.stmt(ctx, &t.insRecord, t.db.insRecord)
	many = t.stmt(ctx, &t.insRecords, t.db.insRecords)
	for i := 0; i < len(entries); {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("append entries: %w", err)
		}
		n := min(len(entries)-i, multiRows)
		st := many
		if n < multiRows {
			n, st = 1, one
		}
		args = args[:0]
		for j := i; j < i+n; j++ {
			e := &entries[j]
			args = append(args, e.Seq, e.ID[:], e.MAC[:], e.Tenant, string(e.Kind), e.Time, e.Received,
				e.SessionID, e.TraceID, e.ActorID, leaves[j], infertrail.MarshalContentRefs(e.Content))
		}
		if _, err := st.ExecContext(rowCtx, args...); err != nil {
			var se *sqlite.Error
			if errors.As(err, &se) && se.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE {
				return fmt.Errorf("append entries [%d, %d): an id is already in the log: %w", entries[i].Seq, entries[i].Seq+int64(n), infertrail.ErrConflict)
			}
			return fmt.Errorf("append entries [%d, %d): %w", entries[i].Seq, entries[i].Seq+int64(n), err)
		}
		i += n
	}
	if err := t.writeBlocks(ctx, rowCtx, entries); err != nil {
		return err
	}
	if err := t.writeHashes(rowCtx, hashes); err != nil {
		return err
	}
	return nil
}

// writeBlocks widens the time zone map (time_blocks) by the entries'
// times, one row per block of sequence numbers they fall in. Bounds are
// widened to whole seconds, which keeps them bounds, so that the commits
// of one second after the first need not rewrite the row (and its page):
// a block this process committed bounds for is not written again while
// the times fall within them.
func (t *appendTx) writeBlocks(ctx, rowCtx context.Context, entries []infertrail.Entry) error {
	if !t.block.set {
		t.db.blockMu.Lock()
		t.block = t.db.block
		t.db.blockMu.Unlock()
	}
	for i := 0; i < len(entries); {
		b := timeBlock{block: entries[i].Seq >> infertrail.TimeBlockBits, lo: entries[i].Time, hi: entries[i].Time}
		j := i + 1
		for ; j < len(entries) && entries[j].Seq>>infertrail.TimeBlockBits == b.block; j++ {
			b.lo, b.hi = min(b.lo, entries[j].Time), max(b.hi, entries[j].Time)
		}
		i = j
		if b.within(t.block) {
			continue
		}
		b.lo, b.hi = floorSecond(b.lo), floorSecond(b.hi)+int64(time.Second)-1
		if t.block.set && b.block == t.block.block {
			b.lo, b.hi = min(b.lo, t.block.lo), max(b.hi, t.block.hi)
		}
		if _, err := t.stmt(ctx, &t.putBlock, t.db.putBlock).ExecContext(rowCtx, b.block, b.lo, b.hi); err != nil {
			return fmt.Errorf("append entries: time block %d: %w", b.block, err)
		}
		b.set = true
		t.block = b
	}
	return nil
}

// timeBlock is a block of time_blocks and bounds its row holds at least.
type timeBlock struct {
	block, lo, hi int64
	set           bool
}

// within reports whether b's times lie within k's bounds.
func (b timeBlock) within(k timeBlock) bool {
	return k.set && b.block == k.block && k.lo <= b.lo && b.hi <= k.hi
}

// floorSecond rounds a time in Unix nanoseconds down to a whole second.
func floorSecond(ns int64) int64 {
	s := int64(time.Second)
	if ns < 0 && ns%s != 0 {
		return ns - ns%s - s
	}
	return ns - ns%s
}

func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// writeHashes packs hashes, which have stored-hash indexes from t.nhash on,
// into chunks, extending the last partial chunk.
func (t *appendTx) writeHashes(ctx context.Context, hashes []tlog.Hash) error {
	put := t.stmt(ctx, &t.putChunk, t.db.putChunk)
	idx := t.nhash
	for len(hashes) > 0 {
		size := t.db.chunkSize
		k, off := idx/size, idx%size
		n := min(size-off, int64(len(hashes)))
		data := make([]byte, 0, (off+n)*tlog.HashSize)
		if off != 0 {
			tail, err := t.loadTail(ctx, k, off)
			if err != nil {
				return err
			}
			data = append(data, tail...)
		}
		for _, h := range hashes[:n] {
			data = append(data, h[:]...)
		}
		if _, err := put.ExecContext(ctx, k, data); err != nil {
			return fmt.Errorf("append hash chunk %d: %w", k, err)
		}
		t.tail, t.tailChunk, t.tailLoaded = data, k, true
		idx += n
		hashes = hashes[n:]
	}
	return nil
}

// loadTail returns the first off hashes of chunk k, which the transaction
// extends.
func (t *appendTx) loadTail(ctx context.Context, k, off int64) ([]byte, error) {
	if !t.tailLoaded || t.tailChunk != k {
		st := t.stmt(ctx, &t.getChunk, t.db.getChunkW)
		var b []byte
		if err := st.QueryRowContext(ctx, k).Scan(&b); err != nil {
			return nil, fmt.Errorf("append: read hash chunk %d: %w", k, err)
		}
		t.tail, t.tailChunk, t.tailLoaded = b, k, true
	}
	if int64(len(t.tail)) != off*tlog.HashSize {
		return nil, fmt.Errorf("append: hash chunk %d holds %d bytes, want %d: database corrupt", k, len(t.tail), off*tlog.HashSize)
	}
	return t.tail, nil
}

func (t *appendTx) Commit() error {
	t.end.Lock()
	defer t.end.Unlock()
	if t.done.Load() {
		return fmt.Errorf("commit append: %w", sql.ErrTxDone)
	}
	t.done.Store(true)
	t.stop()
	var err error
	switch {
	case t.failed != nil:
		t.tx.Rollback()
		err = fmt.Errorf("commit append: an append in this transaction failed: %w", t.failed)
	case t.ctx.Err() != nil:
		t.tx.Rollback()
		err = fmt.Errorf("commit append of entries [%d, %d): %w", t.size, t.next, t.ctx.Err())
	default:
		if err = t.tx.Commit(); err != nil {
			err = fmt.Errorf("commit append of entries [%d, %d): %w", t.size, t.next, classify(err))
			// SQLite may leave the transaction open after a COMMIT that
			// failed (for want of space, say): end it before the
			// connection goes back to the pool. With none open, the
			// ROLLBACK fails harmlessly.
			t.conn.ExecContext(context.Background(), `ROLLBACK`)
		}
	}
	t.release()
	if err != nil {
		t.giveBackWAL(err)
		return err
	}
	if t.block.set {
		t.db.blockMu.Lock()
		t.db.block = t.block
		t.db.blockMu.Unlock()
	}
	var edge edgeChunk
	if t.tailLoaded && t.tailChunk == t.nhash/t.db.chunkSize {
		edge = edgeChunk{size: t.next, chunk: t.tailChunk, data: t.tail}
	}
	t.db.edgeMu.Lock()
	t.db.edge = edge
	t.db.edgeMu.Unlock()
	if t.erased {
		truncateWAL(t.db.writer, t.db.busyTimeout)
		// The postings of the erased keys' content (search terms) go
		// too. If this fails, the next write of the index does it.
		ctx, cancel := context.WithTimeout(context.Background(), t.db.busyTimeout)
		t.db.writeIndex(ctx, "delete the postings of erased keys", nil)
		cancel()
	}
	return nil
}

// Rollback rolls the transaction back, unless it has ended. It is also
// called when the context of BeginAppend is done, concurrently with any
// other method: database/sql waits for a statement in flight, and fails
// those that follow.
func (t *appendTx) Rollback() error {
	t.end.Lock()
	defer t.end.Unlock()
	if t.done.Load() {
		return nil
	}
	t.done.Store(true)
	t.stop()
	err := t.tx.Rollback()
	t.release()
	t.giveBackWAL(t.failed)
	if err != nil && !errors.Is(err, sql.ErrTxDone) {
		return fmt.Errorf("roll back append: %w", err)
	}
	return nil
}

// giveBackWAL empties the log's write-ahead log after a transaction that
// failed for want of space (giveBackWAL).
func (t *appendTx) giveBackWAL(err error) { giveBackWAL(t.db.writer, t.db.busyTimeout, err) }

// release gives the writer connection back and lets the index write.
func (t *appendTx) release() {
	t.conn.Close()
	t.db.appends.End()
}
