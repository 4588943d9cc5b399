package export_test

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/infertrail/infertrail"
	"github.com/infertrail/infertrail/export"
	"github.com/infertrail/infertrail/ledger"
	"github.com/infertrail/infertrail/ledger/ledgertest"
	"github.com/infertrail/infertrail/store/sqlite"
)

const testOrigin = "example.com/infertrail/export-test"

// testLog is a ledger.Log over a real SQLite store in a temporary folder.
// Its background signer is slowed down to once an hour, so that tests
// decide which checkpoints exist.
type testLog struct {
	*ledger.Log
	vkey     string
	verifier note.Verifier
}

func newTestLog(tb testing.TB) *testLog {
	tb.Helper()
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(tb.TempDir(), "log.db"), sqlite.Config{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	skey, vkey, err := ledger.GenerateKey(testOrigin)
	if err != nil {
		tb.Fatal(err)
	}
	signer, verifier, _, err := ledger.KeyPair(skey)
	if err != nil {
		tb.Fatal(err)
	}
	secret := make([]byte, 32)
	rand.Read(secret)
	l, err := ledger.Open(ctx, ledger.Config{Store: db, Signer: signer, Verifier: verifier, Origin: testOrigin,
		Secret: secret, KEK: ledgertest.NewKEK(tb), CheckpointInterval: time.Hour})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { l.Close() })
	return &testLog{Log: l, vkey: vkey, verifier: verifier}
}

// appendJSON appends ingest records given as JSON and returns their seqs.
func (l *testLog) appendJSON(tb testing.TB, srcs ...string) []int64 {
	tb.Helper()
	subs := make([]ledger.Submission, len(srcs))
	for i, src := range srcs {
		r, raw, err := infertrail.ParseRecord([]byte(src), infertrail.Limits{})
		if err != nil {
			tb.Fatalf("parse %s: %v", src, err)
		}
		r.Source = "test"
		subs[i] = ledger.Submission{Record: r, Raw: raw}
	}
	res, err := l.Append(context.Background(), subs)
	if err != nil {
		tb.Fatal(err)
	}
	seqs := make([]int64, len(res))
	for i, r := range res {
		seqs[i] = r.Seq
	}
	return seqs
}

// sign signs a checkpoint of the whole log now.
func (l *testLog) sign(tb testing.TB) ledger.Checkpoint {
	tb.Helper()
	cp, err := l.SignCheckpoint(context.Background())
	if err != nil {
		tb.Fatal(err)
	}
	return cp
}

// appendSession appends one agent session of seven records of as many
// kinds, in one trace, and returns their seqs in order: retrieval,
// inference, policy decision, approval, credential, tool call, downstream
// call. The prompt names the session, so tests can look for it.
func (l *testLog) appendSession(tb testing.TB, tenant, session string) []int64 {
	tb.Helper()
	var tr [16]byte
	rand.Read(tr[:])
	trace := hex.EncodeToString(tr[:])
	common := fmt.Sprintf(`"tenant":%q,"session_id":%q,"trace_id":%q,"actor":{"id":"agent:payments-bot","type":"agent","on_behalf_of":"user:alice@acme.example"}`,
		tenant, session, trace)
	return l.appendJSON(tb,
		`{"kind":"retrieval",`+common+`,"span_id":"5c2a9e17d04b3f68","parent_span_id":"b7ad6b7169203331",
			"attributes":{"gen_ai.operation.name":"retrieval","gen_ai.data_source.id":"acme-invoices"},
			"content":{"gen_ai.retrieval.query.text":"invoice 7 ACME amount due"}}`,
		`{"kind":"inference",`+common+`,"span_id":"b7ad6b7169203331",
			"attributes":{"gen_ai.operation.name":"chat","gen_ai.request.model":"gpt-4o","gen_ai.response.model":"gpt-4o-2024-08-06","gen_ai.usage.input_tokens":120},
			"content":{"gen_ai.input.messages":[{"role":"user","parts":[{"type":"text","content":"Pay invoice 7 of 1200 EUR to ACME for `+session+`"}]}],
			"gen_ai.output.messages":[{"role":"assistant","parts":[{"type":"tool_call","id":"call_1","name":"approve_payment","arguments":{"invoice":7,"amount_eur":1200}}]}]}}`,
		`{"kind":"policy_decision",`+common+`,"span_id":"e3b0c44298fc1c14","parent_span_id":"b7ad6b7169203331",
			"attributes":{"policy.engine":"opa","policy.result":"require_approval","gen_ai.tool.name":"approve_payment"},
			"content":{"policy.reasons":["amount_eur 1200 is above the 1000 EUR limit"]}}`,
		`{"kind":"approval","tenant":`+fmt.Sprintf("%q", tenant)+`,"session_id":`+fmt.Sprintf("%q", session)+`,"trace_id":"`+trace+`","actor":{"id":"user:bob@acme.example","type":"user"},
			"span_id":"1f4d8c2b6a9e0357","parent_span_id":"e3b0c44298fc1c14",
			"attributes":{"approval.decision":"approved","gen_ai.tool.name":"approve_payment"},
			"content":{"approval.rationale":"Invoice 7 matches PO-2291 <script>alert(1)</script> & \"quotes\""}}`,
		`{"kind":"credential",`+common+`,"span_id":"8a2e6f0c4b1d9375","parent_span_id":"b7ad6b7169203331",
			"attributes":{"credential.event":"issued","credential.ttl_seconds":300}}`,
		`{"kind":"tool_call",`+common+`,"span_id":"c41d7e9a02f85b63","parent_span_id":"b7ad6b7169203331",
			"attributes":{"gen_ai.operation.name":"execute_tool","gen_ai.tool.name":"approve_payment","gen_ai.tool.call.id":"call_1"},
			"content":{"gen_ai.tool.call.arguments":{"invoice":7,"amount_eur":1200},"gen_ai.tool.call.result":{"status":"scheduled","amount":1200.50,"big":1e21}}}`,
		`{"kind":"downstream_call",`+common+`,"span_id":"6e9b3a1f7c2d4085","parent_span_id":"c41d7e9a02f85b63",
			"attributes":{"http.request.method":"POST","url.full":"https://payments.acme.example/v2/payments","http.response.status_code":201},
			"content":{"http.request.body":{"invoice_id":"INV-7","note":"caf\u00e9 \u2028 </pre><img src=x>"}}}`,
	)
}

// noise appends n unrelated records.
func (l *testLog) noise(tb testing.TB, n int) []int64 {
	tb.Helper()
	srcs := make([]string, n)
	for i := range srcs {
		srcs[i] = fmt.Sprintf(`{"kind":"inference","tenant":"other","session_id":"noise","attributes":{"n":%d},"content":{"prompt":"noise %d"}}`, i, i)
	}
	return l.appendJSON(tb, srcs...)
}

// writeBundle writes a bundle of seqs and returns its bytes and manifest.
func (l *testLog) writeBundle(tb testing.TB, opts export.BundleOptions) ([]byte, export.Manifest) {
	tb.Helper()
	if opts.VerifierKey == "" {
		opts.VerifierKey = l.vkey
	}
	var buf bytes.Buffer
	m, err := export.WriteBundle(context.Background(), &buf, l.Log, opts)
	if err != nil {
		tb.Fatalf("WriteBundle: %v", err)
	}
	return buf.Bytes(), m
}

// verify verifies a bundle and fails the test unless it is OK.
func verifyOK(tb testing.TB, b []byte, key note.Verifier) *export.BundleReport {
	tb.Helper()
	rep, err := export.VerifyBundle(bytes.NewReader(b), int64(len(b)), key)
	if err != nil {
		tb.Fatalf("VerifyBundle: %v\n%s", err, rep)
	}
	if !rep.OK() {
		tb.Fatalf("VerifyBundle: no error, but the report is not OK:\n%s", rep)
	}
	return rep
}

// zipFiles returns the files of a zip archive by name.
func zipFiles(tb testing.TB, b []byte) map[string][]byte {
	tb.Helper()
	zr, err := zip.NewReader(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		tb.Fatal(err)
	}
	out := map[string][]byte{}
	for _, f := range zr.File {
		rc, err := f.Open()
		if err != nil {
			tb.Fatal(err)
		}
		data, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			tb.Fatal(err)
		}
		out[f.Name] = data
	}
	return out
}

func TestBundleRoundTrip(t *testing.T) {
	ctx := t.Context()
	l := newTestLog(t)
	l.noise(t, 3)
	sess := l.appendSession(t, "acme", "sess-42")
	first := l.sign(t) // the smallest checkpoint covering the session
	l.noise(t, 5)
	l.sign(t)
	l.noise(t, 2)
	latest := l.sign(t)

	depth := map[int64]int{sess[0]: 1, sess[1]: 0, sess[2]: 1, sess[3]: 2, sess[4]: 1, sess[5]: 1, sess[6]: 2}
	now := time.Date(2027, 2, 3, 14, 21, 7, 500_000_000, time.UTC)
	seqs := append(slices.Clone(sess), sess[3], sess[0]) // duplicates are ignored
	slices.Reverse(seqs)                                 // so is the order
	b, m := l.writeBundle(t, export.BundleOptions{Seqs: seqs, Content: true, Title: `session <b>sess-42</b> & "co"`,
		Depth: depth, Exporter: "user:carol@audit.example", Now: func() time.Time { return now }})

	// The manifest.
	if m.Format != export.BundleFormat || m.Version != export.BundleVersion || m.Origin != testOrigin || m.VerifierKey != l.vkey {
		t.Errorf("manifest: format %q version %d origin %q key %q", m.Format, m.Version, m.Origin, m.VerifierKey)
	}
	if m.Checkpoint.Size != first.Size || m.Checkpoint.Root != first.Root.String() {
		t.Errorf("checkpoint: size %d, want the smallest covering the records, %d", m.Checkpoint.Size, first.Size)
	}
	if m.Latest.Size != latest.Size || m.Latest.Root != latest.Root.String() {
		t.Errorf("latest checkpoint: size %d, want %d", m.Latest.Size, latest.Size)
	}
	if m.Exported != "2027-02-03T14:21:07.5Z" || m.Exporter != "user:carol@audit.example" || !m.Content {
		t.Errorf("manifest: exported %q by %q, content %v", m.Exported, m.Exporter, m.Content)
	}
	if len(m.Records) != len(sess) {
		t.Fatalf("manifest lists %d records, want %d", len(m.Records), len(sess))
	}
	files := zipFiles(t, b)
	for i, r := range m.Records {
		e, err := l.Entry(ctx, sess[i])
		if err != nil {
			t.Fatal(err)
		}
		if r.Seq != sess[i] || r.ID != e.ID || r.Kind != e.Kind || r.Depth != depth[r.Seq] {
			t.Errorf("manifest record %d: %+v; the log has seq %d id %s kind %s", i, r, e.Seq, e.ID, e.Kind)
		}
		// The leaf, byte for byte as stored.
		if !bytes.Equal(files[r.Leaf], e.Leaf) {
			t.Errorf("%s differs from the stored leaf", r.Leaf)
		}
		// Each proof is a C2SP tlog-proof that ledger.VerifyProof accepts.
		if idx, err := ledger.VerifyProof(files[r.Proof], e.Leaf, testOrigin, l.verifier); err != nil || idx != r.Seq {
			t.Errorf("%s: VerifyProof = %d, %v", r.Proof, idx, err)
		}
		if (r.Content != "") != (e.Kind != infertrail.KindCredential) {
			t.Errorf("record %d (%s): content file %q", r.Seq, r.Kind, r.Content)
		}
	}
	// Every file is listed with its SHA-256, and nothing else.
	if len(files) != len(m.Files)+1 {
		t.Errorf("the archive holds %d files; the manifest lists %d and itself", len(files), len(m.Files))
	}
	for name := range files {
		if _, ok := m.Files[name]; !ok && name != export.ManifestFile {
			t.Errorf("%s is not in the manifest", name)
		}
	}
	var mf export.Manifest
	if err := json.Unmarshal(files[export.ManifestFile], &mf); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(mf) != fmt.Sprint(m) {
		t.Errorf("manifest.json differs from the returned manifest")
	}

	// Verification, with the key and without.
	rep := verifyOK(t, b, l.verifier)
	if rep.KeyFromBundle || !rep.Consistent || !rep.Summary || !rep.Content || rep.Checkpoint.Size != first.Size || rep.Latest.Size != latest.Size {
		t.Errorf("report: %+v", rep)
	}
	if rep.Title != m.Title || rep.Exporter != m.Exporter || !rep.Exported.Equal(now) {
		t.Errorf("report: title %q exporter %q exported %v", rep.Title, rep.Exporter, rep.Exported)
	}
	wantChecked := []int{1, 2, 1, 1, 0, 2, 1}
	for i, rr := range rep.Records {
		if !rr.Included || rr.Checked != wantChecked[i] || rr.Erased+rr.Omitted+rr.Withheld != 0 || rr.Err != nil {
			t.Errorf("record %d: %+v", rr.Seq, rr)
		}
	}
	rep = verifyOK(t, b, nil)
	if !rep.KeyFromBundle || !strings.Contains(rep.String(), "taken from the bundle itself") {
		t.Errorf("without a key, the report does not say the bundle's own key was used:\n%s", rep)
	}
	out := rep.String()
	for _, want := range []string{"OK: 7 records verified offline", "size " + fmt.Sprint(first.Size), "8 fields matched", "summary.html shows", "tool_call", "\n" + fmt.Sprint(sess[3]) + " "} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}

	// The summary: escaped, self-contained, indented.
	html := string(files[export.SummaryFile])
	for _, want := range []string{
		"session &lt;b&gt;sess-42&lt;/b&gt; &amp; &#34;co&#34;", "gpt-4o-2024-08-06", "approve_payment", "require_approval",
		"agent:payments-bot", "user:alice@acme.example", "&lt;script&gt;alert(1)&lt;/script&gt;", `class="rec d2"`, testOrigin,
	} {
		if !strings.Contains(html, want) {
			t.Errorf("summary.html lacks %q", want)
		}
	}
	for _, bad := range []string{"<script", "<img", "<link", "<iframe", "@import", "url("} {
		if strings.Contains(strings.ToLower(html), bad) {
			t.Errorf("summary.html holds %q", bad)
		}
	}
	if m := regexp.MustCompile(`(?i)<[^>]*\s(src|href|on[a-z]+)\s*=`).FindString(html); m != "" {
		t.Errorf("summary.html has a tag that loads or runs something: %s", m)
	}
}

func TestBundleCheckpointChoice(t *testing.T) {
	l := newTestLog(t)
	a := l.noise(t, 5)
	cp5 := l.sign(t)
	b := l.noise(t, 5)
	cp10 := l.sign(t)
	c := l.noise(t, 5) // no checkpoint covers these yet
	for _, tc := range []struct {
		name         string
		seqs         []int64
		cp, latest   int64
		consistentTo int64
	}{
		{"old records", []int64{a[1], a[4]}, cp5.Size, cp10.Size, 0},
		{"newer records", []int64{a[0], b[2]}, cp10.Size, cp10.Size, 0},
		{"unsigned records", []int64{c[0]}, 15, 15, 0},
		{"all", append(append(slices.Clone(a), b...), c...), 15, 15, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bb, m := l.writeBundle(t, export.BundleOptions{Seqs: tc.seqs})
			if m.Checkpoint.Size != tc.cp || m.Latest.Size != tc.latest {
				t.Errorf("checkpoint %d, latest %d; want %d and %d", m.Checkpoint.Size, m.Latest.Size, tc.cp, tc.latest)
			}
			rep := verifyOK(t, bb, l.verifier)
			if rep.Checkpoint.Size != tc.cp || !rep.Consistent {
				t.Errorf("report: checkpoint %d consistent %v", rep.Checkpoint.Size, rep.Consistent)
			}
		})
	}
	// A bundle made later leads to the same checkpoint an auditor holds.
	l.noise(t, 3)
	l.sign(t)
	_, m := l.writeBundle(t, export.BundleOptions{Seqs: []int64{a[2]}})
	if m.Checkpoint.Size != cp5.Size || m.Checkpoint.Root != cp5.Root.String() || m.Latest.Size != 18 {
		t.Errorf("later bundle: checkpoint %d, latest %d; want %d and 18", m.Checkpoint.Size, m.Latest.Size, cp5.Size)
	}
}

func TestBundleWithheld(t *testing.T) {
	l := newTestLog(t)
	sess := l.appendSession(t, "acme", "sess-secret")
	b, m := l.writeBundle(t, export.BundleOptions{Seqs: sess, Title: "withheld"})
	if m.Content {
		t.Error("manifest says content is revealed")
	}
	for name, data := range zipFiles(t, b) {
		if strings.HasPrefix(name, "content/") {
			t.Errorf("a bundle without content holds %s", name)
		}
		for _, secret := range []string{"Pay invoice", "PO-2291", "invoice 7 ACME", "INV-7"} {
			if bytes.Contains(data, []byte(secret)) {
				t.Errorf("%s holds content %q", name, secret)
			}
		}
	}
	rep := verifyOK(t, b, l.verifier)
	withheld := 0
	for _, rr := range rep.Records {
		withheld += rr.Withheld
		if rr.Checked != 0 {
			t.Errorf("record %d: %d fields checked", rr.Seq, rr.Checked)
		}
	}
	if withheld != 8 || !strings.Contains(rep.String(), "withheld: the bundle holds the commitments only (8 fields of 6 records)") {
		t.Errorf("withheld %d fields:\n%s", withheld, rep)
	}
}

func TestBundleErased(t *testing.T) {
	ctx := t.Context()
	l := newTestLog(t)
	kept := l.appendSession(t, "acme", "sess-kept")
	gone := l.appendSession(t, "acme", "sess-gone")
	er, err := l.Erase(ctx, ledger.Erasure{Scope: "tenant=acme,session=sess-gone", Reason: "GDPR Art. 17 request DSR-1",
		Actor: infertrail.Actor{ID: "user:dpo", Type: "user"}})
	if err != nil {
		t.Fatal(err)
	}
	l.noise(t, 2)
	seqs := append(slices.Clone(kept[:2]), gone...)
	b, m := l.writeBundle(t, export.BundleOptions{Seqs: seqs, Content: true})
	// The erasure record comes with the bundle, to say who erased what.
	last := m.Records[len(m.Records)-1]
	if last.Seq != er.Seq || last.Kind != infertrail.KindErasure || last.Added != export.AddedErasure || last.Content != "" {
		t.Errorf("last record of the manifest: %+v; want the erasure record %d, added", last, er.Seq)
	}
	for name, data := range zipFiles(t, b) {
		if bytes.Contains(data, []byte("for sess-gone")) {
			t.Errorf("%s holds erased content", name)
		}
	}
	rep := verifyOK(t, b, l.verifier)
	for _, rr := range rep.Records {
		switch {
		case slices.Contains(gone, rr.Seq) && rr.Kind != infertrail.KindCredential:
			if rr.Erased == 0 || rr.Checked != 0 || !slices.Equal(rr.ErasedBy, []int64{er.Seq}) {
				t.Errorf("erased record %d: %+v", rr.Seq, rr)
			}
		case slices.Contains(kept, rr.Seq):
			if rr.Erased != 0 || rr.Checked == 0 {
				t.Errorf("kept record %d: %+v", rr.Seq, rr)
			}
		case rr.Seq == er.Seq:
			if rr.Added != export.AddedErasure || !rr.Included {
				t.Errorf("erasure record: %+v", rr)
			}
		}
	}
	if out := rep.String(); !strings.Contains(out, fmt.Sprintf("content of 6 records erased by record %d", er.Seq)) {
		t.Errorf("report:\n%s", out)
	}
	html := string(zipFiles(t, b)[export.SummaryFile])
	if !strings.Contains(html, fmt.Sprintf("erased by record %d", er.Seq)) {
		t.Error("summary.html does not say the content was erased")
	}

	// An exporter cannot hide content of another session behind this
	// erasure: its scope does not cover that session.
	bf := takeApart(t, b)
	var cf map[string]any
	if err := json.Unmarshal(bf.get(t, export.ContentFile(kept[1])), &cf); err != nil {
		t.Fatal(err)
	}
	cf["fields"].(map[string]any)["gen_ai.input.messages"] = map[string]any{"erased_by": er.Seq}
	data, _ := json.Marshal(cf)
	if data, err = infertrail.Canonicalize(data); err != nil {
		t.Fatal(err)
	}
	bf.set(export.ContentFile(kept[1]), data)
	bf.rehash()
	forged := bf.bytes(t)
	_, err = export.VerifyBundle(bytes.NewReader(forged), int64(len(forged)), l.verifier)
	if want := fmt.Sprintf("record %d (%s): content erased by record %d, whose scope tenant=acme,session=sess-gone does not cover the record", kept[1], export.ContentFile(kept[1]), er.Seq); err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("content passed off as erased: error %v; want %q", err, want)
	}
}

func TestWriteBundleErrors(t *testing.T) {
	l := newTestLog(t)
	seqs := l.noise(t, 3)
	_, otherKey, err := ledger.GenerateKey(testOrigin)
	if err != nil {
		t.Fatal(err)
	}
	many := make([]int64, export.MaxBundleRecords+1)
	for i := range many {
		many[i] = int64(i)
	}
	for _, tc := range []struct {
		name string
		opts export.BundleOptions
		want error
		msg  string
	}{
		{"no records", export.BundleOptions{}, infertrail.ErrInvalid, "no records"},
		{"past the log", export.BundleOptions{Seqs: []int64{seqs[0], 99}}, infertrail.ErrNotFound, "record 99"},
		{"negative", export.BundleOptions{Seqs: []int64{-1}}, infertrail.ErrInvalid, "negative"},
		{"too many", export.BundleOptions{Seqs: many}, infertrail.ErrTooLarge, "more than 100000"},
		{"other key", export.BundleOptions{Seqs: seqs, VerifierKey: otherKey}, infertrail.ErrInvalid, "not the log's key"},
		{"bad key", export.BundleOptions{Seqs: seqs, VerifierKey: "nonsense"}, infertrail.ErrInvalid, "verifier key"},
		{"title", export.BundleOptions{Seqs: seqs, Title: "a\nb"}, infertrail.ErrInvalid, "title"},
		{"exporter", export.BundleOptions{Seqs: seqs, Exporter: strings.Repeat("x", 1025)}, infertrail.ErrInvalid, "exporter"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.opts.VerifierKey == "" {
				tc.opts.VerifierKey = l.vkey
			}
			_, err := export.WriteBundle(t.Context(), io.Discard, l.Log, tc.opts)
			if !errors.Is(err, tc.want) || !strings.Contains(fmt.Sprint(err), tc.msg) {
				t.Errorf("WriteBundle = %v; want %v mentioning %q", err, tc.want, tc.msg)
			}
		})
	}
	// No verifier key at all.
	_, err = export.WriteBundle(t.Context(), io.Discard, l.Log, export.BundleOptions{Seqs: seqs})
	if !errors.Is(err, infertrail.ErrInvalid) {
		t.Errorf("WriteBundle without a verifier key = %v", err)
	}
}
