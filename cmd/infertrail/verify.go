package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"filippo.io/torchwood"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/infertrail/infertrail"
	"github.com/infertrail/infertrail/export"
	"github.com/infertrail/infertrail/keys"
	"github.com/infertrail/infertrail/ledger"
	"github.com/infertrail/infertrail/store/sqlite"
)

func verify(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("verify", stderr)
	data := fs.String("data", "", "verify the data `folder` of a server, offline")
	store := fs.String("store", "", "with --data: the store `DSN` the server uses, if not SQLite in the data folder")
	server := fs.String("server", "", "verify a running server's log over its tiles, at `URL`")
	vkey := fs.String("key", "", "the log's verifier `key` (name+hash+key); required with --server")
	quiet := fs.Bool("q", false, "print no progress")
	var held filesFlag
	fs.Var(&held, "held", "a signed checkpoint, receipt or evidence bundle `file` kept from before: prove the log only grew since (repeatable)")
	var witnessKeys filesFlag
	fs.Var(&witnessKeys, "witness", "a witness's cosignature verifier `key`: require its cosignature on the log's (or the bundle's) checkpoint (repeatable)")
	token := tokenFlag(fs)
	bundle, err := parseFlagsArg(fs, args)
	if err != nil {
		return err
	}
	witnesses, err := cosignatureVerifiers(witnessKeys)
	if err != nil {
		return err
	}
	if bundle != "" && len(held) > 0 {
		return withHint(errors.New("--held checks a log, not a bundle"), "to check a log against what you hold, give --data DIR or --server URL; to prove a log still holds this bundle's records, give the bundle itself with --held")
	}
	var verifier note.Verifier
	if *vkey != "" {
		v, err := note.NewVerifier(strings.TrimSpace(*vkey))
		if err != nil {
			return withHint(fmt.Errorf("verifier key: %w", err), "a verifier key looks like origin+1a2b3c4d+AbCd…; 'infertrail keys show' prints it")
		}
		verifier = v
	}
	progress := newProgress(stderr, *quiet, "verified")
	switch {
	case bundle != "" && (*data != "" || *server != ""):
		return withHint(errors.New("give a bundle, --data or --server, not several"), "")
	case bundle != "":
		return verifyBundle(bundle, verifier, witnesses, stdout, stderr)
	case *data != "" && *server != "":
		return withHint(errors.New("give --data or --server, not both"), "")
	case *data != "":
		dk, _, err := openDataFolder(*data, "", false, "")
		if err != nil {
			return err
		}
		if verifier == nil {
			v, err := dk.verifier()
			if err != nil {
				return err
			}
			verifier = v
			fmt.Fprintf(stderr, "infertrail: checking signatures with the key in %s; pass --key to check against a key you hold yourself\n", *data)
		}
		st, cleanup, err := openToRead(ctx, *store, *data, stderr)
		if err != nil {
			return err
		}
		defer cleanup()
		start := time.Now()
		var kek keys.KEK
		if dk.kek != nil {
			kek = dk.kek
		} else {
			fmt.Fprintf(stderr, "infertrail: no %s in %s: encrypted content is not checked against its commitments\n", contentKeysFile, *data)
		}
		hs, err := readHeld(held, verifier)
		if err != nil {
			return err
		}
		rep, err := ledger.VerifyStore(ctx, st, verifier.Name(), verifier, kek, progress.report)
		progress.done()
		if err != nil {
			return verifyFailed(stdout, err)
		}
		printReport(stdout, rep, time.Since(start))
		if err := checkWitnessed(ctx, stdout, st, witnesses); err != nil {
			return err
		}
		return checkHeld(ctx, stdout, hs, rep.Records, ledger.StoreHashReader(ctx, st), func(ctx context.Context, i int64) ([]byte, error) {
			return ledger.StoreLeaf(ctx, st, i)
		})
	case *server != "":
		if verifier == nil {
			return withHint(errors.New("--server needs --key"), "get the verifier key from the log's operator out of band; trusting the server's own /v1/log would prove nothing")
		}
		base, err := url.Parse(strings.TrimSuffix(*server, "/") + "/")
		if err != nil || base.Scheme != "http" && base.Scheme != "https" {
			return fmt.Errorf("server URL %q: want http:// or https://", *server)
		}
		hs, err := readHeld(held, verifier)
		if err != nil {
			return err
		}
		fetch := httpFetcher(base, resolveToken(*token))
		start := time.Now()
		var records int64
		cp, err := ledger.VerifyTiles(ctx, fetch, verifier.Name(), verifier, func(index int64, leaf []byte) error {
			r, err := infertrail.ParseLeaf(leaf)
			if err != nil {
				return err
			}
			if r.Seq != index {
				return fmt.Errorf("leaf carries sequence number %d: records were swapped or moved", r.Seq)
			}
			records++
			return nil
		}, progress.report)
		progress.done()
		if err != nil {
			return verifyFailed(stdout, err)
		}
		fmt.Fprintf(stdout, "OK: %d records verified against the checkpoint of size %d signed by %s (root %s) in %s\n",
			records, cp.Size, verifier.Name(), cp.Root, time.Since(start).Round(time.Millisecond))
		fmt.Fprintf(stdout, "Every leaf is canonical, every hash tile matches the leaves, and the root matches the signed checkpoint.\n")
		fmt.Fprintf(stdout, "(Content is not served over tiles; verify --data checks content commitments too.)\n")
		if len(witnesses) > 0 {
			if err := checkCosigned(stdout, cp, witnesses); err != nil {
				return err
			}
		}
		return checkHeld(ctx, stdout, hs, cp.Size, ledger.TileHashReader(ctx, fetch, cp), func(ctx context.Context, i int64) ([]byte, error) {
			return ledger.TileLeaf(ctx, fetch, cp.Size, i)
		})
	}
	return withHint(errors.New("nothing to verify"), "give BUNDLE.zip or --data DIR (offline), or --server URL --key VKEY")
}

// openToRead opens the store of a data folder read-only, so that
// verifying it, or reporting on it, changes nothing in it. A SQLite log of
// an older schema, which this build reads only migrated, is copied to a
// temporary folder and the copy migrated and read; cleanup closes the
// store and removes the copy.
func openToRead(ctx context.Context, dsn, dir string, stderr io.Writer) (infertrail.Store, func(), error) {
	st, _, err := openStore(ctx, dsn, dir, false, sqlite.Config{ReadOnly: true})
	if err == nil {
		return st, func() { st.Close() }, nil
	}
	if !errors.Is(err, sqlite.ErrSchemaOlder) {
		return nil, nil, err
	}
	path := sqlitePath(dsn, dir)
	tmp, terr := os.MkdirTemp("", "infertrail-read-")
	if terr != nil {
		return nil, nil, fmt.Errorf("%w; and a folder for a copy to migrate: %w", err, terr)
	}
	fmt.Fprintf(stderr, "infertrail: %v: reading a migrated copy in %s (the file is not changed)\n", err, tmp)
	copied := filepath.Join(tmp, dbFile)
	stop := watchCopy(newProgress(stderr, false, "copy: wrote"), path, copied)
	err = sqlite.Copy(ctx, path, copied)
	stop()
	if err != nil {
		os.RemoveAll(tmp)
		return nil, nil, withHint(err, "set TMPDIR to a folder with room for a copy of the log")
	}
	db, err := sqlite.Open(ctx, copied, sqlite.Config{MinFree: -1})
	if err != nil {
		os.RemoveAll(tmp)
		return nil, nil, fmt.Errorf("migrate the copy: %w", err)
	}
	return db, func() {
		db.Close()
		os.RemoveAll(tmp)
	}, nil
}

// cosignatureVerifiers parses --witness keys.
func cosignatureVerifiers(keys []string) ([]note.Verifier, error) {
	var out []note.Verifier
	for _, k := range keys {
		v, err := torchwood.NewCosignatureVerifier(strings.TrimSpace(k))
		if err != nil {
			return nil, withHint(fmt.Errorf("--witness %q: %w", k, err), "give the witness's cosignature verifier key, name+hash+key, as the witness publishes it")
		}
		out = append(out, v)
	}
	return out, nil
}

// checkCosigned fails unless the checkpoint carries a valid cosignature by
// each witness.
func checkCosigned(stdout io.Writer, cp ledger.Checkpoint, ws []note.Verifier) error {
	got := ledger.Cosigned(cp.Note, ws...)
	for _, w := range ws {
		if !slices.Contains(got, w.Name()) {
			fmt.Fprintf(stdout, "FAILED: the checkpoint of size %d carries no valid cosignature by the witness %s: the witness has not seen it (yet), or not this log\n", cp.Size, w.Name())
			return exitError{1}
		}
	}
	fmt.Fprintf(stdout, "Cosigned by %s at size %d: each saw this tree extend every tree of the log it cosigned before.\n", strings.Join(got, ", "), cp.Size)
	return nil
}

// checkWitnessed finds the newest stored checkpoint that every witness
// cosigned (their cosignatures arrive after the log's signature) and
// checks it as checkCosigned does; VerifyStore has checked its root.
func checkWitnessed(ctx context.Context, stdout io.Writer, st infertrail.Store, ws []note.Verifier) error {
	if len(ws) == 0 {
		return nil
	}
	var newest *infertrail.StoredCheckpoint
	err := st.Checkpoints(ctx, -1, func(c infertrail.StoredCheckpoint) error {
		if len(ledger.Cosigned(c.Note, ws...)) == len(ws) {
			newest = &infertrail.StoredCheckpoint{Size: c.Size, Note: append([]byte(nil), c.Note...)}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("read checkpoints: %w", err)
	}
	if newest == nil {
		names := make([]string, len(ws))
		for i, w := range ws {
			names[i] = w.Name()
		}
		fmt.Fprintf(stdout, "FAILED: no stored checkpoint carries a valid cosignature by every one of %s\n", strings.Join(names, ", "))
		return exitError{1}
	}
	return checkCosigned(stdout, ledger.Checkpoint{Size: newest.Size, Note: newest.Note}, ws)
}

// filesFlag is a flag that may be given several times, each a file.
type filesFlag []string

func (f *filesFlag) String() string     { return strings.Join(*f, ",") }
func (f *filesFlag) Set(v string) error { *f = append(*f, v); return nil }

// heldFile is a checkpoint, receipt or evidence bundle given with --held.
type heldFile struct {
	name string
	held ledger.Held
	// bundle is how many records the evidence bundle held; -1 for a
	// checkpoint or receipt.
	bundle int
}

// maxHeldNote bounds a held checkpoint or receipt (a bundle is bounded by
// export.VerifyBundle).
const maxHeldNote = 1 << 20

// readHeld reads each --held file and checks its signatures.
func readHeld(files []string, v note.Verifier) ([]heldFile, error) {
	var out []heldFile
	for _, f := range files {
		h, err := readHeldFile(f, v)
		if err != nil {
			return nil, err
		}
		out = append(out, h)
	}
	return out, nil
}

// readHeldFile reads one --held file. An evidence bundle (a zip file) is
// verified whole with v; what it holds is its latest checkpoint, which it
// proves extends the one its records' proofs lead to: a log that only grew
// since that checkpoint still holds those records, unchanged.
func readHeldFile(name string, v note.Verifier) (heldFile, error) {
	const hint = "give a signed checkpoint (as GET /checkpoint serves it), a receipt (GET /v1/records/{seq}/receipt) or an evidence bundle of this log"
	f, err := os.Open(name)
	if err != nil {
		return heldFile{}, fmt.Errorf("--held: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return heldFile{}, fmt.Errorf("--held: %w", err)
	}
	if fi.IsDir() {
		return heldFile{}, withHint(fmt.Errorf("--held %s is a directory", name), hint)
	}
	head := make([]byte, 4)
	if n, _ := io.ReadFull(f, head); n == 4 && string(head) == "PK\x03\x04" {
		rep, err := export.VerifyBundle(f, fi.Size(), v)
		if err != nil {
			return heldFile{}, withHint(fmt.Errorf("--held %s: the bundle does not verify: %w", name, err), "'infertrail verify "+name+" --key VKEY' lists every problem")
		}
		cp := rep.Checkpoint
		if rep.Consistent {
			cp = rep.Latest
		}
		return heldFile{name: name, held: ledger.Held{Checkpoint: cp}, bundle: len(rep.Records)}, nil
	}
	if fi.Size() > maxHeldNote {
		return heldFile{}, withHint(fmt.Errorf("--held %s: %d bytes, more than a checkpoint or receipt holds, and not an evidence bundle", name, fi.Size()), hint)
	}
	b := make([]byte, fi.Size())
	if _, err := f.ReadAt(b, 0); err != nil {
		return heldFile{}, fmt.Errorf("--held %s: %w", name, err)
	}
	h, err := ledger.ParseHeld(b, v.Name(), v)
	if err != nil {
		return heldFile{}, withHint(fmt.Errorf("--held %s: %w", name, err), hint)
	}
	return heldFile{name: name, held: h, bundle: -1}, nil
}

// checkHeld checks each held checkpoint, receipt or bundle against the
// verified log of size records, and says what each proves.
func checkHeld(ctx context.Context, stdout io.Writer, hs []heldFile, size int64, hr tlog.HashReader, leaf func(context.Context, int64) ([]byte, error)) error {
	for _, h := range hs {
		cp := h.held.Checkpoint
		if err := ledger.CheckHeld(ctx, h.held, size, hr, leaf); err != nil {
			return verifyFailed(stdout, fmt.Errorf("%s: %w", h.name, err))
		}
		switch r := h.held.Receipt; {
		case r != nil:
			fmt.Fprintf(stdout, "Held receipt %s: record %d is in the log, unchanged, and the log only grew since its checkpoint of size %d was signed.\n", h.name, r.Index, cp.Size)
		case h.bundle >= 0:
			fmt.Fprintf(stdout, "Held bundle %s: its %d records are in the log, unchanged, and the log only grew since its latest checkpoint of size %d was signed (root %s).\n", h.name, h.bundle, cp.Size, cp.Root)
		default:
			fmt.Fprintf(stdout, "Held checkpoint %s: the log only grew since it was signed at size %d (root %s).\n", h.name, cp.Size, cp.Root)
		}
	}
	return nil
}

func verifyFailed(stdout io.Writer, err error) error {
	var ve *ledger.VerificationError
	if errors.As(err, &ve) {
		fmt.Fprintf(stdout, "FAILED: %v\n", err)
		if ve.Index >= 0 {
			fmt.Fprintf(stdout, "The first bad record is %d.\n", ve.Index)
		}
		return exitError{1}
	}
	return err
}

func printReport(w io.Writer, rep ledger.Report, d time.Duration) {
	fmt.Fprintf(w, "OK: %d records and %d signed checkpoints verified in %s", rep.Records, rep.Checkpoints, d.Round(time.Millisecond))
	if d > 0 && rep.Records > 0 {
		fmt.Fprintf(w, " (%.0f records/s)", float64(rep.Records)/d.Seconds())
	}
	fmt.Fprintln(w)
	if rep.Records > 0 {
		fmt.Fprintf(w, "Tree root: %s\n", rep.Root)
	}
	fmt.Fprintf(w, "Latest checkpoint covers %d records", rep.Latest)
	if rep.Unsigned > 0 {
		fmt.Fprintf(w, "; %d later records are verified but not yet covered by a signed checkpoint", rep.Unsigned)
	}
	fmt.Fprintln(w, ".")
	for _, by := range slices.Sorted(maps.Keys(rep.ErasedBy)) {
		fmt.Fprintf(w, "Content of %s erased by record %d (crypto-shredded; leaves and proofs verify).\n", records(rep.ErasedBy[by]), by)
	}
	if rep.Omitted > 0 {
		fmt.Fprintf(w, "Content of %s is committed but was not stored (capture profile minimal).\n", records(rep.Omitted))
	}
	if rep.Sealed > 0 {
		fmt.Fprintf(w, "Content of %s is encrypted and was not checked: no key-encryption key.\n", records(rep.Sealed))
	}
}

// httpFetcher fetches tiles from a server, with a timeout per request and
// a bound on what it reads.
func httpFetcher(base *url.URL, token string) ledger.TileFetcher {
	client := clientWithToken(token, 60*time.Second)
	return func(ctx context.Context, path string) ([]byte, error) {
		u := base.ResolveReference(&url.URL{Path: path})
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
		if err != nil {
			return nil, err
		}
		resp, err := client.Do(req)
		if err != nil {
			return nil, fmt.Errorf("fetch %s: %w", path, err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(io.LimitReader(resp.Body, 32<<20))
		if err != nil {
			return nil, fmt.Errorf("fetch %s: %w", path, err)
		}
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("fetch %s: %s", path, resp.Status)
		}
		return body, nil
	}
}

// records says "1 record" or "N records".
func records(n int64) string {
	if n == 1 {
		return "1 record"
	}
	return fmt.Sprintf("%d records", n)
}
