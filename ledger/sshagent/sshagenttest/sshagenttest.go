// Package sshagenttest runs a real ssh-agent(1) for tests, with keys added
// by ssh-add(1), as an operator would.
package sshagenttest

import (
	"context"
	"crypto/ed25519"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// requireEnv, when set, turns a missing ssh-agent from a skip into a
// failure: CI sets it, and installs OpenSSH's client.
const requireEnv = "INFERTRAIL_REQUIRE_SSH_AGENT"

// Agent is an ssh-agent process listening on Socket.
type Agent struct {
	Socket string
	bin    string
	cmd    *exec.Cmd
}

// Start starts an ssh-agent on a socket of its own, stopped when tb ends.
// Without ssh-agent on the PATH the test is skipped, or fails when
// INFERTRAIL_REQUIRE_SSH_AGENT is set.
func Start(tb testing.TB) *Agent {
	tb.Helper()
	bin, err := exec.LookPath("ssh-agent")
	if err != nil {
		if os.Getenv(requireEnv) != "" {
			tb.Fatalf("ssh-agent: %v (%s is set)", err, requireEnv)
		}
		tb.Skipf("ssh-agent: %v (set %s to fail instead)", err, requireEnv)
	}
	dir, err := os.MkdirTemp("", "agent")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(dir) })
	a := &Agent{Socket: filepath.Join(dir, "agent.sock"), bin: bin}
	tb.Cleanup(a.Stop)
	a.start(tb)
	return a
}

func (a *Agent) start(tb testing.TB) {
	tb.Helper()
	a.cmd = exec.Command(a.bin, "-D", "-a", a.Socket)
	if err := a.cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, err := os.Stat(a.Socket); err == nil {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("ssh-agent made no socket at %s", a.Socket)
		}
	}
}

// Restart starts a new agent on the same socket, holding no keys, as an
// agent restarted by its operator does.
func (a *Agent) Restart(tb testing.TB) {
	tb.Helper()
	a.Stop()
	a.start(tb)
}

// Stop stops the agent; its socket no longer answers.
func (a *Agent) Stop() {
	if a.cmd.Process != nil && a.cmd.ProcessState == nil {
		a.cmd.Process.Kill()
		a.cmd.Wait()
	}
	os.Remove(a.Socket)
}

// NewKey returns a new Ed25519 key, and its public half as an
// authorized_keys line.
func NewKey(tb testing.TB) (ed25519.PrivateKey, string) {
	tb.Helper()
	pub, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		tb.Fatal(err)
	}
	sp, err := ssh.NewPublicKey(pub)
	if err != nil {
		tb.Fatal(err)
	}
	return priv, strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sp))) + " checkpoint-key"
}

// Add adds key to the agent with ssh-add, from a private key file in
// OpenSSH's format.
func (a *Agent) Add(tb testing.TB, key ed25519.PrivateKey) {
	tb.Helper()
	block, err := ssh.MarshalPrivateKey(key, "checkpoint-key")
	if err != nil {
		tb.Fatal(err)
	}
	file := filepath.Join(tb.TempDir(), "id_ed25519")
	if err := os.WriteFile(file, pem.EncodeToMemory(block), 0o600); err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ssh-add", file)
	cmd.Env = append(os.Environ(), "SSH_AUTH_SOCK="+a.Socket)
	if out, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("ssh-add: %v: %s", err, out)
	}
}
