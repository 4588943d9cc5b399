package postgres

import (
	"context"
	"crypto/rand"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/infertrail/infertrail"
)

// BenchmarkWriteRows compares the two ways the append path writes data keys
// and blobs: COPY in a savepoint (copyNew) and one INSERT … ON CONFLICT over
// unnested arrays, for a batch as an ingest commit brings (1,500 records of
// new sessions: a key each, and a blob of about 700 bytes, the size of 1 KiB
// of chat text compressed and encrypted). Each op writes in a transaction
// that is then rolled back, so every op writes into the same table.
func BenchmarkWriteRows(b *testing.B) {
	db, _ := openTest(b, Config{})
	ctx := context.Background()
	const n = 1500
	period := periodOf(time.Now())
	func() {
		tx, err := db.BeginAppend(ctx) // creates the period's partitions
		if err != nil {
			b.Fatal(err)
		}
		if err := tx.Commit(); err != nil {
			b.Fatal(err)
		}
	}()
	keys := func() []infertrail.DataKey {
		ks := make([]infertrail.DataKey, n)
		for i := range ks {
			k := &ks[i]
			rand.Read(k.ID[:])
			k.Tenant, k.Kind, k.KEK = "acme", infertrail.KindInference, "local:bench"
			k.Scope = infertrail.Scope(fmt.Sprintf("tenant=acme,session=%x", k.ID[:8]))
			k.Period, k.Created = 1_790_000_000, 1_790_000_000_000_000_000
			k.Wrapped = make([]byte, 60)
			rand.Read(k.Wrapped)
		}
		return ks
	}
	blobs := func() []infertrail.Blob {
		bs := make([]infertrail.Blob, n)
		for i := range bs {
			rand.Read(bs[i].ID[:])
			bs[i].Codec = infertrail.CodecZstd
			bs[i].Data = make([]byte, 700)
			rand.Read(bs[i].Data)
		}
		return bs
	}
	run := func(b *testing.B, write func(tx pgx.Tx) error) {
		for b.Loop() {
			tx, err := db.pool.Begin(ctx)
			if err != nil {
				b.Fatal(err)
			}
			if err := write(tx); err != nil {
				b.Fatal(err)
			}
			if err := tx.Rollback(ctx); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "rows/s")
	}
	ks, bs := keys(), blobs()
	b.Run("keys/copy", func(b *testing.B) { run(b, func(tx pgx.Tx) error { return writeKeys(ctx, tx, ks) }) })
	b.Run("keys/insert", func(b *testing.B) { run(b, func(tx pgx.Tx) error { return insertKeys(ctx, tx, ks) }) })
	b.Run("blobs/copy", func(b *testing.B) { run(b, func(tx pgx.Tx) error { return writeBlobs(ctx, tx, period, bs) }) })
	b.Run("blobs/insert", func(b *testing.B) {
		run(b, func(tx pgx.Tx) error {
			_, err := tx.Exec(ctx, insertBlobs, blobArgs(period, bs)...)
			return err
		})
	})
}
