package sqlite

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/infertrail/infertrail"
)

// Blobs and data keys are read by id, many at once: a verification reads
// every one. Their ids begin with the time their key was made, so the ids
// that one stretch of the log references mostly sit together in the id
// index. Sorted ids are read in batches of lookupBatch, and a batch of at
// least minRange ids is first read as one range of the index, from its
// first id to its last, which walks the index once instead of seeking each
// id. A range may also hold rows not asked for, so a range read takes at
// most twice as many rows as it wants, and a batch whose range holds more
// gets the rest of its ids by an IN list. Once eight ranges of a call have
// read more rows not asked for than rows asked for, its later batches are
// read by IN lists only.

// Blobs returns the stored blobs among ids.
func (db *DB) Blobs(ctx context.Context, ids []infertrail.BlobID) (map[infertrail.BlobID]infertrail.Blob, error) {
	uniq := uniqueSorted(ids, func(a, b infertrail.BlobID) int { return bytes.Compare(a[:], b[:]) })
	out := make(map[infertrail.BlobID]infertrail.Blob, len(uniq))
	var mu sync.Mutex
	whole := func(id *infertrail.BlobID) []byte { return id[:] }
	scan := func(rows *sql.Rows) ([]byte, func(), error) {
		var (
			b       infertrail.Blob
			id, key sql.RawBytes
			data    sql.RawBytes
		)
		if err := rows.Scan(&id, &b.Codec, &data, &key); err != nil {
			return nil, nil, err
		}
		copy(b.ID[:], id) // zeros after a stored id cut short
		return b.ID[:], func() {
			copy(b.Key[:], key)
			b.Data = bytes.Clone(data)
			mu.Lock()
			out[b.ID] = b
			mu.Unlock()
		}, nil
	}
	err := lookup(ctx, db, uniq, db.blobRange, db.blobsByID, whole, storedBlobID, scan)
	if err != nil {
		return nil, fmt.Errorf("read %d blobs: %w", len(uniq), err)
	}
	// An id ending in zeros that is not stored cut short may be an
	// older blob's, stored whole.
	var again []infertrail.BlobID
	for _, id := range uniq {
		if _, ok := out[id]; !ok && len(storedBlobID(&id)) < len(id) {
			again = append(again, id)
		}
	}
	if len(again) > 0 {
		if err := lookup(ctx, db, again, db.blobRange, db.blobsByID, whole, whole, scan); err != nil {
			return nil, fmt.Errorf("read %d blobs: %w", len(uniq), err)
		}
	}
	return out, nil
}

// DataKeys returns the stored keys among ids.
func (db *DB) DataKeys(ctx context.Context, ids []infertrail.KeyID) (map[infertrail.KeyID]infertrail.DataKey, error) {
	uniq := uniqueSorted(ids, func(a, b infertrail.KeyID) int { return bytes.Compare(a[:], b[:]) })
	out := make(map[infertrail.KeyID]infertrail.DataKey, len(uniq))
	var mu sync.Mutex
	whole := func(id *infertrail.KeyID) []byte { return id[:] }
	err := lookup(ctx, db, uniq, db.keyRange, db.keysByID, whole, whole,
		func(rows *sql.Rows) ([]byte, func(), error) {
			k, err := scanKey(rows)
			if err != nil {
				return nil, nil, err
			}
			return k.ID[:], func() {
				mu.Lock()
				out[k.ID] = k
				mu.Unlock()
			}, nil
		})
	if err != nil {
		return nil, fmt.Errorf("read %d keys: %w", len(uniq), err)
	}
	return out, nil
}

// uniqueSorted returns ids sorted, without repeats.
func uniqueSorted[ID comparable](ids []ID, cmp func(a, b ID) int) []ID {
	uniq := slices.Clone(ids)
	slices.SortFunc(uniq, cmp)
	return slices.Compact(uniq)
}

// lookup reads the rows with the sorted, distinct ids, with byRange (a query
// of the rows with ids from its first to its second argument, in id order,
// at most its third argument of them) and byID (a query of the rows with
// ids among its lookupBatch arguments), on up to db.nreaders connections at
// once. bytesOf gives an id's bytes, in the order of ids, and storedOf its
// bytes as the table holds them, in the same order and at most bytesOf's.
// scan scans a row and returns its id's bytes as bytesOf gives them and a
// function that keeps it; rows not asked for are scanned and not kept.
func lookup[ID any](ctx context.Context, db *DB, ids []ID, byRange, byID *sql.Stmt, bytesOf, storedOf func(*ID) []byte,
	scan func(*sql.Rows) (id []byte, keep func(), err error)) error {
	var ranges, read, kept atomic.Int64 // range reads so far, and their rows
	return inBatches(ids, db.nreaders, func(batch []ID, args []any) error {
		// The first batches can be sparse where the others are not: the
		// lowest ids of a stretch of the log sit among ids of the stretch
		// before it.
		sparse := ranges.Load() >= 8 && 2*kept.Load() < read.Load()
		if len(batch) >= minRange && !sparse {
			rest, n, k, err := readRange(ctx, byRange, batch, bytesOf, storedOf, scan)
			ranges.Add(1)
			read.Add(int64(n))
			kept.Add(int64(k))
			if err != nil || len(rest) == 0 {
				return err
			}
			batch = rest
		}
		for j := range args {
			// A short batch repeats its last id: IN ignores repeats.
			args[j] = storedOf(&batch[min(j, len(batch)-1)])
		}
		return readRows(ctx, byID, args, func(rows *sql.Rows) error {
			_, keep, err := scan(rows)
			if err == nil {
				keep()
			}
			return err
		})
	})
}

// minRange is the fewest ids read as a range: fewer, as when a query
// shows a few records, are looked up by id.
const minRange = lookupBatch / 4

// readRange reads the rows of batch with one query of the range from its
// first to its last id, of at most twice as many rows as batch holds. It
// returns the ids it did not get to, when the range holds more rows, and
// the numbers of rows it read and kept.
func readRange[ID any](ctx context.Context, byRange *sql.Stmt, batch []ID, bytesOf, storedOf func(*ID) []byte,
	scan func(*sql.Rows) ([]byte, func(), error)) (rest []ID, n, kept int, err error) {
	limit := 2 * len(batch)
	j := 0
	err = readRows(ctx, byRange, []any{storedOf(&batch[0]), bytesOf(&batch[len(batch)-1]), limit}, func(rows *sql.Rows) error {
		id, keep, err := scan(rows)
		if err != nil {
			return err
		}
		n++
		for j < len(batch) && bytes.Compare(bytesOf(&batch[j]), id) < 0 {
			j++ // not stored
		}
		if j < len(batch) && bytes.Equal(bytesOf(&batch[j]), id) {
			keep()
			kept++
			j++
		}
		return nil
	})
	if err != nil || n < limit {
		return nil, n, kept, err
	}
	return batch[j:], n, kept, nil
}

// readRows runs q with args and calls row for each row.
func readRows(ctx context.Context, q *sql.Stmt, args []any, row func(*sql.Rows) error) error {
	rows, err := q.QueryContext(ctx, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		if err := row(rows); err != nil {
			return err
		}
	}
	return rows.Err()
}

// inBatches calls read for each run of at most lookupBatch of ids, on up to
// readers goroutines at once, each with its own lookupBatch arguments to
// fill. It returns the first error.
func inBatches[T any](ids []T, readers int, read func(batch []T, args []any) error) error {
	var (
		wg   sync.WaitGroup
		errs = make(chan error, 1)
		work = make(chan []T)
	)
	for range min(readers, (len(ids)+lookupBatch-1)/lookupBatch) {
		wg.Go(func() {
			args := make([]any, lookupBatch)
			for batch := range work {
				if err := read(batch, args); err != nil {
					select {
					case errs <- err:
					default:
					}
				}
			}
		})
	}
	for i := 0; i < len(ids); i += lookupBatch {
		work <- ids[i:min(i+lookupBatch, len(ids))]
	}
	close(work)
	wg.Wait()
	select {
	case err := <-errs:
		return err
	default:
		return nil
	}
}
