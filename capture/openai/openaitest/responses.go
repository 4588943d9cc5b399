package openaitest

import (
	"encoding/json"
	"fmt"
)

// The Responses API objects, their fields in the order OpenAI sends them.

type responseObject struct {
	ID                 string          `json:"id"`
	Object             string          `json:"object"`
	CreatedAt          int64           `json:"created_at"`
	Status             string          `json:"status"`
	Background         bool            `json:"background"`
	CompletedAt        json.RawMessage `json:"completed_at"`
	Error              json.RawMessage `json:"error"`
	IncompleteDetails  json.RawMessage `json:"incomplete_details"`
	Instructions       json.RawMessage `json:"instructions"`
	MaxOutputTokens    json.RawMessage `json:"max_output_tokens"`
	MaxToolCalls       json.RawMessage `json:"max_tool_calls"`
	Model              string          `json:"model"`
	Output             []any           `json:"output"`
	ParallelToolCalls  bool            `json:"parallel_tool_calls"`
	PreviousResponseID json.RawMessage `json:"previous_response_id"`
	PromptCacheKey     json.RawMessage `json:"prompt_cache_key"`
	Reasoning          struct {
		Effort  json.RawMessage `json:"effort"`
		Summary json.RawMessage `json:"summary"`
	} `json:"reasoning"`
	SafetyIdentifier json.RawMessage `json:"safety_identifier"`
	ServiceTier      string          `json:"service_tier"`
	Store            bool            `json:"store"`
	Temperature      json.RawMessage `json:"temperature"`
	Text             struct {
		Format struct {
			Type string `json:"type"`
		} `json:"format"`
		Verbosity string `json:"verbosity"`
	} `json:"text"`
	ToolChoice  string          `json:"tool_choice"`
	Tools       []any           `json:"tools"`
	TopLogprobs int             `json:"top_logprobs"`
	TopP        json.RawMessage `json:"top_p"`
	Truncation  string          `json:"truncation"`
	Usage       *responseUsage  `json:"usage"`
	User        json.RawMessage `json:"user"`
	Metadata    struct{}        `json:"metadata"`
}

type responseUsage struct {
	InputTokens        int `json:"input_tokens"`
	InputTokensDetails struct {
		CachedTokens int `json:"cached_tokens"`
	} `json:"input_tokens_details"`
	OutputTokens        int `json:"output_tokens"`
	OutputTokensDetails struct {
		ReasoningTokens int `json:"reasoning_tokens"`
	} `json:"output_tokens_details"`
	TotalTokens int `json:"total_tokens"`
}

type outputMessage struct {
	ID      string       `json:"id"`
	Type    string       `json:"type"`
	Status  string       `json:"status"`
	Content []outputText `json:"content"`
	Role    string       `json:"role"`
}

type outputText struct {
	Type        string          `json:"type"`
	Annotations []struct{}      `json:"annotations"`
	Logprobs    []struct{}      `json:"logprobs"`
	Text        json.RawMessage `json:"text"`
}

type functionCall struct {
	ID        string `json:"id"`
	Type      string `json:"type"`
	Status    string `json:"status"`
	Arguments string `json:"arguments"`
	CallID    string `json:"call_id"`
	Name      string `json:"name"`
}

// responseEvent is a Responses API stream event; the fields an event
// does not have are left out.
type responseEvent struct {
	Type           string          `json:"type"`
	Response       *responseObject `json:"response,omitempty"`
	ItemID         string          `json:"item_id,omitempty"`
	OutputIndex    *int            `json:"output_index,omitempty"`
	ContentIndex   *int            `json:"content_index,omitempty"`
	Item           any             `json:"item,omitempty"`
	Part           *outputText     `json:"part,omitempty"`
	Delta          json.RawMessage `json:"delta,omitempty"`
	Text           json.RawMessage `json:"text,omitempty"`
	Arguments      *string         `json:"arguments,omitempty"`
	Logprobs       *[]struct{}     `json:"logprobs,omitempty"`
	SequenceNumber int             `json:"sequence_number"`
}

// response builds a Responses API response object; done gives it its
// output and usage.
func (x *exchange) response(status string, done bool) *responseObject {
	r := &responseObject{ID: fmt.Sprintf("resp_%d", x.n), Object: "response", CreatedAt: Created, Status: status,
		Model: x.model, Output: []any{}, ParallelToolCalls: true, ServiceTier: "auto", Store: true,
		Temperature: json.RawMessage("1.0"), ToolChoice: "auto", Tools: []any{}, TopP: json.RawMessage("1.0"), Truncation: "disabled"}
	r.Text.Format.Type, r.Text.Verbosity = "text", "medium"
	if done {
		r.Output = x.outputItems(true)
		r.CompletedAt = json.RawMessage(fmt.Sprint(Created + 1))
		r.ServiceTier = "default"
		u := &responseUsage{InputTokens: x.inputTokens(), OutputTokens: x.outputTokens()}
		u.InputTokensDetails.CachedTokens = x.u.CachedTokens
		u.OutputTokensDetails.ReasoningTokens = x.u.ReasoningTokens
		u.TotalTokens = u.InputTokens + u.OutputTokens
		r.Usage = u
	}
	return r
}

func (x *exchange) outputItems(done bool) []any {
	status := "completed"
	if !done {
		status = "in_progress"
	}
	if len(x.tools) > 0 {
		var out []any
		for i, tc := range x.tools {
			args := tc.Arguments
			if !done {
				args = ""
			}
			out = append(out, functionCall{ID: fmt.Sprintf("fc_%d_%d", x.n, i), Type: "function_call", Status: status,
				Arguments: args, CallID: tc.ID, Name: tc.Name})
		}
		return out
	}
	content := []outputText{}
	if done {
		content = []outputText{x.outputText(x.s.textJSON)}
	}
	return []any{outputMessage{ID: fmt.Sprintf("msg_%d", x.n), Type: "message", Status: status, Content: content, Role: "assistant"}}
}

func (x *exchange) outputText(text json.RawMessage) outputText {
	return outputText{Type: "output_text", Annotations: []struct{}{}, Logprobs: []struct{}{}, Text: text}
}

// responsesStream streams a response as the Responses API does: created,
// in_progress, each output item added, its content or arguments deltas
// and their done events, the item done, and completed.
func (x *exchange) responsesStream() {
	x.streamHeaders()
	seq := 0
	ok := true
	fail := func() {
		r := x.response("failed", false)
		r.Error, _ = json.Marshal(map[string]string{"code": "server_error", "message": x.errorMessage()})
		b, _ := json.Marshal(responseEvent{Type: "response.failed", Response: r, SequenceNumber: seq})
		x.send("response.failed", b)
	}
	// send sends an event unless the stream has stopped.
	send := func(e responseEvent) {
		if !ok {
			return
		}
		if x.streamEnd(fail) {
			ok = false
			return
		}
		e.SequenceNumber = seq
		seq++
		b, _ := json.Marshal(e)
		x.send(e.Type, b)
	}
	send(responseEvent{Type: "response.created", Response: x.response("in_progress", false)})
	send(responseEvent{Type: "response.in_progress", Response: x.response("in_progress", false)})
	noLogprobs := &[]struct{}{}
	added, done := x.outputItems(false), x.outputItems(true)
	for i := range added {
		i := i
		send(responseEvent{Type: "response.output_item.added", OutputIndex: &i, Item: added[i]})
		switch item := done[i].(type) {
		case functionCall:
			for _, a := range split(item.Arguments, x.s.chunkBytes) {
				d, _ := json.Marshal(a)
				send(responseEvent{Type: "response.function_call_arguments.delta", ItemID: item.ID, OutputIndex: &i, Delta: d})
			}
			send(responseEvent{Type: "response.function_call_arguments.done", ItemID: item.ID, OutputIndex: &i, Arguments: &item.Arguments})
		case outputMessage:
			zero := 0
			empty := x.outputText(json.RawMessage(`""`))
			send(responseEvent{Type: "response.content_part.added", ItemID: item.ID, OutputIndex: &i, ContentIndex: &zero, Part: &empty})
			for _, c := range x.s.chunksJSON {
				send(responseEvent{Type: "response.output_text.delta", ItemID: item.ID, OutputIndex: &i, ContentIndex: &zero, Delta: c, Logprobs: noLogprobs})
			}
			send(responseEvent{Type: "response.output_text.done", ItemID: item.ID, OutputIndex: &i, ContentIndex: &zero, Text: x.s.textJSON, Logprobs: noLogprobs})
			full := x.outputText(x.s.textJSON)
			send(responseEvent{Type: "response.content_part.done", ItemID: item.ID, OutputIndex: &i, ContentIndex: &zero, Part: &full})
		}
		send(responseEvent{Type: "response.output_item.done", OutputIndex: &i, Item: done[i]})
	}
	send(responseEvent{Type: "response.completed", Response: x.response("completed", true)})
}
