package main

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"filippo.io/torchwood"
	"golang.org/x/crypto/ssh"

	"github.com/infertrail/infertrail/ledger/sshagent/sshagenttest"
)

const witnessName = "witness.test/w1"

// startWitness builds and runs litewitness (filippo.io/torchwood), a C2SP
// tlog-witness this project did not write, with its key in an ssh-agent,
// and returns its URL, its cosignature verifier key, and a function that
// makes it know a log (as its witnessctl add-log and add-key do).
func startWitness(t *testing.T) (url, vkey string, addLog func(origin, logVKey string)) {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "litewitness")
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "filippo.io/torchwood/cmd/litewitness").CombinedOutput(); err != nil {
		t.Fatalf("build litewitness: %v\n%s", err, out)
	}
	agent := sshagenttest.Start(t)
	key, pub := sshagenttest.NewKey(t)
	agent.Add(t, key)
	sp, _, _, _, err := ssh.ParseAuthorizedKey([]byte(pub))
	if err != nil {
		t.Fatal(err)
	}
	cs, err := torchwood.NewCosignatureSigner(witnessName, key)
	if err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	db := filepath.Join(dir, "litewitness.db")
	cmd := exec.Command(bin, "-name", witnessName, "-db", db, "-ssh-agent", agent.Socket,
		"-key", ssh.FingerprintSHA256(sp), "-listen", addr)
	var logs syncBuffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("litewitness:\n%s", logs.String())
		}
	})
	url = "http://" + addr
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if resp, err := http.Get(url + "/"); err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("litewitness did not listen on %s:\n%s", addr, logs.String())
		}
	}
	addLog = func(origin, logVKey string) {
		t.Helper()
		w, err := sql.Open("sqlite", db)
		if err != nil {
			t.Fatal(err)
		}
		defer w.Close()
		empty := sha256.Sum256(nil)
		if _, err := w.Exec(`INSERT INTO log (origin, tree_size, tree_hash) VALUES (?, 0, ?)`, origin, base64.StdEncoding.EncodeToString(empty[:])); err != nil {
			t.Fatal(err)
		}
		if _, err := w.Exec(`INSERT INTO key (origin, key) VALUES (?, ?)`, origin, logVKey); err != nil {
			t.Fatal(err)
		}
	}
	return url, cs.Verifier().String(), addLog
}

// waitCosigned waits until the served checkpoint carries the witness's
// cosignature, and returns it.
func waitCosigned(t *testing.T, s *server) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		cp := string(getBody(t, s.url, "/checkpoint"))
		if strings.Contains(cp, "\n— "+witnessName+" ") {
			return cp
		}
		if time.Now().After(deadline) {
			t.Fatalf("no cosignature by %s within 30 s; the checkpoint:\n%s\n--- stderr:\n%s", witnessName, cp, s.stderr)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestE2EWitness runs the log with a real witness: each new checkpoint is
// cosigned and served with its cosignature, which verify --witness checks
// over the tiles and offline; a copy of the log that goes its own way (a
// fork, as whoever holds the data folder and the key could make) gets no
// cosignature for its new checkpoints.
func TestE2EWitness(t *testing.T) {
	wURL, wKey, addLog := startWitness(t)
	cfg := filepath.Join(t.TempDir(), "infertrail.yaml")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, "witnesses:\n  - url: %s\n    key: %s\n    timeout: 2s\n", wURL, wKey), 0o600); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	s := startServer(t, dir, "--config", cfg)
	if !strings.Contains(s.stdout.String(), "witness:      "+witnessName+" at "+wURL) {
		t.Errorf("serve does not name its witness:\n%s", s.stdout)
	}
	origin := strings.SplitN(s.vkey, "+", 2)[0]
	addLog(origin, s.vkey)
	mustPost(t, s.url, batchBodyOnly(t, 20, 0), 20)
	waitCosigned(t, s)
	// The witness goes on cosigning from where it is.
	mustPost(t, s.url, batchBodyOnly(t, 20, 20), 20)
	size := treeSize(t, s.url)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		cp := waitCosigned(t, s)
		if strings.Contains(cp, fmt.Sprintf("\n%d\n", size)) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no cosigned checkpoint of size %d:\n%s", size, cp)
		}
	}
	r := runCLI(t, nil, time.Minute, "verify", "--server", s.url, "--key", s.vkey, "--token", s.token, "--witness", wKey, "-q")
	if r.code != 0 || !strings.Contains(r.stdout, "Cosigned by "+witnessName) {
		t.Fatalf("verify --server --witness:\n%s", r)
	}
	otherKey, _ := sshagenttest.NewKey(t)
	other, err := torchwood.NewCosignatureSigner(witnessName, otherKey)
	if err != nil {
		t.Fatal(err)
	}
	r = runCLI(t, nil, time.Minute, "verify", "--server", s.url, "--key", s.vkey, "--token", s.token, "--witness", other.Verifier().String(), "-q")
	if r.code != 1 || !strings.Contains(r.stdout, "no valid cosignature by the witness "+witnessName) {
		t.Fatalf("verify --witness with another witness key:\n%s", r)
	}
	// An evidence bundle carries the cosignatures of its checkpoints.
	bundle := filepath.Join(t.TempDir(), "b.zip")
	if r := runCLI(t, nil, time.Minute, "export", "--seq", fmt.Sprint(s.base+2), "--out", bundle, "--server", s.url, "--token", s.token); r.code != 0 {
		t.Fatalf("export:\n%s", r)
	}
	if r := runCLI(t, nil, time.Minute, "verify", bundle, "--key", s.vkey, "--witness", wKey); r.code != 0 || !strings.Contains(r.stdout, "Cosigned by "+witnessName) {
		t.Fatalf("verify of a bundle --witness:\n%s", r)
	}
	if r := runCLI(t, nil, time.Minute, "verify", bundle, "--key", s.vkey, "--witness", other.Verifier().String()); r.code != 1 || !strings.Contains(r.stdout, "no valid cosignature") {
		t.Fatalf("verify of a bundle with another witness key:\n%s", r)
	}
	// Records just before the server stops: its final checkpoint, signed
	// as it stops, is cosigned before it exits.
	mustPost(t, s.url, batchBodyOnly(t, 3, 37), 3)
	final := treeSize(t, s.url)
	if s.stop() != 0 {
		t.Fatalf("serve did not stop cleanly:\n%s", s.stderr)
	}
	if r := runCLI(t, nil, time.Minute, "verify", "--data", dir, "--witness", wKey, "-q"); r.code != 0 || !strings.Contains(r.stdout, fmt.Sprintf("Cosigned by %s at size %d:", witnessName, final)) {
		t.Fatalf("verify --data --witness, the final checkpoint of size %d:\n%s", final, r)
	}

	// A fork: a copy of the data folder, with the same key, takes other
	// records. The witness has cosigned the original's tree: it refuses
	// the copy's, which therefore never carries a cosignature.
	fork := copyDataFolder(t, dir)
	s = startServer(t, dir, "--config", cfg)
	mustPost(t, s.url, batchBodyOnly(t, 5, 40), 5)
	waitCheckpoint(t, s.url, treeSize(t, s.url))
	want := treeSize(t, s.url)
	for deadline := time.Now().Add(30 * time.Second); !strings.Contains(waitCosigned(t, s), fmt.Sprintf("\n%d\n", want)); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the original's checkpoint of size %d was not cosigned", want)
		}
	}
	f := startServer(t, fork, "--config", cfg)
	mustPost(t, f.url, batchBodyOnly(t, 9, 1000), 9)
	waitCheckpoint(t, f.url, treeSize(t, f.url))
	time.Sleep(3 * time.Second) // time enough for the witness to answer
	r = runCLI(t, nil, time.Minute, "verify", "--server", f.url, "--key", f.vkey, "--token", f.token, "--witness", wKey, "-q")
	if r.code != 1 || !strings.Contains(r.stdout, "no valid cosignature by the witness") {
		t.Fatalf("verify --witness of the fork:\n%s", r)
	}
	if !strings.Contains(f.stderr.String(), "422: the witness refused the consistency proof") {
		t.Errorf("the fork's server does not log the witness's refusal:\n%s", f.stderr)
	}
}

// TestE2EWitnessConfig refuses a witness the server could not use, naming
// the setting.
func TestE2EWitnessConfig(t *testing.T) {
	key := "witness.test/w1+59c0f946+BHBB/Qtz6p7Pi5wZg8D1ANsQf6JJFKXQrflW/b8xCQyg"
	for _, tc := range []struct{ url, key, want string }{
		{"ftp://witness.test", key, "witnesses[0].url"},
		{"http://witness.test", "witness.test/w1+00000000+BHBB", "witnesses[0].key"},
		{"http://witness.test", "", "witnesses[0].key"},
	} {
		cfg := filepath.Join(t.TempDir(), "infertrail.yaml")
		if err := os.WriteFile(cfg, fmt.Appendf(nil, "witnesses:\n  - url: %q\n    key: %q\n", tc.url, tc.key), 0o600); err != nil {
			t.Fatal(err)
		}
		r := runCLI(t, nil, time.Minute, "serve", "--data", t.TempDir(), "--listen", "127.0.0.1:0", "--config", cfg)
		if r.code == 0 || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("serve with witness %q %q: want an error naming %s\n%s", tc.url, tc.key, tc.want, r)
		}
	}
}

// TestE2EWitnessHangsAtShutdown: a witness that never answers holds the
// server's stop for at most its timeout, and the log says the final
// checkpoint was not cosigned.
func TestE2EWitnessHangsAtShutdown(t *testing.T) {
	key, _ := sshagenttest.NewKey(t)
	signer, err := torchwood.NewCosignatureSigner(witnessName, key)
	if err != nil {
		t.Fatal(err)
	}
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body) // then the server notices the client going away
		<-r.Context().Done()
	}))
	defer hang.Close()
	cfg := filepath.Join(t.TempDir(), "infertrail.yaml")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, "witnesses:\n  - url: %s\n    key: %s\n    timeout: 1s\n", hang.URL, signer.Verifier().String()), 0o600); err != nil {
		t.Fatal(err)
	}
	s := startServer(t, t.TempDir(), "--config", cfg)
	mustPost(t, s.url, batchBodyOnly(t, 3, 0), 3)
	start := time.Now()
	if s.stop() != 0 {
		t.Fatalf("serve did not stop cleanly:\n%s", s.stderr)
	}
	if took := time.Since(start); took > 15*time.Second {
		t.Errorf("stopping took %v with a witness that never answers (timeout 1s)", took)
	}
	if !strings.Contains(s.stderr.String(), "the final checkpoint is not cosigned") {
		t.Errorf("the log does not say the final checkpoint went uncosigned:\n%s", s.stderr)
	}
}
