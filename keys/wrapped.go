package keys

import (
	"context"
	"errors"
	"fmt"
)

// KEK wraps and unwraps data keys. Implementations must be safe for
// concurrent use.
//
// Wrap encrypts dek under the KEK that Current names and binds it to aad:
// the caller passes the DEK's id, so a wrapped key copied to another row
// fails to unwrap there. The wrapped form starts with the header that
// [AppendHeader] writes, naming the KEK that wrapped it, so [WrappedBy] can
// read the KEK id of any wrapped key without the KEK.
//
// Unwrap returns the DEK that Wrap was given with the same aad. A wrapped
// key naming a KEK the implementation does not hold (never had, or removed)
// gives an error wrapping [ErrUnknownKEK]; a wrapped key that does not parse,
// was altered, or is given with another aad gives an error wrapping
// [ErrUnwrap]. Other errors (a KMS out of reach, a cancelled ctx) wrap
// neither, so callers can tell "retry later" from "this key is gone".
//
// Current returns the id of the KEK that Wrap uses now. Ids are 1 to 255
// bytes of letters, digits and ". _ : / @ + = -".
type KEK interface {
	Wrap(ctx context.Context, dek, aad []byte) ([]byte, error)
	Unwrap(ctx context.Context, wrapped, aad []byte) ([]byte, error)
	Current() string
}

var (
	// ErrUnknownKEK means a wrapped key names a KEK that is not held: it
	// was never added here, or it was removed and its DEKs are erased.
	ErrUnknownKEK = errors.New("unknown key-encryption key")
	// ErrUnwrap means a wrapped key is malformed, was altered, or was
	// given with another aad than it was wrapped with.
	ErrUnwrap = errors.New("wrapped data key does not authenticate")
)

// wrapVersion is the version byte of the wrapped form.
const wrapVersion = 1

// maxIDLen is the longest KEK id: its length is one byte of the header.
const maxIDLen = 255

// AppendHeader appends to dst the header of a wrapped key wrapped by the KEK
// kekID: a version byte (1), the id's length (one byte) and the id. A [KEK]
// implementation appends its own body (for the [Keyring], nonce and
// ciphertext) after it, and should authenticate the header with the body
// (as additional data, or as a KMS encryption context).
func AppendHeader(dst []byte, kekID string) ([]byte, error) {
	if err := checkID(kekID); err != nil {
		return dst, fmt.Errorf("append wrapped key header: %w", err)
	}
	dst = append(dst, wrapVersion, byte(len(kekID)))
	return append(dst, kekID...), nil
}

// ParseWrapped splits a wrapped key into the id of the KEK that wrapped it
// and the body that KEK's implementation wrote after the header. The body
// is a sub-slice of wrapped; the header is wrapped[:len(wrapped)-len(body)].
// A malformed header, or an empty body, gives an error wrapping [ErrUnwrap].
func ParseWrapped(wrapped []byte) (kekID string, body []byte, err error) {
	if len(wrapped) < 2 {
		return "", nil, fmt.Errorf("parse wrapped key: %d bytes is too short: %w", len(wrapped), ErrUnwrap)
	}
	if wrapped[0] != wrapVersion {
		return "", nil, fmt.Errorf("parse wrapped key: version %d, want %d: %w", wrapped[0], wrapVersion, ErrUnwrap)
	}
	n := int(wrapped[1])
	if len(wrapped) < 2+n {
		return "", nil, fmt.Errorf("parse wrapped key: KEK id of %d bytes is cut short: %w", n, ErrUnwrap)
	}
	id := wrapped[2 : 2+n]
	if err := checkID(string(id)); err != nil {
		return "", nil, fmt.Errorf("parse wrapped key: %w: %w", err, ErrUnwrap)
	}
	body = wrapped[2+n:]
	if len(body) == 0 {
		return "", nil, fmt.Errorf("parse wrapped key: no body after the header: %w", ErrUnwrap)
	}
	return string(id), body, nil
}

// WrappedBy returns the id of the KEK that wrapped a key, read from its
// header. A caller rotating KEKs re-wraps every DEK for which WrappedBy
// differs from [KEK.Current]. A malformed header gives an error wrapping
// [ErrUnwrap].
func WrappedBy(wrapped []byte) (string, error) {
	id, _, err := ParseWrapped(wrapped)
	return id, err
}

// checkID reports whether id is a valid KEK id.
func checkID(id string) error {
	if len(id) == 0 {
		return errors.New("empty KEK id")
	}
	if len(id) > maxIDLen {
		return fmt.Errorf("KEK id of %d bytes, want at most %d", len(id), maxIDLen)
	}
	for i := 0; i < len(id); i++ {
		if !idByte(id[i]) {
			return fmt.Errorf("KEK id has byte %#02x at offset %d; want letters, digits and . _ : / @ + = -", id[i], i)
		}
	}
	return nil
}

func idByte(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	switch c {
	case '.', '_', ':', '/', '@', '+', '=', '-':
		return true
	}
	return false
}
