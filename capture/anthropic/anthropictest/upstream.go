// Package anthropictest is a scripted Anthropic Messages API upstream that
// speaks the wire format of api.anthropic.com, for tests, benchmarks and demos.
package anthropictest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/infertrail/infertrail/capture/anthropic"
)

// DefaultText is the reply of an Upstream whose Text is empty.
const DefaultText = "Hello! This is a scripted reply from the anthropictest upstream."

// Upstream is a scripted Anthropic API. It is an http.Handler serving
// POST /v1/messages, not streamed and streamed, POST
// /v1/messages/count_tokens and GET /v1/models; serve it with
// httptest.NewServer and give the server's URL to the SDK or gateway as
// the base URL.
//
// The exported fields are the script. Set them before requests arrive and
// do not change them while a request is being served; an Upstream is
// otherwise safe for concurrent use. Zero values give a plain successful
// reply.
//
// It remembers what it received and the exact bytes it sent: see Requests.
type Upstream struct {
	// Model is the model the response names; default: the requested model.
	Model string
	// Text is the reply text; default DefaultText.
	Text string
	// TextBytes, if positive, makes the reply exactly that many bytes long
	// (for ASCII text): Text repeated and cut.
	TextBytes int
	// Thinking, if set, is the text of a thinking block before the reply.
	Thinking string
	// ToolCalls are tool_use blocks to answer with, after the text. When
	// there are none and the request offers tools, the upstream calls one,
	// as a model would: the tool tool_choice names, or else the first
	// offered tool, with an input made from its input_schema — unless
	// tool_choice is "none", or the conversation ends with tool results
	// (the model then answers in text), or NoAutoToolUse is set.
	ToolCalls     []ToolCall
	NoAutoToolUse bool
	// StopReason overrides the stop reason ("end_turn", or "tool_use"
	// when the reply calls tools).
	StopReason string
	// InputTokens overrides the input token count (default: a quarter of
	// the request body's size); CacheReadTokens and CacheCreationTokens
	// are reported as cache reads and writes (default 0).
	InputTokens, CacheReadTokens, CacheCreationTokens int64
	// ChunkBytes is the most text, thinking or tool input one delta
	// event carries (default 16).
	ChunkBytes int

	// Status, if set and not 200, is answered with an Anthropic error of
	// that status, of type ErrorType (default: the type Anthropic uses for
	// the status) and message ErrorMessage.
	Status       int
	ErrorType    string
	ErrorMessage string
	// ErrorAfterEvents, if positive, ends a stream with an error event
	// (overloaded_error, or ErrorType) after that many events.
	ErrorAfterEvents int
	// CloseAfterEvents, if positive, cuts the connection after that many
	// events of a stream, without ending the response.
	CloseAfterEvents int
	// HangBeforeHeaders makes the upstream send nothing until the request
	// is cancelled.
	HangBeforeHeaders bool
	// HangAfterEvents, if positive, stops a stream after that many events
	// until the request is cancelled.
	HangAfterEvents int
	// EventDelay is waited before each event of a stream, and once before
	// a body that is not streamed.
	EventDelay time.Duration
	// APIKey, if set, is the key callers must present (x-api-key, or
	// Authorization: Bearer); others get 401.
	APIKey string

	// Keep is how many requests Requests remembers, the latest ones
	// (default 1024; negative: none, for benchmarks).
	Keep int

	seq   atomic.Int64
	count atomic.Int64
	mu    sync.Mutex
	reqs  []*Request
}

// ToolCall is a tool_use block the upstream answers with.
type ToolCall struct {
	ID    string // default: a new toolu_ id
	Name  string
	Input string // the input as JSON text; default "{}"
}

// Request is one request the upstream received and what it answered.
type Request struct {
	Method, Path, Query string
	Header              http.Header // as received: x-api-key, traceparent, anthropic-version, …
	Body                []byte
	Stream              bool        // the request asked for a stream
	Status              int         // the status answered; 0 if none was
	ResponseHeader      http.Header // the headers answered
	Sent                []byte      // every byte of the response body sent, in order
	Events              int         // events sent, for a stream
}

// Requests returns copies of the requests received, oldest first. A
// response's bytes are recorded before they are written, so once a client
// has read them they are here.
func (u *Upstream) Requests() []Request {
	u.mu.Lock()
	defer u.mu.Unlock()
	out := make([]Request, len(u.reqs))
	for i, r := range u.reqs {
		out[i] = *r
		out[i].Header = r.Header.Clone()
		out[i].ResponseHeader = r.ResponseHeader.Clone()
		out[i].Body = bytes.Clone(r.Body)
		out[i].Sent = bytes.Clone(r.Sent)
	}
	return out
}

// Last returns the latest request received, and false if there is none.
func (u *Upstream) Last() (Request, bool) {
	rs := u.Requests()
	if len(rs) == 0 {
		return Request{}, false
	}
	return rs[len(rs)-1], true
}

// Count returns how many requests the upstream has received.
func (u *Upstream) Count() int { return int(u.count.Load()) }

// Reset forgets the requests received.
func (u *Upstream) Reset() {
	u.mu.Lock()
	u.reqs = nil
	u.mu.Unlock()
}

func (u *Upstream) keep() int {
	if u.Keep == 0 {
		return 1024
	}
	return u.Keep
}

func (u *Upstream) remember(r *Request) {
	if u.keep() < 0 {
		return
	}
	u.mu.Lock()
	if len(u.reqs) >= u.keep() {
		u.reqs = slices.Delete(u.reqs, 0, len(u.reqs)-u.keep()+1)
	}
	u.reqs = append(u.reqs, r)
	u.mu.Unlock()
}

func (u *Upstream) id(prefix string) string {
	return fmt.Sprintf("%s_01%022d", prefix, u.seq.Add(1))
}

// ServeHTTP answers one request.
func (u *Upstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	u.count.Add(1)
	body, _ := io.ReadAll(r.Body)
	rec := &Request{Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery}
	if u.keep() >= 0 {
		rec.Header, rec.Body = r.Header.Clone(), body
	}
	u.remember(rec)
	x := &exchange{u: u, w: w, r: r, rec: rec, record: u.keep() >= 0, reqID: u.id("req")}

	if u.HangBeforeHeaders {
		<-r.Context().Done()
		return
	}
	if u.APIKey != "" && (anthropic.Provider{}).Credential(r.Header) != u.APIKey {
		msg := "invalid x-api-key"
		if (anthropic.Provider{}).Credential(r.Header) == "" {
			msg = "x-api-key header is required"
		}
		x.fail(http.StatusUnauthorized, "", msg)
		return
	}
	switch {
	case r.URL.Path == "/v1/messages" && r.Method == http.MethodPost:
		x.messages(body)
	case r.URL.Path == "/v1/messages/count_tokens" && r.Method == http.MethodPost:
		x.countTokens(body)
	case r.URL.Path == "/v1/models" && r.Method == http.MethodGet:
		model := u.Model
		if model == "" {
			model = "claude-sonnet-4-5-20250929"
		}
		b := fmt.Appendf(nil, `{"data":[{"type":"model","id":%s,"display_name":"Scripted model","created_at":"2025-09-29T00:00:00Z"}],"has_more":false,"first_id":%s,"last_id":%s}`,
			appendString(nil, model), appendString(nil, model), appendString(nil, model))
		x.json(http.StatusOK, b)
	default:
		x.fail(http.StatusNotFound, "", "Not Found")
	}
}

// exchange is one request being answered.
type exchange struct {
	u      *Upstream
	w      http.ResponseWriter
	r      *http.Request
	rec    *Request
	record bool // keep the bytes sent in rec
	reqID  string
	events int
}

// request is what the upstream reads of a Messages API request.
type request struct {
	Model  *string `json:"model"`
	Stream bool    `json:"stream"`
	Tools  []struct {
		Type        string          `json:"type"`
		Name        string          `json:"name"`
		InputSchema json.RawMessage `json:"input_schema"`
	} `json:"tools"`
	ToolChoice struct {
		Type string `json:"type"`
		Name string `json:"name"`
	} `json:"tool_choice"`
	Messages []struct {
		Role    string          `json:"role"`
		Content json.RawMessage `json:"content"`
	} `json:"messages"`
}

func (x *exchange) parse(body []byte) (request, bool) {
	var req request
	if err := json.Unmarshal(body, &req); err != nil {
		x.fail(http.StatusBadRequest, "", "There was an issue with the format or content of your request: "+err.Error())
		return req, false
	}
	if req.Model == nil {
		x.fail(http.StatusBadRequest, "", "model: Field required")
		return req, false
	}
	return req, true
}

func (x *exchange) countTokens(body []byte) {
	if _, ok := x.parse(body); ok {
		x.json(http.StatusOK, fmt.Appendf(nil, `{"input_tokens":%d}`, x.inputTokens(body)))
	}
}

func (x *exchange) inputTokens(body []byte) int64 {
	if x.u.InputTokens > 0 {
		return x.u.InputTokens
	}
	return max(1, int64(len(body))/4)
}

// reply is the message the upstream answers with.
type reply struct {
	id, model, thinking, signature, text, stopReason string
	tools                                            []ToolCall
	input, cacheRead, cacheCreation, output          int64
}

func (x *exchange) messages(body []byte) {
	req, ok := x.parse(body)
	if !ok {
		return
	}
	x.rec.Stream = req.Stream
	u := x.u
	if u.Status != 0 && u.Status != http.StatusOK {
		x.fail(u.Status, u.ErrorType, u.ErrorMessage)
		return
	}
	m := reply{id: u.id("msg"), model: u.Model, thinking: u.Thinking, text: u.Text,
		input: x.inputTokens(body), cacheRead: u.CacheReadTokens, cacheCreation: u.CacheCreationTokens}
	if m.model == "" {
		m.model = *req.Model
	}
	if m.text == "" {
		m.text = DefaultText
	}
	if u.TextBytes > 0 {
		m.text = sized(m.text, u.TextBytes)
	}
	if m.thinking != "" {
		m.signature = "EqQBCgIYAhIM" + strings.TrimPrefix(m.id, "msg_")
	}
	m.tools = slices.Clone(u.ToolCalls)
	if len(m.tools) == 0 && !u.NoAutoToolUse {
		m.tools = autoToolUse(req)
	}
	size := len(m.text) + len(m.thinking)
	for i := range m.tools {
		if m.tools[i].ID == "" {
			m.tools[i].ID = u.id("toolu")
		}
		if m.tools[i].Input == "" {
			m.tools[i].Input = "{}"
		}
		size += len(m.tools[i].Input)
	}
	m.output = max(1, int64(size)/4)
	m.stopReason = u.StopReason
	if m.stopReason == "" {
		m.stopReason = "end_turn"
		if len(m.tools) > 0 {
			m.stopReason = "tool_use"
		}
	}
	if req.Stream {
		x.stream(&m)
		return
	}
	if !x.wait() {
		return
	}
	x.json(http.StatusOK, m.appendMessage(nil))
}

// autoToolUse returns the tool call a model would make to the tools a
// request offers.
func autoToolUse(req request) []ToolCall {
	if len(req.Tools) == 0 || req.ToolChoice.Type == "none" {
		return nil
	}
	if n := len(req.Messages); n > 0 && req.ToolChoice.Type != "any" && req.ToolChoice.Type != "tool" &&
		bytes.Contains(req.Messages[n-1].Content, []byte(`"tool_result"`)) {
		return nil
	}
	for _, t := range req.Tools {
		if t.Type != "" && t.Type != "custom" {
			continue // a server tool: Anthropic runs those
		}
		if req.ToolChoice.Type == "tool" && t.Name != req.ToolChoice.Name {
			continue
		}
		return []ToolCall{{Name: t.Name, Input: string(inputFor(t.InputSchema))}}
	}
	return nil
}

// inputFor makes an input that fits a tool's input_schema: each property
// with a value of its type.
func inputFor(schema json.RawMessage) []byte {
	var s struct {
		Properties map[string]struct {
			Type any               `json:"type"`
			Enum []json.RawMessage `json:"enum"`
		} `json:"properties"`
	}
	json.Unmarshal(schema, &s)
	names := make([]string, 0, len(s.Properties))
	for k := range s.Properties {
		names = append(names, k)
	}
	slices.Sort(names)
	b := []byte{'{'}
	for i, k := range names {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, k)
		b = append(b, ':')
		p := s.Properties[k]
		typ, _ := p.Type.(string)
		switch {
		case len(p.Enum) > 0 && json.Valid(p.Enum[0]):
			b = append(b, p.Enum[0]...)
		case typ == "string":
			b = appendString(b, "example "+k)
		case typ == "integer", typ == "number":
			b = append(b, '1')
		case typ == "boolean":
			b = append(b, "true"...)
		case typ == "array":
			b = append(b, "[]"...)
		case typ == "object":
			b = append(b, "{}"...)
		default:
			b = append(b, "null"...)
		}
	}
	return append(b, '}')
}

// sized returns text repeated and cut to n bytes, on a character boundary.
func sized(text string, n int) string {
	var b strings.Builder
	b.Grow(n + len(text))
	for b.Len() < n {
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(text)
	}
	return cut(b.String(), n)
}

// cut returns the longest prefix of s of at most n bytes that ends on a
// character boundary, or the first character if even that is longer.
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	i := n
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	if i == 0 {
		_, size := utf8.DecodeRuneInString(s)
		i = size
	}
	return s[:i]
}

// chunks splits s into pieces of at most n bytes, on character boundaries.
func chunks(s string, n int) []string {
	var out []string
	for len(s) > 0 {
		c := cut(s, n)
		out = append(out, c)
		s = s[len(c):]
	}
	return out
}

// appendUsage appends a usage object; for a message_delta (delta) without
// the cache breakdown and the service tier, as Anthropic sends it there.
func (m *reply) appendUsage(b []byte, output int64, delta bool) []byte {
	b = fmt.Appendf(b, `{"input_tokens":%d,"cache_creation_input_tokens":%d,"cache_read_input_tokens":%d,`, m.input, m.cacheCreation, m.cacheRead)
	if delta {
		return fmt.Appendf(b, `"output_tokens":%d}`, output)
	}
	return fmt.Appendf(b, `"cache_creation":{"ephemeral_5m_input_tokens":%d,"ephemeral_1h_input_tokens":0},"output_tokens":%d,"service_tier":"standard"}`, m.cacheCreation, output)
}

// appendHead appends the members a message starts with, up to "content":.
func (m *reply) appendHead(b []byte) []byte {
	b = append(b, `{"model":`...)
	b = appendString(b, m.model)
	b = append(b, `,"id":`...)
	b = appendString(b, m.id)
	return append(b, `,"type":"message","role":"assistant","content":`...)
}

// appendMessage appends the whole message, as a body that is not streamed.
func (m *reply) appendMessage(b []byte) []byte {
	b = append(m.appendHead(b), '[')
	if m.thinking != "" {
		b = append(b, `{"type":"thinking","thinking":`...)
		b = appendString(b, m.thinking)
		b = append(b, `,"signature":`...)
		b = appendString(b, m.signature)
		b = append(b, "},"...)
	}
	b = append(b, `{"type":"text","text":`...)
	b = appendString(b, m.text)
	b = append(b, '}')
	for _, t := range m.tools {
		b = append(b, `,{"type":"tool_use","id":`...)
		b = appendString(b, t.ID)
		b = append(b, `,"name":`...)
		b = appendString(b, t.Name)
		b = append(b, `,"input":`...)
		b = append(b, t.Input...)
		b = append(b, '}')
	}
	b = append(b, `],"stop_reason":`...)
	b = appendString(b, m.stopReason)
	b = append(b, `,"stop_sequence":null,"usage":`...)
	return append(m.appendUsage(b, m.output, false), '}')
}

// stream sends the message as Anthropic streams it.
func (x *exchange) stream(m *reply) {
	h := x.w.Header()
	h.Set("Content-Type", "text/event-stream; charset=utf-8")
	h.Set("Cache-Control", "no-cache")
	h.Set("request-id", x.reqID)
	x.header(http.StatusOK)
	chunk := x.u.ChunkBytes
	if chunk <= 0 {
		chunk = 16
	}

	b := append([]byte(`{"type":"message_start","message":`), m.appendHead(nil)...)
	b = append(b, `[],"stop_reason":null,"stop_sequence":null,"usage":`...)
	b = append(m.appendUsage(b, 1, false), "}}"...)
	if !x.event("message_start", b) {
		return
	}
	index := 0
	if m.thinking != "" {
		if !x.event("content_block_start", blockStart(index, `{"type":"thinking","thinking":"","signature":""}`)) {
			return
		}
		for _, c := range chunks(m.thinking, chunk) {
			if !x.event("content_block_delta", delta(index, "thinking_delta", "thinking", c)) {
				return
			}
		}
		if !x.event("content_block_delta", delta(index, "signature_delta", "signature", m.signature)) ||
			!x.event("content_block_stop", blockStop(index)) {
			return
		}
		index++
	}
	if !x.event("content_block_start", blockStart(index, `{"type":"text","text":""}`)) ||
		!x.event("ping", []byte(`{"type": "ping"}`)) {
		return
	}
	for _, c := range chunks(m.text, chunk) {
		if !x.event("content_block_delta", delta(index, "text_delta", "text", c)) {
			return
		}
	}
	if !x.event("content_block_stop", blockStop(index)) {
		return
	}
	for _, t := range m.tools {
		index++
		start := append([]byte(`{"type":"tool_use","id":`), appendString(nil, t.ID)...)
		start = append(start, `,"name":`...)
		start = append(appendString(start, t.Name), `,"input":{}}`...)
		if !x.event("content_block_start", blockStart(index, string(start))) ||
			!x.event("content_block_delta", delta(index, "input_json_delta", "partial_json", "")) {
			return
		}
		for _, c := range chunks(t.Input, chunk) {
			if !x.event("content_block_delta", delta(index, "input_json_delta", "partial_json", c)) {
				return
			}
		}
		if !x.event("content_block_stop", blockStop(index)) {
			return
		}
	}
	b = append([]byte(`{"type":"message_delta","delta":{"stop_reason":`), appendString(nil, m.stopReason)...)
	b = append(b, `,"stop_sequence":null},"usage":`...)
	b = append(m.appendUsage(b, m.output, true), '}')
	if !x.event("message_delta", b) {
		return
	}
	x.event("message_stop", []byte(`{"type":"message_stop"}`))
}

func blockStart(index int, block string) []byte {
	return fmt.Appendf(nil, `{"type":"content_block_start","index":%d,"content_block":%s}`, index, block)
}

func blockStop(index int) []byte {
	return fmt.Appendf(nil, `{"type":"content_block_stop","index":%d}`, index)
}

func delta(index int, typ, field, value string) []byte {
	b := fmt.Appendf(nil, `{"type":"content_block_delta","index":%d,"delta":{"type":"%s","%s":`, index, typ, field)
	return append(appendString(b, value), "}}"...)
}

// event sends one event, after the script's delay and faults; false means
// the stream is over.
func (x *exchange) event(name string, data []byte) bool {
	u := x.u
	switch x.events {
	case 0:
	case u.CloseAfterEvents:
		panic(http.ErrAbortHandler) // the server cuts the connection
	case u.HangAfterEvents:
		<-x.r.Context().Done()
		return false
	case u.ErrorAfterEvents:
		typ := u.ErrorType
		if typ == "" {
			typ = "overloaded_error"
		}
		msg := u.ErrorMessage
		if msg == "" {
			msg = "Overloaded"
		}
		x.send(x.appendEvent(nil, "error", x.errorBody(typ, msg)))
		return false
	}
	if !x.wait() {
		return false
	}
	return x.send(x.appendEvent(nil, name, data))
}

func (x *exchange) appendEvent(b []byte, name string, data []byte) []byte {
	b = append(b, "event: "...)
	b = append(b, name...)
	b = append(b, "\ndata: "...)
	b = append(b, data...)
	return append(b, "\n\n"...)
}

// wait waits the script's delay; false means the request was cancelled.
func (x *exchange) wait() bool {
	if x.u.EventDelay <= 0 {
		return x.r.Context().Err() == nil
	}
	t := time.NewTimer(x.u.EventDelay)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-x.r.Context().Done():
		return false
	}
}

// send writes b, recorded first, and flushes it.
func (x *exchange) send(b []byte) bool {
	x.events++
	if x.record {
		x.u.mu.Lock()
		x.rec.Sent = append(x.rec.Sent, b...)
		x.rec.Events = x.events
		x.u.mu.Unlock()
	}
	if _, err := x.w.Write(b); err != nil {
		return false
	}
	return http.NewResponseController(x.w).Flush() == nil
}

func (x *exchange) header(status int) {
	x.u.mu.Lock()
	x.rec.Status = status
	x.rec.ResponseHeader = x.w.Header().Clone()
	x.u.mu.Unlock()
	x.w.WriteHeader(status)
}

// json answers a JSON body.
func (x *exchange) json(status int, b []byte) {
	h := x.w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	h.Set("request-id", x.reqID)
	x.header(status)
	if x.record {
		x.u.mu.Lock()
		x.rec.Sent = append(x.rec.Sent, b...)
		x.u.mu.Unlock()
	}
	x.w.Write(b)
}

func (x *exchange) errorBody(typ, msg string) []byte {
	b := append([]byte(`{"type":"error","error":{"type":`), appendString(nil, typ)...)
	b = append(b, `,"message":`...)
	b = append(appendString(b, msg), `},"request_id":`...)
	return append(appendString(b, x.reqID), '}')
}

// fail answers an Anthropic error.
func (x *exchange) fail(status int, typ, msg string) {
	if typ == "" {
		typ = anthropic.ErrorType(status)
	}
	if msg == "" {
		msg = http.StatusText(status)
		if msg == "" {
			msg = "Overloaded"
		}
	}
	if status == http.StatusTooManyRequests || status == 529 {
		x.w.Header().Set("Retry-After", "1")
	}
	x.json(status, x.errorBody(typ, msg))
}

// appendString appends s as a JSON string as Anthropic writes one:
// quotes, backslashes and control characters escaped, everything else
// literal; invalid UTF-8 becomes U+FFFD.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < utf8.RuneSelf {
			i++
			continue
		}
		if c >= utf8.RuneSelf {
			r, size := utf8.DecodeRuneInString(s[i:])
			if r != utf8.RuneError || size != 1 {
				i += size
				continue
			}
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i++
			start = i
			continue
		}
		b = append(b, s[start:i]...)
		switch c {
		case '"', '\\':
			b = append(b, '\\', c)
		case '\n':
			b = append(b, `\n`...)
		case '\r':
			b = append(b, `\r`...)
		case '\t':
			b = append(b, `\t`...)
		default:
			b = fmt.Appendf(b, `\u%04x`, c)
		}
		i++
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
