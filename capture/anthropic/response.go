package anthropic

import (
	"bytes"
	"cmp"
	"encoding/json"
	"slices"
	"strings"

	"github.com/infertrail/infertrail/capture/gateway"
)

// NewResponse returns a reconstructor for one response. For the Messages
// API it rebuilds a streamed response into the message Anthropic would
// have sent without streaming; for the other endpoints it keeps the body.
func (Provider) NewResponse(ep gateway.Endpoint, c *gateway.Call, limit int) gateway.Reconstructor {
	return &response{messages: ep.Operation == "chat", limit: max(limit, 0)}
}

// maxToolMetaBytes bounds the ids and names of tool calls listed past the
// limit.
const maxToolMetaBytes = 64 << 10

// maxUsageKeys bounds the usage members a response may carry; past it,
// only members already seen are updated.
const maxUsageKeys = 32

// response rebuilds one response. Metadata (ids, model, stop reason,
// usage, tool call ids and names) is kept in fixed-size fields, whatever
// the size of the response; content (the message object, its blocks'
// text, thinking and tool input) counts against limit, and past it
// nothing more is kept and the result is marked truncated.
type response struct {
	messages  bool
	limit     int
	used      int // bytes of content kept
	truncated bool

	// A body that was not streamed.
	body      []byte
	bodySeen  bool
	errObj    json.RawMessage
	done      bool
	malformed int // stream events whose data was not the JSON expected

	// Metadata.
	id, model     string
	stopReason    string
	stopSequence  json.RawMessage // a JSON string or null, once a message_delta said
	usage         map[string]json.RawMessage
	started       bool // a message_start was seen
	metaToolBytes int  // bytes of tool call ids and names kept past the limit

	// Content: the message_start message with its content removed, and the
	// blocks by index.
	message map[string]json.RawMessage
	delta   map[string]json.RawMessage // message_delta's delta members, later wins
	blocks  []*block
}

// block is one content block of a streamed message.
type block struct {
	index     int64
	typ       string
	id, name  string                     // of tool_use and other tool blocks
	start     map[string]json.RawMessage // the content_block_start block, nil past the limit
	text      []byte
	thinking  []byte
	signature []byte
	input     []byte // partial_json fragments, concatenated
	hasInput  bool   // input_json_delta events arrived
	dropped   bool   // a delta did not fit within the limit
	citations []json.RawMessage
}

// keep reports whether n more bytes of content fit within the limit, and
// counts them if so. Once one piece does not fit, nothing more is kept,
// so the content kept is a prefix of the response.
func (r *response) keep(n int) bool {
	if r.truncated || r.used+n > r.limit {
		r.truncated = true
		return false
	}
	r.used += n
	return true
}

// Event takes one event of a streamed Messages API response.
func (r *response) Event(name string, data []byte) {
	var ev struct {
		Type         string          `json:"type"`
		Index        *int64          `json:"index"`
		Message      json.RawMessage `json:"message"`
		ContentBlock json.RawMessage `json:"content_block"`
		Delta        json.RawMessage `json:"delta"`
		Usage        json.RawMessage `json:"usage"`
		Error        json.RawMessage `json:"error"`
	}
	if err := json.Unmarshal(data, &ev); err != nil {
		r.malformed++
		return
	}
	if name == "" {
		name = ev.Type
	}
	switch name {
	case "message_start":
		r.messageStart(ev.Message)
	case "content_block_start":
		if ev.Index == nil {
			r.malformed++
			return
		}
		r.blockStart(*ev.Index, ev.ContentBlock)
	case "content_block_delta":
		if ev.Index == nil {
			r.malformed++
			return
		}
		r.blockDelta(*ev.Index, ev.Delta)
	case "message_delta":
		r.messageDelta(ev.Delta, ev.Usage)
	case "message_stop":
		r.done = true
	case "error":
		r.setError(ev.Error, data)
	}
	// content_block_stop, ping and events of kinds added later change
	// nothing in the message.
}

func (r *response) messageStart(raw json.RawMessage) {
	var m struct {
		ID    string          `json:"id"`
		Model string          `json:"model"`
		Usage json.RawMessage `json:"usage"`
	}
	if json.Unmarshal(raw, &m) != nil {
		r.malformed++
		return
	}
	r.started = true
	if r.id == "" {
		r.id = clip(m.ID, maxValueBytes)
	}
	if r.model == "" {
		r.model = clip(m.Model, maxValueBytes)
	}
	r.mergeUsage(m.Usage)
	if r.message == nil && r.keep(len(raw)) {
		json.Unmarshal(raw, &r.message)
		delete(r.message, "content")
		delete(r.message, "usage")
	}
}

// find returns the block at index, or nil.
func (r *response) find(index int64) *block {
	// Blocks arrive in index order, so the last one is the usual answer.
	for i := len(r.blocks) - 1; i >= 0; i-- {
		if r.blocks[i].index == index {
			return r.blocks[i]
		}
	}
	return nil
}

func (r *response) blockStart(index int64, raw json.RawMessage) {
	if r.find(index) != nil {
		r.malformed++ // a second start for one index: the first stands
		return
	}
	var cb struct {
		Type string `json:"type"`
		ID   string `json:"id"`
		Name string `json:"name"`
	}
	if json.Unmarshal(raw, &cb) != nil {
		r.malformed++
		return
	}
	b := &block{index: index, typ: cb.Type, id: cb.ID, name: cb.Name}
	switch {
	case r.keep(len(raw)):
		json.Unmarshal(raw, &b.start)
	case cb.Type == "tool_use" && r.metaToolBytes+len(cb.ID)+len(cb.Name) <= maxToolMetaBytes:
		// Past the limit, tool calls are still listed by id and name.
		r.metaToolBytes += len(cb.ID) + len(cb.Name)
	default:
		return
	}
	r.blocks = append(r.blocks, b)
}

func (r *response) blockDelta(index int64, raw json.RawMessage) {
	var d struct {
		Type        string          `json:"type"`
		Text        string          `json:"text"`
		PartialJSON string          `json:"partial_json"`
		Thinking    string          `json:"thinking"`
		Signature   string          `json:"signature"`
		Citation    json.RawMessage `json:"citation"`
	}
	if json.Unmarshal(raw, &d) != nil {
		r.malformed++
		return
	}
	b := r.find(index)
	if b == nil {
		// A delta for a block that never started: keep its content in a
		// block of the type the delta implies.
		typ := map[string]string{"text_delta": "text", "input_json_delta": "tool_use",
			"thinking_delta": "thinking", "signature_delta": "thinking", "citations_delta": "text"}[d.Type]
		if typ == "" || !r.keep(0) {
			return
		}
		r.malformed++
		b = &block{index: index, typ: typ, start: map[string]json.RawMessage{"type": jsonString(typ)}}
		r.blocks = append(r.blocks, b)
	}
	if b.start == nil {
		return // started past the limit
	}
	defer func() {
		if r.truncated {
			b.dropped = true
		}
	}()
	switch d.Type {
	case "text_delta":
		if r.keep(len(d.Text)) {
			b.text = append(b.text, d.Text...)
		}
	case "input_json_delta":
		if r.keep(len(d.PartialJSON)) {
			b.input = append(b.input, d.PartialJSON...)
			b.hasInput = true
		}
	case "thinking_delta":
		if r.keep(len(d.Thinking)) {
			b.thinking = append(b.thinking, d.Thinking...)
		}
	case "signature_delta":
		if r.keep(len(d.Signature)) {
			b.signature = append(b.signature, d.Signature...)
		}
	case "citations_delta":
		if len(d.Citation) > 0 && r.keep(len(d.Citation)) {
			b.citations = append(b.citations, d.Citation)
		}
	}
}

func (r *response) messageDelta(delta, usage json.RawMessage) {
	var d map[string]json.RawMessage
	if json.Unmarshal(delta, &d) != nil {
		r.malformed++
		return
	}
	if v, ok := d["stop_reason"]; ok {
		var s string
		json.Unmarshal(v, &s)
		r.stopReason = clip(s, maxValueBytes)
	}
	if v, ok := d["stop_sequence"]; ok {
		var s *string
		if json.Unmarshal(v, &s) == nil {
			r.stopSequence = json.RawMessage("null")
			if s != nil {
				r.stopSequence = jsonString(clip(*s, maxValueBytes))
			}
		}
	}
	// Other members (container, stop_details) are content of the message.
	for k, v := range d {
		if k == "stop_reason" || k == "stop_sequence" {
			continue
		}
		if _, seen := r.delta[k]; !seen && !r.keep(len(k)+len(v)) {
			continue
		}
		if r.delta == nil {
			r.delta = map[string]json.RawMessage{}
		}
		r.delta[k] = bytes.Clone(v)
	}
	// message_delta's usage counts are totals for the whole message so
	// far: they replace, not add to, those of message_start.
	r.mergeUsage(usage)
}

func (r *response) mergeUsage(raw json.RawMessage) {
	if len(raw) == 0 {
		return
	}
	var u map[string]json.RawMessage
	if json.Unmarshal(raw, &u) != nil {
		r.malformed++
		return
	}
	if r.usage == nil {
		r.usage = map[string]json.RawMessage{}
	}
	for k, v := range u {
		if _, seen := r.usage[k]; !seen && (len(r.usage) >= maxUsageKeys || len(k)+len(v) > maxValueBytes) {
			continue
		}
		if len(v) > maxValueBytes {
			continue
		}
		if string(v) == "null" {
			// message_delta leaves out what it does not update; a null
			// there does not erase message_start's count.
			if _, seen := r.usage[k]; seen {
				continue
			}
		}
		r.usage[k] = bytes.Clone(v)
	}
}

func (r *response) setError(obj, data json.RawMessage) {
	if r.errObj != nil {
		return
	}
	e := obj
	if len(e) == 0 || string(e) == "null" {
		e = data
	}
	if len(e) > r.limit-r.used {
		e = jsonString(clip(strings.ToValidUTF8(string(e), "\uFFFD"), max(r.limit-r.used, 0)))
	}
	r.errObj = bytes.Clone(e)
}

// Body takes the body of a response that was not streamed.
func (r *response) Body(status int, body []byte) {
	r.bodySeen, r.done = true, true
	if len(body) == 0 {
		return
	}
	var valid bool
	if len(body) <= r.limit {
		r.body, valid = gateway.BodyValue(body)
	} else {
		r.truncated = true
		valid = json.Valid(body)
	}
	if !valid {
		return
	}
	var m struct {
		Type         string          `json:"type"`
		ID           string          `json:"id"`
		Model        string          `json:"model"`
		StopReason   *string         `json:"stop_reason"`
		StopSequence json.RawMessage `json:"stop_sequence"`
		Usage        json.RawMessage `json:"usage"`
		Error        json.RawMessage `json:"error"`
		Content      []struct {
			Type  string          `json:"type"`
			ID    string          `json:"id"`
			Name  string          `json:"name"`
			Input json.RawMessage `json:"input"`
		} `json:"content"`
	}
	if json.Unmarshal(body, &m) != nil {
		return // JSON, but not an object of this shape
	}
	if status >= 400 || m.Type == "error" {
		r.setError(m.Error, body)
		return
	}
	if !r.messages || m.Type != "message" {
		return
	}
	r.started = true
	r.id, r.model = clip(m.ID, maxValueBytes), clip(m.Model, maxValueBytes)
	if m.StopReason != nil {
		r.stopReason = clip(*m.StopReason, maxValueBytes)
	}
	r.mergeUsage(m.Usage)
	for i, c := range m.Content {
		if c.Type == "tool_use" {
			r.blocks = append(r.blocks, &block{index: int64(i), typ: c.Type, id: c.ID, name: c.Name,
				input: c.Input, hasInput: len(c.Input) > 0})
		}
	}
}

// Result reports what was rebuilt.
func (r *response) Result() gateway.Response {
	res := gateway.Response{
		ID: r.id, Model: r.model, Done: r.done, Truncated: r.truncated, Error: r.errObj,
	}
	if r.stopReason != "" {
		res.FinishReasons = []string{r.stopReason}
	}
	attrs := map[string]any{}
	res.Usage = r.usageCounts(attrs)
	slices.SortStableFunc(r.blocks, func(a, b *block) int { return cmp.Compare(a.index, b.index) })
	var badInput []string
	for _, b := range r.blocks {
		if b.typ != "tool_use" {
			continue
		}
		// The arguments as the model produced them: the fragments, or
		// the input the block started with when none followed; "" when
		// the limit left nothing of them.
		args := string(b.input)
		if !b.hasInput && !b.dropped {
			args = string(b.start["input"])
		}
		res.ToolCalls = append(res.ToolCalls, gateway.ToolCall{ID: b.id, Name: b.name, Arguments: args})
		if !r.bodySeen && b.hasInput && !json.Valid(b.input) && len(badInput) < maxListItems {
			badInput = append(badInput, clip(b.id, maxItemBytes))
		}
	}
	if len(badInput) > 0 {
		attrs["infertrail.response.malformed_tool_input"] = badInput
	}
	if r.malformed > 0 {
		attrs["infertrail.response.malformed_events"] = r.malformed
	}
	if len(attrs) > 0 {
		res.Attributes = attrs
	}
	switch {
	case r.bodySeen:
		res.Body = r.body
	case r.started || len(r.blocks) > 0:
		res.Body = r.rebuild()
	}
	return res
}

// usageCounts returns the token counts under their OpenTelemetry names,
// and puts Anthropic's own figures that have no such name in attrs.
func (r *response) usageCounts(attrs map[string]any) map[string]int64 {
	count := func(k string) (int64, bool) {
		var n int64
		v, ok := r.usage[k]
		if !ok || string(v) == "null" || json.Unmarshal(v, &n) != nil {
			return 0, false
		}
		return n, true
	}
	u := map[string]int64{}
	in, okIn := count("input_tokens")
	read, okRead := count("cache_read_input_tokens")
	created, okCreated := count("cache_creation_input_tokens")
	if okIn || okRead || okCreated {
		u["gen_ai.usage.input_tokens"] = in + read + created
	}
	if okIn {
		attrs["anthropic.usage.input_tokens"] = in
	}
	if okRead {
		u["gen_ai.usage.cache_read.input_tokens"] = read
	}
	if okCreated {
		u["gen_ai.usage.cache_creation.input_tokens"] = created
	}
	if out, ok := count("output_tokens"); ok {
		u["gen_ai.usage.output_tokens"] = out
	}
	var details struct {
		ThinkingTokens *int64 `json:"thinking_tokens"`
	}
	if json.Unmarshal(r.usage["output_tokens_details"], &details) == nil && details.ThinkingTokens != nil {
		u["gen_ai.usage.reasoning.output_tokens"] = *details.ThinkingTokens
	}
	var tier string
	if json.Unmarshal(r.usage["service_tier"], &tier) == nil && tier != "" {
		attrs["anthropic.response.service_tier"] = clip(tier, maxValueBytes)
	}
	if len(u) == 0 {
		return nil
	}
	return u
}

// rebuild returns the message a streamed response would have been had it
// not streamed: message_start's message with the blocks' content
// assembled, message_delta's stop reason and other members, and the usage
// as it finally stood.
func (r *response) rebuild() json.RawMessage {
	m := make(map[string]json.RawMessage, len(r.message)+8)
	for k, v := range r.message {
		m[k] = v
	}
	if _, ok := m["type"]; !ok {
		m["type"] = jsonString("message")
	}
	if _, ok := m["role"]; !ok {
		m["role"] = jsonString("assistant")
	}
	if r.id != "" {
		m["id"] = jsonString(r.id)
	}
	if r.model != "" {
		m["model"] = jsonString(r.model)
	}
	for k, v := range r.delta {
		m[k] = v
	}
	if r.stopReason != "" {
		m["stop_reason"] = jsonString(r.stopReason)
	} else if _, ok := m["stop_reason"]; !ok {
		m["stop_reason"] = json.RawMessage("null")
	}
	if r.stopSequence != nil {
		m["stop_sequence"] = r.stopSequence
	} else if _, ok := m["stop_sequence"]; !ok {
		m["stop_sequence"] = json.RawMessage("null")
	}
	if r.usage != nil {
		m["usage"] = marshal(r.usage)
	}
	content := make([]json.RawMessage, 0, len(r.blocks))
	for _, b := range r.blocks {
		if b.start == nil {
			continue // listed as a tool call only: past the limit
		}
		c := b.start
		if len(b.text) > 0 {
			c["text"] = jsonString(string(b.text))
		}
		if len(b.thinking) > 0 {
			c["thinking"] = jsonString(string(b.thinking))
		}
		if len(b.signature) > 0 {
			c["signature"] = jsonString(string(b.signature))
		}
		if len(b.citations) > 0 {
			var cs []json.RawMessage
			if json.Unmarshal(c["citations"], &cs) != nil {
				cs = nil
			}
			c["citations"] = marshal(append(cs, b.citations...))
		}
		if b.hasInput {
			if json.Valid(b.input) {
				c["input"] = b.input
			} else {
				// Malformed (or cut off): kept as the string the model sent,
				// and listed in infertrail.response.malformed_tool_input.
				c["input"] = jsonString(strings.ToValidUTF8(string(b.input), "\uFFFD"))
			}
		}
		content = append(content, marshal(c))
	}
	m["content"] = marshal(content)
	return marshal(m)
}

// marshal encodes v, whose raw members are valid JSON, since they were
// decoded or checked before.
func marshal(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		return json.RawMessage("null")
	}
	return b
}

func jsonString(s string) json.RawMessage {
	b, _ := json.Marshal(s)
	return b
}
