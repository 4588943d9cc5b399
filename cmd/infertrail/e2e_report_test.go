package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.yaml.in/yaml/v3"

	"github.com/infertrail/infertrail"
	"github.com/infertrail/infertrail/keys"
	"github.com/infertrail/infertrail/ledger"
	"github.com/infertrail/infertrail/store/sqlite"
)

// TestReportCLI writes compliance reports of a server's data folder, as
// HTML and JSON, and through --server.
func TestReportCLI(t *testing.T) {
	dir := t.TempDir()
	s := startServer(t, dir)
	body, _ := batchBody(t, 30, 0, true)
	mustPost(t, s.url, body, 30)
	mustPost(t, s.url, exportSession(t, "sess-report", "4bf92f3577b34da6a3ce929d0e0e4736"), 5)
	time.Sleep(1500 * time.Millisecond) // the server signs a checkpoint each second

	from := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)
	to := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)

	// HTML to a file, with the server running.
	out := filepath.Join(t.TempDir(), "report.html")
	res := runCLI(t, nil, time.Minute, "report", "--from", from, "--to", to, "--data", dir, "--out", out)
	if res.code != 0 {
		t.Fatalf("report: %s", res)
	}
	html, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"<!DOCTYPE html>", "EU-AI-ACT-12", "AU-9", "OWASP-LLM06", "Checkpoint continuity"} {
		if !strings.Contains(string(html), want) {
			t.Errorf("the HTML report lacks %q", want)
		}
	}
	if strings.Contains(string(html), "<script") {
		t.Errorf("the HTML report has a script")
	}
	if fi, _ := os.Stat(out); fi.Mode().Perm() != 0o600 {
		t.Errorf("report file mode %v", fi.Mode().Perm())
	}
	if !strings.Contains(res.stderr, "Wrote "+out) {
		t.Errorf("stderr: %s", res.stderr)
	}

	// JSON to standard output.
	res = runCLI(t, nil, time.Minute, "report", "--from", from, "--to", to, "--data", dir, "--format", "json", "-q")
	if res.code != 0 {
		t.Fatalf("report --format json: %s", res)
	}
	var rep struct {
		Format string `json:"format"`
		Scan   struct {
			Records int64 `json:"records"`
		} `json:"scan"`
		Sections struct {
			Volume struct {
				ByKind []struct {
					Value string `json:"value"`
					Count int64  `json:"count"`
				} `json:"by_kind"`
			} `json:"volume"`
			Integrity struct {
				Checkpoints       int64 `json:"checkpoints"`
				InvalidSignatures int64 `json:"invalid_signatures"`
				Inconsistent      int64 `json:"inconsistent"`
			} `json:"integrity"`
			Findings struct {
				Available bool `json:"available"`
			} `json:"findings"`
		} `json:"sections"`
		Controls []struct {
			ID string `json:"id"`
		} `json:"controls"`
	}
	if err := json.Unmarshal([]byte(res.stdout), &rep); err != nil {
		t.Fatalf("report JSON: %v\n%s", err, res.stdout)
	}
	if rep.Format != "infertrail-report/1" || rep.Scan.Records < 35 || len(rep.Controls) < 16 {
		t.Errorf("report: format %q, %d records, %d controls", rep.Format, rep.Scan.Records, len(rep.Controls))
	}
	in := rep.Sections.Integrity
	if in.Checkpoints == 0 || in.InvalidSignatures != 0 || in.Inconsistent != 0 {
		t.Errorf("integrity = %+v", in)
	}

	// A custom control mapping; a broken one is refused with its line.
	controls := filepath.Join(t.TempDir(), "controls.yaml")
	os.WriteFile(controls, []byte("version: 1\ncontrols:\n  - id: ORG-7\n    framework: Org\n    title: Signed logs\n    evidence: [integrity.checkpoints]\n"), 0o600)
	res = runCLI(t, nil, time.Minute, "report", "--from", from, "--to", to, "--data", dir, "--format", "json", "--controls", controls)
	if res.code != 0 || !strings.Contains(res.stdout, `"ORG-7"`) || strings.Contains(res.stdout, `"AU-9"`) {
		t.Errorf("custom controls: %s", res)
	}
	os.WriteFile(controls, []byte("version: 1\ncontrols:\n  - id: ORG-7\n    framework: Org\n    title: Signed logs\n    evidence: [integrity.checkpoint]\n"), 0o600)
	res = runCLI(t, nil, time.Minute, "report", "--from", from, "--to", to, "--data", dir, "--controls", controls)
	if res.code != 1 || !strings.Contains(res.stderr, "controls.yaml:6:") || !strings.Contains(res.stderr, `"integrity.checkpoint"`) ||
		!strings.Contains(res.stderr, "infertrail: hint:") {
		t.Errorf("broken controls: %s", res)
	}

	// Bad flags.
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"report", "--data", dir}, "--from and --to are required"},
		{[]string{"report", "--from", "yesterday", "--to", to, "--data", dir}, `--from "yesterday"`},
		{[]string{"report", "--from", to, "--to", from, "--data", dir}, "is not before"},
		{[]string{"report", "--from", from, "--to", to, "--data", dir, "--format", "pdf"}, "--format"},
		{[]string{"report", "--from", from, "--to", to}, "give --data DIR or --server URL"},
		{[]string{"report", "--from", from, "--to", to, "--data", dir, "--server", s.url}, "not both"},
	} {
		res := runCLI(t, nil, time.Minute, tc.args...)
		if res.code == 0 || !strings.Contains(res.stderr, tc.want) || !strings.Contains(res.stderr, "infertrail: error:") {
			t.Errorf("%v: %s", tc.args, res)
		}
	}

	// --server: the body is written as the server sent it; with
	// --controls, the server's JSON is evaluated against the local mapping.
	res = runCLI(t, nil, time.Minute, "report", "--from", from, "--to", to, "--data", dir, "--format", "json", "-q")
	served := res.stdout
	var gotQuery, gotAuth string
	fake := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/report" {
			http.NotFound(w, r)
			return
		}
		gotQuery, gotAuth = r.URL.RawQuery, r.Header.Get("Authorization")
		w.Write([]byte(served))
	}))
	defer fake.Close()
	res = runCLI(t, []string{"INFERTRAIL_TOKEN=tok-123"}, time.Minute, "report", "--from", from, "--to", to, "--server", fake.URL, "--format", "json")
	if res.code != 0 || res.stdout != served {
		t.Errorf("--server: %s", res)
	}
	if gotAuth != "Bearer tok-123" || !strings.Contains(gotQuery, "format=json") || !strings.Contains(gotQuery, "from=") {
		t.Errorf("request: query %q auth %q", gotQuery, gotAuth)
	}
	os.WriteFile(controls, []byte("version: 1\ncontrols:\n  - id: ORG-8\n    framework: Org\n    title: Signed logs\n    evidence: [integrity]\n"), 0o600)
	out2 := filepath.Join(t.TempDir(), "r.html")
	res = runCLI(t, nil, time.Minute, "report", "--from", from, "--to", to, "--server", fake.URL, "--controls", controls, "--out", out2)
	html2, _ := os.ReadFile(out2)
	if res.code != 0 || !strings.Contains(string(html2), "ORG-8") || !strings.Contains(gotQuery, "format=json") {
		t.Errorf("--server --controls: %s", res)
	}

	// The server's own endpoint, once it is wired.
	res = runCLI(t, []string{"INFERTRAIL_TOKEN=" + s.token}, time.Minute, "report", "--from", from, "--to", to, "--server", s.url, "--format", "json")
	switch {
	case res.code != 0 && strings.Contains(res.stderr, "404"):
		t.Logf("the server has no /v1/report yet: %s", res.stderr)
	case res.code != 0:
		t.Errorf("report --server: %s", res)
	case !strings.Contains(res.stdout, `"infertrail-report/1"`):
		t.Errorf("report --server answered %s", res.stdout)
	}
}

// TestSIEMConfig decodes and validates the siem section of the
// configuration file, and runs startSIEM over a real log: an HTTP stream
// delivers, and stop ends it.
func TestSIEMConfig(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"streams: [{type: http, http: {url: 'http://x'}}]", "siem.streams[0].name: missing"},
		{"streams: [{name: a, type: http, http: {url: 'http://x'}}, {name: a, type: http, http: {url: 'http://y'}}]", `"a" names two streams`},
		{"streams: [{name: a, type: kafka}]", `siem.streams[0] (a).type: "kafka"`},
		{"streams: [{name: a}]", "type: missing"},
		{"streams: [{name: a, type: http}]", "http.url: missing"},
		{"streams: [{name: a, type: syslog, syslog: {address: 'x:1', ca_file: ca.pem}}]", "need tls: true"},
		{"streams: [{name: a, type: http, kinds: [inferense], http: {url: 'http://x'}}]", `"inferense" is not a record kind`},
		{"streams: [{name: a, type: http, start: middle, http: {url: 'http://x'}}]", `start: "middle"`},
		{"streams: [{name: a, type: http, records: false, http: {url: 'http://x'}}]", "would deliver nothing"},
		{"streams: [{name: a, type: http, http: {url: 'http://x', auth: a, auth_env: B}}]", "one of auth, auth_env and auth_file"},
	} {
		var c siemConfig
		dec := yaml.NewDecoder(strings.NewReader(tc.yaml))
		dec.KnownFields(true)
		if err := dec.Decode(&c); err != nil {
			t.Fatalf("%s: %v", tc.yaml, err)
		}
		if err := c.validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.yaml, err, tc.want)
		}
	}

	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "log.db"), sqlite.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	skey, _, err := ledger.GenerateKey("example.com/siem-test")
	if err != nil {
		t.Fatal(err)
	}
	signer, verifier, _, _ := ledger.KeyPair(skey)
	kek, err := keys.CreateKeyring(filepath.Join(t.TempDir(), "content-keys"))
	if err != nil {
		t.Fatal(err)
	}
	lg, err := ledger.Open(ctx, ledger.Config{Store: db, Signer: signer, Verifier: verifier, Origin: "example.com/siem-test",
		Secret: make([]byte, 32), KEK: kek})
	if err != nil {
		t.Fatal(err)
	}
	defer lg.Close()

	var mu sync.Mutex
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer from-env" {
			http.Error(w, "no", http.StatusUnauthorized)
			return
		}
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, strings.Split(strings.TrimSpace(string(b)), "\n")...)
		mu.Unlock()
	}))
	defer srv.Close()
	t.Setenv("E2E_SIEM_AUTH", "Bearer from-env")
	var c siemConfig
	conf := "streams:\n  - name: test\n    type: http\n    max_wait: 10ms\n    http: {url: '" + srv.URL + "', auth_env: E2E_SIEM_AUTH, gzip: false}\n"
	dec := yaml.NewDecoder(strings.NewReader(conf))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		t.Fatal(err)
	}
	c.Registry = prometheus.NewRegistry()
	stop, err := startSIEM(ctx, c, lg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	var recs []*infertrail.Record
	for range 5 {
		recs = append(recs, &infertrail.Record{Kind: infertrail.KindInference, Source: "ingest"})
	}
	if _, err := lg.Record(ctx, recs...); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		mu.Lock()
		n := len(got)
		mu.Unlock()
		if n >= 5 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the stream delivered %d of 5 records", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The receiver has the records; the cursor moves once the stream has
	// read its 2xx answer.
	for {
		c, _ := db.Cursor(ctx, "siem:test")
		if c == 5 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("cursor %d", c)
		}
		time.Sleep(10 * time.Millisecond)
	}
	stop()
	if !strings.Contains(got[0], `"class_uid":6003`) {
		t.Errorf("event: %s", got[0])
	}
	if c, _ := db.Cursor(ctx, "siem:test"); c != 5 {
		t.Errorf("cursor %d", c)
	}
	// An unset auth variable is an error at start.
	c.Streams[0].HTTP.AuthEnv = "E2E_SIEM_UNSET"
	if _, err := startSIEM(ctx, c, lg, nil); err == nil || !strings.Contains(err.Error(), "E2E_SIEM_UNSET") {
		t.Errorf("unset auth_env: %v", err)
	}
}
