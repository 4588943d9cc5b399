package sshagent_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/infertrail/infertrail/ledger"
	"github.com/infertrail/infertrail/ledger/sshagent"
	"github.com/infertrail/infertrail/ledger/sshagent/sshagenttest"
)

const origin = "example.com/audit-log"

// agentSigner starts an ssh-agent holding a new key, and returns a Signer
// of it and the key.
func agentSigner(tb testing.TB) (*sshagent.Signer, ed25519.PrivateKey) {
	tb.Helper()
	a := sshagenttest.Start(tb)
	key, pub := sshagenttest.NewKey(tb)
	a.Add(tb, key)
	s, err := sshagent.New(a.Socket, origin, pub, 0)
	if err != nil {
		tb.Fatal(err)
	}
	return s, key
}

// TestSign signs a checkpoint through a real ssh-agent: the note verifies
// with the log's verifier key, and is byte for byte the note the private
// key itself signs.
func TestSign(t *testing.T) {
	s, key := agentSigner(t)
	root := tlog.Hash{1, 2, 3}
	cp, err := ledger.SignCheckpoint(s, origin, 42, root)
	if err != nil {
		t.Fatal(err)
	}
	v, err := note.NewVerifier(s.VerifierKey())
	if err != nil {
		t.Fatal(err)
	}
	got, err := ledger.ParseCheckpoint(cp.Note, origin, v)
	if err != nil || got.Size != 42 || got.Root != root {
		t.Fatalf("ParseCheckpoint: %+v, %v", got, err)
	}
	skey, err := note.NewSigner(ledgerPrivateKey(t, origin, key))
	if err != nil {
		t.Fatal(err)
	}
	direct, err := ledger.SignCheckpoint(skey, origin, 42, root)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(direct.Note, cp.Note) {
		t.Fatalf("signed through the agent:\n%s\nwith the key itself:\n%s", cp.Note, direct.Note)
	}
	if !strings.HasPrefix(s.Fingerprint(), "SHA256:") {
		t.Errorf("Fingerprint = %q", s.Fingerprint())
	}
}

// TestSignFailures: a key the agent does not hold, an agent that is gone
// and one that never answers each fail with an error that says so, in
// bounded time.
func TestSignFailures(t *testing.T) {
	a := sshagenttest.Start(t)
	_, pub := sshagenttest.NewKey(t)
	s, err := sshagent.New(a.Socket, origin, pub, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Sign([]byte("msg\n")); err == nil || !strings.Contains(err.Error(), "does not hold the key "+s.Fingerprint()) {
		t.Errorf("Sign with a key the agent lacks: %v", err)
	}
	a.Stop()
	if _, err := s.Sign([]byte("msg\n")); err == nil || !strings.Contains(err.Error(), a.Socket) {
		t.Errorf("Sign with the agent gone: %v", err)
	}

	// An agent that takes the connection and never answers.
	sock := filepath.Join(t.TempDir(), "mute.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	mute, err := sshagent.New(sock, origin, pub, 200*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := mute.Sign([]byte("msg\n")); err == nil || !strings.Contains(err.Error(), "no signature within 200ms") {
		t.Errorf("Sign with a mute agent: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Sign with a mute agent took %v", d)
	}
}

// TestNew refuses what cannot sign checkpoints.
func TestNew(t *testing.T) {
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rpub, err := ssh.NewPublicKey(&rk.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	_, pub := sshagenttest.NewKey(t)
	for _, tc := range []struct {
		socket, origin, pub string
		timeout             time.Duration
		want                string
	}{
		{"/x.sock", origin, string(ssh.MarshalAuthorizedKey(rpub)), 0, "ssh-rsa key; checkpoints are signed with Ed25519"},
		{"/x.sock", origin, "ssh-ed25519 not-base64", 0, "want an OpenSSH public key"},
		{"/x.sock", origin, "", 0, "want an OpenSSH public key"},
		{"/x.sock", "bad origin+", pub, 0, "origin"},
		{"/x.sock", origin, pub, -time.Second, "negative"},
	} {
		if _, err := sshagent.New(tc.socket, tc.origin, tc.pub, tc.timeout); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%q, %q, %.30q, %v): %v, want an error with %q", tc.socket, tc.origin, tc.pub, tc.timeout, err, tc.want)
		}
	}
	t.Setenv("SSH_AUTH_SOCK", "")
	if _, err := sshagent.New("", origin, pub, 0); err == nil || !strings.Contains(err.Error(), "SSH_AUTH_SOCK") {
		t.Errorf("New with no socket: %v", err)
	}
}

// ledgerPrivateKey writes key as a note private key of the log origin, as
// log.key holds one.
func ledgerPrivateKey(t *testing.T, origin string, key ed25519.PrivateKey) string {
	t.Helper()
	vkey, err := note.NewEd25519VerifierKey(origin, key.Public().(ed25519.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("PRIVATE+KEY+%s+%08x+%s", origin, v.KeyHash(), base64.StdEncoding.EncodeToString(append([]byte{1}, key.Seed()...)))
}

// BenchmarkSign measures one checkpoint's signature through a real
// ssh-agent, the connection included, against the key itself.
func BenchmarkSign(b *testing.B) {
	s, key := agentSigner(b)
	msg := []byte(ledger.CheckpointText(origin, 123456789, tlog.Hash{1}))
	b.Run("agent", func(b *testing.B) {
		for b.Loop() {
			if _, err := s.Sign(msg); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("key", func(b *testing.B) {
		for b.Loop() {
			ed25519.Sign(key, msg)
		}
	})
}
