package mcp_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/infertrail/infertrail"
	"github.com/infertrail/infertrail/access"
	"github.com/infertrail/infertrail/capture/gateway/gatewaytest"
	"github.com/infertrail/infertrail/capture/mcp"
	"github.com/infertrail/infertrail/capture/mcp/mcptest"
	"github.com/infertrail/infertrail/ledger"
	"github.com/infertrail/infertrail/policy"
)

type rig struct {
	trail    *gatewaytest.Trail
	gw       *mcp.Gateway
	srv      *httptest.Server
	upstream *httptest.Server
	release  chan struct{}
	started  chan struct{}
	requests atomic.Int64 // HTTP requests the upstream got
}

func newRig(tb testing.TB, edit func(*mcp.Config)) *rig {
	tb.Helper()
	r := &rig{trail: gatewaytest.NewTrail(tb), release: make(chan struct{}), started: make(chan struct{}, 4)}
	server := mcptest.NewServer(r.release, r.started)
	h := sdk.NewStreamableHTTPHandler(func(*http.Request) *sdk.Server { return server }, nil)
	r.upstream = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.requests.Add(1)
		h.ServeHTTP(w, req)
	}))
	tb.Cleanup(r.upstream.Close)
	cfg := mcp.Config{Recorder: r.trail.Log, Secret: gatewaytest.Secret,
		Servers: []mcp.Server{{Name: "payments", URL: r.upstream.URL}}}
	if edit != nil {
		edit(&cfg)
	}
	gw, err := mcp.New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	r.gw = gw
	r.srv = httptest.NewServer(gw)
	tb.Cleanup(r.srv.Close)
	return r
}

func (r *rig) connect(tb testing.TB, protocol string, progress *atomic.Int32) *sdk.ClientSession {
	tb.Helper()
	cli := sdk.NewClient(&sdk.Implementation{Name: "finance-agent", Version: "0.9.0"}, &sdk.ClientOptions{
		ProgressNotificationHandler: func(context.Context, *sdk.ProgressNotificationClientRequest) {
			if progress != nil {
				progress.Add(1)
			}
		}})
	cs, err := cli.Connect(tb.Context(), &sdk.StreamableClientTransport{Endpoint: r.srv.URL + "/mcp/payments", MaxRetries: -1},
		&sdk.ClientSessionOptions{ProtocolVersion: protocol})
	if err != nil {
		tb.Fatalf("connect through the gateway: %v", err)
	}
	return cs
}

func (r *rig) records(tb testing.TB) []gatewaytest.Record {
	tb.Helper()
	return r.trail.Drain(tb, r.srv, r.gw)
}

// byMethod groups records by mcp.method.name (tools/call by phase too).
func byMethod(recs []gatewaytest.Record) map[string][]gatewaytest.Record {
	out := map[string][]gatewaytest.Record{}
	for _, r := range recs {
		k, _ := r.Attr("mcp.method.name").(string)
		if p, ok := r.Attr("infertrail.phase").(string); ok {
			k += " " + p
		}
		out[k] = append(out[k], r)
	}
	return out
}

func canonical(tb testing.TB, v any) string {
	tb.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		tb.Fatal(err)
	}
	c, err := infertrail.Canonicalize(b)
	if err != nil {
		tb.Fatal(err)
	}
	return string(c)
}

// exercise makes every kind of call the records must show, and returns
// what the client saw of the three tool calls.
func exercise(tb testing.TB, cs *sdk.ClientSession) (pay, refund, export *sdk.CallToolResult, tools *sdk.ListToolsResult) {
	tb.Helper()
	ctx := tb.Context()
	var err error
	if tools, err = cs.ListTools(ctx, nil); err != nil || len(tools.Tools) != 4 {
		tb.Fatalf("tools/list: %v %v", tools, err)
	}
	pay, err = cs.CallTool(ctx, &sdk.CallToolParams{Name: "pay", Arguments: map[string]any{"invoice": "INV-7", "amount_eur": 1200.5},
		Meta: sdk.Meta{"io.infertrail/tool_call_id": "call_abc123", "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}})
	if err != nil || pay.IsError {
		tb.Fatalf("pay: %v %v", pay, err)
	}
	if refund, err = cs.CallTool(ctx, &sdk.CallToolParams{Name: "refund", Arguments: map[string]any{}}); err != nil || !refund.IsError {
		tb.Fatalf("refund: %v %v", refund, err)
	}
	if export, err = cs.CallTool(ctx, &sdk.CallToolParams{Name: "export", Arguments: map[string]any{}, Meta: sdk.Meta{"progressToken": "exp-1"}}); err != nil {
		tb.Fatalf("export: %v", err)
	}
	if res, err := cs.ReadResource(ctx, &sdk.ReadResourceParams{URI: "file:///policies/payments.md"}); err != nil || len(res.Contents) != 1 {
		tb.Fatalf("resources/read: %v %v", res, err)
	}
	if res, err := cs.GetPrompt(ctx, &sdk.GetPromptParams{Name: "approve", Arguments: map[string]string{"invoice": "INV-7"}}); err != nil || len(res.Messages) != 1 {
		tb.Fatalf("prompts/get: %v %v", res, err)
	}
	return pay, refund, export, tools
}

// checkRecords checks the records of exercise against what the client saw.
func checkRecords(t *testing.T, recs []gatewaytest.Record, transport string, pay, refund, export *sdk.CallToolResult, tools *sdk.ListToolsResult) {
	t.Helper()
	m := byMethod(recs)
	for _, k := range []string{"tools/list", "tools/call request", "tools/call response", "resources/read", "prompts/get"} {
		if len(m[k]) == 0 {
			t.Fatalf("no %s record; records: %v", k, keys(m))
		}
	}
	if len(m["tools/call request"]) != 3 || len(m["tools/call response"]) != 3 {
		t.Fatalf("%d tools/call requests and %d responses recorded, want 3 and 3", len(m["tools/call request"]), len(m["tools/call response"]))
	}
	reqs := map[infertrail.UUID]gatewaytest.Record{}
	for _, r := range m["tools/call request"] {
		reqs[r.ID] = r
		if r.Kind != infertrail.KindToolCall || r.Source != "mcp" || r.Attr("network.transport") != transport || r.Attr("mcp.server.name") != "payments" {
			t.Errorf("request record %v %v", r.Kind, r.Attributes)
		}
	}
	seen := map[string]*sdk.CallToolResult{"pay": pay, "refund": refund, "export": export}
	for _, resp := range m["tools/call response"] {
		name, _ := resp.Attr("gen_ai.tool.name").(string)
		want := seen[name]
		if want == nil {
			t.Fatalf("response record for tool %q", name)
		}
		if len(resp.Links) != 1 || resp.Links[0].Rel != "answers" {
			t.Fatalf("response record links %v", resp.Links)
		}
		req, ok := reqs[resp.Links[0].ID]
		if !ok || req.Attr("gen_ai.tool.name") != name {
			t.Fatalf("response of %s does not answer its request record", name)
		}
		// The record holds exactly what the client saw.
		if got, wantJSON := string(resp.Content["gen_ai.tool.call.result"]), canonical(t, want); got != wantJSON {
			t.Errorf("%s: recorded result\n %s\nclient saw\n %s", name, got, wantJSON)
		}
		if resp.Attr("mcp.tool.is_error") != want.IsError {
			t.Errorf("%s: mcp.tool.is_error = %v, want %v", name, resp.Attr("mcp.tool.is_error"), want.IsError)
		}
		if resp.Attr("infertrail.duration_ns") == nil || resp.Attr("jsonrpc.request.id") != req.Attr("jsonrpc.request.id") {
			t.Errorf("%s: response attributes %v", name, resp.Attributes)
		}
		switch name {
		case "pay":
			if got := string(req.Content["gen_ai.tool.call.arguments"]); got != `{"amount_eur":1200.5,"invoice":"INV-7"}` {
				t.Errorf("pay arguments %s", got)
			}
			if req.Attr("gen_ai.tool.call.id") != "call_abc123" || req.TraceID != "4bf92f3577b34da6a3ce929d0e0e4736" || req.ParentSpanID != "00f067aa0ba902b7" {
				t.Errorf("pay request: tool call id %v, trace %s parent %s", req.Attr("gen_ai.tool.call.id"), req.TraceID, req.ParentSpanID)
			}
		case "refund":
			if resp.Attr("error.type") != "tool_error" {
				t.Errorf("refund error.type %v", resp.Attr("error.type"))
			}
		case "export":
			if n, _ := resp.Attr("mcp.progress.notifications").(float64); n < 1 {
				t.Errorf("export: %v progress notifications recorded", resp.Attr("mcp.progress.notifications"))
			}
		}
	}
	tl := m["tools/list"][0]
	if got, want := fmt.Sprint(tl.Attr("mcp.tools.names")), "[pay refund export hang]"; !sameSet(got, want) {
		t.Errorf("tools/list names %s", got)
	}
	if got := tl.Content["mcp.response"]; got == nil || !strings.Contains(string(got), `"inputSchema"`) || tl.Attr("mcp.tools.digest") == nil {
		t.Errorf("tools/list record %v %s", tl.Attributes, got)
	}
	rr := m["resources/read"][0]
	if rr.Kind != infertrail.KindRetrieval || rr.Attr("mcp.resource.uri") != "file:///policies/payments.md" || !strings.Contains(string(rr.Content["mcp.response"]), "need approval") {
		t.Errorf("resources/read record %v %v", rr.Attributes, rr.Content)
	}
	pg := m["prompts/get"][0]
	if pg.Kind != infertrail.KindRetrieval || pg.Attr("mcp.prompt.name") != "approve" || !strings.Contains(string(pg.Content["mcp.response"]), "Approve invoice INV-7") {
		t.Errorf("prompts/get record %v %v", pg.Attributes, pg.Content)
	}
	// The client's and the server's names and versions are on every record.
	for _, r := range recs {
		if r.Attr("mcp.protocol_error") != nil {
			continue
		}
		if r.Attr("mcp.client.name") != "finance-agent" || r.Attr("mcp.client.version") != "0.9.0" || r.Actor.ID != "mcp-client:finance-agent" {
			t.Errorf("%v record %v: client %v %v, actor %+v", r.Attr("mcp.method.name"), r.Attr("infertrail.phase"), r.Attr("mcp.client.name"), r.Attr("mcp.client.version"), r.Actor)
		}
		if r.Attr("infertrail.phase") != "request" && r.Attr("mcp.server.implementation.name") != "payments-server" {
			t.Errorf("%v record: server implementation %v", r.Attr("mcp.method.name"), r.Attr("mcp.server.implementation.name"))
		}
	}
}

func sameSet(a, b string) bool {
	fa, fb := strings.Fields(strings.Trim(a, "[]")), strings.Fields(strings.Trim(b, "[]"))
	if len(fa) != len(fb) {
		return false
	}
	set := map[string]bool{}
	for _, x := range fa {
		set[x] = true
	}
	for _, x := range fb {
		if !set[x] {
			return false
		}
	}
	return true
}

func keys(m map[string][]gatewaytest.Record) []string {
	var out []string
	for k, v := range m {
		out = append(out, fmt.Sprintf("%s×%d", k, len(v)))
	}
	return out
}

// TestHTTP drives a real MCP server through the gateway with the official
// SDK's client: with the SDK's default negotiation (it tries the stateless
// server/discover of 2026-07-28, which its server refuses, then falls back
// to initialize) and with protocol 2025-06-18 from the start.
func TestHTTP(t *testing.T) {
	for _, protocol := range []string{"", "2025-06-18"} {
		t.Run("protocol "+protocol, func(t *testing.T) {
			wc := gatewaytest.NewWriteCounter()
			r := newRig(t, func(c *mcp.Config) { c.Servers[0].Transport = wc })
			var progress atomic.Int32
			cs := r.connect(t, protocol, &progress)
			pay, refund, export, tools := exercise(t, cs)
			if progress.Load() == 0 {
				t.Error("the client got no progress notification through the gateway")
			}
			cs.Close()
			recs := r.records(t)
			// Each request's headers and body go to the server in one write.
			if w, n := wc.Writes(), r.requests.Load(); w != n {
				t.Errorf("the gateway wrote %d times to the server for %d requests, want one write each", w, n)
			}
			checkRecords(t, recs, "tcp", pay, refund, export, tools)
			m := byMethod(recs)
			if protocol != "" {
				if len(m["initialize"]) != 1 {
					t.Fatalf("initialize records: %d", len(m["initialize"]))
				}
				if r := m["tools/call request"][0]; r.Attr("mcp.session.id") == nil || r.SessionID == "" || r.Attr("mcp.protocol.version") != "2025-06-18" {
					t.Errorf("record of a session: session %q, attributes %v", r.SessionID, r.Attributes)
				}
			} else if len(m["server/discover"]) != 1 {
				t.Errorf("server/discover records: %d (%v)", len(m["server/discover"]), keys(m))
			}
		})
	}
}

// TestStdio drives the same server over stdio, with the gateway relaying
// between the SDK's client and server, as `infertrail mcp wrap` does.
func TestStdio(t *testing.T) {
	trail := gatewaytest.NewTrail(t)
	gw, err := mcp.New(mcp.Config{Recorder: trail.Log, Secret: gatewaytest.Secret})
	if err != nil {
		t.Fatal(err)
	}
	server := mcptest.NewServer(nil, nil)
	clientToGW, clientW := io.Pipe()
	gwToClient, gwToClientW := io.Pipe()
	serverR, gwToServer := io.Pipe()
	serverToGW, serverW := io.Pipe()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	serverDone := make(chan error, 1)
	go func() {
		serverDone <- server.Run(ctx, &sdk.IOTransport{Reader: serverR, Writer: serverW})
		serverW.Close()
	}()
	relayDone := make(chan error, 1)
	go func() {
		relayDone <- gw.Stdio(ctx, mcp.StdioSession{Server: "payments", SessionID: "stdio-1"}, clientToGW, gwToClientW, gwToServer, serverToGW)
		gwToClientW.Close()
	}()
	cli := sdk.NewClient(&sdk.Implementation{Name: "finance-agent", Version: "0.9.0"}, nil)
	cs, err := cli.Connect(t.Context(), &sdk.IOTransport{Reader: gwToClient, Writer: clientW}, nil)
	if err != nil {
		t.Fatal(err)
	}
	pay, refund, export, tools := exercise(t, cs)
	cs.Close() // closes the client's writer: the gateway closes the server's input, the server exits
	endStdio(t, relayDone, gw)
	recs := trail.Records(t)
	checkRecords(t, recs, "pipe", pay, refund, export, tools)
	for _, r := range recs {
		if r.SessionID != "stdio-1" {
			t.Errorf("record session %q", r.SessionID)
		}
	}
}

// failing is the trail with a switch that makes it refuse writes, as a
// full disk or a lost database would.
type failing struct {
	infertrail.Recorder
	fail atomic.Bool
}

func (f *failing) Record(ctx context.Context, recs ...*infertrail.Record) ([]int64, error) {
	if f.fail.Load() {
		return nil, fmt.Errorf("disk full: %w", infertrail.ErrUnavailable)
	}
	return f.Recorder.Record(ctx, recs...)
}

// TestToolCallNotRecordedNotRun: when the trail cannot write, a tools/call
// fails with a JSON-RPC error and never reaches the server.
func TestToolCallNotRecordedNotRun(t *testing.T) {
	var rec *failing
	var calls atomic.Int32
	r := newRig(t, func(c *mcp.Config) {
		rec = &failing{Recorder: c.Recorder}
		c.Recorder = rec
	})
	r.upstream.Config.Handler = countCalls(r.upstream.Config.Handler, &calls)
	cs := r.connect(t, "", nil)
	rec.fail.Store(true)
	before := calls.Load()
	_, err := cs.CallTool(t.Context(), &sdk.CallToolParams{Name: "pay", Arguments: map[string]any{"invoice": "INV-8"}})
	if err == nil || !strings.Contains(err.Error(), "cannot record this tool call") {
		t.Fatalf("tools/call with the trail down: %v", err)
	}
	if calls.Load() != before {
		t.Fatal("the tool call reached the server unrecorded")
	}
	rec.fail.Store(false)
	if _, err := cs.CallTool(t.Context(), &sdk.CallToolParams{Name: "pay", Arguments: map[string]any{"invoice": "INV-8"}}); err != nil {
		t.Fatalf("tools/call once the trail is back: %v", err)
	}
	cs.Close()
	m := byMethod(r.records(t))
	if len(m["tools/call request"]) != 1 || len(m["tools/call response"]) != 1 {
		t.Errorf("records: %v", keys(m))
	}
}

func countCalls(h http.Handler, n *atomic.Int32) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			n.Add(1)
		}
		h.ServeHTTP(w, r)
	})
}

// TestFaults: a server that breaks off mid-call, a client that goes away,
// an oversized message and invalid JSON from either side each leave a
// record that says so.
func TestFaults(t *testing.T) {
	t.Run("server crashes mid-call", func(t *testing.T) {
		r := newRig(t, nil)
		cs := r.connect(t, "", nil)
		errc := make(chan error, 1)
		go func() {
			_, err := cs.CallTool(t.Context(), &sdk.CallToolParams{Name: "hang", Arguments: map[string]any{}})
			errc <- err
		}()
		<-r.started
		r.upstream.CloseClientConnections()
		if err := <-errc; err == nil {
			t.Fatal("the call succeeded though the server went away")
		}
		close(r.release)
		cs.Close()
		resp := byMethod(r.records(t))["tools/call response"]
		if len(resp) != 1 || resp[0].Attr("infertrail.incomplete") != true || resp[0].Attr("infertrail.incomplete_reason") == nil {
			t.Fatalf("response records %v", resp)
		}
		t.Logf("incomplete: %v", resp[0].Attr("infertrail.incomplete_reason"))
	})
	t.Run("client cancels", func(t *testing.T) {
		r := newRig(t, nil)
		cs := r.connect(t, "", nil)
		ctx, cancel := context.WithCancel(t.Context())
		errc := make(chan error, 1)
		go func() {
			_, err := cs.CallTool(ctx, &sdk.CallToolParams{Name: "hang", Arguments: map[string]any{}})
			errc <- err
		}()
		<-r.started
		cancel() // the SDK abandons the request, and usually closes its POST
		<-errc
		time.Sleep(100 * time.Millisecond)
		close(r.release)
		cs.Close()
		// Either way the call has its response record: marked incomplete
		// when the POST was closed, or the answer the server still sent
		// on it.
		resp := byMethod(r.records(t))["tools/call response"]
		if len(resp) != 1 {
			t.Fatalf("%d response records", len(resp))
		}
		incomplete := resp[0].Attr("infertrail.incomplete") == true
		if incomplete && !strings.Contains(fmt.Sprint(resp[0].Attr("infertrail.incomplete_reason")), "client went away") ||
			!incomplete && !strings.Contains(string(resp[0].Content["gen_ai.tool.call.result"]), "released") {
			t.Fatalf("response record %v %v", resp[0].Attributes, resp[0].Content)
		}
	})
	t.Run("client cancels while the call is recorded", func(t *testing.T) {
		var toolCalls atomic.Int32
		lr := &gatewaytest.LateRecorder{Committed: make(chan struct{}), Match: func(recs []*infertrail.Record) bool {
			return slices.ContainsFunc(recs, func(r *infertrail.Record) bool {
				return string(r.Attributes["mcp.method.name"]) == `"tools/call"` && string(r.Attributes["infertrail.phase"]) == `"request"`
			})
		}}
		r := newRig(t, func(c *mcp.Config) { lr.Recorder, c.Recorder = c.Recorder, lr })
		h := r.upstream.Config.Handler
		r.upstream.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			body, _ := io.ReadAll(req.Body)
			if bytes.Contains(body, []byte(`"tools/call"`)) {
				toolCalls.Add(1)
			}
			req.Body = io.NopCloser(bytes.NewReader(body))
			h.ServeHTTP(w, req)
		})
		cs := r.connect(t, "", nil)
		ctx, cancel := context.WithCancel(t.Context())
		go func() {
			<-lr.Committed
			cancel()
		}()
		if _, err := cs.CallTool(ctx, &sdk.CallToolParams{Name: "pay", Arguments: map[string]any{"invoice": "INV-9"}}); err == nil {
			t.Fatal("the cancelled call succeeded")
		}
		time.Sleep(100 * time.Millisecond) // the SDK's notifications/cancelled
		cs.Close()
		m := byMethod(r.records(t))
		resp := m["tools/call response"]
		if len(m["tools/call request"]) != 1 || len(resp) != 1 || resp[0].Attr("infertrail.incomplete") != true ||
			!strings.Contains(fmt.Sprint(resp[0].Attr("infertrail.incomplete_reason")), "client went away") {
			t.Fatalf("records %v; response %v", keys(m), resp)
		}
		if toolCalls.Load() != 0 {
			t.Error("the tool call of a client that went away reached the server")
		}
	})
	t.Run("client disconnects", func(t *testing.T) {
		r := newRig(t, nil)
		session := rawSession(t, r.srv.URL+"/mcp/payments")
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() {
			defer close(done)
			req, _ := http.NewRequestWithContext(ctx, "POST", r.srv.URL+"/mcp/payments", strings.NewReader(
				`{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"hang","arguments":{}}}`))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Accept", "application/json, text/event-stream")
			req.Header.Set("Mcp-Session-Id", session)
			req.Header.Set("Mcp-Protocol-Version", "2025-06-18")
			if resp, err := http.DefaultClient.Do(req); err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}()
		select {
		case <-r.started:
		case <-done:
			t.Fatal("the raw tools/call ended before the tool started")
		}
		cancel() // the connection closes
		<-done
		time.Sleep(100 * time.Millisecond) // the gateway notices
		close(r.release)
		resp := byMethod(r.records(t))["tools/call response"]
		if len(resp) != 1 || resp[0].Attr("infertrail.incomplete") != true || !strings.Contains(fmt.Sprint(resp[0].Attr("infertrail.incomplete_reason")), "client went away") {
			t.Fatalf("response records %+v", resp)
		}
	})
	t.Run("oversized message", func(t *testing.T) {
		var calls atomic.Int32
		r := newRig(t, func(c *mcp.Config) { c.MaxMessageBytes = 64 << 10 })
		r.upstream.Config.Handler = countCalls(r.upstream.Config.Handler, &calls)
		body := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"pay","arguments":{"memo":"` + strings.Repeat("x", 70<<10) + `"}}}`
		resp, b := rawPost(t, r.srv.URL+"/mcp/payments", body)
		if resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(b, `"code":-32600`) || calls.Load() != 0 {
			t.Fatalf("oversized: %d %s (upstream calls %d)", resp.StatusCode, b, calls.Load())
		}
		recs := r.records(t)
		if len(recs) != 1 || recs[0].Attr("mcp.protocol_error") == nil || recs[0].Attr("mcp.protocol_error.from") != "client" {
			t.Fatalf("records %v", recs)
		}
	})
	t.Run("invalid JSON from the client", func(t *testing.T) {
		r := newRig(t, nil)
		resp, b := rawPost(t, r.srv.URL+"/mcp/payments", `{"jsonrpc":"2.0","id":1,"method":"tools/call",`)
		// Relayed: the server answers as the specification requires.
		if resp.StatusCode/100 == 2 && !strings.Contains(b, "-32700") {
			t.Fatalf("invalid JSON: %d %s", resp.StatusCode, b)
		}
		recs := r.records(t)
		var msg string
		if len(recs) == 1 {
			json.Unmarshal(recs[0].Content["mcp.message"], &msg)
		}
		if len(recs) != 1 || recs[0].Attr("mcp.protocol_error.from") != "client" || !strings.Contains(msg, `"method":"tools/call"`) {
			t.Fatalf("records %v", recs)
		}
	})
	t.Run("invalid JSON from the server", func(t *testing.T) {
		trail := gatewaytest.NewTrail(t)
		bad := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			w.Header().Set("Content-Type", "text/event-stream")
			w.Write([]byte("event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":\n\n"))
		}))
		defer bad.Close()
		gw, err := mcp.New(mcp.Config{Recorder: trail.Log, Secret: gatewaytest.Secret, Servers: []mcp.Server{{Name: "bad", URL: bad.URL}}})
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(gw)
		resp, b := rawPost(t, srv.URL+"/mcp/bad", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"pay","arguments":{}}}`)
		if !strings.Contains(b, `"result":`) { // relayed as it came
			t.Fatalf("relay: %d %q", resp.StatusCode, b)
		}
		m := byMethod(trail.Drain(t, srv, gw))
		var protoErr, incomplete bool
		for _, recs := range m {
			for _, r := range recs {
				protoErr = protoErr || r.Attr("mcp.protocol_error.from") == "server"
				incomplete = incomplete || (r.Attr("infertrail.phase") == "response" && r.Attr("infertrail.incomplete") == true)
			}
		}
		if !protoErr || !incomplete || len(m["tools/call request"]) != 1 {
			t.Fatalf("records %v", keys(m))
		}
	})
	t.Run("params members of the wrong type", func(t *testing.T) {
		// The upstream answers each request with a result, as it came.
		trail := gatewaytest.NewTrail(t)
		up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			var m struct {
				ID json.RawMessage `json:"id"`
			}
			b, _ := io.ReadAll(r.Body)
			json.Unmarshal(b, &m)
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"result":{"content":[{"type":"text","text":"done"}]}}`, m.ID)
		}))
		defer up.Close()
		gw, err := mcp.New(mcp.Config{Recorder: trail.Log, Secret: gatewaytest.Secret, Servers: []mcp.Server{{Name: "odd", URL: up.URL}}})
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(gw)
		defer srv.Close()
		// name is a number: no tool name, but the arguments, the trace and
		// the tool call id in _meta are still read; ids keep their type.
		const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
		for _, id := range []string{`7`, `"call-7"`} {
			body := `{"jsonrpc":"2.0","id":` + id + `,"method":"tools/call","params":{"name":5,"arguments":{"invoice":"INV-7"},"_meta":{"traceparent":"` + tp + `","io.infertrail/tool_call_id":"call_abc"}}}`
			if resp, b := rawPost(t, srv.URL+"/mcp/odd", body); resp.StatusCode != 200 || !strings.Contains(b, "done") {
				t.Fatalf("relay: %d %s", resp.StatusCode, b)
			}
		}
		m := byMethod(trail.Drain(t, srv, gw))
		reqs := m["tools/call request"]
		if len(reqs) != 2 || len(m["tools/call response"]) != 2 {
			t.Fatalf("records %v", keys(m))
		}
		for i, want := range []string{"7", "call-7"} {
			r := reqs[i]
			if r.TraceID != "4bf92f3577b34da6a3ce929d0e0e4736" || r.Attr("gen_ai.tool.call.id") != "call_abc" || r.Attr("jsonrpc.request.id") != want ||
				r.Attr("gen_ai.tool.name") != nil || !strings.Contains(string(r.Content["gen_ai.tool.call.arguments"]), "INV-7") {
				t.Errorf("request record %d: trace %q, attributes %v, content %v", i, r.TraceID, r.Attributes, r.Content)
			}
		}
	})
}

// rawSession opens an MCP session with plain HTTP requests and returns its
// Mcp-Session-Id.
func rawSession(tb testing.TB, url string) string {
	tb.Helper()
	resp, b := rawPost(tb, url, `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}`)
	id := resp.Header.Get("Mcp-Session-Id")
	if resp.StatusCode != 200 || id == "" {
		tb.Fatalf("initialize: %d %s", resp.StatusCode, b)
	}
	req, _ := http.NewRequestWithContext(tb.Context(), "POST", url, strings.NewReader(`{"jsonrpc":"2.0","method":"notifications/initialized"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Mcp-Session-Id", id)
	req.Header.Set("Mcp-Protocol-Version", "2025-06-18")
	r2, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	r2.Body.Close()
	return id
}

func rawPost(tb testing.TB, url, body string) (*http.Response, string) {
	tb.Helper()
	req, _ := http.NewRequestWithContext(tb.Context(), "POST", url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// TestAuth: with Auth set, a caller needs an InferTrail token with the
// gateway role, in X-InferTrail-Token or as the bearer token; the token is
// never forwarded, and the records name it.
func TestAuth(t *testing.T) {
	var tokens *access.Tokens
	var seen atomic.Value // the last Authorization header the server saw
	r := newRig(t, func(c *mcp.Config) {
		lg := c.Recorder.(*ledger.Log)
		a, err := access.New(access.Config{Tokens: lg.Store(), RateLimit: -1})
		if err != nil {
			t.Fatal(err)
		}
		c.Auth, tokens = a, &access.Tokens{Store: lg.Store(), Recorder: lg}
		c.Servers[0].Authorization = "Bearer server-side-credential"
	})
	inner := r.upstream.Config.Handler
	r.upstream.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		seen.Store(req.Header.Get("Authorization") + "|" + req.Header.Get(mcp.HeaderToken))
		inner.ServeHTTP(w, req)
	})
	mint := func(roles ...infertrail.Role) string {
		s, _, err := tokens.Create(t.Context(), access.TokenRequest{Name: "ops-agent", Tenant: "acme", Roles: roles}, nil, infertrail.Actor{ID: "test"})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	agent, auditor := mint(infertrail.RoleGateway), mint(infertrail.RoleAuditor)

	for _, c := range []struct {
		name   string
		header http.Header
		code   int
	}{
		{"no token", nil, 401},
		{"auditor", http.Header{mcp.HeaderToken: {auditor}}, 403},
		{"unknown", http.Header{"Authorization": {"Bearer itk_" + strings.Repeat("A", 43)}}, 401},
	} {
		req, _ := http.NewRequestWithContext(t.Context(), "POST", r.srv.URL+"/mcp/payments", strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"ping"}`))
		req.Header = c.header
		if req.Header == nil {
			req.Header = http.Header{}
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.code || !strings.Contains(string(b), `"jsonrpc":"2.0"`) {
			t.Errorf("%s: %d %s", c.name, resp.StatusCode, b)
		}
	}
	if seen.Load() != nil {
		t.Fatal("a refused request reached the server")
	}

	// The token as the bearer: replaced by the server's own credential.
	hc := &http.Client{Transport: headerTransport{"Authorization": "Bearer " + agent}}
	cli := sdk.NewClient(&sdk.Implementation{Name: "ops", Version: "1"}, nil)
	cs, err := cli.Connect(t.Context(), &sdk.StreamableClientTransport{Endpoint: r.srv.URL + "/mcp/payments", HTTPClient: hc, MaxRetries: -1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CallTool(t.Context(), &sdk.CallToolParams{Name: "pay", Arguments: map[string]any{"invoice": "INV-9"}}); err != nil {
		t.Fatal(err)
	}
	cs.Close()
	if got := seen.Load().(string); got != "Bearer server-side-credential|" {
		t.Fatalf("the server saw %q", got)
	}
	for _, rec := range r.records(t) {
		if rec.Kind == infertrail.KindAccess {
			continue
		}
		if rec.Tenant != "acme" || !strings.HasPrefix(rec.Actor.ID, "token/") || rec.Attr("infertrail.token") != "ops-agent" {
			t.Errorf("record %v: tenant %s actor %+v", rec.Attr("mcp.method.name"), rec.Tenant, rec.Actor)
		}
		if strings.Contains(fmt.Sprint(rec.Attributes, rec.Content), agent) {
			t.Error("a record holds the token")
		}
	}
}

type headerTransport map[string]string

func (h headerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	for k, v := range h {
		r.Header.Set(k, v)
	}
	return http.DefaultTransport.RoundTrip(r)
}

// TestStdioServerCrash: the server process dies in the middle of a call;
// the call gets a record that says so, and the relay ends.
func TestStdioServerCrash(t *testing.T) {
	trail := gatewaytest.NewTrail(t)
	gw, err := mcp.New(mcp.Config{Recorder: trail.Log})
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{}, 1)
	server := mcptest.NewServer(make(chan struct{}), started)
	clientToGW, clientW := io.Pipe()
	gwToClient, gwToClientW := io.Pipe()
	serverR, gwToServer := io.Pipe()
	serverToGW, serverW := io.Pipe()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go server.Run(ctx, &sdk.IOTransport{Reader: serverR, Writer: serverW})
	relayDone := make(chan error, 1)
	go func() {
		relayDone <- gw.Stdio(ctx, mcp.StdioSession{Server: "payments"}, clientToGW, gwToClientW, gwToServer, serverToGW)
		gwToClientW.Close()
	}()
	cs, err := sdk.NewClient(&sdk.Implementation{Name: "finance-agent", Version: "0.9.0"}, nil).Connect(t.Context(),
		&sdk.IOTransport{Reader: gwToClient, Writer: clientW}, nil)
	if err != nil {
		t.Fatal(err)
	}
	go cs.CallTool(t.Context(), &sdk.CallToolParams{Name: "hang", Arguments: map[string]any{}})
	<-started
	serverW.CloseWithError(io.ErrUnexpectedEOF) // the server's output ends: it crashed
	select {
	case <-relayDone:
	case <-time.After(10 * time.Second):
		t.Fatal("the relay did not end when the server died")
	}
	if err := gw.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	resp := byMethod(trail.Records(t))["tools/call response"]
	if len(resp) != 1 || resp[0].Attr("infertrail.incomplete") != true || !strings.Contains(fmt.Sprint(resp[0].Attr("infertrail.incomplete_reason")), "exited") {
		t.Fatalf("response records %v", resp)
	}
	cs.Close()
}

const toolPolicy = `package infertrail.tool.call

import rego.v1

default decision := {"result": "allow"}

decision := {"result": "deny", "reasons": ["refunds need a human"]} if input.tool.name == "refund"
`

// TestPolicy: a tools/call is decided before it is forwarded; a denied one
// gets a JSON-RPC error and never reaches the server; the decisions are
// recorded and govern the calls' request records.
func TestPolicy(t *testing.T) {
	var calls atomic.Int32
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "tools.rego"), []byte(toolPolicy), 0o600); err != nil {
		t.Fatal(err)
	}
	r := newRig(t, func(c *mcp.Config) {
		e, err := policy.New(t.Context(), policy.Config{Dir: dir, Recorder: c.Recorder.(*ledger.Log)})
		if err != nil {
			t.Fatal(err)
		}
		c.Policy = e
	})
	r.upstream.Config.Handler = countCalls(r.upstream.Config.Handler, &calls)
	cs := r.connect(t, "", nil)
	if _, err := cs.CallTool(t.Context(), &sdk.CallToolParams{Name: "pay", Arguments: map[string]any{"invoice": "INV-1"}}); err != nil {
		t.Fatalf("allowed call: %v", err)
	}
	before := calls.Load()
	_, err := cs.CallTool(t.Context(), &sdk.CallToolParams{Name: "refund", Arguments: map[string]any{}})
	if err == nil || !strings.Contains(err.Error(), "refunds need a human") {
		t.Fatalf("denied call: %v", err)
	}
	if calls.Load() != before {
		t.Fatal("the denied call reached the server")
	}
	cs.Close()
	recs := r.records(t)
	results := map[string]string{}
	reqs := map[infertrail.UUID]gatewaytest.Record{}
	for _, rec := range recs {
		if rec.Attr("infertrail.phase") == "request" {
			reqs[rec.ID] = rec
		}
	}
	for _, rec := range recs {
		if rec.Kind == infertrail.KindPolicyDecision {
			req, ok := reqs[rec.Links[0].ID]
			if !ok || rec.Links[0].Rel != "governs" {
				t.Fatalf("decision %v governs nothing recorded", rec.Links)
			}
			results[req.Attr("gen_ai.tool.name").(string)] = rec.Attr("policy.result").(string)
			if rec.Attr("policy.point") != "tool.call" {
				t.Errorf("decision point %v", rec.Attr("policy.point"))
			}
		}
	}
	if results["pay"] != "allow" || results["refund"] != "deny" {
		t.Fatalf("decisions %v", results)
	}
}

// TestStdioPolicy: over stdio, a denied tools/call is answered at once,
// while the server is silent, and never reaches it; the next is relayed.
func TestStdioPolicy(t *testing.T) {
	trail := gatewaytest.NewTrail(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "tools.rego"), []byte(toolPolicy), 0o600); err != nil {
		t.Fatal(err)
	}
	e, err := policy.New(t.Context(), policy.Config{Dir: dir, Recorder: trail.Log})
	if err != nil {
		t.Fatal(err)
	}
	gw, err := mcp.New(mcp.Config{Recorder: trail.Log, Policy: e})
	if err != nil {
		t.Fatal(err)
	}
	refund := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"refund","arguments":{}}}`
	pay := `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"pay","arguments":{"invoice":"INV-1"}}}`
	toServer, toClient := relayRaw(t, gw, refund+"\n"+pay+"\n")
	if len(toServer) != 1 || toServer[0] != pay {
		t.Errorf("the server received %q", toServer)
	}
	if !strings.Contains(toClient, `"id":1`) || !strings.Contains(toClient, `"code":-32011`) || !strings.Contains(toClient, "refunds need a human") {
		t.Errorf("the client got %s", toClient)
	}

	// A batch with an allowed call and then a denied one runs neither, and
	// both are on record as refused, each with its decision.
	gw, err = mcp.New(mcp.Config{Recorder: trail.Log, Policy: e})
	if err != nil {
		t.Fatal(err)
	}
	pay3 := `{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"pay","arguments":{"invoice":"INV-3"}}}`
	refund4 := `{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"refund","arguments":{}}}`
	toServer, toClient = relayRaw(t, gw, "["+pay3+","+refund4+"]\n")
	if len(toServer) != 0 || !strings.Contains(toClient, `"id":3`) || !strings.Contains(toClient, `"id":4`) {
		t.Fatalf("batch: the server received %q, the client got %s", toServer, toClient)
	}
	refused := map[string]string{}
	decided := map[infertrail.UUID]bool{}
	recs := trail.Records(t)
	for _, rec := range recs {
		if rec.Kind == infertrail.KindPolicyDecision {
			decided[rec.Links[0].ID] = true
		}
	}
	for _, rec := range recs {
		if r, ok := rec.Attr("infertrail.refused").(string); ok && decided[rec.ID] {
			refused[string(rec.Content["gen_ai.tool.call.arguments"])] = r
		}
	}
	if !strings.Contains(refused[`{"invoice":"INV-3"}`], "another tool call of its batch was refused") || !strings.Contains(refused[`{}`], "refunds need a human") {
		t.Fatalf("refused tool calls on record: %v", refused)
	}
}

// endStdio waits for a stdio relay to end once the client and the server
// have, then closes the gateway, so that its records are written.
func endStdio(tb testing.TB, relayDone <-chan error, gw *mcp.Gateway) {
	tb.Helper()
	select {
	case err := <-relayDone:
		if err != nil {
			tb.Fatalf("stdio relay: %v", err)
		}
	case <-time.After(10 * time.Second):
		tb.Fatal("the relay did not end when the client and server did")
	}
	if err := gw.Close(tb.Context()); err != nil {
		tb.Fatal(err)
	}
}

// relayRaw relays the client's lines in over stdio to a server that reads
// them and says nothing until its input ends, and returns the lines the
// server received and what the client got.
func relayRaw(tb testing.TB, gw *mcp.Gateway, in string) (toServer []string, toClient string) {
	tb.Helper()
	serverR, serverIn := io.Pipe()
	serverOutR, serverOut := io.Pipe()
	read := make(chan struct{})
	go func() {
		defer close(read)
		sc := bufio.NewScanner(serverR)
		for sc.Scan() {
			toServer = append(toServer, sc.Text())
		}
	}()
	var out bytes.Buffer
	done := make(chan error, 1)
	go func() {
		done <- gw.Stdio(tb.Context(), mcp.StdioSession{Server: "payments"}, strings.NewReader(in), &out, serverIn, serverOutR)
	}()
	select {
	case <-read: // the client's input ended, and the gateway closed the server's
	case <-time.After(10 * time.Second):
		tb.Fatal("the relay did not take the client's input to its end")
	}
	serverOut.Close()
	if err := <-done; err != nil {
		tb.Fatal(err)
	}
	if err := gw.Close(tb.Context()); err != nil {
		tb.Fatal(err)
	}
	return toServer, out.String()
}

// TestTLSUpstream: an MCP server behind TLS with its own CA, trusted
// through Server.TLS.
func TestTLSUpstream(t *testing.T) {
	trail := gatewaytest.NewTrail(t)
	server := mcptest.NewServer(nil, nil)
	up := httptest.NewTLSServer(sdk.NewStreamableHTTPHandler(func(*http.Request) *sdk.Server { return server }, nil))
	defer up.Close()
	pool := x509.NewCertPool()
	pool.AddCert(up.Certificate())
	gw, err := mcp.New(mcp.Config{Recorder: trail.Log, Servers: []mcp.Server{{Name: "payments", URL: up.URL, TLS: &tls.Config{RootCAs: pool}}}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(gw)
	cs, err := sdk.NewClient(&sdk.Implementation{Name: "finance-agent", Version: "1"}, nil).Connect(t.Context(),
		&sdk.StreamableClientTransport{Endpoint: srv.URL + "/mcp/payments", MaxRetries: -1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CallTool(t.Context(), &sdk.CallToolParams{Name: "pay", Arguments: map[string]any{"invoice": "INV-3"}}); err != nil {
		t.Fatal(err)
	}
	cs.Close()
	if m := byMethod(trail.Drain(t, srv, gw)); len(m["tools/call response"]) != 1 {
		t.Fatalf("records %v", keys(m))
	}
}
