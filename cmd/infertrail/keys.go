package main

import (
	"context"
	"fmt"
	"io"

	"github.com/infertrail/infertrail/store/postgres"
)

func keysCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 {
		switch args[0] {
		case "list-kek", "rotate-kek", "remove-kek", "rewrap":
			return kekCmd(ctx, args[0], args[1:], stdout, stderr)
		}
	}
	if len(args) == 0 || args[0] != "show" {
		return withHint(fmt.Errorf("keys: want a subcommand"), "infertrail keys show|list-kek|rotate-kek|remove-kek [--data DIR]")
	}
	fs := newFlagSet("keys show", stderr)
	data := fs.String("data", defaultData, "data `folder`")
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	k, _, err := openDataFolder(*data, "", false, "")
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, k.vkey)
	return nil
}

func migrate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("migrate", stderr)
	store := fs.String("store", "", "PostgreSQL `DSN` (postgres://…)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *store == "" {
		return withHint(fmt.Errorf("migrate: --store is required"), "the embedded SQLite store migrates itself at start; this command is for PostgreSQL")
	}
	if err := postgres.Migrate(ctx, *store); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "PostgreSQL schema is at version %d.\n", postgres.SchemaVersion())
	return nil
}
