package sqlite

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"slices"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/infertrail/infertrail"
	"github.com/infertrail/infertrail/store/storetest"
)

func tlogTreeHash(t testing.TB, db *DB, size int64) (tlog.Hash, error) {
	t.Helper()
	return tlog.TreeHash(size, storetest.HashReader(t.Context(), db))
}

// BenchmarkAppend measures append throughput the way the sequencer drives
// the store: batches of 1000 entries, each with a 400-byte leaf and one
// 1 KiB content blob, hashes computed inside the transaction, one durable
// commit per batch.
//
//	go test ./store/sqlite -run '^$' -bench Append -benchtime 30x
func BenchmarkAppend(b *testing.B) {
	const batch = 1000
	db := openTemp(b)
	defer db.Close()
	ctx := b.Context()
	data := make([]byte, 1024)
	for i := range data {
		data[i] = byte('a' + i%26)
	}
	leafPad := make([]byte, 330)
	for i := range leafPad {
		leafPad[i] = 'x'
	}
	n := 0
	for b.Loop() {
		entries := make([]infertrail.Entry, batch)
		blobs := make([]infertrail.Blob, batch)
		for i := range entries {
			n++
			var id infertrail.UUID
			binary.BigEndian.PutUint64(id[8:], uint64(n))
			id[0] = 1
			bid := infertrail.BlobID(sha256.Sum256(id[:]))
			blobs[i] = infertrail.Blob{ID: bid, Data: data}
			entries[i] = infertrail.Entry{
				ID:        id,
				Leaf:      fmt.Appendf(nil, `{"id":"%s","n":%d,"pad":"%s"}`, id, n, leafPad),
				Tenant:    "default",
				Kind:      infertrail.KindInference,
				Time:      int64(n) * 1000,
				Received:  int64(n)*1000 + 7,
				SessionID: fmt.Sprintf("sess-%d", n%97),
				TraceID:   fmt.Sprintf("%032x", n),
				ActorID:   "agent:bench",
				Content:   []infertrail.ContentRef{{Field: "response.output", Blobs: []infertrail.BlobID{bid}}},
			}
		}
		tx, err := db.BeginAppend(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if err := storetest.NewSequencer(tx).Append(ctx, entries, blobs); err != nil {
			b.Fatal(err)
		}
		if err := tx.Commit(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "entries/s")
}

// BenchmarkProveRecord measures an inclusion proof (tlog.ProveRecord over
// DB.ReadHashes) on a log of 2^22 records whose hash chunks are synthetic,
// as the proof's speed depends only on the chunk lookups.
//
//	go test ./store/sqlite -run '^$' -bench ProveRecord
//
// BenchmarkProveRecord reads inclusion proofs on a log of 10 million
// records (tree hashes filled in directly: 20 million stored hashes, about
// 640 MB) and reports their latency.
//
//	go test ./store/sqlite -run '^$' -bench ProveRecord -benchtime 20000x
func BenchmarkProveRecord(b *testing.B) {
	const size = 10_000_000
	db := openTemp(b)
	defer db.Close()
	ctx := b.Context()
	chunks := (tlog.StoredHashCount(size) + db.chunkSize - 1) / db.chunkSize
	_, err := db.writer.ExecContext(ctx, `WITH RECURSIVE c(k) AS (SELECT 0 UNION ALL SELECT k + 1 FROM c WHERE k + 1 < ?)
		INSERT INTO hash_chunks (chunk, hashes) SELECT k, randomblob(?) FROM c`, chunks, db.chunkSize*tlog.HashSize)
	if err != nil {
		b.Fatal(err)
	}
	// The tree size is one past the last record's seq.
	if _, err := db.writer.ExecContext(ctx, `INSERT INTO records (seq, id, mac, tenant, kind, time, received, session_id, trace_id, actor_id, leaf)
		VALUES (?, randomblob(16), randomblob(32), 'bench', 'inference', 0, 0, '', '', '', x'00')`, size-1); err != nil {
		b.Fatal(err)
	}
	r := storetest.HashReader(ctx, db)
	rec := int64(12345)
	var lat []time.Duration
	for b.Loop() {
		rec = (rec*1103515245 + 12345) % size
		start := time.Now()
		if _, err := tlog.ProveRecord(size, rec, r); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}

// BenchmarkReadAfterWrite measures the point reads that requests make of
// the database, each after a write (as on a server that is recording, so
// that SQLite reads the pages it needs again), timing the reads alone.
//
//	go test ./store/sqlite -run '^$' -bench ReadAfterWrite -benchtime 5000x
func BenchmarkReadAfterWrite(b *testing.B) {
	for _, read := range []struct {
		name string
		f    func(ctx context.Context, db *DB) error
	}{
		{"latest-checkpoint", func(ctx context.Context, db *DB) error { _, err := db.LatestCheckpoint(ctx); return err }},
		{"tree-size", func(ctx context.Context, db *DB) error { _, err := db.TreeSize(ctx); return err }},
	} {
		b.Run(read.name, func(b *testing.B) {
			db := openTemp(b)
			defer db.Close()
			ctx := b.Context()
			var took time.Duration
			for i := range b.N {
				if err := db.AddCheckpoint(ctx, infertrail.StoredCheckpoint{Size: int64(i + 1), Note: []byte("bench\n")}); err != nil {
					b.Fatal(err)
				}
				start := time.Now()
				if err := read.f(ctx, db); err != nil {
					b.Fatal(err)
				}
				took += time.Since(start)
			}
			b.ReportMetric(float64(took.Nanoseconds())/float64(b.N), "ns/read")
		})
	}
}
