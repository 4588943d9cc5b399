package ledger

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// ProofHeader is the first line of a C2SP tlog-proof
// (https://c2sp.org/tlog-proof).
const ProofHeader = "c2sp.org/tlog-proof@v1"

// maxProofHashes bounds the inclusion proof lines of a tlog-proof: a tree of
// at most 2^63 leaves has proofs of at most 63 hashes.
const maxProofHashes = 63

// A Proof is a parsed C2SP tlog-proof (a "receipt"): the index of an entry,
// its inclusion proof and the signed checkpoint it leads to. A Proof from
// ParseProof is not verified; VerifyProof verifies one.
type Proof struct {
	Index      int64            // zero-based index of the entry in the log
	Extra      []byte           // opaque, unauthenticated extra data; nil when the proof has no extra line
	Path       tlog.RecordProof // inclusion proof hashes, from the leaf's sibling up to the root's child
	Checkpoint []byte           // the signed checkpoint note, verbatim
}

// FormatProof formats a tlog-proof for the entry at index with inclusion
// proof proof in the tree of the signed checkpoint cp. At most one extra
// argument may be given: it is written, base64-encoded, on the optional
// extra line (even when empty); with none the line is omitted.
func FormatProof(index int64, proof tlog.RecordProof, cp Checkpoint, extra ...[]byte) ([]byte, error) {
	switch {
	case len(extra) > 1:
		return nil, fmt.Errorf("format proof: %d extra arguments, want at most 1", len(extra))
	case index < 0 || index >= cp.Size:
		return nil, fmt.Errorf("format proof: index %d outside tree of size %d", index, cp.Size)
	case len(cp.Note) == 0:
		return nil, errors.New("format proof: checkpoint has no signed note")
	case len(proof) > maxProofHashes:
		return nil, fmt.Errorf("format proof: %d proof hashes, more than %d", len(proof), maxProofHashes)
	}
	p := Proof{Index: index, Path: proof, Checkpoint: cp.Note}
	if len(extra) == 1 {
		p.Extra = extra[0]
		if p.Extra == nil {
			p.Extra = []byte{}
		}
	}
	return p.Marshal(), nil
}

// Marshal returns the tlog-proof text of p. An Extra that is nil omits the
// extra line; a non-nil empty Extra writes "extra " with no data.
func (p Proof) Marshal() []byte {
	var b bytes.Buffer
	b.WriteString(ProofHeader + "\n")
	if p.Extra != nil {
		b.WriteString("extra " + base64.StdEncoding.EncodeToString(p.Extra) + "\n")
	}
	b.WriteString("index " + strconv.FormatInt(p.Index, 10) + "\n")
	for _, h := range p.Path {
		b.WriteString(base64.StdEncoding.EncodeToString(h[:]) + "\n")
	}
	b.WriteString("\n")
	b.Write(p.Checkpoint)
	return b.Bytes()
}

// ParseProof parses tlog-proof text without verifying it. It accepts only the
// canonical encoding: exact header, canonical base64, canonical decimal
// index, 32-byte hashes and a non-empty checkpoint after the blank line.
func ParseProof(text []byte) (Proof, error) {
	var p Proof
	rest := text
	line := func() (string, bool) {
		i := bytes.IndexByte(rest, '\n')
		if i < 0 {
			return "", false
		}
		l := string(rest[:i])
		rest = rest[i+1:]
		return l, true
	}
	l, ok := line()
	if !ok || l != ProofHeader {
		return Proof{}, malformed("tlog-proof", "first line is not %q", ProofHeader)
	}
	if l, ok = line(); !ok {
		return Proof{}, malformed("tlog-proof", "missing index line")
	}
	if data, found := strings.CutPrefix(l, "extra "); found {
		extra, err := base64.StdEncoding.Strict().DecodeString(data)
		if err != nil || base64.StdEncoding.EncodeToString(extra) != data {
			return Proof{}, malformed("tlog-proof", "extra line is not canonical standard base64")
		}
		p.Extra = extra
		if l, ok = line(); !ok {
			return Proof{}, malformed("tlog-proof", "missing index line")
		}
	}
	idx, found := strings.CutPrefix(l, "index ")
	if !found {
		return Proof{}, malformed("tlog-proof", "line %q is not the index line", l)
	}
	n, err := parseDecimal(idx)
	if err != nil {
		return Proof{}, malformed("tlog-proof", "index %q: %v", idx, err)
	}
	p.Index = n
	for {
		l, ok := line()
		if !ok {
			return Proof{}, malformed("tlog-proof", "no blank line before the checkpoint")
		}
		if l == "" {
			break
		}
		if len(p.Path) == maxProofHashes {
			return Proof{}, malformed("tlog-proof", "more than %d proof hashes", maxProofHashes)
		}
		h, err := parseHash(l)
		if err != nil {
			return Proof{}, malformed("tlog-proof", "proof hash %d: %v", len(p.Path)+1, err)
		}
		p.Path = append(p.Path, h)
	}
	if len(rest) == 0 {
		return Proof{}, malformed("tlog-proof", "no checkpoint")
	}
	p.Checkpoint = bytes.Clone(rest)
	return p, nil
}

// VerifyProof verifies the tlog-proof text for the entry leaf: its checkpoint
// must be signed by v for origin, and its inclusion proof must lead from the
// RFC 6962 hash of leaf at the proof's index to the checkpoint's root. It
// returns the entry's index. The extra data is not authenticated and is not
// returned; use ParseProof to read it.
//
// A proof that does not prove leaf is a *VerificationError.
func VerifyProof(text []byte, leaf []byte, origin string, v note.Verifier) (index int64, err error) {
	p, err := ParseProof(text)
	if err != nil {
		return 0, fmt.Errorf("verify proof: %w", err)
	}
	cp, err := ParseCheckpoint(p.Checkpoint, origin, v)
	if err != nil {
		return 0, fmt.Errorf("verify proof: %w", err)
	}
	if p.Index >= cp.Size {
		return 0, &VerificationError{Index: p.Index, What: "inclusion proof",
			Err: fmt.Errorf("index beyond checkpoint tree size %d", cp.Size)}
	}
	if err := tlog.CheckRecord(p.Path, cp.Size, cp.Root, p.Index, tlog.RecordHash(leaf)); err != nil {
		return 0, &VerificationError{Index: p.Index, What: fmt.Sprintf("inclusion proof in tree of size %d", cp.Size), Err: err}
	}
	return p.Index, nil
}
