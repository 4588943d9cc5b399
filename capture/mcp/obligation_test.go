package mcp_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/infertrail/infertrail"
	"github.com/infertrail/infertrail/capture/gateway/gatewaytest"
	"github.com/infertrail/infertrail/capture/mcp"
	"github.com/infertrail/infertrail/policy"
)

// obligationPolicy redacts e-mail addresses from the arguments of send
// and note, and asks of page an obligation InferTrail cannot carry out.
const obligationPolicy = `package infertrail.tool.call

import rego.v1

default decision := {"result": "allow"}

decision := {"result": "modify", "obligations": [{"redact": "arguments", "detectors": ["email"]}]} if input.tool.name in {"send", "note"}

decision := {"result": "allow", "obligations": [{"notify": "secops"}]} if input.tool.name == "page"
`

// messageLog keeps the JSON-RPC messages one side of the gateway sent or
// received, as bytes. It is safe for concurrent use.
type messageLog struct {
	mu   sync.Mutex
	msgs [][]byte
}

func (l *messageLog) add(b []byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.msgs = append(l.msgs, bytes.Clone(bytes.TrimSpace(b)))
}

// toolCall returns the tools/call message for tool, or nil.
func (l *messageLog) toolCall(tool string) []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, m := range l.msgs {
		var msg struct {
			Method string `json:"method"`
			Params struct {
				Name string `json:"name"`
			} `json:"params"`
		}
		if json.Unmarshal(m, &msg) == nil && msg.Method == "tools/call" && msg.Params.Name == tool {
			return m
		}
	}
	return nil
}

// lineLog is an io.Writer that adds each line written to a messageLog.
type lineLog struct {
	log *messageLog
	buf []byte
}

func (w *lineLog) Write(p []byte) (int, error) {
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			return len(p), nil
		}
		w.log.add(w.buf[:i])
		w.buf = w.buf[i+1:]
	}
}

// bodyLog wraps h to add every POST body to log.
func bodyLog(h http.Handler, log *messageLog) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			b, _ := io.ReadAll(r.Body)
			log.add(b)
			r.Body = io.NopCloser(bytes.NewReader(b))
		}
		h.ServeHTTP(w, r)
	})
}

// mailTo is what send and note take.
type mailTo struct {
	To   string `json:"to"`
	Body string `json:"body"`
}

// obligationRig is obligationPolicy in front of a server whose tools
// send, note and page say what they were given; sent and received are the
// messages the client sent the gateway and the server received from it.
type obligationRig struct {
	trail          *gatewaytest.Trail
	policy         infertrail.PolicyEngine
	server         *sdk.Server
	sent, received messageLog
	calls          atomic.Int32 // tool handlers run
	mu             sync.Mutex
	given          map[string]mailTo // by tool
	records        func(testing.TB) []gatewaytest.Record
}

func newObligationRig(tb testing.TB) *obligationRig {
	tb.Helper()
	r := &obligationRig{trail: gatewaytest.NewTrail(tb), given: map[string]mailTo{}}
	r.policy = obligationEngine(tb, r.trail)
	r.server = sdk.NewServer(&sdk.Implementation{Name: "mail-server", Version: "1"}, nil)
	for _, name := range []string{"send", "note", "page"} {
		sdk.AddTool(r.server, &sdk.Tool{Name: name}, func(_ context.Context, _ *sdk.CallToolRequest, in mailTo) (*sdk.CallToolResult, any, error) {
			r.calls.Add(1)
			r.mu.Lock()
			r.given[name] = in
			r.mu.Unlock()
			return &sdk.CallToolResult{Content: []sdk.Content{&sdk.TextContent{Text: name + " to " + in.To}}}, nil, nil
		})
	}
	return r
}

// obligationEngine is the policy engine of obligationPolicy.
func obligationEngine(tb testing.TB, trail *gatewaytest.Trail) infertrail.PolicyEngine {
	tb.Helper()
	dir := tb.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "tools.rego"), []byte(obligationPolicy), 0o600); err != nil {
		tb.Fatal(err)
	}
	e, err := policy.New(tb.Context(), policy.Config{Dir: dir, Recorder: trail.Log})
	if err != nil {
		tb.Fatal(err)
	}
	return e
}

func (r *obligationRig) gateway(tb testing.TB, servers ...mcp.Server) *mcp.Gateway {
	tb.Helper()
	gw, err := mcp.New(mcp.Config{Recorder: r.trail.Log, Secret: gatewaytest.Secret, Policy: r.policy, Servers: servers})
	if err != nil {
		tb.Fatal(err)
	}
	return gw
}

// connectHTTP puts the server behind the gateway over Streamable HTTP.
func (r *obligationRig) connectHTTP(tb testing.TB) *sdk.ClientSession {
	tb.Helper()
	up := httptest.NewServer(bodyLog(sdk.NewStreamableHTTPHandler(func(*http.Request) *sdk.Server { return r.server }, nil), &r.received))
	tb.Cleanup(up.Close)
	gw := r.gateway(tb, mcp.Server{Name: "mail", URL: up.URL})
	srv := httptest.NewServer(bodyLog(gw, &r.sent))
	tb.Cleanup(srv.Close)
	r.records = func(tb testing.TB) []gatewaytest.Record { return r.trail.Drain(tb, srv, gw) }
	cs, err := sdk.NewClient(&sdk.Implementation{Name: "mail-agent", Version: "1"}, nil).Connect(tb.Context(),
		&sdk.StreamableClientTransport{Endpoint: srv.URL + "/mcp/mail", MaxRetries: -1}, nil)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { cs.Close() })
	return cs
}

// connectStdio runs the server as `infertrail mcp wrap` would, with the
// gateway relaying its standard input and output.
func (r *obligationRig) connectStdio(tb testing.TB) *sdk.ClientSession {
	tb.Helper()
	clientToGW, clientW := io.Pipe()
	gwToClient, gwToClientW := io.Pipe()
	serverR, gwToServer := io.Pipe()
	serverToGW, serverW := io.Pipe()
	ctx, cancel := context.WithCancel(tb.Context())
	gw := r.gateway(tb)
	go func() {
		r.server.Run(ctx, &sdk.IOTransport{Reader: io.NopCloser(io.TeeReader(serverR, &lineLog{log: &r.received})), Writer: serverW})
		serverW.Close()
	}()
	relayDone := make(chan error, 1)
	go func() {
		relayDone <- gw.Stdio(ctx, mcp.StdioSession{Server: "mail", SessionID: "stdio-obligations"},
			io.TeeReader(clientToGW, &lineLog{log: &r.sent}), gwToClientW, gwToServer, serverToGW)
		gwToClientW.Close()
	}()
	cs, err := sdk.NewClient(&sdk.Implementation{Name: "mail-agent", Version: "1"}, nil).Connect(tb.Context(),
		&sdk.IOTransport{Reader: gwToClient, Writer: clientW}, nil)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		cs.Close()
		cancel()
	})
	r.records = func(tb testing.TB) []gatewaytest.Record {
		tb.Helper()
		defer cancel()
		endStdio(tb, relayDone, gw)
		return r.trail.Records(tb)
	}
	return cs
}

// TestObligations: over HTTP and over stdio, with the official SDK as
// client and server, the obligations of a tools/call's decision are
// carried out before it is forwarded, or, when they cannot be, the call is
// refused as a denial is.
func TestObligations(t *testing.T) {
	for _, transport := range []string{"http", "stdio"} {
		t.Run(transport, func(t *testing.T) {
			r := newObligationRig(t)
			var cs *sdk.ClientSession
			if transport == "http" {
				cs = r.connectHTTP(t)
			} else {
				cs = r.connectStdio(t)
			}
			ctx := t.Context()

			// (a) An e-mail address in the arguments is masked: the tool
			// gets the call without it, the client the tool's result.
			meta := sdk.Meta{"io.infertrail/tool_call_id": "call_send_1", "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}
			res, err := cs.CallTool(ctx, &sdk.CallToolParams{Name: "send", Meta: meta,
				Arguments: map[string]any{"to": "bob@example.com", "body": "invoice 7 for bob@example.com is paid"}})
			if err != nil || res.IsError {
				t.Fatalf("send: %v %v", res, err)
			}
			if got := res.Content[0].(*sdk.TextContent).Text; got != "send to [redacted:email]" {
				t.Errorf("the client got %q", got)
			}
			r.mu.Lock()
			given := r.given["send"]
			r.mu.Unlock()
			if given != (mailTo{To: "[redacted:email]", Body: "invoice 7 for [redacted:email] is paid"}) {
				t.Errorf("the tool was given %+v", given)
			}

			// (b) An obligation the gateway cannot carry out: the call is
			// refused, and never reaches the tool.
			before := r.calls.Load()
			_, err = cs.CallTool(ctx, &sdk.CallToolParams{Name: "page", Arguments: map[string]any{"to": "ops@example.com"}})
			if err == nil || !strings.Contains(err.Error(), "obligations cannot be carried out") || !strings.Contains(err.Error(), `{"notify":"secops"}`) {
				t.Fatalf("page: %v", err)
			}
			if r.calls.Load() != before {
				t.Fatal("the tool ran though its obligations could not be carried out")
			}

			// (c) Obligations that mask nothing: the message goes as it came.
			if _, err := cs.CallTool(ctx, &sdk.CallToolParams{Name: "note", Arguments: map[string]any{"to": "the ledger", "body": "nothing personal"}}); err != nil {
				t.Fatalf("note: %v", err)
			}
			cs.Close()
			recs := r.records(t)

			sent, received := r.sent.toolCall("send"), r.received.toolCall("send")
			if sent == nil || received == nil {
				t.Fatalf("send: sent %s, received %s", sent, received)
			}
			checkForwarded(t, sent, received)
			if s, rc := r.sent.toolCall("note"), r.received.toolCall("note"); s == nil || !bytes.Equal(s, rc) {
				t.Errorf("note: the client sent\n %s\nthe server received\n %s", s, rc)
			}
			if r.received.toolCall("page") != nil {
				t.Error("the page call reached the server")
			}

			reqs := map[string]gatewaytest.Record{}
			for _, rec := range recs {
				if rec.Attr("infertrail.phase") == "request" {
					reqs[rec.Attr("gen_ai.tool.name").(string)] = rec
				}
			}
			decisions := map[string]gatewaytest.Record{}
			for _, rec := range recs {
				if rec.Kind != infertrail.KindPolicyDecision {
					continue
				}
				for name, req := range reqs {
					if len(rec.Links) == 1 && rec.Links[0].Rel == "governs" && rec.Links[0].ID == req.ID {
						decisions[name] = rec
					}
				}
			}

			send := reqs["send"]
			var findings []map[string]any
			if err := json.Unmarshal(send.Attributes["infertrail.redactions"], &findings); err != nil || len(findings) != 1 ||
				findings[0]["field"] != "arguments" || findings[0]["detector"] != "email" || findings[0]["class"] != "pii" ||
				findings[0]["count"] != 2.0 || findings[0]["action"] != "mask" {
				t.Errorf("send: infertrail.redactions %s (%v)", send.Attributes["infertrail.redactions"], err)
			}
			if strings.Contains(string(send.Attributes["infertrail.redactions"]), "bob@") {
				t.Error("the findings hold the address")
			}
			if got := string(send.Content["gen_ai.tool.call.arguments"]); !strings.Contains(got, "bob@example.com") {
				t.Errorf("send: the arguments the client sent are not on record: %s", got)
			}
			var fwd mailTo
			if err := json.Unmarshal(send.Content["gen_ai.tool.call.arguments.forwarded"], &fwd); err != nil || fwd != given {
				t.Errorf("send: arguments forwarded on record %s, the tool was given %+v", send.Content["gen_ai.tool.call.arguments.forwarded"], given)
			}
			if d, ok := decisions["send"]; !ok || d.Attr("policy.result") != "modify" || !strings.Contains(string(d.Content["policy.obligations"]), `"detectors"`) {
				t.Errorf("send: decision %+v", d)
			}

			page := reqs["page"]
			refused, _ := page.Attr("infertrail.refused").(string)
			if !strings.Contains(refused, "obligations cannot be carried out") || !strings.Contains(refused, "notify") {
				t.Errorf("page: refused %q", refused)
			}
			if d, ok := decisions["page"]; !ok || d.Attr("policy.result") != "allow" {
				t.Errorf("page: decision %+v", d)
			}
			for _, rec := range recs {
				if rec.Attr("gen_ai.tool.name") == "page" && rec.Attr("infertrail.phase") == "response" {
					t.Error("page has a response record, though it was not run")
				}
			}

			note := reqs["note"]
			if note.Attributes["infertrail.redactions"] != nil || note.Content["gen_ai.tool.call.arguments.forwarded"] != nil || note.Attr("infertrail.refused") != nil {
				t.Errorf("note: %v %v", note.Attributes, note.Content)
			}
			if d, ok := decisions["note"]; !ok || d.Attr("policy.result") != "modify" {
				t.Errorf("note: decision %+v", d)
			}
		})
	}
}

// checkForwarded checks that received is sent with only its arguments
// changed: every other member of the message and of its params is the
// same bytes.
func checkForwarded(t *testing.T, sent, received []byte) {
	t.Helper()
	var s, r map[string]json.RawMessage
	if json.Unmarshal(sent, &s) != nil || json.Unmarshal(received, &r) != nil || len(s) != len(r) {
		t.Fatalf("sent %s\nreceived %s", sent, received)
	}
	for k := range s {
		if k != "params" && !bytes.Equal(s[k], r[k]) {
			t.Errorf("%s: sent %s, received %s", k, s[k], r[k])
		}
	}
	var sp, rp map[string]json.RawMessage
	if json.Unmarshal(s["params"], &sp) != nil || json.Unmarshal(r["params"], &rp) != nil || len(sp) != len(rp) || sp["_meta"] == nil {
		t.Fatalf("params: sent %s\nreceived %s", s["params"], r["params"])
	}
	for k := range sp {
		if k != "arguments" && !bytes.Equal(sp[k], rp[k]) {
			t.Errorf("params.%s: sent %s, received %s", k, sp[k], rp[k])
		}
	}
	if bytes.Contains(received, []byte("bob@example.com")) {
		t.Errorf("the server received the address: %s", received)
	}
}

// TestObligationsRaw: the bytes a server receives of a tools/call whose
// arguments an obligation redacts (every byte but the arguments' as the
// client sent it), and the calls whose arguments cannot be redacted
// reliably: each is refused with JSON-RPC error -32011.
func TestObligationsRaw(t *testing.T) {
	for _, c := range []struct {
		name, in, want, refusal string
	}{
		{name: "spacing kept",
			in:   `{"jsonrpc":"2.0", "id":3, "method":"tools/call", "params":{"name":"send", "arguments": {"to": "bob@example.com"} , "_meta":{ }}}`,
			want: `{"jsonrpc":"2.0", "id":3, "method":"tools/call", "params":{"name":"send", "arguments": {"to":"[redacted:email]"} , "_meta":{ }}}`},
		{name: "batch",
			in:   `[{"jsonrpc":"2.0","id":1,"method":"ping"}, {"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"_meta":{"k":"<&>"},"name":"send","arguments":{"to":"bob@example.com"}}}]`,
			want: `[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"_meta":{"k":"<&>"},"name":"send","arguments":{"to":"[redacted:email]"}}}]`},
		{name: "arguments twice",
			in:      `{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"send","arguments":{"to":"bob@example.com"},"arguments":{"to":"x"}}}`,
			refusal: `the member \"arguments\" is there twice`},
		{name: "arguments in another case",
			in:      `{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"send","Arguments":{"to":"bob@example.com"}}}`,
			refusal: `the member \"arguments\" is there as \"Arguments\"`},
		{name: "params twice",
			in:      `{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"name":"send","arguments":{"to":"bob@example.com"}},"params":{"name":"send","arguments":{}}}`,
			refusal: `the member \"params\" is there twice`},
		{name: "arguments not an object",
			in:      `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"send","arguments":"bob@example.com"}}`,
			refusal: "params.arguments is not a JSON object"},
		{name: "no arguments",
			in:   `{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"name":"send"}}`,
			want: `{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"name":"send"}}`},
	} {
		t.Run(c.name, func(t *testing.T) {
			trail := gatewaytest.NewTrail(t)
			gw, err := mcp.New(mcp.Config{Recorder: trail.Log, Secret: gatewaytest.Secret, Policy: obligationEngine(t, trail)})
			if err != nil {
				t.Fatal(err)
			}
			toServer, toClient := relayRaw(t, gw, c.in+"\n")
			if c.refusal == "" {
				if len(toServer) != 1 || toServer[0] != c.want || toClient != "" {
					t.Fatalf("the server received\n %q\nwant\n %q\n(the client got %s)", toServer, c.want, toClient)
				}
				return
			}
			if len(toServer) != 0 || !strings.Contains(toClient, c.refusal) || !strings.Contains(toClient, `"code":-32011`) {
				t.Fatalf("the server received %q; the client got %s, want %s", toServer, toClient, c.refusal)
			}
		})
	}
}
