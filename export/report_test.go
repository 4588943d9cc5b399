package export_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/infertrail/infertrail"
	"github.com/infertrail/infertrail/export"
	"github.com/infertrail/infertrail/ledger"
)

var t0 = time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC)

func buildReport(tb testing.TB, src export.ReportSource, from, to time.Time) *export.Report {
	tb.Helper()
	c, err := export.LoadControls("")
	if err != nil {
		tb.Fatal(err)
	}
	r, err := export.BuildReport(context.Background(), src, from, to, c)
	if err != nil {
		tb.Fatal(err)
	}
	return r
}

func count(cs []export.Count, value string) int64 {
	for _, c := range cs {
		if c.Value == value {
			return c.Count
		}
	}
	return 0
}

// TestReportSections builds a report over a log with every kind of record,
// some before and after the period, and checks each section's counts.
func TestReportSections(t *testing.T) {
	l := newRptLog(t)
	from, to := t0, t0.Add(7*24*time.Hour)

	// Before the period.
	l.add(t, inference("acme", from.Add(-48*time.Hour)), inference("acme", from.Add(-time.Minute)))
	l.sign(t)

	incomplete := inference("acme", from.Add(time.Hour))
	delete(incomplete.content, "gen_ai.output.messages")
	delete(incomplete.attrs, "gen_ai.response.model")
	anonymous := inference("globex", from.Add(2*time.Hour))
	anonymous.actor = infertrail.Actor{}
	ahead := inference("acme", from.Add(3*time.Hour))
	ahead.observed = ahead.recv.Add(time.Hour) // the capture clock runs an hour ahead
	var in []int64
	for _, r := range []rec{
		inference("acme", from),
		incomplete,
		anonymous,
		ahead,
		rec{kind: infertrail.KindToolCall, tenant: "acme", recv: from.Add(4 * time.Hour), actor: infertrail.Actor{ID: "agent:payments-bot"},
			attrs: map[string]any{"gen_ai.tool.name": "approve_payment", "tool.is_error": true}},
		rec{kind: infertrail.KindDownstreamCall, tenant: "acme", recv: from.Add(4 * time.Hour), actor: infertrail.Actor{ID: "agent:payments-bot"},
			attrs: map[string]any{"http.request.method": "POST", "http.response.status_code": 201}},
		rec{kind: infertrail.KindPolicyDecision, tenant: "acme", recv: from.Add(5 * time.Hour), actor: infertrail.Actor{ID: "agent:payments-bot"},
			attrs: map[string]any{"policy.result": "deny"}},
		rec{kind: infertrail.KindPolicyDecision, tenant: "acme", recv: from.Add(5 * time.Hour), actor: infertrail.Actor{ID: "agent:payments-bot"},
			attrs: map[string]any{"policy.result": "allow"}},
		rec{kind: infertrail.KindApproval, tenant: "acme", recv: from.Add(6 * time.Hour), actor: infertrail.Actor{ID: "user:bob"},
			attrs: map[string]any{"approval.decision": "approved"}},
		rec{kind: infertrail.KindCredential, tenant: "acme", recv: from.Add(7 * time.Hour),
			actor: infertrail.Actor{ID: "agent:payments-bot", CredentialFingerprint: "hmac-sha256:aa"},
			attrs: map[string]any{"credential.event": "issued", "credential.ttl_seconds": 7 * 86400}},
		rec{kind: infertrail.KindCredential, tenant: "acme", recv: from.Add(7 * time.Hour),
			actor: infertrail.Actor{ID: "agent:other-bot", CredentialFingerprint: "hmac-sha256:aa"}, // the same credential, another agent
			attrs: map[string]any{"credential.event": "used"}},
		rec{kind: infertrail.KindAccess, tenant: "acme", recv: from.Add(24 * time.Hour), actor: infertrail.Actor{ID: "user:carol"},
			attrs: map[string]any{"access.action": "export", "access.reason": "audit AUD-118"}},
		rec{kind: infertrail.KindAccess, tenant: "acme", recv: from.Add(24 * time.Hour), actor: infertrail.Actor{ID: "user:carol"},
			attrs: map[string]any{"access.action": "read_content"}},
		rec{kind: infertrail.KindAccess, tenant: "acme", recv: from.Add(25 * time.Hour), actor: infertrail.Actor{ID: "user:dpo"},
			attrs: map[string]any{"access.action": "hold.add", "hold.reason": "litigation 17"}},
		rec{kind: infertrail.KindErasure, tenant: "acme", recv: from.Add(26 * time.Hour), actor: infertrail.Actor{ID: "user:dpo"},
			attrs: map[string]any{"erasure.trigger": "request", "erasure.scope": "tenant=acme,session=s1", "erasure.reason": "GDPR"}},
		rec{kind: infertrail.KindErasure, tenant: "acme", recv: from.Add(27 * time.Hour), actor: infertrail.Actor{ID: "infertrail:retention"},
			attrs: map[string]any{"erasure.trigger": "retention", "erasure.scope": "tenant=acme", "erasure.kind": "inference"}},
	} {
		in = append(in, l.add(t, r)...)
		l.sign(t) // a checkpoint per record: no record waits
	}
	// After the period.
	l.add(t, inference("acme", to), inference("acme", to.Add(time.Hour)))
	l.sign(t)

	err := l.db.AddFindings(context.Background(), []infertrail.Finding{
		{ID: infertrail.NewUUID(), Detector: "unattributed_action", Severity: infertrail.SeverityHigh, Tenant: "acme", Records: []int64{in[4]}},
		{ID: infertrail.NewUUID(), Detector: "missing_fields", Severity: infertrail.SeverityLow, Tenant: "acme", Records: []int64{in[1]}},
		{ID: infertrail.NewUUID(), Detector: "missing_fields", Severity: infertrail.SeverityLow, Tenant: "globex", Records: []int64{in[2]}},
		{ID: infertrail.NewUUID(), Detector: "missing_fields", Severity: infertrail.SeverityLow, Tenant: "acme", Records: []int64{0}}, // before the period
	})
	if err != nil {
		t.Fatal(err)
	}

	r := buildReport(t, export.LogSource(l.Log), from, to)
	if r.Scan.Records != int64(len(in)) || r.Scan.FirstSeq != in[0] || r.Scan.LastSeq != in[len(in)-1] {
		t.Fatalf("scan = %+v, want %d records %d to %d", r.Scan, len(in), in[0], in[len(in)-1])
	}
	s := r.Sections

	if got := count(s.Volume.ByKind, "inference"); got != 4 {
		t.Errorf("inference records = %d, want 4", got)
	}
	if got := count(s.Volume.ByKind, "erasure"); got != 2 {
		t.Errorf("erasure records = %d, want 2", got)
	}
	if len(s.Volume.ByKind) != len(infertrail.Kinds) {
		t.Errorf("by_kind has %d kinds, want all %d", len(s.Volume.ByKind), len(infertrail.Kinds))
	}
	if s.Volume.Tenants != 2 || s.Volume.ByTenant[0].Tenant != "acme" || s.Volume.ByTenant[0].Records != int64(len(in))-1 {
		t.Errorf("tenants = %d %+v", s.Volume.Tenants, s.Volume.ByTenant)
	}
	if s.Volume.BucketHours != 24 || len(s.Volume.Activity) != 7 || s.Volume.EmptyBuckets != 5 {
		t.Errorf("activity: %dh buckets %+v, %d empty", s.Volume.BucketHours, s.Volume.Activity, s.Volume.EmptyBuckets)
	}

	c := s.Completeness
	if c.Inferences != 4 || c.Complete != 2 || c.Missing.Response != 1 || c.Missing.ModelVersion != 1 ||
		c.Missing.CallerIdentity != 1 || c.Missing.Prompt != 0 || c.Status != export.StatusAttention {
		t.Errorf("completeness = %+v", c)
	}
	if !slices.Equal(c.Examples, []int64{in[1], in[2]}) {
		t.Errorf("examples = %v, want %v", c.Examples, in[1:3])
	}

	if s.Timestamps.ObservedAhead != 1 || s.Timestamps.Status != export.StatusAttention {
		t.Errorf("timestamps = %+v", s.Timestamps)
	}

	ag := s.Agency
	if ag.ToolCalls != 1 || ag.ToolErrors != 1 || ag.DownstreamCalls != 1 || count(ag.PolicyDecisions, "deny") != 1 ||
		count(ag.PolicyDecisions, "allow") != 1 || count(ag.Approvals, "approved") != 1 {
		t.Errorf("agency = %+v", ag)
	}

	id := s.Identities
	if count(id.CredentialEvents, "issued") != 1 || count(id.CredentialEvents, "used") != 1 || id.LongLived != 1 ||
		id.Shared != 1 || id.Anonymous != 1 || id.Credentials != 1 {
		t.Errorf("identities = %+v", id)
	}

	rt := s.Retention
	if rt.Erasures != 2 || count(rt.ByTrigger, "request") != 1 || count(rt.ByTrigger, "retention") != 1 || rt.Scopes != 2 ||
		rt.HoldsPlaced != 1 || len(rt.ErasureList) != 2 || rt.ErasureList[1].Kind != "inference" {
		t.Errorf("retention = %+v", rt)
	}
	if !rt.OldestRecord.Equal(from.Add(-48 * time.Hour)) {
		t.Errorf("oldest record = %v", rt.OldestRecord)
	}

	ac := s.Access
	if ac.Total != 3 || count(ac.ByAction, "export") != 1 || count(ac.ByAction, "read_content") != 1 ||
		ac.WithReason != 2 || ac.Accessors != 2 {
		t.Errorf("access = %+v", ac)
	}

	in2 := s.Integrity
	if in2.Checkpoints != int64(len(in)) || in2.Checked != int64(len(in))+1 || in2.InvalidSignatures != 0 || in2.Inconsistent != 0 ||
		in2.Opening != in[0] || in2.Closing != in[len(in)-1]+1 || in2.Unsigned != 0 || len(in2.Gaps) != 0 {
		t.Errorf("integrity = %+v", in2)
	}
	if in2.Status != export.StatusOK {
		t.Errorf("integrity status %s: %v", in2.Status, in2.Notes)
	}

	f := s.Findings
	if !f.Available || f.Total != 3 || f.BySeverity["high"] != 1 || f.BySeverity["low"] != 2 || len(f.ByDetector) != 2 ||
		f.ByDetector[0] != (export.DetectorFindings{Detector: "unattributed_action", High: 1, Total: 1}) ||
		f.ByDetector[1] != (export.DetectorFindings{Detector: "missing_fields", Low: 2, Total: 2}) || f.Status != export.StatusAttention {
		t.Errorf("findings = %+v", f)
	}

	// Every control of the default mapping is evaluated, with evidence.
	if len(r.Controls) < 16 {
		t.Fatalf("%d controls", len(r.Controls))
	}
	for _, ctl := range r.Controls {
		if len(ctl.Evidence) == 0 || ctl.Status == "" {
			t.Errorf("control %s: %+v", ctl.ID, ctl)
		}
	}
	// One tenant's report: its records and findings, every checkpoint.
	g := buildReport(t, export.ForTenants(export.LogSource(l.Log), "globex"), from, to)
	if g.Scan.Records != 1 || g.Sections.Findings.Total != 1 || g.Sections.Integrity.Checked != r.Sections.Integrity.Checked ||
		!slices.Equal(g.Tenants, []string{"globex"}) || g.Sections.Volume.ByTenant[0].Tenant != "globex" {
		t.Errorf("tenant report: scan %+v, %d findings, integrity %+v, tenants %v", g.Scan, g.Sections.Findings.Total, g.Sections.Integrity, g.Tenants)
	}
	// A source that hides other tenants' records works too, without
	// measuring waits it cannot see.
	h := buildReport(t, hidingSource{export.LogSource(l.Log), "globex"}, from, to)
	if h.Scan.Records != 1 || h.Sections.Integrity.InvalidSignatures != 0 || h.Sections.Integrity.Checkpoints != 1 {
		t.Errorf("hiding source: scan %+v, integrity %+v", h.Scan, h.Sections.Integrity)
	}

	au8 := controlByID(t, r, "AU-8")
	if au8.Status != export.StatusAttention {
		t.Errorf("AU-8 status %s, want attention (a clock ran ahead)", au8.Status)
	}
}

// hidingSource shows the records of one tenant only.
type hidingSource struct {
	export.ReportSource
	tenant string
}

func (h hidingSource) Entries(ctx context.Context, start, end int64, fn func(*infertrail.Entry) error) error {
	return h.ReportSource.Entries(ctx, start, end, func(e *infertrail.Entry) error {
		if e.Tenant != h.tenant {
			return nil
		}
		return fn(e)
	})
}

func controlByID(tb testing.TB, r *export.Report, id string) export.ControlResult {
	tb.Helper()
	for _, c := range r.Controls {
		if c.ID == id {
			return c
		}
	}
	tb.Fatalf("no control %s", id)
	return export.ControlResult{}
}

// TestReportIntegrity checks that forged and inconsistent checkpoints, long
// waits for a checkpoint and unsigned records are reported.
func TestReportIntegrity(t *testing.T) {
	ctx := context.Background()
	from, to := t0, t0.Add(24*time.Hour)

	t.Run("clean", func(t *testing.T) {
		l := newRptLog(t)
		for i := range 5 {
			l.add(t, inference("acme", from.Add(time.Duration(i)*time.Minute)))
			l.sign(t)
		}
		r := buildReport(t, export.LogSource(l.Log), from, to)
		in := r.Sections.Integrity
		if in.Checkpoints != 5 || in.Checked != 5 || in.Opening != 0 || in.Closing != 5 || in.Status != export.StatusOK {
			t.Errorf("integrity = %+v", in)
		}
	})

	t.Run("forged and inconsistent", func(t *testing.T) {
		l := newRptLog(t)
		l.add(t, inference("acme", from), inference("acme", from.Add(time.Second)))
		l.sign(t) // size 2
		l.add(t, inference("acme", from.Add(2*time.Second)))
		// Size 3: a checkpoint signed by another key with the log's name.
		skey, _, _ := ledger.GenerateKey(rptOrigin)
		other, _, _, _ := ledger.KeyPair(skey)
		root, err := l.TreeHash(ctx, 3)
		if err != nil {
			t.Fatal(err)
		}
		forged, err := ledger.SignCheckpoint(other, rptOrigin, 3, root)
		if err != nil {
			t.Fatal(err)
		}
		if err := l.db.AddCheckpoint(ctx, infertrail.StoredCheckpoint{Size: 3, Note: forged.Note}); err != nil {
			t.Fatal(err)
		}
		l.add(t, inference("acme", from.Add(3*time.Second)))
		// Size 4: signed by the log's key, over a root that is not the tree's.
		bad, err := ledger.SignCheckpoint(l.signer, rptOrigin, 4, tlog.Hash{1, 2, 3})
		if err != nil {
			t.Fatal(err)
		}
		if err := l.db.AddCheckpoint(ctx, infertrail.StoredCheckpoint{Size: 4, Note: bad.Note}); err != nil {
			t.Fatal(err)
		}
		l.add(t, inference("acme", from.Add(4*time.Second)))
		good, err := ledger.SignCheckpoint(l.signer, rptOrigin, 5, mustTreeHash(t, l, 5))
		if err != nil {
			t.Fatal(err)
		}
		if err := l.db.AddCheckpoint(ctx, infertrail.StoredCheckpoint{Size: 5, Note: good.Note}); err != nil {
			t.Fatal(err)
		}

		r := buildReport(t, export.LogSource(l.Log), from, to)
		in := r.Sections.Integrity
		if in.InvalidSignatures != 1 || in.Inconsistent != 1 || in.Checked != 4 || in.Status != export.StatusAttention {
			t.Fatalf("integrity = %+v", in)
		}
		if in.Failures[0].Size != 3 || in.Failures[0].Check != "signature" || in.Failures[1].Size != 4 || in.Failures[1].Check != "consistency" {
			t.Errorf("failures = %+v", in.Failures)
		}
		if c := controlByID(t, r, "AU-9"); c.Status != export.StatusAttention {
			t.Errorf("AU-9 status %s", c.Status)
		}
		// The same from a store opened read-only.
		r2 := buildReport(t, export.StoreSource(l.db, l.verifier), from, to)
		if r2.Sections.Integrity.InvalidSignatures != 1 || r2.Sections.Integrity.Inconsistent != 1 {
			t.Errorf("store source: integrity = %+v", r2.Sections.Integrity)
		}
	})

	t.Run("gaps", func(t *testing.T) {
		l := newRptLog(t)
		l.add(t, inference("acme", from), inference("acme", from.Add(time.Second)))
		l.sign(t) // size 2: records waited 1s
		// Record 2 arrives; the next checkpoint comes only after record 3,
		// an hour later: record 2 waited at least an hour.
		l.add(t, inference("acme", from.Add(time.Hour)), inference("acme", from.Add(2*time.Hour)))
		l.sign(t) // size 4
		// An idle day, then records 4 and 5, signed within a second.
		l.add(t, inference("acme", from.Add(20*time.Hour)), inference("acme", from.Add(20*time.Hour+time.Second)))
		l.sign(t) // size 6
		// Records no checkpoint covers: they have waited since they came.
		l.add(t, inference("acme", from.Add(21*time.Hour)))

		r := buildReport(t, export.LogSource(l.Log), from, to)
		in := r.Sections.Integrity
		if len(in.Gaps) != 2 {
			t.Fatalf("gaps = %+v", in.Gaps)
		}
		if g := in.Gaps[0]; g.From != 2 || g.To != 4 || g.WaitSeconds != 3600 {
			t.Errorf("gap 0 = %+v", g)
		}
		if g := in.Gaps[1]; g.From != 6 || g.To != 0 {
			t.Errorf("gap 1 = %+v", g)
		}
		if in.Unsigned != 1 || in.Closing != 0 || in.Checkpoints != 3 || in.Status != export.StatusAttention {
			t.Errorf("integrity = %+v", in)
		}
	})

	t.Run("period in the middle", func(t *testing.T) {
		l := newRptLog(t)
		for day := range 5 {
			for i := range 10 {
				l.add(t, inference("acme", t0.Add(time.Duration(day)*24*time.Hour+time.Duration(i)*time.Second)))
			}
			l.sign(t)
		}
		// Day 2 only: records 20 to 29, between the checkpoints of 20 and 30.
		r := buildReport(t, export.LogSource(l.Log), t0.Add(48*time.Hour), t0.Add(72*time.Hour))
		if r.Scan.FirstSeq != 20 || r.Scan.LastSeq != 29 || r.Scan.Records != 10 {
			t.Fatalf("scan = %+v", r.Scan)
		}
		in := r.Sections.Integrity
		if in.Opening != 20 || in.Closing != 30 || in.Checkpoints != 1 || in.Inconsistent != 0 || in.Status != export.StatusOK {
			t.Errorf("integrity = %+v", in)
		}
		// A period with no record.
		r = buildReport(t, export.LogSource(l.Log), t0.Add(-48*time.Hour), t0.Add(-24*time.Hour))
		if r.Scan.Records != 0 || r.Sections.Volume.Status != export.StatusNoData || r.Sections.Integrity.Status != export.StatusNoData {
			t.Errorf("empty period: %+v %+v", r.Scan, r.Sections.Integrity)
		}
	})
}

func mustTreeHash(tb testing.TB, l *rptLog, n int64) tlog.Hash {
	tb.Helper()
	h, err := l.TreeHash(context.Background(), n)
	if err != nil {
		tb.Fatal(err)
	}
	return h
}

func TestBuildReportErrors(t *testing.T) {
	l := newRptLog(t)
	_, err := export.BuildReport(context.Background(), export.LogSource(l.Log), t0, t0, export.Controls{})
	if !errors.Is(err, infertrail.ErrInvalid) {
		t.Errorf("empty period: %v", err)
	}
	// The zero Controls means the built-in mapping.
	r, err := export.BuildReport(context.Background(), export.LogSource(l.Log), t0, t0.Add(time.Hour), export.Controls{})
	if err != nil || len(r.Controls) == 0 {
		t.Errorf("zero controls: %v, %d controls", err, len(r.Controls))
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	l.add(t, inference("acme", t0))
	if _, err := export.BuildReport(ctx, export.LogSource(l.Log), t0, t0.Add(time.Hour), export.Controls{}); err == nil {
		t.Errorf("cancelled context: no error")
	}
}

func TestLoadControls(t *testing.T) {
	c, err := export.LoadControls("")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"EU-AI-ACT-12", "EU-AI-ACT-19", "EU-AI-ACT-26-6", "AU-2", "AU-3", "AU-6", "AU-8", "AU-9", "AU-10",
		"AU-11", "AU-12", "AC-6(9)", "CSF-DE.CM", "CSF-PR.PS-04", "OWASP-NHI-TOP10", "OWASP-LLM06"}
	var got []string
	for _, ctl := range c.Controls {
		got = append(got, ctl.ID)
		if ctl.Description == "" || ctl.Framework == "" || ctl.Title == "" || len(ctl.Evidence) == 0 {
			t.Errorf("control %s is not filled in: %+v", ctl.ID, ctl)
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("controls = %v, want %v", got, want)
	}
	if c.Parameters.MinRetention != export.Duration(183*24*time.Hour) || c.Parameters.CheckpointMaxWait != export.Duration(5*time.Minute) {
		t.Errorf("parameters = %+v", c.Parameters)
	}

	const base = "version: 1\ncontrols:\n  - id: X-1\n    framework: F\n    title: T\n    evidence: [integrity]\n"
	for _, tc := range []struct {
		name, yaml string
		want       []string // substrings of the error
	}{
		{"syntax", "version: 1\ncontrols: [\n", []string{"line"}},
		{"unknown top field", "version: 1\ncontrol: []\n", []string{":2:", `unknown field "control"`}},
		{"no version", "controls: []\n", []string{":1:", "version"}},
		{"bad version", "version: 2\ncontrols: []\n", []string{":1:", "version"}},
		{"unknown section", strings.Replace(base, "[integrity]", "[integrity, volumes]", 1), []string{":6:", `"volumes"`, `control "X-1"`, "volume"}},
		{"unknown metric", strings.Replace(base, "[integrity]", "[integrity.gap]", 1), []string{":6:", `"integrity.gap"`, "gaps"}},
		{"missing title", strings.Replace(base, "    title: T\n", "", 1), []string{":3:", "title is missing"}},
		{"unknown control field", strings.Replace(base, "title: T", "titel: T", 1), []string{":5:", `"titel"`}},
		{"no evidence", strings.Replace(base, "    evidence: [integrity]\n", "", 1), []string{":3:", "evidence"}},
		{"duplicate id", base + "  - id: X-1\n    framework: F\n    title: T\n    evidence: [volume]\n", []string{":7:", "line 3"}},
		{"bad duration", "version: 1\nparameters:\n  clock_skew: 5 minutes\ncontrols: []\n", []string{":3:", "clock_skew", "15m"}},
		{"unknown parameter", "version: 1\nparameters:\n  max_wait: 5m\ncontrols: []\n", []string{":3:", `"max_wait"`}},
		{"zero duration", "version: 1\nparameters:\n  min_retention: 0d\ncontrols: []\n", []string{":3:", "more than zero"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "controls.yaml")
			if err := os.WriteFile(path, []byte(tc.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := export.LoadControls(path)
			if err == nil {
				t.Fatalf("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if !strings.Contains(err.Error(), path) {
				t.Errorf("error %q does not name the file", err)
			}
		})
	}
	if _, err := export.LoadControls(filepath.Join(t.TempDir(), "missing.yaml")); err == nil {
		t.Error("missing file: no error")
	}

	// A custom mapping with one metric and new parameters.
	path := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(path, []byte("version: 1\nparameters:\n  checkpoint_max_wait: 90s\n  min_retention: 365d\ncontrols:\n"+
		"  - id: ORG-1\n    framework: Org policy\n    title: Logs are signed\n    evidence: [integrity.gaps, volume]\n"), 0o600)
	c, err = export.LoadControls(path)
	if err != nil {
		t.Fatal(err)
	}
	if c.Parameters.CheckpointMaxWait != export.Duration(90*time.Second) || c.Parameters.MinRetention != export.Duration(365*24*time.Hour) ||
		c.Parameters.ClockSkew != export.Duration(2*time.Minute) {
		t.Errorf("parameters = %+v", c.Parameters)
	}
	if len(c.Controls) != 1 || c.Controls[0].Evidence[0] != (export.Evidence{Section: "integrity", Metric: "gaps"}) {
		t.Errorf("controls = %+v", c.Controls)
	}
}

// TestReportOutput renders a report as HTML and JSON.
func TestReportOutput(t *testing.T) {
	l := newRptLog(t)
	l.add(t, inference("acme", t0), inference(`x-"><script>alert(1)</script>`[:0]+"globex", t0.Add(time.Minute)))
	hostile := rec{kind: infertrail.KindErasure, tenant: "acme", recv: t0.Add(2 * time.Minute),
		attrs: map[string]any{"erasure.trigger": "request", "erasure.scope": `tenant=acme,session=<script>alert(1)</script>`}}
	l.add(t, hostile)
	l.sign(t)
	r := buildReport(t, export.LogSource(l.Log), t0, t0.Add(24*time.Hour))

	var h bytes.Buffer
	if err := r.WriteHTML(&h); err != nil {
		t.Fatal(err)
	}
	html := h.String()
	for _, bad := range []string{"<script", "javascript:", "http://", "https://", "<link", "<img"} {
		if strings.Contains(strings.ToLower(html), bad) {
			t.Errorf("HTML contains %q", bad)
		}
	}
	for _, want := range []string{`<html lang="en">`, "AU-9", "EU-AI-ACT-12", "OWASP-LLM06", `scope="col"`, "<caption>",
		"&lt;script&gt;", rptOrigin, "Checkpoint continuity"} {
		if !strings.Contains(html, want) {
			t.Errorf("HTML lacks %q", want)
		}
	}

	var j bytes.Buffer
	if err := r.WriteJSON(&j); err != nil {
		t.Fatal(err)
	}
	var back export.Report
	if err := json.Unmarshal(j.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if back.Scan.Records != 3 || back.Parameters != r.Parameters || len(back.Controls) != len(r.Controls) {
		t.Errorf("JSON round trip: %+v", back.Scan)
	}
	// The JSON field names are documented and stable.
	var m map[string]any
	json.Unmarshal(j.Bytes(), &m)
	wantKeys := map[string][]string{
		"":         {"format", "generated_at", "log", "period", "tenants", "parameters", "scan", "sections", "controls"},
		"sections": {"volume", "completeness", "timestamps", "integrity", "findings", "agency", "identities", "retention", "access"},
		"sections.integrity": {"status", "notes", "checkpoints", "checked", "invalid_signatures", "inconsistent", "opening_size",
			"closing_size", "unsigned", "longest_wait_seconds", "gaps", "failures"},
		"sections.completeness": {"status", "notes", "inferences", "complete", "complete_share", "missing", "examples"},
		"parameters":            {"checkpoint_max_wait_seconds", "clock_skew_seconds", "min_retention_seconds", "long_lived_credential_seconds"},
	}
	for path, keys := range wantKeys {
		obj := m
		if path != "" {
			for _, p := range strings.Split(path, ".") {
				obj = obj[p].(map[string]any)
			}
		}
		var got []string
		for k := range obj {
			got = append(got, k)
		}
		slices.Sort(got)
		w := slices.Clone(keys)
		slices.Sort(w)
		if !slices.Equal(got, w) {
			t.Errorf("%q keys = %v, want %v", path, got, w)
		}
	}

	// A report fetched as JSON can be evaluated against another mapping.
	c := export.Controls{Controls: []export.Control{{ID: "ORG-1", Title: "t", Framework: "f",
		Evidence: []export.Evidence{{Section: "integrity", Metric: "checkpoints"}}}}}
	back.ApplyControls(c)
	if len(back.Controls) != 1 || back.Controls[0].Evidence[0].Value != "1" {
		t.Errorf("re-applied controls = %+v", back.Controls)
	}
}

func ExampleLoadControls() {
	c, err := export.LoadControls("") // the built-in mapping, export/controls.yaml
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(len(c.Controls), c.Controls[0].ID, c.Parameters.MinRetention)
	// Output: 16 EU-AI-ACT-12 183d
}
