package mcp

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/infertrail/infertrail"
	"github.com/infertrail/infertrail/capture/gateway"
	"github.com/infertrail/infertrail/policy/obligation"
	"github.com/infertrail/infertrail/redact"
)

// message is one JSON-RPC 2.0 message, as far as the gateway reads it.
type message struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id,omitempty"`
	Method  string          `json:"method,omitempty"`
	Params  json.RawMessage `json:"params,omitempty"`
	Result  json.RawMessage `json:"result,omitempty"`
	Error   *rpcError       `json:"error,omitempty"`
	raw     []byte
}

type rpcError struct {
	Code    int             `json:"code"`
	Message string          `json:"message"`
	Data    json.RawMessage `json:"data,omitempty"`
}

func (m *message) isRequest() bool  { return m.Method != "" && len(m.ID) > 0 && string(m.ID) != "null" }
func (m *message) isResponse() bool { return m.Method == "" && len(m.ID) > 0 }

// JSON-RPC error codes the gateway answers with. The two of its own are
// implementation-defined server errors (-32000 to -32099) that neither
// the MCP specification nor the official SDKs use: the Go SDK, for one,
// takes -32001 to -32005 for its own conditions (-32003 for "client is
// closing", which its clients report as a closed connection).
const (
	codeInvalidRequest = -32600
	// codeNotRecorded: the trail could not record a tool call, so it was
	// not forwarded.
	codeNotRecorded = -32010
	// codeDenied: a policy denied the tool call, or it needs an approval
	// that it did not get, or its obligations cannot be carried out, so it
	// was not forwarded.
	codeDenied = -32011
)

// parseMessages parses a message, or a batch of them. A malformed one is
// an error that says why.
func parseMessages(b []byte) ([]message, error) {
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return nil, errors.New("empty message")
	}
	var raws []json.RawMessage
	if b[0] == '[' {
		if err := json.Unmarshal(b, &raws); err != nil {
			return nil, fmt.Errorf("not JSON: %v", err)
		}
		if len(raws) == 0 {
			return nil, errors.New("empty batch")
		}
	} else {
		raws = []json.RawMessage{b}
	}
	out := make([]message, len(raws))
	for i, raw := range raws {
		if err := json.Unmarshal(raw, &out[i]); err != nil {
			return nil, fmt.Errorf("not a JSON-RPC message: %v", err)
		}
		m := &out[i]
		if m.JSONRPC != "2.0" {
			return nil, fmt.Errorf("jsonrpc is %q, want \"2.0\"", m.JSONRPC)
		}
		if m.Method == "" && len(m.ID) == 0 {
			return nil, errors.New("neither a request, a notification nor a response")
		}
		m.raw = raw
	}
	return out, nil
}

// errorResponse is a JSON-RPC error response to id (null when unknown).
func errorResponse(id json.RawMessage, code int, msg string) []byte {
	if len(id) == 0 {
		id = json.RawMessage("null")
	}
	b, _ := json.Marshal(struct {
		JSONRPC string          `json:"jsonrpc"`
		ID      json.RawMessage `json:"id"`
		Error   rpcError        `json:"error"`
	}{"2.0", id, rpcError{Code: code, Message: msg}})
	return b
}

// identity is who the client is, as far as the gateway can tell.
type identity struct {
	actor   infertrail.Actor
	tenant  string
	token   string // the InferTrail token's name, if one was used
	claimed string // an X-InferTrail-Agent that is not the authenticated identity
}

// tap observes the messages between one client and one server: an HTTP
// exchange (a POST and its response stream, or a GET stream) or a whole
// stdio session. It records what the agent did, and changes a message
// only to carry out a policy's obligation to redact a tools/call.
type tap struct {
	g          *Gateway
	server     string // the configured server name
	transport  string // "tcp" or "pipe"
	id         identity
	sessionID  string // the records' session id
	mcpSession string // Mcp-Session-Id, for HTTP
	info       *sessionInfo

	mu       sync.Mutex
	pending  map[string]*call // by JSON-RPC id
	progress map[string]*call // by progress token
}

// maxPending bounds the calls a tap waits answers for; past it the oldest
// is recorded as unanswered.
const maxPending = 4096

// call is a request the client sent that the gateway waits the answer of.
type call struct {
	msg        message
	params     requestParams // msg.Params, parsed once
	key        string
	start      time.Time
	tc         gateway.TraceContext
	toolCallID string
	req        *infertrail.Record // tools/call: its request record
	progress   int
	// What the request's own _meta says (MCP 2026-07-28 and later carry
	// the client's name and the protocol version on every request), and
	// what the response's says of the server.
	client, server implementation
	proto          string
	cancelled      string             // the reason of the client's notifications/cancelled, if it sent one
	decision       *infertrail.Record // tools/call: the policy decision that let it go ahead
	// A tools/call that needs an approval: the policy's reasons; whether
	// its request record and decision are durable already; how long it
	// waited; and the approval record that let it go ahead.
	hold     bool
	reasons  []string
	recorded bool
	held     time.Duration
	approval infertrail.UUID
	// forward is the message as forwarded, when its decision's
	// obligations changed it (nil: as the client sent it).
	forward []byte
}

// requestMeta is what the gateway reads of a request's params._meta.
type requestMeta struct {
	Traceparent     string          `json:"traceparent"`
	ProgressToken   any             `json:"progressToken"`
	ClientInfo      *implementation `json:"io.modelcontextprotocol/clientInfo"`
	ProtocolVersion string          `json:"io.modelcontextprotocol/protocolVersion"`
	ToolCallID      string          `json:"io.infertrail/tool_call_id"`
	ToolCallIDAlt   string          `json:"tool_call_id"`
}

// requestParams is what the gateway reads of a request's params, parsed
// once for every use: a member that is missing or of another type is left
// empty, as is everything when params is not an object.
type requestParams struct {
	Meta       requestMeta     `json:"_meta"`
	Name       string          `json:"name"`       // tools/call, prompts/get
	Arguments  json.RawMessage `json:"arguments"`  // tools/call
	URI        string          `json:"uri"`        // resources/read
	ClientInfo implementation  `json:"clientInfo"` // initialize
}

// callHints are what HTTP headers say about the calls of a request.
type callHints struct {
	traceparent string
	toolCallID  string
}

func (t *tap) now() time.Time { return t.g.cfg.Now() }

// fromClient observes a client's message (or batch) raw, parsed as msgs,
// before it is forwarded. It returns what to forward: raw itself, or raw
// with a tools/call changed by its policy's obligations. Or it returns the
// error responses to send the client instead, when a tool call may not go
// ahead or cannot be recorded first; then nothing of the message may be
// forwarded.
func (t *tap) fromClient(ctx context.Context, raw []byte, msgs []message, hints callHints) (forward []byte, refusals [][]byte) {
	var (
		calls []*call
		fwd   [][]byte // by index in msgs: the messages obligations changed
	)
	for i, m := range msgs {
		if m.Method == "notifications/cancelled" {
			var p struct {
				RequestID json.RawMessage `json:"requestId"`
				Reason    string          `json:"reason"`
			}
			if json.Unmarshal(m.Params, &p) == nil {
				t.mu.Lock()
				if c := t.pending[string(p.RequestID)]; c != nil {
					c.cancelled = "cancelled"
					if p.Reason != "" {
						c.cancelled = clipString(p.Reason)
					}
				}
				t.mu.Unlock()
			}
		}
		if !m.isRequest() {
			continue
		}
		c := &call{msg: m, key: string(m.ID), start: t.now()}
		json.Unmarshal(m.Params, &c.params)
		meta := c.params.Meta
		tp := hints.traceparent
		if meta.Traceparent != "" {
			tp = meta.Traceparent
		}
		c.tc = gateway.NewTraceContext(tp)
		c.toolCallID = clipString(hints.toolCallID)
		for _, v := range []string{meta.ToolCallIDAlt, meta.ToolCallID} {
			if v != "" {
				c.toolCallID = clipString(v)
			}
		}
		if meta.ClientInfo != nil {
			c.client = clip(*meta.ClientInfo)
		}
		c.proto = clipString(meta.ProtocolVersion)
		if m.Method == "tools/call" {
			c.req = t.requestRecord(c)
			if t.g.cfg.Policy != nil {
				if refusal := t.decide(ctx, c); refusal != "" {
					// The batch's tool calls decided before this one are
					// not run either: on record as refused, with their
					// decisions.
					for _, e := range calls {
						if e.req != nil && !e.recorded {
							t.refuse(ctx, e, "another tool call of its batch was refused, so this one was not run: "+refusal)
						}
					}
					var out [][]byte
					for _, m := range msgs {
						if m.isRequest() {
							out = append(out, errorResponse(m.ID, codeDenied, refusal))
						}
					}
					return nil, out
				}
				if c.forward != nil {
					if fwd == nil {
						fwd = make([][]byte, len(msgs))
					}
					fwd[i] = c.forward
				}
			}
		}
		calls = append(calls, c)
		if meta.ProgressToken != nil {
			t.mu.Lock()
			if t.progress == nil {
				t.progress = map[string]*call{}
			}
			if len(t.progress) >= maxPending {
				clear(t.progress)
			}
			t.progress[fmt.Sprint(meta.ProgressToken)] = c
			t.mu.Unlock()
		}
	}
	// Tool calls that need an approval wait for it, one after the other;
	// the message goes ahead only if each is approved.
	if code, refusal := t.holdCalls(ctx, calls); refusal != "" {
		var out [][]byte
		for _, m := range msgs {
			if m.isRequest() {
				out = append(out, errorResponse(m.ID, code, refusal))
			}
		}
		return nil, out
	}
	// Tool calls are on record before anything is forwarded.
	for _, c := range calls {
		if c.req == nil || c.recorded {
			continue
		}
		var err error
		if t.g.cfg.Durability == Async {
			if err = c.req.Validate(infertrail.Limits{}); err == nil {
				if err = t.g.sp.Reserve(ctx); err == nil {
					t.g.sp.WriteLater(c.req)
					if c.decision != nil {
						t.g.sp.Persist(c.decision)
					}
				}
			}
		} else {
			_, err = t.g.sp.RecordNow(ctx, c.req, nonNil(c.decision)...)
		}
		if err != nil {
			t.g.unrecorded.Log(t.g.log, slog.LevelWarn, "mcp: tool call not forwarded: its record could not be written", "server", t.server, "err", err)
			reason := "the InferTrail audit trail cannot record this tool call right now, so it was not run; try again"
			if errors.Is(err, infertrail.ErrInvalid) || errors.Is(err, infertrail.ErrTooLarge) {
				reason = "InferTrail cannot record this tool call, so it was not run: " + err.Error()
			}
			for _, held := range calls {
				if held.hold {
					t.refuseHeld(held, codeNotRecorded, "another tool call of its batch could not be recorded, so none was run")
				}
			}
			var out [][]byte
			for _, m := range msgs {
				if m.isRequest() {
					out = append(out, errorResponse(m.ID, codeNotRecorded, reason))
				}
			}
			return nil, out
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.pending == nil {
		t.pending = map[string]*call{}
	}
	for _, c := range calls {
		if old := t.pending[c.key]; old != nil {
			go t.finish(old, nil, "the client reused its JSON-RPC id before the answer came")
		}
		t.pending[c.key] = c
	}
	for len(t.pending) > maxPending {
		var oldest *call
		for _, c := range t.pending {
			if oldest == nil || c.start.Before(oldest.start) {
				oldest = c
			}
		}
		delete(t.pending, oldest.key)
		go t.finish(oldest, nil, "no answer among the next "+strconv.Itoa(maxPending)+" calls")
	}
	return relayed(raw, msgs, fwd), nil
}

// relayed is what to forward of raw, a client's message or batch parsed
// as msgs: raw itself, or raw with the messages fwd holds (by index in
// msgs) in place of the client's.
func relayed(raw []byte, msgs []message, fwd [][]byte) []byte {
	if fwd == nil {
		return raw
	}
	if bytes.TrimSpace(raw)[0] != '[' {
		return fwd[0]
	}
	b := []byte{'['}
	for i, m := range msgs {
		if i > 0 {
			b = append(b, ',')
		}
		if fwd[i] != nil {
			b = append(b, fwd[i]...)
		} else {
			b = append(b, m.raw...)
		}
	}
	return append(b, ']')
}

// fromServer observes a message the server sent, after it was relayed.
func (t *tap) fromServer(raw []byte) {
	msgs, err := parseMessages(raw)
	if err != nil {
		t.protocolError("server", raw, err.Error())
		return
	}
	for _, m := range msgs {
		switch {
		case m.isResponse():
			t.mu.Lock()
			c := t.pending[string(m.ID)]
			delete(t.pending, string(m.ID))
			t.mu.Unlock()
			if c != nil {
				t.finish(c, &m, "")
			} else if m.Error != nil {
				t.protocolError("server", m.raw, fmt.Sprintf("error response %d %q to a request the gateway did not see", m.Error.Code, m.Error.Message))
			}
		case m.Method == "notifications/progress":
			var p struct {
				Token any `json:"progressToken"`
			}
			if json.Unmarshal(m.Params, &p) == nil {
				t.mu.Lock()
				if c := t.progress[fmt.Sprint(p.Token)]; c != nil {
					c.progress++
				}
				t.mu.Unlock()
			}
		}
	}
}

// end records every call still waiting for its answer as incomplete.
func (t *tap) end(reason string) {
	t.mu.Lock()
	calls := make([]*call, 0, len(t.pending))
	for _, c := range t.pending {
		calls = append(calls, c)
	}
	t.pending = nil
	t.mu.Unlock()
	for _, c := range calls {
		t.finish(c, nil, reason)
	}
}

// waiting reports whether calls still wait for an answer.
func (t *tap) waiting() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.pending) > 0
}

// kindOf is the record kind of a method's records.
func kindOf(method string) infertrail.Kind {
	switch method {
	case "tools/call":
		return infertrail.KindToolCall
	case "resources/read", "prompts/get":
		return infertrail.KindRetrieval
	}
	return infertrail.KindDownstreamCall
}

// base returns a record of the call with what every record of it carries.
func (t *tap) base(c *call, kind infertrail.Kind) *infertrail.Record {
	r := &infertrail.Record{ID: infertrail.NewUUID(), Kind: kind, Time: c.start, Tenant: t.id.tenant, Actor: t.id.actor,
		SessionID: t.sessionID, TraceID: c.tc.TraceID, SpanID: c.tc.SpanID, ParentSpanID: c.tc.ParentID, Source: "mcp",
		Attributes: map[string]json.RawMessage{}}
	a := r.Attributes
	a["mcp.method.name"] = jsonString(c.msg.Method)
	a["mcp.server.name"] = jsonString(t.server)
	a["network.transport"] = jsonString(t.transport)
	a["jsonrpc.request.id"] = jsonString(idString(c.msg.ID))
	t.mu.Lock()
	sid := t.mcpSession
	r.SessionID = t.sessionID
	t.mu.Unlock()
	if sid != "" {
		a["mcp.session.id"] = jsonString(sid)
	}
	if t.id.token != "" {
		a["infertrail.token"] = jsonString(t.id.token)
	}
	if t.id.claimed != "" {
		a["infertrail.claimed_agent"] = jsonString(t.id.claimed)
	}
	client, server, proto := c.client, c.server, c.proto
	if si := t.sessionInfo(); si != nil {
		if client.Name == "" {
			client = si.client
		}
		if server.Name == "" {
			server = si.server
		}
		if proto == "" {
			proto = si.protocolVersion
		}
	}
	if client.Name != "" {
		a["mcp.client.name"] = jsonString(client.Name)
		a["mcp.client.version"] = jsonString(client.Version)
		if r.Actor.ID == "" {
			// Without an authenticated identity, the client's own name is
			// the acting identity, as the client claims it.
			r.Actor.ID, r.Actor.Type = "mcp-client:"+client.Name, "agent"
			a["infertrail.agent_claimed"] = json.RawMessage("true")
		}
	}
	if server.Name != "" {
		a["mcp.server.implementation.name"] = jsonString(server.Name)
		a["mcp.server.implementation.version"] = jsonString(server.Version)
	}
	if proto != "" {
		a["mcp.protocol.version"] = jsonString(proto)
	}
	if name := toolName(c); name != "" {
		a["gen_ai.tool.name"] = jsonString(name)
		a["gen_ai.operation.name"] = jsonString("execute_tool")
	}
	if c.toolCallID != "" {
		a["gen_ai.tool.call.id"] = jsonString(c.toolCallID)
	}
	return r
}

// sessionInfo is what the session's initialize said, if the gateway saw it.
func (t *tap) sessionInfo() *sessionInfo {
	t.mu.Lock()
	si, sid := t.info, t.mcpSession
	t.mu.Unlock()
	if si == nil && sid != "" {
		si = t.g.session(sid)
	}
	return si
}

// toolName is the name of the tool a tools/call calls.
func toolName(c *call) string {
	if c.msg.Method != "tools/call" {
		return ""
	}
	return clipString(c.params.Name)
}

// requestRecord is a tools/call's request record: written before the call
// is forwarded.
func (t *tap) requestRecord(c *call) *infertrail.Record {
	r := t.base(c, infertrail.KindToolCall)
	r.Attributes["infertrail.phase"] = jsonString("request")
	if args := c.params.Arguments; len(args) > 0 && string(args) != "null" {
		r.Content = map[string]json.RawMessage{"gen_ai.tool.call.arguments": args}
	}
	return r
}

// finish records the end of a call: its answer, or why none came.
func (t *tap) finish(c *call, resp *message, incomplete string) {
	end := t.now()
	if resp != nil && resp.Error == nil {
		var res struct {
			Meta struct {
				ServerInfo *implementation `json:"io.modelcontextprotocol/serverInfo"`
			} `json:"_meta"`
		}
		if json.Unmarshal(resp.Result, &res) == nil && res.Meta.ServerInfo != nil {
			c.server = clip(*res.Meta.ServerInfo)
		}
		if c.msg.Method == "initialize" {
			t.learn(c, resp)
		}
	}
	var r *infertrail.Record
	if c.req != nil {
		r = t.responseRecord(c, end)
	} else {
		switch c.msg.Method {
		case "initialize", "server/discover", "tools/list", "resources/read", "prompts/get":
		default:
			if resp == nil || resp.Error == nil {
				return // relayed, not recorded (ping, completion, logging, …)
			}
		}
		r = t.base(c, kindOf(c.msg.Method))
		if len(c.msg.Params) > 0 {
			r.Content = map[string]json.RawMessage{"mcp.request": c.msg.Params}
		}
	}
	a := r.Attributes
	a["infertrail.duration_ns"] = jsonInt(end.Sub(c.start).Nanoseconds())
	t.mu.Lock()
	progress, cancelled := c.progress, c.cancelled
	t.mu.Unlock()
	if progress > 0 {
		a["mcp.progress.notifications"] = jsonInt(int64(progress))
	}
	if cancelled != "" {
		a["mcp.cancelled"] = json.RawMessage("true")
		a["mcp.cancel.reason"] = jsonString(cancelled)
	}
	if r.Content == nil {
		r.Content = map[string]json.RawMessage{}
	}
	switch {
	case incomplete != "":
		a["infertrail.incomplete"] = json.RawMessage("true")
		a["infertrail.incomplete_reason"] = jsonString(incomplete)
	case resp.Error != nil:
		a["rpc.jsonrpc.error_code"] = jsonInt(int64(resp.Error.Code))
		a["error.type"] = jsonString(strconv.Itoa(resp.Error.Code))
		if b, err := json.Marshal(resp.Error); err == nil {
			r.Content["mcp.error"] = b
		}
	default:
		t.resultAttributes(c, r, resp.Result)
	}
	if len(r.Content) == 0 {
		r.Content = nil
	}
	t.write(r)
}

// resultAttributes puts what a successful answer says in clear, and the
// answer itself in content.
func (t *tap) resultAttributes(c *call, r *infertrail.Record, result json.RawMessage) {
	a := r.Attributes
	switch c.msg.Method {
	case "tools/call":
		var res struct {
			IsError bool `json:"isError"`
		}
		json.Unmarshal(result, &res)
		a["mcp.tool.is_error"] = json.RawMessage(strconv.FormatBool(res.IsError))
		if res.IsError {
			a["error.type"] = jsonString("tool_error")
		}
		r.Content["gen_ai.tool.call.result"] = result
	case "tools/list":
		var res struct {
			Tools []struct {
				Name string `json:"name"`
			} `json:"tools"`
			Next string `json:"nextCursor"`
		}
		json.Unmarshal(result, &res)
		names := make([]string, len(res.Tools))
		for i, tl := range res.Tools {
			names[i] = tl.Name
		}
		nb, _ := json.Marshal(names)
		a["mcp.tools.names"] = nb
		a["mcp.tools.count"] = jsonInt(int64(len(names)))
		if canon, err := infertrail.Canonicalize(result); err == nil {
			sum := sha256.Sum256(canon)
			a["mcp.tools.digest"] = jsonString("sha256:" + hex.EncodeToString(sum[:]))
		}
		r.Content["mcp.response"] = result
	case "resources/read":
		if uri := c.params.URI; uri != "" {
			a["mcp.resource.uri"] = jsonString(uri)
		}
		r.Content["mcp.response"] = result
	case "prompts/get":
		if name := c.params.Name; name != "" {
			a["mcp.prompt.name"] = jsonString(name)
		}
		r.Content["mcp.response"] = result
	default: // initialize, server/discover
		r.Content["mcp.response"] = result
	}
}

// learn keeps what an initialize exchange says about the session: the
// client's and server's names and versions, and the protocol version.
func (t *tap) learn(c *call, resp *message) {
	var res struct {
		ServerInfo      implementation `json:"serverInfo"`
		ProtocolVersion string         `json:"protocolVersion"`
	}
	json.Unmarshal(resp.Result, &res)
	si := &sessionInfo{client: clip(c.params.ClientInfo), server: clip(res.ServerInfo), protocolVersion: clipString(res.ProtocolVersion)}
	t.mu.Lock()
	t.info = si
	sid := t.mcpSession
	t.mu.Unlock()
	t.g.remember(sid, si) // at once: the client's next request may come before this response's end
}

// clip bounds what a peer says of itself before it goes into records.
func clip(i implementation) implementation {
	return implementation{Name: clipString(i.Name), Version: clipString(i.Version)}
}

func clipString(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) > 256 {
		s = strings.ToValidUTF8(s[:256], "")
	}
	return s
}

// protocolError records a malformed message from one side.
func (t *tap) protocolError(from string, raw []byte, reason string) {
	c := &call{start: t.now(), tc: gateway.NewTraceContext("")}
	r := t.base(c, infertrail.KindDownstreamCall)
	delete(r.Attributes, "jsonrpc.request.id")
	delete(r.Attributes, "mcp.method.name")
	r.Attributes["mcp.protocol_error"] = jsonString(clipString(reason))
	r.Attributes["mcp.protocol_error.from"] = jsonString(from)
	if len(raw) > 0 {
		keep := raw
		if len(keep) > 64<<10 {
			keep = keep[:64<<10]
			r.Attributes["infertrail.truncated"] = json.RawMessage("true")
		}
		r.Content = map[string]json.RawMessage{"mcp.message": jsonString(strings.ToValidUTF8(string(keep), "\uFFFD"))}
	}
	t.write(r)
}

// write hands a record to the spool, waiting for room if the trail is
// behind; with no room it writes it at once.
func (t *tap) write(r *infertrail.Record) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if t.g.sp.Reserve(ctx) == nil {
		t.g.sp.WriteLater(r)
		return
	}
	t.g.sp.Persist(r)
}

// idString is a JSON-RPC id as text: a string's value, or a number (or
// anything else) as it was sent.
func idString(id json.RawMessage) string {
	if len(id) == 0 || id[0] != '"' {
		return string(id)
	}
	var s string
	if json.Unmarshal(id, &s) == nil {
		return s
	}
	return string(id)
}

func jsonString(s string) json.RawMessage { return infertrail.AppendString(nil, s) }

func jsonInt(n int64) json.RawMessage { return strconv.AppendInt(nil, n, 10) }

// decide asks the policy about a tools/call. It returns "" when the call
// may go ahead (with c.forward set when its decision's obligations changed
// it), or must first be approved (c.hold; see holdCalls): its decision, if
// any, waits in c.decision to be recorded with the request record.
// Otherwise it returns the reason the call may not go ahead (a denial, or
// obligations that cannot be carried out), after recording the request
// and the decision.
func (t *tap) decide(ctx context.Context, c *call) string {
	p := &c.params
	var args any
	json.Unmarshal(p.Arguments, &args)
	si := t.sessionInfo()
	client := c.client
	if client.Name == "" && si != nil {
		client = si.client
	}
	input := map[string]any{
		"point": string(infertrail.PointToolCall), "time": c.start.UTC().Format(time.RFC3339Nano),
		"caller": map[string]any{"actor": map[string]any{"id": c.req.Actor.ID, "type": c.req.Actor.Type, "on_behalf_of": c.req.Actor.OnBehalfOf},
			"tenant": t.id.tenant, "token": t.id.token, "credential_fingerprint": t.id.actor.CredentialFingerprint,
			"mcp_client": map[string]any{"name": client.Name, "version": client.Version}},
		"session_id": c.req.SessionID, "trace_id": c.tc.TraceID,
		"tool":    map[string]any{"server": t.server, "name": p.Name, "arguments": args, "call_id": c.toolCallID},
		"earlier": []any{},
	}
	d, err := t.g.cfg.Policy.Decide(ctx, infertrail.PointToolCall, input)
	if err != nil {
		t.g.log.Error("mcp: policy evaluation failed; the tool call is refused", "server", t.server, "err", err)
		reason := "the tool call was not run: its policy could not be evaluated"
		c.req.Attributes["infertrail.refused"] = jsonString(reason)
		t.write(c.req)
		return reason
	}
	if d.PolicyID != "" {
		r := infertrail.NewDecisionRecord(d, infertrail.PointToolCall, c.req.ID)
		r.Time, r.Tenant, r.Actor, r.SessionID = c.req.Time, c.req.Tenant, c.req.Actor, c.req.SessionID
		r.TraceID, r.SpanID, r.ParentSpanID, r.Source = c.req.TraceID, c.req.SpanID, c.req.ParentSpanID, c.req.Source
		// The tool and the model's call id, as docs/records.md lists for a
		// decision: so that an execution recorded elsewhere (an OTLP span
		// of the tool server) finds the decision that governed it.
		for _, k := range []string{"gen_ai.tool.name", "gen_ai.tool.call.id"} {
			if v, ok := c.req.Attributes[k]; ok {
				r.Attributes[k] = v
			}
		}
		c.decision = r
	}
	// A call held for approval goes ahead, if approved, as its
	// obligations make it: they are carried out before the wait.
	holds := d.Result == infertrail.PolicyRequireApproval && t.g.cfg.Approvals != nil && c.decision != nil
	goesAhead := d.Result == infertrail.PolicyAllow || d.Result == infertrail.PolicyModify
	if (goesAhead || holds) && len(d.Obligations) > 0 {
		// Obligations InferTrail cannot carry out are the policy's fault;
		// arguments that cannot be redacted reliably the call's.
		set, err := obligation.Parse(infertrail.PointToolCall, d.Obligations)
		for i := 0; err == nil && i < len(set.Redact); i++ {
			_, err = t.g.cfg.Redactors.For(set.Redact[i].Detectors)
		}
		if err != nil {
			t.g.log.Error("mcp: a tool.call policy asks for obligations InferTrail cannot carry out; the call is refused", "server", t.server, "policy", d.PolicyID, "err", err)
		} else if err = t.oblige(c, set); err != nil {
			t.g.log.Warn("mcp: a tool call's arguments cannot be redacted as its policy obliges; the call is refused", "server", t.server, "policy", d.PolicyID, "err", err)
		}
		if err != nil {
			return t.refuse(ctx, c, "the tool call was not run: its policy's obligations cannot be carried out: "+err.Error())
		}
	}
	if goesAhead {
		return ""
	}
	if holds {
		c.hold, c.reasons = true, d.Reasons
		return ""
	}
	reason := "denied by policy"
	if d.Result == infertrail.PolicyRequireApproval {
		reason = "this tool call needs an approval, and this gateway holds no calls for approval (no approvals service is configured); it was not run"
	}
	if len(d.Reasons) > 0 {
		reason += ": " + strings.Join(d.Reasons, "; ")
	}
	return t.refuse(ctx, c, reason)
}

// refuse records that a tools/call may not go ahead, for reason: its
// request record, marked refused, durable with its decision. It returns
// reason.
func (t *tap) refuse(ctx context.Context, c *call, reason string) string {
	c.req.Attributes["infertrail.refused"] = jsonString(reason)
	if _, err := t.g.sp.RecordNow(ctx, c.req, nonNil(c.decision)...); err != nil {
		t.g.log.Warn("mcp: a refused tool call could not be recorded", "server", t.server, "err", err)
	}
	return reason
}

// oblige carries out the redactions of a tools/call's decision on its
// arguments, or returns why it cannot. When they mask something,
// c.forward is the message with the masked arguments in place of the
// client's (every other byte as the client sent it), and the request
// record holds the findings (infertrail.redactions) and the arguments as
// forwarded (content gen_ai.tool.call.arguments.forwarded).
func (t *tap) oblige(c *call, set obligation.Set) error {
	params, pStart, _, err := obligation.Member(c.msg.raw, "params")
	if err != nil {
		return err
	}
	var (
		args         json.RawMessage
		aStart, aEnd int
	)
	if params != nil && string(params) != "null" {
		if params[0] != '{' {
			return fmt.Errorf("params is not a JSON object: %w", infertrail.ErrInvalid)
		}
		if args, aStart, aEnd, err = obligation.Member(params, "arguments"); err != nil {
			return fmt.Errorf("params: %w", err)
		}
		if args != nil && string(args) != "null" && args[0] != '{' {
			return fmt.Errorf("params.arguments is not a JSON object: %w", infertrail.ErrInvalid)
		}
	}
	doc := []byte("{}")
	if args != nil {
		doc = slices.Concat([]byte(`{"arguments":`), args, []byte("}"))
	}
	out, applied, err := t.g.cfg.Redactors.Apply(doc, set.Redact)
	if err != nil {
		return err
	}
	if bytes.Equal(out, doc) {
		return nil
	}
	var red struct {
		Arguments json.RawMessage `json:"arguments"`
	}
	if err := json.Unmarshal(out, &red); err != nil {
		return fmt.Errorf("redact obligation: %w", err)
	}
	var findings []redact.Finding
	for _, f := range applied.Findings {
		if f.Count > 0 {
			findings = append(findings, f)
		}
	}
	fb, err := json.Marshal(findings)
	if err != nil {
		return fmt.Errorf("redact obligation: %w", err)
	}
	c.forward = slices.Concat(c.msg.raw[:pStart+aStart], red.Arguments, c.msg.raw[pStart+aEnd:])
	c.req.Attributes["infertrail.redactions"] = fb
	if c.req.Content == nil {
		c.req.Content = map[string]json.RawMessage{}
	}
	c.req.Content["gen_ai.tool.call.arguments.forwarded"] = red.Arguments
	return nil
}

func nonNil(r *infertrail.Record) []*infertrail.Record {
	if r == nil {
		return nil
	}
	return []*infertrail.Record{r}
}

// holdCalls holds the tool calls among calls that need an approval, one
// after the other. It returns "" when each was approved (their records
// are durable already), or else the JSON-RPC error code and message that
// refuse the whole message, after recording why each held call was not
// run: the calls it did not come to are refused unasked, as a denial is.
func (t *tap) holdCalls(ctx context.Context, calls []*call) (int, string) {
	var (
		code     int
		refusal  string
		approved []*call
	)
	for _, c := range calls {
		if !c.hold {
			continue
		}
		if refusal != "" {
			c.req.Attributes["infertrail.refused"] = jsonString("another tool call of its batch was not approved, so this one was not run; it was not asked for")
			if _, err := t.g.sp.RecordNow(context.WithoutCancel(ctx), c.req, nonNil(c.decision)...); err != nil {
				t.g.log.Warn("mcp: a refused tool call could not be recorded", "server", t.server, "err", err)
			}
			continue
		}
		if code, refusal = t.hold(ctx, c); refusal == "" {
			approved = append(approved, c)
		}
	}
	if refusal != "" {
		for _, c := range approved {
			t.refuseHeld(c, codeDenied, "another tool call of its batch was not approved, so none was run")
		}
	}
	return code, refusal
}

// hold makes a tools/call's request record and its decision durable
// (whatever the durability mode: the approval names them), then waits
// for its approval, bounded by the approval timeout and by ctx (the
// client's request, or the stdio session). It returns "" when the call is
// approved, or else the JSON-RPC error code and message to refuse it
// with, after recording the refusal as the call's response record.
func (t *tap) hold(ctx context.Context, c *call) (int, string) {
	if _, err := t.g.sp.RecordNow(ctx, c.req, nonNil(c.decision)...); err != nil {
		t.g.unrecorded.Log(t.g.log, slog.LevelWarn, "mcp: tool call not forwarded: its record could not be written", "server", t.server, "err", err)
		if errors.Is(err, infertrail.ErrInvalid) || errors.Is(err, infertrail.ErrTooLarge) {
			return codeNotRecorded, "InferTrail cannot record this tool call, so it was not run: " + err.Error()
		}
		return codeNotRecorded, "the InferTrail audit trail cannot record this tool call right now, so it was not run; try again"
	}
	c.recorded = true
	tenant := c.req.Tenant
	if tenant == "" {
		tenant = t.g.cfg.Tenant
	}
	summary := fmt.Sprintf("tool %q on server %s", toolName(c), t.server)
	if c.req.Actor.ID != "" {
		summary += " by " + c.req.Actor.ID
	}
	start := time.Now()
	a, err := t.g.cfg.Approvals.Await(ctx, infertrail.Approval{Tenant: tenant, DecisionID: c.decision.ID, Governs: c.req.ID,
		Point: infertrail.PointToolCall, Summary: summary, TraceID: c.req.TraceID, SessionID: c.req.SessionID})
	c.held = time.Since(start)
	if err != nil {
		level := slog.LevelError
		if ctx.Err() != nil {
			level = slog.LevelDebug // the client went away first
		}
		t.g.log.Log(context.WithoutCancel(ctx), level, "mcp: a tool call that needs an approval could not be held; it is refused", "server", t.server, "err", err)
		msg := "this tool call needs an approval, and InferTrail cannot hold it for one right now; it was not run; try again"
		t.refuseHeld(c, codeDenied, msg)
		return codeDenied, msg
	}
	c.approval = a.ApprovalRecord
	if a.Status == infertrail.ApprovalApproved {
		return 0, ""
	}
	msg := gateway.ApprovalRefusal("tool call", "run", a, c.reasons)
	t.refuseHeld(c, codeDenied, msg)
	return codeDenied, msg
}

// responseRecord is the start of a tools/call's response record: it
// answers the request record and, for a call held for approval, follows
// the approval record that ended the wait.
func (t *tap) responseRecord(c *call, end time.Time) *infertrail.Record {
	r := t.base(c, infertrail.KindToolCall)
	r.Time = end
	r.Links = []infertrail.Link{{Rel: "answers", ID: c.req.ID}}
	if !c.approval.IsZero() {
		r.Links = append(r.Links, infertrail.Link{Rel: "follows", ID: c.approval})
	}
	r.Attributes["infertrail.phase"] = jsonString("response")
	if c.held > 0 {
		r.Attributes["infertrail.held_ns"] = jsonInt(c.held.Nanoseconds())
	}
	return r
}

// refuseHeld records that a held tools/call was not run, as its response
// record: the error the client gets, in content, and in clear that it
// was refused.
func (t *tap) refuseHeld(c *call, code int, msg string) {
	end := t.now()
	r := t.responseRecord(c, end)
	a := r.Attributes
	a["infertrail.duration_ns"] = jsonInt(end.Sub(c.start).Nanoseconds())
	a["infertrail.refused"] = jsonString(msg)
	a["rpc.jsonrpc.error_code"] = jsonInt(int64(code))
	a["error.type"] = jsonString(strconv.Itoa(code))
	if b, err := json.Marshal(rpcError{Code: code, Message: msg}); err == nil {
		r.Content = map[string]json.RawMessage{"mcp.error": b}
	}
	t.write(r)
}
