package multinode_test

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// TestNewerSchemaRefused: a node of a build older than the schema (one
// that could not read the records newer builds write) refuses to start,
// and says what to do.
func TestNewerSchemaRefused(t *testing.T) {
	dsn := freshSchema(t, sharedDSN(t))
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, binary, "migrate", "--store", dsn).CombinedOutput(); err != nil {
		t.Fatalf("migrate: %v\n%s", err, out)
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `INSERT INTO schema_migrations (version, name) SELECT max(version) + 1, 'from_a_newer_build' FROM schema_migrations`); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"serve", "--data", t.TempDir(), "--store", dsn, "--listen", "127.0.0.1:0"},
		{"migrate", "--store", dsn},
	} {
		out, err := exec.CommandContext(ctx, binary, args...).CombinedOutput()
		if err == nil || !strings.Contains(string(out), "newer than this binary") {
			t.Errorf("%s on a newer schema: %v\n%s", args[0], err, out)
		}
		if args[0] == "serve" && !strings.Contains(string(out), "hint: a newer infertrail migrated this schema") {
			t.Errorf("serve on a newer schema gives no hint:\n%s", out)
		}
	}
}
