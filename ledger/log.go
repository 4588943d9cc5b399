package ledger

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/infertrail/infertrail"
	"github.com/infertrail/infertrail/internal/quiet"
	"github.com/infertrail/infertrail/keys"
)

// Config configures a Log. Zero values mean the documented defaults.
type Config struct {
	Store    infertrail.Store // required
	Signer   note.Signer      // required: signs checkpoints
	Verifier note.Verifier    // required: the signer's public half
	Origin   string           // required: the checkpoint origin line; must match the signer's name
	Secret   []byte           // required, ≥ 32 bytes: keys the idempotency MAC and blob ids
	// KEK wraps the data keys that encrypt content (required). It lives
	// outside the store, so that whoever can read the database cannot read
	// content, and erasing a data key erases its content.
	KEK keys.KEK
	// ScopeFields names the erasure scope of content besides its tenant,
	// among infertrail.ScopeFields (default DefaultScopeFields: session), or
	// is ["tenant"] for the tenant alone. Content of one scope, record kind
	// and UTC day shares a data key, and equal content is stored once per
	// data key.
	ScopeFields []string
	// Capture, if set, sees each record before anything of it is hashed or
	// stored: it may rewrite its content and metadata (redaction) and add
	// attributes (which detectors fired, never the values). When it returns
	// store false, the content is committed in the leaf but not stored (the
	// "minimal" capture profile). It must be safe for concurrent use.
	Capture func(r *infertrail.Record) (store bool, err error)

	// MaxBatch is the number of records above which the sequencer stops
	// adding requests to a transaction (default 4096). One request's records
	// always commit together, so a larger request commits alone.
	MaxBatch int
	// MaxWait is how long the sequencer waits for more records before it
	// commits a batch that is not full (default 0: commit as soon as the
	// previous commit is done; records that arrive meanwhile form the next batch).
	MaxWait time.Duration
	// QueueLimit is the number of records that may wait for the sequencer;
	// past it Append fails with ErrPushback (default 65536).
	QueueLimit int
	// CheckpointInterval is the least time between two checkpoints signed by
	// the background signer (default 1s).
	CheckpointInterval time.Duration
	// CommitTimeout bounds one append transaction (default 30s).
	CommitTimeout time.Duration
	// Witnesses are sent each new checkpoint; the cosignatures they
	// answer with are added to the stored checkpoint (the store must be
	// an infertrail.Cosigner).
	Witnesses []Witness

	Limits  infertrail.Limits
	Logger  *slog.Logger // default slog.Default()
	Metrics *Metrics     // optional
	Now     func() time.Time
}

// Log is the tamper-evident log: it seals, sequences and commits records,
// and signs checkpoints. It is safe for concurrent use.
type Log struct {
	cfg      Config
	store    infertrail.Store
	sealer   *sealer
	keys     *writeKeys
	content  *ContentReader
	erasures int64 // the store's erasure count the sequencer last saw; -1 before the first
	verifier note.Verifier
	log      *slog.Logger
	m        *Metrics
	failures quiet.Run // of commits: while the store fails, a line every 10 s
	full     quiet.Run // calls refused for want of space (Room)
	signs    quiet.Run // of the background checkpoints: a signer that is gone fails each second
	// storageFailed is the last commit's failure when its storage failed
	// it (infertrail.ErrStorageFailed); nil once a commit succeeds.
	storageFailed atomic.Pointer[storageFailure]
	// witnessWake, when there are witnesses, tells their goroutine that a
	// new checkpoint is stored.
	witnessWake chan struct{}

	queue   chan *request
	queued  chan struct{} // a token per queued record, bounding the queue
	done    chan struct{}
	stopped chan struct{}
	seqDone chan struct{} // closed when the sequencer has drained
	final   chan struct{} // closed when the final checkpoint is signed (or failed)

	cpMu   sync.Mutex
	latest Checkpoint // latest checkpoint known to this node

	// closeMu orders Close against Append's enqueue, so that no request is
	// queued after the sequencer has drained.
	closeMu sync.RWMutex
}

// Result says what became of one appended record.
type Result struct {
	Seq       int64
	ID        infertrail.UUID
	Duplicate bool // the id was already in the log with the same submitted record
}

// Submission is a record to append, and optionally the canonical JSON of
// the record as it was submitted (infertrail.ParseRecord's second result),
// which lets a retry with the same id be recognised.
type Submission struct {
	Record *infertrail.Record
	Raw    []byte
}

type request struct {
	ctx     context.Context
	items   []*sealed
	results []Result
	err     error
	done    chan struct{}
	// hook, when set, runs inside the transaction after the request's
	// records are appended, before commit; its error rolls everything back.
	// A request with a hook commits in a transaction of its own.
	hook func(ctx context.Context, tx infertrail.AppendTx, results []Result) error
}

// Open starts a log over cfg.Store and its background sequencer and
// checkpoint signer. Close stops them.
func Open(ctx context.Context, cfg Config) (*Log, error) {
	if cfg.Store == nil || cfg.Signer == nil || cfg.Verifier == nil || cfg.KEK == nil {
		return nil, errors.New("open log: Store, Signer, Verifier and KEK are required")
	}
	if err := CheckOrigin(cfg.Origin); err != nil {
		return nil, fmt.Errorf("open log: %w", err)
	}
	if cfg.Signer.Name() != cfg.Origin {
		return nil, fmt.Errorf("open log: the signing key is named %q but the origin is %q; they must match", cfg.Signer.Name(), cfg.Origin)
	}
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = 4096
	}
	if cfg.QueueLimit <= 0 {
		cfg.QueueLimit = 65536
	}
	if cfg.CheckpointInterval <= 0 {
		cfg.CheckpointInterval = time.Second
	}
	if cfg.CommitTimeout <= 0 {
		cfg.CommitTimeout = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	wk, err := newWriteKeys(cfg.KEK, cfg.ScopeFields)
	if err != nil {
		return nil, fmt.Errorf("open log: %w", err)
	}
	s, err := newSealer(cfg.Secret, wk)
	if err != nil {
		return nil, fmt.Errorf("open log: %w", err)
	}
	v := cfg.Verifier
	if err := checkKeyPair(cfg.Signer, v); err != nil {
		return nil, fmt.Errorf("open log: %w", err)
	}
	l := &Log{
		cfg: cfg, store: cfg.Store, sealer: s, keys: wk, content: NewContentReader(cfg.Store, cfg.KEK), erasures: -1,
		verifier: v, log: cfg.Logger, m: cfg.Metrics,
		queue:   make(chan *request, cfg.QueueLimit),
		queued:  make(chan struct{}, cfg.QueueLimit),
		done:    make(chan struct{}),
		stopped: make(chan struct{}),
		seqDone: make(chan struct{}),
		final:   make(chan struct{}),
	}
	if _, err := l.refreshLatest(ctx); err != nil && !errors.Is(err, infertrail.ErrNotFound) {
		return nil, fmt.Errorf("open log: %w", err)
	}
	ws, err := newWitnesses(cfg.Witnesses)
	if err != nil {
		return nil, fmt.Errorf("open log: %w", err)
	}
	if _, ok := cfg.Store.(infertrail.Cosigner); len(ws) > 0 && !ok {
		return nil, errors.New("open log: witnesses are configured, but the store keeps no cosignatures")
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); defer close(l.seqDone); l.sequence() }()
	go func() { defer wg.Done(); l.checkpoints() }()
	if len(ws) > 0 {
		l.witnessWake = make(chan struct{}, 1)
		wg.Add(1)
		go func() { defer wg.Done(); l.witnesses(ws, l.witnessWake) }()
	}
	go func() { wg.Wait(); close(l.stopped) }()
	return l, nil
}

// Close stops accepting records, commits what is queued, signs a final
// checkpoint, and returns. It does not close the store.
func (l *Log) Close() error {
	l.closeMu.Lock()
	select {
	case <-l.done:
	default:
		close(l.done)
	}
	l.closeMu.Unlock()
	<-l.stopped
	return nil
}

// Origin returns the log's origin line.
func (l *Log) Origin() string { return l.cfg.Origin }

// Verifier returns the verifier of the log's checkpoints.
func (l *Log) Verifier() note.Verifier { return l.verifier }

// Store returns the log's store.
func (l *Log) Store() infertrail.Store { return l.store }

// Append seals and commits records, and returns once they are durable: every
// record is in the log, or (on error) none is, even when the error is ctx's
// end. Records whose id is already
// in the log with the same submitted form are not appended again; their
// Result is marked Duplicate. A record whose id is taken by a different
// record fails the whole call with ErrConflict. ErrPushback means the queue
// is full; retry later.
func (l *Log) Append(ctx context.Context, subs []Submission) ([]Result, error) {
	if len(subs) == 0 {
		return nil, nil
	}
	select {
	case <-l.done:
		return nil, fmt.Errorf("append: log is closed: %w", infertrail.ErrUnavailable)
	default:
	}
	if err := l.checkCount(len(subs)); err != nil {
		return nil, err
	}
	items, err := l.seal(ctx, subs)
	if err != nil {
		return nil, err
	}
	return l.submit(ctx, &request{ctx: ctx, items: items, done: make(chan struct{})})
}

// checkCount refuses a call of more records than the queue holds: it
// could never be queued.
func (l *Log) checkCount(n int) error {
	if n > l.cfg.QueueLimit {
		return fmt.Errorf("append: %d records in one call, more than the queue holds (%d): %w", n, l.cfg.QueueLimit, infertrail.ErrTooLarge)
	}
	return nil
}

// seal validates subs, fills in what is unset and seals them for the
// sequencer.
func (l *Log) seal(ctx context.Context, subs []Submission) ([]*sealed, error) {
	now := l.cfg.Now().UTC()
	items := make([]*sealed, len(subs))
	for i, sub := range subs {
		r := sub.Record
		if sub.Raw == nil {
			if err := r.Validate(l.cfg.Limits); err != nil {
				return nil, atIndex(err, i)
			}
		}
		if r.ID.IsZero() {
			r.ID = infertrail.NewUUID()
		}
		if r.ReceivedTime.IsZero() {
			r.ReceivedTime = now
		}
		if r.Time.IsZero() {
			r.Time = r.ReceivedTime
		}
		if r.Tenant == "" {
			r.Tenant = infertrail.DefaultTenant
		}
		if r.Source == "" {
			return nil, atIndex(fmt.Errorf("record has no source: %w", infertrail.ErrInvalid), i)
		}
		id := l.sealer.identify(r, sub.Raw)
		store := true
		if l.cfg.Capture != nil {
			var err error
			if store, err = l.cfg.Capture(r); err != nil {
				return nil, atIndex(fmt.Errorf("capture: %w", err), i)
			}
		}
		s, err := l.sealer.seal(ctx, r, id, store)
		if err != nil {
			return nil, fmt.Errorf("append record %d: %w", i, err)
		}
		if n := len(s.prefix) + len(s.suffix) + 20; n > MaxEntrySize {
			return nil, &infertrail.FieldError{Record: i, Field: "attributes",
				Reason: fmt.Sprintf("the record's metadata takes %d bytes; a leaf holds at most %d: move large values into content", n, MaxEntrySize),
				Err:    infertrail.ErrTooLarge}
		}
		items[i] = s
	}
	return items, nil
}

// submit queues a sealed request and waits for its commit.
func (l *Log) submit(ctx context.Context, req *request) ([]Result, error) {
	// A store that keeps a reserve of free space refuses records once its
	// disk is down to it. An erasure (a request with a hook) and the
	// records of operators' management (infertrail.WithReserve) may write
	// into the reserve: it is kept for them, and what an erasure deletes
	// is room for the records that follow.
	if room, ok := l.store.(infertrail.Room); ok && req.hook == nil && !infertrail.UsesReserve(ctx) {
		if err := room.Room(); err != nil {
			l.m.storageFull()
			l.full.Log(l.log, slog.LevelWarn, "records refused", "err", err)
			return nil, fmt.Errorf("append: %w", err)
		}
		l.full.LogEnd(l.log, "records taken again: the store has room")
	}
	// Reserve queue room for every record, or push back.
	for i := range req.items {
		select {
		case l.queued <- struct{}{}:
		default:
			for range i {
				<-l.queued
			}
			l.m.pushback()
			return nil, fmt.Errorf("append: %d records queued: %w", l.cfg.QueueLimit, infertrail.ErrPushback)
		}
	}
	l.closeMu.RLock()
	select {
	case <-l.done:
		l.closeMu.RUnlock()
		for range req.items {
			<-l.queued
		}
		return nil, fmt.Errorf("append: log is closed: %w", infertrail.ErrUnavailable)
	default:
	}
	l.m.queue(len(req.items))
	l.queue <- req // never blocks: each queued request holds at least one of QueueLimit tokens
	l.closeMu.RUnlock()
	// Once queued, the outcome is waited for even when ctx ends: the
	// sequencer leaves out a request whose ctx has ended by the time its
	// batch is gathered (its error then says so), and one already in a
	// batch commits with it. A caller told of an error can rely on none of
	// its records being in the log; the wait is bounded by CommitTimeout.
	<-req.done
	return req.results, req.err
}

// writeGoForm writes the form that identifies a record built in Go, for
// idempotency as the submitted JSON does for ingest, to w: its leaf without
// the server's fields, then its content, each field as a zero byte, its
// name, a zero byte and its value, in the order of the names. It is
// written after defaults are filled in, so a retry of the same Record is
// recognised. buf holds the leaf; writeGoForm returns it for reuse.
func writeGoForm(w io.Writer, r *infertrail.Record, buf []byte) []byte {
	c := *r
	c.Seq, c.ReceivedTime, c.Commitments = 0, time.Time{}, nil
	buf = c.AppendLeaf(buf[:0])
	w.Write(buf)
	for _, f := range slices.Sorted(maps.Keys(r.Content)) {
		buf = append(append(append(buf[:0], 0), f...), 0)
		w.Write(buf)
		w.Write(r.Content[f])
	}
	return buf
}

// errRefused marks a batch that a request's hook refused: the request's
// own error says why, and it is not a failure of the log.
var errRefused = errors.New("refused")

func atIndex(err error, i int) error {
	var fe *infertrail.FieldError
	if errors.As(err, &fe) {
		fe.Record = i
		return fe
	}
	return fmt.Errorf("record %d: %w", i, err)
}

// sequence is the single writer: it gathers queued requests into batches
// and commits each batch in one store transaction.
func (l *Log) sequence() {
	var carry *request // a request with a hook met while gathering: it goes next, alone
	for {
		var first *request
		if carry != nil {
			first, carry = carry, nil
			l.commit([]*request{first})
			continue
		}
		select {
		case first = <-l.queue:
		case <-l.done:
			// Drain what was queued before Close.
			for {
				select {
				case r := <-l.queue:
					l.commit([]*request{r})
				default:
					return
				}
			}
		}
		if first.hook != nil {
			l.commit([]*request{first})
			continue
		}
		batch := []*request{first}
		n := len(first.items)
		var timer <-chan time.Time
		if l.cfg.MaxWait > 0 {
			timer = time.After(l.cfg.MaxWait)
		}
	gather:
		for n < l.cfg.MaxBatch {
			var r *request
			select {
			case r = <-l.queue:
			default:
				if timer == nil {
					break gather
				}
				select {
				case r = <-l.queue:
				case <-timer:
					break gather
				}
			}
			if r.hook != nil {
				carry = r
				break
			}
			batch = append(batch, r)
			n += len(r.items)
		}
		l.commit(batch)
	}
}

// commit appends a batch in one transaction and answers its requests.
func (l *Log) commit(batch []*request) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), l.cfg.CommitTimeout)
	defer cancel()
	n, size, err := l.appendBatch(ctx, batch, false)
	if errors.Is(err, errLookUp) {
		n, size, err = l.appendBatch(ctx, batch, true)
	}
	records := 0
	for _, r := range batch {
		records += len(r.items)
		for range r.items {
			<-l.queued
		}
		if r.err == nil && err != nil {
			r.err = err
			r.results = nil
		}
		close(r.done)
	}
	if err != nil {
		if !errors.Is(err, errRefused) {
			// A full disk or a database that is down fails every batch
			// alike: the first is logged, then one line every 10 s.
			l.failures.Log(l.log, slog.LevelError, "commit batch", "records", records, "err", err)
			l.m.commitFailed()
		}
		if errors.Is(err, infertrail.ErrStorageFailed) {
			l.storageFailed.Store(&storageFailure{err: err, at: time.Now()})
		}
		return
	}
	if l.storageFailed.Load() != nil {
		l.storageFailed.Store(nil)
	}
	l.failures.LogEnd(l.log, "commits resumed")
	l.m.committed(n, size, time.Since(start))
}

// storageFailure is a commit that the store's storage failed, and when.
type storageFailure struct {
	err error
	at  time.Time
}

// storageFailureFor is how long StorageFailure reports a failed commit
// (a variable for the tests).
var storageFailureFor = 10 * time.Second

// StorageFailure returns the error of the last commit if the store's
// storage failed it (infertrail.ErrStorageFailed: an I/O error, a file
// system gone read-only) less than 10 s ago; nil once a commit succeeds.
// A server reports itself not ready meanwhile. The report expires, so
// that a node a load balancer stopped sending records to is tried again:
// a storage that failed for a moment may take records again, one that
// stays broken fails the next commit.
func (l *Log) StorageFailure() error {
	f := l.storageFailed.Load()
	if f == nil || time.Since(f.at) >= storageFailureFor {
		return nil
	}
	return f.err
}

// txHashes reads tree hashes inside an append transaction: those stored
// before it from the transaction (each read once), and the ones that the
// batch's entries add, computed in order and not yet stored, from hashes.
type txHashes struct {
	ctx    context.Context
	tx     infertrail.AppendTx
	base   int64               // the stored-hash index of the batch's first new hash
	hashes []tlog.Hash         // the batch's new hashes, from base on
	cache  map[int64]tlog.Hash // stored hashes read so far
}

// newTxHashes returns a txHashes for a batch that begins at tree size size.
func newTxHashes(ctx context.Context, tx infertrail.AppendTx, size int64) *txHashes {
	return &txHashes{ctx: ctx, tx: tx, base: tlog.StoredHashCount(size), cache: map[int64]tlog.Hash{}}
}

func (h *txHashes) reader() tlog.HashReader {
	return tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(idx))
		var miss []int64
		for i, x := range idx {
			if x >= h.base {
				if x-h.base >= int64(len(h.hashes)) {
					return nil, fmt.Errorf("stored hash %d is not computed yet", x)
				}
				out[i] = h.hashes[x-h.base]
			} else if c, ok := h.cache[x]; ok {
				out[i] = c
			} else {
				miss = append(miss, x)
			}
		}
		if miss == nil {
			return out, nil
		}
		got, err := h.tx.ReadHashes(h.ctx, miss)
		if err != nil {
			return nil, err
		}
		for i, x := range miss {
			h.cache[x] = got[i]
		}
		for i, x := range idx {
			if x < h.base {
				out[i] = h.cache[x]
			}
		}
		return out, nil
	})
}

// errLookUp asks for a batch to be appended again, looking its ids up
// first: one was already in the log.
var errLookUp = errors.New("an id is already in the log")

// appendBatch appends the records of batch that are not yet in the log, in
// one transaction. Records resent with an id already in the log are
// answered with their sequence number, found by a lookup of every id. A
// store whose ids are unique (infertrail.UniqueIDs) is spared the lookup
// unless lookup is set: there appendBatch fails with errLookUp when an id
// is already in the log, and is called again with lookup set.
func (l *Log) appendBatch(ctx context.Context, batch []*request, lookup bool) (appended int, size int64, err error) {
	tx, err := l.store.BeginAppend(ctx)
	if err != nil {
		return 0, 0, fmt.Errorf("begin append: %w", err)
	}
	defer tx.Rollback()
	size = tx.Size()
	if e := tx.Erasures(); e != l.erasures {
		// Another writer erased data keys, which this node may hold: new
		// content gets new keys. (Content of this batch, sealed already,
		// may use such a key; it is then unreadable, erased with its scope.)
		if l.erasures >= 0 {
			l.keys.forget(nil)
		}
		l.erasures = e
	}

	optimistic := false
	if u, ok := tx.(infertrail.UniqueIDs); ok && !lookup {
		optimistic = u.UniqueIDs()
	}
	existing := map[infertrail.UUID]infertrail.Entry{}
	if !optimistic {
		var ids []infertrail.UUID
		for _, r := range batch {
			for _, it := range r.items {
				ids = append(ids, it.entry.ID)
			}
		}
		if existing, err = tx.Lookup(ctx, ids); err != nil {
			return 0, size, fmt.Errorf("look up ids: %w", err)
		}
		if existing == nil {
			existing = map[infertrail.UUID]infertrail.Entry{}
		}
	}

	var (
		entries []infertrail.Entry
		blobs   []infertrail.Blob
		seen    = map[infertrail.BlobID]bool{}
		next    = size
		hr      = newTxHashes(ctx, tx, size)
	)
	reader := hr.reader()

	for _, r := range batch {
		r.err, r.results = nil, nil // set again when a batch is appended a second time
		if r.ctx.Err() != nil {
			r.err = fmt.Errorf("append: %w", r.ctx.Err())
			continue
		}
		// Resolve duplicates and conflicts first, so a failing request
		// leaves nothing behind. firstAt maps an id repeated within the
		// request to its first position.
		r.results = make([]Result, len(r.items))
		firstAt := make(map[infertrail.UUID]int, len(r.items))
		for i, it := range r.items {
			id := it.entry.ID
			prior, ok := existing[id]
			if !ok {
				if j, dup := firstAt[id]; dup {
					prior, ok = r.items[j].entry, true
					prior.Seq = -1 - int64(j) // resolved below, once position j has a seq
				}
			}
			if !ok {
				firstAt[id] = i
				continue
			}
			if prior.MAC != it.entry.MAC {
				seq := "in the same request"
				if prior.Seq >= 0 {
					seq = fmt.Sprintf("sequence number %d", prior.Seq)
				}
				r.err = &infertrail.FieldError{Record: i, Field: "id",
					Reason: fmt.Sprintf("%s is already the id of a different record (%s)", id, seq),
					Err:    infertrail.ErrConflict}
				break
			}
			r.results[i] = Result{Seq: prior.Seq, ID: id, Duplicate: true}
		}
		if r.err != nil {
			r.results = nil
			continue
		}
		for i, it := range r.items {
			if r.results[i].Duplicate {
				continue
			}
			e := it.entry
			e.Seq = next
			leaf := make([]byte, 0, len(it.prefix)+20+len(it.suffix))
			leaf = append(leaf, it.prefix...)
			leaf = strconv.AppendInt(leaf, next, 10)
			e.Leaf = append(leaf, it.suffix...)
			h, err := tlog.StoredHashes(next, e.Leaf, reader)
			if err != nil {
				return 0, size, fmt.Errorf("hash record %d: %w", next, err)
			}
			hr.hashes = append(hr.hashes, h...)
			entries = append(entries, e)
			for _, b := range it.blobs {
				if !seen[b.ID] {
					seen[b.ID] = true
					blobs = append(blobs, b)
				}
			}
			r.results[i] = Result{Seq: next, ID: e.ID}
			// A later request in the batch with the same id gets this one's seq.
			existing[e.ID] = e
			next++
		}
		for i := range r.results {
			if s := r.results[i].Seq; r.results[i].Duplicate && s < 0 {
				r.results[i].Seq = r.results[-1-s].Seq
			}
		}
	}
	// New data keys commit with the first content they encrypt.
	// (A batch of records of new sessions brings thousands: a set, not a
	// search of the list.)
	var newKeys []*writeKey
	keySeen := map[*writeKey]bool{}
	for _, r := range batch {
		if r.err != nil {
			continue
		}
		for i, it := range r.items {
			if k := it.key; k != nil && !r.results[i].Duplicate && !k.committed.Load() && !keySeen[k] {
				keySeen[k] = true
				newKeys = append(newKeys, k)
			}
		}
	}
	if len(newKeys) > 0 {
		dks := make([]infertrail.DataKey, len(newKeys))
		for i, k := range newKeys {
			dks[i] = k.key
		}
		if err := tx.AddKeys(ctx, dks); err != nil {
			return 0, size, fmt.Errorf("store %d data keys: %w", len(dks), err)
		}
	}
	if len(entries) > 0 {
		if err := tx.Append(ctx, entries, blobs, hr.hashes); err != nil {
			if optimistic && errors.Is(err, infertrail.ErrConflict) {
				return 0, size, errLookUp
			}
			return 0, size, fmt.Errorf("append %d records at %d: %w", len(entries), size, err)
		}
	}
	for _, r := range batch {
		if r.hook != nil && r.err == nil {
			if err := r.hook(ctx, tx, r.results); err != nil {
				r.err, r.results = err, nil
				return 0, size, fmt.Errorf("%w: %w", errRefused, err)
			}
		}
	}
	if err := tx.Commit(); err != nil {
		return 0, size, fmt.Errorf("commit %d records at %d: %w", len(entries), size, err)
	}
	for _, k := range newKeys {
		k.committed.Store(true)
	}
	stored := make([]infertrail.BlobID, len(blobs))
	for i, b := range blobs {
		stored[i] = b.ID
	}
	l.sealer.stored.add(stored)
	return len(entries), next, nil
}

var _ infertrail.Preparer = (*Log)(nil)

// preparedItems is a Log's form of records in an infertrail.Prepared.
type preparedItems struct {
	log   *Log
	items []*sealed
}

// Prepare implements infertrail.Preparer: it seals recs for a later
// RecordPrepared of this log.
func (l *Log) Prepare(ctx context.Context, recs ...*infertrail.Record) (infertrail.Prepared, error) {
	items, err := l.seal(ctx, submissions(recs))
	if err != nil {
		return infertrail.Prepared{}, err
	}
	return infertrail.Prepared{Records: recs, Sealed: &preparedItems{log: l, items: items}}, nil
}

// RecordPrepared implements infertrail.Preparer.
func (l *Log) RecordPrepared(ctx context.Context, prepared []infertrail.Prepared, recs ...*infertrail.Record) ([]int64, error) {
	var items []*sealed
	for i, p := range prepared {
		pi, ok := p.Sealed.(*preparedItems)
		if !ok || pi.log != l {
			return nil, fmt.Errorf("append: prepared records %d were not prepared by this log: %w", i, infertrail.ErrInvalid)
		}
		items = append(items, pi.items...)
	}
	if len(items)+len(recs) == 0 {
		return nil, nil
	}
	if err := l.checkCount(len(items) + len(recs)); err != nil {
		return nil, err
	}
	own, err := l.seal(ctx, submissions(recs))
	if err != nil {
		if fe := (*infertrail.FieldError)(nil); errors.As(err, &fe) {
			fe.Record += len(items) // the index among all the records appended
		}
		return nil, err
	}
	items = append(items, own...)
	res, err := l.submit(ctx, &request{ctx: ctx, items: items, done: make(chan struct{})})
	if err != nil {
		return nil, err
	}
	return seqsOf(res), nil
}

func submissions(recs []*infertrail.Record) []Submission {
	subs := make([]Submission, len(recs))
	for i, r := range recs {
		subs[i].Record = r
	}
	return subs
}

func seqsOf(res []Result) []int64 {
	seqs := make([]int64, len(res))
	for i, r := range res {
		seqs[i] = r.Seq
	}
	return seqs
}

// Record implements infertrail.Recorder: it appends recs as records built
// in Go (see Append) and returns their sequence numbers.
func (l *Log) Record(ctx context.Context, recs ...*infertrail.Record) ([]int64, error) {
	return l.RecordPrepared(ctx, nil, recs...)
}
