// Package sshagent signs a log's checkpoints with an Ed25519 key that an
// SSH agent holds, so that the checkpoint key never lives on the server:
// ssh-agent(1) itself, or anything that speaks its protocol (the agent of a
// hardware token, gpg-agent, a secrets manager's agent).
//
// An Ed25519 signature is made over the message itself, with no digest in
// between, so the signature an agent returns for a checkpoint's note text
// is exactly the signature golang.org/x/mod/sumdb/note would have made with
// the private key: a checkpoint signed through an agent is verified with
// the log's ordinary verifier key.
package sshagent

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
	"golang.org/x/mod/sumdb/note"
)

// DefaultTimeout bounds one signature when New is given no timeout: an
// agent that asks its user to confirm each use waits that long at most.
const DefaultTimeout = 10 * time.Second

// Signer is a note.Signer whose key an SSH agent holds. Each Sign dials the
// agent's socket anew, so an agent that restarts is found again, and is
// bounded by the timeout. It is safe for concurrent use.
type Signer struct {
	socket  string
	name    string
	pub     ed25519.PublicKey
	sshPub  ssh.PublicKey
	hash    uint32
	vkey    string
	timeout time.Duration
}

var _ note.Signer = (*Signer)(nil)

// ParsePublicKey parses an Ed25519 public key in the form of an
// authorized_keys line or a .pub file ("ssh-ed25519 AAAA… comment").
func ParsePublicKey(text string) (ed25519.PublicKey, error) {
	k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(strings.TrimSpace(text)))
	if err != nil {
		return nil, fmt.Errorf("public key %q: want an OpenSSH public key (ssh-ed25519 AAAA…): %w", clip(text), err)
	}
	if k.Type() != ssh.KeyAlgoED25519 {
		return nil, fmt.Errorf("public key %s: a %s key; checkpoints are signed with Ed25519 (ssh-keygen -t ed25519)", ssh.FingerprintSHA256(k), k.Type())
	}
	ck, ok := k.(ssh.CryptoPublicKey)
	if !ok {
		return nil, fmt.Errorf("public key %s: not an Ed25519 key", ssh.FingerprintSHA256(k))
	}
	pub, ok := ck.CryptoPublicKey().(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("public key %s: not an Ed25519 key", ssh.FingerprintSHA256(k))
	}
	return pub, nil
}

// VerifierKey returns the note verifier key ("origin+hash+key") of the
// log named origin whose checkpoints the Ed25519 key publicKey (see
// ParsePublicKey) signs.
func VerifierKey(origin, publicKey string) (string, error) {
	pub, err := ParsePublicKey(publicKey)
	if err != nil {
		return "", err
	}
	vkey, _, err := verifierKey(origin, pub)
	return vkey, err
}

func verifierKey(origin string, pub ed25519.PublicKey) (string, note.Verifier, error) {
	vkey, err := note.NewEd25519VerifierKey(origin, pub)
	if err == nil {
		var v note.Verifier
		if v, err = note.NewVerifier(vkey); err == nil {
			return vkey, v, nil
		}
	}
	return "", nil, fmt.Errorf("origin %q: %w", origin, err)
}

// New returns a Signer that signs as the log named origin with the agent
// at socket (SSH_AUTH_SOCK's value when socket is empty), using its key
// publicKey (see ParsePublicKey). A timeout of zero means DefaultTimeout.
// It does not reach the agent: sign something to check that it holds the
// key.
func New(socket, origin, publicKey string, timeout time.Duration) (*Signer, error) {
	if socket == "" {
		socket = os.Getenv("SSH_AUTH_SOCK")
		if socket == "" {
			return nil, errors.New("ssh agent: no socket given, and SSH_AUTH_SOCK is not set")
		}
	}
	if timeout < 0 {
		return nil, fmt.Errorf("ssh agent: timeout %v is negative", timeout)
	}
	if timeout == 0 {
		timeout = DefaultTimeout
	}
	pub, err := ParsePublicKey(publicKey)
	if err != nil {
		return nil, fmt.Errorf("ssh agent: %w", err)
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("ssh agent: %w", err)
	}
	vkey, v, err := verifierKey(origin, pub)
	if err != nil {
		return nil, fmt.Errorf("ssh agent: %w", err)
	}
	return &Signer{socket: socket, name: origin, pub: pub, sshPub: sshPub, hash: v.KeyHash(), vkey: vkey, timeout: timeout}, nil
}

// Name returns the log's origin, the name of the key.
func (s *Signer) Name() string { return s.name }

// KeyHash returns the note key hash of the key.
func (s *Signer) KeyHash() uint32 { return s.hash }

// VerifierKey returns the note verifier key ("origin+hash+key") that
// verifies what s signs.
func (s *Signer) VerifierKey() string { return s.vkey }

// Fingerprint returns the key's OpenSSH fingerprint (SHA256:…), as
// ssh-add -l lists it.
func (s *Signer) Fingerprint() string { return ssh.FingerprintSHA256(s.sshPub) }

// Sign asks the agent to sign msg, and checks the signature before it
// returns it: a signature that does not verify is an error, never a
// checkpoint.
func (s *Signer) Sign(msg []byte) ([]byte, error) {
	conn, err := net.DialTimeout("unix", s.socket, s.timeout)
	if err != nil {
		return nil, fmt.Errorf("ssh agent %s: %w", s.socket, err)
	}
	defer conn.Close()
	deadline := time.Now().Add(s.timeout)
	if err := conn.SetDeadline(deadline); err != nil {
		return nil, fmt.Errorf("ssh agent %s: %w", s.socket, err)
	}
	a := agent.NewClient(conn)
	sig, err := a.Sign(s.sshPub, msg)
	if err != nil {
		// The agent package does not wrap the connection's errors.
		if !time.Now().Before(deadline) {
			return nil, fmt.Errorf("ssh agent %s: no signature within %v: %w", s.socket, s.timeout, err)
		}
		// The agent answers a key it does not hold with a bare failure:
		// say which it is, if the listing can tell.
		if keys, lerr := a.List(); lerr == nil && !holds(keys, s.sshPub) {
			return nil, fmt.Errorf("ssh agent %s: it does not hold the key %s (add it with ssh-add)", s.socket, s.Fingerprint())
		}
		return nil, fmt.Errorf("ssh agent %s: sign with %s: %w", s.socket, s.Fingerprint(), err)
	}
	if sig.Format != ssh.KeyAlgoED25519 || len(sig.Blob) != ed25519.SignatureSize || !ed25519.Verify(s.pub, msg, sig.Blob) {
		return nil, fmt.Errorf("ssh agent %s: the signature it returned (%s, %d bytes) does not verify with %s", s.socket, sig.Format, len(sig.Blob), s.Fingerprint())
	}
	return sig.Blob, nil
}

func holds(keys []*agent.Key, pub ssh.PublicKey) bool {
	want := string(pub.Marshal())
	for _, k := range keys {
		if string(k.Marshal()) == want {
			return true
		}
	}
	return false
}

// clip shortens text for an error message.
func clip(text string) string {
	text = strings.TrimSpace(text)
	if len(text) > 40 {
		return text[:40] + "…"
	}
	return text
}
