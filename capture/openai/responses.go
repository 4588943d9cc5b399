package openai

import (
	"bytes"
	"encoding/json"
	"strings"

	"github.com/infertrail/infertrail/capture/gateway"
)

// responsesResponse rebuilds a Responses API response: a body, or a
// stream of response.* events. A complete stream ends with the whole
// response object (response.completed, .failed or .incomplete), which is
// then the record's body; a broken stream's body is the last response
// object seen with the output items assembled so far.
type responsesResponse struct {
	limit, used int
	truncated   bool
	malformed   int
	opened      int // output items and content parts

	body   json.RawMessage
	status int

	last  json.RawMessage // the latest response object seen before the end
	done  bool            // a terminal event came
	final json.RawMessage // its response object, if it fit within the limit
	// meta is what the terminal response object says, if it came whole.
	meta    gateway.Response
	hasMeta bool
	items   map[int64]*itemState
	err     json.RawMessage
}

type itemState struct {
	item         json.RawMessage // as added, or as done
	done         bool
	parts        map[int64]*partState // a message's content parts by index
	args         strings.Builder
	typ          string
	callID, name string
}

// partState is a message's content part being streamed: output_text or
// refusal.
type partState struct {
	typ  string
	text strings.Builder
}

// event is the part of a Responses API stream event the record needs.
type event struct {
	Type        string          `json:"type"`
	Response    json.RawMessage `json:"response"`
	OutputIndex int64           `json:"output_index"`
	ContentIdx  int64           `json:"content_index"`
	Item        json.RawMessage `json:"item"`
	Delta       string          `json:"delta"`
	Arguments   *string         `json:"arguments"`
}

// keep reports whether n more bytes fit within the limit, and counts them.
// Once something did not fit, nothing more does.
func (r *responsesResponse) keep(n int) bool {
	if r.truncated || r.used+n > r.limit {
		r.truncated = true
		return false
	}
	r.used += n
	return true
}

// maxItems bounds the output and content indexes a stream may use, and
// the output items and content parts it may open in all.
const maxItems = 4096

// open counts a new output item or content part, reporting whether one
// more fits.
func (r *responsesResponse) open() bool {
	if r.opened >= maxItems {
		r.malformed++
		return false
	}
	r.opened++
	return true
}

func (r *responsesResponse) Event(name string, data []byte) {
	if len(data) == 0 && isTerminal(name) {
		// A terminal event whose data the gateway could not keep (it
		// passed the limit): the response ended, its object is lost.
		r.done, r.truncated = true, true
		return
	}
	var e event
	if json.Unmarshal(data, &e) != nil {
		r.malformed++
		return
	}
	if e.Type == "" {
		e.Type = name
	}
	if e.OutputIndex < 0 || e.OutputIndex >= maxItems || e.ContentIdx < 0 || e.ContentIdx >= maxItems {
		r.malformed++
		return
	}
	switch e.Type {
	case "error":
		r.err = streamError(data)
	case "response.created", "response.in_progress", "response.queued":
		if len(e.Response) > 0 && r.keep(len(e.Response)-len(r.last)) {
			r.last = e.Response
		}
	case "response.completed", "response.failed", "response.incomplete":
		if len(e.Response) == 0 {
			r.malformed++
			return
		}
		// The terminal object replaces what was assembled: it is kept
		// whole if it fits, and its metadata is read either way.
		r.done, r.hasMeta = true, true
		r.meta = gateway.Response{}
		readResponseObject(e.Response, &r.meta)
		if len(e.Response) <= r.limit {
			r.final = e.Response
		}
	case "response.output_item.added", "response.output_item.done":
		var item struct {
			Type   string `json:"type"`
			CallID string `json:"call_id"`
			Name   string `json:"name"`
		}
		if len(e.Item) == 0 || e.Item[0] != '{' || json.Unmarshal(e.Item, &item) != nil {
			r.malformed++
			return
		}
		if !r.keep(len(e.Item)) {
			return
		}
		st := r.item(e.OutputIndex)
		if st == nil {
			return
		}
		st.item, st.done = e.Item, e.Type == "response.output_item.done"
		st.typ, st.callID, st.name = item.Type, item.CallID, item.Name
	case "response.output_text.delta", "response.refusal.delta":
		if !r.keep(len(e.Delta)) {
			return
		}
		st := r.item(e.OutputIndex)
		if st == nil {
			return
		}
		p := st.parts[e.ContentIdx]
		if p == nil {
			if !r.open() {
				return
			}
			p = &partState{typ: strings.TrimSuffix(strings.TrimPrefix(e.Type, "response."), ".delta")}
			st.parts[e.ContentIdx] = p
		}
		p.text.WriteString(e.Delta)
	case "response.function_call_arguments.delta":
		if !r.keep(len(e.Delta)) {
			return
		}
		if st := r.item(e.OutputIndex); st != nil {
			st.args.WriteString(e.Delta)
		}
	case "response.function_call_arguments.done":
		st := r.item(e.OutputIndex)
		if st == nil || e.Arguments == nil || !r.keep(max(0, len(*e.Arguments)-st.args.Len())) {
			return
		}
		st.args.Reset()
		st.args.WriteString(*e.Arguments)
	}
}

func isTerminal(typ string) bool {
	return typ == "response.completed" || typ == "response.failed" || typ == "response.incomplete"
}

// streamError returns the error object of a stream's error event: the
// event without its type and sequence number, or its "error" member if
// it has one.
func streamError(data []byte) json.RawMessage {
	var m map[string]json.RawMessage
	if json.Unmarshal(data, &m) != nil {
		return nil
	}
	if e := m["error"]; len(e) > 0 && string(e) != "null" {
		return e
	}
	delete(m, "type")
	delete(m, "sequence_number")
	b, _ := json.Marshal(m)
	return b
}

// item returns the state of output item i, or nil if the stream opened
// too many items and parts.
func (r *responsesResponse) item(i int64) *itemState {
	if r.items == nil {
		r.items = map[int64]*itemState{}
	}
	st := r.items[i]
	if st == nil {
		if !r.open() {
			return nil
		}
		st = &itemState{parts: map[int64]*partState{}}
		r.items[i] = st
	}
	return st
}

func (r *responsesResponse) Body(status int, b []byte) {
	r.body, r.status = bodyValue(b), status
}

func (r *responsesResponse) Result() gateway.Response {
	if r.body != nil {
		res := gateway.Response{Body: r.body, Done: true}
		if r.status >= 400 {
			res.Error = errorObject(r.body)
			return res
		}
		readResponseObject(r.body, &res)
		return res
	}
	var res gateway.Response
	switch {
	case r.final != nil:
		res = r.meta
		res.Body = r.final
	case r.hasMeta:
		// The terminal object passed the limit: its metadata, and the
		// body as far as it was assembled.
		res = r.meta
		res.Body, res.Truncated = r.assemble(), true
	default:
		if r.last != nil {
			readResponseObject(r.last, &res)
			res.FinishReasons = nil // the status of a response still in progress
		}
		res.Body, res.Truncated = r.assemble(), r.truncated
		res.ToolCalls = nil
		for _, i := range sortedKeys(r.items) {
			st := r.items[i]
			if st.typ == "function_call" {
				res.ToolCalls = append(res.ToolCalls, gateway.ToolCall{ID: st.callID, Name: st.name, Arguments: r.args(st)})
			}
		}
	}
	res.Done = r.done
	if res.Error == nil {
		res.Error = r.err
	}
	if r.malformed > 0 {
		if res.Attributes == nil {
			res.Attributes = map[string]any{}
		}
		res.Attributes[attrMalformed] = r.malformed
	}
	return res
}

// args returns a function call's arguments: as done, or as assembled.
func (r *responsesResponse) args(st *itemState) string {
	var item struct {
		Arguments *string `json:"arguments"`
	}
	if st.done && json.Unmarshal(st.item, &item) == nil && item.Arguments != nil {
		return *item.Arguments
	}
	return validUTF8(st.args.String())
}

// assemble rebuilds the response object of a stream that broke off: the
// last response object seen, with the output items seen so far.
func (r *responsesResponse) assemble() json.RawMessage {
	if r.last == nil && len(r.items) == 0 {
		return nil
	}
	out := []json.RawMessage{}
	for _, i := range sortedKeys(r.items) {
		st := r.items[i]
		item := st.item
		if item == nil {
			item = json.RawMessage("{}")
		}
		if !st.done {
			switch st.typ {
			case "function_call":
				args, _ := json.Marshal(validUTF8(st.args.String()))
				item = setMember(item, "arguments", args)
			case "message", "":
				type part struct {
					Type        string    `json:"type"`
					Annotations *[]string `json:"annotations,omitempty"`
					Text        *string   `json:"text,omitempty"`
					Refusal     *string   `json:"refusal,omitempty"`
				}
				var parts []part
				for _, j := range sortedKeys(st.parts) {
					p := st.parts[j]
					switch text := validUTF8(p.text.String()); p.typ {
					case "refusal":
						parts = append(parts, part{Type: "refusal", Refusal: &text})
					default:
						parts = append(parts, part{Type: "output_text", Annotations: &[]string{}, Text: &text})
					}
				}
				if parts != nil {
					content, _ := json.Marshal(parts)
					item = setMember(item, "content", content)
				}
			}
		}
		if string(item) != "{}" {
			out = append(out, item)
		}
	}
	resp := r.last
	if resp == nil {
		resp = json.RawMessage("{}")
	}
	output, _ := json.Marshal(out)
	return setMember(resp, "output", output)
}

// setMember returns the JSON object obj with member key set to v, in its
// place if obj has it, else at the end; the other members keep their
// order. An obj that is not an object is replaced by {key: v}.
func setMember(obj json.RawMessage, key string, v json.RawMessage) json.RawMessage {
	var b bytes.Buffer
	b.WriteByte('{')
	dec := json.NewDecoder(bytes.NewReader(obj))
	set := false
	if t, err := dec.Token(); err == nil && t == json.Delim('{') {
		for dec.More() {
			t, err := dec.Token()
			k, ok := t.(string)
			var val json.RawMessage
			if err != nil || !ok || dec.Decode(&val) != nil {
				break
			}
			if b.Len() > 1 {
				b.WriteByte(',')
			}
			kb, _ := json.Marshal(k)
			b.Write(kb)
			b.WriteByte(':')
			if k == key {
				val, set = v, true
			}
			b.Write(val)
		}
	}
	if !set {
		if b.Len() > 1 {
			b.WriteByte(',')
		}
		kb, _ := json.Marshal(key)
		b.Write(kb)
		b.WriteByte(':')
		b.Write(v)
	}
	b.WriteByte('}')
	return b.Bytes()
}

// readResponseObject reads a Responses API response object's metadata.
func readResponseObject(b json.RawMessage, res *gateway.Response) {
	var o struct {
		ID                string          `json:"id"`
		Model             string          `json:"model"`
		Status            string          `json:"status"`
		ServiceTier       string          `json:"service_tier"`
		Usage             json.RawMessage `json:"usage"`
		IncompleteDetails *struct {
			Reason string `json:"reason"`
		} `json:"incomplete_details"`
		Error  json.RawMessage `json:"error"`
		Output []struct {
			Type      string `json:"type"`
			CallID    string `json:"call_id"`
			Name      string `json:"name"`
			Arguments string `json:"arguments"`
		} `json:"output"`
	}
	if json.Unmarshal(b, &o) != nil {
		return
	}
	res.ID, res.Model, res.Usage = o.ID, o.Model, usageMap(o.Usage)
	if o.Status != "" || o.ServiceTier != "" {
		res.Attributes = map[string]any{}
	}
	if o.Status != "" {
		res.Attributes[attrResponseStat] = o.Status
	}
	if o.ServiceTier != "" {
		res.Attributes[attrServiceTier] = o.ServiceTier
	}
	switch {
	case o.IncompleteDetails != nil && o.IncompleteDetails.Reason != "":
		res.FinishReasons = []string{o.IncompleteDetails.Reason}
	case o.Status != "":
		res.FinishReasons = []string{o.Status}
	}
	if len(o.Error) > 0 && string(o.Error) != "null" {
		res.Error = o.Error
	}
	res.ToolCalls = nil
	for _, it := range o.Output {
		if it.Type == "function_call" {
			res.ToolCalls = append(res.ToolCalls, gateway.ToolCall{ID: it.CallID, Name: it.Name, Arguments: it.Arguments})
		}
	}
}
