package client_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/infertrail/infertrail"
	"github.com/infertrail/infertrail/access"
	"github.com/infertrail/infertrail/client"
	"github.com/infertrail/infertrail/httpapi"
	"github.com/infertrail/infertrail/internal/testdisk"
	"github.com/infertrail/infertrail/ledger"
	"github.com/infertrail/infertrail/ledger/ledgertest"
	"github.com/infertrail/infertrail/store/sqlite"
)

const testOrigin = "example.com/infertrail/client-test"

// server is the real HTTP API, with token authentication, over a ledger
// over SQLite in a temporary directory.
type server struct {
	url    string
	log    *ledger.Log
	tokens *access.Tokens
}

func newServer(tb testing.TB) *server {
	tb.Helper()
	return newServerWith(tb, sqlite.Config{})
}

// newServerWith is newServer over a store opened with cfg.
func newServerWith(tb testing.TB, cfg sqlite.Config) *server {
	tb.Helper()
	return newServerIn(tb, tb.TempDir(), cfg)
}

// newServerIn is newServerWith with the log's files in dir.
func newServerIn(tb testing.TB, dir string, cfg sqlite.Config) *server {
	tb.Helper()
	db, err := sqlite.Open(tb.Context(), filepath.Join(dir, "log.db"), cfg)
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
	logger := slog.New(slog.DiscardHandler)
	lg, err := ledger.Open(tb.Context(), ledger.Config{
		Store: db, Signer: signer, Verifier: verif, Origin: testOrigin,
		Secret:             bytes.Repeat([]byte{7}, 32),
		KEK:                ledgertest.NewKEK(tb),
		CheckpointInterval: 50 * time.Millisecond,
		Logger:             logger,
	})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { lg.Close() })
	auth, err := access.New(access.Config{Tokens: db, RateLimit: -1})
	if err != nil {
		tb.Fatal(err)
	}
	tokens := &access.Tokens{Store: db, Recorder: lg}
	api, err := httpapi.New(httpapi.Config{Log: lg, VerifierKey: vkey, Logger: logger, Auth: auth, Tokens: tokens})
	if err != nil {
		tb.Fatal(err)
	}
	srv := httptest.NewServer(api)
	tb.Cleanup(srv.Close)
	return &server{url: srv.URL, log: lg, tokens: tokens}
}

// token creates an API token in tenant acme; rate is its requests per
// second (0: no limit).
func (s *server) token(tb testing.TB, rate float64, roles ...infertrail.Role) string {
	tb.Helper()
	secret, _, err := s.tokens.Create(tb.Context(),
		access.TokenRequest{Name: fmt.Sprint(roles), Tenant: "acme", Roles: roles, RateLimit: rate},
		nil, infertrail.Actor{ID: "test"})
	if err != nil {
		tb.Fatal(err)
	}
	return secret
}

func (s *server) size(tb testing.TB) int64 {
	tb.Helper()
	n, err := s.log.TreeSize(tb.Context())
	if err != nil {
		tb.Fatal(err)
	}
	return n
}

func newRecorder(tb testing.TB, cfg client.Config) *client.Recorder {
	tb.Helper()
	c, err := client.New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

// noToken fails tb if the token shows in err's text.
func noToken(tb testing.TB, err error, token string) {
	tb.Helper()
	if err != nil && token != "" && strings.Contains(err.Error(), token) {
		tb.Errorf("the error reveals the token: %v", err)
	}
}

func checkFieldError(tb testing.TB, err error, record int, field string, want error) {
	tb.Helper()
	var fe *infertrail.FieldError
	if !errors.As(err, &fe) {
		tb.Fatalf("error %v (%T) is not a *FieldError", err, err)
	}
	if fe.Record != record || fe.Field != field || !errors.Is(err, want) {
		tb.Errorf("got record %d field %q (%v), want record %d field %q wrapping %v", fe.Record, fe.Field, err, record, field, want)
	}
}

// records returns n minimal records without ids.
func records(n int) []*infertrail.Record {
	recs := make([]*infertrail.Record, n)
	for i := range recs {
		recs[i] = &infertrail.Record{Kind: infertrail.KindToolCall, SessionID: fmt.Sprintf("sess-%d", i),
			Attributes: map[string]json.RawMessage{"gen_ai.tool.name": json.RawMessage(fmt.Sprintf(`"tool-%d"`, i))}}
	}
	return recs
}

// copyRecord is a deep enough copy to tell whether Record changed a record.
func copyRecord(r *infertrail.Record) *infertrail.Record {
	c := *r
	c.Links = slices.Clone(r.Links)
	c.Attributes = maps.Clone(r.Attributes)
	c.Content = maps.Clone(r.Content)
	return &c
}

func sameRecord(a, b *infertrail.Record) bool {
	raw := func(x, y json.RawMessage) bool { return bytes.Equal(x, y) }
	return a.Seq == b.Seq && a.ID == b.ID && a.Kind == b.Kind && a.Time.Equal(b.Time) && a.Time.Location() == b.Time.Location() &&
		a.ReceivedTime.Equal(b.ReceivedTime) && a.Tenant == b.Tenant && a.Actor == b.Actor && a.SessionID == b.SessionID &&
		a.TraceID == b.TraceID && a.SpanID == b.SpanID && a.ParentSpanID == b.ParentSpanID && a.Source == b.Source &&
		slices.Equal(a.Links, b.Links) && maps.EqualFunc(a.Attributes, b.Attributes, raw) &&
		maps.EqualFunc(a.Content, b.Content, raw) && maps.Equal(a.Commitments, b.Commitments)
}

// read returns a record as the log holds it: its leaf and its content.
func (s *server) read(tb testing.TB, seq int64) (*infertrail.Record, map[string]json.RawMessage) {
	tb.Helper()
	e, err := s.log.Entry(tb.Context(), seq)
	if err != nil {
		tb.Fatal(err)
	}
	leaf, err := infertrail.ParseLeaf(e.Leaf)
	if err != nil {
		tb.Fatal(err)
	}
	content, err := s.log.Content(tb.Context(), &e)
	if err != nil {
		tb.Fatal(err)
	}
	return leaf, content
}

func TestRecordRoundTrip(t *testing.T) {
	s := newServer(t)
	tok := s.token(t, 0, infertrail.RoleIngest)
	c := newRecorder(t, client.Config{URL: s.url, Token: tok})

	full := &infertrail.Record{
		ID:   infertrail.NewUUID(),
		Kind: infertrail.KindInference,
		Time: time.Date(2026, 11, 26, 11, 0, 0, 123456789, time.FixedZone("CET", 3600)),
		Actor: infertrail.Actor{ID: "agent:zahlungs-bot", Type: "agent", OnBehalfOf: "user:zoë@acme.example",
			Workload: "spiffe://acme.example/bot", CredentialFingerprint: "hmac-sha256:0a1b"},
		Tenant:       "acme",
		SessionID:    "sess 42 — 会話 😀",
		TraceID:      "4bf92f3577b34da6a3ce929d0e0e4736",
		SpanID:       "00f067aa0ba902b7",
		ParentSpanID: "00f067aa0ba902b8",
		Links:        []infertrail.Link{{Rel: "answers", ID: infertrail.NewUUID()}},
		Attributes: map[string]json.RawMessage{
			"gen_ai.request.model": json.RawMessage(`"gpt-4o"`),
			"gen_ai.usage":         json.RawMessage(`{ "output": 30, "input": 120 }`),
		},
		Content: map[string]json.RawMessage{
			"gen_ai.input.messages": json.RawMessage(`[{"role":"user","parts":[{"type":"text","content":"Zahle 1200 € an ACME"}]}]`),
		},
	}
	minimal := &infertrail.Record{Kind: infertrail.KindAccess}
	before := []*infertrail.Record{copyRecord(full), copyRecord(minimal)}

	start := s.size(t) // creating the token was recorded
	seqs, err := c.Record(t.Context(), full, minimal)
	if err != nil {
		t.Fatal(err)
	}
	if want := []int64{start, start + 1}; !slices.Equal(seqs, want) {
		t.Fatalf("seqs = %v, want %v", seqs, want)
	}
	// Record set the missing id and changed nothing else.
	if minimal.ID.IsZero() {
		t.Error("the record without an id still has none")
	}
	before[1].ID = minimal.ID
	for i, r := range []*infertrail.Record{full, minimal} {
		if !sameRecord(r, before[i]) {
			t.Errorf("record %d changed:\n got %+v\nwant %+v", i, r, before[i])
		}
	}

	leaf, content := s.read(t, seqs[0])
	if leaf.ID != full.ID || leaf.Kind != full.Kind || !leaf.Time.Equal(full.Time) || leaf.Tenant != "acme" ||
		leaf.Actor != full.Actor || leaf.SessionID != full.SessionID || leaf.TraceID != full.TraceID ||
		leaf.SpanID != full.SpanID || leaf.ParentSpanID != full.ParentSpanID || !slices.Equal(leaf.Links, full.Links) ||
		leaf.Source != "ingest" || leaf.Seq != seqs[0] {
		t.Errorf("leaf = %+v, want the fields of %+v", leaf, full)
	}
	if got := string(leaf.Attributes["gen_ai.usage"]); got != `{"input":120,"output":30}` {
		t.Errorf("attribute gen_ai.usage = %s", got)
	}
	if got := string(leaf.Attributes["gen_ai.request.model"]); got != `"gpt-4o"` {
		t.Errorf("attribute gen_ai.request.model = %s", got)
	}
	if _, ok := leaf.Commitments["gen_ai.input.messages"]; !ok || len(leaf.Commitments) != 1 {
		t.Errorf("commitments = %v", leaf.Commitments)
	}
	want, err := infertrail.Canonicalize(full.Content["gen_ai.input.messages"])
	if err != nil {
		t.Fatal(err)
	}
	if got := content["gen_ai.input.messages"]; !bytes.Equal(got, want) || len(content) != 1 {
		t.Errorf("content = %s, want %s", content, want)
	}

	leaf, content = s.read(t, seqs[1])
	if leaf.ID != minimal.ID || leaf.Kind != infertrail.KindAccess || leaf.Tenant != "acme" || leaf.Time.IsZero() ||
		len(leaf.Attributes) != 0 || len(content) != 0 {
		t.Errorf("leaf = %+v, content %s: want the minimal record in the token's tenant, with a time", leaf, content)
	}
}

// countingTransport counts requests; fail, if set, is called with each
// request's number (from 1) after the request went through, and may turn
// the answer into an error, as when a connection drops.
type countingTransport struct {
	n    atomic.Int32
	fail func(n int32) error
}

func (t *countingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	n := t.n.Add(1)
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	if t.fail != nil {
		if err := t.fail(n); err != nil {
			resp.Body.Close()
			return nil, err
		}
	}
	return resp, nil
}

func TestRecordSplit(t *testing.T) {
	s := newServer(t)
	tr := &countingTransport{}
	c := newRecorder(t, client.Config{URL: s.url + "/", Token: s.token(t, 0, infertrail.RoleIngest),
		MaxBatch: 3, HTTPClient: &http.Client{Transport: tr}})
	if _, err := c.Record(t.Context(), records(2)...); err != nil {
		t.Fatal(err)
	}
	tr.n.Store(0)
	start := s.size(t)
	recs := records(10)
	seqs, err := c.Record(t.Context(), recs...)
	if err != nil {
		t.Fatal(err)
	}
	want := make([]int64, 10)
	for i := range want {
		want[i] = start + int64(i)
	}
	if !slices.Equal(seqs, want) {
		t.Errorf("seqs = %v, want %v", seqs, want)
	}
	if n := tr.n.Load(); n != 4 {
		t.Errorf("%d requests for 10 records by 3, want 4", n)
	}
	for i, seq := range seqs {
		if leaf, _ := s.read(t, seq); leaf.ID != recs[i].ID || leaf.SessionID != recs[i].SessionID {
			t.Errorf("seq %d holds %s (%s), want record %d %s", seq, leaf.ID, leaf.SessionID, i, recs[i].ID)
		}
	}
}

func TestRecordRetry(t *testing.T) {
	s := newServer(t)
	tok := s.token(t, 0, infertrail.RoleIngest)
	errDropped := errors.New("connection reset (simulated)")
	tr := &countingTransport{}
	c := newRecorder(t, client.Config{URL: s.url, Token: tok, MaxBatch: 2, HTTPClient: &http.Client{Transport: tr}})
	recs := records(5)
	start := s.size(t)

	// The second request is appended, but its answer is lost.
	tr.fail = func(n int32) error {
		if n == 2 {
			return errDropped
		}
		return nil
	}
	seqs, err := c.Record(t.Context(), recs...)
	if !errors.Is(err, infertrail.ErrUnavailable) || !errors.Is(err, errDropped) {
		t.Fatalf("error %v, want ErrUnavailable wrapping the transport's error", err)
	}
	noToken(t, err, tok)
	if !strings.Contains(err.Error(), "send records 2 to 3 of 5 (0 to 1 appended)") {
		t.Errorf("error %q does not say which records were sent and which appended", err)
	}
	want := []int64{start, start + 1, start + 2, start + 3, start + 4}
	if !slices.Equal(seqs, want[:2]) {
		t.Errorf("seqs of the failed call = %v, want those of the first request, %v", seqs, want[:2])
	}
	if n := s.size(t) - start; n != 4 {
		t.Fatalf("the log holds %d records after the failure, want 4", n)
	}
	ids := make([]infertrail.UUID, len(recs))
	for i, r := range recs {
		if r.ID.IsZero() {
			t.Fatalf("record %d has no id after a failed call", i)
		}
		ids[i] = r.ID
	}

	// Retrying the whole call appends only the record never sent, and
	// answers the others with their seqs; a further retry changes nothing.
	tr.fail = nil
	for try := range 2 {
		seqs, err := c.Record(t.Context(), recs...)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(seqs, want) {
			t.Errorf("retry %d: seqs = %v, want %v", try, seqs, want)
		}
		if n := s.size(t) - start; n != 5 {
			t.Errorf("retry %d: the log holds %d records, want 5", try, n)
		}
	}
	for i, r := range recs {
		if r.ID != ids[i] {
			t.Errorf("record %d: id changed from %s to %s", i, ids[i], r.ID)
		}
	}
}

func TestRecordRefused(t *testing.T) {
	s := newServer(t)
	tok := s.token(t, 0, infertrail.RoleIngest)
	c := newRecorder(t, client.Config{URL: s.url, Token: tok, MaxBatch: 2})

	t.Run("invalid", func(t *testing.T) {
		recs := records(5)
		recs[3].TraceID = "not-a-trace-id"
		start := s.size(t)
		seqs, err := c.Record(t.Context(), recs...)
		checkFieldError(t, err, 3, "trace_id", infertrail.ErrInvalid)
		noToken(t, err, tok)
		if !strings.HasPrefix(err.Error(), "record 3: field trace_id: ") {
			t.Errorf("error %q does not name record 3 of the call", err)
		}
		// The first request (records 0 and 1) went through, the second did not.
		if len(seqs) != 2 || s.size(t) != start+2 {
			t.Errorf("seqs %v, log grew by %d; want the first request's 2", seqs, s.size(t)-start)
		}
	})
	t.Run("not JSON", func(t *testing.T) {
		recs := records(3)
		recs[2].Content = map[string]json.RawMessage{"gen_ai.input.messages": json.RawMessage(`{"secret`)}
		start := s.size(t)
		_, err := c.Record(t.Context(), recs...)
		checkFieldError(t, err, 2, `content["gen_ai.input.messages"]`, infertrail.ErrInvalid)
		if strings.Contains(err.Error(), "secret") {
			t.Errorf("the error quotes content: %v", err)
		}
		if n := s.size(t); n != start+2 {
			t.Errorf("log grew by %d, want 2", n-start)
		}
	})
	t.Run("other tenant", func(t *testing.T) {
		r := records(1)[0]
		r.Tenant = "globex"
		_, err := c.Record(t.Context(), r)
		checkFieldError(t, err, 0, "tenant", infertrail.ErrForbidden)
	})
	t.Run("conflict", func(t *testing.T) {
		r := records(1)[0]
		if _, err := c.Record(t.Context(), r); err != nil {
			t.Fatal(err)
		}
		r.SessionID = "another"
		_, err := c.Record(t.Context(), r)
		checkFieldError(t, err, 0, "id", infertrail.ErrConflict)
	})
	t.Run("nil", func(t *testing.T) {
		r := records(1)[0]
		_, err := c.Record(t.Context(), r, nil)
		checkFieldError(t, err, 1, "(record)", infertrail.ErrInvalid)
		if !r.ID.IsZero() {
			t.Error("a refused call set an id")
		}
	})
	t.Run("none", func(t *testing.T) {
		if seqs, err := c.Record(t.Context()); err != nil || len(seqs) != 0 {
			t.Errorf("Record() = %v, %v", seqs, err)
		}
	})
}

func TestRecordAuth(t *testing.T) {
	s := newServer(t)
	ingest := s.token(t, 0, infertrail.RoleIngest)
	auditor := s.token(t, 0, infertrail.RoleAuditor)
	start := s.size(t)
	// The ingest token with its last character changed: well formed, unknown.
	last := byte('a')
	if ingest[len(ingest)-1] == last {
		last = 'b'
	}
	unknown := ingest[:len(ingest)-1] + string(last)
	tests := []struct {
		name   string
		token  string
		want   error
		status int
	}{
		{"no token", "", infertrail.ErrUnauthenticated, http.StatusUnauthorized},
		{"unknown token", unknown, infertrail.ErrUnauthenticated, http.StatusUnauthorized},
		{"not a token", "hunter2-not-a-token", infertrail.ErrUnauthenticated, http.StatusUnauthorized},
		{"auditor", auditor, infertrail.ErrForbidden, http.StatusForbidden},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newRecorder(t, client.Config{URL: s.url, Token: tt.token})
			seqs, err := c.Record(t.Context(), records(2)...)
			if !errors.Is(err, tt.want) || seqs != nil {
				t.Fatalf("Record = %v, %v; want %v", seqs, err, tt.want)
			}
			var ce *client.Error
			if !errors.As(err, &ce) || ce.Status != tt.status || ce.Code == "" || ce.Message == "" {
				t.Errorf("error %v (%#v): want a *client.Error with status %d and the server's code and message", err, ce, tt.status)
			}
			noToken(t, err, tt.token)
			if n := s.size(t) - start; n != 0 {
				t.Errorf("the log grew by %d records", n)
			}
		})
	}
}

func TestRecordRateLimited(t *testing.T) {
	s := newServer(t)
	tok := s.token(t, 0.01, infertrail.RoleIngest)
	c := newRecorder(t, client.Config{URL: s.url, Token: tok})
	if _, err := c.Record(t.Context(), records(1)...); err != nil {
		t.Fatal(err)
	}
	_, err := c.Record(t.Context(), records(1)...)
	var rl *infertrail.RateLimitError
	if !errors.Is(err, infertrail.ErrRateLimited) || !errors.As(err, &rl) {
		t.Fatalf("error %v, want a *RateLimitError", err)
	}
	if rl.RetryAfter < time.Second || rl.Limit != 0.01 {
		t.Errorf("RetryAfter %s, Limit %g; want the Retry-After header and the token's limit", rl.RetryAfter, rl.Limit)
	}
	noToken(t, err, tok)
}

func TestRecordPushback(t *testing.T) {
	s := newServer(t)
	tok := s.token(t, 0, infertrail.RoleIngest)
	c := newRecorder(t, client.Config{URL: s.url, Token: tok})
	s.log.Close() // the server stays up, but cannot append
	_, err := c.Record(t.Context(), records(1)...)
	var ce *client.Error
	if !errors.Is(err, infertrail.ErrPushback) || !errors.As(err, &ce) {
		t.Fatalf("error %v, want ErrPushback", err)
	}
	if ce.RetryAfter != time.Second || ce.Status != http.StatusServiceUnavailable {
		t.Errorf("RetryAfter %s, status %d; want 1s from Retry-After, 503", ce.RetryAfter, ce.Status)
	}
	noToken(t, err, tok)
}

// TestRecordStorageFull: a server whose disk is down to its reserve (here
// a reserve larger than any disk) refuses with ErrStorageFull, which is
// an ErrUnavailable, and says when to retry.
func TestRecordStorageFull(t *testing.T) {
	s := newServerWith(t, sqlite.Config{MinFree: 1 << 62})
	tok := s.token(t, 0, infertrail.RoleIngest)
	c := newRecorder(t, client.Config{URL: s.url, Token: tok})
	_, err := c.Record(t.Context(), records(1)...)
	refusedWith(t, err, infertrail.ErrStorageFull, "storage_full")
	noToken(t, err, tok)
}

// TestRecordStorageFailed: a server whose disk failed under it (an ext4
// file system gone read-only) refuses with ErrStorageFailed, which is an
// ErrUnavailable, and says when to retry.
func TestRecordStorageFailed(t *testing.T) {
	disk := testdisk.MountExt4(t, 32<<20)
	s := newServerIn(t, disk.Dir, sqlite.Config{MinFree: -1})
	tok := s.token(t, 0, infertrail.RoleIngest)
	c := newRecorder(t, client.Config{URL: s.url, Token: tok})
	if _, err := c.Record(t.Context(), records(1)...); err != nil {
		t.Fatal(err)
	}
	disk.Fail(t)
	_, err := c.Record(t.Context(), records(1)...)
	refusedWith(t, err, infertrail.ErrStorageFailed, "storage_failed")
	noToken(t, err, tok)
}

// refusedWith checks that err is want, an ErrUnavailable, and a
// *client.Error with code, status 503 and Retry-After 10 s.
func refusedWith(t *testing.T, err, want error, code string) {
	t.Helper()
	var ce *client.Error
	if !errors.Is(err, want) || !errors.Is(err, infertrail.ErrUnavailable) || !errors.As(err, &ce) {
		t.Fatalf("error %v, want %v", err, want)
	}
	if ce.Code != code || ce.RetryAfter != 10*time.Second || ce.Status != http.StatusServiceUnavailable {
		t.Errorf("code %q, RetryAfter %s, status %d; want %s, 10s, 503", ce.Code, ce.RetryAfter, ce.Status, code)
	}
}

func TestRecordUnavailable(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	const tok = "itk_secret-token-that-must-not-leak"
	c := newRecorder(t, client.Config{URL: url, Token: tok, HTTPClient: &http.Client{Timeout: 5 * time.Second}})
	_, err := c.Record(t.Context(), records(1)...)
	if !errors.Is(err, infertrail.ErrUnavailable) {
		t.Errorf("error %v, want ErrUnavailable", err)
	}
	noToken(t, err, tok)

	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err = c.Record(ctx, records(1)...)
	if !errors.Is(err, context.Canceled) || errors.Is(err, infertrail.ErrUnavailable) {
		t.Errorf("error %v, want context.Canceled and not ErrUnavailable", err)
	}
}

// Answers that are not InferTrail's: what a proxy in between, or a server
// gone wrong, may send. No real server sends these, hence the handlers.
func TestRecordForeignAnswers(t *testing.T) {
	const tok = "itk_secret-token-that-must-not-leak"
	tests := []struct {
		name    string
		handler http.HandlerFunc
		want    error  // a sentinel, or nil for none
		text    string // in the error
	}{
		{"proxy error page", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusBadGateway)
			fmt.Fprint(w, "<html>\n<body>502 Bad Gateway\x00</body></html>")
		}, infertrail.ErrUnavailable, "502 Bad Gateway: <html> <body>502 Bad Gateway </body></html>"},
		{"echoed token", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprintf(w, `{"error":{"code":"unauthenticated","message":"bad %s"}}`, strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "))
		}, infertrail.ErrUnauthenticated, "bad [redacted]"},
		{"huge answer", func(w http.ResponseWriter, r *http.Request) {
			w.Write(bytes.Repeat([]byte(" "), 2<<20))
		}, nil, "longer than 1048676 bytes"},
		{"short answer", func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprint(w, `{"records":[]}`)
		}, nil, "0 results for 1 records"},
		{"wrong id", func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, `{"records":[{"seq":0,"id":"%s","status":"appended"}]}`, infertrail.NewUUID())
		}, nil, "for record 0, whose id is"},
		{"not found", func(w http.ResponseWriter, r *http.Request) {
			http.NotFound(w, r)
		}, nil, "404 Not Found: 404 page not found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(tt.handler)
			defer srv.Close()
			c := newRecorder(t, client.Config{URL: srv.URL, Token: tok})
			seqs, err := c.Record(t.Context(), records(1)...)
			if err == nil || seqs != nil {
				t.Fatalf("Record = %v, %v; want an error", seqs, err)
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("error %v, want %v", err, tt.want)
			}
			for _, s := range []error{infertrail.ErrInvalid, infertrail.ErrPushback, infertrail.ErrConflict} {
				if errors.Is(err, s) {
					t.Errorf("error %v wraps %v", err, s)
				}
			}
			if !strings.Contains(err.Error(), tt.text) {
				t.Errorf("error %q does not say %q", err, tt.text)
			}
			noToken(t, err, tok)
		})
	}
}

func TestNew(t *testing.T) {
	const tok = "itk_secret-token-that-must-not-leak"
	tests := []struct {
		name string
		cfg  client.Config
		ok   bool
	}{
		{"http", client.Config{URL: "http://127.0.0.1:8080"}, true},
		{"https with a path", client.Config{URL: "https://trail.example/infertrail/", Token: tok, MaxBatch: 10}, true},
		{"no URL", client.Config{Token: tok}, false},
		{"no scheme", client.Config{URL: "localhost:8080", Token: tok}, false},
		{"other scheme", client.Config{URL: "ftp://trail.example", Token: tok}, false},
		{"no host", client.Config{URL: "http://", Token: tok}, false},
		{"user info", client.Config{URL: "https://bot:" + tok + "@trail.example", Token: tok}, false},
		{"query", client.Config{URL: "https://trail.example/?x=1", Token: tok}, false},
		{"token with a newline", client.Config{URL: "https://trail.example", Token: tok + "\nX-Evil: 1"}, false},
		{"token with a space", client.Config{URL: "https://trail.example", Token: "Bearer " + tok}, false},
		{"negative MaxBatch", client.Config{URL: "https://trail.example", Token: tok, MaxBatch: -1}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := client.New(tt.cfg)
			if (err == nil) != tt.ok {
				t.Fatalf("New(%v) = %v, %v", tt.cfg, c, err)
			}
			noToken(t, err, tok)
			if c != nil && strings.Contains(fmt.Sprintf("%v %+v %s", c, c, c), tok) {
				t.Errorf("the Recorder's text reveals the token: %v", c)
			}
		})
	}
}

func TestConfigHidesToken(t *testing.T) {
	const tok = "itk_secret-token-that-must-not-leak"
	cfg := client.Config{URL: "https://trail.example", Token: tok}
	c := newRecorder(t, cfg)
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("start", "config", cfg, "client", c)
	out := buf.String() + fmt.Sprintf("%v %+v %s", cfg, cfg, cfg)
	if strings.Contains(out, tok) {
		t.Errorf("the token shows: %s", out)
	}
	if !strings.Contains(out, "trail.example") || !strings.Contains(out, "[redacted]") {
		t.Errorf("want the URL and [redacted]: %s", out)
	}
}

// apiToken stands for an API token with the ingest role.
const apiToken = "itk_0000000000000000000000000000000000000000000"

func ExampleRecorder_Record() {
	rec, err := client.New(client.Config{URL: "http://127.0.0.1:8080", Token: apiToken})
	if err != nil {
		panic(err)
	}
	r := &infertrail.Record{
		Kind:       infertrail.KindToolCall,
		Actor:      infertrail.Actor{ID: "agent:payments-bot"},
		Attributes: map[string]json.RawMessage{"gen_ai.tool.name": json.RawMessage(`"approve_payment"`)},
		Content:    map[string]json.RawMessage{"gen_ai.tool.call.arguments": json.RawMessage(`{"invoice":7}`)},
	}
	for {
		seqs, err := rec.Record(context.Background(), r)
		var ce *client.Error
		if errors.Is(err, infertrail.ErrPushback) && errors.As(err, &ce) {
			time.Sleep(max(ce.RetryAfter, time.Second)) // safe: r now has an id
			continue
		}
		if err != nil {
			fmt.Println("error:", err)
			return
		}
		fmt.Println("appended as record", seqs[0])
		return
	}
}
