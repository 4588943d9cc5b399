package postgres

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os/user"
	"strconv"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/infertrail/infertrail"
	"github.com/infertrail/infertrail/internal/testdisk"
)

// TestDiskFull keeps the store's tables in a tablespace on a small tmpfs
// and fills it, so that PostgreSQL itself runs out of space: the batch
// that finds no room fails with an error wrapping infertrail.ErrStorageFull
// (disk_full, 53100), which the ledger and the API answer with 503;
// nothing of it is stored; and appends resume on the same store once the
// disk is larger. The server must run on this machine as user postgres.
func TestDiskFull(t *testing.T) {
	dsn := testDSN(t)
	ctx := t.Context()
	pgUser, err := user.Lookup("postgres")
	if err != nil {
		t.Skipf("no user postgres here, so no local PostgreSQL server to give a disk to: %v", err)
	}
	uid, _ := strconv.Atoi(pgUser.Uid)
	gid, _ := strconv.Atoi(pgUser.Gid)
	disk := testdisk.Mount(t, 8<<20)
	disk.GiveTo(t, uid, gid)

	var b [6]byte
	rand.Read(b[:])
	space := "infertrail_test_" + hex.EncodeToString(b[:])
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `CREATE TABLESPACE `+pgx.Identifier{space}.Sanitize()+` LOCATION `+quoteLiteral(disk.Dir)); err != nil {
		t.Fatalf("create a tablespace on the small disk (needs a superuser): %v", err)
	}
	execAtCleanup(t, dsn, `DROP TABLESPACE `+pgx.Identifier{space}.Sanitize()) // after the schema's drop
	schema := freshSchema(t, dsn)
	db, err := Open(ctx, withParam(t, dsn, "default_tablespace", space), Config{Schema: schema})
	if err != nil {
		t.Fatalf("Open with its tables on the small disk: %v", err)
	}
	defer db.Close()

	var acked int64
	for {
		err := appendCommit(ctx, db, newBatch("full", 50, 4096))
		if err != nil {
			if !errors.Is(err, infertrail.ErrStorageFull) || !errors.Is(err, infertrail.ErrUnavailable) {
				t.Fatalf("append to a full tablespace: %v, want ErrStorageFull", err)
			}
			break
		}
		acked += 50
		if acked > 10000 {
			t.Fatalf("%d records of 4 KiB in a tablespace of 8 MiB", acked)
		}
	}
	if size, err := db.TreeSize(ctx); err != nil || size != acked {
		t.Fatalf("tree size %d (%v) on a full disk, want the %d acknowledged", size, err, acked)
	}
	disk.Resize(t, 64<<20)
	if err := appendCommit(ctx, db, newBatch("after", 50, 4096)); err != nil {
		t.Fatalf("append once the disk grew: %v", err)
	}
	if entries := checkLog(t, db); int64(len(entries)) != acked+50 {
		t.Fatalf("%d entries, want %d", len(entries), acked+50)
	}
}

// quoteLiteral quotes s as an SQL string literal.
func quoteLiteral(s string) string {
	out := []byte{'\''}
	for i := range len(s) {
		if s[i] == '\'' {
			out = append(out, '\'')
		}
		out = append(out, s[i])
	}
	return string(append(out, '\''))
}
