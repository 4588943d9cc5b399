package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/infertrail/infertrail/ledger/sshagent/sshagenttest"
)

// agentConfig writes a config file whose checkpoints are signed by the
// agent at socket with the key pub.
func agentConfig(t *testing.T, socket, pub string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "infertrail.yaml")
	body := fmt.Sprintf("signing:\n  public_key: %q\n  ssh_agent: %q\n  timeout: 2s\n", pub, socket)
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestE2ESSHAgentSigning runs a server whose checkpoint key a real
// ssh-agent holds: no private key lands in the data folder; checkpoints
// verify with the log's verifier key, online and offline; while the agent
// is gone records are still taken, checkpoints wait and the failures are
// counted, and signing resumes once the key is back; a server given
// another key, no key, or an agent without the key does not start.
func TestE2ESSHAgentSigning(t *testing.T) {
	agent := sshagenttest.Start(t)
	key, pub := sshagenttest.NewKey(t)
	agent.Add(t, key)
	cfg := agentConfig(t, agent.Socket, pub)
	dir := t.TempDir()

	s := startServer(t, dir, "--config", cfg)
	if !strings.Contains(s.stdout.String(), "signed by the SSH agent's key SHA256:") {
		t.Fatalf("serve did not say who signs:\n%s", s.stdout)
	}
	if _, err := os.Stat(filepath.Join(dir, logKeyFile)); !os.IsNotExist(err) {
		t.Fatalf("%s in the data folder: %v", logKeyFile, err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, logPubFile)); err != nil || strings.TrimSpace(string(b)) != s.vkey {
		t.Fatalf("%s = %q, %v; want the verifier key %s", logPubFile, b, err, s.vkey)
	}
	mustPost(t, s.url, batchBodyOnly(t, 20, 0), 20)
	size := treeSize(t, s.url)
	waitCheckpoint(t, s.url, size)
	if r := runCLI(t, nil, time.Minute, "verify", "--server", s.url, "--key", s.vkey, "--token", s.token, "-q"); r.code != 0 {
		t.Fatalf("verify --server:\n%s", r)
	}

	// The agent goes away: records are still taken, checkpoints are not.
	agent.Stop()
	mustPost(t, s.url, batchBodyOnly(t, 5, 20), 5)
	deadline := time.Now().Add(20 * time.Second)
	for metricValue(t, string(getBody(t, s.url, "/metrics")), "infertrail_checkpoint_sign_failures_total") == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no signing failure counted with the agent gone\n--- stderr:\n%s", s.stderr)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !strings.Contains(s.stderr.String(), agent.Socket) {
		t.Errorf("the server's log does not name the agent that failed:\n%s", s.stderr)
	}
	// Back, with the key: the next checkpoint covers everything.
	agent.Restart(t)
	agent.Add(t, key)
	waitCheckpoint(t, s.url, treeSize(t, s.url))

	// An offline administrative command signs through the agent too.
	if s.stop() != 0 {
		t.Fatalf("serve did not stop cleanly:\n%s", s.stderr)
	}
	if r := runCLI(t, nil, time.Minute, "hold", "add", "--data", dir, "--config", cfg, "--scope", "tenant=acme", "--reason", "audit"); r.code != 0 {
		t.Fatalf("hold add --data with the agent's key:\n%s", r)
	}
	if r := runCLI(t, nil, time.Minute, "hold", "add", "--data", dir, "--scope", "tenant=acme", "--reason", "audit"); r.code == 0 || !strings.Contains(r.stderr, "signing.public_key") {
		t.Fatalf("hold add --data without the signing config:\n%s", r)
	}
	r := runCLI(t, nil, time.Minute, "verify", "--data", dir)
	if r.code != 0 || !strings.Contains(r.stdout, "OK:") {
		t.Fatalf("verify --data of a log signed by the agent:\n%s", r)
	}

	// What does not start, and says why.
	_, other := sshagenttest.NewKey(t)
	empty := sshagenttest.Start(t)
	for _, tc := range []struct {
		name, dir, config, want string
	}{
		{"another key", dir, agentConfig(t, agent.Socket, other), "not the key the log's checkpoints are signed with"},
		{"no key", dir, "", "signing.public_key"},
		{"an agent without the key", dir, agentConfig(t, empty.Socket, pub), "does not hold the key"},
		{"a log made with log.key", copyWithKeyFile(t), cfg, "a log keeps the key it was made with"},
	} {
		args := []string{"serve", "--data", tc.dir, "--listen", "127.0.0.1:0"}
		if tc.config != "" {
			args = append(args, "--config", tc.config)
		}
		if r := runCLI(t, nil, time.Minute, args...); r.code == 0 || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("serve with %s: want an error with %q\n%s", tc.name, tc.want, r)
		}
	}
}

// copyWithKeyFile returns a data folder of a log that signs with log.key.
func copyWithKeyFile(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	s := startServer(t, dir)
	s.stop()
	return dir
}

// batchBodyOnly is batchBody without the ids.
func batchBodyOnly(t *testing.T, n, first int) []byte {
	t.Helper()
	b, _ := batchBody(t, n, first, true)
	return b
}
