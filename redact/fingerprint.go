package redact

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"log/slog"
	"sync"

	"github.com/infertrail/infertrail"
)

// MinSecretLen is the shortest fingerprint secret accepted, in bytes.
const MinSecretLen = 32

// fingerprintDomain separates credential fingerprints from any other use of
// the server secret. The LLM gateway derives its key the same way, so a
// fingerprint of an API key in redacted content equals the
// actor.credential_fingerprint of the gateway's records for that key.
const fingerprintDomain = "infertrail credential fingerprint\x00"

// Fingerprinter computes keyed credential fingerprints:
//
//	"hmac-sha256:" + lowercase hex of HMAC-SHA256(key, value)
//	key = "infertrail credential fingerprint\x00" || secret
//
// A fingerprint lets records correlate the uses of one credential; it
// cannot be reversed, or recomputed without the secret. A Fingerprinter is
// safe for concurrent use.
type Fingerprinter struct {
	pool sync.Pool // of hash.Hash
}

// NewFingerprinter returns a Fingerprinter keyed by secret, which must be
// at least MinSecretLen bytes. The secret is copied.
func NewFingerprinter(secret []byte) (*Fingerprinter, error) {
	if len(secret) < MinSecretLen {
		return nil, fmt.Errorf("new fingerprinter: secret of %d bytes, want at least %d: %w", len(secret), MinSecretLen, infertrail.ErrInvalid)
	}
	key := append([]byte(fingerprintDomain), secret...)
	f := &Fingerprinter{}
	f.pool.New = func() any { return hmac.New(sha256.New, key) }
	return f, nil
}

// Of returns the fingerprint of value.
func (f *Fingerprinter) Of(value string) string {
	h := f.pool.Get().(hash.Hash)
	h.Reset()
	h.Write([]byte(value))
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	f.pool.Put(h)
	var out [len("hmac-sha256:") + 2*sha256.Size]byte
	n := copy(out[:], "hmac-sha256:")
	hex.Encode(out[n:], sum[:])
	return string(out[:])
}

// LogValue keeps the key out of logs.
func (f *Fingerprinter) LogValue() slog.Value { return slog.StringValue("hmac-sha256 fingerprinter") }
