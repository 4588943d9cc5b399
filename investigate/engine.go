package investigate

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/infertrail/infertrail"
	"github.com/infertrail/infertrail/internal/cpu"
	"github.com/infertrail/infertrail/internal/quiet"
)

// Store is what the engine reads and writes.
type Store interface {
	infertrail.HashReader
	infertrail.EntryReader
	infertrail.Cursors
	infertrail.Index
	infertrail.FindingStore
}

// Cursor names the engine keeps in the store.
const (
	IndexCursor  = "index"
	DetectCursor = "detect"
)

// Config configures an Engine. Zero values mean the documented defaults.
type Config struct {
	Store Store // required
	// Content reads the content of entries for the full-text index, as
	// ledger.ContentReader.ReadParts does: the decoded content of each blob
	// of their fields that skip does not report, the blobs of fields whose
	// content was erased left out. nil indexes metadata only.
	Content func(ctx context.Context, es []infertrail.Entry, skip func(infertrail.BlobID) bool) (map[infertrail.BlobID][]byte, error)
	// Terms keys the full-text index (required with Content).
	Terms *Terms
	// TermCache bounds, in bytes, the terms of content elements kept so
	// that an element sent again is not read and hashed again (default 32
	// MiB).
	TermCache int
	// Checkpoint returns the latest signed checkpoint, its signature
	// verified, for the verification status of timeline records; nil
	// leaves them unchecked.
	Checkpoint func(ctx context.Context) (size int64, root tlog.Hash, err error)
	Detect     DetectConfig
	// Batch is the most entries indexed or swept in one step (default 2000).
	Batch int
	// Interval is how often Run looks for new entries (default 1s).
	Interval time.Duration
	Logger   *slog.Logger
	Now      func() time.Time
}

// Engine indexes the log, runs the detectors over it, and answers
// investigations. It is safe for concurrent use; several nodes may run
// one each over a shared store.
type Engine struct {
	cfg      Config
	st       Store
	terms    *termCache
	failures quiet.Run // of Run's steps
	growth   growth    // of the log, as the index steps see it
}

// New returns an engine.
func New(cfg Config) (*Engine, error) {
	if cfg.Store == nil {
		return nil, errors.New("new investigation engine: Store is required")
	}
	if cfg.Content != nil && cfg.Terms == nil {
		return nil, errors.New("new investigation engine: Terms is required with Content")
	}
	if err := cfg.Detect.Validate(); err != nil {
		return nil, err
	}
	if cfg.Batch <= 0 {
		cfg.Batch = 2000
	}
	if cfg.Interval <= 0 {
		cfg.Interval = time.Second
	}
	if cfg.TermCache <= 0 {
		cfg.TermCache = 32 << 20
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Engine{cfg: cfg, st: cfg.Store, terms: newTermCache(cfg.TermCache)}, nil
}

// Run indexes and sweeps until ctx is done.
func (e *Engine) Run(ctx context.Context) {
	t := time.NewTicker(e.cfg.Interval)
	defer t.Stop()
	for {
		if err := e.CatchUp(ctx); err != nil && ctx.Err() == nil {
			// A full disk fails every step alike: a line every 10 s.
			e.failures.Log(e.cfg.Logger, slog.LevelWarn, "investigation index", "err", err)
		} else {
			e.failures.LogEnd(e.cfg.Logger, "investigation index resumed")
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// CatchUp indexes every committed entry not yet indexed, then runs the
// detectors over every entry whose window has passed.
func (e *Engine) CatchUp(ctx context.Context) error {
	for {
		n, err := e.IndexStep(ctx)
		if err != nil {
			return err
		}
		if n == 0 {
			break
		}
	}
	for {
		n, err := e.DetectStep(ctx)
		if err != nil {
			return err
		}
		if n == 0 {
			return nil
		}
	}
}

// readEntries returns clones of the committed entries in [from, to).
func (e *Engine) readEntries(ctx context.Context, from, to int64) ([]infertrail.Entry, error) {
	var out []infertrail.Entry
	err := e.st.Entries(ctx, from, to, func(en *infertrail.Entry) error {
		out = append(out, en.Clone())
		return nil
	})
	return out, err
}

// Bounds of an index step: content is read at most contentChunk entries
// at a time, until the step's postings reach maxStepPostings. The stores
// keep a key's postings in a block of 64 records as one row, so a step
// of agent traffic writes about a twentieth as many rows as postings:
// 65,536 postings took 20% off catching up with 20,000 agent records
// (27.0 / 27.9 s against 21.0 / 21.6 s at 16,384, on SQLite), and write
// fewer rows than a step of 16,384 did with a row per posting.
//
// Under heavy ingest — the log growing by more than heavyIngest records a
// second over the last second or so — a step also ends once its postings
// take about busyStepRows rows. A step's commit writes its rows to the
// disk the log's commits sync to, and on SQLite a step of 65,536
// chat-text postings (a row each: the words of unique text) made the
// log's syncs wait up to 12 ms: acknowledgements at 5,000 records/s had a
// p99 of 29–34 ms, 14–17 ms with the shorter steps. Under lighter ingest
// the index keeps up better with the long steps, and catching up once
// ingest stops, or for a read, takes them too. Rows rather than postings,
// so that the steps of agent traffic, whose postings share rows, stay long.
const (
	contentChunk    = 64
	maxStepPostings = 65536
	busyStepRows    = 2048
	heavyIngest     = 2000 // records a second
)

// growth measures how fast the log grows from the tree sizes the index
// steps read, over windows of at least a second.
type growth struct {
	mu    sync.Mutex
	since time.Time // when the current window began
	from  int64     // the tree size then
	rate  float64   // records a second over the last whole window
}

// observe notes the tree size at now and returns the rate of the last
// whole window.
func (g *growth) observe(now time.Time, size int64) float64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.since.IsZero() || size < g.from || now.Before(g.since) {
		g.since, g.from = now, size
	} else if d := now.Sub(g.since); d >= time.Second {
		g.rate = float64(size-g.from) / d.Seconds()
		g.since, g.from = now, size
	}
	return g.rate
}

// blockRows counts the rows postings take in the stores, which keep a
// key's postings for a block of 64 consecutive records in one row: the
// distinct keys of each block. Postings are added in record order.
type blockRows struct {
	n     int
	block int64
	keys  map[string]struct{}
}

func (b *blockRows) add(ps []infertrail.Posting) {
	for _, p := range ps {
		if blk := p.Seq >> 6; b.keys == nil || blk != b.block {
			if b.keys == nil {
				b.keys = make(map[string]struct{}, busyStepRows)
			}
			clear(b.keys)
			b.block = blk
		}
		if _, ok := b.keys[p.Key]; !ok {
			b.keys[p.Key] = struct{}{}
			b.n++
		}
	}
}

// IndexStep indexes the next batch of entries and returns how many it
// indexed (0 when the index is current, or another node took the batch).
func (e *Engine) IndexStep(ctx context.Context) (int, error) {
	from, err := e.st.Cursor(ctx, IndexCursor)
	if err != nil {
		return 0, err
	}
	size, err := e.st.TreeSize(ctx)
	if err != nil || from >= size {
		return 0, err
	}
	to := min(size, from+int64(e.cfg.Batch))
	var rows *blockRows // counted under heavy ingest, unless a read waits
	if e.growth.observe(e.cfg.Now(), size) > heavyIngest && !infertrail.IsForeground(ctx) {
		rows = new(blockRows)
	}
	// A step gathers at most about maxStepPostings postings (2,000
	// records of chat text are about 300,000), and the store writes them
	// behind the log's appends (on SQLite, into a file of its own, so
	// that an append never waits for the index's commit). Entries and their
	// content are read a chunk at a time, so that what the step does not
	// reach is not read.
	var (
		postings []infertrail.Posting
		sets     postingSets
	)
	full := func() bool {
		return len(postings) >= maxStepPostings || rows != nil && rows.n >= busyStepRows
	}
	next := from // the step indexes [from, next)
	for next < to && !full() {
		// Read about as many entries as the step has room for, judged
		// by the postings (and rows) per entry so far (64 to begin
		// with), so that content the step does not reach is not
		// decrypted twice.
		want := maxStepPostings / 64
		if rows != nil {
			want = busyStepRows / 64
		}
		if done := int(next - from); done > 0 && len(postings) > 0 {
			want = (maxStepPostings-len(postings))/(len(postings)/done+1) + 1
			if rows != nil {
				want = min(want, (busyStepRows-rows.n)/(rows.n/done+1)+1)
			}
		}
		hi := min(to, next+int64(min(max(want, 1), contentChunk)))
		chunk, err := e.readEntries(ctx, next, hi)
		if err != nil {
			return 0, fmt.Errorf("index entries %d to %d: %w", next, hi, err)
		}
		if len(chunk) == 0 {
			// Records missing from the store: verification reports them,
			// and the index goes past them.
			next = hi
			continue
		}
		var contents [][][]elementTerms
		if e.cfg.Content != nil {
			var err error
			if contents, err = e.contentTerms(ctx, chunk); err != nil {
				return 0, fmt.Errorf("index content of records %d to %d: %w", chunk[0].Seq, chunk[len(chunk)-1].Seq+1, err)
			}
		}
		for i := range chunk {
			if full() {
				break
			}
			cpu.Defer(ctx)
			en := &chunk[i]
			next = en.Seq + 1
			r, err := infertrail.ParseLeaf(en.Leaf)
			if err != nil {
				// Verification reports it; the index skips what it cannot read.
				e.cfg.Logger.Warn("index: record does not parse", "seq", en.Seq, "err", err)
				continue
			}
			start := len(postings)
			for _, k := range LeafPostings(r) {
				postings = append(postings, infertrail.Posting{Key: k, Seq: en.Seq})
			}
			if contents != nil && len(en.Content) > 0 {
				postings = appendContentPostings(postings, en, contents[i], &sets)
			}
			if rows != nil {
				rows.add(postings[start:])
			}
		}
	}
	err = e.st.AddPostings(ctx, IndexCursor, from, next, postings)
	if errors.Is(err, infertrail.ErrConflict) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	return int(next - from), nil
}

// contentTerms returns the terms of each content element of chunk's
// entries, by entry and field (nil for a field not read: erased, or never
// stored), from the cache, or from content read and hashed now.
func (e *Engine) contentTerms(ctx context.Context, chunk []infertrail.Entry) ([][][]elementTerms, error) {
	known := map[infertrail.BlobID]elementTerms{}
	for i := range chunk {
		for _, ref := range chunk[i].Content {
			for _, id := range ref.Blobs {
				if et, ok := e.terms.get(id); ok {
					known[id] = et
				}
			}
		}
	}
	parts, err := e.cfg.Content(ctx, chunk, func(id infertrail.BlobID) bool {
		_, ok := known[id]
		return ok
	})
	if err != nil {
		return nil, err
	}
	k := e.cfg.Terms.keyer()
	for id, p := range parts {
		cpu.Defer(ctx) // an element's words: tens of microseconds each
		et := k.element(p)
		e.terms.put(id, et)
		known[id] = et
	}
	out := make([][][]elementTerms, len(chunk))
	for i := range chunk {
		out[i] = make([][]elementTerms, len(chunk[i].Content))
	fields:
		for j, ref := range chunk[i].Content {
			if ref.Omitted {
				continue
			}
			els := make([]elementTerms, len(ref.Blobs))
			for b, id := range ref.Blobs {
				et, ok := known[id]
				if !ok {
					continue fields // erased
				}
				els[b] = et
			}
			out[i][j] = els
		}
	}
	return out, nil
}

// subject is one group to examine: a tenant's trace, session or single
// record.
type subject struct {
	tenant string
	key    string
}

// subjectsOf returns the groups an entry belongs to.
func subjectsOf(en *infertrail.Entry) []subject {
	var out []subject
	if en.TraceID != "" {
		out = append(out, subject{en.Tenant, infertrail.IndexKey(infertrail.IndexTrace, en.TraceID)})
	}
	if en.SessionID != "" {
		out = append(out, subject{en.Tenant, infertrail.IndexKey(infertrail.IndexSession, en.SessionID)})
	}
	if len(out) == 0 {
		out = append(out, subject{en.Tenant, "record=" + strconv.FormatInt(en.Seq, 10)})
	}
	return out
}

// DetectStep runs the detectors over the groups of the next indexed
// entries whose window has passed, and returns how many entries it swept.
func (e *Engine) DetectStep(ctx context.Context) (int, error) {
	from, err := e.st.Cursor(ctx, DetectCursor)
	if err != nil {
		return 0, err
	}
	indexed, err := e.st.Cursor(ctx, IndexCursor)
	if err != nil || from >= indexed {
		return 0, err
	}
	now := e.cfg.Now()
	cutoff := now.Add(-e.cfg.Detect.window()).UnixNano()
	entries, err := e.readEntries(ctx, from, min(indexed, from+int64(e.cfg.Batch)))
	if err != nil {
		return 0, err
	}
	var subjects []subject
	seen := map[subject]bool{}
	to := from
	for i := range entries {
		if entries[i].Received > cutoff {
			break
		}
		to = entries[i].Seq + 1
		if entries[i].Kind == infertrail.KindAccess || entries[i].Kind == infertrail.KindErasure {
			continue
		}
		for _, s := range subjectsOf(&entries[i]) {
			if !seen[s] {
				seen[s] = true
				subjects = append(subjects, s)
			}
		}
	}
	if to == from {
		return 0, nil
	}
	var findings []infertrail.Finding
	for _, s := range subjects {
		fs, err := e.detect(ctx, s, now)
		if err != nil {
			return 0, err
		}
		findings = append(findings, fs...)
	}
	if len(findings) > 0 {
		if err := e.st.AddFindings(ctx, findings); err != nil {
			return 0, err
		}
	}
	err = e.st.AdvanceCursor(ctx, DetectCursor, from, to)
	if errors.Is(err, infertrail.ErrConflict) {
		return 0, nil // another node swept it; the findings it stored are the same
	}
	if err != nil {
		return 0, err
	}
	return int(to - from), nil
}

// detect runs the detectors over one subject.
func (e *Engine) detect(ctx context.Context, s subject, now time.Time) ([]infertrail.Finding, error) {
	g, err := e.group(ctx, s.tenant, s.key)
	if err != nil {
		return nil, err
	}
	return Detect(ctx, g, e.lookup, e.cfg.Detect, now)
}

// DetectSubject runs the detectors over a subject of a tenant now, stores
// what they find, and returns it. window, if positive, replaces the
// configured window (an investigator who does not want to wait).
func (e *Engine) DetectSubject(ctx context.Context, tenant, key string, window time.Duration) ([]infertrail.Finding, error) {
	cfg := e.cfg.Detect
	if window > 0 {
		cfg.Window = window
	}
	g, err := e.group(ctx, tenant, key)
	if err != nil {
		return nil, err
	}
	fs, err := Detect(ctx, g, e.lookup, cfg, e.cfg.Now())
	if err != nil || len(fs) == 0 {
		return fs, err
	}
	if err := e.st.AddFindings(ctx, fs); err != nil {
		return nil, err
	}
	return fs, nil
}

// group reads the records of a subject of one tenant.
func (e *Engine) group(ctx context.Context, tenant, key string) (*Group, error) {
	var recs []*infertrail.Record
	if f, v, _ := infertrail.SplitIndexKey(key); f == "record" {
		seq, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("subject %q: %w", key, infertrail.ErrInvalid)
		}
		en, err := infertrail.ReadEntry(ctx, e.st, seq)
		if err != nil {
			return nil, err
		}
		if r, err := infertrail.ParseLeaf(en.Leaf); err == nil && en.Tenant == tenant {
			recs = append(recs, r)
		}
		return NewGroup(key, recs), nil
	}
	recs, err := e.lookup(ctx, tenant, nil, key)
	if err != nil {
		return nil, err
	}
	return NewGroup(key, recs), nil
}

// lookup is the detectors' Lookup over the index.
func (e *Engine) lookup(ctx context.Context, tenant string, kinds []infertrail.Kind, keys ...string) ([]*infertrail.Record, error) {
	var recs []*infertrail.Record
	q := infertrail.Query{Tenants: []string{tenant}, Kinds: kinds, Keys: keys, Limit: infertrail.MaxQueryLimit}
	err := e.st.Query(ctx, q, func(en *infertrail.Entry) error {
		r, err := infertrail.ParseLeaf(en.Leaf)
		if err == nil {
			recs = append(recs, r)
		}
		return nil
	})
	slices.Reverse(recs)
	return recs, err
}

// Lag returns how many committed entries the index and the detectors have
// still to process.
func (e *Engine) Lag(ctx context.Context) (index, detect int64, err error) {
	size, err := e.st.TreeSize(ctx)
	if err != nil {
		return 0, 0, err
	}
	i, err := e.st.Cursor(ctx, IndexCursor)
	if err != nil {
		return 0, 0, err
	}
	d, err := e.st.Cursor(ctx, DetectCursor)
	if err != nil {
		return 0, 0, err
	}
	return size - i, size - d, nil
}

// Terms returns the full-text term hasher, or nil when content is not
// indexed.
func (e *Engine) Terms() *Terms { return e.cfg.Terms }

// IndexCurrent indexes what is committed but not indexed yet, in at most
// steps batches, and returns how many entries the index then covers. A
// read calls it so that it sees what was committed before it. Its writes
// do not wait for gaps between the log's appends (infertrail.Foreground);
// a read during a long burst of ingest may still see the index behind the
// log.
func (e *Engine) IndexCurrent(ctx context.Context, steps int) (int64, error) {
	ctx = infertrail.Foreground(ctx)
	for range steps {
		n, err := e.IndexStep(ctx)
		if err != nil {
			return 0, err
		}
		if n == 0 {
			break
		}
	}
	return e.st.Cursor(ctx, IndexCursor)
}
