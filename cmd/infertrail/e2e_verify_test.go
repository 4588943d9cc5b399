package main

import (
	"crypto/rand"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
	_ "modernc.org/sqlite"

	"github.com/infertrail/infertrail"
	"github.com/infertrail/infertrail/ledger"
	"github.com/infertrail/infertrail/store/sqlite"
)

// otherKey returns a verifier key for origin that the log did not sign with.
func otherKey(tb testing.TB, origin string) string {
	tb.Helper()
	_, vkey, err := note.GenerateKey(rand.Reader, origin)
	if err != nil {
		tb.Fatal(err)
	}
	return vkey
}

// TestE2EVerify ingests records, verifies the log offline and over HTTP,
// with the right key and a wrong one, and then tampers with the database.
func TestE2EVerify(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "data")
	s := startServer(t, dir)
	const n = 30
	for i := 0; i < n; i += 10 {
		body, _ := batchBody(t, 10, i, true)
		mustPost(t, s.url, body, 10)
	}
	total := s.base + n // the tokens' access records come first
	waitCheckpoint(t, s.url, total)
	origin := strings.SplitN(s.vkey, "+", 2)[0]
	wrong := otherKey(t, origin)

	t.Run("data", func(t *testing.T) {
		r := runCLI(t, nil, 60*time.Second, "verify", "--data", dir)
		if r.code != 0 || !strings.Contains(r.stdout, fmt.Sprintf("OK: %d records", total)) {
			t.Errorf("verify --data:\n%s", r)
		}
		r = runCLI(t, nil, 60*time.Second, "verify", "--data", dir, "--key", s.vkey)
		if r.code != 0 || !strings.Contains(r.stdout, fmt.Sprintf("OK: %d records", total)) {
			t.Errorf("verify --data --key:\n%s", r)
		}
	})
	t.Run("server", func(t *testing.T) {
		r := runCLI(t, nil, 60*time.Second, "verify", "--server", s.url, "--key", s.vkey, "--token", s.token)
		if r.code != 0 || !strings.Contains(r.stdout, fmt.Sprintf("OK: %d records", total)) {
			t.Errorf("verify --server:\n%s", r)
		}
	})
	t.Run("wrong key", func(t *testing.T) {
		for _, args := range [][]string{
			{"verify", "--data", dir, "--key", wrong},
			{"verify", "--server", s.url, "--key", wrong, "--token", s.token},
		} {
			r := runCLI(t, nil, 60*time.Second, args...)
			if r.code != 1 || !strings.Contains(r.stdout, "FAILED") {
				t.Errorf("%s with a wrong key: want exit 1 and FAILED on stdout\n%s", args[1], r)
			}
		}
	})
	t.Run("no target", func(t *testing.T) {
		r := runCLI(t, nil, 20*time.Second, "verify")
		if r.code == 0 || !strings.Contains(r.stderr, "infertrail: hint:") || !strings.Contains(r.stderr, "--data") {
			t.Errorf("verify with no target:\n%s", r)
		}
		r = runCLI(t, nil, 20*time.Second, "verify", "--server", s.url)
		if r.code == 0 || !strings.Contains(r.stderr, "--key") {
			t.Errorf("verify --server without --key:\n%s", r)
		}
	})

	if code := s.stop(); code != 0 {
		t.Fatalf("SIGTERM: exit %d\n--- stderr:\n%s", code, s.stderr)
	}

	t.Run("tampered leaf", func(t *testing.T) {
		tdir := copyDataFolder(t, dir)
		bad := s.base + 17
		withDB(t, tdir, func(db *sql.DB) {
			var leaf []byte
			if err := db.QueryRow(`SELECT leaf FROM records WHERE seq = ?`, bad).Scan(&leaf); err != nil {
				t.Fatal(err)
			}
			// The store keeps a leaf compressed when that is smaller:
			// change one byte of the leaf itself and store it plain.
			leaf, err := sqlite.DecodeLeafColumn(leaf)
			if err != nil {
				t.Fatal(err)
			}
			i := strings.Index(string(leaf), "agent:e2e")
			if i < 0 {
				t.Fatalf("leaf %d has no actor agent:e2e: %s", bad, leaf)
			}
			leaf[i+len("agent:")] = 'E' // one byte: "agent:e2e" becomes "agent:E2e"
			if _, err := db.Exec(`UPDATE records SET leaf = ? WHERE seq = ?`, leaf, bad); err != nil {
				t.Fatal(err)
			}
		})
		r := runCLI(t, nil, 60*time.Second, "verify", "--data", tdir)
		if r.code != 1 || !strings.Contains(r.stdout, "FAILED") || !strings.Contains(r.stdout, fmt.Sprintf("The first bad record is %d.", bad)) {
			t.Errorf("verify of a tampered leaf %d:\n%s", bad, r)
		}
	})
	t.Run("tampered blob", func(t *testing.T) {
		tdir := copyDataFolder(t, dir)
		users := map[infertrail.BlobID][]int64{} // blob → records that use it
		var target infertrail.BlobID
		withDB(t, tdir, func(db *sql.DB) {
			rows, err := db.Query(`SELECT seq, content FROM records WHERE content IS NOT NULL ORDER BY seq`)
			if err != nil {
				t.Fatal(err)
			}
			defer rows.Close()
			for rows.Next() {
				var seq int64
				var content []byte
				if err := rows.Scan(&seq, &content); err != nil {
					t.Fatal(err)
				}
				refs, err := infertrail.UnmarshalContentRefs(content)
				if err != nil {
					t.Fatal(err)
				}
				for _, ref := range refs {
					for _, id := range ref.Blobs {
						users[id] = append(users[id], seq)
					}
				}
			}
			if err := rows.Err(); err != nil {
				t.Fatal(err)
			}
			// A blob of a record in the middle of the log.
			for id, seqs := range users {
				if slices.Contains(seqs, s.base+12) {
					target = id
				}
			}
			if users[target] == nil {
				t.Fatalf("record %d has no content blob; blobs: %v", s.base+12, users)
			}
			var data []byte
			if err := db.QueryRow(`SELECT data FROM blobs WHERE id = ?`, sqlite.StoredBlobID(&target)).Scan(&data); err != nil {
				t.Fatal(err)
			}
			data[len(data)/2] ^= 0x01
			if _, err := db.Exec(`UPDATE blobs SET data = ? WHERE id = ?`, data, sqlite.StoredBlobID(&target)); err != nil {
				t.Fatal(err)
			}
		})
		r := runCLI(t, nil, 60*time.Second, "verify", "--data", tdir)
		m := regexp.MustCompile(`The first bad record is (\d+)\.`).FindStringSubmatch(r.stdout)
		if r.code != 1 || !strings.Contains(r.stdout, "FAILED") || m == nil {
			t.Fatalf("verify of a tampered blob:\n%s", r)
		}
		if !slices.Contains(users[target], atoi(t, m[1])) {
			t.Errorf("verify names record %s; the tampered blob is used by %v\n%s", m[1], users[target], r)
		}
	})
}

// TestE2EVerifyNeverRan checks that verify --data on a folder no server
// ran in fails clearly and leaves the folder as it was.
func TestE2EVerifyNeverRan(t *testing.T) {
	t.Parallel()
	tmp := t.TempDir()
	missing := filepath.Join(tmp, "missing")
	r := runCLI(t, nil, 20*time.Second, "verify", "--data", missing)
	if r.code == 0 || !strings.Contains(r.stderr, "infertrail: error:") || !strings.Contains(r.stderr, missing) {
		t.Errorf("verify --data on a missing folder:\n%s", r)
	}
	if _, err := os.Stat(missing); err == nil {
		t.Errorf("verify created %s", missing)
	}

	empty := filepath.Join(tmp, "empty")
	if err := os.Mkdir(empty, 0o700); err != nil {
		t.Fatal(err)
	}
	r = runCLI(t, nil, 20*time.Second, "verify", "--data", empty)
	if r.code == 0 || !strings.Contains(r.stderr, "infertrail: error:") {
		t.Errorf("verify --data on an empty folder:\n%s", r)
	}
	if ents, _ := os.ReadDir(empty); len(ents) != 0 {
		t.Errorf("verify wrote into the empty folder: %v", ents)
	}
}

// copyDataFolder copies a stopped server's data folder, so that each
// tampering starts from the intact log.
func copyDataFolder(tb testing.TB, dir string) string {
	tb.Helper()
	dst := filepath.Join(tb.TempDir(), "data")
	if err := os.CopyFS(dst, os.DirFS(dir)); err != nil {
		tb.Fatal(err)
	}
	for _, k := range []string{"log.key", "secret.key", "content-keys"} {
		if err := os.Chmod(filepath.Join(dst, k), 0o600); err != nil {
			tb.Fatal(err)
		}
	}
	return dst
}

// withDB opens the data folder's SQLite database directly, as an attacker
// with write access to it would.
func withDB(tb testing.TB, dir string, f func(*sql.DB)) {
	tb.Helper()
	db, err := sql.Open("sqlite", filepath.Join(dir, "infertrail.db"))
	if err != nil {
		tb.Fatal(err)
	}
	defer db.Close()
	f(db)
}

func atoi(tb testing.TB, s string) int64 {
	tb.Helper()
	var n int64
	if _, err := fmt.Sscan(s, &n); err != nil {
		tb.Fatal(err)
	}
	return n
}

// TestE2EVerifyHeld keeps a checkpoint and a receipt, lets the log grow,
// then proves with verify --held, over the tiles and offline, that it only
// grew; a checkpoint the log's key signed for another tree is caught as a
// rewrite, and what is no checkpoint of the log is refused by name.
func TestE2EVerifyHeld(t *testing.T) {
	dir := t.TempDir()
	s := startServer(t, dir)
	mustPost(t, s.url, batchBodyOnly(t, 30, 0), 30)
	waitCheckpoint(t, s.url, treeSize(t, s.url))
	files := t.TempDir()
	write := func(name string, b []byte) string {
		t.Helper()
		p := filepath.Join(files, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	heldCP := getBody(t, s.url, "/checkpoint")
	held := write("checkpoint", heldCP)
	receipt := write("receipt", getBody(t, s.url, fmt.Sprintf("/v1/records/%d/receipt", s.base+3)))
	bundle := filepath.Join(files, "bundle.zip")
	if r := runCLI(t, nil, time.Minute, "export", "--seq", fmt.Sprintf("%d,%d", s.base+3, s.base+5), "--content", "--out", bundle, "--server", s.url, "--token", s.token); r.code != 0 {
		t.Fatalf("export:\n%s", r)
	}
	zb, err := os.ReadFile(bundle)
	if err != nil {
		t.Fatal(err)
	}
	zb[len(zb)/2] ^= 1
	badBundle := write("bad.zip", zb)
	mustPost(t, s.url, batchBodyOnly(t, 20, 30), 20)
	waitCheckpoint(t, s.url, treeSize(t, s.url))

	// Whoever holds log.key can sign any tree: here, another one of the
	// size of the checkpoint kept.
	skey, err := os.ReadFile(filepath.Join(dir, logKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	signer, verifier, _, err := ledger.KeyPair(string(skey))
	if err != nil {
		t.Fatal(err)
	}
	cp, err := ledger.ParseCheckpoint(heldCP, verifier.Name(), verifier)
	if err != nil {
		t.Fatal(err)
	}
	other, err := ledger.SignCheckpoint(signer, cp.Origin, cp.Size, tlog.Hash{9})
	if err != nil {
		t.Fatal(err)
	}
	forged := write("forged", other.Note)
	notOne := write("hello", []byte("hello\n"))

	check := func(where []string) {
		t.Helper()
		args := append(append([]string{"verify"}, where...), "-q", "--held", held, "--held", receipt, "--held", bundle)
		r := runCLI(t, nil, time.Minute, args...)
		if r.code != 0 || !strings.Contains(r.stdout, "Held checkpoint "+held+": the log only grew") || !strings.Contains(r.stdout, fmt.Sprintf("Held receipt %s: record %d is in the log, unchanged", receipt, s.base+3)) ||
			!strings.Contains(r.stdout, "Held bundle "+bundle+": its 2 records are in the log, unchanged") {
			t.Fatalf("verify %v with what was kept:\n%s", where, r)
		}
		r = runCLI(t, nil, time.Minute, append(append([]string{"verify"}, where...), "-q", "--held", badBundle)...)
		if r.code == 0 || !strings.Contains(r.stderr, "--held "+badBundle+": the bundle does not verify") {
			t.Fatalf("verify %v with a damaged bundle:\n%s", where, r)
		}
		r = runCLI(t, nil, time.Minute, append(append([]string{"verify"}, where...), "-q", "--held", forged)...)
		if r.code != 1 || !strings.Contains(r.stdout, "FAILED: "+forged) || !strings.Contains(r.stdout, "the log was rewritten") {
			t.Fatalf("verify %v with a checkpoint of another tree:\n%s", where, r)
		}
		r = runCLI(t, nil, time.Minute, append(append([]string{"verify"}, where...), "-q", "--held", notOne)...)
		if r.code == 0 || !strings.Contains(r.stderr, "--held "+notOne) {
			t.Fatalf("verify %v with what is no checkpoint:\n%s", where, r)
		}
	}
	check([]string{"--server", s.url, "--key", s.vkey, "--token", s.token})
	if s.stop() != 0 {
		t.Fatalf("serve did not stop cleanly:\n%s", s.stderr)
	}
	check([]string{"--data", dir})
	if r := runCLI(t, nil, time.Minute, "verify", "bundle.zip", "--held", held); r.code == 0 || !strings.Contains(r.stderr, "--held checks a log") {
		t.Fatalf("verify of a bundle with --held:\n%s", r)
	}
}
