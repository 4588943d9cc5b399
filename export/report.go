package export

import (
	"cmp"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/infertrail/infertrail"
	"github.com/infertrail/infertrail/ledger"
)

// ReportFormat identifies the JSON form of a Report (docs/report.md). It
// changes only when a field changes meaning or is removed.
const ReportFormat = "infertrail-report/1"

// ReportSource is what a compliance report reads: the committed records,
// the stored checkpoints, proofs between them, and the key that signs
// them. LogSource and StoreSource adapt a ledger.Log and a store.
//
// A source that also has the method
//
//	Findings(ctx context.Context, q infertrail.FindingQuery, fn func(*infertrail.Finding) error) error
//
// (as infertrail.FindingStore does) gives the report its findings section;
// one that has Progress(done, total int64) is told how far the scan got
// after each chunk of records.
type ReportSource interface {
	// TreeSize returns the number of committed records.
	TreeSize(ctx context.Context) (int64, error)
	// Entries calls fn for each committed entry with start <= Seq < end,
	// in order, as infertrail.EntryReader.Entries does: fn must not call
	// back into the source.
	Entries(ctx context.Context, start, end int64, fn func(*infertrail.Entry) error) error
	// Checkpoints calls fn for each stored checkpoint with Size > after, in
	// increasing size, as infertrail.CheckpointStore.Checkpoints does.
	Checkpoints(ctx context.Context, after int64, fn func(infertrail.StoredCheckpoint) error) error
	// ConsistencyProof proves that the tree of size from is a prefix of
	// the tree of size to (1 <= from <= to <= TreeSize).
	ConsistencyProof(ctx context.Context, from, to int64) (tlog.TreeProof, error)
	// Verifier returns the verifier of the log's checkpoints; its name is
	// the log's origin.
	Verifier() note.Verifier
}

// findingReader is the part of infertrail.FindingStore a report reads.
type findingReader interface {
	Findings(ctx context.Context, q infertrail.FindingQuery, fn func(*infertrail.Finding) error) error
}

// progressReporter is told how far a report's scan got.
type progressReporter interface {
	Progress(done, total int64)
}

// LogSource returns the report source of a running log. It has findings
// when the log's store keeps them.
func LogSource(l *ledger.Log) ReportSource {
	s := &storeSource{store: l.Store(), verifier: l.Verifier(), prove: l.ConsistencyProof}
	if fr, ok := l.Store().(findingReader); ok {
		return &storeSourceWithFindings{storeSource: s, findings: fr}
	}
	return s
}

// ReportStore is what StoreSource reads from a store.
type ReportStore interface {
	infertrail.HashReader
	Entries(ctx context.Context, start, end int64, fn func(*infertrail.Entry) error) error
	Checkpoints(ctx context.Context, after int64, fn func(infertrail.StoredCheckpoint) error) error
}

// StoreSource returns the report source of a store opened read-only (no
// ledger.Log running), whose checkpoints v verifies. It has findings when
// the store keeps them.
func StoreSource(st ReportStore, v note.Verifier) ReportSource {
	s := &storeSource{store: st, verifier: v}
	s.prove = func(ctx context.Context, from, to int64) (tlog.TreeProof, error) {
		if from < 1 || from > to {
			return nil, fmt.Errorf("prove consistency %d to %d: want 1 <= from <= to: %w", from, to, infertrail.ErrInvalid)
		}
		return tlog.ProveTree(to, from, tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
			return st.ReadHashes(ctx, idx)
		}))
	}
	if fr, ok := st.(findingReader); ok {
		return &storeSourceWithFindings{storeSource: s, findings: fr}
	}
	return s
}

type storeSource struct {
	store interface {
		TreeSize(ctx context.Context) (int64, error)
		Entries(ctx context.Context, start, end int64, fn func(*infertrail.Entry) error) error
		Checkpoints(ctx context.Context, after int64, fn func(infertrail.StoredCheckpoint) error) error
	}
	verifier note.Verifier
	prove    func(ctx context.Context, from, to int64) (tlog.TreeProof, error)
}

func (s *storeSource) TreeSize(ctx context.Context) (int64, error) { return s.store.TreeSize(ctx) }
func (s *storeSource) Entries(ctx context.Context, start, end int64, fn func(*infertrail.Entry) error) error {
	return s.store.Entries(ctx, start, end, fn)
}
func (s *storeSource) Checkpoints(ctx context.Context, after int64, fn func(infertrail.StoredCheckpoint) error) error {
	return s.store.Checkpoints(ctx, after, fn)
}
func (s *storeSource) ConsistencyProof(ctx context.Context, from, to int64) (tlog.TreeProof, error) {
	return s.prove(ctx, from, to)
}
func (s *storeSource) Verifier() note.Verifier { return s.verifier }

type storeSourceWithFindings struct {
	*storeSource
	findings findingReader
}

func (s *storeSourceWithFindings) Findings(ctx context.Context, q infertrail.FindingQuery, fn func(*infertrail.Finding) error) error {
	return s.findings.Findings(ctx, q, fn)
}

// WithProgress returns src, findings and all, with fn told after each
// chunk of records how many of the records to read a report has read.
func WithProgress(src ReportSource, fn func(done, total int64)) ReportSource {
	p := &progressSource{ReportSource: src, fn: fn}
	if fr, ok := src.(findingReader); ok {
		return &progressSourceWithFindings{progressSource: p, findings: fr}
	}
	return p
}

type progressSource struct {
	ReportSource
	fn func(done, total int64)
}

func (p *progressSource) Progress(done, total int64) { p.fn(done, total) }

type progressSourceWithFindings struct {
	*progressSource
	findings findingReader
}

func (p *progressSourceWithFindings) Findings(ctx context.Context, q infertrail.FindingQuery, fn func(*infertrail.Finding) error) error {
	return p.findings.Findings(ctx, q, fn)
}

// ForTenants returns src restricted to the records and findings of
// tenants: the report counts their records only, and still checks every
// checkpoint of the period (checkpoints cover the whole log).
func ForTenants(src ReportSource, tenants ...string) ReportSource {
	return &tenantSource{ReportSource: src, tenants: slices.Clone(tenants)}
}

type tenantSource struct {
	ReportSource
	tenants []string
}

func (t *tenantSource) reportTenants() []string { return t.tenants }

// errNoFindings is what a wrapper's Findings answers when its source keeps none.
var errNoFindings = errors.New("the source keeps no findings")

func (t *tenantSource) Findings(ctx context.Context, q infertrail.FindingQuery, fn func(*infertrail.Finding) error) error {
	fr, ok := t.ReportSource.(findingReader)
	if !ok {
		return errNoFindings
	}
	q.Tenants = t.tenants
	return fr.Findings(ctx, q, fn)
}

func (t *tenantSource) Progress(done, total int64) {
	if p, ok := t.ReportSource.(progressReporter); ok {
		p.Progress(done, total)
	}
}

// Section statuses. A status describes what the report saw, never whether
// a control is met: that is the auditor's judgement.
const (
	StatusOK          = "ok"          // nothing to look at
	StatusAttention   = "attention"   // something an auditor should look at; the notes say what
	StatusNoData      = "no_data"     // no record of the period bears on the section
	StatusUnavailable = "unavailable" // the source cannot give this section (such as findings without a finding store)
)

// statusRank orders statuses from the least to the most in need of a look.
func statusRank(s string) int {
	switch s {
	case StatusOK:
		return 0
	case StatusNoData:
		return 1
	case StatusUnavailable:
		return 2
	case StatusAttention:
		return 3
	}
	return 0
}

// Report is a compliance report over one period: what the log recorded,
// whether it is complete and intact, and which controls that evidences. Its
// JSON field names are stable (docs/report.md).
type Report struct {
	Format      string    `json:"format"` // ReportFormat
	GeneratedAt time.Time `json:"generated_at"`
	Log         LogInfo   `json:"log"`
	Period      Period    `json:"period"`
	// Tenants are the tenants the report is restricted to (ForTenants);
	// empty: every tenant.
	Tenants    []string        `json:"tenants"`
	Parameters Parameters      `json:"parameters"`
	Scan       ScanInfo        `json:"scan"`
	Sections   Sections        `json:"sections"`
	Controls   []ControlResult `json:"controls"`
}

// LogInfo identifies the log a report is about.
type LogInfo struct {
	Origin   string `json:"origin"`
	KeyHash  string `json:"key_hash"`  // the signed-note key hash of the checkpoint key, 8 hex digits
	TreeSize int64  `json:"tree_size"` // committed records when the report was made
}

// Period is the half-open interval [From, To) of server received times
// that a report covers.
type Period struct {
	From time.Time `json:"from"`
	To   time.Time `json:"to"`
}

// ScanInfo says which part of the log a report read.
type ScanInfo struct {
	// FirstSeq and LastSeq are the sequence numbers of the first and last
	// records received in the period, -1 when there is none.
	FirstSeq int64 `json:"first_seq"`
	LastSeq  int64 `json:"last_seq"`
	Scanned  int64 `json:"scanned"` // records read, including those just outside the period
	Records  int64 `json:"records"` // records received in the period
	// Unparsable counts records of the period whose leaf does not parse:
	// the store is damaged; 'infertrail verify' names them.
	Unparsable int64 `json:"unparsable"`
	DurationMS int64 `json:"duration_ms"`
}

// Sections are the report's findings, one per aspect of the trail.
type Sections struct {
	Volume       VolumeSection       `json:"volume"`
	Completeness CompletenessSection `json:"completeness"`
	Timestamps   TimestampsSection   `json:"timestamps"`
	Integrity    IntegritySection    `json:"integrity"`
	Findings     FindingsSection     `json:"findings"`
	Agency       AgencySection       `json:"agency"`
	Identities   IdentitiesSection   `json:"identities"`
	Retention    RetentionSection    `json:"retention"`
	Access       AccessSection       `json:"access"`
}

// SectionStatus is the status of a section and the notes that explain it.
type SectionStatus struct {
	Status string   `json:"status"`
	Notes  []string `json:"notes"`
}

func (s *SectionStatus) note(status, format string, args ...any) {
	if statusRank(status) > statusRank(s.Status) {
		s.Status = status
	}
	s.Notes = append(s.Notes, fmt.Sprintf(format, args...))
}

// Count is a number of records with one value of a field.
type Count struct {
	Value string `json:"value"`
	Count int64  `json:"count"`
}

// VolumeSection counts what was recorded.
type VolumeSection struct {
	SectionStatus
	Records int64   `json:"records"`
	ByKind  []Count `json:"by_kind"`   // every kind, in the order of infertrail.Kinds
	BySrc   []Count `json:"by_source"` // capture source, most first
	// ByTenant is the records of each tenant, most first. Past
	// MaxReportTenants tenants the rest are counted under "(other tenants)".
	ByTenant      []TenantCount `json:"by_tenant"`
	Tenants       int64         `json:"tenants"`
	TenantsCapped bool          `json:"tenants_capped"`
	// Actors is the number of distinct actor ids; ActorsCapped says it
	// stopped counting at MaxDistinct.
	Actors       int64 `json:"actors"`
	ActorsCapped bool  `json:"actors_capped"`
	// Activity is the records received per bucket of the period.
	BucketHours  int64    `json:"bucket_hours"`
	Activity     []Bucket `json:"activity"`
	EmptyBuckets int64    `json:"empty_buckets"`
}

// TenantCount is the records of one tenant, by kind.
type TenantCount struct {
	Tenant  string           `json:"tenant"`
	Records int64            `json:"records"`
	ByKind  map[string]int64 `json:"by_kind"`
}

// Bucket is the records received in [Start, Start+bucket_hours).
type Bucket struct {
	Start   time.Time `json:"start"`
	Records int64     `json:"records"`
}

// CompletenessSection says how many inference records carry every field
// that makes one interaction reconstructible.
type CompletenessSection struct {
	SectionStatus
	Inferences int64 `json:"inferences"`
	Complete   int64 `json:"complete"`
	// CompleteShare is Complete / Inferences (1 when there is none).
	CompleteShare float64 `json:"complete_share"`
	// Missing counts the inference records without each required field.
	Missing MissingFields `json:"missing"`
	// Examples are sequence numbers of a few incomplete records.
	Examples []int64 `json:"examples"`
}

// MissingFields counts inference records missing each required field.
type MissingFields struct {
	Prompt         int64 `json:"prompt"`          // no commitment to gen_ai.input.messages
	Response       int64 `json:"response"`        // no commitment to gen_ai.output.messages
	ModelVersion   int64 `json:"model_version"`   // no gen_ai.response.model attribute
	CallerIdentity int64 `json:"caller_identity"` // neither actor.id nor actor.credential_fingerprint
}

// TimestampsSection describes the records' clocks.
type TimestampsSection struct {
	SectionStatus
	// ReceivedOutOfOrder counts records received (by the server's clock)
	// before the record sequenced just before them: clocks of several
	// nodes differ, or a clock stepped back.
	ReceivedOutOfOrder int64 `json:"received_out_of_order"`
	// ObservedAhead counts records whose observed time is later than
	// their received time by more than the clock_skew parameter: the
	// capture point's clock runs ahead.
	ObservedAhead int64 `json:"observed_ahead"`
	// ObservedLate counts records received more than clock_skew after
	// their observed time (buffered or batched capture, or backdated).
	ObservedLate int64 `json:"observed_late"`
	// MaxLagSeconds is the largest received minus observed time.
	MaxLagSeconds float64 `json:"max_lag_seconds"`
	// ObservedOutsidePeriod counts records received in the period but
	// observed outside it.
	ObservedOutsidePeriod int64 `json:"observed_outside_period"`
}

// IntegritySection describes the signed checkpoints that cover the period.
type IntegritySection struct {
	SectionStatus
	// Checkpoints is the number of checkpoints signed in the period (those
	// whose last record was received in it); Checked also counts the
	// checkpoints just before and after it that tie the period to the
	// rest of the log.
	Checkpoints int64 `json:"checkpoints"`
	Checked     int64 `json:"checked"`
	// InvalidSignatures counts checkpoints whose signature, origin or
	// format is wrong; Inconsistent counts checkpoints that are not
	// consistent with the previous valid one.
	InvalidSignatures int64 `json:"invalid_signatures"`
	Inconsistent      int64 `json:"inconsistent"`
	// Opening is the size of the last checkpoint before the period's
	// records (0: none); Closing the size of the first checkpoint that
	// covers all of them (0: none yet).
	Opening int64 `json:"opening_size"`
	Closing int64 `json:"closing_size"`
	// Unsigned counts records of the period no signed checkpoint covers yet.
	Unsigned int64 `json:"unsigned"`
	// LongestWaitSeconds is the longest time, at least, that a record of
	// the period waited before a checkpoint covered it.
	LongestWaitSeconds float64 `json:"longest_wait_seconds"`
	// Gaps are the waits longer than the checkpoint_max_wait parameter.
	Gaps []CheckpointGap `json:"gaps"`
	// Failures are the checkpoints that failed a check.
	Failures []CheckpointFailure `json:"failures"`
}

// CheckpointGap is a stretch of records that waited too long for a
// checkpoint: records From to To-1 were first covered by the checkpoint of
// size To (0: no checkpoint covers them yet).
type CheckpointGap struct {
	From        int64     `json:"from_seq"`
	To          int64     `json:"to_size"`
	Since       time.Time `json:"since"` // received time of record From
	WaitSeconds float64   `json:"wait_seconds"`
}

// CheckpointFailure is a checkpoint that failed a check.
type CheckpointFailure struct {
	Size  int64  `json:"size"`
	Check string `json:"check"` // "signature" or "consistency"
	Error string `json:"error"`
}

// FindingsSection counts detectors' findings about the period's records.
type FindingsSection struct {
	SectionStatus
	Available  bool               `json:"available"`
	Total      int64              `json:"total"`
	BySeverity map[string]int64   `json:"by_severity"`
	ByDetector []DetectorFindings `json:"by_detector"`
}

// DetectorFindings counts one detector's findings by severity.
type DetectorFindings struct {
	Detector string `json:"detector"`
	Low      int64  `json:"low"`
	Medium   int64  `json:"medium"`
	High     int64  `json:"high"`
	Total    int64  `json:"total"`
}

// AgencySection describes what models caused to happen and what governed it.
type AgencySection struct {
	SectionStatus
	ToolCalls       int64   `json:"tool_calls"`
	ToolErrors      int64   `json:"tool_errors"`
	DownstreamCalls int64   `json:"downstream_calls"`
	PolicyDecisions []Count `json:"policy_decisions"` // by policy.result
	Approvals       []Count `json:"approvals"`        // by approval.decision
}

// IdentitiesSection describes the non-human identities that acted.
type IdentitiesSection struct {
	SectionStatus
	CredentialEvents []Count `json:"credential_events"` // by credential.event
	// Credentials is the number of distinct credential fingerprints seen.
	Credentials       int64 `json:"credentials"`
	CredentialsCapped bool  `json:"credentials_capped"`
	// Shared counts credentials used by more than one actor id.
	Shared int64 `json:"shared_credentials"`
	// LongLived counts credentials issued with a lifetime longer than the
	// long_lived_credential parameter.
	LongLived int64 `json:"long_lived"`
	// Anonymous counts records with neither actor.id nor a credential
	// fingerprint.
	Anonymous int64 `json:"anonymous"`
}

// RetentionSection describes how long the log keeps records and what was
// erased.
type RetentionSection struct {
	SectionStatus
	// OldestRecord is the received time of the log's first record.
	OldestRecord time.Time `json:"oldest_record"`
	LogAgeDays   float64   `json:"log_age_days"`
	Erasures     int64     `json:"erasures"`
	ByTrigger    []Count   `json:"by_trigger"` // request, retention
	Scopes       int64     `json:"scopes"`     // distinct erasure scopes
	// ErasureList is the erasures of the period, oldest first (at most
	// MaxReportList).
	ErasureList   []Erasure `json:"erasure_list"`
	HoldsPlaced   int64     `json:"holds_placed"`
	HoldsReleased int64     `json:"holds_released"`
}

// Erasure is one erasure record.
type Erasure struct {
	Seq     int64     `json:"seq"`
	Time    time.Time `json:"time"`
	Trigger string    `json:"trigger"`
	Scope   string    `json:"scope"`
	Kind    string    `json:"kind,omitempty"` // the record kind a retention erasure expired
}

// AccessSection describes reads of the evidence and administrative actions.
type AccessSection struct {
	SectionStatus
	Total      int64   `json:"total"`
	ByAction   []Count `json:"by_action"` // by access.action
	Accessors  int64   `json:"accessors"` // distinct actor ids
	WithReason int64   `json:"with_reason"`
}

// Limits of what a report lists or counts exactly.
const (
	MaxReportTenants = 1000   // tenants listed one by one
	MaxReportList    = 100    // gaps, failures, erasures listed
	MaxDistinct      = 100000 // distinct actors or credentials counted exactly
	maxBuckets       = 400
	reportChunk      = 4096
)

// BuildReport reads the records the server received in [from, to), and the
// checkpoints and findings about them, and returns the report with each of
// controls evaluated. It reads the records of the period once, in order, in
// chunks, so its memory does not grow with the log.
//
// Records are placed in the period by their received time, which the
// server sets: a client cannot move a record into or out of a period. The
// records of a period are found by a binary search on received time, which
// assumes the clocks of the nodes that write the log differ by less than
// the clock_skew parameter.
//
// The zero Controls means the built-in mapping, LoadControls("").
func BuildReport(ctx context.Context, src ReportSource, from, to time.Time, controls Controls) (*Report, error) {
	if !from.Before(to) {
		return nil, fmt.Errorf("build report: the period's start %s is not before its end %s: %w",
			from.UTC().Format(time.RFC3339), to.UTC().Format(time.RFC3339), infertrail.ErrInvalid)
	}
	if controls.Controls == nil && controls.Parameters == (Parameters{}) {
		var err error
		if controls, err = LoadControls(""); err != nil {
			return nil, err
		}
	}
	start := time.Now()
	v := src.Verifier()
	if v == nil {
		return nil, errors.New("build report: the source has no checkpoint verifier")
	}
	size, err := src.TreeSize(ctx)
	if err != nil {
		return nil, fmt.Errorf("build report: %w", err)
	}
	var kh [4]byte
	kh[0], kh[1], kh[2], kh[3] = byte(v.KeyHash()>>24), byte(v.KeyHash()>>16), byte(v.KeyHash()>>8), byte(v.KeyHash())
	r := &Report{
		Format:      ReportFormat,
		GeneratedAt: time.Now().UTC(),
		Log:         LogInfo{Origin: v.Name(), KeyHash: hex.EncodeToString(kh[:]), TreeSize: size},
		Period:      Period{From: from.UTC(), To: to.UTC()},
		Tenants:     []string{},
		Parameters:  controls.Parameters.withDefaults(),
	}
	b := newBuilder(r, src, size)
	if err := b.scan(ctx); err != nil {
		return nil, fmt.Errorf("build report: %w", err)
	}
	if err := b.findings(ctx); err != nil {
		return nil, fmt.Errorf("build report: %w", err)
	}
	b.finish()
	r.Scan.DurationMS = time.Since(start).Milliseconds()
	r.ApplyControls(controls)
	return r, nil
}

// builder accumulates a report during the scan.
type builder struct {
	r        *Report
	src      ReportSource
	size     int64
	from, to int64 // period, Unix ns
	skew     int64 // clock_skew, ns

	kinds       map[infertrail.Kind]int64
	sources     map[string]int64
	tenants     map[string]*TenantCount
	other       *TenantCount
	actors      map[string]struct{}
	buckets     []int64
	bucketNS    int64
	credentials map[string]string // fingerprint → first actor id, or "\x00" once shared
	credEvents  map[string]int64
	decisions   map[string]int64
	approvals   map[string]int64
	triggers    map[string]int64
	scopes      map[string]struct{}
	actions     map[string]int64
	accessors   map[string]struct{}
	lastRecv    int64
	only        map[string]bool // the tenants the report is restricted to; nil: every tenant

	// checkpoint chain state
	cp cpState
}

func newBuilder(r *Report, src ReportSource, size int64) *builder {
	b := &builder{
		r: r, src: src, size: size,
		from: r.Period.From.UnixNano(), to: r.Period.To.UnixNano(),
		skew:        r.Parameters.ClockSkew.ns(),
		kinds:       map[infertrail.Kind]int64{},
		sources:     map[string]int64{},
		tenants:     map[string]*TenantCount{},
		actors:      map[string]struct{}{},
		credentials: map[string]string{},
		credEvents:  map[string]int64{},
		decisions:   map[string]int64{},
		approvals:   map[string]int64{},
		triggers:    map[string]int64{},
		scopes:      map[string]struct{}{},
		actions:     map[string]int64{},
		accessors:   map[string]struct{}{},
		lastRecv:    -1 << 63,
	}
	r.Scan.FirstSeq, r.Scan.LastSeq = -1, -1
	if ts, ok := src.(interface{ reportTenants() []string }); ok {
		b.only = map[string]bool{}
		for _, t := range ts.reportTenants() {
			b.only[t] = true
		}
		r.Tenants = slices.Sorted(maps.Keys(b.only))
	}
	days := (b.to - b.from + int64(24*time.Hour) - 1) / int64(24*time.Hour)
	per := max((days+maxBuckets-1)/maxBuckets, 1)
	b.bucketNS = per * int64(24*time.Hour)
	if b.to-b.from < b.bucketNS && b.to-b.from <= int64(24*time.Hour) {
		b.bucketNS = int64(time.Hour) // a period of a day or less: hourly
	}
	b.buckets = make([]int64, (b.to-b.from+b.bucketNS-1)/b.bucketNS)
	r.Sections.Volume.BucketHours = b.bucketNS / int64(time.Hour)
	return b
}

// firstReceivedAtOrAfter returns a seq at or before the first record
// received at or after t, assuming received times do not decrease along
// the log.
func (b *builder) firstReceivedAtOrAfter(ctx context.Context, t int64) (int64, error) {
	lo, hi := int64(0), b.size
	for lo < hi {
		mid := lo + (hi-lo)/2
		e, found, err := firstEntry(ctx, b.src, mid, hi)
		if err != nil {
			return 0, err
		}
		if found && e.Received < t {
			lo = e.Seq + 1
		} else {
			hi = mid
		}
	}
	return lo, nil
}

type entryInfo struct {
	Seq      int64
	Received int64
}

// firstEntry returns the first entry the source gives in [start, end): a
// source restricted to some tenants may skip records.
func firstEntry(ctx context.Context, src ReportSource, start, end int64) (entryInfo, bool, error) {
	var out entryInfo
	found := false
	err := src.Entries(ctx, start, end, func(e *infertrail.Entry) error {
		out = entryInfo{Seq: e.Seq, Received: e.Received}
		found = true
		return errStopScan
	})
	if err != nil && !errors.Is(err, errStopScan) {
		return out, false, fmt.Errorf("read records from %d: %w", start, err)
	}
	return out, found, nil
}

var errStopScan = errors.New("stop")

// scan reads the records around the period, chunk by chunk, and checks the
// checkpoints whose last record lies in each chunk.
func (b *builder) scan(ctx context.Context) error {
	if b.size == 0 {
		return nil
	}
	first, found, err := firstEntry(ctx, b.src, 0, b.size)
	if err != nil {
		return err
	}
	if found {
		b.r.Sections.Retention.OldestRecord = time.Unix(0, first.Received).UTC()
	}
	start, err := b.firstReceivedAtOrAfter(ctx, b.from-b.skew)
	if err != nil {
		return err
	}
	if err := b.cp.open(ctx, b, start); err != nil {
		return err
	}
	pr, _ := b.src.(progressReporter)
	stopAt := b.to + b.skew
	end := start
	for s := start; s < b.size; s = end {
		end = min(s+reportChunk, b.size)
		cps, err := b.cp.load(ctx, b.src, s, end)
		if err != nil {
			return err
		}
		stopped := false
		err = b.src.Entries(ctx, s, end, func(e *infertrail.Entry) error {
			if e.Received >= stopAt {
				stopped = true
				end = e.Seq
				return errStopScan
			}
			b.r.Scan.Scanned++
			b.cp.see(e, b.r.Scan.Records)
			if e.Received >= b.from && e.Received < b.to && (b.only == nil || b.only[e.Tenant]) {
				b.add(e)
			}
			return nil
		})
		if err != nil && !errors.Is(err, errStopScan) {
			return fmt.Errorf("read records %d to %d: %w", s, end, err)
		}
		for _, c := range cps {
			if c.Size > end {
				break // past where the scan stopped
			}
			if err := b.cp.check(ctx, b, c); err != nil {
				return err
			}
		}
		if pr != nil {
			pr.Progress(end-start, b.size-start)
		}
		if stopped {
			break
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	return b.cp.close(ctx, b, end)
}

// add counts one record of the period.
func (b *builder) add(e *infertrail.Entry) {
	r := b.r
	if r.Scan.FirstSeq < 0 {
		r.Scan.FirstSeq = e.Seq
		b.cp.firstRecv = e.Received
	}
	r.Scan.LastSeq = e.Seq
	r.Scan.Records++
	if b.cp.closing > 0 && e.Seq >= b.cp.closing {
		b.cp.closing = 0 // that checkpoint does not cover this record
	}
	b.kinds[e.Kind]++
	b.countTenant(e.Tenant, e.Kind)
	if i := (e.Received - b.from) / b.bucketNS; i >= 0 && i < int64(len(b.buckets)) {
		b.buckets[i]++
	}

	// Clocks.
	ts := &r.Sections.Timestamps
	if e.Received < b.lastRecv {
		ts.ReceivedOutOfOrder++
	}
	b.lastRecv = e.Received
	switch lag := e.Received - e.Time; {
	case lag < -b.skew:
		ts.ObservedAhead++
	case lag > b.skew:
		ts.ObservedLate++
	}
	if lag := float64(e.Received-e.Time) / 1e9; lag > ts.MaxLagSeconds {
		ts.MaxLagSeconds = lag
	}
	if e.Time < b.from || e.Time >= b.to {
		ts.ObservedOutsidePeriod++
	}

	lv, ok := parseLeafView(e.Leaf)
	if !ok {
		r.Scan.Unparsable++
		return
	}
	b.sources[lv.source]++
	actorID, fp := lv.actorID, lv.credential
	if actorID != "" {
		if _, seen := b.actors[actorID]; !seen {
			if len(b.actors) < MaxDistinct {
				b.actors[actorID] = struct{}{}
			} else {
				r.Sections.Volume.ActorsCapped = true
			}
		}
	}
	if actorID == "" && fp == "" {
		r.Sections.Identities.Anonymous++
	}
	if fp != "" {
		first, ok := b.credentials[fp]
		switch {
		case !ok && len(b.credentials) < MaxDistinct:
			b.credentials[fp] = actorID
		case !ok:
			r.Sections.Identities.CredentialsCapped = true
		case first != "\x00" && actorID != "" && first != actorID:
			if first == "" {
				b.credentials[fp] = actorID
			} else {
				b.credentials[fp] = "\x00"
				r.Sections.Identities.Shared++
			}
		}
	}

	switch e.Kind {
	case infertrail.KindInference:
		b.inference(&lv, e.Seq)
	case infertrail.KindToolCall:
		r.Sections.Agency.ToolCalls++
		if lv.attrBool("tool.is_error") || lv.attrString("error.type") != "" {
			r.Sections.Agency.ToolErrors++
		}
	case infertrail.KindDownstreamCall:
		r.Sections.Agency.DownstreamCalls++
	case infertrail.KindPolicyDecision:
		b.decisions[orUnset(lv.attrString("policy.result"))]++
	case infertrail.KindApproval:
		b.approvals[orUnset(lv.attrString("approval.decision"))]++
	case infertrail.KindCredential:
		ev := orUnset(lv.attrString("credential.event"))
		b.credEvents[ev]++
		if ev == "issued" {
			if ttl, ok := lv.attrNumber("credential.ttl_seconds"); ok && ttl > r.Parameters.LongLivedCredential.Seconds() {
				r.Sections.Identities.LongLived++
			}
		}
	case infertrail.KindAccess:
		ac := &r.Sections.Access
		ac.Total++
		action := orUnset(lv.attrString("access.action"))
		b.actions[action]++
		switch action {
		case "hold.add":
			r.Sections.Retention.HoldsPlaced++
		case "hold.release":
			r.Sections.Retention.HoldsReleased++
		}
		if lv.attrString("access.reason") != "" || lv.attrString("hold.reason") != "" {
			ac.WithReason++
		}
		id := cmp.Or(actorID, fp)
		if id != "" && len(b.accessors) < MaxDistinct {
			b.accessors[id] = struct{}{}
		}
	case infertrail.KindErasure:
		rt := &r.Sections.Retention
		rt.Erasures++
		trigger := orUnset(lv.attrString("erasure.trigger"))
		b.triggers[trigger]++
		scope := lv.attrString("erasure.scope")
		if scope != "" && len(b.scopes) < MaxDistinct {
			b.scopes[scope] = struct{}{}
		}
		if len(rt.ErasureList) < MaxReportList {
			rt.ErasureList = append(rt.ErasureList, Erasure{Seq: e.Seq, Time: time.Unix(0, e.Received).UTC(),
				Trigger: trigger, Scope: scope, Kind: lv.attrString("erasure.kind")})
		}
	}
}

// inference checks one inference record for the required fields.
func (b *builder) inference(lv *leafView, seq int64) {
	c := &b.r.Sections.Completeness
	c.Inferences++
	ok := true
	if !lv.committed("gen_ai.input.messages") {
		c.Missing.Prompt++
		ok = false
	}
	if !lv.committed("gen_ai.output.messages") {
		c.Missing.Response++
		ok = false
	}
	if lv.attrString("gen_ai.response.model") == "" {
		c.Missing.ModelVersion++
		ok = false
	}
	if lv.actorID == "" && lv.credential == "" {
		c.Missing.CallerIdentity++
		ok = false
	}
	if ok {
		c.Complete++
	} else if len(c.Examples) < 10 {
		c.Examples = append(c.Examples, seq)
	}
}

func (b *builder) countTenant(tenant string, kind infertrail.Kind) {
	t := b.tenants[tenant]
	if t == nil {
		if len(b.tenants) >= MaxReportTenants {
			if b.other == nil {
				b.other = &TenantCount{Tenant: "(other tenants)", ByKind: map[string]int64{}}
			}
			t = b.other
			b.r.Sections.Volume.TenantsCapped = true
		} else {
			t = &TenantCount{Tenant: tenant, ByKind: map[string]int64{}}
			b.tenants[tenant] = t
		}
	}
	t.Records++
	t.ByKind[string(kind)]++
}

// findings counts the findings about records of the period: those whose
// earliest record was received in it.
func (b *builder) findings(ctx context.Context) error {
	f := &b.r.Sections.Findings
	f.BySeverity = map[string]int64{}
	f.ByDetector = []DetectorFindings{}
	fr, ok := b.src.(findingReader)
	if !ok {
		f.Status = StatusUnavailable
		f.Notes = append(f.Notes, "The store keeps no findings, so none are reported; run the detectors, or use a store that keeps them.")
		return nil
	}
	f.Available = true
	first, last := b.r.Scan.FirstSeq, b.r.Scan.LastSeq
	if first < 0 {
		return nil
	}
	by := map[string]*DetectorFindings{}
	before := int64(0)
	for {
		n, oldest := 0, int64(0)
		q := infertrail.FindingQuery{Seq: -1, Before: before, Limit: infertrail.MaxQueryLimit}
		if b.only != nil {
			q.Tenants = b.r.Tenants
		}
		err := fr.Findings(ctx, q, func(x *infertrail.Finding) error {
			n++
			oldest = x.N
			if len(x.Records) == 0 || x.Records[0] < first || x.Records[0] > last {
				return nil
			}
			d := by[x.Detector]
			if d == nil {
				d = &DetectorFindings{Detector: x.Detector}
				by[x.Detector] = d
			}
			switch x.Severity {
			case infertrail.SeverityLow:
				d.Low++
			case infertrail.SeverityMedium:
				d.Medium++
			case infertrail.SeverityHigh:
				d.High++
			}
			d.Total++
			f.Total++
			f.BySeverity[string(x.Severity)]++
			return nil
		})
		if errors.Is(err, errNoFindings) {
			f.Available = false
			f.Status = StatusUnavailable
			f.Notes = append(f.Notes, "The store keeps no findings, so none are reported; run the detectors, or use a store that keeps them.")
			return nil
		}
		if errors.Is(err, infertrail.ErrNoIndex) {
			f.Available = false
			f.Status = StatusUnavailable
			f.Notes = append(f.Notes, "The log was read without its index file (a backup holds none), where the detectors keep their findings, so none are reported; a server started on the log rebuilds them.")
			return nil
		}
		if err != nil {
			return fmt.Errorf("read findings: %w", err)
		}
		if n < infertrail.MaxQueryLimit || oldest <= 1 {
			break
		}
		before = oldest
	}
	for _, d := range by {
		f.ByDetector = append(f.ByDetector, *d)
	}
	slices.SortFunc(f.ByDetector, func(a, b DetectorFindings) int {
		if a.High != b.High {
			return int(b.High - a.High)
		}
		if a.Total != b.Total {
			return int(b.Total - a.Total)
		}
		return strings.Compare(a.Detector, b.Detector)
	})
	return nil
}

// finish turns the counters into sections and sets each section's status.
func (b *builder) finish() {
	r := b.r
	s := &r.Sections
	records := r.Scan.Records

	v := &s.Volume
	v.Records = records
	v.ByKind = make([]Count, 0, len(infertrail.Kinds))
	for _, k := range infertrail.Kinds {
		v.ByKind = append(v.ByKind, Count{string(k), b.kinds[k]})
	}
	v.BySrc = sortedCounts(b.sources)
	v.ByTenant = make([]TenantCount, 0, len(b.tenants)+1)
	for _, t := range b.tenants {
		v.ByTenant = append(v.ByTenant, *t)
	}
	sort.Slice(v.ByTenant, func(i, j int) bool {
		a, c := v.ByTenant[i], v.ByTenant[j]
		if a.Records != c.Records {
			return a.Records > c.Records
		}
		return a.Tenant < c.Tenant
	})
	if b.other != nil {
		v.ByTenant = append(v.ByTenant, *b.other)
	}
	v.Actors = int64(len(b.actors))
	v.Tenants = int64(len(b.tenants))
	v.Activity = make([]Bucket, len(b.buckets))
	for i, n := range b.buckets {
		v.Activity[i] = Bucket{Start: time.Unix(0, b.from+int64(i)*b.bucketNS).UTC(), Records: n}
		if n == 0 {
			v.EmptyBuckets++
		}
	}
	v.Status = StatusOK
	switch {
	case records == 0:
		v.note(StatusNoData, "No record was received in the period.")
	case v.EmptyBuckets > 0:
		v.Notes = append(v.Notes, fmt.Sprintf("%d of %d periods of %d hours have no record: either nothing ran, or capture stopped.",
			v.EmptyBuckets, len(v.Activity), v.BucketHours))
	}
	if r.Scan.Unparsable > 0 {
		v.note(StatusAttention, "%d records do not parse: the store is damaged; run 'infertrail verify'.", r.Scan.Unparsable)
	}

	c := &s.Completeness
	c.Status = StatusOK
	c.CompleteShare = 1
	if c.Examples == nil {
		c.Examples = []int64{}
	}
	if c.Inferences == 0 {
		c.note(StatusNoData, "No inference record was received in the period.")
	} else {
		c.CompleteShare = float64(c.Complete) / float64(c.Inferences)
		if c.Complete < c.Inferences {
			c.note(StatusAttention, "%d of %d inference records lack a required field.", c.Inferences-c.Complete, c.Inferences)
		}
	}

	ts := &s.Timestamps
	ts.Status = StatusOK
	if records == 0 {
		ts.note(StatusNoData, "No record was received in the period.")
	}
	if ts.ObservedAhead > 0 {
		ts.note(StatusAttention, "%d records were observed more than %s after the server received them: a capture clock runs ahead.",
			ts.ObservedAhead, r.Parameters.ClockSkew)
	}
	if ts.ReceivedOutOfOrder > 0 {
		ts.note(StatusAttention, "%d records were received, by the server's clock, before the record sequenced before them: server clocks differ or stepped back.",
			ts.ReceivedOutOfOrder)
	}
	if ts.ObservedLate > 0 {
		ts.Notes = append(ts.Notes, fmt.Sprintf("%d records reached the server more than %s after they were observed (batched or buffered capture).",
			ts.ObservedLate, r.Parameters.ClockSkew))
	}

	b.cp.finish(b)

	f := &s.Findings
	if f.Status == "" {
		f.Status = StatusOK
		if records == 0 {
			f.note(StatusNoData, "No record was received in the period.")
		} else if n := f.BySeverity[string(infertrail.SeverityHigh)]; n > 0 {
			f.note(StatusAttention, "%d high-severity findings.", n)
		}
	}

	ag := &s.Agency
	ag.Status = StatusOK
	ag.PolicyDecisions = sortedCounts(b.decisions)
	ag.Approvals = sortedCounts(b.approvals)
	if ag.ToolCalls+ag.DownstreamCalls == 0 && len(b.decisions) == 0 {
		ag.note(StatusNoData, "No tool call, downstream call or policy decision was received in the period.")
	} else if ag.ToolCalls > 0 && len(b.decisions) == 0 {
		ag.Notes = append(ag.Notes, "Tools ran, but no policy decision was recorded in the period.")
	}

	id := &s.Identities
	id.Status = StatusOK
	id.CredentialEvents = sortedCounts(b.credEvents)
	id.Credentials = int64(len(b.credentials))
	if records == 0 {
		id.note(StatusNoData, "No record was received in the period.")
	}
	if id.Anonymous > 0 {
		id.note(StatusAttention, "%d records name no actor and no credential.", id.Anonymous)
	}
	if id.Shared > 0 {
		id.note(StatusAttention, "%d credentials were used by more than one actor id.", id.Shared)
	}
	if id.LongLived > 0 {
		id.note(StatusAttention, "%d credentials were issued for longer than %s.", id.LongLived, r.Parameters.LongLivedCredential)
	}

	rt := &s.Retention
	rt.Status = StatusOK
	rt.ByTrigger = sortedCounts(b.triggers)
	rt.Scopes = int64(len(b.scopes))
	if rt.ErasureList == nil {
		rt.ErasureList = []Erasure{}
	}
	if !rt.OldestRecord.IsZero() {
		rt.LogAgeDays = r.GeneratedAt.Sub(rt.OldestRecord).Hours() / 24
		if min := r.Parameters.MinRetention; min > 0 && rt.LogAgeDays < min.Hours()/24 {
			rt.Notes = append(rt.Notes, fmt.Sprintf("The log's first record is %.0f days old, less than the %s retention the parameters require: the log is younger than that, so the requirement cannot be shown yet.",
				rt.LogAgeDays, r.Parameters.MinRetention))
		}
	} else {
		rt.note(StatusNoData, "The log is empty.")
	}

	ac := &s.Access
	ac.Status = StatusOK
	ac.ByAction = sortedCounts(b.actions)
	ac.Accessors = int64(len(b.accessors))
	if ac.Total == 0 {
		ac.Notes = append(ac.Notes, "No one read or exported evidence, and no administrative action was recorded, in the period.")
	} else if ac.WithReason < ac.Total {
		ac.Notes = append(ac.Notes, fmt.Sprintf("%d of %d access records give no reason.", ac.Total-ac.WithReason, ac.Total))
	}
	for _, sec := range []*SectionStatus{&v.SectionStatus, &c.SectionStatus, &ts.SectionStatus, &s.Integrity.SectionStatus,
		&f.SectionStatus, &ag.SectionStatus, &id.SectionStatus, &rt.SectionStatus, &ac.SectionStatus} {
		if sec.Notes == nil {
			sec.Notes = []string{}
		}
	}
}

// sortedCounts returns the counts most first, then by value.
func sortedCounts(m map[string]int64) []Count {
	out := make([]Count, 0, len(m))
	for k, n := range m {
		out = append(out, Count{k, n})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Count != out[j].Count {
			return out[i].Count > out[j].Count
		}
		return out[i].Value < out[j].Value
	})
	return out
}

func orUnset(s string) string {
	if s == "" {
		return "(unset)"
	}
	return s
}

// attrString returns a string attribute's value, or "" when it is absent
// or not a string.
func attrString(r *infertrail.Record, name string) string {
	v := r.Attributes[name]
	if len(v) < 2 || v[0] != '"' {
		return ""
	}
	if !strings.ContainsRune(string(v), '\\') {
		return string(v[1 : len(v)-1])
	}
	var s string
	if json.Unmarshal(v, &s) != nil {
		return ""
	}
	return s
}

func attrBool(r *infertrail.Record, name string) bool {
	return string(r.Attributes[name]) == "true"
}

func attrNumber(r *infertrail.Record, name string) (float64, bool) {
	v := r.Attributes[name]
	if len(v) == 0 || (v[0] != '-' && (v[0] < '0' || v[0] > '9')) {
		return 0, false
	}
	var f float64
	if json.Unmarshal(v, &f) != nil {
		return 0, false
	}
	return f, true
}
