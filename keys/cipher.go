package keys

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
)

// KeySize is the size in bytes of data keys and of the Keyring's KEKs
// (AES-256).
const KeySize = 32

// Overhead is how many bytes [Cipher.Seal] adds to the plaintext: a 12-byte
// nonce and a 16-byte tag.
const Overhead = 12 + 16

// ErrDecrypt means sealed content did not open: it was altered, cut short,
// sealed under another data key, or given with another aad.
var ErrDecrypt = errors.New("decrypt content: message authentication failed")

// DataKey is a data-encryption key (DEK): KeySize random bytes. Being a
// []byte, it can be passed wherever one is wanted; printed, logged or
// marshalled as text or JSON it shows "[redacted]". Store a data key only
// as [KEK.Wrap] wraps it.
type DataKey []byte

// NewDataKey returns a new random data key.
func NewDataKey() (DataKey, error) {
	k := make(DataKey, KeySize)
	if _, err := rand.Read(k); err != nil {
		return nil, fmt.Errorf("generate data key: %w", err)
	}
	return k, nil
}

// String implements fmt.Stringer without revealing the key.
func (DataKey) String() string { return "[redacted]" }

// GoString implements fmt.GoStringer without revealing the key.
func (DataKey) GoString() string { return "keys.DataKey{[redacted]}" }

// LogValue implements slog.LogValuer without revealing the key.
func (DataKey) LogValue() slog.Value { return slog.StringValue("[redacted]") }

// Format implements fmt.Formatter so that no verb (%x, %d …) reveals the key.
func (k DataKey) Format(f fmt.State, verb rune) { redact(f, verb, k) }

// MarshalText implements encoding.TextMarshaler (and so JSON encoding)
// without revealing the key.
func (DataKey) MarshalText() ([]byte, error) { return []byte("[redacted]"), nil }

// Cipher seals and opens content with AES-256-GCM under one data key, with
// a random 96-bit nonce per message. It is safe for concurrent use.
//
// A random nonce limits one data key to 2^32 sealed messages; erasure
// scopes should be small enough (a session, a tenant's month) to stay far
// below that.
type Cipher struct {
	aead cipher.AEAD
}

// NewCipher returns a Cipher for dek, which must be KeySize bytes. It does
// not keep dek: the caller may clear it.
func NewCipher(dek []byte) (*Cipher, error) {
	if len(dek) != KeySize {
		return nil, fmt.Errorf("new cipher: data key is %d bytes, want %d", len(dek), KeySize)
	}
	b, err := aes.NewCipher(dek)
	if err != nil {
		return nil, fmt.Errorf("new cipher: %w", err)
	}
	a, err := cipher.NewGCMWithRandomNonce(b)
	if err != nil {
		return nil, fmt.Errorf("new cipher: %w", err)
	}
	return &Cipher{aead: a}, nil
}

// Seal encrypts plain, authenticates it with aad (which is not stored),
// and appends nonce (12 bytes) || ciphertext || tag (16 bytes) to dst,
// returning the extended slice: len(plain)+Overhead bytes are added. It
// allocates only when dst lacks the capacity. The appended bytes must not
// overlap plain or aad, except that plain[:0] may be dst.
func (c *Cipher) Seal(dst, plain, aad []byte) []byte {
	return c.aead.Seal(dst, nil, plain, aad)
}

// Open authenticates and decrypts what Seal appended, given the same aad,
// and appends the plaintext to dst. Anything else — altered or short
// input, another data key, another aad — gives [ErrDecrypt].
func (c *Cipher) Open(dst, sealed, aad []byte) ([]byte, error) {
	out, err := c.aead.Open(dst, nil, sealed, aad)
	if err != nil {
		return nil, ErrDecrypt
	}
	return out, nil
}

// String implements fmt.Stringer without revealing the key.
func (*Cipher) String() string { return "keys.Cipher{[redacted]}" }

// GoString implements fmt.GoStringer without revealing the key.
func (c *Cipher) GoString() string { return c.String() }

// LogValue implements slog.LogValuer without revealing the key.
func (*Cipher) LogValue() slog.Value { return slog.StringValue("[redacted]") }

// Format implements fmt.Formatter so that no verb reveals the key.
func (c *Cipher) Format(f fmt.State, verb rune) { redact(f, verb, c) }

// redactor is what the redacting types implement.
type redactor interface {
	String() string
	GoString() string
}

// redact prints v's String, or GoString for %#v, whatever the verb.
func redact(f fmt.State, verb rune, v redactor) {
	if verb == 'v' && f.Flag('#') {
		fmt.Fprint(f, v.GoString())
		return
	}
	fmt.Fprint(f, v.String())
}
