package postgres

import (
	"errors"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/infertrail/infertrail"
)

// TestReadOnly opens a log read-only as a role granted nothing but SELECT
// on its schema: it reads the whole log and its hashes, and every write
// fails; a schema not yet migrated is refused, and left unmigrated.
func TestReadOnly(t *testing.T) {
	ctx := t.Context()
	db, schema := openTest(t, Config{})
	for _, n := range []int{5, 70} {
		if err := appendCommit(ctx, db, newBatch("r", n, 100)); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.AddCheckpoint(ctx, infertrail.StoredCheckpoint{Size: 75, Note: []byte("checkpoint 75\n")}); err != nil {
		t.Fatal(err)
	}
	dsn := testDSN(t)
	role := schema + "_reader"
	s, r := pgx.Identifier{schema}.Sanitize(), pgx.Identifier{role}.Sanitize()
	execAtCleanup(t, dsn, `DROP ROLE IF EXISTS `+r)
	execAtCleanup(t, dsn, `DROP OWNED BY `+r)
	for _, q := range []string{
		`CREATE ROLE ` + r + ` LOGIN`,
		`GRANT USAGE ON SCHEMA ` + s + ` TO ` + r,
		`GRANT SELECT ON ALL TABLES IN SCHEMA ` + s + ` TO ` + r,
	} {
		if _, err := db.pool.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	rdsn := withParam(t, withSearchPath(t, dsn, schema), "user", role)

	ro, err := Open(ctx, rdsn, Config{ReadOnly: true})
	if err != nil {
		t.Fatalf("Open read-only as a reader: %v", err)
	}
	defer ro.Close()
	checkLog(t, ro)
	if c, err := ro.LatestCheckpoint(ctx); err != nil || c.Size != 75 {
		t.Fatalf("LatestCheckpoint: %+v, %v", c, err)
	}
	if err := appendCommit(ctx, ro, newBatch("w", 1, 10)); err == nil {
		t.Fatal("an append through a read-only store succeeded")
	}
	// Read-only even for a role that may write.
	rw, err := Open(ctx, withSearchPath(t, dsn, schema), Config{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer rw.Close()
	if err := appendCommit(ctx, rw, newBatch("w", 1, 10)); err == nil {
		t.Fatal("an append through a read-only store succeeded")
	}
	if n, err := db.TreeSize(ctx); err != nil || n != 75 {
		t.Fatalf("TreeSize after refused appends = %d, %v; want 75", n, err)
	}

	empty := freshSchema(t, dsn)
	if _, err := Open(ctx, withSearchPath(t, dsn, empty), Config{ReadOnly: true}); !errors.Is(err, ErrSchemaVersion) {
		t.Fatalf("Open read-only of an empty schema: %v, want ErrSchemaVersion", err)
	}
	var n int
	if err := db.pool.QueryRow(ctx, `SELECT count(*) FROM pg_namespace WHERE nspname = $1`, empty).Scan(&n); err != nil || n != 0 {
		t.Fatalf("the read-only open made schema %s: %d, %v", empty, n, err)
	}
}
