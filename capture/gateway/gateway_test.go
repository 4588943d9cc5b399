package gateway_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/expfmt"

	"github.com/infertrail/infertrail"
	"github.com/infertrail/infertrail/capture/gateway"
	"github.com/infertrail/infertrail/capture/gateway/gatewaytest"
)

// echo is a minimal provider for the gateway's own tests: its requests are
// {"model":…,"stream":…}; its streamed events are concatenated into the
// rebuilt body, and an event "[END]" ends a stream. The real wire formats
// are tested in capture/openai and capture/anthropic.
type echo struct{}

func (echo) Name() string { return "echo" }
func (echo) Endpoints() []gateway.Endpoint {
	return []gateway.Endpoint{{Method: "POST", Path: "/v1/chat", Operation: "chat", Kind: infertrail.KindInference}}
}
func (echo) ParseRequest(ep gateway.Endpoint, body []byte) (gateway.Call, error) {
	var req struct {
		Model  string `json:"model"`
		Stream bool   `json:"stream"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		return gateway.Call{}, fmt.Errorf("request body is not JSON: %w", infertrail.ErrInvalid)
	}
	return gateway.Call{Model: req.Model, Stream: req.Stream}, nil
}
func (echo) NewResponse(ep gateway.Endpoint, c *gateway.Call, limit int) gateway.Reconstructor {
	return &echoResponse{limit: limit}
}
func (echo) Credential(h http.Header) string {
	return strings.TrimPrefix(h.Get("Authorization"), "Bearer ")
}
func (echo) SetCredential(h http.Header, key string) {
	h.Del("Authorization")
	if key != "" {
		h.Set("Authorization", "Bearer "+key)
	}
}
func (echo) ErrorBody(status int, msg string) []byte {
	b, _ := json.Marshal(map[string]any{"error": map[string]any{"status": status, "message": msg}})
	return b
}

type echoResponse struct {
	limit     int
	text      strings.Builder
	body      []byte
	done      bool
	truncated bool
}

func (e *echoResponse) Event(name string, data []byte) {
	if string(data) == "[END]" {
		e.done = true
		return
	}
	if e.text.Len()+len(data) > e.limit {
		e.truncated = true
		return
	}
	e.text.Write(data)
}
func (e *echoResponse) Body(status int, b []byte) { e.body, e.done = bytes.Clone(b), true }
func (e *echoResponse) Result() gateway.Response {
	r := gateway.Response{Done: e.done, Truncated: e.truncated, Model: "echo-answered"}
	if bytes.Contains(e.body, []byte("oversized-attribute")) {
		// More than the trail takes in one attribute.
		r.Attributes = map[string]any{"echo.big": strings.Repeat("x", 20<<10)}
	}
	switch {
	case e.body != nil:
		r.Body = e.body
	case e.text.Len() > 0:
		r.Body, _ = json.Marshal(map[string]string{"text": e.text.String()})
	}
	return r
}

// upstream is a scripted upstream: handler decides each answer.
type upstream struct {
	*httptest.Server
	mu    sync.Mutex
	calls []*http.Request
	auth  []string
}

func newUpstream(tb testing.TB, h http.HandlerFunc) *upstream {
	u := &upstream{}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Read the body first, as a real server does: only then does
		// net/http notice a connection the gateway closes.
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		u.mu.Lock()
		u.calls = append(u.calls, r.Clone(context.Background()))
		u.auth = append(u.auth, r.Header.Get("Authorization"))
		u.mu.Unlock()
		h(w, r)
	}))
	tb.Cleanup(u.Close)
	return u
}

func (u *upstream) count() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.calls)
}

type rig struct {
	trail *gatewaytest.Trail
	gw    *gateway.Gateway
	srv   *httptest.Server
	logs  *bytes.Buffer
	reg   *prometheus.Registry
}

func newRig(tb testing.TB, up *upstream, edit func(*gateway.Config)) *rig {
	tb.Helper()
	trail := gatewaytest.NewTrail(tb)
	logs := &bytes.Buffer{}
	reg := prometheus.NewRegistry()
	cfg := gateway.Config{
		Recorder: trail.Log, Secret: gatewaytest.Secret,
		Upstreams: []gateway.Upstream{{Provider: echo{}, BaseURL: up.URL + "/v1",
			ResponseHeaderTimeout: 2 * time.Second, IdleTimeout: 2 * time.Second}},
		Logger:   slog.New(slog.NewTextHandler(&lockedWriter{w: logs}, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Registry: reg,
	}
	if edit != nil {
		edit(&cfg)
	}
	gw, err := gateway.New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	srv := trail.Serve(tb, gw)
	return &rig{trail: trail, gw: gw, srv: srv, logs: logs, reg: reg}
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// records waits for the records written after the fact and reads them all.
func (r *rig) records(tb testing.TB) []gatewaytest.Record {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.gw.Close(ctx); err != nil {
		tb.Fatal(err)
	}
	return r.trail.Records(tb)
}

func (r *rig) post(tb testing.TB, ctx context.Context, body string, hdr map[string]string) *http.Response {
	tb.Helper()
	req, err := http.NewRequestWithContext(ctx, "POST", r.srv.URL+"/echo/v1/chat", strings.NewReader(body))
	if err != nil {
		tb.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer sk-caller-secret-0123456789")
	req.Header.Set("Content-Type", "application/json")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	return resp
}

func readAll(tb testing.TB, resp *http.Response) []byte {
	tb.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

const answer = `{"id":"r-1","model":"echo-answered","text":"hello"}`

func okUpstream(w http.ResponseWriter, r *http.Request) {
	io.Copy(io.Discard, r.Body)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("x-request-id", "req_abc")
	io.WriteString(w, answer)
}

func TestRequestAhead(t *testing.T) {
	up := newUpstream(t, okUpstream)
	rig := newRig(t, up, nil)
	resp := rig.post(t, t.Context(), `{"model":"m-1","messages":["hi"]}`, map[string]string{
		gateway.HeaderAgent: "agent:claims", gateway.HeaderSession: "sess-1",
		"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
	})
	got := readAll(t, resp)
	if resp.StatusCode != 200 || string(got) != answer {
		t.Fatalf("got %d %q, want 200 and the upstream's bytes", resp.StatusCode, got)
	}
	if h := resp.Header.Get(gateway.HeaderRecord); h != "0" {
		t.Errorf("%s = %q, want the request record's seq 0", gateway.HeaderRecord, h)
	}
	tp := resp.Header.Get("traceparent")
	if !strings.HasPrefix(tp, "00-0af7651916cd43dd8448eb211c80319c-") || strings.Contains(tp, "b7ad6b7169203331") {
		t.Errorf("traceparent returned %q: want the caller's trace and the gateway's span", tp)
	}
	call := up.calls[0]
	if call.Header.Get("traceparent") != tp {
		t.Errorf("upstream saw traceparent %q, want %q", call.Header.Get("traceparent"), tp)
	}
	for k := range call.Header {
		if strings.HasPrefix(strings.ToLower(k), "x-infertrail-") {
			t.Errorf("upstream saw %s", k)
		}
	}
	if up.auth[0] != "Bearer sk-caller-secret-0123456789" {
		t.Errorf("upstream saw Authorization %q, want the caller's key passed through", up.auth[0])
	}
	recs := rig.records(t)
	if len(recs) != 2 {
		t.Fatalf("%d records, want 2", len(recs))
	}
	req, res := recs[0], recs[1]
	if req.Attr("infertrail.phase") != "request" || res.Attr("infertrail.phase") != "response" {
		t.Fatalf("phases %v, %v", req.Attr("infertrail.phase"), res.Attr("infertrail.phase"))
	}
	if len(res.Links) != 1 || res.Links[0].Rel != "answers" || res.Links[0].ID != req.ID {
		t.Errorf("response links %v, want answers → %v", res.Links, req.ID)
	}
	if resp.Header.Get(gateway.HeaderRecordID) != req.ID.String()+", "+res.ID.String() {
		t.Errorf("%s = %q", gateway.HeaderRecordID, resp.Header.Get(gateway.HeaderRecordID))
	}
	for _, r := range recs {
		if r.TraceID != "0af7651916cd43dd8448eb211c80319c" || r.ParentSpanID != "b7ad6b7169203331" || r.SpanID != tp[36:52] {
			t.Errorf("record %d trace %s/%s/%s", r.Seq, r.TraceID, r.SpanID, r.ParentSpanID)
		}
		if r.SessionID != "sess-1" || r.Actor.ID != "agent:claims" || !strings.HasPrefix(r.Actor.CredentialFingerprint, "hmac-sha256:") {
			t.Errorf("record %d session %q actor %+v", r.Seq, r.SessionID, r.Actor)
		}
		if r.Source != "echo" || r.Kind != infertrail.KindInference {
			t.Errorf("record %d source %q kind %q", r.Seq, r.Source, r.Kind)
		}
	}
	if req.Attr("gen_ai.request.model") != "m-1" || res.Attr("gen_ai.response.model") != "echo-answered" {
		t.Errorf("models: requested %v answered %v", req.Attr("gen_ai.request.model"), res.Attr("gen_ai.response.model"))
	}
	if string(req.Content["request"]) != `{"messages":["hi"],"model":"m-1"}` {
		t.Errorf("request content %s", req.Content["request"])
	}
	if string(res.Content["response"]) != `{"id":"r-1","model":"echo-answered","text":"hello"}` {
		t.Errorf("response content %s", res.Content["response"])
	}
	if res.Attr("http.response.status_code") != 200.0 || res.Attr("infertrail.upstream.request_id") != "req_abc" ||
		res.Attr("infertrail.incomplete") != nil {
		t.Errorf("response attributes %v", res.Attributes)
	}
}

// sseUpstream streams n events, waiting for next before each after the first.
func sseUpstream(n int, next chan struct{}, end bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		for i := range n {
			if i > 0 && next != nil {
				select {
				case <-next:
				case <-r.Context().Done():
					return
				}
			}
			fmt.Fprintf(w, "data: chunk%d\n\n", i)
			w.(http.Flusher).Flush()
		}
		if end {
			io.WriteString(w, "data: [END]\n\n")
		}
	}
}

func TestStreamingIsNotBuffered(t *testing.T) {
	next := make(chan struct{})
	up := newUpstream(t, sseUpstream(3, next, true))
	rig := newRig(t, up, nil)
	resp := rig.post(t, t.Context(), `{"model":"m","stream":true}`, nil)
	br := bufio.NewReader(resp.Body)
	var all bytes.Buffer
	for i := range 3 {
		// Each event must arrive before the upstream sends the next one.
		for {
			line, err := br.ReadString('\n')
			all.WriteString(line)
			if err != nil {
				t.Fatalf("event %d: %v", i, err)
			}
			if line == "\n" {
				break
			}
		}
		if i < 2 {
			next <- struct{}{}
		}
	}
	rest, _ := io.ReadAll(br)
	all.Write(rest)
	resp.Body.Close()
	if want := "data: chunk0\n\ndata: chunk1\n\ndata: chunk2\n\ndata: [END]\n\n"; all.String() != want {
		t.Fatalf("client got %q, want %q", all.String(), want)
	}
	recs := rig.records(t)
	res := recs[1]
	if string(res.Content["response"]) != `{"text":"chunk0chunk1chunk2"}` || res.Attr("infertrail.stream") != true ||
		res.Attr("infertrail.incomplete") != nil || res.Attr("infertrail.time_to_first_chunk_ns") == nil {
		t.Fatalf("response record %v %s", res.Attributes, res.Content["response"])
	}
}

func TestFaults(t *testing.T) {
	for _, tc := range []struct {
		name       string
		upstream   http.HandlerFunc
		cancel     bool // the client cancels after the first event
		wantStatus int  // 0: the client sees a broken stream
		wantReason string
	}{
		{"upstream closes mid-stream", func(w http.ResponseWriter, r *http.Request) {
			sseUpstream(2, nil, false)(w, r)
			panic(http.ErrAbortHandler)
		}, false, 200, "upstream_error"},
		{"stream without its end", sseUpstream(2, nil, false), false, 200, "no_terminal_event"},
		{"client cancels mid-stream", sseUpstream(3, make(chan struct{}), true), true, 200, "client_disconnected"},
		{"upstream hangs before headers", func(w http.ResponseWriter, r *http.Request) {
			<-r.Context().Done()
		}, false, http.StatusGatewayTimeout, "timeout"},
		{"upstream hangs mid-stream", sseUpstream(2, make(chan struct{}), true), false, 200, "idle_timeout"},
		{"upstream error status", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(429)
			io.WriteString(w, `{"error":{"message":"slow down"}}`)
		}, false, 429, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up := newUpstream(t, tc.upstream)
			rig := newRig(t, up, func(c *gateway.Config) {
				c.Upstreams[0].ResponseHeaderTimeout = 300 * time.Millisecond
				c.Upstreams[0].IdleTimeout = 300 * time.Millisecond
			})
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			resp := rig.post(t, ctx, `{"model":"m","stream":true}`, nil)
			if resp.StatusCode != tc.wantStatus {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.wantStatus)
			}
			if tc.cancel {
				br := bufio.NewReader(resp.Body)
				br.ReadString('\n')
				cancel()
			}
			io.ReadAll(resp.Body)
			resp.Body.Close()
			recs := rig.records(t)
			if len(recs) != 2 {
				t.Fatalf("%d records, want 2", len(recs))
			}
			res := recs[1]
			if tc.wantReason == "" {
				if res.Attr("infertrail.incomplete") != nil || res.Attr("error.type") != fmt.Sprint(tc.wantStatus) {
					t.Fatalf("response record %v", res.Attributes)
				}
				return
			}
			if res.Attr("infertrail.incomplete") != true || res.Attr("infertrail.incomplete_reason") != tc.wantReason {
				t.Fatalf("response record %v, want incomplete: %s", res.Attributes, tc.wantReason)
			}
			if tc.wantStatus == 200 && tc.wantReason != "client_disconnected" && !strings.Contains(string(res.Content["response"]), "chunk0") {
				t.Errorf("an incomplete record must keep what was seen: %s", res.Content["response"])
			}
		})
	}
}

// TestClientGoneWhileRecording: a client that goes away while its request
// record commits leaves the request on record with its outcome (not
// forwarded), never a request with no response record.
func TestClientGoneWhileRecording(t *testing.T) {
	up := newUpstream(t, okUpstream)
	lr := &gatewaytest.LateRecorder{Committed: make(chan struct{})}
	rig := newRig(t, up, func(c *gateway.Config) {
		lr.Recorder = c.Recorder
		c.Recorder = lr
	})
	ctx, cancel := context.WithCancel(t.Context())
	go func() {
		<-lr.Committed
		cancel()
	}()
	req, err := http.NewRequestWithContext(ctx, "POST", rig.srv.URL+"/echo/v1/chat", strings.NewReader(`{"model":"m"}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if _, err := http.DefaultClient.Do(req); !errors.Is(err, context.Canceled) {
		t.Fatalf("call: %v, want it cancelled", err)
	}
	recs := rig.records(t)
	if len(recs) != 2 || recs[0].Attr("gen_ai.operation.name") == nil {
		t.Fatalf("%d records, want the request and its response record", len(recs))
	}
	if res := recs[1]; res.Attr("infertrail.incomplete_reason") != "not_forwarded" || res.Attr("http.response.status_code") != 499.0 {
		t.Fatalf("response record %v", res.Attributes)
	}
	if up.count() != 0 {
		t.Fatal("the request of a client that went away reached the upstream")
	}
}

func TestUpstreamUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	rig := newRig(t, newUpstream(t, okUpstream), func(c *gateway.Config) { c.Upstreams[0].BaseURL = "http://" + addr })
	resp := rig.post(t, t.Context(), `{"model":"m"}`, nil)
	body := readAll(t, resp)
	if resp.StatusCode != http.StatusBadGateway || !strings.Contains(string(body), "could not be reached") {
		t.Fatalf("got %d %s", resp.StatusCode, body)
	}
	recs := rig.records(t)
	if len(recs) != 2 || recs[1].Attr("infertrail.incomplete_reason") != "upstream_error" || recs[1].Attr("http.response.status_code") != 502.0 {
		t.Fatalf("records %v", recs)
	}
	if string(recs[1].Content["response"]) != string(body) {
		t.Errorf("the record keeps the error the client got: %s vs %s", recs[1].Content["response"], body)
	}
}

func TestStoreUnavailable(t *testing.T) {
	up := newUpstream(t, okUpstream)
	rig := newRig(t, up, nil)
	rig.trail.DB.Close()
	resp := rig.post(t, t.Context(), `{"model":"m"}`, nil)
	body := readAll(t, resp)
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("got %d %s, want 503 with Retry-After", resp.StatusCode, body)
	}
	var e struct {
		Error struct{ Message string } `json:"error"`
	}
	if json.Unmarshal(body, &e) != nil || !strings.Contains(e.Error.Message, "not forwarded") {
		t.Fatalf("body %s: want the provider's error shape saying it was not forwarded", body)
	}
	if up.count() != 0 {
		t.Fatal("an unrecorded request reached the upstream")
	}
}

func TestRefusals(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		max        int64
		status     int
		want       string
	}{
		{"oversized body", `{"model":"m","pad":"` + strings.Repeat("x", 2000) + `"}`, 1000, 413, "at most 1000"},
		{"malformed body", `{"model":`, 0, 400, "not JSON"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up := newUpstream(t, okUpstream)
			rig := newRig(t, up, func(c *gateway.Config) { c.MaxRequestBytes = tc.max })
			resp := rig.post(t, t.Context(), tc.body, nil)
			body := readAll(t, resp)
			if resp.StatusCode != tc.status || !strings.Contains(string(body), tc.want) {
				t.Fatalf("got %d %s, want %d naming %q", resp.StatusCode, body, tc.status, tc.want)
			}
			if up.count() != 0 {
				t.Fatal("a refused request reached the upstream")
			}
			recs := rig.records(t)
			if len(recs) != 1 || recs[0].Attr("infertrail.refused") == nil || recs[0].Attr("http.response.status_code") != float64(tc.status) {
				t.Fatalf("records %+v: want one refusal record", recs)
			}
		})
	}
}

func TestFailClosed(t *testing.T) {
	t.Run("body", func(t *testing.T) {
		rig := newRig(t, newUpstream(t, okUpstream), func(c *gateway.Config) { c.Durability = gateway.FailClosed })
		resp := rig.post(t, t.Context(), `{"model":"m"}`, nil)
		if b := readAll(t, resp); string(b) != answer || resp.Header.Get(gateway.HeaderRecord) != "0, 1" {
			t.Fatalf("got %q with %s %q", b, gateway.HeaderRecord, resp.Header.Get(gateway.HeaderRecord))
		}
	})
	t.Run("stream trailer", func(t *testing.T) {
		rig := newRig(t, newUpstream(t, sseUpstream(2, nil, true)), func(c *gateway.Config) { c.Durability = gateway.FailClosed })
		resp := rig.post(t, t.Context(), `{"model":"m","stream":true}`, nil)
		readAll(t, resp)
		if resp.Trailer.Get(gateway.HeaderRecord) != "0, 1" {
			t.Fatalf("trailer %v", resp.Trailer)
		}
	})
	t.Run("record fails", func(t *testing.T) {
		var rig *rig
		rig = newRig(t, newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
			rig.trail.DB.Close() // the request record is in; the response's cannot be
			okUpstream(w, r)
		}), func(c *gateway.Config) { c.Durability = gateway.FailClosed })
		resp := rig.post(t, t.Context(), `{"model":"m"}`, nil)
		if b := readAll(t, resp); resp.StatusCode != 503 || strings.Contains(string(b), "hello") {
			t.Fatalf("got %d %s: an unrecorded response must be withheld", resp.StatusCode, b)
		}
	})
}

func TestAsync(t *testing.T) {
	rig := newRig(t, newUpstream(t, okUpstream), func(c *gateway.Config) { c.Durability = gateway.Async; c.MaxPending = 4 })
	for range 20 {
		resp := rig.post(t, t.Context(), `{"model":"m"}`, nil)
		if b := readAll(t, resp); string(b) != answer {
			t.Fatalf("got %q", b)
		}
		if resp.Header.Get(gateway.HeaderRecord) != "" {
			t.Fatal("async mode cannot promise a durable record")
		}
	}
	if recs := rig.records(t); len(recs) != 40 {
		t.Fatalf("%d records, want 40: none may be dropped", len(recs))
	}
}

func TestVirtualKeys(t *testing.T) {
	up := newUpstream(t, okUpstream)
	rig := newRig(t, up, func(c *gateway.Config) {
		c.RequireVirtualKey = true
		c.VirtualKeys = []gateway.VirtualKey{{Name: "payments", Key: "vk-payments-0123456789", Agent: "agent:payments",
			Owner: "alice@example.com", Tenant: "acme", Upstream: map[string]gateway.Secret{"echo": "sk-upstream-9876543210"}}}
	})
	resp := rig.post(t, t.Context(), `{"model":"m"}`, map[string]string{"Authorization": "Bearer vk-payments-0123456789", gateway.HeaderAgent: "agent:other"})
	readAll(t, resp)
	if resp.StatusCode != 200 || up.auth[0] != "Bearer sk-upstream-9876543210" {
		t.Fatalf("status %d, upstream saw %q: want the virtual key's upstream key", resp.StatusCode, up.auth[0])
	}
	resp = rig.post(t, t.Context(), `{"model":"m"}`, nil) // the caller's own key
	if b := readAll(t, resp); resp.StatusCode != 401 || !strings.Contains(string(b), "not a virtual key") {
		t.Fatalf("got %d %s, want 401", resp.StatusCode, b)
	}
	if up.count() != 1 {
		t.Fatal("an unauthenticated call reached the upstream")
	}
	recs := rig.records(t)
	if len(recs) != 3 {
		t.Fatalf("%d records, want the call's two and the refusal", len(recs))
	}
	var r, refused gatewaytest.Record
	for _, rec := range recs {
		switch {
		case rec.Attr("infertrail.refused") != nil:
			refused = rec
		case rec.Attr("infertrail.phase") == "request":
			r = rec
		}
	}
	if refused.Record == nil || refused.Attr("http.response.status_code") != 401.0 || refused.Content != nil ||
		!strings.HasPrefix(refused.Actor.CredentialFingerprint, "hmac-sha256:") {
		t.Fatalf("refusal record %+v", refused)
	}
	if r.Tenant != "acme" || r.Actor.ID != "agent:payments" || r.Actor.OnBehalfOf != "alice@example.com" ||
		r.Attr("infertrail.virtual_key") != "payments" || r.Attr("infertrail.claimed_agent") != "agent:other" {
		t.Fatalf("record %+v %v", r.Actor, r.Attributes)
	}

	// No secret lands anywhere: database, logs, metrics.
	rig.trail.DB.Close()
	var stored []byte
	for _, suffix := range []string{"", "-wal"} {
		b, _ := os.ReadFile(rig.trail.Path + suffix)
		stored = append(stored, b...)
	}
	metrics, _ := testutil.CollectAndFormat(rig.reg, expfmt.TypeTextPlain)
	for _, secret := range []string{"vk-payments-0123456789", "sk-upstream-9876543210", "sk-caller-secret-0123456789"} {
		for what, b := range map[string][]byte{"database": stored, "logs": rig.logs.Bytes(), "metrics": metrics} {
			if bytes.Contains(b, []byte(secret)) {
				t.Errorf("%s holds the secret %s", what, secret)
			}
		}
	}
}

// TestOneWritePerRequest: the gateway sends each request's headers and
// body to the upstream in one write, the body as forwarded.
func TestOneWritePerRequest(t *testing.T) {
	bodies := make(chan string, 3)
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		bodies <- string(b)
		okUpstream(w, r)
	})
	wc := gatewaytest.NewWriteCounter()
	rig := newRig(t, up, func(c *gateway.Config) { c.Upstreams[0].Transport = wc })
	for i := range 3 {
		body := fmt.Sprintf(`{"model":"m-1","messages":[%q]}`, strings.Repeat("x", 2000+i))
		resp := rig.post(t, t.Context(), body, nil)
		if answer := readAll(t, resp); resp.StatusCode != 200 {
			t.Fatalf("status %d: %s", resp.StatusCode, answer)
		}
		if got := <-bodies; got != body {
			t.Fatalf("call %d: the upstream got %d bytes, want the %d sent", i, len(got), len(body))
		}
		if n := wc.Writes(); n != int64(i+1) {
			t.Fatalf("after %d calls the gateway wrote %d times to the upstream, want one write per call", i+1, n)
		}
	}
}

func TestTraceparentCreated(t *testing.T) {
	up := newUpstream(t, okUpstream)
	rig := newRig(t, up, nil)
	resp := rig.post(t, t.Context(), `{"model":"m"}`, map[string]string{"traceparent": "00-00000000000000000000000000000000-b7ad6b7169203331-01"})
	readAll(t, resp)
	tp := resp.Header.Get("traceparent")
	if len(tp) != 55 || strings.Contains(tp, "00000000000000000000000000000000") || up.calls[0].Header.Get("traceparent") != tp {
		t.Fatalf("traceparent %q (upstream saw %q): want a new valid one", tp, up.calls[0].Header.Get("traceparent"))
	}
	recs := rig.records(t)
	if recs[0].TraceID != tp[3:35] || recs[0].ParentSpanID != "" {
		t.Fatalf("record trace %s parent %q", recs[0].TraceID, recs[0].ParentSpanID)
	}
}

func TestUnknownEndpoint(t *testing.T) {
	rig := newRig(t, newUpstream(t, okUpstream), nil)
	resp, err := http.Get(rig.srv.URL + "/echo/v1/other")
	if err != nil {
		t.Fatal(err)
	}
	if b := readAll(t, resp); resp.StatusCode != 404 || !strings.Contains(string(b), "POST /echo/v1/chat") {
		t.Fatalf("got %d %s", resp.StatusCode, b)
	}
}

// TestNoRecordLostUnderLoad drives many concurrent calls through a gateway
// whose queue of records written after the fact is tiny, in each mode:
// calls wait for room, and every call that was answered has both records.
func TestNoRecordLostUnderLoad(t *testing.T) {
	for _, mode := range []gateway.Durability{gateway.RequestAhead, gateway.FailClosed, gateway.Async} {
		t.Run(mode.String(), func(t *testing.T) {
			rig := newRig(t, newUpstream(t, okUpstream), func(c *gateway.Config) { c.Durability = mode; c.MaxPending = 2 })
			const clients, calls = 16, 10
			var wg sync.WaitGroup
			var mu sync.Mutex
			answered := 0
			for range clients {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for range calls {
						resp := rig.post(t, t.Context(), `{"model":"m"}`, nil)
						readAll(t, resp)
						if resp.StatusCode == 200 {
							mu.Lock()
							answered++
							mu.Unlock()
						}
					}
				}()
			}
			wg.Wait()
			if answered != clients*calls {
				t.Errorf("%d of %d calls answered", answered, clients*calls)
			}
			if n := len(rig.records(t)); n != 2*answered {
				t.Fatalf("%d records for %d answered calls, want %d", n, answered, 2*answered)
			}
		})
	}
}

// TestRefusedRecordIsolated: a response record the trail refuses (here an
// attribute over its size limit) neither fails the next call, whose
// request record shares its commit, nor goes missing: it is kept with its
// core attributes.
func TestRefusedRecordIsolated(t *testing.T) {
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if r.Header.Get("X-Test-Big") != "" {
			io.WriteString(w, `{"text":"oversized-attribute"}`)
			return
		}
		io.WriteString(w, answer)
	})
	rig := newRig(t, up, nil)
	for _, big := range []string{"1", ""} {
		resp := rig.post(t, t.Context(), `{"model":"m"}`, map[string]string{"X-Test-Big": big})
		if b := readAll(t, resp); resp.StatusCode != 200 {
			t.Fatalf("status %d %s", resp.StatusCode, b)
		}
	}
	recs := rig.records(t)
	if len(recs) != 4 {
		t.Fatalf("%d records, want 4", len(recs))
	}
	refused := 0
	for _, r := range recs {
		if r.Attr("infertrail.attributes_refused") != nil {
			refused++
			if r.Attr("echo.big") != nil || r.Attr("gen_ai.response.model") != "echo-answered" || r.Content != nil {
				t.Errorf("refused record kept %v", r.Attributes)
			}
		}
	}
	if refused != 1 {
		t.Errorf("%d records with refused attributes, want 1", refused)
	}
}

// TestForensicRoute keeps the raw stream of a forensic route, byte for
// byte as the client received it, and marks its records' profile.
func TestForensicRoute(t *testing.T) {
	up := newUpstream(t, sseUpstream(3, nil, true))
	rig := newRig(t, up, func(c *gateway.Config) {
		c.Upstreams[0].Profile = "forensic"
		c.MaxCaptureBytes = 40 // the raw stream (52 bytes) is cut: its first events are kept
	})
	resp := rig.post(t, t.Context(), `{"model":"m","stream":true}`, nil)
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	recs := rig.records(t)
	res := recs[1]
	if res.Attr("capture.profile") != "forensic" || recs[0].Attr("capture.profile") != "forensic" {
		t.Errorf("profile attributes %v / %v", recs[0].Attr("capture.profile"), res.Attr("capture.profile"))
	}
	var prefix string
	json.Unmarshal(res.Content["response.raw"], &prefix)
	if prefix == "" || !strings.HasPrefix(string(got), prefix) || len(prefix) > 40 || res.Attr("infertrail.response.raw_truncated") != true {
		t.Errorf("a raw stream over the limit: %q, truncated %v; want a prefix of %q", prefix, res.Attr("infertrail.response.raw_truncated"), got)
	}

	rig = newRig(t, up, func(c *gateway.Config) { c.Upstreams[0].Profile = "forensic" })
	resp = rig.post(t, t.Context(), `{"model":"m","stream":true}`, nil)
	got, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	res = rig.records(t)[1]
	var raw string
	if err := json.Unmarshal(res.Content["response.raw"], &raw); err != nil || raw != string(got) {
		t.Errorf("response.raw = %q (%v), want what the client got: %q", raw, err, got)
	}
	if string(res.Content["response"]) != `{"text":"chunk0chunk1chunk2"}` {
		t.Errorf("rebuilt response %s", res.Content["response"])
	}
	if _, err := gateway.New(gateway.Config{Recorder: rig.trail.Log, Secret: gatewaytest.Secret,
		Upstreams: []gateway.Upstream{{Provider: echo{}, BaseURL: up.URL, Profile: "everything"}}}); err == nil {
		t.Error("an unknown profile was accepted")
	}
}
