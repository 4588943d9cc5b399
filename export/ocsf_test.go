package export_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/infertrail/infertrail"
	"github.com/infertrail/infertrail/export"
	"github.com/infertrail/infertrail/ledger"
)

// appendExamples appends the example record of each kind from
// docs/examples and returns their entries by kind.
func appendExamples(tb testing.TB, l *rptLog) map[infertrail.Kind]infertrail.Entry {
	tb.Helper()
	files, err := filepath.Glob("../docs/examples/*.json")
	if err != nil || len(files) != len(infertrail.Kinds) {
		tb.Fatalf("examples: %v %v", files, err)
	}
	var subs []ledger.Submission
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			tb.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			tb.Fatal(err)
		}
		delete(m, "source") // the server sets it
		b, _ = json.Marshal(m)
		r, raw, err := infertrail.ParseRecord(b, infertrail.Limits{})
		if err != nil {
			tb.Fatalf("%s: %v", f, err)
		}
		r.Source = "ingest"
		subs = append(subs, ledger.Submission{Record: r, Raw: raw})
	}
	res, err := l.Append(context.Background(), subs)
	if err != nil {
		tb.Fatal(err)
	}
	out := map[infertrail.Kind]infertrail.Entry{}
	for _, r := range res {
		e, err := l.Entry(context.Background(), r.Seq)
		if err != nil {
			tb.Fatal(err)
		}
		out[e.Kind] = e
	}
	return out
}

// TestOCSFRecord maps the example of each kind and checks the class, the
// attributes OCSF requires of it, the metadata, and that no content leaks.
func TestOCSFRecord(t *testing.T) {
	l := newRptLog(t)
	entries := appendExamples(t, l)
	cfg := export.OCSFConfig{Origin: rptOrigin, Version: "v1.2.3"}
	want := map[infertrail.Kind]struct {
		class, activity int
		required        []string // dotted paths that must be present
	}{
		infertrail.KindInference:      {6003, 99, []string{"actor", "api.operation", "src_endpoint", "resources"}},
		infertrail.KindToolCall:       {6003, 99, []string{"actor", "api.operation", "src_endpoint", "resources"}},
		infertrail.KindDownstreamCall: {6003, 1, []string{"actor", "api.operation", "src_endpoint", "http_request.http_method", "http_response.code", "dst_endpoint.hostname"}},
		infertrail.KindRetrieval:      {6003, 2, []string{"actor", "api.operation", "src_endpoint", "resources"}},
		infertrail.KindPolicyDecision: {6003, 99, []string{"actor", "api.operation", "src_endpoint", "action_id", "disposition_id", "policy.uid"}},
		infertrail.KindApproval:       {6003, 99, []string{"actor", "api.operation", "src_endpoint", "action_id", "disposition_id"}},
		infertrail.KindCredential:     {3004, 1, []string{"entity.uid", "entity.type", "actor.user.credential_uid"}},
		infertrail.KindAccess:         {6001, 7, []string{"web_resources", "actor.user.uid", "src_endpoint.ip"}},
		infertrail.KindErasure:        {6001, 4, []string{"web_resources"}},
	}
	// Content values of the examples that must never appear in an event.
	secrets := []string{"Pay invoice 7 of 1200 EUR", "IBAN DE89", "Invoice 7 matches purchase order", "pay_8XK2Q",
		"invoice 7 ACME amount due", "PO-2291"}
	for kind, e := range entries {
		t.Run(string(kind), func(t *testing.T) {
			b, r, err := export.OCSFRecord(&e, cfg)
			if err != nil {
				t.Fatal(err)
			}
			var ev map[string]any
			if err := json.Unmarshal(b, &ev); err != nil {
				t.Fatal(err)
			}
			w := want[kind]
			class, activity := int(ev["class_uid"].(float64)), int(ev["activity_id"].(float64))
			if class != w.class || activity != w.activity {
				t.Errorf("class %d activity %d, want %d %d", class, activity, w.class, w.activity)
			}
			if tu := int(ev["type_uid"].(float64)); tu != class*100+activity {
				t.Errorf("type_uid %d", tu)
			}
			if cat := int(ev["category_uid"].(float64)); cat != class/1000 {
				t.Errorf("category_uid %d", cat)
			}
			for _, p := range append([]string{"time", "severity_id", "metadata.version", "metadata.product.name",
				"metadata.product.vendor_name", "metadata.uid", "metadata.log_name", "metadata.tenant_uid", "activity_name",
				"class_name", "category_name", "type_name", "unmapped.leaf_hash", "unmapped.kind"}, w.required...) {
				if lookup(ev, p) == nil {
					t.Errorf("no %s in %s", p, b)
				}
			}
			md := ev["metadata"].(map[string]any)
			if md["uid"] != r.ID.String() || int64(md["sequence"].(float64)) != e.Seq || md["log_name"] != rptOrigin ||
				md["version"] != export.OCSFVersion || md["product"].(map[string]any)["version"] != "v1.2.3" {
				t.Errorf("metadata = %v", md)
			}
			if got := lookup(ev, "unmapped.leaf_hash"); got != export.LeafHash(e.Leaf) {
				t.Errorf("leaf hash %v", got)
			}
			if int64(ev["time"].(float64)) != r.Time.UnixMilli() {
				t.Errorf("time %v, want %d", ev["time"], r.Time.UnixMilli())
			}
			if len(r.Commitments) > 0 && lookup(ev, "unmapped.commitments") == nil {
				t.Errorf("commitments missing")
			}
			for _, s := range secrets {
				if strings.Contains(string(b), s) {
					t.Errorf("content %q leaked into %s", s, b)
				}
			}
			if strings.Contains(string(b), `"raw_data"`) {
				t.Errorf("raw_data without IncludeLeaf")
			}
		})
	}

	// With IncludeLeaf, raw_data is the leaf, which hashes to leaf_hash.
	e := entries[infertrail.KindInference]
	b, _, err := export.OCSFRecord(&e, export.OCSFConfig{IncludeLeaf: true})
	if err != nil {
		t.Fatal(err)
	}
	var ev map[string]any
	json.Unmarshal(b, &ev)
	if ev["raw_data"] != string(e.Leaf) || export.LeafHash([]byte(ev["raw_data"].(string))) != lookup(ev, "unmapped.leaf_hash") {
		t.Errorf("raw_data = %v", ev["raw_data"])
	}

	// Policy results and approval decisions map onto the Security Control profile.
	for _, tc := range []struct {
		kind          infertrail.Kind
		attr, value   string
		action, disp  float64
		profileWanted bool
	}{
		{infertrail.KindPolicyDecision, "policy.result", "allow", 1, 1, true},
		{infertrail.KindPolicyDecision, "policy.result", "deny", 2, 2, true},
		{infertrail.KindPolicyDecision, "policy.result", "modify", 1, 11, true},
		{infertrail.KindPolicyDecision, "policy.result", "require_approval", 1, 14, true},
		{infertrail.KindApproval, "approval.decision", "rejected", 2, 25, true},
	} {
		seqs := l.add(t, rec{kind: tc.kind, tenant: "acme", recv: t0, attrs: map[string]any{tc.attr: tc.value}})
		e, _ := l.Entry(context.Background(), seqs[0])
		b, _, err := export.OCSFRecord(&e, cfg)
		if err != nil {
			t.Fatal(err)
		}
		var ev map[string]any
		json.Unmarshal(b, &ev)
		if ev["action_id"] != tc.action || ev["disposition_id"] != tc.disp || lookup(ev, "metadata.profiles") == nil {
			t.Errorf("%s %s: action %v disposition %v", tc.kind, tc.value, ev["action_id"], ev["disposition_id"])
		}
		// An actor is required of API Activity even when the record names none.
		if ev["actor"] == nil {
			t.Errorf("%s without an actor: no actor object", tc.kind)
		}
	}
}

// lookup returns the value at a dotted path, or nil.
func lookup(m map[string]any, path string) any {
	var v any = m
	for _, p := range strings.Split(path, ".") {
		mm, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = mm[p]
	}
	return v
}

func TestOCSFFinding(t *testing.T) {
	id := infertrail.NewUUID()
	related := infertrail.NewUUID()
	f := infertrail.Finding{ID: id, Detector: "hallucinated_tool_call", Severity: infertrail.SeverityHigh, Tenant: "acme",
		Subject: "trace=4bf92f3577b34da6a3ce929d0e0e4736", Records: []int64{3, 9}, Summary: "The model asked for approve_payment, which never ran.",
		Time: t0.UnixNano(), N: 42}
	b, err := export.OCSFFinding(&f, []infertrail.UUID{related, {}}, export.OCSFConfig{Origin: rptOrigin})
	if err != nil {
		t.Fatal(err)
	}
	var ev map[string]any
	json.Unmarshal(b, &ev)
	if ev["class_uid"] != 2004.0 || ev["type_uid"] != 200401.0 || ev["severity_id"] != 4.0 || ev["is_alert"] != true {
		t.Errorf("event = %s", b)
	}
	if lookup(ev, "finding_info.uid") != id.String() || lookup(ev, "finding_info.title") == nil ||
		lookup(ev, "finding_info.analytic.name") != "hallucinated_tool_call" || lookup(ev, "metadata.sequence") != 42.0 {
		t.Errorf("finding_info = %v", ev["finding_info"])
	}
	rel := lookup(ev, "finding_info.related_events").([]any)
	if len(rel) != 1 || rel[0].(map[string]any)["uid"] != related.String() {
		t.Errorf("related events = %v", rel)
	}
	if ev["time"] != float64(t0.UnixMilli()) {
		t.Errorf("time = %v", ev["time"])
	}
}

// BenchmarkOCSFRecord maps realistic records (the examples of each kind)
// to OCSF JSON, as a SIEM stream does for every record.
func BenchmarkOCSFRecord(b *testing.B) {
	l := newRptLog(b)
	var entries []infertrail.Entry
	for _, e := range appendExamples(b, l) {
		entries = append(entries, e)
	}
	cfg := export.OCSFConfig{Origin: rptOrigin, Version: "bench"}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if _, _, err := export.OCSFRecord(&entries[i%len(entries)], cfg); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
}
