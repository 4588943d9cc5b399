package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/infertrail/infertrail"
	"github.com/infertrail/infertrail/access"
	"github.com/infertrail/infertrail/httpapi"
	"github.com/infertrail/infertrail/investigate"
	"github.com/infertrail/infertrail/ledger"
	"github.com/infertrail/infertrail/ledger/ledgertest"
	"github.com/infertrail/infertrail/redact"
	"github.com/infertrail/infertrail/store/sqlite"
)

const testOrigin = "example.com/infertrail/httpapi-test"

// exampleRecord is the record of the ingest documentation; it must be
// accepted exactly as it is written.
const exampleRecord = `{"kind":"inference","id":"0193a5b0-7c1e-7000-8000-000000000001","time":"2026-11-26T10:00:00.123456Z","tenant":"acme","actor":{"id":"agent:payments-bot","type":"agent","on_behalf_of":"user:alice@acme.example"},"session_id":"sess-42","trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","span_id":"00f067aa0ba902b7","attributes":{"gen_ai.operation.name":"chat","gen_ai.provider.name":"openai","gen_ai.request.model":"gpt-4o","gen_ai.response.model":"gpt-4o-2024-08-06","openai.response.system_fingerprint":"fp_abc123","gen_ai.request.temperature":0.2,"gen_ai.usage.input_tokens":120,"gen_ai.usage.output_tokens":30},"content":{"gen_ai.input.messages":[{"role":"user","parts":[{"type":"text","content":"Pay invoice 7 of 1200 EUR to ACME"}]}],"gen_ai.output.messages":[{"role":"assistant","parts":[{"type":"tool_call","id":"call_1","name":"approve_payment","arguments":{"invoice":7,"amount_eur":1200}}],"finish_reason":"tool_call"}]}}`

const exampleID = "0193a5b0-7c1e-7000-8000-000000000001"

// The trace of testRecord and exampleRecord, and the session of exampleRecord.
const (
	testTrace   = "4bf92f3577b34da6a3ce929d0e0e4736"
	testSession = "sess-42"
)

// testServer is the HTTP API over a ledger.Log over a real SQLite store in
// a temporary directory, served by httptest.
type testServer struct {
	url    string
	client *http.Client
	log    *ledger.Log
	db     *sqlite.DB
	vkey   string
	verif  note.Verifier
}

// newTestServer starts a server; edit, if not nil, changes the API's
// configuration first. Everything is closed when the test ends.
func newTestServer(tb testing.TB, edit func(*httpapi.Config)) *testServer {
	tb.Helper()
	db, err := sqlite.Open(tb.Context(), filepath.Join(tb.TempDir(), "log.db"), sqlite.Config{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	skey, _, err := ledger.GenerateKey(testOrigin)
	if err != nil {
		tb.Fatal(err)
	}
	signer, verif, vkey, err := ledger.KeyPair(skey)
	if err != nil {
		tb.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	logger := slog.New(slog.DiscardHandler)
	lg, err := ledger.Open(tb.Context(), ledger.Config{
		Store: db, Signer: signer, Verifier: verif, Origin: testOrigin,
		Secret:             bytes.Repeat([]byte{7}, 32),
		KEK:                ledgertest.NewKEK(tb),
		CheckpointInterval: 50 * time.Millisecond,
		Logger:             logger,
		Metrics:            ledger.NewMetrics(reg),
	})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { lg.Close() })
	fp, err := redact.NewFingerprinter(bytes.Repeat([]byte{7}, 32))
	if err != nil {
		tb.Fatal(err)
	}
	terms, err := investigate.NewTerms(bytes.Repeat([]byte{7}, 32))
	if err != nil {
		tb.Fatal(err)
	}
	engine, err := investigate.New(investigate.Config{Store: db, Terms: terms, Content: lg.ContentReader().ReadParts, Logger: logger,
		Checkpoint: func(ctx context.Context) (int64, tlog.Hash, error) {
			cp, err := lg.LatestCheckpoint(ctx)
			return cp.Size, cp.Root, err
		}})
	if err != nil {
		tb.Fatal(err)
	}
	cfg := httpapi.Config{Log: lg, VerifierKey: vkey, Logger: logger, Gatherer: reg, Registry: reg, Fingerprinter: fp, Investigate: engine}
	if edit != nil {
		edit(&cfg)
	}
	api, err := httpapi.New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	srv := httptest.NewServer(api)
	tb.Cleanup(srv.Close)
	return &testServer{url: srv.URL, client: srv.Client(), log: lg, db: db, vkey: vkey, verif: verif}
}

// do sends a request and returns the response, whose body has been read
// into the second result.
func (s *testServer) do(tb testing.TB, method, path string, header http.Header, body []byte) (*http.Response, []byte) {
	tb.Helper()
	req, err := http.NewRequestWithContext(tb.Context(), method, s.url+path, bytes.NewReader(body))
	if err != nil {
		tb.Fatal(err)
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	resp, err := s.client.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatal(err)
	}
	return resp, b
}

func (s *testServer) get(tb testing.TB, path string) (*http.Response, []byte) {
	tb.Helper()
	return s.do(tb, http.MethodGet, path, nil, nil)
}

// post sends body to POST /v1/records with contentType, or with no
// Content-Type header when contentType is empty.
func (s *testServer) post(tb testing.TB, contentType, body string) (*http.Response, []byte) {
	tb.Helper()
	h := http.Header{}
	if contentType != "" {
		h.Set("Content-Type", contentType)
	}
	return s.do(tb, http.MethodPost, "/v1/records", h, []byte(body))
}

type ingestResult struct {
	Seq    int64  `json:"seq"`
	ID     string `json:"id"`
	Status string `json:"status"`
}

// ingest posts body and requires a 200 answer, which it returns.
func (s *testServer) ingest(tb testing.TB, contentType, body string) []ingestResult {
	tb.Helper()
	resp, b := s.post(tb, contentType, body)
	if resp.StatusCode != http.StatusOK {
		tb.Fatalf("POST /v1/records = %d %s", resp.StatusCode, b)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		tb.Errorf("POST /v1/records Content-Type = %q", ct)
	}
	var out struct{ Records []ingestResult }
	if err := json.Unmarshal(b, &out); err != nil {
		tb.Fatalf("POST /v1/records answer %s: %v", b, err)
	}
	return out.Records
}

// fill appends n generated records, numbered from first, in requests of at
// most 256 records.
func (s *testServer) fill(tb testing.TB, first, n int) {
	tb.Helper()
	for n > 0 {
		k := min(n, 256)
		recs := make([]string, k)
		for i := range recs {
			recs[i] = testRecord(first + i)
		}
		if got := s.ingest(tb, "application/x-ndjson", strings.Join(recs, "\n")); len(got) != k {
			tb.Fatalf("ingested %d records, want %d", len(got), k)
		}
		first, n = first+k, n-k
	}
}

func (s *testServer) size(tb testing.TB) int64 {
	tb.Helper()
	n, err := s.log.TreeSize(tb.Context())
	if err != nil {
		tb.Fatal(err)
	}
	return n
}

// leaves returns every stored leaf, in order.
func (s *testServer) leaves(tb testing.TB) [][]byte {
	tb.Helper()
	var out [][]byte
	err := s.db.Entries(tb.Context(), 0, s.size(tb), func(e *infertrail.Entry) error {
		out = append(out, bytes.Clone(e.Leaf))
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

func (s *testServer) entry(tb testing.TB, seq int64) infertrail.Entry {
	tb.Helper()
	e, err := s.log.Entry(tb.Context(), seq)
	if err != nil {
		tb.Fatal(err)
	}
	return e
}

// checkpoint signs a checkpoint covering the whole tree now and returns it.
func (s *testServer) checkpoint(tb testing.TB) ledger.Checkpoint {
	tb.Helper()
	cp, err := s.log.SignCheckpoint(tb.Context())
	if err != nil {
		tb.Fatal(err)
	}
	if n := s.size(tb); cp.Size != n {
		tb.Fatalf("checkpoint of size %d, tree of size %d", cp.Size, n)
	}
	return cp
}

func testID(i int) string { return fmt.Sprintf("0193a5b0-7c1e-7000-9000-%012x", i) }

// testRecord is a small valid record with content, whose id depends on i.
func testRecord(i int) string {
	return fmt.Sprintf(`{"kind":"tool_call","id":%q,"tenant":"acme","trace_id":"4bf92f3577b34da6a3ce929d0e0e4736",`+
		`"attributes":{"gen_ai.tool.name":"lookup","n":%d},"content":{"gen_ai.tool.call.arguments":{"i":%d}}}`, testID(i), i, i)
}

type apiError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Record  *int   `json:"record"`
	Field   string `json:"field"`
}

// decodeError parses an error answer.
func decodeError(tb testing.TB, resp *http.Response, body []byte) apiError {
	tb.Helper()
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		tb.Errorf("error Content-Type = %q, want application/json", ct)
	}
	var e struct{ Error apiError }
	if err := json.Unmarshal(body, &e); err != nil || e.Error.Code == "" {
		tb.Fatalf("error body %q: %v", body, err)
	}
	return e.Error
}

// wantError checks an error answer; record -1 means no record index.
func wantError(tb testing.TB, resp *http.Response, body []byte, status int, code string, record int, field string) apiError {
	tb.Helper()
	if resp.StatusCode != status {
		tb.Fatalf("status %d, want %d (%s)", resp.StatusCode, status, body)
	}
	e := decodeError(tb, resp, body)
	if e.Code != code {
		tb.Errorf("error code %q, want %q (%s)", e.Code, code, body)
	}
	if record < 0 && e.Record != nil || record >= 0 && (e.Record == nil || *e.Record != record) {
		tb.Errorf("error record %v, want %d (%s)", e.Record, record, body)
	}
	if e.Field != field {
		tb.Errorf("error field %q, want %q (%s)", e.Field, field, body)
	}
	if e.Message == "" || e.Message == "internal error" {
		tb.Errorf("error message %q", e.Message)
	}
	return e
}

func TestIngestFormats(t *testing.T) {
	s := newTestServer(t, nil)
	next := 0
	tests := []struct {
		name  string
		ctype string
		n     int
		body  func(recs []string) string
	}{
		{"json array", "application/json", 3, func(recs []string) string { return "[" + strings.Join(recs, ",") + "]" }},
		{"json array with spaces", "application/json; charset=utf-8", 2, func(recs []string) string {
			return " \n[ " + strings.Join(recs, " ,\n ") + " ]\n"
		}},
		{"single object", "application/json", 1, func(recs []string) string { return recs[0] }},
		{"single object with spaces", "Application/JSON", 1, func(recs []string) string { return "\r\n " + recs[0] + " \n" }},
		{"ndjson", "application/x-ndjson", 3, func(recs []string) string { return strings.Join(recs, "\n") }},
		{"ndjson with blank lines", "application/x-ndjson", 3, func(recs []string) string {
			return "\n  \n" + strings.Join(recs, "\r\n\n \t\n") + "\n\n"
		}},
		{"ndjson one line without newline", "application/x-ndjson", 1, func(recs []string) string { return recs[0] }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := s.size(t)
			recs := make([]string, tt.n)
			for i := range recs {
				recs[i] = testRecord(next + i)
			}
			got := s.ingest(t, tt.ctype, tt.body(recs))
			if len(got) != tt.n {
				t.Fatalf("%d results, want %d: %+v", len(got), tt.n, got)
			}
			for i, r := range got {
				want := ingestResult{Seq: before + int64(i), ID: testID(next + i), Status: "appended"}
				if r != want {
					t.Errorf("result %d = %+v, want %+v", i, r, want)
				}
				if e := s.entry(t, r.Seq); e.ID.String() != r.ID {
					t.Errorf("record %d has id %s, want %s", r.Seq, e.ID, r.ID)
				}
			}
			if n := s.size(t); n != before+int64(tt.n) {
				t.Errorf("tree size %d, want %d", n, before+int64(tt.n))
			}
			next += tt.n
		})
	}
}

func TestIngestExampleRecord(t *testing.T) {
	received := time.Date(2026, 11, 26, 10, 0, 1, 5, time.UTC)
	s := newTestServer(t, func(c *httpapi.Config) { c.Now = func() time.Time { return received } })
	s.fill(t, 0, 2)
	got := s.ingest(t, "application/json", exampleRecord)
	if len(got) != 1 || got[0] != (ingestResult{Seq: 2, ID: exampleID, Status: "appended"}) {
		t.Fatalf("example record: %+v", got)
	}
	e := s.entry(t, 2)
	r, err := infertrail.ParseLeaf(e.Leaf)
	if err != nil {
		t.Fatalf("ParseLeaf: %v", err)
	}
	if r.Kind != infertrail.KindInference || r.ID.String() != exampleID || r.Tenant != "acme" ||
		!r.Time.Equal(time.Date(2026, 11, 26, 10, 0, 0, 123456000, time.UTC)) || r.Seq != 2 || r.Source != "ingest" ||
		r.Actor != (infertrail.Actor{ID: "agent:payments-bot", Type: "agent", OnBehalfOf: "user:alice@acme.example"}) ||
		r.SessionID != "sess-42" || r.TraceID != "4bf92f3577b34da6a3ce929d0e0e4736" || r.SpanID != "00f067aa0ba902b7" ||
		!r.ReceivedTime.Equal(received) {
		t.Errorf("stored leaf %s", e.Leaf)
	}
	if len(r.Attributes) != 8 || string(r.Attributes["gen_ai.request.temperature"]) != "0.2" {
		t.Errorf("stored attributes %v", r.Attributes)
	}
	if len(r.Commitments) != 2 || r.Commitments["gen_ai.input.messages"] == "" || r.Commitments["gen_ai.output.messages"] == "" {
		t.Errorf("stored commitments %v", r.Commitments)
	}
	if bytes.Contains(e.Leaf, []byte("Pay invoice")) {
		t.Errorf("the leaf holds content: %s", e.Leaf)
	}

	t.Run("retry is a duplicate", func(t *testing.T) {
		for _, ctype := range []string{"application/json", "application/x-ndjson"} {
			got := s.ingest(t, ctype, exampleRecord)
			if len(got) != 1 || got[0] != (ingestResult{Seq: 2, ID: exampleID, Status: "duplicate"}) {
				t.Errorf("%s retry: %+v", ctype, got)
			}
		}
		if n := s.size(t); n != 3 {
			t.Errorf("tree size %d after retries, want 3", n)
		}
	})
	t.Run("retry in a batch, and a repeat within it", func(t *testing.T) {
		got := s.ingest(t, "application/json", "["+exampleRecord+","+testRecord(10)+","+testRecord(10)+"]")
		want := []ingestResult{{2, exampleID, "duplicate"}, {3, testID(10), "appended"}, {3, testID(10), "duplicate"}}
		if !slices.Equal(got, want) {
			t.Errorf("got %+v, want %+v", got, want)
		}
		if n := s.size(t); n != 4 {
			t.Errorf("tree size %d, want 4", n)
		}
	})

	conflicting := strings.Replace(exampleRecord, `"tenant":"acme"`, `"tenant":"acme2"`, 1)
	tests := []struct {
		name   string
		ctype  string
		body   string
		record int
	}{
		{"same id, different record", "application/json", conflicting, 0},
		{"same id, different record, ndjson", "application/x-ndjson", conflicting, 0},
		{"conflict after a new record", "application/json", "[" + testRecord(20) + "," + conflicting + "]", 1},
		{"conflict within the request", "application/x-ndjson", testRecord(21) + "\n" + strings.Replace(testRecord(21), `"n":21`, `"n":22`, 1), 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := s.leaves(t)
			resp, b := s.post(t, tt.ctype, tt.body)
			e := wantError(t, resp, b, http.StatusConflict, "conflict", tt.record, "id")
			if !strings.Contains(e.Message, "already the id of a different record") {
				t.Errorf("message %q", e.Message)
			}
			if after := s.leaves(t); !slices.EqualFunc(before, after, bytes.Equal) {
				t.Errorf("stored leaves changed: %d before, %d after", len(before), len(after))
			}
		})
	}
}

func TestIngestRejects(t *testing.T) {
	const maxBody, maxBatch = 32 << 10, 8
	s := newTestServer(t, func(c *httpapi.Config) { c.MaxBodyBytes, c.MaxBatch = maxBody, maxBatch })
	s.fill(t, 0, 5)
	before := s.leaves(t)

	batch := func(n int, edit func(i int, rec string) string) []string {
		recs := make([]string, n)
		for i := range recs {
			recs[i] = edit(i, testRecord(100+i))
		}
		return recs
	}
	badTrace := func(i int, rec string) string {
		if i == 3 {
			return strings.Replace(rec, `"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736"`, `"trace_id":"4BF92F3577B34DA6A3CE929D0E0E4736"`, 1)
		}
		return rec
	}
	same := func(i int, rec string) string { return rec }
	array := func(recs []string) string { return "[" + strings.Join(recs, ",") + "]" }
	ndjson := func(recs []string) string { return strings.Join(recs, "\n") + "\n" }
	big := strings.Repeat("a", 17<<10)

	tests := []struct {
		name    string
		ctype   string
		body    string
		status  int
		code    string
		record  int
		field   string
		message string
	}{
		{"invalid record 3 of 5", "application/json", array(batch(5, badTrace)), 400, "invalid", 3, "trace_id", "lowercase hex"},
		{"invalid record 3 of 5, ndjson", "application/x-ndjson", ndjson(batch(5, badTrace)), 400, "invalid", 3, "trace_id", "lowercase hex"},
		{"invalid record 3 of 5, ndjson with blank lines", "application/x-ndjson", "\n\n" + strings.Join(batch(5, badTrace), "\n\n"), 400, "invalid", 3, "trace_id", ""},
		{"malformed json", "application/json", `[{"kind":"inference","attributes":{"a":1,}}]`, 400, "invalid", 0, "attributes", "at byte "},
		{"truncated json", "application/json", `[{"kind":"inference"`, 400, "invalid", 0, "(record)", "at byte "},
		{"malformed json after a good record", "application/json", "[" + testRecord(100) + ",{]", 400, "invalid", 1, "(record)", "at byte "},
		{"malformed ndjson line", "application/x-ndjson", testRecord(100) + "\n{\"kind\":\n", 400, "invalid", 1, "kind", "at byte "},
		{"two objects as json", "application/json", testRecord(100) + testRecord(101), 400, "invalid", 0, "(record)", "after the record"},
		{"unknown field", "application/json", `{"kind":"inference","colour":"red"}`, 400, "invalid", 0, "colour", "unknown field"},
		{"unknown actor field", "application/json", `[{"kind":"inference","actor":{"name":"x"}}]`, 400, "invalid", 0, "actor.name", "unknown field"},
		{"server-set seq", "application/json", `{"kind":"inference","seq":5}`, 400, "invalid", 0, "seq", "set by the server"},
		{"server-set source", "application/x-ndjson", `{"kind":"inference","source":"me"}`, 400, "invalid", 0, "source", "set by the server"},
		{"server-set received_time", "application/json", `[{"kind":"inference","received_time":"2026-01-01T00:00:00Z"}]`, 400, "invalid", 0, "received_time", "set by the server"},
		{"server-set commitments", "application/json", `[{"kind":"inference","commitments":{}}]`, 400, "invalid", 0, "commitments", "set by the server"},
		{"bad kind", "application/json", `{"kind":"gossip"}`, 400, "invalid", 0, "kind", "not a record kind"},
		{"missing kind", "application/json", `{"tenant":"acme"}`, 400, "invalid", 0, "kind", "missing"},
		{"bad id", "application/json", `{"kind":"inference","id":"nope"}`, 400, "invalid", 0, "id", "not a UUID"},
		{"bad time", "application/json", `{"kind":"inference","time":"2026-11-26 10:00:00"}`, 400, "invalid", 0, "time", "RFC 3339"},
		{"not a record", "application/json", `[1]`, 400, "invalid", 0, "(record)", ""},
		{"not an array or object", "application/json", `"records"`, 400, "invalid", -1, "(body)", ""},
		{"wrong content type", "text/plain", testRecord(100), 415, "unsupported_media_type", -1, "", "Content-Type"},
		{"form content type", "application/x-www-form-urlencoded", testRecord(100), 415, "unsupported_media_type", -1, "", ""},
		{"missing content type", "", testRecord(100), 415, "unsupported_media_type", -1, "", "Content-Type"},
		{"malformed content type", "application/json; charset", testRecord(100), 415, "unsupported_media_type", -1, "", ""},
		{"body over MaxBodyBytes", "application/json", `{"kind":"inference","content":{"x":"` + strings.Repeat("a", maxBody) + `"}}`, 413, "too_large", -1, "", fmt.Sprint(maxBody)},
		{"body over MaxBodyBytes, ndjson", "application/x-ndjson", strings.Repeat(testRecord(100)+"\n", maxBody/len(testRecord(100))+1), 413, "too_large", -1, "", fmt.Sprint(maxBody)},
		{"more than MaxBatch records", "application/json", array(batch(maxBatch+1, same)), 413, "too_large", -1, "(body)", "limit is 8"},
		{"more than MaxBatch records, ndjson", "application/x-ndjson", ndjson(batch(maxBatch+1, same)), 413, "too_large", -1, "(body)", "limit is 8"},
		{"empty array", "application/json", `[]`, 400, "invalid", -1, "(body)", "no records"},
		{"empty array with spaces", "application/json", " [ ] ", 400, "invalid", -1, "(body)", "no records"},
		{"empty body", "application/json", "", 400, "invalid", -1, "(body)", ""},
		{"empty body, ndjson", "application/x-ndjson", "", 400, "invalid", -1, "(body)", "no records"},
		{"blank lines, ndjson", "application/x-ndjson", "\n \n\r\n", 400, "invalid", -1, "(body)", "no records"},
		{"attribute over its limit", "application/json", `{"kind":"inference","attributes":{"big":"` + big + `"}}`, 413, "too_large", 0, `attributes["big"]`, "limit is 16384"},
		{"session_id over its limit", "application/json", `[` + testRecord(100) + `,{"kind":"inference","session_id":"` + strings.Repeat("s", 1025) + `"}]`, 413, "too_large", 1, "session_id", "limit is 1024"},
		{"tenant over its limit", "application/x-ndjson", `{"kind":"inference","tenant":"` + strings.Repeat("t", 129) + `"}`, 413, "too_large", 0, "tenant", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, b := s.post(t, tt.ctype, tt.body)
			e := wantError(t, resp, b, tt.status, tt.code, tt.record, tt.field)
			if !strings.Contains(e.Message, tt.message) {
				t.Errorf("message %q does not contain %q", e.Message, tt.message)
			}
			if resp.Header.Get("Retry-After") != "" {
				t.Errorf("Retry-After %q on a client error", resp.Header.Get("Retry-After"))
			}
			if after := s.leaves(t); !slices.EqualFunc(before, after, bytes.Equal) {
				t.Errorf("stored leaves changed: %d before, %d after", len(before), len(after))
			}
		})
	}
	t.Run("a full batch is accepted", func(t *testing.T) {
		if got := s.ingest(t, "application/x-ndjson", ndjson(batch(maxBatch, same))); len(got) != maxBatch {
			t.Errorf("%d results", len(got))
		}
	})
}

func TestHealth(t *testing.T) {
	s := newTestServer(t, nil)
	for _, path := range []string{"/healthz", "/readyz"} {
		if resp, b := s.get(t, path); resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s = %d %s", path, resp.StatusCode, b)
		}
	}
	s.log.Close()
	if err := s.db.Close(); err != nil {
		t.Fatal(err)
	}
	resp, b := s.get(t, "/readyz")
	wantError(t, resp, b, http.StatusServiceUnavailable, "unavailable", -1, "")
	if resp.Header.Get("Retry-After") == "" {
		t.Error("503 without Retry-After")
	}
	if resp, b := s.get(t, "/healthz"); resp.StatusCode != http.StatusOK {
		t.Errorf("GET /healthz with the store closed = %d %s", resp.StatusCode, b)
	}
}

func TestMetrics(t *testing.T) {
	s := newTestServer(t, nil)
	s.fill(t, 0, 3)
	want := []string{
		"infertrail_records_appended_total 3",
		"infertrail_batch_records_count",
		"infertrail_commit_seconds_bucket",
		"infertrail_tree_size 3",
		`infertrail_http_requests_total{code="200",route="POST /v1/records"} 1`,
		"infertrail_ingest_records_total 3",
	}
	// The log updates its metrics just after it acknowledges a commit.
	var missing []string
	for range 100 {
		resp, b := s.get(t, "/metrics")
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET /metrics = %d", resp.StatusCode)
		}
		missing = missing[:0]
		for _, m := range want {
			if !bytes.Contains(b, []byte(m)) {
				missing = append(missing, m)
			}
		}
		if len(missing) == 0 {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Errorf("/metrics lacks %q", missing)
}

// TestUnavailable checks that a closed log refuses records with a 503 that
// asks the client to retry, and still serves reads.
func TestUnavailable(t *testing.T) {
	s := newTestServer(t, nil)
	s.fill(t, 0, 2)
	before := s.leaves(t)
	if err := s.log.Close(); err != nil {
		t.Fatal(err)
	}
	for _, ctype := range []string{"application/json", "application/x-ndjson"} {
		resp, b := s.post(t, ctype, testRecord(2))
		wantError(t, resp, b, http.StatusServiceUnavailable, "unavailable", -1, "")
		if resp.Header.Get("Retry-After") == "" {
			t.Errorf("%s: 503 without Retry-After", ctype)
		}
	}
	if after := s.leaves(t); !slices.EqualFunc(before, after, bytes.Equal) {
		t.Error("stored leaves changed")
	}
	if resp, b := s.get(t, "/v1/records/1"); resp.StatusCode != http.StatusOK {
		t.Errorf("GET /v1/records/1 after Close = %d %s", resp.StatusCode, b)
	}
	resp, b := s.get(t, "/v1/records/1?content=true")
	wantError(t, resp, b, http.StatusServiceUnavailable, "unavailable", -1, "")
}

// TestRoutes makes sure that every route of httpapi.Routes has a request
// here that it answers with a 2xx status, so that no route is added untested.
func TestRoutes(t *testing.T) {
	s := newTestServer(t, func(c *httpapi.Config) {
		c.Tokens = &access.Tokens{Store: c.Log.Store(), Recorder: c.Log}
		withApprovals(t, c)
	})
	s.fill(t, 0, 3)
	s.ingest(t, "application/json", exampleRecord)
	s.checkpoint(t)
	hold, err := s.log.PlaceHold(t.Context(), "tenant=gamma", "case 1", infertrail.Actor{ID: "test"})
	if err != nil {
		t.Fatal(err)
	}
	_, tok, err := (&access.Tokens{Store: s.db, Recorder: s.log}).Create(t.Context(), access.TokenRequest{Name: "n", Tenant: "acme",
		Roles: []infertrail.Role{infertrail.RoleIngest}}, nil, infertrail.Actor{ID: "test"})
	if err != nil {
		t.Fatal(err)
	}
	type request struct {
		method, path, ctype, body string
	}
	cases := map[string]request{
		"POST /v1/records":              {"POST", "/v1/records", "application/json", testRecord(3)},
		"GET /v1/records/{seq}":         {"GET", "/v1/records/1", "", ""},
		"GET /v1/records/{seq}/proof":   {"GET", "/v1/records/1/proof", "", ""},
		"GET /v1/records/{seq}/receipt": {"GET", "/v1/records/1/receipt", "", ""},
		"GET /v1/consistency":           {"GET", "/v1/consistency?from=1&to=3", "", ""},
		"GET /v1/log":                   {"GET", "/v1/log", "", ""},
		"GET /checkpoint":               {"GET", "/checkpoint", "", ""},
		"GET /tile/":                    {"GET", "/tile/0/000.p/3", "", ""},
		"GET /healthz":                  {"GET", "/healthz", "", ""},
		"GET /readyz":                   {"GET", "/readyz", "", ""},
		"GET /metrics":                  {"GET", "/metrics", "", ""},
		"POST /v1/erasures":             {"POST", "/v1/erasures", "application/json", `{"scope":"tenant=acme,session=none","reason":"test"}`},
		"GET /v1/holds":                 {"GET", "/v1/holds?tenant=gamma", "", ""},
		"POST /v1/holds":                {"POST", "/v1/holds", "application/json", `{"scope":"tenant=beta","reason":"case 2"}`},
		"POST /v1/holds/{id}/release":   {"POST", "/v1/holds/" + hold.ID.String() + "/release", "application/json", `{"tenant":"gamma"}`},
		"POST /v1/fingerprints":         {"POST", "/v1/fingerprints", "application/json", `{"credential":"sk-test-123"}`},
		"GET /v1/tokens":                {"GET", "/v1/tokens", "", ""},
		"POST /v1/tokens":               {"POST", "/v1/tokens", "application/json", `{"name":"t","tenant":"acme","roles":["auditor"]}`},
		"POST /v1/tokens/{id}/revoke":   {"POST", "/v1/tokens/" + tok.ID.String() + "/revoke", "", ""},
		"GET /v1/records":               {"GET", "/v1/records?kind=tool_call&limit=2", "", ""},
		"GET /v1/traces/{id}":           {"GET", "/v1/traces/" + testTrace, "", ""},
		"GET /v1/sessions/{id}":         {"GET", "/v1/sessions/" + testSession, "", ""},
		"GET /v1/findings":              {"GET", "/v1/findings", "", ""},
		"GET /v1/export":                {"GET", "/v1/export?trace=" + testTrace + "&content=true", "", ""},
		"GET /v1/report":                {"GET", "/v1/report?format=html", "", ""},
		"POST /v1/detect":               {"POST", "/v1/detect?window=0s&trace=" + testTrace, "", ""},
		"GET /v1/approvals":             {"GET", "/v1/approvals?status=pending&tenant=acme", "", ""},
		"GET /v1/approvals/{id}":        {"GET", "/v1/approvals/" + pendingApproval(t, s, "acme").String(), "", ""},
		"POST /v1/approvals/{id}":       {"POST", "/v1/approvals/" + pendingApproval(t, s, "acme").String(), "application/json", `{"decision":"rejected","rationale":"test"}`},
	}
	var patterns []string
	for _, rt := range httpapi.Routes {
		patterns = append(patterns, rt.Pattern)
		if rt.Doc == "" {
			t.Errorf("route %s has no Doc", rt.Pattern)
		}
		c, ok := cases[rt.Pattern]
		if !ok {
			t.Errorf("route %s has no test request in TestRoutes", rt.Pattern)
			continue
		}
		t.Run(rt.Pattern, func(t *testing.T) {
			h := http.Header{}
			if c.ctype != "" {
				h.Set("Content-Type", c.ctype)
			}
			resp, b := s.do(t, c.method, c.path, h, []byte(c.body))
			if resp.StatusCode/100 != 2 {
				t.Errorf("%s %s = %d %s", c.method, c.path, resp.StatusCode, b)
			}
		})
	}
	for p := range cases {
		if !slices.Contains(patterns, p) {
			t.Errorf("TestRoutes has a request for %s, which is not a route", p)
		}
	}
	t.Run("wrong method", func(t *testing.T) {
		for _, c := range []request{{"DELETE", "/v1/records/1", "", ""}, {"PUT", "/v1/records", "", ""}, {"POST", "/checkpoint", "", ""}} {
			if resp, _ := s.do(t, c.method, c.path, nil, nil); resp.StatusCode != http.StatusMethodNotAllowed {
				t.Errorf("%s %s = %d, want 405", c.method, c.path, resp.StatusCode)
			}
		}
	})
	t.Run("unknown path", func(t *testing.T) {
		for _, p := range []string{"/", "/v1", "/v1/records/1/other", "/v2/records/1"} {
			if resp, _ := s.get(t, p); resp.StatusCode != http.StatusNotFound {
				t.Errorf("GET %s = %d, want 404", p, resp.StatusCode)
			}
		}
	})
}

// TestIngestConcurrent posts from several clients at once: every record is
// appended once, and the same record sent concurrently by every client is
// appended once with one sequence number.
func TestIngestConcurrent(t *testing.T) {
	s := newTestServer(t, nil)
	const clients, requests = 6, 10
	results := make([][]ingestResult, clients)
	var wg sync.WaitGroup
	for c := range clients {
		wg.Go(func() {
			for i := range requests {
				body := testRecord(1000) + "\n" + testRecord(c*requests+i)
				resp, err := s.client.Post(s.url+"/v1/records", "application/x-ndjson", strings.NewReader(body))
				if err != nil {
					t.Errorf("client %d: %v", c, err)
					return
				}
				b, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil || resp.StatusCode != http.StatusOK {
					t.Errorf("client %d: %d %s %v", c, resp.StatusCode, b, err)
					return
				}
				var out struct{ Records []ingestResult }
				if err := json.Unmarshal(b, &out); err != nil || len(out.Records) != 2 {
					t.Errorf("client %d: %s: %v", c, b, err)
					return
				}
				results[c] = append(results[c], out.Records...)
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	if n := s.size(t); n != clients*requests+1 {
		t.Fatalf("tree size %d, want %d", n, clients*requests+1)
	}
	var sharedSeq int64 = -1
	appended := 0
	seen := map[int64]string{}
	for c, rs := range results {
		for _, r := range rs {
			if e := s.entry(t, r.Seq); e.ID.String() != r.ID {
				t.Errorf("client %d: record %d has id %s, the answer says %s", c, r.Seq, e.ID, r.ID)
			}
			if r.ID == testID(1000) {
				if sharedSeq >= 0 && r.Seq != sharedSeq {
					t.Errorf("shared record at %d and %d", sharedSeq, r.Seq)
				}
				sharedSeq = r.Seq
				if r.Status == "appended" {
					appended++
				}
				continue
			}
			if r.Status != "appended" || seen[r.Seq] != "" {
				t.Errorf("client %d: %+v (seq already answered for %s)", c, r, seen[r.Seq])
			}
			seen[r.Seq] = r.ID
		}
	}
	if appended != 1 {
		t.Errorf("the shared record was appended %d times", appended)
	}
}

// TestLeafBytes checks that a leaf is served byte for byte as it is hashed,
// with the characters that JSON encoders like to escape.
func TestLeafBytes(t *testing.T) {
	s := newTestServer(t, nil)
	rec := `{"kind":"inference","session_id":"<a&b> \u2028 \u2029 é 😀","attributes":{"html":"</script>&amp;","ls":"\u2028"}}`
	got := s.ingest(t, "application/json", rec)
	stored := s.entry(t, got[0].Seq).Leaf
	if !bytes.Contains(stored, []byte("<a&b> \u2028 \u2029")) || !bytes.Contains(stored, []byte(`"</script>&amp;"`)) {
		t.Errorf("stored leaf %q escapes what RFC 8785 leaves as it is", stored)
	}
	var resp struct {
		LeafHash string          `json:"leaf_hash"`
		Record   json.RawMessage `json:"record"`
	}
	s.getJSON(t, fmt.Sprintf("/v1/records/%d", got[0].Seq), nil, &resp)
	if !bytes.Equal(resp.Record, stored) {
		t.Errorf("served record\n%q\nwant the stored leaf\n%q", resp.Record, stored)
	}
	if h := tlog.RecordHash(resp.Record); h.String() != resp.LeafHash || h != tlog.RecordHash(stored) {
		t.Errorf("served record hashes to %v, leaf_hash %s", h, resp.LeafHash)
	}
}
