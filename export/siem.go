package export

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"regexp"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/infertrail/infertrail"
)

// Event is one record or finding on its way to a SIEM.
type Event struct {
	Seq    int64     // the record's sequence number, or the finding's N
	ID     string    // the record's or the finding's id
	Kind   string    // the record's kind, or "finding"
	Time   time.Time // when it happened (observed time; a finding's detection time)
	Tenant string
	// Severity is the RFC 5424 severity: 6 (informational) for records; 5,
	// 4 or 2 for low, medium and high findings.
	Severity int
	JSON     []byte // the OCSF event
}

// Sink delivers events to a SIEM. Send is called by one goroutine at a time.
type Sink interface {
	// Send delivers events in order. It returns nil only once the receiver
	// has them all, as far as its protocol can tell: for HTTP when the
	// receiver answered 2xx, for syslog once the frames are written and
	// flushed to the socket. After an error some events may have arrived:
	// the stream sends them all again (at-least-once delivery). Send
	// bounds every network operation with a timeout and returns when ctx
	// is done.
	Send(ctx context.Context, events []Event) error
	// Close releases the sink's connections.
	Close() error
}

// StreamSource is what a SIEM stream reads: the log's committed entries
// and the cursor that remembers how far the stream got. A source that also
// has the method Findings of infertrail.FindingStore can stream findings.
type StreamSource interface {
	// TreeSize returns the number of committed records.
	TreeSize(ctx context.Context) (int64, error)
	// Entries calls fn for each committed entry with start <= Seq < end,
	// in order; fn must not call back into the source.
	Entries(ctx context.Context, start, end int64, fn func(*infertrail.Entry) error) error
	infertrail.Cursors
}

// RetryAfterError is an error from a receiver that said when to try again.
type RetryAfterError struct {
	After time.Duration
	Err   error
}

func (e *RetryAfterError) Error() string { return e.Err.Error() }
func (e *RetryAfterError) Unwrap() error { return e.Err }

// StreamConfig configures a Stream. Zero values mean the documented defaults.
type StreamConfig struct {
	// Name names the stream (required): letters, digits, '.', '_' and '-',
	// at most 64. Its cursor is "siem:<name>", and its findings cursor
	// "siem:<name>:findings": renaming a stream starts it over.
	Name   string
	Source StreamSource // required
	Sink   Sink         // required
	// Records streams the log's records; Findings streams the detectors'
	// findings (the source must keep findings). At least one is needed.
	Records  bool
	Findings bool
	// Kinds and Tenants, when not empty, keep only the records of these
	// kinds and tenants (and the findings of these tenants). Records
	// skipped by a filter are passed over by the cursor.
	Kinds   []infertrail.Kind
	Tenants []string
	// StartAtEnd makes a stream that has never delivered anything start at
	// the end of the log instead of its first record.
	StartAtEnd bool
	// BatchSize is the most events per Send (default 500). MaxWait is how
	// long a record waits for a batch to fill before a smaller batch is
	// sent (default 1s). Poll is how often the log is checked for new
	// records when the stream has caught up (default 500ms).
	BatchSize int
	MaxWait   time.Duration
	Poll      time.Duration
	// MinBackoff and MaxBackoff bound the wait between retries of a failed
	// Send, which doubles from one to the other, with jitter (defaults
	// 500ms and 1m). A stream never skips an event: it retries until the
	// receiver takes it or the stream stops.
	MinBackoff time.Duration
	MaxBackoff time.Duration
	OCSF       OCSFConfig
	Logger     *slog.Logger // default slog.Default()
	Metrics    *SIEMMetrics // optional
}

var streamName = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// CursorName returns the name of a stream's record cursor.
func CursorName(stream string) string { return "siem:" + stream }

// FindingsCursorName returns the name of a stream's findings cursor.
func FindingsCursorName(stream string) string { return "siem:" + stream + ":findings" }

// Stream follows the log and delivers its records, and detectors'
// findings, to a Sink: in log order (findings in the order they were
// stored), at least once. Its position is a cursor in the store, advanced
// only after the sink took a batch, so a stream that stops, crashes or
// restarts on another node continues where the last delivery ended.
type Stream struct {
	cfg      StreamConfig
	log      *slog.Logger
	kinds    map[infertrail.Kind]bool
	tenants  map[string]bool
	findings findingReader
	sendMu   sync.Mutex // Sink.Send is called by one goroutine at a time
}

// NewStream validates cfg and returns a stream; Run starts it.
func NewStream(cfg StreamConfig) (*Stream, error) {
	if !streamName.MatchString(cfg.Name) {
		return nil, fmt.Errorf("siem stream: name %q: want 1 to 64 letters, digits, '.', '_' or '-': %w", cfg.Name, infertrail.ErrInvalid)
	}
	if cfg.Source == nil || cfg.Sink == nil {
		return nil, fmt.Errorf("siem stream %s: Source and Sink are required: %w", cfg.Name, infertrail.ErrInvalid)
	}
	if !cfg.Records && !cfg.Findings {
		return nil, fmt.Errorf("siem stream %s: streams neither records nor findings: %w", cfg.Name, infertrail.ErrInvalid)
	}
	s := &Stream{cfg: cfg}
	if cfg.Findings {
		fr, ok := cfg.Source.(findingReader)
		if !ok {
			return nil, fmt.Errorf("siem stream %s: the store keeps no findings: %w", cfg.Name, infertrail.ErrInvalid)
		}
		s.findings = fr
	}
	for _, k := range cfg.Kinds {
		if !k.Valid() {
			return nil, fmt.Errorf("siem stream %s: kind %q: not a record kind: %w", cfg.Name, k, infertrail.ErrInvalid)
		}
	}
	if len(cfg.Kinds) > 0 {
		s.kinds = map[infertrail.Kind]bool{}
		for _, k := range cfg.Kinds {
			s.kinds[k] = true
		}
	}
	if len(cfg.Tenants) > 0 {
		s.tenants = map[string]bool{}
		for _, t := range cfg.Tenants {
			s.tenants[t] = true
		}
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	if s.cfg.BatchSize <= 0 {
		s.cfg.BatchSize = 500
	}
	def(&s.cfg.MaxWait, time.Second)
	def(&s.cfg.Poll, 500*time.Millisecond)
	def(&s.cfg.MinBackoff, 500*time.Millisecond)
	def(&s.cfg.MaxBackoff, time.Minute)
	if s.cfg.MaxBackoff < s.cfg.MinBackoff {
		s.cfg.MaxBackoff = s.cfg.MinBackoff
	}
	s.log = cfg.Logger
	if s.log == nil {
		s.log = slog.Default()
	}
	s.log = s.log.With("stream", cfg.Name)
	return s, nil
}

// Run delivers events until ctx is done, and then returns ctx's error. It
// does not close the sink. Failures of the store or the receiver are
// logged and retried, never skipped.
func (s *Stream) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	if s.cfg.Records {
		wg.Add(1)
		go func() { defer wg.Done(); s.runRecords(ctx) }()
	}
	if s.cfg.Findings {
		wg.Add(1)
		go func() { defer wg.Done(); s.runFindings(ctx) }()
	}
	wg.Wait()
	return ctx.Err()
}

// sleep waits d, or until ctx is done; it reports whether ctx is still live.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// backoff returns the wait before retry attempt (0-based): doubling from
// MinBackoff to MaxBackoff, with "equal jitter" (between half and all of
// it), so that many streams failing together do not retry together.
func (s *Stream) backoff(attempt int, err error) time.Duration {
	d := s.cfg.MinBackoff << min(attempt, 30)
	if d <= 0 || d > s.cfg.MaxBackoff {
		d = s.cfg.MaxBackoff
	}
	d = d/2 + rand.N(d/2+1)
	var ra *RetryAfterError
	if errors.As(err, &ra) && ra.After > d {
		d = min(ra.After, s.cfg.MaxBackoff)
	}
	return d
}

// retry calls f until it succeeds or ctx is done, logging failures.
func (s *Stream) retry(ctx context.Context, what string, f func() error) error {
	for attempt := 0; ; attempt++ {
		err := f()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		d := s.backoff(attempt, err)
		s.log.Warn("siem: "+what+" failed; retrying", "attempt", attempt+1, "retry_in", d.Round(time.Millisecond), "err", err)
		s.cfg.Metrics.failed(s.cfg.Name)
		if !sleep(ctx, d) {
			return ctx.Err()
		}
	}
}

// send delivers a batch, retrying until the sink takes it.
func (s *Stream) send(ctx context.Context, events []Event) error {
	what := fmt.Sprintf("deliver %d events (%s %d to %d)", len(events), events[0].Kind, events[0].Seq, events[len(events)-1].Seq)
	start := time.Now()
	err := s.retry(ctx, what, func() error {
		s.sendMu.Lock()
		defer s.sendMu.Unlock()
		return s.cfg.Sink.Send(ctx, events)
	})
	if err == nil {
		s.cfg.Metrics.delivered(s.cfg.Name, len(events), time.Since(start))
	}
	return err
}

// advance moves a cursor after a delivery. When another node moved it
// first (several nodes run the same stream), it returns the cursor's
// current position: the records in between were delivered twice, which
// at-least-once allows.
func (s *Stream) advance(ctx context.Context, name string, from, to int64) (int64, error) {
	// What the receiver took is recorded even when the stream is being
	// stopped: a stop must not make the next start send it again. The
	// write is bounded on its own; ctx still ends the retries.
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	var at int64
	err := s.retry(ctx, "advance cursor "+name, func() error {
		err := s.cfg.Source.AdvanceCursor(wctx, name, from, to)
		if errors.Is(err, infertrail.ErrConflict) {
			cur, cerr := s.cfg.Source.Cursor(wctx, name)
			if cerr != nil {
				return cerr
			}
			s.log.Warn("siem: another process moved the cursor; continuing from it (run each stream on one node to avoid duplicates)",
				"cursor", name, "expected", from, "found", cur)
			at = max(cur, to)
			if cur < to {
				// It is behind what this node delivered: move it on.
				if err := s.cfg.Source.AdvanceCursor(wctx, name, cur, to); err != nil && !errors.Is(err, infertrail.ErrConflict) {
					return err
				}
			}
			return nil
		}
		at = to
		return err
	})
	return at, err
}

// runRecords follows the log.
func (s *Stream) runRecords(ctx context.Context) {
	name := CursorName(s.cfg.Name)
	var cursor int64
	if s.retry(ctx, "read cursor "+name, func() (err error) { cursor, err = s.cfg.Source.Cursor(ctx, name); return }) != nil {
		return
	}
	if cursor == 0 && s.cfg.StartAtEnd {
		var size int64
		if s.retry(ctx, "read tree size", func() (err error) { size, err = s.cfg.Source.TreeSize(ctx); return }) != nil {
			return
		}
		if size > 0 {
			at, err := s.advance(ctx, name, 0, size)
			if err != nil {
				return
			}
			cursor = at
		}
	}
	s.log.Info("siem: stream started", "cursor", cursor)
	var pendingSince time.Time
	for ctx.Err() == nil {
		var size int64
		if s.retry(ctx, "read tree size", func() (err error) { size, err = s.cfg.Source.TreeSize(ctx); return }) != nil {
			return
		}
		s.cfg.Metrics.lag(s.cfg.Name, size-cursor)
		if size <= cursor {
			pendingSince = time.Time{}
			sleep(ctx, s.cfg.Poll)
			continue
		}
		if pendingSince.IsZero() {
			pendingSince = time.Now()
		}
		if waited := time.Since(pendingSince); size-cursor < int64(s.cfg.BatchSize) && waited < s.cfg.MaxWait {
			sleep(ctx, min(s.cfg.Poll, s.cfg.MaxWait-waited))
			continue
		}
		var events []Event
		var next int64
		if s.retry(ctx, fmt.Sprintf("read records from %d", cursor), func() (err error) {
			events, next, err = s.readRecords(ctx, cursor, size)
			return
		}) != nil {
			return
		}
		if len(events) > 0 && s.send(ctx, events) != nil {
			return
		}
		at, err := s.advance(ctx, name, cursor, next)
		if err != nil {
			return
		}
		cursor = at
		if cursor >= size {
			pendingSince = time.Time{}
		}
	}
}

// readRecords reads the events of up to BatchSize records from cursor on,
// and returns them with the cursor that follows them.
func (s *Stream) readRecords(ctx context.Context, cursor, size int64) ([]Event, int64, error) {
	// Filtered streams may pass over many records per event.
	end := min(size, cursor+int64(s.cfg.BatchSize)*16)
	var events []Event
	next := cursor
	err := s.cfg.Source.Entries(ctx, cursor, end, func(e *infertrail.Entry) error {
		if len(events) == s.cfg.BatchSize {
			return errStopScan
		}
		if e.Seq != next {
			return fmt.Errorf("read records: got record %d, want %d", e.Seq, next)
		}
		next = e.Seq + 1
		if s.kinds != nil && !s.kinds[e.Kind] || s.tenants != nil && !s.tenants[e.Tenant] {
			return nil
		}
		b, r, err := OCSFRecord(e, s.cfg.OCSF)
		if err != nil {
			// A leaf that does not parse is damage 'infertrail verify'
			// reports; the stream cannot describe it, and must not stall.
			s.log.Error("siem: record does not parse; not delivered", "seq", e.Seq, "err", err)
			s.cfg.Metrics.failed(s.cfg.Name)
			return nil
		}
		events = append(events, Event{Seq: e.Seq, ID: r.ID.String(), Kind: string(r.Kind), Time: r.Time,
			Tenant: r.Tenant, Severity: 6, JSON: b})
		return nil
	})
	if err != nil && !errors.Is(err, errStopScan) {
		return nil, cursor, err
	}
	if next == cursor && end > cursor {
		return nil, cursor, fmt.Errorf("read records %d to %d: none returned", cursor, end)
	}
	return events, next, nil
}

// runFindings follows the findings.
func (s *Stream) runFindings(ctx context.Context) {
	name := FindingsCursorName(s.cfg.Name)
	var cursor int64
	if s.retry(ctx, "read cursor "+name, func() (err error) { cursor, err = s.cfg.Source.Cursor(ctx, name); return }) != nil {
		return
	}
	if cursor == 0 && s.cfg.StartAtEnd {
		var newest int64
		if s.retry(ctx, "read findings", func() (err error) { newest, err = s.newestFinding(ctx); return }) != nil {
			return
		}
		if newest > 0 {
			at, err := s.advance(ctx, name, 0, newest+1)
			if err != nil {
				return
			}
			cursor = at
		}
	}
	for ctx.Err() == nil {
		var fs []infertrail.Finding
		var next int64
		if s.retry(ctx, "read findings", func() (err error) { fs, next, err = s.readFindings(ctx, cursor); return }) != nil {
			return
		}
		if next == cursor {
			sleep(ctx, s.cfg.Poll)
			continue
		}
		if len(fs) > 0 {
			events := make([]Event, len(fs))
			for i := range fs {
				ids := s.recordIDs(ctx, fs[i].Records)
				b, err := OCSFFinding(&fs[i], ids, s.cfg.OCSF)
				if err != nil {
					s.log.Error("siem: finding not mapped", "n", fs[i].N, "err", err)
					continue
				}
				sev, _ := severityOf(fs[i].Severity)
				events[i] = Event{Seq: fs[i].N, ID: fs[i].ID.String(), Kind: "finding", Time: time.Unix(0, fs[i].Time).UTC(),
					Tenant: fs[i].Tenant, Severity: syslogSeverityOf(sev), JSON: b}
			}
			events = slices.DeleteFunc(events, func(e Event) bool { return e.JSON == nil })
			if len(events) > 0 && s.send(ctx, events) != nil {
				return
			}
		}
		at, err := s.advance(ctx, name, cursor, next)
		if err != nil {
			return
		}
		cursor = at
	}
}

// syslogSeverityOf maps an OCSF severity to an RFC 5424 severity.
func syslogSeverityOf(ocsfSeverity int) int {
	switch ocsfSeverity {
	case 2:
		return 5 // notice
	case 3:
		return 4 // warning
	case 4, 5, 6:
		return 2 // critical
	}
	return 6 // informational
}

func (s *Stream) newestFinding(ctx context.Context) (int64, error) {
	var n int64
	err := s.findings.Findings(ctx, infertrail.FindingQuery{Seq: -1, Limit: 1}, func(f *infertrail.Finding) error {
		n = f.N
		return nil
	})
	return n, err
}

// readFindings returns the findings with cursor <= N < cursor+BatchSize in
// increasing N, and the cursor past them. When that window holds none but
// later findings exist, it returns the cursor past the window.
func (s *Stream) readFindings(ctx context.Context, cursor int64) ([]infertrail.Finding, int64, error) {
	w := int64(s.cfg.BatchSize)
	q := infertrail.FindingQuery{Seq: -1, Before: cursor + w, Limit: int(w)}
	if s.tenants != nil {
		q.Tenants = slices.Collect(func(yield func(string) bool) {
			for t := range s.tenants {
				if !yield(t) {
					return
				}
			}
		})
	}
	var fs []infertrail.Finding
	err := s.findings.Findings(ctx, q, func(f *infertrail.Finding) error {
		if f.N < cursor {
			return errStopScan
		}
		c := *f
		c.Records = slices.Clone(f.Records)
		fs = append(fs, c)
		return nil
	})
	if err != nil && !errors.Is(err, errStopScan) {
		return nil, cursor, err
	}
	if len(fs) > 0 {
		slices.Reverse(fs)
		return fs, fs[len(fs)-1].N + 1, nil
	}
	newest, err := s.newestFinding(ctx)
	if err != nil {
		return nil, cursor, err
	}
	if newest >= cursor+w {
		return nil, cursor + w, nil // an empty window: the findings there were filtered out
	}
	return nil, cursor, nil
}

// recordIDs looks up the ids of a finding's records (at most 64).
func (s *Stream) recordIDs(ctx context.Context, seqs []int64) []infertrail.UUID {
	var out []infertrail.UUID
	for _, seq := range seqs[:min(len(seqs), 64)] {
		var id infertrail.UUID
		if err := s.cfg.Source.Entries(ctx, seq, seq+1, func(e *infertrail.Entry) error { id = e.ID; return nil }); err != nil {
			s.log.Warn("siem: look up a finding's record", "seq", seq, "err", err)
		}
		out = append(out, id)
	}
	return out
}

// SIEMMetrics are the SIEM streams' Prometheus metrics. A nil
// *SIEMMetrics records nothing.
type SIEMMetrics struct {
	events   *prometheus.CounterVec
	batches  *prometheus.CounterVec
	failures *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	behind   *prometheus.GaugeVec
	last     *prometheus.GaugeVec
}

// NewSIEMMetrics creates the metrics and registers them with reg. Called
// again with the same registry (streams restarted), it returns the
// metrics registered the first time.
func NewSIEMMetrics(reg prometheus.Registerer) *SIEMMetrics {
	m := &SIEMMetrics{
		events: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "infertrail_siem_events_delivered_total",
			Help: "Events a SIEM receiver accepted, by stream (a retried batch counts once)."}, []string{"stream"}),
		batches: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "infertrail_siem_batches_delivered_total",
			Help: "Batches a SIEM receiver accepted, by stream."}, []string{"stream"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "infertrail_siem_failures_total",
			Help: "Failed deliveries and reads, each retried, by stream."}, []string{"stream"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "infertrail_siem_delivery_seconds",
			Help:    "Time to deliver one batch, retries included, by stream.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 12)}, []string{"stream"}),
		behind: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "infertrail_siem_records_behind",
			Help: "Records committed to the log but not yet delivered, by stream."}, []string{"stream"}),
		last: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "infertrail_siem_last_delivery_timestamp_seconds",
			Help: "When a batch was last delivered, by stream."}, []string{"stream"}),
	}
	m.events = register(reg, m.events)
	m.batches = register(reg, m.batches)
	m.failures = register(reg, m.failures)
	m.latency = register(reg, m.latency)
	m.behind = register(reg, m.behind)
	m.last = register(reg, m.last)
	return m
}

// register registers c, or returns the collector registered before it.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if prev, ok := are.ExistingCollector.(C); ok {
				return prev
			}
		}
		panic(err)
	}
	return c
}

func (m *SIEMMetrics) delivered(stream string, n int, d time.Duration) {
	if m == nil {
		return
	}
	m.events.WithLabelValues(stream).Add(float64(n))
	m.batches.WithLabelValues(stream).Inc()
	m.latency.WithLabelValues(stream).Observe(d.Seconds())
	m.last.WithLabelValues(stream).SetToCurrentTime()
}

func (m *SIEMMetrics) failed(stream string) {
	if m != nil {
		m.failures.WithLabelValues(stream).Inc()
	}
}

func (m *SIEMMetrics) lag(stream string, n int64) {
	if m != nil {
		m.behind.WithLabelValues(stream).Set(float64(n))
	}
}
