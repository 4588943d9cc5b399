package ledger

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/infertrail/infertrail"
)

// MaxOriginLen is the longest checkpoint origin, in bytes, that this package
// accepts.
const MaxOriginLen = 255

// maxCheckpointLen bounds the signed checkpoint notes that ParseCheckpoint
// reads, so that a hostile server cannot make a verifier parse megabytes.
const maxCheckpointLen = 1 << 20

// A Checkpoint is a signed tree head of the log, in the C2SP tlog-checkpoint
// format (https://c2sp.org/tlog-checkpoint).
type Checkpoint struct {
	Origin string    // the log's identity, the first line of the note
	Size   int64     // number of leaves in the tree
	Root   tlog.Hash // RFC 6962 root hash of the tree of Size leaves
	Note   []byte    // the full signed note, as served at GET /checkpoint
}

// FormatError reports wire data that does not follow its format. It matches
// infertrail.ErrInvalid under errors.Is.
type FormatError struct {
	Format string // what was being parsed, such as "checkpoint" or "tile path"
	Reason string // what is wrong, naming the line or field
}

func (e *FormatError) Error() string { return "malformed " + e.Format + ": " + e.Reason }

// Is reports whether target is infertrail.ErrInvalid.
func (e *FormatError) Is(target error) bool { return target == infertrail.ErrInvalid }

func malformed(format, reason string, args ...any) *FormatError {
	return &FormatError{Format: format, Reason: fmt.Sprintf(reason, args...)}
}

// CheckOrigin reports whether origin is acceptable as a checkpoint origin and
// signed-note key name: non-empty, at most MaxOriginLen bytes, printable ASCII
// with no spaces and no plus sign.
func CheckOrigin(origin string) error {
	if origin == "" {
		return malformed("origin", "empty")
	}
	if len(origin) > MaxOriginLen {
		return malformed("origin", "%d bytes long, more than %d", len(origin), MaxOriginLen)
	}
	for i := 0; i < len(origin); i++ {
		c := origin[i]
		switch {
		case c == ' ':
			return malformed("origin", "contains a space at byte %d", i)
		case c == '+':
			return malformed("origin", "contains a plus sign at byte %d", i)
		case c < 0x21 || c > 0x7e:
			return malformed("origin", "contains non-printable or non-ASCII byte 0x%02x at byte %d", c, i)
		}
	}
	return nil
}

// GenerateKey generates an Ed25519 signed-note key pair named origin, with
// randomness from crypto/rand. skey is the secret signer key and vkey the
// public verifier key, both in the golang.org/x/mod/sumdb/note encoding.
func GenerateKey(origin string) (skey, vkey string, err error) {
	if err := CheckOrigin(origin); err != nil {
		return "", "", fmt.Errorf("generate key: %w", err)
	}
	skey, vkey, err = note.GenerateKey(rand.Reader, origin)
	if err != nil {
		return "", "", fmt.Errorf("generate key: %w", err)
	}
	return skey, vkey, nil
}

// CheckpointText returns the unsigned checkpoint body
// "<origin>\n<size>\n<base64 root>\n".
func CheckpointText(origin string, size int64, root tlog.Hash) string {
	return origin + "\n" + strconv.FormatInt(size, 10) + "\n" +
		base64.StdEncoding.EncodeToString(root[:]) + "\n"
}

// SignCheckpoint signs the checkpoint for the tree of size leaves with the
// given root hash, and returns it with its signed note.
func SignCheckpoint(s note.Signer, origin string, size int64, root tlog.Hash) (Checkpoint, error) {
	if err := CheckOrigin(origin); err != nil {
		return Checkpoint{}, fmt.Errorf("sign checkpoint: %w", err)
	}
	if size < 0 {
		return Checkpoint{}, fmt.Errorf("sign checkpoint: %w", malformed("checkpoint", "negative size %d", size))
	}
	msg, err := note.Sign(&note.Note{Text: CheckpointText(origin, size, root)}, s)
	if err != nil {
		return Checkpoint{}, fmt.Errorf("sign checkpoint: %w", err)
	}
	return Checkpoint{Origin: origin, Size: size, Root: root, Note: msg}, nil
}

// ParseCheckpoint verifies the signed checkpoint note text with v and parses
// its body. It fails unless v signed the note, the origin line equals origin,
// the size is a canonical non-negative decimal and the root is the base64 of
// exactly 32 bytes. Extension lines are allowed and ignored; signatures by
// other keys (witness cosignatures) are ignored.
//
// Signature failures wrap the errors of golang.org/x/mod/sumdb/note
// (*note.UnverifiedNoteError, *note.InvalidSignatureError); format failures
// are *FormatError.
func ParseCheckpoint(text []byte, origin string, v note.Verifier) (Checkpoint, error) {
	if len(text) > maxCheckpointLen {
		return Checkpoint{}, malformed("checkpoint", "%d bytes long, more than %d", len(text), maxCheckpointLen)
	}
	if v == nil {
		return Checkpoint{}, errors.New("parse checkpoint: nil verifier")
	}
	n, err := note.Open(text, note.VerifierList(v))
	if err != nil {
		return Checkpoint{}, fmt.Errorf("verify checkpoint signature: %w", err)
	}
	cp, err := parseCheckpointText(n.Text)
	if err != nil {
		return Checkpoint{}, err
	}
	if cp.Origin != origin {
		return Checkpoint{}, malformed("checkpoint", "origin line is %q, want %q", cp.Origin, origin)
	}
	cp.Note = bytes.Clone(text)
	return cp, nil
}

// parseCheckpointText parses an unsigned checkpoint body.
func parseCheckpointText(text string) (Checkpoint, error) {
	if !strings.HasSuffix(text, "\n") {
		return Checkpoint{}, malformed("checkpoint", "body does not end with a newline")
	}
	lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	if len(lines) < 3 {
		return Checkpoint{}, malformed("checkpoint", "body has %d lines, want at least 3 (origin, size, root)", len(lines))
	}
	if lines[0] == "" {
		return Checkpoint{}, malformed("checkpoint", "origin line is empty")
	}
	size, err := parseDecimal(lines[1])
	if err != nil {
		return Checkpoint{}, malformed("checkpoint", "size line %q: %v", lines[1], err)
	}
	root, err := parseHash(lines[2])
	if err != nil {
		return Checkpoint{}, malformed("checkpoint", "root line %q: %v", lines[2], err)
	}
	for i, l := range lines[3:] {
		if l == "" {
			return Checkpoint{}, malformed("checkpoint", "extension line %d is empty", i+1)
		}
	}
	return Checkpoint{Origin: lines[0], Size: size, Root: root}, nil
}

// parseDecimal parses a canonical non-negative ASCII decimal int64: digits
// only, no sign, no leading zeros except for "0".
func parseDecimal(s string) (int64, error) {
	if s == "" {
		return 0, errors.New("empty number")
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, fmt.Errorf("non-digit %q", s[i])
		}
	}
	if len(s) > 1 && s[0] == '0' {
		return 0, errors.New("leading zero")
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, errors.New("out of range")
	}
	return n, nil
}

// parseHash decodes the standard base64 of exactly one 32-byte hash.
func parseHash(s string) (tlog.Hash, error) {
	b, err := base64.StdEncoding.Strict().DecodeString(s)
	if err != nil || base64.StdEncoding.EncodeToString(b) != s {
		return tlog.Hash{}, errors.New("not canonical standard base64")
	}
	if len(b) != tlog.HashSize {
		return tlog.Hash{}, fmt.Errorf("%d bytes, want %d", len(b), tlog.HashSize)
	}
	return tlog.Hash(b), nil
}
