package sqlite

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/infertrail/infertrail"
	"github.com/infertrail/infertrail/internal/testdisk"
)

// TestRoom: below the reserve Room names the folder, the free space and
// the setting; the index stops at twice the reserve; a negative reserve
// is none; and pages of the log's file that hold nothing count as free.
func TestRoom(t *testing.T) {
	ctx := context.Background()
	disk := testdisk.Mount(t, 16<<20)
	db, err := Open(ctx, filepath.Join(disk.Dir, "log.db"), Config{MinFree: 6 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Room(); err != nil {
		t.Fatalf("Room on an empty 16 MiB disk with a 6 MiB reserve: %v", err)
	}
	if err := db.indexRoom(); err != nil {
		t.Fatalf("indexRoom with 12 MiB to keep: %v", err)
	}
	// Fill the log's file with rows, then empty it: its pages are free.
	const fill = `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100) INSERT INTO filler SELECT randomblob(4000) FROM n`
	if _, err := db.exec(ctx, `CREATE TABLE filler (b BLOB)`); err != nil {
		t.Fatal(err)
	}
	for db.indexRoom() == nil {
		if _, err := db.exec(ctx, fill); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.indexRoom(); !errors.Is(err, infertrail.ErrStorageFull) || !strings.Contains(err.Error(), "the index waits") {
		t.Fatalf("indexRoom below twice the reserve: %v", err)
	}
	if err := db.Room(); err != nil {
		t.Fatalf("Room between the index's mark and the reserve: %v", err)
	}
	for db.Room() == nil {
		if _, err := db.exec(ctx, fill); err != nil {
			t.Fatal(err)
		}
	}
	err = db.Room()
	for _, want := range []string{"storage full", disk.Dir, "MiB free", "6.0 MiB", "storage.min_free_bytes", "records are refused"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Room = %q, does not say %q", err, want)
		}
	}
	if _, err := db.exec(ctx, `DELETE FROM filler`); err != nil {
		t.Fatal(err)
	}
	truncateWAL(db.writer, db.busyTimeout)
	if err := db.Room(); err != nil {
		t.Fatalf("Room once the log's file has its pages free again: %v", err)
	}

	none, err := Open(ctx, filepath.Join(disk.Dir, "none.db"), Config{MinFree: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer none.Close()
	if err := none.Room(); err != nil {
		t.Fatalf("Room with no reserve: %v", err)
	}
	if none.MinFree() != -1 || db.MinFree() != 6<<20 {
		t.Fatalf("MinFree = %d and %d", none.MinFree(), db.MinFree())
	}
}

// BenchmarkRoom measures the check the ledger makes before it queues each
// call's records: a statfs of the data folder.
func BenchmarkRoom(b *testing.B) {
	db := openTemp(b)
	for b.Loop() {
		if err := db.Room(); err != nil {
			b.Fatal(err)
		}
	}
}
