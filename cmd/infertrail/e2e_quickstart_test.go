package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestE2EQuickStart follows the README's quick start on a fresh folder and
// checks the data folder's layout and the key's life cycle.
func TestE2EQuickStart(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "data") // does not exist yet
	s := startServer(t, dir, "--origin", "example.com/e2e-quickstart")

	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != 0o700 {
		t.Errorf("data folder mode = %v, want 0700", got)
	}
	for _, name := range []string{"log.key", "secret.key", "admin-token"} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != 0o600 {
			t.Errorf("%s mode = %v, want 0600", name, got)
		}
	}
	out := s.stdout.String()
	if !strings.Contains(out, "http://"+s.addr) {
		t.Errorf("stdout does not show the listen address %s:\n%s", s.addr, out)
	}
	if !strings.Contains(out, "Created a new signing key") {
		t.Errorf("first start does not say it created a key:\n%s", out)
	}
	if !strings.Contains(out, "Created the first admin token in "+filepath.Join(dir, "admin-token")) || !strings.HasPrefix(s.admin, "itk_") ||
		strings.Contains(out+s.stderr.String(), s.admin) {
		t.Errorf("first start does not say where the admin token is, or prints it:\n%s", out)
	}
	if !strings.HasPrefix(s.vkey, "example.com/e2e-quickstart+") {
		t.Errorf("verifier key %q does not carry the --origin", s.vkey)
	}
	if !regexp.MustCompile(`(?m)^\s*origin:\s+example\.com/e2e-quickstart$`).MatchString(out) {
		t.Errorf("stdout does not show the origin:\n%s", out)
	}

	keys := runCLI(t, nil, 20*time.Second, "keys", "show", "--data", dir)
	if keys.code != 0 || strings.TrimSpace(keys.stdout) != s.vkey {
		t.Errorf("keys show = %q, want %q\n%s", strings.TrimSpace(keys.stdout), s.vkey, keys)
	}

	body, _ := batchBody(t, 5, 0, true)
	mustPost(t, s.url, body, 5)
	size := treeSize(t, s.url) // the 5 records, and the access records of the tokens' creation
	if code := s.stop(); code != 0 {
		t.Fatalf("SIGTERM: exit %d, want 0\n--- stderr:\n%s", code, s.stderr)
	}
	if !strings.Contains(s.stderr.String(), "stopped") {
		t.Errorf("stderr does not log the clean stop:\n%s", s.stderr)
	}
	// What was acknowledged before SIGTERM is there after it.
	if v := runCLI(t, nil, 60*time.Second, "verify", "--data", dir); v.code != 0 || !strings.Contains(v.stdout, fmt.Sprintf("OK: %d records", size)) {
		t.Errorf("verify after SIGTERM:\n%s", v)
	}

	// A second start reuses the key, and the same --origin is accepted.
	s2 := startServer(t, dir, "--origin", "example.com/e2e-quickstart")
	if s2.vkey != s.vkey {
		t.Errorf("second start has key %q, want %q", s2.vkey, s.vkey)
	}
	if strings.Contains(s2.stdout.String(), "Created a new signing key") {
		t.Errorf("second start says it created a key:\n%s", s2.stdout)
	}
	if got := treeSize(t, s2.url); got != size {
		t.Errorf("tree size after restart = %d, want %d", got, size)
	}
	if strings.Contains(s2.stdout.String(), "Created the first admin token") || s2.admin != s.admin {
		t.Errorf("second start made a new admin token:\n%s", s2.stdout)
	}
	if code := s2.stop(); code != 0 {
		t.Fatalf("SIGTERM: exit %d\n--- stderr:\n%s", code, s2.stderr)
	}

	t.Run("different origin refused", func(t *testing.T) {
		r := runCLI(t, nil, 20*time.Second, "serve", "--data", dir, "--listen", freeAddr(t), "--origin", "example.com/another")
		if r.code == 0 || !strings.Contains(r.stderr, "example.com/e2e-quickstart") || !strings.Contains(r.stderr, "infertrail: hint:") {
			t.Errorf("serve with another origin:\n%s", r)
		}
	})

	t.Run("key file readable by others refused", func(t *testing.T) {
		key := filepath.Join(dir, "log.key")
		if err := os.Chmod(key, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Chmod(key, 0o600) })
		for _, args := range [][]string{
			{"serve", "--data", dir, "--listen", freeAddr(t)},
			{"keys", "show", "--data", dir},
		} {
			r := runCLI(t, nil, 20*time.Second, args...)
			if r.code == 0 || !strings.Contains(r.stderr, "chmod 600") || !strings.Contains(r.stderr, key) {
				t.Errorf("%s with a 0644 key:\n%s", args[0], r)
			}
		}
	})
}

// TestE2EServeRefuses checks that serve refuses bad invocations with a
// clear message, and never starts listening.
func TestE2EServeRefuses(t *testing.T) {
	t.Parallel()
	tmp := t.TempDir()
	cfg := filepath.Join(tmp, "infertrail.yaml")
	if err := os.WriteFile(cfg, []byte("listen: 127.0.0.1:0\nlisten_adress: 127.0.0.1:9\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	noAuth := filepath.Join(tmp, "no-auth.yaml")
	if err := os.WriteFile(noAuth, []byte("auth:\n  disabled: true\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	badGC := filepath.Join(tmp, "gc.yaml")
	if err := os.WriteFile(badGC, []byte("gc_percent: 5\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	port := strings.TrimPrefix(freeAddr(t), "127.0.0.1:")
	for _, tc := range []struct {
		name string
		args []string
		want []string // in stderr
	}{
		{"unknown flag", []string{"serve", "--bogus"}, []string{"flag provided but not defined: -bogus"}},
		{"stray argument", []string{"serve", "extra"}, []string{`unexpected argument "extra"`, "infertrail: hint:"}},
		{"unknown command", []string{"sevre"}, []string{`unknown command "sevre"`}},
		{"all interfaces without auth", []string{"serve", "--listen", "0.0.0.0:" + port, "--config", noAuth},
			[]string{"refusing to listen on 0.0.0.0:" + port, "without authentication", "infertrail: hint:"}},
		{"unknown config key", []string{"serve", "--config", cfg}, []string{"listen_adress"}},
		{"bad log level", []string{"serve", "--log-level", "loud"}, []string{`log level "loud"`}},
		{"gc_percent out of range", []string{"serve", "--config", badGC}, []string{"gc_percent 5: must be between 10 and 10000"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(tmp, strings.ReplaceAll(tc.name, " ", "-"))
			args := append([]string{}, tc.args...)
			if args[0] == "serve" {
				args = append(args, "--data", dir)
			}
			r := runCLI(t, nil, 20*time.Second, args...)
			if r.code == 0 {
				t.Fatalf("exit 0, want an error\n%s", r)
			}
			for _, w := range tc.want {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("stderr lacks %q\n%s", w, r)
				}
			}
			if strings.Contains(r.stdout, "listening") {
				t.Errorf("the server started:\n%s", r)
			}
			if _, err := os.Stat(dir); err == nil {
				t.Errorf("refused serve created the data folder %s", dir)
			}
		})
	}
}

// TestE2EListenFromEnv checks that INFERTRAIL_LISTEN sets the address.
func TestE2EListenFromEnv(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	addr := freeAddr(t)
	s := startServerWith(t, dir, addr, []string{"INFERTRAIL_LISTEN=" + addr}, "serve", "--data", dir)
	if !strings.Contains(s.stdout.String(), "http://"+addr) {
		t.Errorf("stdout does not show %s:\n%s", addr, s.stdout)
	}
	if code := s.stop(); code != 0 {
		t.Errorf("SIGTERM: exit %d\n--- stderr:\n%s", code, s.stderr)
	}
}
