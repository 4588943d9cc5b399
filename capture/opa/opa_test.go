package opa_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/bundle"
	"github.com/open-policy-agent/opa/v1/compile"
	"github.com/open-policy-agent/opa/v1/logging"
	"github.com/open-policy-agent/opa/v1/plugins/logs"
	"github.com/open-policy-agent/opa/v1/sdk"
	"github.com/open-policy-agent/opa/v1/version"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/infertrail/infertrail"
	"github.com/infertrail/infertrail/access"
	"github.com/infertrail/infertrail/capture/gateway/gatewaytest"
	"github.com/infertrail/infertrail/capture/opa"
)

// testPolicy is the policy the OPA under test decides with.
const testPolicy = `package authz

default allow := false

allow if input.user == "alice"

deny contains msg if {
	input.amount > 1000
	msg := sprintf("amount %v is above 1000", [input.amount])
}
`

// bundleServer serves testPolicy as bundle authz, revision r42, as an
// OPA bundle server does.
func bundleServer(t testing.TB) *httptest.Server {
	t.Helper()
	module, err := ast.ParseModuleWithOpts("/authz/authz.rego", testPolicy, ast.ParserOptions{RegoVersion: ast.RegoV1})
	if err != nil {
		t.Fatal(err)
	}
	m := bundle.Manifest{Revision: "r42", Roots: &[]string{"authz"}}
	m.SetRegoVersion(ast.RegoV1)
	var tarball bytes.Buffer
	err = compile.New().WithOutput(&tarball).WithBundle(&bundle.Bundle{
		Manifest: m, Data: map[string]any{},
		Modules: []bundle.ModuleFile{{URL: "/authz/authz.rego", Path: "/authz/authz.rego", Parsed: module, Raw: []byte(testPolicy)}},
	}).Build(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path != "/bundles/authz.tar.gz" {
			http.NotFound(w, req)
			return
		}
		w.Header().Set("Content-Type", "application/gzip")
		w.Write(tarball.Bytes())
	}))
	t.Cleanup(srv.Close)
	return srv
}

// newAuth returns an authenticator over the trail's token store, and a
// function that mints tokens in it.
func newAuth(t testing.TB, trail *gatewaytest.Trail) (*access.Authenticator, func(tenant string, roles ...infertrail.Role) string) {
	t.Helper()
	a, err := access.New(access.Config{Tokens: trail.Log.Store(), RateLimit: -1})
	if err != nil {
		t.Fatal(err)
	}
	tokens := &access.Tokens{Store: trail.Log.Store(), Recorder: trail.Log}
	return a, func(tenant string, roles ...infertrail.Role) string {
		s, _, err := tokens.Create(t.Context(), access.TokenRequest{Name: "opa", Tenant: tenant, Roles: roles}, nil, infertrail.Actor{ID: "test"})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
}

func newReceiver(t testing.TB, cfg opa.Config) *opa.Receiver {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	rcv, err := opa.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return rcv
}

// decisions returns the trail's policy_decision records from OPA.
func decisions(t testing.TB, trail *gatewaytest.Trail) []gatewaytest.Record {
	t.Helper()
	var out []gatewaytest.Record
	for _, r := range trail.Records(t) {
		if r.Source == "opa" {
			out = append(out, r)
		}
	}
	return out
}

func treeSize(t testing.TB, trail *gatewaytest.Trail) uint64 {
	t.Helper()
	n, err := trail.Log.TreeSize(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return uint64(n)
}

func digest(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	c, err := infertrail.Canonicalize(b)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(c)
	return "sha256:" + hex.EncodeToString(sum[:])
}

func canonical(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	c, err := infertrail.Canonicalize(b)
	if err != nil {
		t.Fatal(err)
	}
	return string(c)
}

// upload is one request as OPA's uploads are.
type upload struct {
	body     []byte
	encoding string // Content-Encoding
	ctype    string // Content-Type; default application/json
	token    string
}

func post(t testing.TB, url string, u upload) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), "POST", url+"/logs", bytes.NewReader(u.body))
	if err != nil {
		t.Fatal(err)
	}
	ct := u.ctype
	if ct == "" {
		ct = "application/json"
	}
	req.Header.Set("Content-Type", ct)
	if u.encoding != "" {
		req.Header.Set("Content-Encoding", u.encoding)
	}
	if u.token != "" {
		req.Header.Set("Authorization", "Bearer "+u.token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

func gzipped(t testing.TB, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(b)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// events encodes decision events as OPA's plugin does: a JSON array of
// its own EventV1 type.
func events(t testing.TB, evs ...logs.EventV1) []byte {
	t.Helper()
	b, err := json.Marshal(evs)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func anyPtr(v any) *any { return &v }

// sampleEvent is a decision event as OPA v1.22 logs one.
func sampleEvent(id string) logs.EventV1 {
	return logs.EventV1{
		Labels:     map[string]string{"id": "opa-1", "version": version.Version},
		DecisionID: id,
		Bundles:    map[string]logs.BundleInfoV1{"authz": {Revision: "r42"}},
		Path:       "authz/allow",
		Input:      anyPtr(map[string]any{"user": "alice", "amount": 12.5}),
		Result:     anyPtr(true),
		Timestamp:  time.Date(2026, 11, 26, 10, 0, 1, 4512000, time.UTC),
		Metrics:    map[string]any{"timer_rego_query_eval_ns": 41000},
		RequestID:  7,
	}
}

// TestOPA drives a real OPA (the Go SDK, in process) that loads a policy
// bundle, decides, and uploads its decision log to the receiver, as an
// OPA server configured with decision_logs.service does.
func TestOPA(t *testing.T) {
	ctx := t.Context()
	trail := gatewaytest.NewTrail(t)
	auth, mint := newAuth(t, trail)
	token := mint("acme", infertrail.RoleIngest)
	rcv := newReceiver(t, opa.Config{Recorder: trail.Log, Auth: auth})

	// The first upload is recorded, but its answer is lost on the way
	// back: OPA keeps the events and sends them again.
	var (
		mu      sync.Mutex
		bodies  [][]byte
		headers []http.Header
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		req.Body = io.NopCloser(bytes.NewReader(body))
		mu.Lock()
		bodies, headers = append(bodies, body), append(headers, req.Header.Clone())
		first := len(bodies) == 1
		mu.Unlock()
		if first {
			rec := httptest.NewRecorder()
			rcv.ServeHTTP(rec, req)
			if rec.Code != http.StatusOK {
				t.Errorf("first upload: %d %s", rec.Code, rec.Body)
			}
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		rcv.ServeHTTP(w, req)
	}))
	t.Cleanup(srv.Close)

	config := fmt.Sprintf(`{
		"labels": {"region": "eu-west-1"},
		"services": {
			"bundles": {"url": %q},
			"infertrail": {"url": %q, "credentials": {"bearer": {"token": %q}}}
		},
		"bundles": {"authz": {"service": "bundles", "resource": "/bundles/authz.tar.gz"}},
		"decision_logs": {"service": "infertrail", "reporting": {"trigger": "manual"}}
	}`, bundleServer(t).URL, srv.URL, token)
	o, err := sdk.New(ctx, sdk.Options{
		Config: strings.NewReader(config), ID: "opa-test-1",
		Logger: logging.NewNoOpLogger(), ConsoleLogger: logging.NewNoOpLogger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer o.Stop(context.Background())

	type want struct {
		path    string
		input   map[string]any
		result  string
		reasons []any
	}
	cases := []want{
		{"/authz/allow", map[string]any{"user": "alice"}, "allow", nil},
		{"/authz/allow", map[string]any{"user": "bob", "amount": 12.5, "tags": []any{"a", "b"}}, "deny", nil},
		{"/authz/deny", map[string]any{"user": "alice", "amount": 1200}, "deny", []any{"amount 1200 is above 1000"}},
		{"/authz/deny", map[string]any{"user": "alice", "amount": 5}, "allow", nil},
	}
	base := time.Date(2026, 11, 26, 10, 0, 0, 123456000, time.UTC)
	ids := make([]string, len(cases))
	for i, c := range cases {
		res, err := o.Decision(ctx, sdk.DecisionOptions{Path: c.path, Input: c.input, Now: base.Add(time.Duration(i) * time.Second)})
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = res.ID
	}
	dl, ok := o.Plugin(logs.Name).(*logs.Plugin)
	if !ok {
		t.Fatal("no decision_logs plugin")
	}
	if err := dl.Trigger(ctx); err == nil {
		t.Fatal("the first upload's answer was lost, but OPA saw a success")
	}
	if n := len(decisions(t, trail)); n != len(cases) {
		t.Fatalf("after the first upload the trail holds %d decisions, want %d", n, len(cases))
	}
	size := treeSize(t, trail)
	if err := dl.Trigger(ctx); err != nil {
		t.Fatalf("OPA's second upload: %v", err)
	}
	if got := treeSize(t, trail); got != size {
		t.Fatalf("OPA's re-sent upload grew the log from %d to %d", size, got)
	}
	mu.Lock()
	if len(bodies) != 2 || !bytes.Equal(bodies[0], bodies[1]) {
		t.Errorf("OPA made %d uploads; want the same one twice", len(bodies))
	}
	for _, h := range headers {
		if h.Get("Content-Encoding") != "gzip" || h.Get("Content-Type") != "application/json" || h.Get("Authorization") != "Bearer "+token {
			t.Errorf("OPA's upload headers: %v", h)
		}
	}
	sent := bodies[0]
	mu.Unlock()

	recs := decisions(t, trail)
	if len(recs) != len(cases) {
		t.Fatalf("%d decision records, want %d", len(recs), len(cases))
	}
	for i, c := range cases {
		r := recs[i]
		if r.ID != opa.RecordID("acme", ids[i]) || r.Kind != infertrail.KindPolicyDecision || r.Tenant != "acme" {
			t.Errorf("record %d: id %v kind %s tenant %s", i, r.ID, r.Kind, r.Tenant)
		}
		if want := base.Add(time.Duration(i) * time.Second); !r.Time.Equal(want) {
			t.Errorf("record %d: time %v, want %v", i, r.Time, want)
		}
		if r.Actor != (infertrail.Actor{ID: "opa:opa-test-1", Type: "service"}) {
			t.Errorf("record %d: actor %+v", i, r.Actor)
		}
		for k, v := range map[string]any{
			"policy.engine":       "opa",
			"policy.decision_id":  ids[i],
			"policy.id":           strings.TrimPrefix(c.path, "/"),
			"policy.result":       c.result,
			"policy.bundle":       []any{"authz@r42"},
			"policy.input_digest": digest(t, c.input),
			"opa.instance.id":     "opa-test-1",
			"opa.version":         version.Version,
			"opa.labels":          map[string]any{"region": "eu-west-1"},
		} {
			if got := r.Attr(k); !reflect.DeepEqual(got, v) {
				t.Errorf("record %d: %s = %#v, want %#v", i, k, got, v)
			}
		}
		var got any
		if b, ok := r.Content["policy.reasons"]; ok {
			json.Unmarshal(b, &got)
		}
		if (c.reasons != nil || got != nil) && !reflect.DeepEqual(got, any(c.reasons)) {
			t.Errorf("record %d: policy.reasons = %#v, want %#v", i, got, c.reasons)
		}
		if _, ok := r.Attr("policy.eval_ns").(float64); !ok {
			t.Errorf("record %d: policy.eval_ns = %v", i, r.Attr("policy.eval_ns"))
		}
		if got, want := string(r.Content["policy.input"]), canonical(t, c.input); got != want {
			t.Errorf("record %d: content policy.input %s, want %s", i, got, want)
		}
		if len(r.Content["policy.result"]) == 0 {
			t.Errorf("record %d: no content policy.result", i)
		}
	}

	// OPA's upload once more, as it sent it: nothing new.
	if code, _, body := post(t, srv.URL, upload{body: sent, encoding: "gzip", token: token}); code != http.StatusOK {
		t.Fatalf("the upload again: %d %s", code, body)
	}
	if got := treeSize(t, trail); got != size {
		t.Fatalf("the upload again grew the log from %d to %d", size, got)
	}
}

// TestIdempotent sends the same upload twice: the second adds nothing.
func TestIdempotent(t *testing.T) {
	trail := gatewaytest.NewTrail(t)
	srv := httptest.NewServer(newReceiver(t, opa.Config{Recorder: trail.Log}))
	t.Cleanup(srv.Close)
	body := gzipped(t, events(t, sampleEvent("d-1"), sampleEvent("d-2"), sampleEvent("d-1")))
	for i := range 2 {
		code, _, resp := post(t, srv.URL, upload{body: body, encoding: "gzip"})
		if code != http.StatusOK {
			t.Fatalf("upload %d: %d %s", i, code, resp)
		}
		if n := treeSize(t, trail); n != 2 {
			t.Fatalf("after upload %d the log holds %d records, want 2", i, n)
		}
	}
	// Uncompressed, it is the same upload.
	if code, _, resp := post(t, srv.URL, upload{body: events(t, sampleEvent("d-2"))}); code != http.StatusOK || treeSize(t, trail) != 2 {
		t.Fatalf("uncompressed: %d %s, %d records", code, resp, treeSize(t, trail))
	}
	// A different decision under an id already recorded is refused.
	e := sampleEvent("d-1")
	e.Result = anyPtr(false)
	if code, _, resp := post(t, srv.URL, upload{body: events(t, e)}); code != http.StatusBadRequest || !strings.Contains(resp, `"event":0`) {
		t.Fatalf("a changed decision: %d %s", code, resp)
	}
	recs := decisions(t, trail)
	if recs[0].Tenant != infertrail.DefaultTenant || recs[0].ID != opa.RecordID(infertrail.DefaultTenant, "d-1") {
		t.Errorf("record 0: tenant %s id %v", recs[0].Tenant, recs[0].ID)
	}
}

func TestMalformed(t *testing.T) {
	trail := gatewaytest.NewTrail(t)
	reg := prometheus.NewRegistry()
	srv := httptest.NewServer(newReceiver(t, opa.Config{Recorder: trail.Log, MaxBodyBytes: 64 << 10, Registry: reg}))
	t.Cleanup(srv.Close)
	good := sampleEvent("d-good")
	raw := func(s string) json.RawMessage { return json.RawMessage(s) }
	withField := func(k string, v json.RawMessage) []byte {
		b, _ := json.Marshal(sampleEvent("d-bad"))
		var m map[string]json.RawMessage
		json.Unmarshal(b, &m)
		if v == nil {
			delete(m, k)
		} else {
			m[k] = v
		}
		gb, _ := json.Marshal(good)
		eb, _ := json.Marshal(m)
		return []byte("[" + string(gb) + "," + string(eb) + "]")
	}
	bomb := gzipped(t, bytes.Repeat([]byte(" "), 1<<20))
	bomb = append([]byte(nil), bomb...)
	for _, c := range []struct {
		name string
		u    upload
		code int
		want string // in the answer
	}{
		{"not gzip", upload{body: events(t, good), encoding: "gzip"}, 400, "not gzip"},
		{"truncated gzip", upload{body: gzipped(t, events(t, good))[:40], encoding: "gzip"}, 400, "gzip"},
		{"not JSON", upload{body: gzipped(t, []byte("decision log")), encoding: "gzip"}, 400, "not a JSON array"},
		{"broken JSON", upload{body: gzipped(t, []byte(`[{"decision_id": "x",`)), encoding: "gzip"}, 400, "not a JSON array"},
		{"object", upload{body: gzipped(t, []byte(`{"decision_id":"x","timestamp":"2026-11-26T10:00:00Z"}`)), encoding: "gzip"}, 400, "not a JSON array"},
		{"event not an object", upload{body: []byte(`[42]`)}, 400, "event 0: not a JSON object"},
		{"no decision_id", upload{body: gzipped(t, withField("decision_id", nil)), encoding: "gzip"}, 400, "event 1: field decision_id: missing"},
		{"decision_id a number", upload{body: withField("decision_id", raw(`42`))}, 400, "event 1: field decision_id: a JSON number, want a string"},
		{"bad timestamp", upload{body: gzipped(t, withField("timestamp", raw(`"yesterday"`))), encoding: "gzip"}, 400, "event 1: field timestamp"},
		{"no timestamp", upload{body: withField("timestamp", nil)}, 400, "event 1: field timestamp: missing"},
		{"not I-JSON input", upload{body: withField("input", raw(`{"n": 12345678901234567890}`))}, 400, "event 1: field input"},
		{"bad result", upload{body: withField("result", raw(`{"a":1,"a":2}`))}, 400, `event 1: field content[\"policy.result\"]`},
		{"text/plain", upload{body: events(t, good), ctype: "text/plain"}, 415, "Content-Type"},
		{"no content type", upload{body: events(t, good), ctype: ";"}, 415, "Content-Type"},
		{"brotli", upload{body: events(t, good), encoding: "br"}, 415, "Content-Encoding"},
		{"oversized", upload{body: events(t, slices.Repeat([]logs.EventV1{good}, 500)...)}, 413, "larger than"},
		{"oversized once decompressed", upload{body: bomb, encoding: "gzip"}, 413, "once decompressed"},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := treeSize(t, trail)
			code, _, body := post(t, srv.URL, c.u)
			if code != c.code || !strings.Contains(body, c.want) {
				t.Errorf("%d %s; want %d and %q", code, body, c.code, c.want)
			}
			if got := treeSize(t, trail); got != before {
				t.Errorf("the log grew from %d to %d", before, got)
			}
		})
	}
	if code, _, body := post(t, srv.URL, upload{body: []byte(`[]`)}); code != http.StatusOK {
		t.Errorf("an empty upload: %d %s", code, body)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	refused := 0.0
	for _, mf := range mfs {
		if mf.GetName() == "infertrail_opa_requests_refused_total" {
			for _, m := range mf.GetMetric() {
				refused += m.GetCounter().GetValue()
			}
		}
	}
	if refused != 17 {
		t.Errorf("infertrail_opa_requests_refused_total = %v, want 17", refused)
	}
}

// recorderFunc is a Recorder in front of a real one.
type recorderFunc func(ctx context.Context, recs ...*infertrail.Record) ([]int64, error)

func (f recorderFunc) Record(ctx context.Context, recs ...*infertrail.Record) ([]int64, error) {
	return f(ctx, recs...)
}

func TestBusy(t *testing.T) {
	trail := gatewaytest.NewTrail(t)
	var busy atomic.Bool
	busy.Store(true)
	rec := recorderFunc(func(ctx context.Context, recs ...*infertrail.Record) ([]int64, error) {
		if busy.Load() {
			return nil, fmt.Errorf("append: 65536 records queued: %w", infertrail.ErrPushback)
		}
		return trail.Log.Record(ctx, recs...)
	})
	srv := httptest.NewServer(newReceiver(t, opa.Config{Recorder: rec}))
	t.Cleanup(srv.Close)
	body := gzipped(t, events(t, sampleEvent("d-1")))
	code, h, resp := post(t, srv.URL, upload{body: body, encoding: "gzip"})
	if code != http.StatusServiceUnavailable || h.Get("Retry-After") == "" || treeSize(t, trail) != 0 {
		t.Fatalf("busy: %d %v %s", code, h, resp)
	}
	busy.Store(false)
	if code, _, resp := post(t, srv.URL, upload{body: body, encoding: "gzip"}); code != http.StatusOK || treeSize(t, trail) != 1 {
		t.Fatalf("retry: %d %s", code, resp)
	}
}

func TestAuth(t *testing.T) {
	trail := gatewaytest.NewTrail(t)
	auth, mint := newAuth(t, trail)
	ingest, auditor, all := mint("acme", infertrail.RoleIngest), mint("acme", infertrail.RoleAuditor), mint(infertrail.AllTenants, infertrail.RoleIngest)
	srv := httptest.NewServer(newReceiver(t, opa.Config{Recorder: trail.Log, Auth: auth}))
	t.Cleanup(srv.Close)
	body := gzipped(t, events(t, sampleEvent("d-1")))
	for _, c := range []struct {
		name  string
		token string
		code  int
	}{
		{"no token", "", 401},
		{"unknown token", "itk_" + strings.Repeat("A", 43), 401},
		{"auditor", auditor, 403},
	} {
		before := treeSize(t, trail)
		code, h, resp := post(t, srv.URL, upload{body: body, encoding: "gzip", token: c.token})
		if code != c.code {
			t.Errorf("%s: %d %s", c.name, code, resp)
		}
		if code == 401 && h.Get("WWW-Authenticate") == "" {
			t.Errorf("%s: no WWW-Authenticate", c.name)
		}
		if treeSize(t, trail) != before {
			t.Errorf("%s: the log grew", c.name)
		}
	}
	if code, _, resp := post(t, srv.URL, upload{body: body, encoding: "gzip", token: ingest}); code != 200 {
		t.Fatalf("ingest token: %d %s", code, resp)
	}
	if code, _, resp := post(t, srv.URL, upload{body: body, encoding: "gzip", token: all}); code != 200 {
		t.Fatalf("ingest token for every tenant: %d %s", code, resp)
	}
	recs := decisions(t, trail)
	if len(recs) != 2 || recs[0].Tenant != "acme" || recs[1].Tenant != infertrail.DefaultTenant {
		t.Fatalf("records: %d", len(recs))
	}
}

func TestMap(t *testing.T) {
	withError := sampleEvent("d-err")
	withError.Result = nil
	withError.Error = &sdk.Error{Code: "opa_undefined_error", Message: "authz/allow decision was undefined"}
	erased := sampleEvent("d-erased")
	erased.Input, erased.Erased = nil, []string{"/input"}
	masked := sampleEvent("d-masked")
	masked.Input, masked.Masked = anyPtr(map[string]any{"user": "**REDACTED**"}), []string{"/input/user"}
	traced := sampleEvent("d-traced")
	traced.TraceID, traced.SpanID = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	badTrace := sampleEvent("d-badtrace")
	badTrace.TraceID, badTrace.SpanID = "4BF92F3577B34DA6A3CE929D0E0E4736", "00f067aa0ba902b7"
	result := func(path string, v any) logs.EventV1 {
		e := sampleEvent("d-" + path)
		e.Path, e.Result = path, anyPtr(v)
		return e
	}
	for _, c := range []struct {
		name    string
		ev      logs.EventV1
		attrs   map[string]any // nil value: absent
		content map[string]bool
		trace   bool
	}{
		{"allow", sampleEvent("d-1"), map[string]any{
			"policy.engine": "opa", "policy.id": "authz/allow", "policy.decision_id": "d-1", "policy.result": "allow",
			"policy.bundle": []any{"authz@r42"}, "opa.instance.id": "opa-1", "policy.eval_ns": 41000.0, "opa.request_id": 7.0,
			"policy.input_digest": digest(t, map[string]any{"user": "alice", "amount": 12.5}), "opa.labels": nil,
		}, map[string]bool{"policy.input": true, "policy.result": true}, false},
		{"false", result("authz/allow", false), map[string]any{"policy.result": "deny"}, nil, false},
		{"deny rule true", result("/authz/deny", true), map[string]any{"policy.result": "deny"}, nil, false},
		{"empty violation set", result("k8s/violation", []any{}), map[string]any{"policy.result": "allow"}, nil, false},
		{"object allow", result("authz", map[string]any{"allow": false, "reasons": []any{"not the owner"}}),
			map[string]any{"policy.result": "deny", "policy.reasons": nil}, map[string]bool{"policy.reasons": true}, false},
		{"object allowed", result("envoy/authz", map[string]any{"allowed": true, "headers": map[string]any{"x": "y"}}),
			map[string]any{"policy.result": "allow"}, nil, false},
		{"object decision", result("payments", map[string]any{"decision": "require_approval", "reason": "over 1000 EUR"}),
			map[string]any{"policy.result": "require_approval", "policy.reasons": nil}, map[string]bool{"policy.reasons": true}, false},
		{"object result", result("payments", map[string]any{"result": "Modify"}), map[string]any{"policy.result": "modify"}, nil, false},
		{"string", result("payments/decision", "denied"), map[string]any{"policy.result": "deny"}, nil, false},
		{"unrecognised", result("authz/roles", []any{"admin"}), map[string]any{"policy.result": nil}, map[string]bool{"policy.result": true}, false},
		{"error", withError, map[string]any{"policy.result": nil, "error.type": "opa_undefined_error"},
			map[string]bool{"policy.result": false, "opa.error": true}, false},
		{"erased input", erased, map[string]any{"policy.input_digest": nil, "opa.erased": []any{"/input"}},
			map[string]bool{"policy.input": false}, false},
		{"masked input", masked, map[string]any{"policy.input_digest": nil, "opa.masked": []any{"/input/user"}},
			map[string]bool{"policy.input": true}, false},
		{"trace", traced, nil, nil, true},
		{"invalid trace", badTrace, nil, nil, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			recs, err := opa.Map(events(t, c.ev), "acme")
			if err != nil {
				t.Fatal(err)
			}
			r := recs[0]
			if err := r.Validate(infertrail.Limits{}); err != nil {
				t.Fatal(err)
			}
			for k, want := range c.attrs {
				var got any
				if v, ok := r.Attributes[k]; ok {
					json.Unmarshal(v, &got)
				}
				if !reflect.DeepEqual(got, want) {
					t.Errorf("%s = %#v, want %#v", k, got, want)
				}
			}
			for k, want := range c.content {
				if _, got := r.Content[k]; got != want {
					t.Errorf("content %s present: %v, want %v", k, got, want)
				}
			}
			if got := r.TraceID != ""; got != c.trace || (c.trace && (r.TraceID != c.ev.TraceID || r.SpanID != c.ev.SpanID)) {
				t.Errorf("trace %q span %q", r.TraceID, r.SpanID)
			}
		})
	}
}

// FuzzMap checks that no upload makes Map panic, and that what it accepts
// is one record per event, under the event's id.
func FuzzMap(f *testing.F) {
	b, _ := json.Marshal([]logs.EventV1{sampleEvent("d-1")})
	f.Add(b)
	f.Add([]byte(`[{"decision_id":"x","timestamp":"2026-11-26T10:00:00Z","result":{"allow":true},"labels":{"id":"a"}}]`))
	f.Add([]byte(`[{"decision_id":"x","timestamp":"2026-11-26T10:00:00Z","path":"/","result":[1]}]`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, body []byte) {
		recs, err := opa.Map(body, "acme")
		if err != nil {
			return
		}
		var evs []map[string]any
		if json.Unmarshal(body, &evs) != nil || len(evs) != len(recs) {
			t.Fatalf("%d records of %s", len(recs), body)
		}
		for i, r := range recs {
			var id string
			json.Unmarshal(r.Attributes["policy.decision_id"], &id)
			if r.ID != opa.RecordID("acme", id) || r.Kind != infertrail.KindPolicyDecision {
				t.Fatalf("record %d: %v %s", i, r.ID, r.Kind)
			}
		}
	})
}
