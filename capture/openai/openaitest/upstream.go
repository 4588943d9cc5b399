// Package openaitest is a scripted OpenAI-compatible upstream for tests,
// benchmarks and demos: it speaks the wire format of api.openai.com
// (Chat Completions, streamed or not, with parallel tool calls and usage
// chunks; the Responses API and its event stream; embeddings; the model
// list; errors), and can misbehave on cue.
package openaitest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"
)

// DefaultText is the reply of an Upstream whose Text is unset.
const DefaultText = "Hello! This is a scripted reply."

// DefaultModel is the model the model list names when Model is unset.
const DefaultModel = "gpt-scripted"

// Created is the creation time every object reports, in Unix seconds.
const Created = 1764115200

// Upstream answers like api.openai.com, as its fields script. Set the
// fields before serving; it is safe for concurrent use after that. Its
// zero value answers every endpoint with DefaultText and no faults.
type Upstream struct {
	// Model is the model that answers; default: the requested one.
	Model string
	// Text is the reply (default DefaultText).
	Text string
	// ToolCalls, if set, are requested instead of a text reply, in
	// parallel: several calls in one response.
	ToolCalls []ToolCall
	// CallTools, if set and ToolCalls is not, requests a call of every
	// function the request offers, with arguments "{}".
	CallTools bool
	// SystemFingerprint is reported in chat completions (default "fp_scripted").
	SystemFingerprint string
	// InputTokens is the reported prompt size (default: a quarter of the
	// request body's bytes). CachedTokens and ReasoningTokens are
	// reported in the usage details.
	InputTokens, CachedTokens, ReasoningTokens int
	// ChunkBytes is the text per streamed delta (default 16); a delta
	// never splits a UTF-8 character.
	ChunkBytes int
	// EventDelay is the pause before each streamed event after the first,
	// as a model takes time per token.
	EventDelay time.Duration

	// Status, if set, answers every request with this status and an
	// OpenAI error: ErrorMessage, and ErrorType and ErrorCode (defaults:
	// those OpenAI gives for the status).
	Status                             int
	ErrorMessage, ErrorType, ErrorCode string
	// ErrorAfterEvents, if set, ends a stream after that many events with
	// an error: a chunk holding an error object for chat completions, a
	// response.failed event for the Responses API.
	ErrorAfterEvents int
	// CloseAfterEvents, if set, breaks the connection after that many
	// stream events, as a crashed upstream does.
	CloseAfterEvents int
	// HangAfterEvents, if set, stops a stream after that many events
	// until the request is cancelled; HangBeforeHeaders does so before
	// sending anything at all.
	HangAfterEvents   int
	HangBeforeHeaders bool
	// APIKey, if set, is the key callers must present (as a bearer token
	// or in an api-key header); others get 401.
	APIKey string
	// Keep is how many requests Requests remembers (default 1024; negative:
	// none, and no copy of what was sent, for benchmarks).
	Keep int

	once   sync.Once
	script script

	seq  atomic.Int64
	mu   sync.Mutex
	reqs []*Request
}

// ToolCall is a tool call the scripted model requests.
type ToolCall struct {
	ID        string // default: a new call_ id
	Name      string
	Arguments string // JSON text; default "{}"
}

// Request is one request as the upstream received and answered it.
type Request struct {
	Method, Path string
	Header       http.Header // as received: Authorization, traceparent, …
	Body         []byte
	Status       int
	Sent         []byte // every byte of the response body, in order
}

// script is what an Upstream's fields make of every answer, computed once.
type script struct {
	text        string
	textJSON    json.RawMessage
	chunksJSON  []json.RawMessage // the text's deltas as JSON strings
	fingerprint string
	chunkBytes  int
	keep        int
}

func (u *Upstream) init() {
	u.once.Do(func() {
		s := &u.script
		s.text = u.Text
		if s.text == "" {
			s.text = DefaultText
		}
		s.textJSON, _ = json.Marshal(s.text)
		s.chunkBytes = u.ChunkBytes
		if s.chunkBytes <= 0 {
			s.chunkBytes = 16
		}
		for _, c := range split(s.text, s.chunkBytes) {
			j, _ := json.Marshal(c)
			s.chunksJSON = append(s.chunksJSON, j)
		}
		s.fingerprint = u.SystemFingerprint
		if s.fingerprint == "" {
			s.fingerprint = "fp_scripted"
		}
		s.keep = u.Keep
		if s.keep == 0 {
			s.keep = 1024
		}
	})
}

// split cuts s into pieces of at most n bytes (more if n is smaller than
// a character), never inside a UTF-8 character.
func split(s string, n int) []string {
	var out []string
	for len(s) > n {
		i := n
		for i > 0 && !utf8.RuneStart(s[i]) {
			i--
		}
		if i == 0 {
			_, i = utf8.DecodeRuneInString(s)
		}
		out = append(out, s[:i])
		s = s[i:]
	}
	return append(out, s)
}

// Requests returns the remembered requests, oldest first.
func (u *Upstream) Requests() []Request {
	u.mu.Lock()
	defer u.mu.Unlock()
	out := make([]Request, len(u.reqs))
	for i, r := range u.reqs {
		out[i] = *r
		out[i].Sent = bytes.Clone(r.Sent)
	}
	return out
}

// Count returns the number of requests received.
func (u *Upstream) Count() int { return int(u.seq.Load()) }

// Last returns the latest request.
func (u *Upstream) Last() (Request, bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.reqs) == 0 {
		return Request{}, false
	}
	r := *u.reqs[len(u.reqs)-1]
	r.Sent = bytes.Clone(r.Sent)
	return r, true
}

// BenchmarkScript is the upstream of the gateway's latency benchmarks (the
// in-process ones and infertrail bench gateway): a 2 KiB chat completion,
// or with stream 1,800 bytes of text in 200-byte deltas, one every
// millisecond, as a model produces tokens over time.
func BenchmarkScript(stream bool) *Upstream {
	u := &Upstream{Text: ReplyOfSize(1800), Keep: -1}
	if stream {
		u.ChunkBytes, u.EventDelay = 200, time.Millisecond
	}
	return u
}

// BenchmarkRequest is the chat completion request the gateway's latency
// benchmarks send, streamed or not.
func BenchmarkRequest(stream bool) string {
	if stream {
		return `{"model":"gpt-bench","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"Say something about foxes, at some length please."}],"temperature":0.2,"max_tokens":512}`
	}
	return `{"model":"gpt-bench","messages":[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"Say something about foxes, at some length please."}],"temperature":0.2,"max_tokens":512}`
}

// ReplyOfSize returns a reply text of n bytes.
func ReplyOfSize(n int) string {
	const s = "The quick brown fox jumps over the lazy dog. "
	return strings.Repeat(s, n/len(s)+1)[:n]
}

// ServeHTTP answers one request as the fields script and records it.
func (u *Upstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	u.init()
	body, _ := io.ReadAll(r.Body)
	n := u.seq.Add(1)
	x := &exchange{u: u, s: &u.script, w: w, r: r, n: n, rec: &Request{Method: r.Method, Path: r.URL.Path, Header: r.Header.Clone(), Body: body}}
	u.remember(x.rec)
	if u.HangBeforeHeaders {
		<-r.Context().Done()
		return
	}
	if u.APIKey != "" {
		switch key := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "); {
		case key == u.APIKey || r.Header.Get("api-key") == u.APIKey:
		case key == "" && r.Header.Get("api-key") == "":
			x.error(http.StatusUnauthorized, "invalid_request_error", "", "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).")
			return
		default:
			x.error(http.StatusUnauthorized, "invalid_request_error", "invalid_api_key", "Incorrect API key provided: "+redact(key)+". You can find your API key at https://platform.openai.com/account/api-keys.")
			return
		}
	}
	if u.Status != 0 {
		typ, code := u.ErrorType, u.ErrorCode
		if typ == "" {
			typ, code = errorType(u.Status, code)
		}
		x.error(u.Status, typ, code, u.ErrorMessage)
		return
	}
	route := r.Method + " " + r.URL.Path
	switch route {
	case "POST /v1/chat/completions", "POST /v1/responses", "POST /v1/embeddings", "GET /v1/models":
	default:
		x.error(http.StatusNotFound, "invalid_request_error", "unknown_url",
			fmt.Sprintf("Unknown request URL: %s. Please check the URL for typos, or see the docs at https://platform.openai.com/docs/api-reference/.", route))
		return
	}
	var req request
	if r.Method == http.MethodPost {
		if json.Unmarshal(body, &req) != nil {
			x.error(http.StatusBadRequest, "invalid_request_error", "", "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON.)")
			return
		}
		if req.Model == "" {
			x.error(http.StatusBadRequest, "invalid_request_error", "", "you must provide a model parameter")
			return
		}
	}
	x.model = u.Model
	if x.model == "" {
		x.model = req.Model
	}
	x.tools = u.toolCalls(n, &req)
	switch route {
	case "POST /v1/chat/completions":
		if req.Stream {
			x.chatStream(req.StreamOptions.IncludeUsage)
		} else {
			x.json(x.chatCompletion())
		}
	case "POST /v1/responses":
		if req.Stream {
			x.responsesStream()
		} else {
			x.json(x.response("completed", true))
		}
	case "POST /v1/embeddings":
		x.json(x.embeddings(&req))
	case "GET /v1/models":
		x.json(u.models())
	}
}

// request is what the upstream reads of a request body.
type request struct {
	Model         string `json:"model"`
	Stream        bool   `json:"stream"`
	StreamOptions struct {
		IncludeUsage bool `json:"include_usage"`
	} `json:"stream_options"`
	Tools []struct {
		Type     string `json:"type"`
		Name     string `json:"name"` // the Responses API's shape
		Function struct {
			Name string `json:"name"`
		} `json:"function"` // Chat Completions'
	} `json:"tools"`
	Input          json.RawMessage `json:"input"`
	EncodingFormat string          `json:"encoding_format"`
	Dimensions     int             `json:"dimensions"`
}

func redact(key string) string {
	if len(key) <= 8 {
		return "sk-****"
	}
	return key[:3] + strings.Repeat("*", 8) + key[len(key)-4:]
}

func (u *Upstream) remember(r *Request) {
	if u.script.keep < 0 {
		return
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	u.reqs = append(u.reqs, r)
	if len(u.reqs) > u.script.keep {
		u.reqs = u.reqs[len(u.reqs)-u.script.keep:]
	}
}

// errorType returns the error type and code OpenAI answers a status with.
func errorType(status int, code string) (string, string) {
	switch {
	case status == http.StatusTooManyRequests:
		if code == "" {
			code = "rate_limit_exceeded"
		}
		return "requests", code
	case status >= 500:
		return "server_error", code
	}
	return "invalid_request_error", code
}

// toolCalls returns the calls a request gets, with their ids and
// arguments filled in.
func (u *Upstream) toolCalls(n int64, req *request) []ToolCall {
	calls := u.ToolCalls
	if len(calls) == 0 && u.CallTools {
		for _, t := range req.Tools {
			name := t.Function.Name
			if name == "" {
				name = t.Name
			}
			if name != "" {
				calls = append(calls, ToolCall{Name: name})
			}
		}
	}
	if len(calls) == 0 {
		return nil
	}
	out := make([]ToolCall, len(calls))
	for i, tc := range calls {
		if tc.ID == "" {
			tc.ID = fmt.Sprintf("call_%d_%d", n, i)
		}
		if tc.Arguments == "" {
			tc.Arguments = "{}"
		}
		out[i] = tc
	}
	return out
}

func (u *Upstream) models() modelList {
	list := modelList{Object: "list", Data: []model{{ID: DefaultModel, Object: "model", Created: Created, OwnedBy: "system"}}}
	if u.Model != "" && u.Model != DefaultModel {
		list.Data = append(list.Data, model{ID: u.Model, Object: "model", Created: Created, OwnedBy: "system"})
	}
	return list
}

// exchange is one request being answered.
type exchange struct {
	u      *Upstream
	s      *script
	w      http.ResponseWriter
	r      *http.Request
	n      int64
	rec    *Request
	model  string
	tools  []ToolCall
	events int
}

func (x *exchange) write(b []byte) {
	if x.s.keep >= 0 {
		x.u.mu.Lock()
		x.rec.Sent = append(x.rec.Sent, b...)
		x.u.mu.Unlock()
	}
	x.w.Write(b)
}

func (x *exchange) headers(status int, contentType string) {
	h := x.w.Header()
	h.Set("Content-Type", contentType)
	h.Set("x-request-id", fmt.Sprintf("req_%032x", x.n))
	h.Set("openai-version", "2020-10-01")
	h.Set("openai-processing-ms", "1")
	x.rec.Status = status
	x.w.WriteHeader(status)
}

func (x *exchange) json(v any) {
	b, _ := json.Marshal(v)
	x.headers(http.StatusOK, "application/json")
	x.write(b)
}

func (x *exchange) error(status int, typ, code, msg string) {
	b, _ := json.Marshal(errorBody{Error: errorObject{Message: msg, Type: typ, Code: nullable(code)}})
	x.headers(status, "application/json")
	x.write(b)
}

// nullable returns s as a JSON string, or null if it is empty.
func nullable(s string) json.RawMessage {
	if s == "" {
		return nil
	}
	b, _ := json.Marshal(s)
	return b
}

type errorBody struct {
	Error errorObject `json:"error"`
}

type errorObject struct {
	Message string          `json:"message"`
	Type    string          `json:"type"`
	Param   json.RawMessage `json:"param"`
	Code    json.RawMessage `json:"code"`
}

// streamEnd reports whether the stream must stop before its next event,
// doing what the script says there: break the connection, hang, or send
// an error (through fail).
func (x *exchange) streamEnd(fail func()) bool {
	u := x.u
	switch {
	case x.r.Context().Err() != nil:
		return true
	case u.CloseAfterEvents > 0 && x.events == u.CloseAfterEvents:
		panic(http.ErrAbortHandler) // the server closes the connection mid-response
	case u.HangAfterEvents > 0 && x.events == u.HangAfterEvents:
		<-x.r.Context().Done()
		return true
	case u.ErrorAfterEvents > 0 && x.events == u.ErrorAfterEvents:
		fail() // one last event
		return true
	}
	if x.events > 0 && u.EventDelay > 0 {
		t := time.NewTimer(u.EventDelay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-x.r.Context().Done():
			return true
		}
	}
	return false
}

// send writes one server-sent event and flushes it.
func (x *exchange) send(name string, data []byte) {
	var b bytes.Buffer
	b.Grow(len(name) + len(data) + 16)
	if name != "" {
		b.WriteString("event: ")
		b.WriteString(name)
		b.WriteByte('\n')
	}
	b.WriteString("data: ")
	b.Write(data)
	b.WriteString("\n\n")
	x.write(b.Bytes())
	x.w.(http.Flusher).Flush()
	x.events++
}

func (x *exchange) streamHeaders() {
	x.w.Header().Set("Cache-Control", "no-cache")
	x.headers(http.StatusOK, "text/event-stream; charset=utf-8")
}

func (x *exchange) inputTokens() int {
	if x.u.InputTokens > 0 {
		return x.u.InputTokens
	}
	return len(x.rec.Body)/4 + 1
}

func (x *exchange) outputTokens() int {
	n := len(x.s.text)
	if len(x.tools) > 0 {
		n = 0
		for _, tc := range x.tools {
			n += len(tc.Name) + len(tc.Arguments)
		}
	}
	return n/4 + 1 + x.u.ReasoningTokens
}
