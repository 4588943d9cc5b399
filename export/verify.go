package export

import (
	"archive/zip"
	"bytes"
	"cmp"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/infertrail/infertrail"
	"github.com/infertrail/infertrail/ledger"
)

// BundleError is a fault found in a bundle. It names the file at fault
// and, when the fault concerns one record, the record. It matches
// infertrail.ErrInvalid under errors.Is.
type BundleError struct {
	File string // such as "records/41.json"; empty for the archive as a whole
	Seq  int64  // the record at fault, or -1
	Err  error
}

func (e *BundleError) Error() string {
	file := e.File
	if file != "" && strings.ContainsFunc(file, func(r rune) bool { return r <= ' ' || r == '"' || r == '\\' || r > '~' }) {
		file = strconv.Quote(file)
	}
	switch {
	case e.Seq >= 0 && file != "":
		return fmt.Sprintf("record %d (%s): %v", e.Seq, file, e.Err)
	case e.Seq >= 0:
		return fmt.Sprintf("record %d: %v", e.Seq, e.Err)
	case file != "":
		return fmt.Sprintf("%s: %v", file, e.Err)
	}
	return fmt.Sprintf("bundle: %v", e.Err)
}

func (e *BundleError) Unwrap() error { return e.Err }

// Is reports whether target is infertrail.ErrInvalid.
func (e *BundleError) Is(target error) bool { return target == infertrail.ErrInvalid }

// RecordReport is what verification found of one record of a bundle.
type RecordReport struct {
	Seq   int64
	ID    infertrail.UUID
	Kind  infertrail.Kind
	Added string // why the exporter added it (AddedErasure), if it was not asked for
	// Included says that the leaf's inclusion proof leads to the signed
	// checkpoint, and the leaf agrees with the manifest.
	Included bool
	Checked  int     // revealed content fields that match their commitments
	Erased   int     // content fields crypto-shredded before the export
	ErasedBy []int64 // the erasure records that erased them
	Omitted  int     // content fields committed but never stored (capture profile)
	Withheld int     // content fields committed whose content the bundle does not reveal
	Err      error   // the record's first problem, if any
}

// BundleReport is the outcome of VerifyBundle. Problems lists every fault
// found (the first ones, when there are many); a report without problems
// means that every check passed.
type BundleReport struct {
	Origin      string
	VerifierKey string // the verifier key the bundle carries
	// KeyFromBundle says that no key was given, so signatures were checked
	// with the key the bundle carries: that proves the bundle consistent,
	// not that the log's operator signed it.
	KeyFromBundle bool
	// The exporter's statements, from the manifest: not signed.
	Title, Exporter string
	Exported        time.Time
	Content         bool              // the bundle reveals content
	Checkpoint      ledger.Checkpoint // the checkpoint every proof leads to (verified)
	Latest          ledger.Checkpoint // the latest checkpoint at export (verified)
	Consistent      bool              // Checkpoint's tree is proven a prefix of Latest's
	Summary         bool              // summary.html shows exactly what the records say
	Records         []RecordReport
	Problems        []*BundleError
}

// OK reports whether the bundle passed every check.
func (r *BundleReport) OK() bool { return len(r.Problems) == 0 }

// maxProblems is how many problems a verification collects before it stops.
const maxProblems = 50

// VerifyBundle verifies an evidence bundle of size bytes with nothing but
// its bytes: the zip archive's layout and every file's SHA-256 against the
// manifest; each leaf (canonical, and agreeing with the manifest's seq, id
// and kind) and its inclusion proof against the signed checkpoint; the
// signatures of that checkpoint and of the latest one, and the consistency
// proof between them; each revealed content value and salt against the
// leaf's commitment; and that summary.html shows what the records say. It
// refuses files the layout does not name, missing files, duplicated
// entries, odd names and oversized entries, and bounds everything it reads.
//
// With a nil key, signatures are checked with the key the bundle carries,
// and the report says so (KeyFromBundle): only a key obtained from the
// log's operator proves who signed.
//
// The error is nil when every check passed; otherwise it is the first
// *BundleError, naming the file and the record, and the report, which is
// never nil, lists every problem found.
func VerifyBundle(r io.ReaderAt, size int64, key note.Verifier) (*BundleReport, error) {
	v := &bundleVerifier{rep: &BundleReport{}, bad: map[int64]bool{}}
	if err := v.verify(r, size, key); err != nil {
		v.problem(err)
	}
	if len(v.rep.Problems) > 0 {
		return v.rep, v.rep.Problems[0]
	}
	return v.rep, nil
}

// bundleVerifier holds the state of one verification.
type bundleVerifier struct {
	rep    *BundleReport
	files  map[string]*zip.File
	m      Manifest
	cp     ledger.Checkpoint
	bad    map[int64]bool // records with a problem found before their turn
	ended  bool           // too many problems
	budget int
}

// problem records a fault; any error that is not a *BundleError concerns
// the archive.
func (v *bundleVerifier) problem(err error) {
	var be *BundleError
	if !errors.As(err, &be) {
		be = &BundleError{Seq: -1, Err: err}
	}
	if len(v.rep.Problems) == maxProblems {
		v.rep.Problems = append(v.rep.Problems, &BundleError{Seq: -1, Err: fmt.Errorf("stopped after %d problems", maxProblems)})
		v.ended = true
		return
	}
	if !v.ended {
		v.rep.Problems = append(v.rep.Problems, be)
	}
}

func archiveError(format string, args ...any) *BundleError {
	return &BundleError{Seq: -1, Err: fmt.Errorf(format, args...)}
}

func fileError(file string, seq int64, format string, args ...any) *BundleError {
	return &BundleError{File: file, Seq: seq, Err: fmt.Errorf(format, args...)}
}

func (v *bundleVerifier) verify(r io.ReaderAt, size int64, key note.Verifier) error {
	if err := v.open(r, size); err != nil {
		return err
	}
	if err := v.readManifest(); err != nil {
		return err
	}
	if err := v.checkLayout(); err != nil {
		return err
	}
	if err := v.checkCheckpoints(key); err != nil {
		return err
	}
	rows := v.checkRecords()
	if len(v.rep.Problems) == 0 {
		return v.checkSummary(rows)
	}
	return nil
}

// nameKind classifies a file name of the bundle layout and returns the
// record it belongs to (-1 for the bundle's own files). Any other name,
// including every path trick, is not part of a bundle.
func nameKind(name string) (kind string, seq int64, ok bool) {
	switch name {
	case ManifestFile, SummaryFile, CheckpointFile, LatestCheckpointFile, ConsistencyFile:
		return name, -1, true
	}
	for _, k := range []struct{ dir, ext string }{{"records/", ".json"}, {"proofs/", ".proof"}, {"content/", ".json"}} {
		rest, ok := strings.CutPrefix(name, k.dir)
		if !ok {
			continue
		}
		digits, ok := strings.CutSuffix(rest, k.ext)
		if !ok {
			return "", -1, false
		}
		n, err := strconv.ParseInt(digits, 10, 64)
		if err != nil || n < 0 || strconv.FormatInt(n, 10) != digits {
			return "", -1, false
		}
		return k.dir, n, true
	}
	return "", -1, false
}

// sizeLimit is the most bytes a file of the layout may hold.
func sizeLimit(kind string) int64 {
	switch kind {
	case ManifestFile:
		return maxManifestSize
	case SummaryFile:
		return maxSummarySize
	case CheckpointFile, LatestCheckpointFile:
		return maxCheckpointSize
	case ConsistencyFile:
		return maxConsistencySize
	case "records/":
		return maxLeafSize
	case "proofs/":
		return maxProofSize
	}
	return maxContentSize
}

// open reads the archive's directory and refuses what a bundle never holds.
func (v *bundleVerifier) open(r io.ReaderAt, size int64) error {
	var magic [4]byte
	if size < 22 {
		return archiveError("%d bytes: not a zip archive (truncated?)", size)
	}
	if _, err := r.ReadAt(magic[:], 0); err != nil {
		return archiveError("read: %w", err)
	}
	if string(magic[:]) != "PK\x03\x04" {
		return archiveError("does not start with a zip entry: not a bundle, or data was put before it")
	}
	zr, err := zip.NewReader(r, size)
	if err != nil && !errors.Is(err, zip.ErrInsecurePath) {
		return archiveError("not a complete zip archive (truncated or damaged): %w", err)
	}
	if zr.Comment != "" {
		return archiveError("the archive has a comment; a bundle has none")
	}
	if len(zr.File) > 3*MaxBundleRecords+5 {
		return archiveError("%d entries, more than a bundle holds", len(zr.File))
	}
	v.files = make(map[string]*zip.File, len(zr.File))
	for _, f := range zr.File {
		kind, seq, ok := nameKind(f.Name)
		switch {
		case !ok:
			return fileError(f.Name, -1, "not a file of the bundle layout: a file was added")
		case v.files[f.Name] != nil:
			return fileError(f.Name, seq, "the archive holds two entries of this name")
		case f.Method != zip.Store && f.Method != zip.Deflate:
			return fileError(f.Name, seq, "compression method %d; a bundle uses deflate or none", f.Method)
		case f.Flags&0x1 != 0:
			return fileError(f.Name, seq, "encrypted entry")
		case f.Comment != "":
			return fileError(f.Name, seq, "the entry has a comment; a bundle's have none")
		case f.UncompressedSize64 > uint64(sizeLimit(kind)):
			return fileError(f.Name, seq, "%d bytes, more than such a file may hold (%d)", f.UncompressedSize64, sizeLimit(kind))
		}
		v.files[f.Name] = f
	}
	return checkArchive(r, size, zr.File)
}

// Zip record signatures and sizes (APPNOTE.TXT).
const (
	sigLocalHeader    = 0x04034b50
	sigDataDescriptor = 0x08074b50
	sigDirectoryEnd   = 0x06054b50
	sigDirectory64Loc = 0x07064b50
	sigDirectory64End = 0x06064b50
	localHeaderLen    = 30
	directoryEndLen   = 22
	directory64LocLen = 20
	directory64EndLen = 56
	maxLocalExtra     = 256
)

// checkArchive walks the archive from its first byte to its last: each
// entry's local header must agree with the central directory (name,
// method, flags, CRC and sizes) and follow the previous entry with nothing
// between them, and the central directory must follow the last entry and
// end the file. Tools that read local headers (streaming unzip) then see
// the very files this verifier checks, and no bytes are hidden between.
func checkArchive(r io.ReaderAt, size int64, files []*zip.File) error {
	le16 := func(b []byte) uint16 { return binary.LittleEndian.Uint16(b) }
	le32 := func(b []byte) uint32 { return binary.LittleEndian.Uint32(b) }
	le64 := func(b []byte) uint64 { return binary.LittleEndian.Uint64(b) }
	readAt := func(b []byte, off int64) error {
		if off < 0 || off+int64(len(b)) > size {
			return io.ErrUnexpectedEOF
		}
		_, err := r.ReadAt(b, off)
		return err
	}
	// Where the central directory starts, from the end records.
	var end [directoryEndLen]byte
	if err := readAt(end[:], size-directoryEndLen); err != nil || le32(end[:]) != sigDirectoryEnd {
		return archiveError("does not end with the zip directory: data or a comment follows it")
	}
	dirSize, dirOff, dirEnd := uint64(le32(end[12:])), uint64(le32(end[16:])), uint64(size-directoryEndLen)
	if le16(end[10:]) == 0xffff || dirSize == 0xffffffff || dirOff == 0xffffffff {
		var loc [directory64LocLen]byte
		var end64 [directory64EndLen]byte
		if err := readAt(loc[:], size-directoryEndLen-directory64LocLen); err != nil || le32(loc[:]) != sigDirectory64Loc {
			return archiveError("no zip64 directory locator")
		}
		at := le64(loc[8:])
		if at > uint64(size) || readAt(end64[:], int64(at)) != nil || le32(end64[:]) != sigDirectory64End ||
			at+directory64EndLen != uint64(size-directoryEndLen-directory64LocLen) {
			return archiveError("the zip64 directory end is not where the locator says, or is followed by data")
		}
		dirSize, dirOff, dirEnd = le64(end64[40:]), le64(end64[48:]), at
	}
	if dirOff > dirEnd || dirOff+dirSize != dirEnd {
		return archiveError("data between the zip directory and its end record")
	}
	off := int64(0)
	for _, f := range files {
		_, seq, _ := nameKind(f.Name)
		bad := func(format string, args ...any) error {
			return fileError(f.Name, seq, "the zip entry's local header "+format+": zip tools would disagree on what the bundle holds", args...)
		}
		var h [localHeaderLen]byte
		if err := readAt(h[:], off); err != nil || le32(h[:]) != sigLocalHeader {
			return bad("is not where it should be (at byte %d)", off)
		}
		flags, method := le16(h[6:]), le16(h[8:])
		nameLen, extraLen := int64(le16(h[26:])), int64(le16(h[28:]))
		if nameLen != int64(len(f.Name)) || extraLen > maxLocalExtra {
			return bad("has a name of %d bytes and %d bytes of extra data", nameLen, extraLen)
		}
		name := make([]byte, nameLen)
		if err := readAt(name, off+localHeaderLen); err != nil || string(name) != f.Name {
			return bad("names it %q", name)
		}
		if flags != f.Flags || method != f.Method {
			return bad("says flags %#x and method %d, the directory %#x and %d", flags, method, f.Flags, f.Method)
		}
		if flags&0x8 == 0 {
			if le32(h[14:]) != f.CRC32 || uint64(le32(h[18:])) != min(f.CompressedSize64, 0xffffffff) || uint64(le32(h[22:])) != min(f.UncompressedSize64, 0xffffffff) {
				return bad("gives another CRC or size than the directory")
			}
		}
		data := off + localHeaderLen + nameLen + extraLen
		if at, err := f.DataOffset(); err != nil || at != data {
			return bad("does not lead to the entry's data")
		}
		off = data + int64(f.CompressedSize64)
		if flags&0x8 != 0 {
			var d [20]byte
			n := 12
			if f.CompressedSize64 > 0xffffffff || f.UncompressedSize64 > 0xffffffff {
				n = 20
			}
			if err := readAt(d[:4], off); err == nil && le32(d[:]) == sigDataDescriptor {
				off += 4
			}
			if err := readAt(d[:n], off); err != nil || le32(d[:]) != f.CRC32 {
				return bad("is followed by a data descriptor with another CRC than the directory's")
			}
			if n == 12 && (uint64(le32(d[4:])) != f.CompressedSize64 || uint64(le32(d[8:])) != f.UncompressedSize64) ||
				n == 20 && (le64(d[4:]) != f.CompressedSize64 || le64(d[12:]) != f.UncompressedSize64) {
				return bad("is followed by a data descriptor with other sizes than the directory's")
			}
			off += int64(n)
		}
		if uint64(off) > dirOff {
			return bad("runs into the zip directory")
		}
	}
	if uint64(off) != dirOff {
		return archiveError("%d bytes between the last entry and the zip directory", dirOff-uint64(off))
	}
	return nil
}

// read reads a whole file of the bundle, bounded, and checks it against
// its SHA-256 in the manifest (except for the manifest itself).
func (v *bundleVerifier) read(name string, seq int64) ([]byte, error) {
	f := v.files[name]
	if f == nil {
		return nil, fileError(name, seq, "missing from the bundle")
	}
	kind, _, _ := nameKind(name)
	limit := sizeLimit(kind)
	rc, err := f.Open()
	if err != nil {
		return nil, fileError(name, seq, "open: %w", err)
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, limit+1))
	if err != nil {
		return nil, fileError(name, seq, "read: %w", err)
	}
	if int64(len(data)) > limit {
		return nil, fileError(name, seq, "more than %d bytes, more than such a file may hold", limit)
	}
	if name != ManifestFile {
		if err := v.checkHash(name, seq, sha256.Sum256(data)); err != nil {
			return nil, err
		}
	}
	return data, nil
}

func (v *bundleVerifier) checkHash(name string, seq int64, sum [sha256.Size]byte) error {
	if v.m.Files[name] != "sha256:"+hex.EncodeToString(sum[:]) {
		return fileError(name, seq, "its SHA-256 does not match the manifest: the file was altered")
	}
	return nil
}

// readManifest reads and checks manifest.json.
func (v *bundleVerifier) readManifest() error {
	data, err := v.read(ManifestFile, -1)
	if err != nil {
		return err
	}
	// Canonicalize refuses what encoding/json lets pass: duplicate member
	// names, invalid UTF-8, lone surrogates.
	if _, err := infertrail.Canonicalize(data); err != nil {
		return fileError(ManifestFile, -1, "not valid I-JSON: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v.m); err != nil {
		return fileError(ManifestFile, -1, "not a bundle manifest: %w", err)
	}
	m := &v.m
	switch {
	case m.Format != BundleFormat:
		return fileError(ManifestFile, -1, "format %q, want %q", m.Format, BundleFormat)
	case m.Version != BundleVersion:
		return fileError(ManifestFile, -1, "bundle format version %d; this verifier reads version %d", m.Version, BundleVersion)
	case m.Checkpoint.File != CheckpointFile || m.Latest.File != LatestCheckpointFile || m.Consistency != ConsistencyFile || m.Summary != SummaryFile:
		return fileError(ManifestFile, -1, "names files %q, %q, %q, %q; a bundle has %q, %q, %q, %q",
			m.Checkpoint.File, m.Latest.File, m.Consistency, m.Summary, CheckpointFile, LatestCheckpointFile, ConsistencyFile, SummaryFile)
	case len(m.Records) == 0:
		return fileError(ManifestFile, -1, "lists no records")
	case len(m.Records) > MaxBundleRecords:
		return fileError(ManifestFile, -1, "lists %d records, more than %d", len(m.Records), MaxBundleRecords)
	}
	if err := ledger.CheckOrigin(m.Origin); err != nil {
		return fileError(ManifestFile, -1, "origin: %w", err)
	}
	bk, err := note.NewVerifier(m.VerifierKey)
	if err != nil {
		return fileError(ManifestFile, -1, "verifier key %q: %w", m.VerifierKey, err)
	}
	if bk.Name() != m.Origin {
		return fileError(ManifestFile, -1, "the verifier key is named %q, but the log is %q", bk.Name(), m.Origin)
	}
	exported, err := time.Parse(time.RFC3339Nano, m.Exported)
	if err != nil {
		return fileError(ManifestFile, -1, "exported_time %q: %w", m.Exported, err)
	}
	for _, f := range []struct{ name, v string }{{"title", m.Title}, {"exporter", m.Exporter}} {
		if err := checkText(f.v); err != nil {
			return fileError(ManifestFile, -1, "%s: %w", f.name, err)
		}
	}
	for i := range m.Records {
		r := &m.Records[i]
		if i > 0 && r.Seq <= m.Records[i-1].Seq {
			return fileError(ManifestFile, r.Seq, "records are not listed in strictly ascending seq (%d after %d)", r.Seq, m.Records[i-1].Seq)
		}
		switch {
		case r.Seq < 0:
			return fileError(ManifestFile, r.Seq, "negative seq")
		case r.ID.IsZero():
			return fileError(ManifestFile, r.Seq, "no id")
		case !r.Kind.Valid():
			return fileError(ManifestFile, r.Seq, "kind %q is not a record kind", r.Kind)
		case r.Leaf != LeafFile(r.Seq) || r.Proof != ProofFile(r.Seq) || r.Content != "" && r.Content != ContentFile(r.Seq):
			return fileError(ManifestFile, r.Seq, "names files %q, %q, %q; record %d's are %q, %q and %q",
				r.Leaf, r.Proof, r.Content, r.Seq, LeafFile(r.Seq), ProofFile(r.Seq), ContentFile(r.Seq))
		case r.Depth < 0 || r.Depth > maxDepth:
			return fileError(ManifestFile, r.Seq, "depth %d outside 0 to %d", r.Depth, maxDepth)
		case r.Added != "" && (r.Added != AddedErasure || r.Kind != infertrail.KindErasure):
			return fileError(ManifestFile, r.Seq, "added %q to a %s record: only erasure records are added, as %q", r.Added, r.Kind, AddedErasure)
		case r.Content != "" && (!m.Content || r.Added != ""):
			return fileError(ManifestFile, r.Seq, "names a content file, but the bundle reveals no content for this record")
		}
	}
	v.rep.Origin, v.rep.VerifierKey = m.Origin, m.VerifierKey
	v.rep.Title, v.rep.Exporter, v.rep.Exported, v.rep.Content = m.Title, m.Exporter, exported, m.Content
	return nil
}

// checkLayout compares the archive's files, the manifest's hashes and the
// files the manifest's records need: each must be the same set.
func (v *bundleVerifier) checkLayout() error {
	want := map[string]int64{SummaryFile: -1, CheckpointFile: -1, LatestCheckpointFile: -1, ConsistencyFile: -1}
	for _, r := range v.m.Records {
		want[r.Leaf], want[r.Proof] = r.Seq, r.Seq
		if r.Content != "" {
			want[r.Content] = r.Seq
		}
	}
	var fatal error
	fault := func(e *BundleError) {
		if s, ok := want[e.File]; ok && e.Seq >= 0 && s == e.Seq {
			v.bad[e.Seq] = true
			v.problem(e)
		} else if fatal == nil {
			fatal = e
		}
	}
	for _, name := range slices.Sorted(maps.Keys(v.files)) {
		if _, ok := want[name]; !ok && name != ManifestFile {
			_, seq, _ := nameKind(name)
			fault(fileError(name, seq, "not listed in the manifest: a file was added"))
		}
	}
	for _, name := range slices.Sorted(maps.Keys(want)) {
		if v.files[name] == nil {
			fault(fileError(name, want[name], "missing from the bundle"))
		} else if h, ok := v.m.Files[name]; !ok {
			fault(fileError(name, want[name], "the manifest gives no SHA-256 for it"))
		} else if d, ok := strings.CutPrefix(h, "sha256:"); !ok || len(d) != 2*sha256.Size || strings.ToLower(d) != d {
			fault(fileError(ManifestFile, -1, "the SHA-256 of %s is %q, not sha256:<64 lowercase hex digits>", name, h))
		}
	}
	for _, name := range slices.Sorted(maps.Keys(v.m.Files)) {
		if _, ok := want[name]; !ok {
			fault(fileError(ManifestFile, -1, "lists %q, which no record of the bundle needs", name))
		}
	}
	return fatal
}

// checkCheckpoints verifies both signed checkpoints and the consistency
// proof between them.
func (v *bundleVerifier) checkCheckpoints(key note.Verifier) error {
	m := &v.m
	bk, _ := note.NewVerifier(m.VerifierKey) // checked by readManifest
	if key == nil {
		key, v.rep.KeyFromBundle = bk, true
	}
	if key.Name() != m.Origin {
		return fileError(ManifestFile, -1, "the bundle is of log %q, but the key given is for %q", m.Origin, key.Name())
	}
	read := func(mc ManifestCheckpoint, what string) (ledger.Checkpoint, error) {
		data, err := v.read(mc.File, -1)
		if err != nil {
			return ledger.Checkpoint{}, err
		}
		cp, err := ledger.ParseCheckpoint(data, m.Origin, key)
		if err != nil {
			return ledger.Checkpoint{}, fileError(mc.File, -1, "the %s is not signed by the key %s+%08x: %w", what, key.Name(), key.KeyHash(), err)
		}
		if cp.Size != mc.Size || cp.Root.String() != mc.Root {
			return ledger.Checkpoint{}, fileError(ManifestFile, -1, "says the %s has size %d and root %s, but the signed one has size %d and root %s",
				what, mc.Size, mc.Root, cp.Size, cp.Root)
		}
		return cp, nil
	}
	cp, err := read(m.Checkpoint, "checkpoint")
	if err != nil {
		return err
	}
	if !v.rep.KeyFromBundle && (bk.Name() != key.Name() || bk.KeyHash() != key.KeyHash()) {
		return fileError(ManifestFile, -1, "carries the verifier key %s+%08x, not the key given (%s+%08x)", bk.Name(), bk.KeyHash(), key.Name(), key.KeyHash())
	}
	latest, err := read(m.Latest, "latest checkpoint")
	if err != nil {
		return err
	}
	v.cp, v.rep.Checkpoint, v.rep.Latest = cp, cp, latest
	if last := m.Records[len(m.Records)-1].Seq; last >= cp.Size {
		return fileError(ManifestFile, last, "the checkpoint covers %d records; record %d is not in it", cp.Size, last)
	}
	if latest.Size < cp.Size {
		return fileError(LatestCheckpointFile, -1, "size %d, smaller than the checkpoint's %d", latest.Size, cp.Size)
	}
	data, err := v.read(ConsistencyFile, -1)
	if err != nil {
		return err
	}
	old, proof, err := parseConsistency(data)
	if err != nil {
		return fileError(ConsistencyFile, -1, "%w", err)
	}
	if old != cp.Size {
		return fileError(ConsistencyFile, -1, "proves consistency from size %d, but the checkpoint has size %d", old, cp.Size)
	}
	if err := tlog.CheckTree(proof, latest.Size, latest.Root, cp.Size, cp.Root); err != nil {
		return fileError(ConsistencyFile, -1, "does not prove the checkpoint of size %d a prefix of the latest checkpoint of size %d: %w", cp.Size, latest.Size, err)
	}
	v.rep.Consistent = true
	return nil
}

// parseConsistency parses what formatConsistency writes: "old <size>",
// then at most 63 base64 hashes, each line ending in a newline.
func parseConsistency(data []byte) (int64, tlog.TreeProof, error) {
	text := string(data)
	if !strings.HasSuffix(text, "\n") {
		return 0, nil, errors.New("does not end with a newline")
	}
	lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	digits, ok := strings.CutPrefix(lines[0], "old ")
	n, err := strconv.ParseInt(digits, 10, 64)
	if !ok || err != nil || n < 1 || strconv.FormatInt(n, 10) != digits {
		return 0, nil, fmt.Errorf("first line %q is not \"old <size>\"", cut(lines[0], 40))
	}
	if len(lines)-1 > 63 {
		return 0, nil, fmt.Errorf("%d hashes, more than 63", len(lines)-1)
	}
	var proof tlog.TreeProof
	for i, l := range lines[1:] {
		h, err := parseHash(l)
		if err != nil {
			return 0, nil, fmt.Errorf("hash %d: %w", i+1, err)
		}
		proof = append(proof, h)
	}
	return n, proof, nil
}

// parseHash decodes a tree hash in canonical standard base64.
func parseHash(s string) (tlog.Hash, error) {
	h, err := tlog.ParseHash(s)
	if err != nil || h.String() != s {
		return tlog.Hash{}, fmt.Errorf("%q is not the base64 of a 32-byte hash", cut(s, 60))
	}
	return h, nil
}

// checkRecords verifies every record not already found bad, and returns
// the summary rows of those that verified.
func (v *bundleVerifier) checkRecords() []summaryRow {
	v.budget = summaryBudget
	var (
		rows     []summaryRow
		erasures = map[int64]*infertrail.Record{} // verified erasure records
		erased   []int                            // indexes in rep.Records of records with erased content
		leaves   = map[int64]*infertrail.Record{}
	)
	// Records are checked concurrently, a chunk at a time, and their
	// outcomes taken in order.
	type outcome struct {
		rec *infertrail.Record
		cf  *contentFile
		rr  RecordReport
		err error
	}
	const chunk = 512
	for start := 0; start < len(v.m.Records) && !v.ended; start += chunk {
		mrs := v.m.Records[start:min(start+chunk, len(v.m.Records))]
		out := make([]outcome, len(mrs))
		parallel(len(mrs), func(i int) error {
			mr, o := mrs[i], &out[i]
			o.rr = RecordReport{Seq: mr.Seq, ID: mr.ID, Kind: mr.Kind, Added: mr.Added}
			if !v.bad[mr.Seq] {
				o.rec, o.cf, o.err = v.checkRecord(mr, &o.rr)
			}
			return nil
		})
		for i, mr := range mrs {
			if v.ended {
				break
			}
			o := &out[i]
			switch {
			case v.bad[mr.Seq]:
				o.rr.Err = v.firstProblem(mr.Seq)
			case o.err != nil:
				o.rr.Err = o.err
				v.problem(o.err)
			default:
				rows = append(rows, newSummaryRow(o.rec, mr, o.cf, &v.budget))
				if o.rec.Kind == infertrail.KindErasure {
					erasures[o.rec.Seq] = o.rec
				}
				if o.rr.Erased > 0 {
					erased = append(erased, len(v.rep.Records))
					leaves[o.rec.Seq] = o.rec
				}
			}
			v.rep.Records = append(v.rep.Records, o.rr)
		}
	}
	// Content marked erased must have been erased by an erasure record of
	// the bundle whose scope covers the record.
	for _, i := range erased {
		rr := &v.rep.Records[i]
		for _, by := range rr.ErasedBy {
			if err := checkErasure(leaves[rr.Seq], by, erasures[by], v.m.Records); err != nil {
				err = fileError(ContentFile(rr.Seq), rr.Seq, "%w", err)
				rr.Err = err
				v.problem(err)
				break
			}
		}
	}
	return rows
}

// checkErasure checks that the erasure record by, er when the bundle holds
// it verified, could have erased the content of rec: it is an erasure
// record of rec's tenant, its scope covers rec, and a retention erasure is
// of rec's kind.
func checkErasure(rec *infertrail.Record, by int64, er *infertrail.Record, listed []ManifestRecord) error {
	if er == nil {
		i, found := slices.BinarySearchFunc(listed, by, func(r ManifestRecord, seq int64) int { return cmp.Compare(r.Seq, seq) })
		switch {
		case !found:
			return fmt.Errorf("content erased by record %d, which the bundle does not hold", by)
		case listed[i].Kind != infertrail.KindErasure:
			return fmt.Errorf("content erased by record %d, which is of kind %s, not an erasure record", by, listed[i].Kind)
		}
		return fmt.Errorf("content erased by record %d, which did not verify", by)
	}
	if er.Tenant != rec.Tenant {
		return fmt.Errorf("content erased by record %d, an erasure in tenant %q, but the record is of tenant %q", by, er.Tenant, rec.Tenant)
	}
	var scope, kind string
	json.Unmarshal(er.Attributes["erasure.scope"], &scope)
	json.Unmarshal(er.Attributes["erasure.kind"], &kind)
	for _, p := range infertrail.Scope(scope).Pairs() {
		var have string
		switch p[0] {
		case "tenant":
			have = rec.Tenant
		case "session":
			have = rec.SessionID
		case "user":
			have = rec.Actor.OnBehalfOf
		case "actor":
			have = rec.Actor.ID
		case "trace":
			have = rec.TraceID
		default:
			continue
		}
		if have != p[1] {
			return fmt.Errorf("content erased by record %d, whose scope %s does not cover the record (its %s is %q)", by, scope, p[0], have)
		}
	}
	if kind != "" && kind != string(rec.Kind) {
		return fmt.Errorf("content erased by record %d, which erased %s content, but the record is a %s", by, kind, rec.Kind)
	}
	return nil
}

func (v *bundleVerifier) firstProblem(seq int64) error {
	for _, p := range v.rep.Problems {
		if p.Seq == seq {
			return p
		}
	}
	return nil
}

// checkRecord verifies one record: its leaf, its proof and its content.
// It is safe to call concurrently.
func (v *bundleVerifier) checkRecord(mr ManifestRecord, rr *RecordReport) (*infertrail.Record, *contentFile, error) {
	leaf, err := v.read(mr.Leaf, mr.Seq)
	if err != nil {
		return nil, nil, err
	}
	rec, err := infertrail.ParseLeaf(leaf)
	if err != nil {
		return nil, nil, fileError(mr.Leaf, mr.Seq, "not a valid canonical leaf: %w", err)
	}
	switch {
	case rec.Seq != mr.Seq:
		return nil, nil, fileError(mr.Leaf, mr.Seq, "holds the leaf of record %d: leaves were swapped or renamed", rec.Seq)
	case rec.ID != mr.ID:
		return nil, nil, fileError(ManifestFile, mr.Seq, "says id %s, but the leaf says %s", mr.ID, rec.ID)
	case rec.Kind != mr.Kind:
		return nil, nil, fileError(ManifestFile, mr.Seq, "says kind %s, but the leaf says %s", mr.Kind, rec.Kind)
	}
	text, err := v.read(mr.Proof, mr.Seq)
	if err != nil {
		return nil, nil, err
	}
	p, err := ledger.ParseProof(text)
	switch {
	case err != nil:
		return nil, nil, fileError(mr.Proof, mr.Seq, "%w", err)
	case p.Index != mr.Seq:
		return nil, nil, fileError(mr.Proof, mr.Seq, "proves index %d, not %d", p.Index, mr.Seq)
	case p.Extra != nil:
		return nil, nil, fileError(mr.Proof, mr.Seq, "has an extra line; a bundle's proofs have none")
	case !bytes.Equal(p.Checkpoint, v.cp.Note):
		return nil, nil, fileError(mr.Proof, mr.Seq, "leads to another checkpoint than %s", CheckpointFile)
	}
	if err := tlog.CheckRecord(p.Path, v.cp.Size, v.cp.Root, mr.Seq, tlog.RecordHash(leaf)); err != nil {
		return nil, nil, fileError(mr.Proof, mr.Seq, "the leaf %s is not in the tree of the signed checkpoint: %w", mr.Leaf, err)
	}
	rr.Included = true

	reveal := v.m.Content && mr.Added == "" && len(rec.Commitments) > 0
	switch {
	case reveal && mr.Content == "":
		return nil, nil, fileError(ManifestFile, mr.Seq, "the record has committed content, but the bundle, which reveals content, has no content file for it")
	case !reveal && mr.Content != "":
		return nil, nil, fileError(mr.Content, mr.Seq, "a content file for a record whose leaf commits to no content")
	case !reveal:
		rr.Withheld = len(rec.Commitments)
		return rec, nil, nil
	}
	data, err := v.read(mr.Content, mr.Seq)
	if err != nil {
		return nil, nil, err
	}
	cf, err := parseContentFile(data)
	if err != nil {
		return nil, nil, fileError(mr.Content, mr.Seq, "%w", err)
	}
	if cf.Seq != mr.Seq || cf.ID != rec.ID {
		return nil, nil, fileError(mr.Content, mr.Seq, "is the content of record %d (%s)", cf.Seq, cf.ID)
	}
	for _, name := range slices.Sorted(maps.Keys(cf.Fields)) {
		if _, ok := rec.Commitments[name]; !ok {
			return nil, nil, fileError(mr.Content, mr.Seq, "content field %q is not committed in the leaf", name)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(rec.Commitments)) {
		f, ok := cf.Fields[name]
		if !ok {
			return nil, nil, fileError(mr.Content, mr.Seq, "committed content field %q is missing", name)
		}
		switch {
		case f.ErasedBy != nil && f.Salt == "" && f.Value == nil && !f.Omitted:
			rr.Erased++
			if !slices.Contains(rr.ErasedBy, *f.ErasedBy) {
				rr.ErasedBy = append(rr.ErasedBy, *f.ErasedBy)
			}
		case f.Omitted && f.Salt == "" && f.Value == nil && f.ErasedBy == nil:
			rr.Omitted++
		case f.Salt != "" && f.Value != nil && f.ErasedBy == nil && !f.Omitted:
			salt, err := hex.DecodeString(f.Salt)
			if err != nil || len(salt) != infertrail.SaltSize || hex.EncodeToString(salt) != f.Salt {
				return nil, nil, fileError(mr.Content, mr.Seq, "content field %q: the salt is not %d bytes in lowercase hex", name, infertrail.SaltSize)
			}
			// The file is canonical, so the value's bytes are JCS(value).
			if infertrail.Commitment(salt, f.Value) != rec.Commitments[name] {
				return nil, nil, fileError(mr.Content, mr.Seq, "content field %q does not match its commitment in the leaf: the value or its salt was altered", name)
			}
			rr.Checked++
		default:
			return nil, nil, fileError(mr.Content, mr.Seq, "content field %q: want a salt and a value, erased_by, or omitted", name)
		}
	}
	return rec, cf, nil
}

// parseContentFile parses a content file, which must be canonical JSON.
func parseContentFile(data []byte) (*contentFile, error) {
	canon, err := infertrail.Canonicalize(data)
	if err != nil {
		return nil, fmt.Errorf("not valid I-JSON: %w", err)
	}
	if !bytes.Equal(canon, data) {
		return nil, errors.New("not in RFC 8785 canonical form")
	}
	var cf contentFile
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&cf); err != nil {
		return nil, fmt.Errorf("not a content file: %w", err)
	}
	if cf.Fields == nil {
		return nil, errors.New("no fields")
	}
	return &cf, nil
}

// checkSummary renders summary.html again from the verified records and
// compares it with the bundle's.
func (v *bundleVerifier) checkSummary(rows []summaryRow) error {
	f := v.files[SummaryFile]
	rc, err := f.Open()
	if err != nil {
		return fileError(SummaryFile, -1, "open: %w", err)
	}
	defer rc.Close()
	h := sha256.New()
	n, err := io.Copy(h, io.LimitReader(rc, maxSummarySize+1))
	if err != nil {
		return fileError(SummaryFile, -1, "read: %w", err)
	}
	if n > maxSummarySize {
		return fileError(SummaryFile, -1, "more than %d bytes", int64(maxSummarySize))
	}
	var sum [sha256.Size]byte
	if err := v.checkHash(SummaryFile, -1, [sha256.Size]byte(h.Sum(sum[:0]))); err != nil {
		return err
	}
	h.Reset()
	if err := renderSummary(h, newSummaryPage(&v.m, rows)); err != nil {
		return fileError(SummaryFile, -1, "render: %w", err)
	}
	if err := v.checkHash(SummaryFile, -1, [sha256.Size]byte(h.Sum(sum[:0]))); err != nil {
		return fileError(SummaryFile, -1, "does not show what the verified records say: the page was altered")
	}
	v.rep.Summary = true
	return nil
}

// maxReportRows is how many records Write lists one by one.
const maxReportRows = 1000

// String returns the report as Write prints it.
func (r *BundleReport) String() string {
	var b strings.Builder
	r.Write(&b)
	return b.String()
}

// Write prints the report for a person: the verdict first, then what was
// checked, the records, and the problems.
func (r *BundleReport) Write(w io.Writer) error {
	var b strings.Builder
	var checked, erased, omitted, withheld, withContent int
	erasedBy := map[int64]int{}
	for _, rr := range r.Records {
		checked, erased, omitted, withheld = checked+rr.Checked, erased+rr.Erased, omitted+rr.Omitted, withheld+rr.Withheld
		if rr.Checked+rr.Erased+rr.Omitted+rr.Withheld > 0 {
			withContent++
		}
		for _, by := range rr.ErasedBy {
			erasedBy[by]++
		}
	}
	if r.OK() {
		fmt.Fprintf(&b, "OK: %s verified offline against the checkpoint of size %d signed by %s (root %s).\n",
			records(len(r.Records)), r.Checkpoint.Size, r.Origin, r.Checkpoint.Root)
	} else {
		fmt.Fprintf(&b, "FAILED: %v\n", r.Problems[0])
	}
	if r.Title != "" {
		fmt.Fprintf(&b, "Bundle:      %s\n", r.Title)
	}
	if !r.Exported.IsZero() {
		fmt.Fprintf(&b, "Exported:    %s", r.Exported.UTC().Format(time.RFC3339Nano))
		if r.Exporter != "" {
			fmt.Fprintf(&b, " by %s", r.Exporter)
		}
		b.WriteString(" (the exporter's statement, not signed)\n")
	}
	if r.VerifierKey != "" {
		fmt.Fprintf(&b, "Key:         %s\n", r.VerifierKey)
		if r.KeyFromBundle {
			b.WriteString("             taken from the bundle itself: anyone can make a bundle that verifies with its own key;\n" +
				"             pass --key with the log's key obtained from its operator to prove who signed it\n")
		} else {
			b.WriteString("             the key given: the log's operator signed the checkpoints\n")
		}
	}
	if r.Checkpoint.Note != nil {
		fmt.Fprintf(&b, "Checkpoint:  size %d, root %s\n", r.Checkpoint.Size, r.Checkpoint.Root)
	}
	if r.Latest.Note != nil {
		fmt.Fprintf(&b, "Latest:      size %d, root %s", r.Latest.Size, r.Latest.Root)
		if r.Consistent {
			b.WriteString(", consistent with the checkpoint")
		}
		b.WriteString(" (latest at export)\n")
	}
	if r.OK() {
		switch {
		case !r.Content:
			fmt.Fprintf(&b, "Content:     withheld: the bundle holds the commitments only (%s of %s)\n", fields(withheld), records(withContent))
		default:
			fmt.Fprintf(&b, "Content:     revealed: %s matched their commitments\n", fields(checked))
			for _, by := range slices.Sorted(maps.Keys(erasedBy)) {
				fmt.Fprintf(&b, "             content of %s erased by record %d (crypto-shredded; the leaves and proofs verify)\n", records(erasedBy[by]), by)
			}
			if omitted > 0 {
				fmt.Fprintf(&b, "             %s committed but never stored (capture profile)\n", fields(omitted))
			}
			if withheld > 0 {
				fmt.Fprintf(&b, "             %s of added records not revealed\n", fields(withheld))
			}
		}
		if r.Summary {
			fmt.Fprintf(&b, "Summary:     %s shows what the records say\n", SummaryFile)
		}
	}
	if len(r.Records) > 0 {
		b.WriteString("\n")
		tw := tabwriter.NewWriter(&b, 0, 8, 2, ' ', 0)
		fmt.Fprintln(tw, "SEQ\tKIND\tID\tINCLUDED\tCONTENT")
		for i, rr := range r.Records {
			if i == maxReportRows {
				fmt.Fprintf(tw, "…\t\t\t\t(%d more records)\n", len(r.Records)-i)
				break
			}
			inc := "no"
			if rr.Included {
				inc = "yes"
			}
			if rr.Err != nil {
				inc = "FAILED"
			}
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\n", rr.Seq, rr.Kind, rr.ID, inc, rr.contentSummary())
		}
		tw.Flush()
	}
	if len(r.Problems) > 0 {
		fmt.Fprintf(&b, "\nProblems (%d):\n", len(r.Problems))
		for _, p := range r.Problems {
			fmt.Fprintf(&b, "  %v\n", p)
		}
		for _, p := range r.Problems {
			if p.Seq >= 0 {
				fmt.Fprintf(&b, "The first bad record is %d.\n", p.Seq)
				break
			}
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func (rr *RecordReport) contentSummary() string {
	var parts []string
	if rr.Checked > 0 {
		parts = append(parts, fmt.Sprintf("%d checked", rr.Checked))
	}
	if rr.Erased > 0 {
		by := make([]string, len(rr.ErasedBy))
		for i, s := range rr.ErasedBy {
			by[i] = strconv.FormatInt(s, 10)
		}
		parts = append(parts, fmt.Sprintf("%d erased by %s", rr.Erased, strings.Join(by, ",")))
	}
	if rr.Omitted > 0 {
		parts = append(parts, fmt.Sprintf("%d not stored", rr.Omitted))
	}
	if rr.Withheld > 0 {
		parts = append(parts, fmt.Sprintf("%d withheld", rr.Withheld))
	}
	if rr.Added != "" {
		parts = append(parts, "(added: "+rr.Added+")")
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, ", ")
}

func records(n int) string {
	if n == 1 {
		return "1 record"
	}
	return fmt.Sprintf("%d records", n)
}

func fields(n int) string {
	if n == 1 {
		return "1 field"
	}
	return fmt.Sprintf("%d fields", n)
}
