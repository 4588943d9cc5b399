package openai

import (
	"bytes"
	"encoding/json"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/infertrail/infertrail"
	"github.com/infertrail/infertrail/capture/gateway"
)

// Usage attribute names, from the OpenTelemetry GenAI conventions.
const (
	usageInput       = "gen_ai.usage.input_tokens"
	usageOutput      = "gen_ai.usage.output_tokens"
	usageCacheRead   = "gen_ai.usage.cache_read.input_tokens"
	usageReasoning   = "gen_ai.usage.reasoning.output_tokens"
	attrMalformed    = "infertrail.response.malformed_events"
	attrServiceTier  = "openai.response.service_tier"
	attrResponseStat = "openai.response.status"
)

// usage is both shapes of OpenAI's usage object: Chat Completions'
// prompt/completion tokens and the Responses API's input/output tokens.
// usageMap maps a usage object to gen_ai.usage.* attributes; nil if none.
// The Chat Completions names (prompt_tokens, completion_tokens and their
// details) win over the Responses API's (input_tokens, output_tokens) when
// an object has both. A member that is not an integer is left out.
func usageMap(raw json.RawMessage) map[string]int64 {
	obj, err := infertrail.Canonicalize(raw)
	if err != nil {
		return nil
	}
	return canonicalUsage(obj)
}

// canonicalUsage is usageMap of a usage object already in canonical form.
func canonicalUsage(obj []byte) map[string]int64 {
	// By attribute: the value under the Chat Completions name, then under
	// the Responses API's.
	var found [4][2]*int64
	attrs := [4]string{usageInput, usageOutput, usageCacheRead, usageReasoning}
	set := func(attr, api int, v []byte) {
		if n, err := strconv.ParseInt(string(v), 10, 64); err == nil {
			found[attr][api] = &n
		}
	}
	details := func(attr, api int, v []byte, name string) {
		for k, v := range infertrail.ObjectMembers(v) {
			if string(k) == name {
				set(attr, api, v)
			}
		}
	}
	for k, v := range infertrail.ObjectMembers(obj) {
		switch string(k) {
		case "prompt_tokens":
			set(0, 0, v)
		case "input_tokens":
			set(0, 1, v)
		case "completion_tokens":
			set(1, 0, v)
		case "output_tokens":
			set(1, 1, v)
		case "prompt_tokens_details":
			details(2, 0, v, "cached_tokens")
		case "input_tokens_details":
			details(2, 1, v, "cached_tokens")
		case "completion_tokens_details":
			details(3, 0, v, "reasoning_tokens")
		case "output_tokens_details":
			details(3, 1, v, "reasoning_tokens")
		}
	}
	var m map[string]int64
	for i, f := range found {
		for _, v := range f {
			if v != nil {
				if m == nil {
					m = map[string]int64{}
				}
				m[attrs[i]] = *v
				break
			}
		}
	}
	return m
}

// bodyValue returns a body as a JSON value (gateway.BodyValue).
func bodyValue(b []byte) json.RawMessage {
	v, _ := gateway.BodyValue(b)
	return v
}

// errorObject returns the "error" member of an error body, if it has one.
func errorObject(b []byte) json.RawMessage {
	var e struct {
		Error json.RawMessage `json:"error"`
	}
	if json.Unmarshal(b, &e) != nil || len(e.Error) == 0 || string(e.Error) == "null" {
		return nil
	}
	return e.Error
}

// plainResponse rebuilds responses that are never streamed: embeddings
// and the model list.
type plainResponse struct {
	res gateway.Response
}

func (p *plainResponse) Event(string, []byte) {}

func (p *plainResponse) Body(status int, b []byte) {
	p.res.Body, p.res.Done = bodyValue(b), true
	if status >= 400 {
		p.res.Error = errorObject(b)
		return
	}
	var e struct {
		Model string          `json:"model"`
		Usage json.RawMessage `json:"usage"`
	}
	if json.Unmarshal(b, &e) == nil {
		p.res.Model, p.res.Usage = e.Model, usageMap(e.Usage)
	}
}

func (p *plainResponse) Result() gateway.Response { return p.res }

// chatResponse rebuilds a Chat Completions response: a body, or a stream
// of chat.completion.chunk events assembled into the chat.completion
// object the same request would have got unstreamed.
type chatResponse struct {
	limit, used int
	truncated   bool
	malformed   int
	opened      int // choices and tool calls

	body   json.RawMessage // a body that was not streamed
	status int

	id, model, fingerprint, tier string
	created                      json.RawMessage
	choices                      map[int64]*choiceState
	usage                        json.RawMessage
	err                          json.RawMessage
	done                         bool
}

type choiceState struct {
	role               string
	content, refusal   strings.Builder
	hasContent, hasRef bool
	finish             *string
	tools              map[int64]*toolState
	// The token log probabilities, when the request asked for them.
	hasLogprobs         bool
	logContent, logRefs []json.RawMessage
}

type toolState struct {
	id, typ, name string
	args          strings.Builder
}

// chunk is the part of a chat.completion.chunk the record needs.
type chunk struct {
	ID                string          `json:"id"`
	Created           json.RawMessage `json:"created"`
	Model             string          `json:"model"`
	SystemFingerprint string          `json:"system_fingerprint"`
	ServiceTier       string          `json:"service_tier"`
	Choices           []struct {
		Index int64 `json:"index"`
		Delta struct {
			Role      string  `json:"role"`
			Content   *string `json:"content"`
			Refusal   *string `json:"refusal"`
			ToolCalls []struct {
				Index    int64  `json:"index"`
				ID       string `json:"id"`
				Type     string `json:"type"`
				Function struct {
					Name      string `json:"name"`
					Arguments string `json:"arguments"`
				} `json:"function"`
			} `json:"tool_calls"`
		} `json:"delta"`
		Logprobs     json.RawMessage `json:"logprobs"` // read apart: servers differ
		FinishReason *string         `json:"finish_reason"`
	} `json:"choices"`
	Usage json.RawMessage `json:"usage"`
	Error json.RawMessage `json:"error"`
}

// maxIndex bounds the choice and tool-call indexes a stream may use, and
// the choices and tool calls it may open in all, so that a hostile stream
// cannot make the rebuilt body huge.
const maxIndex = 1024

// keep reports whether n more bytes fit within the limit, and counts them.
// Once something did not fit, nothing more does: the kept text is a prefix
// of the text sent, never one with holes.
func (c *chatResponse) keep(n int) bool {
	if c.truncated || c.used+n > c.limit {
		c.truncated = true
		return false
	}
	c.used += n
	return true
}

// open counts a new choice or tool call, reporting whether one more fits.
func (c *chatResponse) open() bool {
	if c.opened >= maxIndex {
		c.malformed++
		return false
	}
	c.opened++
	return true
}

func (c *chatResponse) Event(name string, data []byte) {
	if bytes.Equal(bytes.TrimSpace(data), []byte("[DONE]")) {
		c.done = true
		return
	}
	var ch chunk
	if json.Unmarshal(data, &ch) != nil {
		c.malformed++
		return
	}
	if len(ch.Error) > 0 && string(ch.Error) != "null" {
		c.err = bytes.Clone(ch.Error)
	}
	if ch.ID != "" {
		c.id = ch.ID
	}
	if ch.Model != "" {
		c.model = ch.Model
	}
	if ch.SystemFingerprint != "" {
		c.fingerprint = ch.SystemFingerprint
	}
	if ch.ServiceTier != "" {
		c.tier = ch.ServiceTier
	}
	if len(ch.Created) > 0 && c.created == nil {
		c.created = bytes.Clone(ch.Created)
	}
	if len(ch.Usage) > 0 && string(ch.Usage) != "null" {
		c.usage = bytes.Clone(ch.Usage)
	}
	if c.choices == nil {
		c.choices = map[int64]*choiceState{}
	}
	for _, chc := range ch.Choices {
		if chc.Index < 0 || chc.Index >= maxIndex {
			c.malformed++
			continue
		}
		st := c.choices[chc.Index]
		if st == nil {
			if !c.open() {
				continue
			}
			st = &choiceState{tools: map[int64]*toolState{}}
			c.choices[chc.Index] = st
		}
		d := chc.Delta
		if d.Role != "" {
			st.role = d.Role
		}
		if d.Content != nil {
			st.hasContent = true
			if c.keep(len(*d.Content)) {
				st.content.WriteString(*d.Content)
			}
		}
		if d.Refusal != nil {
			st.hasRef = true
			if c.keep(len(*d.Refusal)) {
				st.refusal.WriteString(*d.Refusal)
			}
		}
		for _, tc := range d.ToolCalls {
			if tc.Index == -1 {
				tc.Index = 0 // some compatible servers number a lone call -1
			}
			if tc.Index < 0 || tc.Index >= maxIndex {
				c.malformed++
				continue
			}
			t := st.tools[tc.Index]
			if t == nil {
				if !c.open() {
					continue
				}
				t = &toolState{}
				st.tools[tc.Index] = t
			}
			// The id, type and name are metadata, kept past the limit
			// but bounded each.
			if tc.ID != "" && len(tc.ID) <= maxString {
				t.id = tc.ID
			}
			if tc.Type != "" && len(tc.Type) <= maxString {
				t.typ = tc.Type
			}
			if len(t.name)+len(tc.Function.Name) <= maxString {
				t.name += tc.Function.Name
			} else {
				c.truncated = true
			}
			if c.keep(len(tc.Function.Arguments)) {
				t.args.WriteString(tc.Function.Arguments)
			}
		}
		if len(chc.Logprobs) > 0 && string(chc.Logprobs) != "null" {
			var lp struct {
				Content []json.RawMessage `json:"content"`
				Refusal []json.RawMessage `json:"refusal"`
			}
			if json.Unmarshal(chc.Logprobs, &lp) == nil {
				st.hasLogprobs = true
				st.logContent = c.keepAll(st.logContent, lp.Content)
				st.logRefs = c.keepAll(st.logRefs, lp.Refusal)
			} else {
				c.malformed++
			}
		}
		if chc.FinishReason != nil {
			f := *chc.FinishReason
			st.finish = &f
		}
	}
}

// keepAll appends the JSON values in add that fit within the limit.
func (c *chatResponse) keepAll(to, add []json.RawMessage) []json.RawMessage {
	for _, v := range add {
		if !c.keep(len(v)) {
			break
		}
		to = append(to, v)
	}
	return to
}

func (c *chatResponse) Body(status int, b []byte) {
	c.body, c.status = bodyValue(b), status
}

func (c *chatResponse) Result() gateway.Response {
	if c.body != nil {
		return chatBody(c.body, c.status)
	}
	res := gateway.Response{ID: c.id, Model: c.model, SystemFingerprint: c.fingerprint, Done: c.done,
		Truncated: c.truncated, Usage: usageMap(c.usage), Error: c.err}
	if c.tier != "" {
		res.Attributes = map[string]any{attrServiceTier: c.tier}
	}
	if c.malformed > 0 {
		if res.Attributes == nil {
			res.Attributes = map[string]any{}
		}
		res.Attributes[attrMalformed] = c.malformed
	}
	if c.id == "" && len(c.choices) == 0 {
		return res
	}
	type function struct {
		Name      string `json:"name"`
		Arguments string `json:"arguments"`
	}
	type toolCall struct {
		ID       string   `json:"id"`
		Type     string   `json:"type"`
		Function function `json:"function"`
	}
	type message struct {
		Role      string     `json:"role"`
		Content   *string    `json:"content"`
		ToolCalls []toolCall `json:"tool_calls,omitempty"`
		Refusal   *string    `json:"refusal"`
	}
	type logprobs struct {
		Content []json.RawMessage `json:"content"`
		Refusal []json.RawMessage `json:"refusal"`
	}
	type choice struct {
		Index        int64     `json:"index"`
		Message      message   `json:"message"`
		Logprobs     *logprobs `json:"logprobs"`
		FinishReason *string   `json:"finish_reason"`
	}
	// The fields in the order OpenAI sends them.
	out := struct {
		ID                string          `json:"id"`
		Object            string          `json:"object"`
		Created           json.RawMessage `json:"created,omitempty"`
		Model             string          `json:"model"`
		Choices           []choice        `json:"choices"`
		Usage             json.RawMessage `json:"usage,omitempty"`
		ServiceTier       string          `json:"service_tier,omitempty"`
		SystemFingerprint string          `json:"system_fingerprint,omitempty"`
	}{ID: c.id, Object: "chat.completion", Created: c.created, Model: c.model,
		SystemFingerprint: c.fingerprint, ServiceTier: c.tier, Choices: []choice{}, Usage: c.usage}
	for _, i := range sortedKeys(c.choices) {
		st := c.choices[i]
		m := message{Role: st.role}
		if m.Role == "" {
			m.Role = "assistant"
		}
		if st.hasContent {
			s := validUTF8(st.content.String())
			m.Content = &s
		}
		if st.hasRef {
			s := validUTF8(st.refusal.String())
			m.Refusal = &s
		}
		for _, j := range sortedKeys(st.tools) {
			t := st.tools[j]
			typ := t.typ
			if typ == "" {
				typ = "function"
			}
			args := validUTF8(t.args.String())
			m.ToolCalls = append(m.ToolCalls, toolCall{ID: t.id, Type: typ, Function: function{Name: t.name, Arguments: args}})
			res.ToolCalls = append(res.ToolCalls, gateway.ToolCall{ID: t.id, Name: t.name, Arguments: args})
		}
		if st.finish != nil {
			res.FinishReasons = append(res.FinishReasons, *st.finish)
		}
		ch := choice{Index: i, Message: m, FinishReason: st.finish}
		if st.hasLogprobs {
			ch.Logprobs = &logprobs{Content: st.logContent, Refusal: st.logRefs}
		}
		out.Choices = append(out.Choices, ch)
	}
	res.Body, _ = json.Marshal(out)
	return res
}

// chatBody reads a chat.completion body (or an error body).
func chatBody(body json.RawMessage, status int) gateway.Response {
	res := gateway.Response{Body: body, Done: true}
	if status >= 400 {
		res.Error = errorObject(body)
		return res
	}
	// body is canonical (bodyValue): walked, not decoded. A member of an
	// unexpected type is left out; the rest is read.
	var tier string
	for k, v := range infertrail.ObjectMembers(body) {
		switch string(k) {
		case "id":
			res.ID, _ = infertrail.StringValue(v)
		case "model":
			res.Model, _ = infertrail.StringValue(v)
		case "system_fingerprint":
			res.SystemFingerprint, _ = infertrail.StringValue(v)
		case "service_tier":
			tier, _ = infertrail.StringValue(v)
		case "usage":
			res.Usage = canonicalUsage(v)
		case "choices":
			for _, ch := range infertrail.SplitArray(v) {
				for k, v := range infertrail.ObjectMembers(ch) {
					switch string(k) {
					case "finish_reason":
						if s, ok := infertrail.StringValue(v); ok {
							res.FinishReasons = append(res.FinishReasons, s)
						}
					case "message":
						for k, v := range infertrail.ObjectMembers(v) {
							if string(k) == "tool_calls" {
								res.ToolCalls = appendToolCalls(res.ToolCalls, v)
							}
						}
					}
				}
			}
		}
	}
	if tier != "" {
		res.Attributes = map[string]any{attrServiceTier: tier}
	}
	return res
}

// appendToolCalls appends the tool calls of a canonical tool_calls array.
func appendToolCalls(calls []gateway.ToolCall, arr []byte) []gateway.ToolCall {
	for _, tc := range infertrail.SplitArray(arr) {
		var call gateway.ToolCall
		for k, v := range infertrail.ObjectMembers(tc) {
			switch string(k) {
			case "id":
				call.ID, _ = infertrail.StringValue(v)
			case "function":
				for k, v := range infertrail.ObjectMembers(v) {
					switch string(k) {
					case "name":
						call.Name, _ = infertrail.StringValue(v)
					case "arguments":
						call.Arguments, _ = infertrail.StringValue(v)
					}
				}
			}
		}
		calls = append(calls, call)
	}
	return calls
}

func sortedKeys[V any](m map[int64]V) []int64 {
	keys := make([]int64, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i] < keys[j] })
	return keys
}

// validUTF8 repairs text cut inside a character (a truncated stream).
func validUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}
