package ledger_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/infertrail/infertrail"
	"github.com/infertrail/infertrail/keys"
	"github.com/infertrail/infertrail/ledger"
	"github.com/infertrail/infertrail/ledger/ledgertest"
	"github.com/infertrail/infertrail/store/sqlite"
)

const testOrigin = "example.com/infertrail/test"

// testLog is a ledger.Log over a real SQLite store in a temporary directory.
type testLog struct {
	*ledger.Log
	db     *sqlite.DB
	path   string
	signer note.Signer
	verif  note.Verifier
	kek    keys.KEK
}

// testKeys returns a fresh checkpoint key pair named testOrigin.
func testKeys(tb testing.TB) (note.Signer, note.Verifier) {
	tb.Helper()
	skey, _, err := ledger.GenerateKey(testOrigin)
	if err != nil {
		tb.Fatal(err)
	}
	s, v, _, err := ledger.KeyPair(skey)
	if err != nil {
		tb.Fatal(err)
	}
	return s, v
}

// openStore opens the SQLite store at path and closes it when the test ends.
func openStore(tb testing.TB, path string, cfg sqlite.Config) *sqlite.DB {
	tb.Helper()
	db, err := sqlite.Open(context.Background(), path, cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	return db
}

// newTestLog opens a log with a 50 ms checkpoint interval; edit, if not
// nil, changes its configuration first. The log and its store are closed
// when the test ends.
func newTestLog(tb testing.TB, storeCfg sqlite.Config, edit func(*ledger.Config)) *testLog {
	tb.Helper()
	return newTestLogIn(tb, tb.TempDir(), storeCfg, edit)
}

// newTestLogIn is newTestLog with the database in dir.
func newTestLogIn(tb testing.TB, dir string, storeCfg sqlite.Config, edit func(*ledger.Config)) *testLog {
	tb.Helper()
	path := filepath.Join(dir, "log.db")
	db := openStore(tb, path, storeCfg)
	s, v := testKeys(tb)
	secret := make([]byte, 32)
	rand.Read(secret)
	cfg := ledger.Config{Store: db, Signer: s, Verifier: v, Origin: testOrigin, Secret: secret,
		KEK: ledgertest.NewKEK(tb), CheckpointInterval: 50 * time.Millisecond}
	if edit != nil {
		edit(&cfg)
	}
	l, err := ledger.Open(context.Background(), cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { l.Close() })
	return &testLog{Log: l, db: db, path: path, signer: s, verif: v, kek: cfg.KEK}
}

// recordJSON returns an ingest record with a fresh id and the given content
// object (JSON, or "" for none), written with insignificant white space so
// that its canonical form differs.
func recordJSON(n int, content string) string {
	var b strings.Builder
	fmt.Fprintf(&b, `{ "kind": "inference", "id": %q, "session_id": "sess-%d",
		"trace_id": "%032x", "actor": {"id": "agent:%d"},
		"attributes": {"gen_ai.request.model": "model-%d", "gen_ai.usage.input_tokens": %d, "temperature": 0.50}`,
		infertrail.NewUUID(), n%7, n+1, n%5, n%3, 1000+n)
	if content != "" {
		b.WriteString(`, "content": ` + content)
	}
	b.WriteString(" }")
	return b.String()
}

// parse parses an ingest record into a Submission with source "test".
func parse(tb testing.TB, src string) ledger.Submission {
	tb.Helper()
	r, raw, err := infertrail.ParseRecord([]byte(src), infertrail.Limits{})
	if err != nil {
		tb.Fatalf("parse %s: %v", src, err)
	}
	r.Source = "test"
	return ledger.Submission{Record: r, Raw: raw}
}

// parseAll parses every record of srcs.
func parseAll(tb testing.TB, srcs []string) []ledger.Submission {
	tb.Helper()
	subs := make([]ledger.Submission, len(srcs))
	for i, s := range srcs {
		subs[i] = parse(tb, s)
	}
	return subs
}

// goRecord builds a record in Go, as a capture adapter does.
func goRecord(id infertrail.UUID, attrs, content map[string]string) *infertrail.Record {
	raw := func(m map[string]string) map[string]json.RawMessage {
		if m == nil {
			return nil
		}
		out := make(map[string]json.RawMessage, len(m))
		for k, v := range m {
			out[k] = json.RawMessage(v)
		}
		return out
	}
	return &infertrail.Record{ID: id, Kind: infertrail.KindToolCall, Source: "test", Attributes: raw(attrs), Content: raw(content)}
}

// mustAppend appends subs and fails the test on error.
func mustAppend(tb testing.TB, l *ledger.Log, subs []ledger.Submission) []ledger.Result {
	tb.Helper()
	res, err := l.Append(context.Background(), subs)
	if err != nil {
		tb.Fatalf("append %d records: %v", len(subs), err)
	}
	if len(res) != len(subs) {
		tb.Fatalf("append %d records: %d results", len(subs), len(res))
	}
	return res
}

// treeSize returns the committed tree size.
func treeSize(tb testing.TB, s infertrail.HashReader) int64 {
	tb.Helper()
	n, err := s.TreeSize(context.Background())
	if err != nil {
		tb.Fatal(err)
	}
	return n
}

// rawDB opens the SQLite file at path with database/sql, for reading or
// altering it behind the store's back.
func rawDB(tb testing.TB, path string) *sql.DB {
	tb.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	return db
}

// copyDB copies the database file at src, and its write-ahead log if there
// is one, into a new temporary directory and returns the copy's path.
func copyDB(tb testing.TB, src string) string {
	tb.Helper()
	dst := filepath.Join(tb.TempDir(), filepath.Base(src))
	for _, suffix := range []string{"", "-wal"} {
		in, err := os.Open(src + suffix)
		if suffix != "" && errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			tb.Fatal(err)
		}
		out, err := os.Create(dst + suffix)
		if err != nil {
			tb.Fatal(err)
		}
		if _, err := io.Copy(out, in); err != nil {
			tb.Fatal(err)
		}
		in.Close()
		if err := out.Close(); err != nil {
			tb.Fatal(err)
		}
	}
	return dst
}

// wantVerificationError fails unless err is a *ledger.VerificationError for
// entry index whose What contains what.
func wantVerificationError(tb testing.TB, err error, index int64, what string) *ledger.VerificationError {
	tb.Helper()
	var ve *ledger.VerificationError
	if !errors.As(err, &ve) {
		tb.Fatalf("got error %v, want a *ledger.VerificationError", err)
	}
	if ve.Index != index || !strings.Contains(ve.What, what) {
		tb.Fatalf("got %v (index %d, what %q), want index %d and what containing %q", err, ve.Index, ve.What, index, what)
	}
	return ve
}

// fields returns the members of a canonical JSON object, each canonical.
func fields(tb testing.TB, canon []byte) map[string]json.RawMessage {
	tb.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(canon, &m); err != nil {
		tb.Fatal(err)
	}
	return m
}

// blobsOf reads the blobs an entry references.
func blobsOf(tb testing.TB, s infertrail.EntryReader, e *infertrail.Entry) map[infertrail.BlobID]infertrail.Blob {
	tb.Helper()
	var ids []infertrail.BlobID
	for _, r := range e.Content {
		ids = append(ids, r.Blobs...)
	}
	blobs, err := s.Blobs(context.Background(), ids)
	if err != nil {
		tb.Fatal(err)
	}
	return blobs
}

// raceEnabled reports whether the test binary was built with -race.
func raceEnabled() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" {
			return s.Value == "true"
		}
	}
	return false
}

// logFetcher fetches the checkpoint (from checkpoint), tiles and entry
// bundles of l, as a tile server would serve them, noting each path in
// served if it is not nil.
func logFetcher(l *ledger.Log, checkpoint func(context.Context) ([]byte, error), served *[]string) ledger.TileFetcher {
	return func(ctx context.Context, path string) ([]byte, error) {
		if served != nil {
			*served = append(*served, path)
		}
		if path == "checkpoint" {
			return checkpoint(ctx)
		}
		level, index, width, entries, err := ledger.ParseTilePath(path)
		if err != nil {
			return nil, err
		}
		if entries {
			return l.EntryBundle(ctx, index, width)
		}
		return l.Tile(ctx, level, index, width)
	}
}
