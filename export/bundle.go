package export

import (
	"archive/zip"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/klauspost/compress/flate"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/infertrail/infertrail"
	"github.com/infertrail/infertrail/ledger"
)

// An evidence bundle is a zip archive that an auditor verifies with nothing
// but its bytes and, ideally, the log's verifier key obtained out of band.
// docs/bundles.md describes its layout; in short:
//
//	manifest.json        what the bundle holds, and the SHA-256 of every other file
//	summary.html         a human-readable timeline, re-rendered by the verifier
//	checkpoint           the signed checkpoint every inclusion proof leads to
//	latest-checkpoint    the latest signed checkpoint when the bundle was made
//	consistency          proof that checkpoint is a prefix of latest-checkpoint
//	records/<seq>.json   each record's canonical leaf, byte for byte as logged
//	proofs/<seq>.proof   each record's C2SP tlog-proof to checkpoint
//	content/<seq>.json   with content: each content value and its salt

// Bundle format identification, in manifest.json.
const (
	BundleFormat  = "infertrail-bundle"
	BundleVersion = 1
)

// MaxBundleRecords is the most records one bundle holds, counting the
// erasure records added to explain erased content.
const MaxBundleRecords = 100_000

// The fixed file names of a bundle.
const (
	ManifestFile         = "manifest.json"
	SummaryFile          = "summary.html"
	CheckpointFile       = "checkpoint"
	LatestCheckpointFile = "latest-checkpoint"
	ConsistencyFile      = "consistency"
)

// Bounds on what a bundle's files may hold. The writer refuses to write
// what the verifier would refuse to read.
const (
	maxManifestSize    = 64 << 20
	maxLeafSize        = ledger.MaxEntrySize
	maxCheckpointSize  = 1 << 20
	maxProofSize       = maxCheckpointSize + 8<<10
	maxConsistencySize = 8 << 10
	maxContentSize     = 1<<30 + 1<<20
	maxSummarySize     = 1 << 30
	maxTextLen         = 1024 // title and exporter, in bytes
	maxDepth           = 12   // deepest timeline indentation shown
)

// AddedErasure is the ManifestRecord.Added of an erasure record that the
// bundle holds because it erased content of a record that was asked for.
const AddedErasure = "erasure"

// BundleOptions says what to put in a bundle.
type BundleOptions struct {
	// Seqs are the records to include, in any order; duplicates are
	// ignored. At least one, at most MaxBundleRecords.
	Seqs []int64
	// Content reveals the records' content: each value and its salt, so
	// that the verifier can check them against the leaves' commitments.
	// Without it the bundle holds the commitments only.
	Content bool
	// Title says what the bundle is of, such as "trace 4bf92f35…"; it is
	// shown in the summary. At most 1,024 bytes.
	Title string
	// Depth optionally indents each record in the summary's timeline
	// (0 is a root; depths above 12 are shown as 12).
	Depth map[int64]int
	// Exporter is who exported the bundle (a principal id), recorded in
	// the manifest. At most 1,024 bytes.
	Exporter string
	// VerifierKey is the log's verifier key in note format, as 'infertrail
	// keys show' prints it (required): the bundle carries it so that it can
	// be checked on its own. It must be the key of the log's verifier.
	VerifierKey string
	// Progress, if not nil, is called now and then with the number of
	// records written and the total.
	Progress func(done, total int)
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Manifest is what manifest.json holds. It is not signed: the verifier
// trusts nothing in it that the signed checkpoint does not prove, and says
// which of its statements (title, exporter, export time) are the
// exporter's word.
type Manifest struct {
	Format      string `json:"format"`       // BundleFormat
	Version     int    `json:"version"`      // BundleVersion
	Origin      string `json:"origin"`       // the log's origin
	VerifierKey string `json:"verifier_key"` // the log's verifier key, note format
	// Checkpoint is the signed checkpoint every inclusion proof leads to:
	// the smallest stored one that covers every record of the bundle.
	Checkpoint ManifestCheckpoint `json:"checkpoint"`
	// Latest is the latest signed checkpoint when the bundle was made.
	Latest ManifestCheckpoint `json:"latest_checkpoint"`
	// Consistency names the file that proves Checkpoint's tree a prefix of
	// Latest's (ConsistencyFile).
	Consistency string `json:"consistency"`
	Summary     string `json:"summary"`       // SummaryFile
	Exported    string `json:"exported_time"` // RFC 3339, UTC
	Exporter    string `json:"exporter,omitempty"`
	Title       string `json:"title,omitempty"`
	// Content says whether the bundle reveals content.
	Content bool             `json:"content"`
	Records []ManifestRecord `json:"records"` // ascending seq
	// Files maps the name of every file of the bundle but manifest.json
	// to "sha256:" and the lowercase hex SHA-256 of its bytes.
	Files map[string]string `json:"files"`
}

// ManifestCheckpoint locates a signed checkpoint in a bundle.
type ManifestCheckpoint struct {
	File string `json:"file"`
	Size int64  `json:"size"`
	Root string `json:"root"` // base64, as in the signed note
}

// ManifestRecord lists one record of a bundle.
type ManifestRecord struct {
	Seq     int64           `json:"seq"`
	ID      infertrail.UUID `json:"id"`
	Kind    infertrail.Kind `json:"kind"`
	Leaf    string          `json:"leaf"`              // records/<seq>.json
	Proof   string          `json:"proof"`             // proofs/<seq>.proof
	Content string          `json:"content,omitempty"` // content/<seq>.json, when content is revealed and the record has any
	Depth   int             `json:"depth,omitempty"`   // timeline indentation in the summary
	// Added, when set, says why the exporter added a record that was not
	// asked for: AddedErasure.
	Added string `json:"added,omitempty"`
}

// LeafFile names the file of a bundle that holds record seq's leaf.
func LeafFile(seq int64) string { return "records/" + strconv.FormatInt(seq, 10) + ".json" }

// ProofFile names the file of a bundle that holds record seq's inclusion proof.
func ProofFile(seq int64) string { return "proofs/" + strconv.FormatInt(seq, 10) + ".proof" }

// ContentFile names the file of a bundle that holds record seq's content.
func ContentFile(seq int64) string { return "content/" + strconv.FormatInt(seq, 10) + ".json" }

// contentFile is what content/<seq>.json holds, as RFC 8785 canonical
// JSON, so that each value's bytes are exactly JCS(value).
type contentFile struct {
	Seq    int64                   `json:"seq"`
	ID     infertrail.UUID         `json:"id"`
	Fields map[string]contentField `json:"fields"`
}

// contentField is one committed content field: revealed (Salt and Value),
// erased, or never stored.
type contentField struct {
	Salt     string          `json:"salt,omitempty"` // hex of the 16-byte salt
	Value    json.RawMessage `json:"value,omitempty"`
	ErasedBy *int64          `json:"erased_by,omitempty"` // seq of the erasure record that crypto-shredded it
	Omitted  bool            `json:"omitted,omitempty"`   // committed, but not stored (capture profile)
}

// marshal returns the canonical JSON of f.
func (f *contentFile) marshal() ([]byte, error) {
	b, err := json.Marshal(f)
	if err != nil {
		return nil, err
	}
	return infertrail.Canonicalize(b)
}

// WriteBundle writes an evidence bundle of the records opts.Seqs of l to w,
// and returns its manifest. It reads the log, and signs a checkpoint only
// when no stored one covers the records yet; it appends nothing (the caller
// records the export as an access record). On error, what was written to w
// is not a valid bundle.
//
// With opts.Content, content whose data key was erased is marked erased by
// its erasure record, which the bundle then also holds (ManifestRecord.Added).
func WriteBundle(ctx context.Context, w io.Writer, l *ledger.Log, opts BundleOptions) (Manifest, error) {
	seqs, err := checkOptions(l, &opts)
	if err != nil {
		return Manifest{}, err
	}
	size, err := l.TreeSize(ctx)
	if err != nil {
		return Manifest{}, fmt.Errorf("write bundle: %w", err)
	}
	if last := seqs[len(seqs)-1]; last >= size {
		return Manifest{}, fmt.Errorf("write bundle: record %d: the log has %d records: %w", last, size, infertrail.ErrNotFound)
	}
	now := opts.Now()
	m := Manifest{
		Format: BundleFormat, Version: BundleVersion, Origin: l.Origin(), VerifierKey: opts.VerifierKey,
		Consistency: ConsistencyFile, Summary: SummaryFile,
		Exported: infertrail.FormatTime(now), Exporter: opts.Exporter, Title: opts.Title, Content: opts.Content,
	}
	bw := newBundleWriter(w, now)
	var (
		rows     []summaryRow
		budget   = summaryBudget
		erasures = map[int64]bool{}
		done     int
	)
	progress := func(n int) {
		done += n
		if opts.Progress != nil {
			opts.Progress(done, len(seqs))
		}
	}
	// The records asked for: leaves and content. Each batch's content is
	// read and decrypted concurrently, then written in order.
	err = forEntries(ctx, l.Store(), seqs, func(batch []infertrail.Entry) error {
		prepared := make([]preparedRecord, len(batch))
		err := parallel(len(batch), func(i int) error { return prepared[i].prepare(ctx, l, &batch[i], opts.Content) })
		if err != nil {
			return err
		}
		for i := range batch {
			e, p := &batch[i], &prepared[i]
			mr := ManifestRecord{Seq: e.Seq, ID: p.rec.ID, Kind: p.rec.Kind, Leaf: LeafFile(e.Seq), Proof: ProofFile(e.Seq),
				Depth: min(max(opts.Depth[e.Seq], 0), maxDepth)}
			if err := bw.add(mr.Leaf, e.Leaf); err != nil {
				return err
			}
			if p.cf != nil {
				for _, f := range p.cf.Fields {
					if f.ErasedBy != nil {
						erasures[*f.ErasedBy] = true
					}
				}
				mr.Content = ContentFile(e.Seq)
				if err := bw.add(mr.Content, p.data); err != nil {
					return err
				}
			}
			rows = append(rows, newSummaryRow(p.rec, mr, p.cf, &budget))
			m.Records = append(m.Records, mr)
		}
		return nil
	}, progress)
	if err != nil {
		return Manifest{}, err
	}
	// The erasure records that explain erased content.
	var added []int64
	for by := range erasures {
		if _, found := slices.BinarySearch(seqs, by); !found {
			added = append(added, by)
		}
	}
	slices.Sort(added)
	if n := len(seqs) + len(added); n > MaxBundleRecords {
		return Manifest{}, fmt.Errorf("write bundle: %d records and the %d erasure records of their content: more than %d: %w", len(seqs), len(added), MaxBundleRecords, infertrail.ErrTooLarge)
	}
	err = forEntries(ctx, l.Store(), added, func(batch []infertrail.Entry) error {
		for i := range batch {
			e := &batch[i]
			rec, err := parseStoredLeaf(e)
			if err != nil {
				return err
			}
			if rec.Kind != infertrail.KindErasure {
				return fmt.Errorf("write bundle: content was erased by record %d, but it is a %s record, not an erasure", e.Seq, rec.Kind)
			}
			mr := ManifestRecord{Seq: e.Seq, ID: rec.ID, Kind: rec.Kind, Leaf: LeafFile(e.Seq), Proof: ProofFile(e.Seq), Added: AddedErasure}
			if err := bw.add(mr.Leaf, e.Leaf); err != nil {
				return err
			}
			rows = append(rows, newSummaryRow(rec, mr, nil, &budget))
			m.Records = append(m.Records, mr)
		}
		return nil
	}, nil)
	if err != nil {
		return Manifest{}, err
	}
	slices.SortFunc(m.Records, func(a, b ManifestRecord) int { return cmp.Compare(a.Seq, b.Seq) })
	slices.SortFunc(rows, func(a, b summaryRow) int { return cmp.Compare(a.Seq, b.Seq) })

	// One checkpoint for every proof, and its consistency with the latest.
	last := m.Records[len(m.Records)-1].Seq
	cp, err := coveringCheckpoint(ctx, l, last)
	if err != nil {
		return Manifest{}, err
	}
	latest, err := l.LatestCheckpoint(ctx)
	if err != nil {
		return Manifest{}, fmt.Errorf("write bundle: %w", err)
	}
	if latest.Size < cp.Size {
		latest = cp
	}
	cons, err := l.ConsistencyProof(ctx, cp.Size, latest.Size)
	if err != nil {
		return Manifest{}, fmt.Errorf("write bundle: %w", err)
	}
	m.Checkpoint = ManifestCheckpoint{File: CheckpointFile, Size: cp.Size, Root: cp.Root.String()}
	m.Latest = ManifestCheckpoint{File: LatestCheckpointFile, Size: latest.Size, Root: latest.Root.String()}

	all := make([]int64, len(m.Records))
	for i, r := range m.Records {
		all[i] = r.Seq
	}
	for start := 0; start < len(all); start += proofChunk {
		chunk := all[start:min(start+proofChunk, len(all))]
		proofs, err := proveRecords(ctx, l.Store(), cp.Size, chunk)
		if err != nil {
			return Manifest{}, err
		}
		for i, seq := range chunk {
			text, err := ledger.FormatProof(seq, proofs[i], cp)
			if err != nil {
				return Manifest{}, fmt.Errorf("write bundle: proof of record %d: %w", seq, err)
			}
			if err := bw.add(ProofFile(seq), text); err != nil {
				return Manifest{}, err
			}
		}
		if err := ctx.Err(); err != nil {
			return Manifest{}, fmt.Errorf("write bundle: %w", err)
		}
	}
	if err := bw.add(CheckpointFile, cp.Note); err != nil {
		return Manifest{}, err
	}
	if err := bw.add(LatestCheckpointFile, latest.Note); err != nil {
		return Manifest{}, err
	}
	if err := bw.add(ConsistencyFile, formatConsistency(cp.Size, cons)); err != nil {
		return Manifest{}, err
	}
	sw, err := bw.create(SummaryFile)
	if err != nil {
		return Manifest{}, err
	}
	if err := renderSummary(sw, newSummaryPage(&m, rows)); err != nil {
		return Manifest{}, fmt.Errorf("write bundle: %s: %w", SummaryFile, err)
	}
	bw.finish(SummaryFile, sw)
	m.Files = bw.files
	mj, err := json.MarshalIndent(&m, "", "  ")
	if err != nil {
		return Manifest{}, fmt.Errorf("write bundle: %s: %w", ManifestFile, err)
	}
	if len(mj) >= maxManifestSize {
		return Manifest{}, fmt.Errorf("write bundle: the manifest takes %d bytes, more than a bundle holds: %w", len(mj), infertrail.ErrTooLarge)
	}
	if err := bw.add(ManifestFile, append(mj, '\n')); err != nil {
		return Manifest{}, err
	}
	m.Files = bw.files
	delete(m.Files, ManifestFile)
	if err := bw.zw.Close(); err != nil {
		return Manifest{}, fmt.Errorf("write bundle: %w", err)
	}
	return m, nil
}

// checkOptions validates opts, fills in defaults and returns the sorted,
// distinct sequence numbers.
func checkOptions(l *ledger.Log, opts *BundleOptions) ([]int64, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if len(opts.Seqs) == 0 {
		return nil, fmt.Errorf("write bundle: no records: %w", infertrail.ErrInvalid)
	}
	seqs := slices.Clone(opts.Seqs)
	slices.Sort(seqs)
	seqs = slices.Compact(seqs)
	if len(seqs) > MaxBundleRecords {
		return nil, fmt.Errorf("write bundle: %d records, more than %d: %w", len(seqs), MaxBundleRecords, infertrail.ErrTooLarge)
	}
	if seqs[0] < 0 {
		return nil, fmt.Errorf("write bundle: negative sequence number %d: %w", seqs[0], infertrail.ErrInvalid)
	}
	for _, f := range []struct{ name, v string }{{"title", opts.Title}, {"exporter", opts.Exporter}} {
		if err := checkText(f.v); err != nil {
			return nil, fmt.Errorf("write bundle: %s: %w: %w", f.name, err, infertrail.ErrInvalid)
		}
	}
	if opts.VerifierKey == "" {
		return nil, fmt.Errorf("write bundle: no verifier key: a bundle carries the log's key: %w", infertrail.ErrInvalid)
	}
	v, err := note.NewVerifier(opts.VerifierKey)
	if err != nil {
		return nil, fmt.Errorf("write bundle: verifier key: %w: %w", err, infertrail.ErrInvalid)
	}
	if lv := l.Verifier(); v.Name() != lv.Name() || v.KeyHash() != lv.KeyHash() || v.Name() != l.Origin() {
		return nil, fmt.Errorf("write bundle: verifier key %s+%08x is not the log's key %s+%08x: %w", v.Name(), v.KeyHash(), lv.Name(), lv.KeyHash(), infertrail.ErrInvalid)
	}
	return seqs, nil
}

// checkText checks a title or exporter: UTF-8 without control characters,
// at most maxTextLen bytes.
func checkText(s string) error {
	if len(s) > maxTextLen {
		return fmt.Errorf("%d bytes, more than %d", len(s), maxTextLen)
	}
	if !utf8.ValidString(s) {
		return errors.New("not valid UTF-8")
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return errors.New("contains a control character")
		}
	}
	return nil
}

// parseStoredLeaf parses an entry's leaf and checks that it is the leaf of
// the entry, so that a damaged store never makes a bundle that looks valid.
func parseStoredLeaf(e *infertrail.Entry) (*infertrail.Record, error) {
	rec, err := infertrail.ParseLeaf(e.Leaf)
	if err != nil {
		return nil, fmt.Errorf("write bundle: stored leaf of record %d: %w", e.Seq, err)
	}
	if rec.Seq != e.Seq || rec.ID != e.ID {
		return nil, fmt.Errorf("write bundle: stored leaf of record %d says seq %d, id %s: the store is damaged; run 'infertrail verify'", e.Seq, rec.Seq, rec.ID)
	}
	return rec, nil
}

// entryBatch is how many entries forEntries reads at a time, and gapRead
// the largest gap between two wanted records that one range read spans.
const (
	entryBatch = 512
	gapRead    = 64
)

// forEntries calls fn with the committed entries of seqs (ascending,
// distinct), in order and in batches, reading them in ranges; progress, if
// not nil, is called after each batch with the number of entries it held.
func forEntries(ctx context.Context, r infertrail.EntryReader, seqs []int64, fn func([]infertrail.Entry) error, progress func(int)) error {
	for i := 0; i < len(seqs); {
		j := i + 1
		for j < len(seqs) && j-i < entryBatch && seqs[j]-seqs[j-1] <= gapRead {
			j++
		}
		want := seqs[i:j]
		got := make([]infertrail.Entry, 0, len(want))
		err := r.Entries(ctx, want[0], want[len(want)-1]+1, func(e *infertrail.Entry) error {
			if len(got) < len(want) && e.Seq == want[len(got)] {
				got = append(got, e.Clone())
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("write bundle: read records %d to %d: %w", want[0], want[len(want)-1], err)
		}
		if len(got) < len(want) {
			return fmt.Errorf("write bundle: record %d: %w", want[len(got)], infertrail.ErrNotFound)
		}
		if err := fn(got); err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("write bundle: %w", err)
		}
		if progress != nil {
			progress(len(got))
		}
		i = j
	}
	return nil
}

// preparedRecord is a record read for a bundle: its parsed leaf and, when
// content is revealed, its content file.
type preparedRecord struct {
	rec  *infertrail.Record
	cf   *contentFile
	data []byte // cf's canonical JSON
}

func (p *preparedRecord) prepare(ctx context.Context, l *ledger.Log, e *infertrail.Entry, content bool) error {
	rec, err := parseStoredLeaf(e)
	if err != nil {
		return err
	}
	p.rec = rec
	if !content || len(rec.Commitments) == 0 {
		return nil
	}
	if p.cf, err = readContent(ctx, l, e, rec); err != nil {
		return err
	}
	if p.data, err = p.cf.marshal(); err != nil {
		return fmt.Errorf("write bundle: content of record %d: %w", e.Seq, err)
	}
	if len(p.data) > maxContentSize {
		return fmt.Errorf("write bundle: content of record %d takes %d bytes, more than a bundle holds (%d): %w", e.Seq, len(p.data), maxContentSize, infertrail.ErrTooLarge)
	}
	return nil
}

// readWorkers is how many records' content is read at once.
const readWorkers = 4

// parallel calls fn(0) to fn(n-1) on up to readWorkers goroutines, and
// returns the error of the lowest i that failed; after a failure, calls not
// yet started are skipped.
func parallel(n int, fn func(i int) error) error {
	errs := make([]error, n)
	var (
		next   atomic.Int64
		failed atomic.Bool
		wg     sync.WaitGroup
	)
	for range min(readWorkers, n) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n || failed.Load() {
					return
				}
				if errs[i] = fn(i); errs[i] != nil {
					failed.Store(true)
				}
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// readContent reads the content of a record for its bundle: every field
// the leaf commits to, revealed with its salt, or marked erased or not
// stored. A stored value that does not match its commitment fails.
func readContent(ctx context.Context, l *ledger.Log, e *infertrail.Entry, rec *infertrail.Record) (*contentFile, error) {
	values, err := l.Content(ctx, e)
	var erased *infertrail.ErasedError
	if err != nil && !errors.As(err, &erased) {
		return nil, fmt.Errorf("write bundle: %w", err)
	}
	cf := &contentFile{Seq: e.Seq, ID: e.ID, Fields: make(map[string]contentField, len(rec.Commitments))}
	for field, commitment := range rec.Commitments {
		i := slices.IndexFunc(e.Content, func(r infertrail.ContentRef) bool { return r.Field == field })
		if i < 0 || e.Content[i].Omitted {
			cf.Fields[field] = contentField{Omitted: true}
			continue
		}
		ref := e.Content[i]
		if v, ok := values[field]; ok {
			if infertrail.Commitment(ref.Salt[:], v) != commitment {
				return nil, fmt.Errorf("write bundle: record %d: stored content of field %q does not match its commitment: the store is damaged; run 'infertrail verify'", e.Seq, field)
			}
			cf.Fields[field] = contentField{Salt: hex.EncodeToString(ref.Salt[:]), Value: v}
			continue
		}
		// Erased: ask which erasure record erased this very field.
		one := *e
		one.Content = []infertrail.ContentRef{ref}
		_, err := l.ContentReader().Read(ctx, &one)
		var fe *infertrail.ErasedError
		if !errors.As(err, &fe) {
			return nil, fmt.Errorf("write bundle: record %d: content field %q is missing but not erased (%v)", e.Seq, field, err)
		}
		by := fe.ErasedBy
		cf.Fields[field] = contentField{ErasedBy: &by}
	}
	return cf, nil
}

// coveringCheckpoint returns the smallest stored checkpoint that covers
// record last, signing one if none does yet.
func coveringCheckpoint(ctx context.Context, l *ledger.Log, last int64) (ledger.Checkpoint, error) {
	var found *infertrail.StoredCheckpoint
	errStop := errors.New("stop")
	err := l.Store().Checkpoints(ctx, last, func(c infertrail.StoredCheckpoint) error {
		c.Note = slices.Clone(c.Note)
		found = &c
		return errStop
	})
	if err != nil && !errors.Is(err, errStop) {
		return ledger.Checkpoint{}, fmt.Errorf("write bundle: read checkpoints: %w", err)
	}
	var cp ledger.Checkpoint
	if found != nil {
		cp, err = ledger.ParseCheckpoint(found.Note, l.Origin(), l.Verifier())
		if err == nil && cp.Size != found.Size {
			err = fmt.Errorf("stored as size %d, signed for %d", found.Size, cp.Size)
		}
		if err != nil {
			return ledger.Checkpoint{}, fmt.Errorf("write bundle: checkpoint of size %d: %w", found.Size, err)
		}
	} else if cp, err = l.SignCheckpoint(ctx); err != nil {
		return ledger.Checkpoint{}, fmt.Errorf("write bundle: %w", err)
	}
	if cp.Size <= last {
		return ledger.Checkpoint{}, fmt.Errorf("write bundle: no checkpoint covers record %d (latest: size %d)", last, cp.Size)
	}
	return cp, nil
}

// proofChunk is how many inclusion proofs are built per store read.
const proofChunk = 1024

// proveRecords returns the inclusion proofs of seqs in the tree of size n,
// reading every hash they need in one call: tlog reads the same hash
// indexes whatever the hashes are, so a first pass collects them.
func proveRecords(ctx context.Context, hr infertrail.HashReader, n int64, seqs []int64) ([]tlog.RecordProof, error) {
	var need []int64
	probe := tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		need = append(need, idx...)
		return make([]tlog.Hash, len(idx)), nil
	})
	for _, seq := range seqs {
		if _, err := tlog.ProveRecord(n, seq, probe); err != nil {
			return nil, fmt.Errorf("write bundle: prove record %d in %d: %w", seq, n, err)
		}
	}
	slices.Sort(need)
	need = slices.Compact(need)
	hashes, err := hr.ReadHashes(ctx, need)
	if err != nil {
		return nil, fmt.Errorf("write bundle: read tree hashes: %w", err)
	}
	if len(hashes) != len(need) {
		return nil, fmt.Errorf("write bundle: read %d tree hashes, got %d", len(need), len(hashes))
	}
	read := tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(idx))
		for i, x := range idx {
			j, ok := slices.BinarySearch(need, x)
			if !ok {
				return nil, fmt.Errorf("tree hash %d was not read", x)
			}
			out[i] = hashes[j]
		}
		return out, nil
	})
	proofs := make([]tlog.RecordProof, len(seqs))
	for i, seq := range seqs {
		if proofs[i], err = tlog.ProveRecord(n, seq, read); err != nil {
			return nil, fmt.Errorf("write bundle: prove record %d in %d: %w", seq, n, err)
		}
	}
	return proofs, nil
}

// formatConsistency formats a consistency proof from the tree of size old:
// the line "old <size>", then each hash in base64 on its own line. Followed
// by a blank line and the newer signed checkpoint, it is the body of a
// C2SP tlog-witness add-checkpoint request.
func formatConsistency(old int64, p tlog.TreeProof) []byte {
	var b strings.Builder
	b.WriteString("old " + strconv.FormatInt(old, 10) + "\n")
	for _, h := range p {
		b.WriteString(h.String() + "\n")
	}
	return []byte(b.String())
}

// bundleWriter writes the files of a bundle into a zip archive and keeps
// the SHA-256 of each.
type bundleWriter struct {
	zw    *zip.Writer
	mod   time.Time
	files map[string]string
	h     hash.Hash
}

func newBundleWriter(w io.Writer, now time.Time) *bundleWriter {
	zw := zip.NewWriter(w)
	zw.RegisterCompressor(zip.Deflate, newFastFlate)
	return &bundleWriter{zw: zw, mod: now.UTC().Truncate(time.Second), files: map[string]string{}, h: sha256.New()}
}

// A bundle is many small files: compressing each at deflate's fastest
// level, with writers reused, takes a fraction of the time the standard
// library's default level takes, for a few percent more bytes. Any
// deflate reader reads it.
var flatePool sync.Pool

type pooledFlate struct{ *flate.Writer }

func newFastFlate(w io.Writer) (io.WriteCloser, error) {
	if fw, ok := flatePool.Get().(*flate.Writer); ok {
		fw.Reset(w)
		return pooledFlate{fw}, nil
	}
	fw, err := flate.NewWriter(w, flate.BestSpeed)
	if err != nil {
		return nil, err
	}
	return pooledFlate{fw}, nil
}

func (p pooledFlate) Close() error {
	err := p.Writer.Close()
	flatePool.Put(p.Writer)
	return err
}

// hashingWriter writes to a zip entry and hashes what it writes.
type hashingWriter struct {
	w io.Writer
	h hash.Hash
}

func (hw *hashingWriter) Write(p []byte) (int, error) {
	hw.h.Write(p)
	return hw.w.Write(p)
}

// create starts the file name; finish records its hash.
func (b *bundleWriter) create(name string) (*hashingWriter, error) {
	hd := &zip.FileHeader{Name: name, Method: zip.Deflate, Modified: b.mod}
	hd.SetMode(0o644)
	w, err := b.zw.CreateHeader(hd)
	if err != nil {
		return nil, fmt.Errorf("write bundle: %s: %w", name, err)
	}
	b.h.Reset()
	return &hashingWriter{w: w, h: b.h}, nil
}

func (b *bundleWriter) finish(name string, hw *hashingWriter) {
	var sum [sha256.Size]byte
	b.files[name] = "sha256:" + hex.EncodeToString(hw.h.Sum(sum[:0]))
}

// add writes the file name with data.
func (b *bundleWriter) add(name string, data []byte) error {
	hw, err := b.create(name)
	if err != nil {
		return err
	}
	if _, err := hw.Write(data); err != nil {
		return fmt.Errorf("write bundle: %s: %w", name, err)
	}
	b.finish(name, hw)
	return nil
}
