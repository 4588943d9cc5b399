package ledger

import (
	"crypto/ed25519"
	"encoding/base64"
	"fmt"
	"strings"

	"golang.org/x/mod/sumdb/note"
)

// KeyPair builds the signer and verifier of a note private key as written by
// GenerateKey ("PRIVATE+KEY+<name>+<hash>+<key>"), and returns the verifier
// key text ("<name>+<hash>+<key>") that clients are given.
func KeyPair(skey string) (note.Signer, note.Verifier, string, error) {
	s, err := note.NewSigner(strings.TrimSpace(skey))
	if err != nil {
		return nil, nil, "", fmt.Errorf("read signing key: %w", err)
	}
	parts := strings.SplitN(strings.TrimSpace(skey), "+", 5)
	if len(parts) != 5 {
		return nil, nil, "", fmt.Errorf("read signing key: malformed")
	}
	raw, err := base64.StdEncoding.DecodeString(parts[4])
	if err != nil || len(raw) != 1+ed25519.SeedSize || raw[0] != 1 {
		return nil, nil, "", fmt.Errorf("read signing key: not an Ed25519 note key")
	}
	pub := ed25519.NewKeyFromSeed(raw[1:]).Public().(ed25519.PublicKey)
	vkey, err := note.NewEd25519VerifierKey(s.Name(), pub)
	if err != nil {
		return nil, nil, "", fmt.Errorf("read signing key: %w", err)
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		return nil, nil, "", fmt.Errorf("read signing key: %w", err)
	}
	return s, v, vkey, nil
}

// checkKeyPair makes sure that v verifies what s signs.
func checkKeyPair(s note.Signer, v note.Verifier) error {
	if s.Name() != v.Name() || s.KeyHash() != v.KeyHash() {
		return fmt.Errorf("signer %s+%08x and verifier %s+%08x are not one key", s.Name(), s.KeyHash(), v.Name(), v.KeyHash())
	}
	msg := []byte("infertrail key check\n")
	sig, err := s.Sign(msg)
	if err != nil {
		return fmt.Errorf("sign with the checkpoint key: %w", err)
	}
	if !v.Verify(msg, sig) {
		return fmt.Errorf("the verifier does not verify the signer's signature")
	}
	return nil
}
