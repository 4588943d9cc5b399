package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/infertrail/infertrail/store/sqlite"
)

// backupCmd writes a consistent, compacted copy of a data folder's log
// while its server runs.
func backupCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("backup", stderr)
	data := fs.String("data", defaultData, "the data `folder` of the log to back up")
	store := fs.String("store", "", "the store `DSN`, if not SQLite in the data folder (sqlite:PATH)")
	out := fs.String("out", "", "the `file` to write the copy to; it must not exist")
	quiet := fs.Bool("q", false, "print no progress")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *out == "" {
		return withHint(errors.New("backup: --out is required"), "infertrail backup --data DIR --out /backups/infertrail-2026-11-29.db")
	}
	// Read-only: a backup never migrates the log under the server.
	st, _, err := openStore(ctx, *store, *data, false, sqlite.Config{ReadOnly: true})
	if errors.Is(err, sqlite.ErrSchemaOlder) {
		return withHint(err, "back up with the infertrail build the server runs")
	}
	if err != nil {
		return err
	}
	defer st.Close()
	db, ok := st.(*sqlite.DB)
	if !ok {
		return withHint(errors.New("backup: the log is in PostgreSQL"), "back PostgreSQL up with its own tools (pg_dump, or base backups and WAL archiving)")
	}
	stop := watchCopy(newProgress(stderr, *quiet, "backup: wrote"), db.Path(), *out)
	size, err := db.Backup(ctx, *out)
	stop()
	if err != nil {
		return err
	}
	fi, err := os.Stat(*out)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "Backed up the log as of %d records to %s (%.1f MB, compacted).\n", size, *out, float64(fi.Size())/1e6)
	fmt.Fprintf(stdout, "Not in it: the index (a server rebuilds it from the log) and the keys: keep log.key, secret.key and content-keys backed up apart (docs/keys.md).\n")
	fmt.Fprintf(stdout, "Check it with: infertrail verify --data %s --store sqlite:%s\n", *data, *out)
	return nil
}
