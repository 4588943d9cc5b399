package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/infertrail/infertrail"
	"github.com/infertrail/infertrail/ledger"
	"github.com/infertrail/infertrail/store/sqlite"
)

// copyCmd copies a log into another, empty store: from the SQLite store of
// a data folder into PostgreSQL when one machine is outgrown, or back.
func copyCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("copy", stderr)
	data := fs.String("data", defaultData, "the data `folder` of the log to copy (its keys stay there)")
	store := fs.String("store", "", "the store `DSN` of the log, if not SQLite in the data folder")
	to := fs.String("to", "", "the empty store `DSN` to copy into: postgres://… or sqlite:PATH")
	quiet := fs.Bool("q", false, "print no progress")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *to == "" {
		return withHint(errors.New("copy: --to is required"), "infertrail copy --data DIR --to 'postgres://infertrail@db.example/infertrail'")
	}
	if strings.HasPrefix(*to, "sqlite:") {
		if _, err := os.Stat(sqlitePath(*to, *data)); err == nil {
			return withHint(fmt.Errorf("copy: %s exists", sqlitePath(*to, *data)), "copy into a new file")
		}
	}
	dk, _, err := openDataFolder(*data, "", false, "")
	if err != nil {
		return err
	}
	v, err := dk.verifier()
	if err != nil {
		return err
	}
	src, cleanup, err := openToRead(ctx, *store, *data, stderr)
	if err != nil {
		return err
	}
	defer cleanup()
	dst, where, err := openStore(ctx, *to, *data, true, sqlite.Config{})
	if err != nil {
		return fmt.Errorf("copy: destination: %w", err)
	}
	defer dst.Close()
	start := time.Now()
	progress := newProgress(stderr, *quiet, "copied")
	rep, err := ledger.CopyStore(ctx, dst, src, v.Name(), v, progress.report)
	progress.done()
	if errors.Is(err, ledger.ErrSourceChanged) {
		return withHint(err, "stop every server that writes the log, then copy into an empty store again")
	}
	if errors.Is(err, infertrail.ErrConflict) {
		return withHint(err, "copy into a new database (or a new PostgreSQL schema: search_path=… in the DSN)")
	}
	if err != nil {
		var ve *ledger.VerificationError
		if errors.As(err, &ve) {
			return verifyFailed(stdout, err)
		}
		return withHint(err, "a copy that fails leaves the destination partly written: drop it and copy again")
	}
	fmt.Fprintf(stdout, "Copied %d records (%d content blobs, %d data keys of which %d erased), %d signed checkpoints, %d API tokens, %d legal holds and %d approvals into %s in %s.\n",
		rep.Records, rep.Blobs, rep.Keys, rep.Erased, rep.Checkpoints, rep.Tokens, rep.Holds, rep.Approvals, where, time.Since(start).Round(time.Millisecond))
	fmt.Fprintf(stdout, "Its tree hashes were computed anew from the leaves and every checkpoint matched them. Not copied: the investigation index, which a server rebuilds from the log.\n")
	fmt.Fprintf(stdout, "Check it with: infertrail verify --data %s --store '%s'\n", *data, redactDSN(*to))
	fmt.Fprintf(stdout, "Then run every node with: infertrail serve --data %s --store '%s' (each node needs this folder's log.key or log.pub, secret.key and content-keys).\n", *data, redactDSN(*to))
	return nil
}
