// Package openaitest is a scripted OpenAI-compatible upstream for tests,
// benchmarks and demos: it speaks the wire format of api.openai.com
// (Chat Completions, streamed or not, with parallel tool calls and usage
// chunks; the Responses API and its event stream; embeddings; the model
// list; errors), and can misbehave on cue.
package openaitest

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Upstream answers like api.openai.com, as its fields script. Set the
// fields before serving; it is safe for concurrent use after that.
type Upstream struct {
	// Model is the model that answers; default: the requested one.
	Model string
	// Text is the reply (default "Hello! This is a scripted reply.").
	Text string
	// ToolCalls, if set, are requested instead of a text reply.
	ToolCalls []ToolCall
	// SystemFingerprint is reported in chat completions (default "fp_scripted").
	SystemFingerprint string
	// ChunkBytes is the text per streamed delta (default 16).
	ChunkBytes int
	// EventDelay is the pause before each streamed event after the first,
	// as a model takes time per token.
	EventDelay time.Duration
	// Status, if set, answers every request with this status and an
	// OpenAI error whose message is ErrorMessage.
	Status       int
	ErrorMessage string
	// CloseAfterEvents, if set, breaks the connection after that many events.
	CloseAfterEvents int
	// HangAfterEvents, if set, stops after that many events until the
	// request is cancelled; with HangBeforeHeaders it sends nothing at all.
	HangAfterEvents   int
	HangBeforeHeaders bool
	// APIKey, if set, is the key callers must present; others get 401.
	APIKey string
	// Keep is how many requests Requests remembers (default 1024; negative:
	// none, for benchmarks).
	Keep int

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
	Header       http.Header
	Body         []byte
	Status       int
	Sent         []byte // every byte of the response body, in order
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

// Count returns the number of requests served.
func (u *Upstream) Count() int { return int(u.seq.Load()) }

// Last returns the latest request.
func (u *Upstream) Last() (Request, bool) {
	rs := u.Requests()
	if len(rs) == 0 {
		return Request{}, false
	}
	return rs[len(rs)-1], true
}

// ReplyOfSize returns a reply text of n bytes.
func ReplyOfSize(n int) string {
	const s = "The quick brown fox jumps over the lazy dog. "
	return strings.Repeat(s, n/len(s)+1)[:n]
}

const created = 1764115200

func (u *Upstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	n := u.seq.Add(1)
	x := &exchange{u: u, w: w, r: r, n: n, rec: &Request{Method: r.Method, Path: r.URL.Path, Header: r.Header.Clone(), Body: body}}
	u.remember(x.rec)
	if u.HangBeforeHeaders {
		<-r.Context().Done()
		return
	}
	if u.APIKey != "" && r.Header.Get("Authorization") != "Bearer "+u.APIKey && r.Header.Get("api-key") != u.APIKey {
		x.error(http.StatusUnauthorized, "invalid_request_error", "invalid_api_key", "Incorrect API key provided.")
		return
	}
	if u.Status != 0 {
		x.error(u.Status, errorType(u.Status), "", u.ErrorMessage)
		return
	}
	var req struct {
		Model         string `json:"model"`
		Stream        bool   `json:"stream"`
		StreamOptions struct {
			IncludeUsage bool `json:"include_usage"`
		} `json:"stream_options"`
		Input json.RawMessage `json:"input"`
	}
	if r.Method == http.MethodPost && json.Unmarshal(body, &req) != nil {
		x.error(http.StatusBadRequest, "invalid_request_error", "", "We could not parse the JSON body of your request.")
		return
	}
	x.model = u.Model
	if x.model == "" {
		x.model = req.Model
	}
	switch {
	case r.Method == http.MethodPost && r.URL.Path == "/v1/chat/completions":
		if req.Stream {
			x.chatStream(req.StreamOptions.IncludeUsage)
		} else {
			x.json(x.chatCompletion())
		}
	case r.Method == http.MethodPost && r.URL.Path == "/v1/responses":
		if req.Stream {
			x.responsesStream()
		} else {
			x.json(x.response("completed", true))
		}
	case r.Method == http.MethodPost && r.URL.Path == "/v1/embeddings":
		x.json(x.embeddings(body))
	case r.Method == http.MethodGet && r.URL.Path == "/v1/models":
		x.json(map[string]any{"object": "list", "data": []any{
			map[string]any{"id": "gpt-scripted", "object": "model", "created": created, "owned_by": "infertrail-test"},
		}})
	default:
		x.error(http.StatusNotFound, "invalid_request_error", "unknown_url", fmt.Sprintf("Invalid URL (%s %s)", r.Method, r.URL.Path))
	}
}

func (u *Upstream) remember(r *Request) {
	keep := u.Keep
	if keep == 0 {
		keep = 1024
	}
	if keep < 0 {
		return
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	u.reqs = append(u.reqs, r)
	if len(u.reqs) > keep {
		u.reqs = u.reqs[len(u.reqs)-keep:]
	}
}

func errorType(status int) string {
	switch {
	case status == http.StatusTooManyRequests:
		return "rate_limit_error"
	case status >= 500:
		return "server_error"
	}
	return "invalid_request_error"
}

// exchange is one request being answered.
type exchange struct {
	u      *Upstream
	w      http.ResponseWriter
	r      *http.Request
	n      int64
	rec    *Request
	model  string
	events int
	dead   bool
}

func (x *exchange) write(b []byte) {
	x.u.mu.Lock()
	x.rec.Sent = append(x.rec.Sent, b...)
	x.u.mu.Unlock()
	x.w.Write(b)
}

func (x *exchange) json(v any) {
	b, _ := json.Marshal(v)
	h := x.w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("x-request-id", fmt.Sprintf("req_%024d", x.n))
	h.Set("openai-processing-ms", "1")
	x.rec.Status = http.StatusOK
	x.write(b)
}

func (x *exchange) error(status int, typ, code, msg string) {
	e := map[string]any{"message": msg, "type": typ, "param": nil, "code": nil}
	if code != "" {
		e["code"] = code
	}
	b, _ := json.Marshal(map[string]any{"error": e})
	x.w.Header().Set("Content-Type", "application/json")
	x.w.Header().Set("x-request-id", fmt.Sprintf("req_%024d", x.n))
	x.rec.Status = status
	x.w.WriteHeader(status)
	x.write(b)
}

func (x *exchange) text() string {
	if x.u.Text != "" {
		return x.u.Text
	}
	return "Hello! This is a scripted reply."
}

func (x *exchange) fingerprint() string {
	if x.u.SystemFingerprint != "" {
		return x.u.SystemFingerprint
	}
	return "fp_scripted"
}

func (x *exchange) toolCalls() []ToolCall {
	out := make([]ToolCall, len(x.u.ToolCalls))
	for i, tc := range x.u.ToolCalls {
		if tc.ID == "" {
			tc.ID = fmt.Sprintf("call_%d_%d", x.n, i)
		}
		if tc.Arguments == "" {
			tc.Arguments = "{}"
		}
		out[i] = tc
	}
	return out
}

func (x *exchange) chunks(s string) []string {
	n := x.u.ChunkBytes
	if n <= 0 {
		n = 16
	}
	var out []string
	for len(s) > n {
		out = append(out, s[:n])
		s = s[n:]
	}
	return append(out, s)
}

func tokens(s string) int { return len(s)/4 + 1 }

func (x *exchange) usage(chat bool) map[string]any {
	in, out := len(x.rec.Body)/4+1, tokens(x.text())
	if chat {
		return map[string]any{"prompt_tokens": in, "completion_tokens": out, "total_tokens": in + out,
			"prompt_tokens_details":     map[string]any{"cached_tokens": 0, "audio_tokens": 0},
			"completion_tokens_details": map[string]any{"reasoning_tokens": 0, "audio_tokens": 0, "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}}
	}
	return map[string]any{"input_tokens": in, "output_tokens": out, "total_tokens": in + out,
		"input_tokens_details": map[string]any{"cached_tokens": 0}, "output_tokens_details": map[string]any{"reasoning_tokens": 0}}
}

func (x *exchange) chatCompletion() map[string]any {
	msg := map[string]any{"role": "assistant", "content": x.text(), "refusal": nil, "annotations": []any{}}
	finish := "stop"
	if tcs := x.toolCalls(); len(tcs) > 0 {
		var list []any
		for _, tc := range tcs {
			list = append(list, map[string]any{"id": tc.ID, "type": "function", "function": map[string]any{"name": tc.Name, "arguments": tc.Arguments}})
		}
		msg["content"], msg["tool_calls"], finish = nil, list, "tool_calls"
	}
	return map[string]any{"id": fmt.Sprintf("chatcmpl-%d", x.n), "object": "chat.completion", "created": created, "model": x.model,
		"choices":      []any{map[string]any{"index": 0, "message": msg, "logprobs": nil, "finish_reason": finish}},
		"usage":        x.usage(true),
		"service_tier": "default", "system_fingerprint": x.fingerprint()}
}

// event sends one server-sent event, honouring the scripted faults; it
// reports false once the stream must stop.
func (x *exchange) event(name string, v any) bool {
	if x.dead {
		return false
	}
	if x.u.CloseAfterEvents > 0 && x.events == x.u.CloseAfterEvents {
		x.dead = true
		panic(http.ErrAbortHandler)
	}
	if x.u.HangAfterEvents > 0 && x.events == x.u.HangAfterEvents {
		x.dead = true
		<-x.r.Context().Done()
		return false
	}
	if x.events > 0 && x.u.EventDelay > 0 {
		time.Sleep(x.u.EventDelay)
	}
	var b bytes.Buffer
	if name != "" {
		b.WriteString("event: " + name + "\n")
	}
	b.WriteString("data: ")
	if s, ok := v.(string); ok {
		b.WriteString(s)
	} else {
		j, _ := json.Marshal(v)
		b.Write(j)
	}
	b.WriteString("\n\n")
	x.write(b.Bytes())
	x.w.(http.Flusher).Flush()
	x.events++
	return x.r.Context().Err() == nil
}

func (x *exchange) streamHeaders() {
	h := x.w.Header()
	h.Set("Content-Type", "text/event-stream; charset=utf-8")
	h.Set("Cache-Control", "no-cache")
	h.Set("x-request-id", fmt.Sprintf("req_%024d", x.n))
	x.rec.Status = http.StatusOK
	x.w.WriteHeader(http.StatusOK)
}

func (x *exchange) chatStream(includeUsage bool) {
	x.streamHeaders()
	id := fmt.Sprintf("chatcmpl-%d", x.n)
	chunk := func(delta map[string]any, finish any) map[string]any {
		c := map[string]any{"id": id, "object": "chat.completion.chunk", "created": created, "model": x.model,
			"service_tier": "default", "system_fingerprint": x.fingerprint(),
			"choices": []any{map[string]any{"index": 0, "delta": delta, "logprobs": nil, "finish_reason": finish}}}
		if includeUsage {
			c["usage"] = nil
		}
		return c
	}
	tcs := x.toolCalls()
	first := map[string]any{"role": "assistant", "content": "", "refusal": nil}
	if len(tcs) > 0 {
		first["content"] = nil
	}
	if !x.event("", chunk(first, nil)) {
		return
	}
	finish := "stop"
	if len(tcs) == 0 {
		for _, c := range x.chunks(x.text()) {
			if !x.event("", chunk(map[string]any{"content": c}, nil)) {
				return
			}
		}
	} else {
		finish = "tool_calls"
		for i, tc := range tcs {
			head := map[string]any{"index": i, "id": tc.ID, "type": "function", "function": map[string]any{"name": tc.Name, "arguments": ""}}
			if !x.event("", chunk(map[string]any{"tool_calls": []any{head}}, nil)) {
				return
			}
			for _, a := range x.chunks(tc.Arguments) {
				frag := map[string]any{"index": i, "function": map[string]any{"arguments": a}}
				if !x.event("", chunk(map[string]any{"tool_calls": []any{frag}}, nil)) {
					return
				}
			}
		}
	}
	if !x.event("", chunk(map[string]any{}, finish)) {
		return
	}
	if includeUsage {
		u := map[string]any{"id": id, "object": "chat.completion.chunk", "created": created, "model": x.model,
			"service_tier": "default", "system_fingerprint": x.fingerprint(), "choices": []any{}, "usage": x.usage(true)}
		if !x.event("", u) {
			return
		}
	}
	x.event("", "[DONE]")
}

// response builds a Responses API response object.
func (x *exchange) response(status string, withOutput bool) map[string]any {
	output := []any{}
	if withOutput {
		output = x.outputItems(true)
	}
	r := map[string]any{"id": fmt.Sprintf("resp_%d", x.n), "object": "response", "created_at": created, "status": status,
		"error": nil, "incomplete_details": nil, "instructions": nil, "max_output_tokens": nil, "model": x.model,
		"output": output, "parallel_tool_calls": true, "previous_response_id": nil, "store": true,
		"temperature": 1.0, "text": map[string]any{"format": map[string]any{"type": "text"}}, "tool_choice": "auto",
		"tools": []any{}, "top_p": 1.0, "truncation": "disabled", "usage": nil, "user": nil, "metadata": map[string]any{}}
	if withOutput {
		r["usage"] = x.usage(false)
	}
	return r
}

func (x *exchange) outputItems(done bool) []any {
	status := "completed"
	if !done {
		status = "in_progress"
	}
	if tcs := x.toolCalls(); len(tcs) > 0 {
		var out []any
		for i, tc := range tcs {
			args := tc.Arguments
			if !done {
				args = ""
			}
			out = append(out, map[string]any{"id": fmt.Sprintf("fc_%d_%d", x.n, i), "type": "function_call", "status": status,
				"arguments": args, "call_id": tc.ID, "name": tc.Name})
		}
		return out
	}
	content := []any{}
	if done {
		content = []any{map[string]any{"type": "output_text", "text": x.text(), "annotations": []any{}, "logprobs": []any{}}}
	}
	return []any{map[string]any{"id": fmt.Sprintf("msg_%d", x.n), "type": "message", "status": status, "role": "assistant", "content": content}}
}

func (x *exchange) responsesStream() {
	x.streamHeaders()
	seq := 0
	send := func(typ string, fields map[string]any) bool {
		fields["type"], fields["sequence_number"] = typ, seq
		seq++
		return x.event(typ, fields)
	}
	if !send("response.created", map[string]any{"response": x.response("in_progress", false)}) ||
		!send("response.in_progress", map[string]any{"response": x.response("in_progress", false)}) {
		return
	}
	added, done := x.outputItems(false), x.outputItems(true)
	for i := range added {
		item := added[i].(map[string]any)
		itemID := item["id"]
		if !send("response.output_item.added", map[string]any{"output_index": i, "item": item}) {
			return
		}
		if item["type"] == "function_call" {
			args := done[i].(map[string]any)["arguments"].(string)
			for _, a := range x.chunks(args) {
				if !send("response.function_call_arguments.delta", map[string]any{"item_id": itemID, "output_index": i, "delta": a}) {
					return
				}
			}
			if !send("response.function_call_arguments.done", map[string]any{"item_id": itemID, "output_index": i, "arguments": args}) {
				return
			}
		} else {
			part := map[string]any{"type": "output_text", "annotations": []any{}, "logprobs": []any{}, "text": ""}
			if !send("response.content_part.added", map[string]any{"item_id": itemID, "output_index": i, "content_index": 0, "part": part}) {
				return
			}
			for _, c := range x.chunks(x.text()) {
				if !send("response.output_text.delta", map[string]any{"item_id": itemID, "output_index": i, "content_index": 0, "delta": c, "logprobs": []any{}}) {
					return
				}
			}
			if !send("response.output_text.done", map[string]any{"item_id": itemID, "output_index": i, "content_index": 0, "text": x.text(), "logprobs": []any{}}) {
				return
			}
			full := map[string]any{"type": "output_text", "annotations": []any{}, "logprobs": []any{}, "text": x.text()}
			if !send("response.content_part.done", map[string]any{"item_id": itemID, "output_index": i, "content_index": 0, "part": full}) {
				return
			}
		}
		if !send("response.output_item.done", map[string]any{"output_index": i, "item": done[i]}) {
			return
		}
	}
	send("response.completed", map[string]any{"response": x.response("completed", true)})
}

func (x *exchange) embeddings(body []byte) map[string]any {
	var req struct {
		Input          json.RawMessage `json:"input"`
		EncodingFormat string          `json:"encoding_format"`
	}
	json.Unmarshal(body, &req)
	inputs := 1
	var list []json.RawMessage
	if json.Unmarshal(req.Input, &list) == nil && len(list) > 0 {
		inputs = len(list)
	}
	var data []any
	for i := range inputs {
		vec := make([]float32, 8)
		for j := range vec {
			vec[j] = float32(math.Sin(float64(i*8 + j + 1)))
		}
		var emb any = vec
		if req.EncodingFormat == "base64" {
			b := make([]byte, 4*len(vec))
			for j, f := range vec {
				binary.LittleEndian.PutUint32(b[4*j:], math.Float32bits(f))
			}
			emb = base64.StdEncoding.EncodeToString(b)
		}
		data = append(data, map[string]any{"object": "embedding", "index": i, "embedding": emb})
	}
	in := len(req.Input)/4 + 1
	return map[string]any{"object": "list", "data": data, "model": x.model, "usage": map[string]any{"prompt_tokens": in, "total_tokens": in}}
}
