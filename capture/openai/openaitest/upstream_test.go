package openaitest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/responses"
	"github.com/openai/openai-go/v3/shared"

	"github.com/infertrail/infertrail/capture/gateway/gatewaytest"
	"github.com/infertrail/infertrail/capture/openai/openaitest"
)

const (
	testKey     = "sk-proj-test-key-0123456789"
	traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
)

// client is an official SDK client of a scripted upstream; tee has every
// response body it read.
type client struct {
	openai.Client
	up  *openaitest.Upstream
	tee *gatewaytest.Tee
}

func serve(tb testing.TB, u *openaitest.Upstream, opts ...option.RequestOption) *client {
	tb.Helper()
	srv := httptest.NewServer(u)
	tb.Cleanup(srv.Close)
	t := &gatewaytest.Tee{}
	return &client{
		Client: openai.NewClient(append([]option.RequestOption{
			option.WithBaseURL(srv.URL + "/v1/"), option.WithAPIKey(testKey), option.WithMaxRetries(0),
			option.WithHeader("traceparent", traceparent), option.WithHTTPClient(&http.Client{Transport: t}),
		}, opts...)...),
		up: u, tee: t,
	}
}

// checkLast checks the upstream's record of the last request: what it
// received and that it sent exactly what the client read.
func (c *client) checkLast(tb testing.TB, method, path string, status int) openaitest.Request {
	tb.Helper()
	last, ok := c.up.Last()
	if !ok {
		tb.Fatal("no request recorded")
	}
	if last.Method != method || last.Path != path || last.Status != status {
		tb.Errorf("recorded %s %s %d, want %s %s %d", last.Method, last.Path, last.Status, method, path, status)
	}
	if got := last.Header.Get("Authorization"); got != "Bearer "+testKey {
		tb.Errorf("recorded Authorization %q", got)
	}
	if got := last.Header.Get("traceparent"); got != traceparent {
		tb.Errorf("recorded traceparent %q", got)
	}
	if got := c.tee.Last(); !bytes.Equal(got, last.Sent) {
		tb.Errorf("the client read %d bytes that differ from the %d recorded as sent:\n%q\n%q", len(got), len(last.Sent), got, last.Sent)
	}
	return last
}

var (
	weatherTool = openai.ChatCompletionFunctionTool(shared.FunctionDefinitionParam{
		Name: "get_weather", Parameters: shared.FunctionParameters{"type": "object", "properties": map[string]any{"city": map[string]any{"type": "string"}}},
	})
	timeTool = openai.ChatCompletionFunctionTool(shared.FunctionDefinitionParam{Name: "get_time"})
)

func chatParams(tools ...openai.ChatCompletionToolUnionParam) openai.ChatCompletionNewParams {
	return openai.ChatCompletionNewParams{
		Model:    "gpt-4o",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.SystemMessage("Be brief."), openai.UserMessage("What is the weather in Paris?")},
		Tools:    tools,
	}
}

var parallelCalls = []openaitest.ToolCall{
	{ID: "call_weather", Name: "get_weather", Arguments: `{"city":"Paris","unit":"celsius"}`},
	{ID: "call_time", Name: "get_time", Arguments: `{"timezone":"Europe/Paris"}`},
	{Name: "get_weather", Arguments: `{"city":"Zürich – Schweiz"}`},
}

func TestChat(t *testing.T) {
	for _, tc := range []struct {
		name      string
		up        *openaitest.Upstream
		wantModel string
		wantText  string
		wantCalls []openaitest.ToolCall
	}{
		{name: "default", up: &openaitest.Upstream{}, wantModel: "gpt-4o", wantText: openaitest.DefaultText},
		{name: "scripted", up: &openaitest.Upstream{Model: "gpt-4o-2024-08-06", Text: "Sunny, 21 °C.", SystemFingerprint: "fp_test", InputTokens: 40, CachedTokens: 32, ReasoningTokens: 5},
			wantModel: "gpt-4o-2024-08-06", wantText: "Sunny, 21 °C."},
		{name: "parallel tool calls", up: &openaitest.Upstream{ToolCalls: parallelCalls}, wantModel: "gpt-4o",
			wantCalls: []openaitest.ToolCall{parallelCalls[0], parallelCalls[1], {ID: "call_1_2", Name: "get_weather", Arguments: parallelCalls[2].Arguments}}},
		{name: "offered tools", up: &openaitest.Upstream{CallTools: true}, wantModel: "gpt-4o",
			wantCalls: []openaitest.ToolCall{{ID: "call_1_0", Name: "get_weather", Arguments: "{}"}, {ID: "call_1_1", Name: "get_time", Arguments: "{}"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := serve(t, tc.up)
			var resp *http.Response
			cc, err := c.Chat.Completions.New(t.Context(), chatParams(weatherTool, timeTool), option.WithResponseInto(&resp))
			if err != nil {
				t.Fatal(err)
			}
			last := c.checkLast(t, "POST", "/v1/chat/completions", 200)
			if !strings.Contains(string(last.Body), `"model":"gpt-4o"`) {
				t.Errorf("recorded body %s", last.Body)
			}
			if resp.Header.Get("Content-Type") != "application/json" || !strings.HasPrefix(resp.Header.Get("x-request-id"), "req_") {
				t.Errorf("headers %v", resp.Header)
			}
			if cc.RawJSON() != string(last.Sent) {
				t.Errorf("the SDK did not take the whole body")
			}
			msg := cc.Choices[0].Message
			if cc.ID != "chatcmpl-1" || cc.Object != "chat.completion" || cc.Model != tc.wantModel || len(cc.Choices) != 1 || msg.Role != "assistant" {
				t.Fatalf("completion %s", cc.RawJSON())
			}
			wantFP := tc.up.SystemFingerprint
			if wantFP == "" {
				wantFP = "fp_scripted"
			}
			if fp := member(cc.RawJSON(), "system_fingerprint"); fp != wantFP || cc.ServiceTier != "default" {
				t.Errorf("fingerprint %q, tier %q", fp, cc.ServiceTier)
			}
			u := cc.Usage
			if u.TotalTokens != u.PromptTokens+u.CompletionTokens || u.PromptTokens == 0 ||
				tc.up.InputTokens != 0 && u.PromptTokens != int64(tc.up.InputTokens) ||
				u.PromptTokensDetails.CachedTokens != int64(tc.up.CachedTokens) || u.CompletionTokensDetails.ReasoningTokens != int64(tc.up.ReasoningTokens) {
				t.Errorf("usage %s", u.RawJSON())
			}
			if tc.wantCalls == nil {
				if msg.Content != tc.wantText || cc.Choices[0].FinishReason != "stop" || len(msg.ToolCalls) != 0 {
					t.Errorf("message %s", msg.RawJSON())
				}
				return
			}
			if cc.Choices[0].FinishReason != "tool_calls" || msg.JSON.Content.Raw() != "null" {
				t.Errorf("message %s", msg.RawJSON())
			}
			if got := toolCalls(msg.ToolCalls); !reflect.DeepEqual(got, tc.wantCalls) {
				t.Errorf("tool calls %+v, want %+v", got, tc.wantCalls)
			}
		})
	}
}

// member returns the string member key of the JSON object raw.
func member(raw, key string) string {
	var m map[string]any
	json.Unmarshal([]byte(raw), &m)
	s, _ := m[key].(string)
	return s
}

func toolCalls(list []openai.ChatCompletionMessageToolCallUnion) []openaitest.ToolCall {
	var out []openaitest.ToolCall
	for _, tc := range list {
		if tc.Type != "function" {
			return nil
		}
		out = append(out, openaitest.ToolCall{ID: tc.ID, Name: tc.Function.Name, Arguments: tc.Function.Arguments})
	}
	return out
}

// streamChat runs a streamed chat through the SDK's accumulator, checking
// that it accepts every chunk.
func streamChat(tb testing.TB, c *client, p openai.ChatCompletionNewParams, opts ...option.RequestOption) (openai.ChatCompletionAccumulator, []openai.ChatCompletionChunk, error) {
	tb.Helper()
	s := c.Chat.Completions.NewStreaming(tb.Context(), p, opts...)
	defer s.Close()
	var acc openai.ChatCompletionAccumulator
	var chunks []openai.ChatCompletionChunk
	for s.Next() {
		ch := s.Current()
		chunks = append(chunks, ch)
		if !acc.AddChunk(ch) {
			tb.Fatalf("the accumulator refused chunk %d: %s", len(chunks), ch.RawJSON())
		}
	}
	return acc, chunks, s.Err()
}

func TestChatStream(t *testing.T) {
	text := "Grüße aus Zürich! 🌤 " + openaitest.ReplyOfSize(100)
	for _, includeUsage := range []bool{false, true} {
		t.Run(fmt.Sprint("include_usage=", includeUsage), func(t *testing.T) {
			c := serve(t, &openaitest.Upstream{Model: "gpt-4o-mini-2024-07-18", Text: text, ChunkBytes: 7, SystemFingerprint: "fp_s"})
			p := chatParams()
			if includeUsage {
				p.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
			}
			var resp *http.Response
			acc, chunks, err := streamChat(t, c, p, option.WithResponseInto(&resp))
			if err != nil {
				t.Fatal(err)
			}
			last := c.checkLast(t, "POST", "/v1/chat/completions", 200)
			if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream; charset=utf-8" || resp.Header.Get("openai-processing-ms") == "" {
				t.Errorf("headers %v", resp.Header)
			}
			if !bytes.HasSuffix(last.Sent, []byte("\n\ndata: [DONE]\n\n")) || !bytes.HasPrefix(last.Sent, []byte(`data: {"id":"chatcmpl-1","object":"chat.completion.chunk",`)) {
				t.Errorf("stream framing:\n%s", last.Sent)
			}
			// role chunk + ⌈len/7⌉ content chunks (fewer bytes where a character does not fit) + finish (+ usage)
			if n := len(chunks); n < 2+(len(text)+6)/7 || n > 2+len(text)/4 {
				t.Errorf("%d chunks", n)
			}
			cc := acc.ChatCompletion
			if cc.Choices[0].Message.Content != text || cc.Choices[0].FinishReason != "stop" || cc.Model != "gpt-4o-mini-2024-07-18" ||
				member(chunks[0].RawJSON(), "system_fingerprint") != "fp_s" || cc.ID != "chatcmpl-1" {
				t.Errorf("accumulated %+v", cc)
			}
			final := chunks[len(chunks)-1]
			if includeUsage != (len(final.Choices) == 0 && final.Usage.TotalTokens > 0) || includeUsage != (cc.Usage.CompletionTokens > 0) {
				t.Errorf("usage chunk %s", final.RawJSON())
			}
			for _, ch := range chunks[:len(chunks)-1] {
				if includeUsage != strings.Contains(ch.RawJSON(), `"usage":null`) {
					t.Errorf("chunk %s", ch.RawJSON())
				}
			}
		})
	}
}

func TestChatStreamParallelToolCalls(t *testing.T) {
	for _, tc := range []struct {
		name string
		up   *openaitest.Upstream
		want []openaitest.ToolCall
	}{
		{"scripted", &openaitest.Upstream{ToolCalls: parallelCalls, ChunkBytes: 5},
			[]openaitest.ToolCall{parallelCalls[0], parallelCalls[1], {ID: "call_1_2", Name: "get_weather", Arguments: parallelCalls[2].Arguments}}},
		{"offered", &openaitest.Upstream{CallTools: true},
			[]openaitest.ToolCall{{ID: "call_1_0", Name: "get_weather", Arguments: "{}"}, {ID: "call_1_1", Name: "get_time", Arguments: "{}"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := serve(t, tc.up)
			p := chatParams(weatherTool, timeTool)
			p.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
			acc, chunks, err := streamChat(t, c, p)
			if err != nil {
				t.Fatal(err)
			}
			c.checkLast(t, "POST", "/v1/chat/completions", 200)
			msg := acc.Choices[0].Message
			if got := toolCalls(msg.ToolCalls); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("accumulated tool calls %+v, want %+v", got, tc.want)
			}
			if msg.Content != "" || acc.Choices[0].FinishReason != "tool_calls" || acc.Usage.TotalTokens == 0 {
				t.Errorf("accumulated %+v", acc.ChatCompletion)
			}
			// Each call's head (id, name) comes once, in its own chunk after
			// the first, and the arguments come in fragments.
			heads := 0
			for _, ch := range chunks {
				for _, c := range ch.Choices {
					for _, d := range c.Delta.ToolCalls {
						if d.ID != "" {
							heads++
							if d.Function.Name == "" || d.Function.Arguments != "" {
								t.Errorf("head %s", ch.RawJSON())
							}
						} else if d.Function.Name != "" {
							t.Errorf("fragment with a name %s", ch.RawJSON())
						}
					}
				}
			}
			if heads != len(tc.want) {
				t.Errorf("%d heads", heads)
			}
		})
	}
}

func responseParams(tools ...responses.ToolUnionParam) responses.ResponseNewParams {
	return responses.ResponseNewParams{
		Model: "gpt-4.1", Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("What is the weather in Paris?")}, Tools: tools,
	}
}

var (
	weatherFunction = responses.ToolParamOfFunction("get_weather", map[string]any{"type": "object"}, false)
	timeFunction    = responses.ToolParamOfFunction("get_time", map[string]any{"type": "object"}, false)
)

func functionCalls(r *responses.Response) []openaitest.ToolCall {
	var out []openaitest.ToolCall
	for _, it := range r.Output {
		if it.Type == "function_call" {
			fc := it.AsFunctionCall()
			out = append(out, openaitest.ToolCall{ID: fc.CallID, Name: fc.Name, Arguments: fc.Arguments})
		}
	}
	return out
}

func TestResponses(t *testing.T) {
	c := serve(t, &openaitest.Upstream{Model: "gpt-4.1-2025-04-14", CachedTokens: 3})
	r, err := c.Responses.New(t.Context(), responseParams())
	if err != nil {
		t.Fatal(err)
	}
	last := c.checkLast(t, "POST", "/v1/responses", 200)
	if r.RawJSON() != string(last.Sent) || r.ID != "resp_1" || r.Status != "completed" || r.Model != "gpt-4.1-2025-04-14" ||
		r.OutputText() != openaitest.DefaultText || r.Usage.InputTokensDetails.CachedTokens != 3 ||
		r.Usage.TotalTokens != r.Usage.InputTokens+r.Usage.OutputTokens {
		t.Errorf("response %s", r.RawJSON())
	}

	c = serve(t, &openaitest.Upstream{ToolCalls: parallelCalls[:2]})
	r, err = c.Responses.New(t.Context(), responseParams(weatherFunction, timeFunction))
	if err != nil {
		t.Fatal(err)
	}
	if got := functionCalls(r); !reflect.DeepEqual(got, parallelCalls[:2]) || r.OutputText() != "" {
		t.Errorf("function calls %+v in %s", got, r.RawJSON())
	}
}

// streamResponse runs a streamed response and checks the event framing:
// every event named as its type, sequence numbers from 0 on.
func streamResponse(tb testing.TB, c *client, p responses.ResponseNewParams) ([]responses.ResponseStreamEventUnion, error) {
	tb.Helper()
	s := c.Responses.NewStreaming(tb.Context(), p)
	defer s.Close()
	var events []responses.ResponseStreamEventUnion
	for s.Next() {
		ev := s.Current()
		if ev.SequenceNumber != int64(len(events)) {
			tb.Errorf("event %d has sequence number %d", len(events), ev.SequenceNumber)
		}
		events = append(events, ev)
	}
	return events, s.Err()
}

func eventTypes(events []responses.ResponseStreamEventUnion) []string {
	var out []string
	for _, e := range events {
		out = append(out, e.Type)
	}
	return out
}

func TestResponsesStream(t *testing.T) {
	t.Run("text", func(t *testing.T) {
		text := openaitest.ReplyOfSize(40)
		c := serve(t, &openaitest.Upstream{Text: text, ChunkBytes: 16})
		events, err := streamResponse(t, c, responseParams())
		if err != nil {
			t.Fatal(err)
		}
		last := c.checkLast(t, "POST", "/v1/responses", 200)
		if !bytes.HasPrefix(last.Sent, []byte("event: response.created\ndata: {\"type\":\"response.created\",")) {
			t.Errorf("framing %q", last.Sent[:80])
		}
		want := []string{"response.created", "response.in_progress", "response.output_item.added", "response.content_part.added",
			"response.output_text.delta", "response.output_text.delta", "response.output_text.delta",
			"response.output_text.done", "response.content_part.done", "response.output_item.done", "response.completed"}
		if got := eventTypes(events); !reflect.DeepEqual(got, want) {
			t.Fatalf("events %v", got)
		}
		var deltas strings.Builder
		for _, e := range events {
			if e.Type == "response.output_text.delta" {
				deltas.WriteString(e.AsResponseOutputTextDelta().Delta)
			}
		}
		done := events[len(events)-1].AsResponseCompleted().Response
		if deltas.String() != text || events[7].AsResponseOutputTextDone().Text != text || done.OutputText() != text ||
			done.Status != "completed" || done.Usage.OutputTokens == 0 || events[0].AsResponseCreated().Response.Status != "in_progress" {
			t.Errorf("text %q, completed %s", deltas.String(), done.RawJSON())
		}
	})
	t.Run("parallel function calls", func(t *testing.T) {
		c := serve(t, &openaitest.Upstream{ToolCalls: parallelCalls[:2], ChunkBytes: 10})
		events, err := streamResponse(t, c, responseParams(weatherFunction, timeFunction))
		if err != nil {
			t.Fatal(err)
		}
		c.checkLast(t, "POST", "/v1/responses", 200)
		args := map[int64]*strings.Builder{}
		var added, doneArgs []openaitest.ToolCall
		for _, e := range events {
			switch e.Type {
			case "response.output_item.added":
				fc := e.AsResponseOutputItemAdded().Item.AsFunctionCall()
				added = append(added, openaitest.ToolCall{ID: fc.CallID, Name: fc.Name, Arguments: fc.Arguments})
				args[e.OutputIndex] = &strings.Builder{}
			case "response.function_call_arguments.delta":
				args[e.OutputIndex].WriteString(e.AsResponseFunctionCallArgumentsDelta().Delta)
			case "response.function_call_arguments.done":
				d := e.AsResponseFunctionCallArgumentsDone()
				doneArgs = append(doneArgs, openaitest.ToolCall{Arguments: d.Arguments})
				if d.Arguments != args[d.OutputIndex].String() {
					t.Errorf("arguments done %q, deltas %q", d.Arguments, args[d.OutputIndex])
				}
			}
		}
		completed := events[len(events)-1].AsResponseCompleted().Response
		if len(added) != 2 || added[0].ID != "call_weather" || added[1].Name != "get_time" || added[0].Arguments != "" ||
			len(doneArgs) != 2 || !reflect.DeepEqual(functionCalls(&completed), parallelCalls[:2]) {
			t.Errorf("added %+v, done %+v, completed %s", added, doneArgs, completed.RawJSON())
		}
	})
}

func TestEmbeddings(t *testing.T) {
	c := serve(t, &openaitest.Upstream{})
	for _, tc := range []struct {
		name       string
		format     openai.EmbeddingNewParamsEncodingFormat
		dimensions int64
		wantDims   int
	}{
		{"float", openai.EmbeddingNewParamsEncodingFormatFloat, 0, 8},
		{"base64", openai.EmbeddingNewParamsEncodingFormatBase64, 0, 8},
		{"dimensions", openai.EmbeddingNewParamsEncodingFormatFloat, 32, 32},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := openai.EmbeddingNewParams{
				Model: "text-embedding-3-small", Input: openai.EmbeddingNewParamsInputUnion{OfArrayOfStrings: []string{"a", "b", "c"}},
				EncodingFormat: tc.format,
			}
			if tc.dimensions > 0 {
				p.Dimensions = openai.Int(tc.dimensions)
			}
			emb, err := c.Embeddings.New(t.Context(), p)
			if err != nil {
				t.Fatal(err)
			}
			c.checkLast(t, "POST", "/v1/embeddings", 200)
			if emb.Model != "text-embedding-3-small" || len(emb.Data) != 3 || emb.Usage.PromptTokens == 0 {
				t.Fatalf("embeddings %s", emb.RawJSON())
			}
			for i, d := range emb.Data {
				if d.Index != int64(i) || len(d.Embedding) != tc.wantDims || d.Embedding[0] == 0 {
					t.Errorf("embedding %d: %d values", i, len(d.Embedding))
				}
			}
		})
	}
}

func TestModels(t *testing.T) {
	c := serve(t, &openaitest.Upstream{Model: "gpt-4o-2024-08-06"})
	page, err := c.Models.List(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	last := c.checkLast(t, "GET", "/v1/models", 200)
	if len(last.Body) != 0 || len(page.Data) != 2 || page.Data[0].ID != openaitest.DefaultModel || page.Data[1].ID != "gpt-4o-2024-08-06" || page.Data[1].OwnedBy == "" {
		t.Errorf("models %s", page.RawJSON())
	}
	var ids []string
	iter := c.Models.ListAutoPaging(t.Context())
	for iter.Next() {
		ids = append(ids, iter.Current().ID)
	}
	if iter.Err() != nil || len(ids) != 2 {
		t.Errorf("auto-paging %v %v", ids, iter.Err())
	}
}

func TestErrors(t *testing.T) {
	for _, tc := range []struct {
		name       string
		up         *openaitest.Upstream
		opts       []option.RequestOption
		status     int
		typ, code  string
		msgContain string
	}{
		{"rate limit", &openaitest.Upstream{Status: 429, ErrorMessage: "Rate limit reached for gpt-4o"}, nil, 429, "requests", "rate_limit_exceeded", "Rate limit"},
		{"overloaded", &openaitest.Upstream{Status: 503, ErrorMessage: "That model is currently overloaded"}, nil, 503, "server_error", "", "overloaded"},
		{"scripted type", &openaitest.Upstream{Status: 400, ErrorMessage: "context too long", ErrorType: "invalid_request_error", ErrorCode: "context_length_exceeded"}, nil, 400, "invalid_request_error", "context_length_exceeded", "too long"},
		{"wrong key", &openaitest.Upstream{APIKey: "sk-right"}, nil, 401, "invalid_request_error", "invalid_api_key", "Incorrect API key"},
		{"no model", &openaitest.Upstream{}, []option.RequestOption{option.WithJSONDel("model")}, 400, "invalid_request_error", "", "model"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := serve(t, tc.up)
			_, err := c.Chat.Completions.New(t.Context(), chatParams(), tc.opts...)
			var ae *openai.Error
			if !errors.As(err, &ae) {
				t.Fatalf("err %v", err)
			}
			if ae.StatusCode != tc.status || ae.Type != tc.typ || ae.Code != tc.code || !strings.Contains(ae.Message, tc.msgContain) || ae.JSON.Param.Raw() != "null" {
				t.Errorf("error %d %s", ae.StatusCode, ae.RawJSON())
			}
			c.checkLast(t, "POST", "/v1/chat/completions", tc.status)
		})
	}
	t.Run("unknown url", func(t *testing.T) {
		c := serve(t, &openaitest.Upstream{})
		err := c.Post(t.Context(), "assistants/none", map[string]any{}, nil)
		var ae *openai.Error
		if !errors.As(err, &ae) || ae.StatusCode != 404 || ae.Code != "unknown_url" || !strings.Contains(ae.Message, "POST /v1/assistants/none") {
			t.Fatalf("err %v", err)
		}
	})
}

func TestStreamFaults(t *testing.T) {
	t.Run("close", func(t *testing.T) {
		c := serve(t, &openaitest.Upstream{CloseAfterEvents: 3})
		_, chunks, err := streamChat(t, c, chatParams())
		if err == nil || len(chunks) != 3 {
			t.Fatalf("%d chunks, err %v", len(chunks), err)
		}
		if last, _ := c.up.Last(); bytes.Count(last.Sent, []byte("data: ")) != 3 {
			t.Errorf("recorded as sent %q", last.Sent)
		}
	})
	t.Run("error event in chat", func(t *testing.T) {
		c := serve(t, &openaitest.Upstream{ErrorAfterEvents: 2, ErrorMessage: "boom"})
		_, chunks, err := streamChat(t, c, chatParams())
		if err == nil || !strings.Contains(err.Error(), "boom") || len(chunks) != 2 {
			t.Fatalf("%d chunks, err %v", len(chunks), err)
		}
		if last, _ := c.up.Last(); bytes.Contains(last.Sent, []byte("[DONE]")) {
			t.Error("[DONE] after an error")
		}
	})
	t.Run("failed response", func(t *testing.T) {
		c := serve(t, &openaitest.Upstream{ErrorAfterEvents: 3, ErrorMessage: "boom"})
		events, err := streamResponse(t, c, responseParams())
		if err != nil {
			t.Fatal(err)
		}
		if got := eventTypes(events); len(got) != 4 || got[3] != "response.failed" {
			t.Fatalf("events %v", got)
		}
		if r := events[3].AsResponseFailed().Response; r.Status != "failed" || r.Error.Message != "boom" || r.Error.Code != "server_error" {
			t.Errorf("failed %s", r.RawJSON())
		}
	})
	t.Run("hang after events", func(t *testing.T) {
		c := serve(t, &openaitest.Upstream{HangAfterEvents: 2})
		ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
		defer cancel()
		s := c.Chat.Completions.NewStreaming(ctx, chatParams())
		n := 0
		for s.Next() {
			n++
		}
		if n != 2 || !errors.Is(s.Err(), context.DeadlineExceeded) {
			t.Fatalf("%d chunks, err %v", n, s.Err())
		}
	})
	t.Run("hang before headers", func(t *testing.T) {
		c := serve(t, &openaitest.Upstream{HangBeforeHeaders: true})
		ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
		defer cancel()
		if _, err := c.Chat.Completions.New(ctx, chatParams()); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err %v", err)
		}
		if c.up.Count() != 1 {
			t.Errorf("count %d", c.up.Count())
		}
	})
	t.Run("delay", func(t *testing.T) {
		c := serve(t, &openaitest.Upstream{Text: "abcdefgh", ChunkBytes: 2, EventDelay: 5 * time.Millisecond})
		start := time.Now()
		_, chunks, err := streamChat(t, c, chatParams())
		// 6 chunks and [DONE]: 6 pauses
		if d := time.Since(start); err != nil || len(chunks) != 6 || d < 30*time.Millisecond {
			t.Fatalf("%d chunks in %v, err %v", len(chunks), d, err)
		}
	})
}

func TestConcurrent(t *testing.T) {
	u := &openaitest.Upstream{ToolCalls: parallelCalls[:2], Keep: 10}
	c := serve(t, u)
	var wg sync.WaitGroup
	const n = 24
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			var err error
			switch i % 3 {
			case 0:
				_, err = c.Chat.Completions.New(t.Context(), chatParams())
			case 1:
				s := c.Chat.Completions.NewStreaming(t.Context(), chatParams())
				for s.Next() {
				}
				err = s.Err()
			case 2:
				_, err = c.Responses.New(t.Context(), responseParams())
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if u.Count() != n || len(u.Requests()) != 10 {
		t.Errorf("count %d, remembered %d", u.Count(), len(u.Requests()))
	}
	for _, r := range u.Requests() {
		if r.Status != 200 || len(r.Sent) == 0 || !json.Valid(r.Body) {
			t.Errorf("request %+v", r)
		}
	}
}

func TestKeepNone(t *testing.T) {
	u := &openaitest.Upstream{Keep: -1}
	c := serve(t, u)
	if _, err := c.Chat.Completions.New(t.Context(), chatParams()); err != nil {
		t.Fatal(err)
	}
	if _, ok := u.Last(); ok || u.Count() != 1 || len(u.Requests()) != 0 {
		t.Errorf("count %d, remembered %d", u.Count(), len(u.Requests()))
	}
}

// BenchmarkUpstream measures the upstream's own cost per answer, without
// the network: the 2 KiB chat completion and the stream of the gateway's
// benchmarks.
func BenchmarkUpstream(b *testing.B) {
	for _, bc := range []struct{ name, body string }{
		{"body", `{"model":"gpt-bench","messages":[{"role":"user","content":"Say something about foxes."}],"max_tokens":512}`},
		{"stream", `{"model":"gpt-bench","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"Say something about foxes."}]}`},
	} {
		b.Run(bc.name, func(b *testing.B) {
			u := &openaitest.Upstream{Text: openaitest.ReplyOfSize(1800), ChunkBytes: 200, Keep: -1}
			b.ReportAllocs()
			for b.Loop() {
				w := httptest.NewRecorder()
				u.ServeHTTP(w, httptest.NewRequest("POST", "/v1/chat/completions", strings.NewReader(bc.body)))
				if w.Code != 200 {
					b.Fatal(w.Code)
				}
			}
		})
	}
}
