package openaitest

import (
	"encoding/json"
	"fmt"
)

// The Chat Completions objects, their fields in the order OpenAI sends them.

type chatCompletion struct {
	ID                string       `json:"id"`
	Object            string       `json:"object"`
	Created           int64        `json:"created"`
	Model             string       `json:"model"`
	Choices           []chatChoice `json:"choices"`
	Usage             chatUsage    `json:"usage"`
	ServiceTier       string       `json:"service_tier"`
	SystemFingerprint string       `json:"system_fingerprint"`
}

type chatChoice struct {
	Index        int             `json:"index"`
	Message      chatMessage     `json:"message"`
	Logprobs     json.RawMessage `json:"logprobs"` // null
	FinishReason string          `json:"finish_reason"`
}

type chatMessage struct {
	Role        string          `json:"role"`
	Content     json.RawMessage `json:"content"` // a string, or null
	ToolCalls   []chatToolCall  `json:"tool_calls,omitempty"`
	Refusal     json.RawMessage `json:"refusal"` // null
	Annotations []struct{}      `json:"annotations"`
}

type chatToolCall struct {
	ID       string       `json:"id"`
	Type     string       `json:"type"`
	Function chatFunction `json:"function"`
}

type chatFunction struct {
	Name      string `json:"name"`
	Arguments string `json:"arguments"`
}

type chatUsage struct {
	PromptTokens        int `json:"prompt_tokens"`
	CompletionTokens    int `json:"completion_tokens"`
	TotalTokens         int `json:"total_tokens"`
	PromptTokensDetails struct {
		CachedTokens int `json:"cached_tokens"`
		AudioTokens  int `json:"audio_tokens"`
	} `json:"prompt_tokens_details"`
	CompletionTokensDetails struct {
		ReasoningTokens          int `json:"reasoning_tokens"`
		AudioTokens              int `json:"audio_tokens"`
		AcceptedPredictionTokens int `json:"accepted_prediction_tokens"`
		RejectedPredictionTokens int `json:"rejected_prediction_tokens"`
	} `json:"completion_tokens_details"`
}

type chatChunk struct {
	ID                string            `json:"id"`
	Object            string            `json:"object"`
	Created           int64             `json:"created"`
	Model             string            `json:"model"`
	ServiceTier       string            `json:"service_tier"`
	SystemFingerprint string            `json:"system_fingerprint"`
	Choices           []chatChunkChoice `json:"choices"`
	// Usage is null in every chunk but the last when the request asks
	// for usage, and absent otherwise.
	Usage json.RawMessage `json:"usage,omitempty"`
}

type chatChunkChoice struct {
	Index        int             `json:"index"`
	Delta        chatDelta       `json:"delta"`
	Logprobs     json.RawMessage `json:"logprobs"` // null
	FinishReason *string         `json:"finish_reason"`
}

type chatDelta struct {
	Role      string          `json:"role,omitempty"`
	Content   json.RawMessage `json:"content,omitempty"` // a string, or null in the first chunk of tool calls
	ToolCalls []chatToolDelta `json:"tool_calls,omitempty"`
	Refusal   json.RawMessage `json:"refusal,omitempty"`
}

type chatToolDelta struct {
	Index    int               `json:"index"`
	ID       string            `json:"id,omitempty"`
	Type     string            `json:"type,omitempty"`
	Function chatFunctionDelta `json:"function"`
}

type chatFunctionDelta struct {
	Name      string `json:"name,omitempty"`
	Arguments string `json:"arguments"`
}

var null = json.RawMessage("null")

func (x *exchange) chatUsage() chatUsage {
	u := chatUsage{PromptTokens: x.inputTokens(), CompletionTokens: x.outputTokens()}
	u.TotalTokens = u.PromptTokens + u.CompletionTokens
	u.PromptTokensDetails.CachedTokens = x.u.CachedTokens
	u.CompletionTokensDetails.ReasoningTokens = x.u.ReasoningTokens
	return u
}

func (x *exchange) chatID() string { return fmt.Sprintf("chatcmpl-%d", x.n) }

func (x *exchange) chatCompletion() chatCompletion {
	msg := chatMessage{Role: "assistant", Content: x.s.textJSON, Refusal: null, Annotations: []struct{}{}}
	finish := "stop"
	if len(x.tools) > 0 {
		msg.Content, finish = null, "tool_calls"
		for _, tc := range x.tools {
			msg.ToolCalls = append(msg.ToolCalls, chatToolCall{ID: tc.ID, Type: "function", Function: chatFunction{Name: tc.Name, Arguments: tc.Arguments}})
		}
	}
	return chatCompletion{ID: x.chatID(), Object: "chat.completion", Created: Created, Model: x.model,
		Choices: []chatChoice{{Index: 0, Message: msg, Logprobs: null, FinishReason: finish}},
		Usage:   x.chatUsage(), ServiceTier: "default", SystemFingerprint: x.s.fingerprint}
}

// chatStream streams a chat completion as OpenAI does: a first chunk with
// the role (and the first tool call's head, if any), the content deltas or
// each tool call's head and argument fragments, a chunk with the finish
// reason, the usage chunk if asked for, and [DONE].
func (x *exchange) chatStream(includeUsage bool) {
	x.streamHeaders()
	base := chatChunk{ID: x.chatID(), Object: "chat.completion.chunk", Created: Created, Model: x.model,
		ServiceTier: "default", SystemFingerprint: x.s.fingerprint}
	if includeUsage {
		base.Usage = null
	}
	fail := func() {
		b, _ := json.Marshal(errorBody{Error: errorObject{Message: x.errorMessage(), Type: "server_error"}})
		x.send("", b)
	}
	// event sends a chunk with one choice; it reports false once the
	// stream must stop.
	event := func(d chatDelta, finish *string) bool {
		if x.streamEnd(fail) {
			return false
		}
		c := base
		c.Choices = []chatChunkChoice{{Delta: d, Logprobs: null, FinishReason: finish}}
		b, _ := json.Marshal(c)
		x.send("", b)
		return true
	}
	first := chatDelta{Role: "assistant", Content: json.RawMessage(`""`), Refusal: null}
	finish := "stop"
	if len(x.tools) == 0 {
		if !event(first, nil) {
			return
		}
		for _, c := range x.s.chunksJSON {
			if !event(chatDelta{Content: c}, nil) {
				return
			}
		}
	} else {
		finish = "tool_calls"
		for i, tc := range x.tools {
			head := chatDelta{ToolCalls: []chatToolDelta{{Index: i, ID: tc.ID, Type: "function", Function: chatFunctionDelta{Name: tc.Name}}}}
			if i == 0 {
				head.Role, head.Content, head.Refusal = "assistant", null, null
			}
			if !event(head, nil) {
				return
			}
			for _, a := range split(tc.Arguments, x.s.chunkBytes) {
				if !event(chatDelta{ToolCalls: []chatToolDelta{{Index: i, Function: chatFunctionDelta{Arguments: a}}}}, nil) {
					return
				}
			}
		}
	}
	if !event(chatDelta{}, &finish) {
		return
	}
	if includeUsage {
		if x.streamEnd(fail) {
			return
		}
		c := base
		c.Choices = []chatChunkChoice{}
		c.Usage, _ = json.Marshal(x.chatUsage())
		b, _ := json.Marshal(c)
		x.send("", b)
	}
	if !x.streamEnd(fail) {
		x.send("", []byte("[DONE]"))
	}
}

func (x *exchange) errorMessage() string {
	if x.u.ErrorMessage != "" {
		return x.u.ErrorMessage
	}
	return "The server had an error while processing your request. Sorry about that!"
}
