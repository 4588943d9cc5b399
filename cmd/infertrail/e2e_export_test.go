package main

import (
	"archive/zip"
	"bytes"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/infertrail/infertrail/store/sqlite"
)

// exportSession returns a JSON array of one agent session's records of
// several kinds, in one trace, with content.
func exportSession(tb testing.TB, session, trace string) []byte {
	tb.Helper()
	actor := map[string]any{"id": "agent:e2e-export", "type": "agent", "on_behalf_of": "user:alice@acme.example"}
	recs := []map[string]any{
		{"kind": "inference", "span_id": "b7ad6b7169203331",
			"attributes": map[string]any{"gen_ai.request.model": "gpt-4o", "gen_ai.response.model": "gpt-4o-2024-08-06"},
			"content":    map[string]any{"gen_ai.input.messages": []any{map[string]any{"role": "user", "content": "Pay invoice 7 for " + session}}}},
		{"kind": "policy_decision", "span_id": "e3b0c44298fc1c14", "parent_span_id": "b7ad6b7169203331",
			"attributes": map[string]any{"policy.result": "allow", "gen_ai.tool.name": "approve_payment"},
			"content":    map[string]any{"policy.reasons": []any{"under the limit"}}},
		{"kind": "tool_call", "span_id": "c41d7e9a02f85b63", "parent_span_id": "b7ad6b7169203331",
			"attributes": map[string]any{"gen_ai.tool.name": "approve_payment"},
			"content":    map[string]any{"gen_ai.tool.call.arguments": map[string]any{"invoice": 7}, "gen_ai.tool.call.result": "scheduled <b>now</b>"}},
		{"kind": "downstream_call", "span_id": "6e9b3a1f7c2d4085", "parent_span_id": "c41d7e9a02f85b63",
			"attributes": map[string]any{"http.request.method": "POST", "http.response.status_code": 201},
			"content":    map[string]any{"http.request.body": map[string]any{"invoice_id": "INV-7"}}},
		{"kind": "credential", "span_id": "8a2e6f0c4b1d9375", "parent_span_id": "b7ad6b7169203331",
			"attributes": map[string]any{"credential.event": "issued"}},
	}
	for _, r := range recs {
		r["id"], r["tenant"], r["session_id"], r["trace_id"], r["actor"] = newID(), "acme", session, trace, actor
	}
	b, err := json.Marshal(recs)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// rewriteZip copies a zip archive, passing each file through edit, which
// may change its data or drop it (nil).
func rewriteZip(tb testing.TB, src, dst string, edit func(name string, data []byte) []byte) {
	tb.Helper()
	zr, err := zip.OpenReader(src)
	if err != nil {
		tb.Fatal(err)
	}
	defer zr.Close()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
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
		if data = edit(f.Name, data); data == nil {
			continue
		}
		w, err := zw.Create(f.Name)
		if err != nil {
			tb.Fatal(err)
		}
		w.Write(data)
	}
	if err := zw.Close(); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(dst, buf.Bytes(), 0o644); err != nil {
		tb.Fatal(err)
	}
}

// zipNames returns the names of a zip archive's files.
func zipNames(tb testing.TB, path string) []string {
	tb.Helper()
	zr, err := zip.OpenReader(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer zr.Close()
	var names []string
	for _, f := range zr.File {
		names = append(names, f.Name)
	}
	return names
}

// TestE2EExport exports evidence bundles from a data folder, verifies them
// offline with the log's key, a wrong key and no key, tampers with them,
// and checks that the export is itself recorded.
func TestE2EExport(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "data")
	out := t.TempDir()
	s := startServer(t, dir)
	const trace = "4bf92f3577b34da6a3ce929d0e0e4736"
	mustPost(t, s.url, exportSession(t, "sess-export", trace), 5)
	other, _ := batchBody(t, 6, 0, true) // records of other sessions
	mustPost(t, s.url, other, 6)
	total := s.base + 11
	waitCheckpoint(t, s.url, total)
	origin := strings.SplitN(s.vkey, "+", 2)[0]

	t.Run("server", func(t *testing.T) {
		// Through the API.
		path := filepath.Join(out, "server.zip")
		r := runCLI(t, nil, 60*time.Second, "export", "--session", "sess-export", "--content", "--out", path, "--server", s.url, "--token", s.token)
		if r.code != 0 || !strings.Contains(r.stdout, "Wrote "+path) {
			t.Fatalf("export --server:\n%s", r)
		}
		r = runCLI(t, nil, 60*time.Second, "verify", path, "--key", s.vkey)
		if r.code != 0 || !strings.Contains(r.stdout, "OK: 5 records verified offline") {
			t.Errorf("verify of the server's bundle:\n%s", r)
		}
	})

	if code := s.stop(); code != 0 {
		t.Fatalf("SIGTERM: exit %d\n--- stderr:\n%s", code, s.stderr)
	}

	bundle := filepath.Join(out, "session.zip")
	r := runCLI(t, nil, 60*time.Second, "export", "--session", "sess-export", "--content", "--reason", "audit AUD-118", "--out", bundle, "--data", dir)
	if r.code != 0 || !strings.Contains(r.stdout, "Wrote "+bundle+": 5 records of session sess-export, content revealed") ||
		!strings.Contains(r.stdout, "infertrail verify "+bundle+" --key "+s.vkey) {
		t.Fatalf("export --data:\n%s", r)
	}
	if m, _ := filepath.Glob(filepath.Join(out, ".infertrail-export-*")); len(m) != 0 {
		t.Errorf("export left temporary files: %v", m)
	}

	t.Run("verify", func(t *testing.T) {
		r := runCLI(t, nil, 60*time.Second, "verify", bundle, "--key", s.vkey)
		if r.code != 0 || !strings.Contains(r.stdout, "OK: 5 records verified offline") || !strings.Contains(r.stdout, "the key given") ||
			!strings.Contains(r.stdout, "5 fields matched their commitments") {
			t.Errorf("verify bundle --key:\n%s", r)
		}
		// Flags may also come first.
		r = runCLI(t, nil, 60*time.Second, "verify", "--key", s.vkey, bundle)
		if r.code != 0 || !strings.Contains(r.stdout, "OK: 5 records") {
			t.Errorf("verify --key bundle:\n%s", r)
		}
		r = runCLI(t, nil, 60*time.Second, "verify", bundle)
		if r.code != 0 || !strings.Contains(r.stdout, "OK: 5 records") || !strings.Contains(r.stderr, "key in the bundle itself") ||
			!strings.Contains(r.stdout, "taken from the bundle itself") {
			t.Errorf("verify bundle without a key:\n%s", r)
		}
		r = runCLI(t, nil, 60*time.Second, "verify", bundle, "--key", otherKey(t, origin))
		if r.code != 1 || !strings.Contains(r.stdout, "FAILED: checkpoint: ") {
			t.Errorf("verify bundle with a wrong key: want exit 1 and FAILED naming the checkpoint\n%s", r)
		}
		r = runCLI(t, nil, 20*time.Second, "verify", bundle, "--data", dir)
		if r.code == 0 || !strings.Contains(r.stderr, "not several") {
			t.Errorf("verify bundle --data:\n%s", r)
		}
		r = runCLI(t, nil, 20*time.Second, "verify", filepath.Join(out, "missing.zip"))
		if r.code == 0 || !strings.Contains(r.stderr, "infertrail: error: bundle:") {
			t.Errorf("verify of a missing bundle:\n%s", r)
		}
	})

	t.Run("tampered", func(t *testing.T) {
		var manifest struct {
			Records []struct {
				Seq  int64  `json:"seq"`
				Kind string `json:"kind"`
				Leaf string `json:"leaf"`
			} `json:"records"`
		}
		rewriteZip(t, bundle, filepath.Join(out, "copy.zip"), func(name string, data []byte) []byte {
			if name == "manifest.json" {
				if err := json.Unmarshal(data, &manifest); err != nil {
					t.Fatal(err)
				}
			}
			return data
		})
		var toolLeaf string
		var toolSeq int64
		for _, r := range manifest.Records {
			if r.Kind == "tool_call" {
				toolLeaf, toolSeq = r.Leaf, r.Seq
			}
		}
		for _, tc := range []struct {
			name string
			edit func(name string, data []byte) []byte
			want string
		}{
			{"leaf byte", func(name string, data []byte) []byte {
				if name == toolLeaf {
					return bytes.Replace(data, []byte("approve_payment"), []byte("approve_paymenT"), 1)
				}
				return data
			}, fmt.Sprintf("FAILED: record %d (%s): ", toolSeq, toolLeaf)},
			{"proof removed", func(name string, data []byte) []byte {
				if name == fmt.Sprintf("proofs/%d.proof", toolSeq) {
					return nil
				}
				return data
			}, fmt.Sprintf("FAILED: record %d (proofs/%d.proof): missing", toolSeq, toolSeq)},
			{"file added", func(name string, data []byte) []byte {
				if name == "summary.html" {
					return append(data, "<script>alert(1)</script>"...)
				}
				return data
			}, "FAILED: summary.html: "},
		} {
			t.Run(tc.name, func(t *testing.T) {
				bad := filepath.Join(out, strings.ReplaceAll(tc.name, " ", "-")+".zip")
				rewriteZip(t, bundle, bad, tc.edit)
				r := runCLI(t, nil, 60*time.Second, "verify", bad, "--key", s.vkey)
				if r.code != 1 || !strings.Contains(r.stdout, tc.want) {
					t.Errorf("verify of a bundle with %s: want exit 1 and %q\n%s", tc.name, tc.want, r)
				}
			})
		}
		// Cut short, as by an interrupted download.
		b, err := os.ReadFile(bundle)
		if err != nil {
			t.Fatal(err)
		}
		cut := filepath.Join(out, "cut.zip")
		if err := os.WriteFile(cut, b[:len(b)-100], 0o644); err != nil {
			t.Fatal(err)
		}
		r := runCLI(t, nil, 60*time.Second, "verify", cut, "--key", s.vkey)
		if r.code != 1 || !strings.Contains(r.stdout, "FAILED: bundle: not a complete zip archive") {
			t.Errorf("verify of a truncated bundle:\n%s", r)
		}
	})

	t.Run("recorded", func(t *testing.T) {
		// The export appended an access record naming the exported records.
		withDB(t, dir, func(db *sql.DB) {
			var leaf []byte
			if err := db.QueryRow(`SELECT leaf FROM records ORDER BY seq DESC LIMIT 1`).Scan(&leaf); err != nil {
				t.Fatal(err)
			}
			leaf = decodeLeaf(t, leaf)
			for _, want := range []string{`"kind":"access"`, `"access.action":"export"`, `"access.export.format":"bundle"`,
				`"access.export.records":5`, `"access.reason":"audit AUD-118"`, `"access.session_id":"sess-export"`, `"rel":"reads"`, `"source":"cli"`} {
				if !bytes.Contains(leaf, []byte(want)) {
					t.Errorf("the last record is not the export's access record: no %s in\n%s", want, leaf)
				}
			}
			if n := bytes.Count(leaf, []byte(`"rel":"reads"`)); n != 5 {
				t.Errorf("the access record links %d records, want 5", n)
			}
		})
		r := runCLI(t, nil, 60*time.Second, "verify", "--data", dir, "--key", s.vkey)
		if r.code != 0 {
			t.Errorf("verify --data after the export:\n%s", r)
		}
	})

	t.Run("selections", func(t *testing.T) {
		path := filepath.Join(out, "trace.zip")
		r := runCLI(t, nil, 60*time.Second, "export", "--trace", strings.ToUpper(trace), "--out", path, "--data", dir, "--title", "the payment")
		if r.code != 0 || !strings.Contains(r.stdout, "5 records of the payment, commitments only") {
			t.Fatalf("export --trace:\n%s", r)
		}
		for _, name := range zipNames(t, path) {
			if strings.HasPrefix(name, "content/") {
				t.Errorf("a bundle without --content holds %s", name)
			}
		}
		r = runCLI(t, nil, 60*time.Second, "verify", path, "--key", s.vkey)
		if r.code != 0 || !strings.Contains(r.stdout, "withheld: the bundle holds the commitments only (5 fields of 4 records)") {
			t.Errorf("verify of a bundle without content:\n%s", r)
		}
		path = filepath.Join(out, "seq.zip")
		r = runCLI(t, nil, 60*time.Second, "export", "--seq", fmt.Sprintf("%d,%d", s.base, s.base+7), "--content", "--out", path, "--data", dir)
		if r.code != 0 || !strings.Contains(r.stdout, fmt.Sprintf("2 records of records %d,%d", s.base, s.base+7)) {
			t.Fatalf("export --seq:\n%s", r)
		}
		if r := runCLI(t, nil, 60*time.Second, "verify", path, "--key", s.vkey); r.code != 0 {
			t.Errorf("verify of the --seq bundle:\n%s", r)
		}
	})

	t.Run("usage", func(t *testing.T) {
		for _, tc := range []struct {
			args []string
			want string
		}{
			{[]string{"export", "--out", "x.zip", "--data", dir}, "give one of --trace, --session and --seq"},
			{[]string{"export", "--session", "a", "--trace", trace, "--out", "x.zip", "--data", dir}, "give one of"},
			{[]string{"export", "--session", "sess-export", "--data", dir}, "--out is required"},
			{[]string{"export", "--session", "sess-export", "--out", "x.zip"}, "--data DIR or --server URL"},
			{[]string{"export", "--trace", "xyz", "--out", "x.zip", "--data", dir}, "W3C trace id"},
			{[]string{"export", "--seq", "1,-2", "--out", "x.zip", "--data", dir}, "not a sequence number"},
			{[]string{"export", "--session", "no-such-session", "--out", filepath.Join(out, "none.zip"), "--data", dir}, "no records of session no-such-session"},
			{[]string{"export", "--seq", "99999", "--out", filepath.Join(out, "none.zip"), "--data", dir}, "record 99999"},
		} {
			r := runCLI(t, nil, 30*time.Second, tc.args...)
			if r.code == 0 || !strings.Contains(r.stderr, tc.want) {
				t.Errorf("infertrail %s: want an error mentioning %q\n%s", strings.Join(tc.args, " "), tc.want, r)
			}
		}
		if _, err := os.Stat(filepath.Join(out, "none.zip")); err == nil {
			t.Error("a failed export left a bundle behind")
		}
	})

	t.Run("download", func(t *testing.T) {
		// --server against a stand-in for /v1/export that serves what the
		// test says: the bundle, a damaged bundle, or an error.
		good, err := os.ReadFile(bundle)
		if err != nil {
			t.Fatal(err)
		}
		var (
			mu                  sync.Mutex // guards the three below, shared with the handler
			gotQuery, gotReason string
			serve               = good
		)
		setServe := func(b []byte) { mu.Lock(); serve = b; mu.Unlock() }
		api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/v1/export" {
				http.NotFound(w, r)
				return
			}
			mu.Lock()
			gotQuery, gotReason = r.URL.RawQuery, r.Header.Get("X-InferTrail-Reason")
			serve := serve
			mu.Unlock()
			if serve == nil {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusForbidden)
				io.WriteString(w, `{"error":{"code":"forbidden","message":"the caller may not read content"}}`)
				return
			}
			w.Write(serve)
		}))
		defer api.Close()
		path := filepath.Join(out, "download.zip")
		r := runCLI(t, nil, 30*time.Second, "export", "--trace", trace, "--content", "--reason", "case 7", "--out", path, "--server", api.URL)
		if r.code != 0 || !strings.Contains(r.stdout, "Wrote "+path+": 5 records") {
			t.Fatalf("export --server:\n%s", r)
		}
		mu.Lock()
		if gotQuery != "content=true&trace="+trace || gotReason != "case 7" {
			t.Errorf("request: query %q, reason %q", gotQuery, gotReason)
		}
		mu.Unlock()
		if b, _ := os.ReadFile(path); !bytes.Equal(b, good) {
			t.Error("the downloaded bundle differs from what was served")
		}
		setServe(good[:len(good)/2])
		bad := filepath.Join(out, "download-bad.zip")
		r = runCLI(t, nil, 30*time.Second, "export", "--seq", "1,2", "--out", bad, "--server", api.URL)
		if r.code == 0 || !strings.Contains(r.stderr, "does not verify") {
			t.Errorf("export --server of a damaged bundle:\n%s", r)
		}
		if _, err := os.Stat(bad); err == nil {
			t.Error("a damaged download was kept")
		}
		setServe(nil)
		r = runCLI(t, nil, 30*time.Second, "export", "--session", "s", "--content", "--out", bad, "--server", api.URL)
		if r.code == 0 || !strings.Contains(r.stderr, "server answered 403: the caller may not read content") {
			t.Errorf("export --server refused:\n%s", r)
		}
	})
}

// decodeLeaf returns a leaf as the SQLite store keeps it, uncompressed.
func decodeLeaf(tb testing.TB, col []byte) []byte {
	tb.Helper()
	leaf, err := sqlite.DecodeLeafColumn(col)
	if err != nil {
		tb.Fatal(err)
	}
	return leaf
}
