package anthropictest_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/anthropics/anthropic-sdk-go/v2/option"

	"github.com/infertrail/infertrail/capture/anthropic/anthropictest"
)

const testKey = "sk-ant-api03-test-key"

// serve starts u and returns an official SDK client pointed at it.
func serve(tb testing.TB, u *anthropictest.Upstream, opts ...option.RequestOption) anthropic.Client {
	tb.Helper()
	srv := httptest.NewServer(u)
	tb.Cleanup(srv.Close)
	return anthropic.NewClient(append([]option.RequestOption{
		option.WithBaseURL(srv.URL), option.WithAPIKey(testKey), option.WithMaxRetries(0),
	}, opts...)...)
}

var weatherTool = anthropic.ToolUnionParam{OfTool: &anthropic.ToolParam{
	Name:        "get_weather",
	Description: anthropic.String("Current weather at a place"),
	InputSchema: anthropic.ToolInputSchemaParam{
		Properties: map[string]any{
			"location": map[string]any{"type": "string"},
			"unit":     map[string]any{"type": "string", "enum": []string{"celsius", "fahrenheit"}},
			"days":     map[string]any{"type": "integer"},
		},
		Required: []string{"location"},
	},
}}

func params(tools ...anthropic.ToolUnionParam) anthropic.MessageNewParams {
	return anthropic.MessageNewParams{
		Model:     "claude-sonnet-4-5",
		MaxTokens: 1024,
		Messages:  []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("What is the weather in Paris?"))},
		Tools:     tools,
	}
}

// stream runs a streamed request and accumulates it as the SDK does.
func stream(tb testing.TB, c anthropic.Client, p anthropic.MessageNewParams) (anthropic.Message, []string, error) {
	tb.Helper()
	s := c.Messages.NewStreaming(tb.Context(), p)
	defer s.Close()
	var m anthropic.Message
	var types []string
	for s.Next() {
		ev := s.Current()
		types = append(types, ev.Type)
		if err := m.Accumulate(ev); err != nil {
			tb.Fatalf("accumulate %s: %v", ev.Type, err)
		}
	}
	return m, types, s.Err()
}

func TestMessage(t *testing.T) {
	u := &anthropictest.Upstream{Model: "claude-sonnet-4-5-20250929", InputTokens: 21, CacheReadTokens: 7}
	c := serve(t, u)
	m, err := c.Messages.New(t.Context(), params())
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Content) != 1 || m.Content[0].Type != "text" || m.Content[0].Text != anthropictest.DefaultText {
		t.Errorf("content: %+v", m.Content)
	}
	if m.Model != "claude-sonnet-4-5-20250929" || m.StopReason != anthropic.StopReasonEndTurn || m.Role != "assistant" ||
		!strings.HasPrefix(m.ID, "msg_") || m.Usage.InputTokens != 21 || m.Usage.CacheReadInputTokens != 7 || m.Usage.OutputTokens < 1 ||
		m.Usage.ServiceTier != "standard" {
		t.Errorf("message: %+v", m)
	}
	r, ok := u.Last()
	if !ok {
		t.Fatal("no request recorded")
	}
	// This SDK sends its API key as a bearer token.
	if r.Method != "POST" || r.Path != "/v1/messages" || r.Header.Get("Authorization") != "Bearer "+testKey ||
		r.Header.Get("Anthropic-Version") == "" || r.Stream || r.Status != 200 {
		t.Errorf("request: %+v", r)
	}
	var body struct{ Model string }
	if json.Unmarshal(r.Body, &body) != nil || body.Model != "claude-sonnet-4-5" {
		t.Errorf("body: %s", r.Body)
	}
	// The SDK keeps the body it got: it is the bytes recorded as sent.
	if m.RawJSON() != string(r.Sent) {
		t.Errorf("sent %s\nSDK got %s", r.Sent, m.RawJSON())
	}
	if r.ResponseHeader.Get("Content-Type") != "application/json" || !strings.HasPrefix(r.ResponseHeader.Get("request-id"), "req_") {
		t.Errorf("response headers: %v", r.ResponseHeader)
	}
}

func TestStreamToolUse(t *testing.T) {
	u := &anthropictest.Upstream{Text: "Let me check the weather in Paris for you.", ChunkBytes: 7}
	c := serve(t, u)
	m, types, err := stream(t, c, params(weatherTool))
	if err != nil {
		t.Fatal(err)
	}
	wantTypes := []string{"message_start", "content_block_start", "content_block_delta"}
	if !reflect.DeepEqual(types[:3], wantTypes) || types[len(types)-1] != "message_stop" || types[len(types)-2] != "message_delta" {
		t.Errorf("events: %v", types)
	}
	if len(m.Content) != 2 || m.Content[0].Text != u.Text {
		t.Fatalf("content: %+v", m.Content)
	}
	tu := m.Content[1]
	if tu.Type != "tool_use" || tu.Name != "get_weather" || !strings.HasPrefix(tu.ID, "toolu_") {
		t.Errorf("tool_use: %+v", tu)
	}
	var in map[string]any
	if err := json.Unmarshal(tu.Input, &in); err != nil {
		t.Fatalf("input %s: %v", tu.Input, err)
	}
	if !reflect.DeepEqual(in, map[string]any{"days": 1.0, "location": "example location", "unit": "celsius"}) {
		t.Errorf("input: %s", tu.Input)
	}
	if m.StopReason != anthropic.StopReasonToolUse || m.Usage.OutputTokens < 2 || m.Usage.InputTokens < 1 {
		t.Errorf("message: stop %s, usage %+v", m.StopReason, m.Usage)
	}
	r, _ := u.Last()
	if !r.Stream || r.Status != 200 || r.Events != len(types)+1 /* and a ping */ ||
		r.ResponseHeader.Get("Content-Type") != "text/event-stream; charset=utf-8" {
		t.Errorf("request: stream %v status %d events %d headers %v", r.Stream, r.Status, r.Events, r.ResponseHeader)
	}
	// Every event is "event: X" then "data: {…"type":"X"…}" and a blank line.
	events := strings.Split(strings.TrimSuffix(string(r.Sent), "\n\n"), "\n\n")
	if len(events) != r.Events {
		t.Fatalf("%d events in %q", len(events), r.Sent)
	}
	fragments := 0
	for _, e := range events {
		name, data, ok := strings.Cut(e, "\n")
		var d struct{ Type string }
		if !ok || !strings.HasPrefix(name, "event: ") || !strings.HasPrefix(data, "data: {") ||
			json.Unmarshal([]byte(data[6:]), &d) != nil || d.Type != name[7:] {
			t.Errorf("event %q", e)
		}
		if strings.Contains(data, `"input_json_delta"`) {
			fragments++
		}
	}
	if fragments < 3 {
		t.Errorf("the tool input came in %d fragments", fragments)
	}

	// The same script not streamed gives the same message.
	n, err := c.Messages.New(t.Context(), params(weatherTool))
	if err != nil {
		t.Fatal(err)
	}
	if n.Content[0].Text != m.Content[0].Text || n.Content[1].Name != tu.Name || string(n.Content[1].Input) != string(tu.Input) ||
		n.StopReason != m.StopReason || n.Usage.OutputTokens != m.Usage.OutputTokens {
		t.Errorf("not streamed: %+v\nstreamed: %+v", n, m)
	}
}

func TestThinkingAndScriptedTools(t *testing.T) {
	u := &anthropictest.Upstream{
		Thinking:  "The user wants Paris weather — call the tool.",
		ToolCalls: []anthropictest.ToolCall{{ID: "toolu_01A", Name: "lookup", Input: `{"q":"Paris \"centre\""}`}, {Name: "second"}},
	}
	c := serve(t, u)
	m, _, err := stream(t, c, params())
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Content) != 4 || m.Content[0].Type != "thinking" || m.Content[0].Thinking != u.Thinking || m.Content[0].Signature == "" ||
		m.Content[2].ID != "toolu_01A" || string(m.Content[2].Input) != `{"q":"Paris \"centre\""}` ||
		m.Content[3].Name != "second" || string(m.Content[3].Input) != "{}" {
		t.Errorf("content: %+v", m.Content)
	}
}

func TestAutoToolUse(t *testing.T) {
	other := anthropic.ToolUnionParam{OfTool: &anthropic.ToolParam{Name: "get_time", InputSchema: anthropic.ToolInputSchemaParam{}}}
	for _, tc := range []struct {
		name string
		edit func(*anthropic.MessageNewParams)
		want string // the tool called, "" for none
	}{
		{"first tool", func(p *anthropic.MessageNewParams) {}, "get_weather"},
		{"named tool", func(p *anthropic.MessageNewParams) {
			p.ToolChoice = anthropic.ToolChoiceParamOfTool("get_time")
		}, "get_time"},
		{"none", func(p *anthropic.MessageNewParams) {
			p.ToolChoice = anthropic.ToolChoiceUnionParam{OfNone: &anthropic.ToolChoiceNoneParam{}}
		}, ""},
		{"after tool results", func(p *anthropic.MessageNewParams) {
			p.Messages = append(p.Messages,
				anthropic.NewAssistantMessage(anthropic.NewToolUseBlock("toolu_1", map[string]any{"location": "Paris"}, "get_weather")),
				anthropic.NewUserMessage(anthropic.NewToolResultBlock("toolu_1", "12°C, cloudy", false)))
		}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := serve(t, &anthropictest.Upstream{})
			p := params(weatherTool, other)
			tc.edit(&p)
			m, err := c.Messages.New(t.Context(), p)
			if err != nil {
				t.Fatal(err)
			}
			got := ""
			for _, b := range m.Content {
				if b.Type == "tool_use" {
					got = b.Name
				}
			}
			if got != tc.want {
				t.Errorf("called %q, want %q", got, tc.want)
			}
		})
	}
}

func TestTextBytes(t *testing.T) {
	c := serve(t, &anthropictest.Upstream{TextBytes: 2048})
	m, _, err := stream(t, c, params())
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Content[0].Text) != 2048 {
		t.Errorf("reply is %d bytes", len(m.Content[0].Text))
	}
}

func TestErrors(t *testing.T) {
	for _, tc := range []struct {
		status int
		typ    string
	}{
		{400, "invalid_request_error"}, {401, "authentication_error"}, {404, "not_found_error"},
		{413, "request_too_large"}, {429, "rate_limit_error"}, {500, "api_error"}, {529, "overloaded_error"},
	} {
		t.Run(tc.typ, func(t *testing.T) {
			u := &anthropictest.Upstream{Status: tc.status, ErrorMessage: "scripted failure"}
			c := serve(t, u)
			for _, streamed := range []bool{false, true} {
				var err error
				if streamed {
					_, _, err = stream(t, c, params())
				} else {
					_, err = c.Messages.New(t.Context(), params())
				}
				var ae *anthropic.Error
				if !errors.As(err, &ae) || ae.StatusCode != tc.status || string(ae.Type()) != tc.typ || ae.Message != "scripted failure" ||
					!strings.HasPrefix(ae.RequestID, "req_") {
					t.Errorf("streamed %v: %v", streamed, err)
				}
			}
		})
	}
}

func TestRefusals(t *testing.T) {
	c := serve(t, &anthropictest.Upstream{APIKey: "right"})
	_, err := c.Messages.New(t.Context(), params())
	var ae *anthropic.Error
	if !errors.As(err, &ae) || ae.StatusCode != 401 || ae.Type() != "authentication_error" {
		t.Errorf("wrong key: %v", err)
	}
	c = serve(t, &anthropictest.Upstream{APIKey: testKey})
	if _, err := c.Messages.New(t.Context(), params()); err != nil {
		t.Errorf("right key: %v", err)
	}
	srv := httptest.NewServer(&anthropictest.Upstream{})
	defer srv.Close()
	for _, tc := range []struct {
		method, path, body string
		status             int
		typ                string
	}{
		{"POST", "/v1/messages", `{"model":`, 400, "invalid_request_error"},
		{"POST", "/v1/messages", `{"max_tokens":1}`, 400, "invalid_request_error"},
		{"POST", "/v1/complete", `{}`, 404, "not_found_error"},
		{"GET", "/v1/messages", ``, 404, "not_found_error"},
	} {
		req, _ := http.NewRequest(tc.method, srv.URL+tc.path, strings.NewReader(tc.body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var e struct {
			Type  string
			Error struct{ Type, Message string }
		}
		json.NewDecoder(resp.Body).Decode(&e)
		resp.Body.Close()
		if resp.StatusCode != tc.status || e.Type != "error" || e.Error.Type != tc.typ || e.Error.Message == "" {
			t.Errorf("%s %s %s: %d %+v", tc.method, tc.path, tc.body, resp.StatusCode, e)
		}
	}
}

func TestOtherEndpoints(t *testing.T) {
	u := &anthropictest.Upstream{InputTokens: 42}
	c := serve(t, u)
	n, err := c.Messages.CountTokens(t.Context(), anthropic.MessageCountTokensParams{
		Model:    "claude-sonnet-4-5",
		Messages: params().Messages,
	})
	if err != nil || n.InputTokens != 42 {
		t.Errorf("count tokens: %+v, %v", n, err)
	}
	page, err := c.Models.List(t.Context(), anthropic.ModelListParams{})
	if err != nil || len(page.Data) != 1 || page.Data[0].ID == "" {
		t.Errorf("models: %+v, %v", page, err)
	}
}

func TestStreamFaults(t *testing.T) {
	t.Run("error event", func(t *testing.T) {
		u := &anthropictest.Upstream{ErrorAfterEvents: 3}
		m, types, err := stream(t, serve(t, u), params())
		var ae *anthropic.Error
		if !errors.As(err, &ae) || ae.Type() != "overloaded_error" || ae.Message != "Overloaded" {
			t.Errorf("err %v", err)
		}
		// message_start, content_block_start, ping (not shown by the SDK).
		if !reflect.DeepEqual(types, []string{"message_start", "content_block_start"}) || m.ID == "" {
			t.Errorf("events %v", types)
		}
		if r, _ := u.Last(); r.Events != 4 || !strings.HasSuffix(string(r.Sent), "\n\nevent: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"},\"request_id\":\""+r.ResponseHeader.Get("request-id")+"\"}\n\n") {
			t.Errorf("sent %q", r.Sent)
		}
	})
	t.Run("connection closed", func(t *testing.T) {
		u := &anthropictest.Upstream{CloseAfterEvents: 5}
		_, types, err := stream(t, serve(t, u), params())
		if err == nil || len(types) != 4 {
			t.Errorf("err %v, events %v", err, types)
		}
		if r, _ := u.Last(); r.Events != 5 {
			t.Errorf("sent %d events", r.Events)
		}
	})
	t.Run("hang before headers", func(t *testing.T) {
		u := &anthropictest.Upstream{HangBeforeHeaders: true}
		c := serve(t, u)
		ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
		defer cancel()
		_, err := c.Messages.New(ctx, params())
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("err %v", err)
		}
		if r, _ := u.Last(); r.Status != 0 || r.Sent != nil {
			t.Errorf("answered %d %q", r.Status, r.Sent)
		}
	})
	t.Run("hang after events", func(t *testing.T) {
		u := &anthropictest.Upstream{HangAfterEvents: 2}
		c := serve(t, u)
		ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
		defer cancel()
		s := c.Messages.NewStreaming(ctx, params())
		n := 0
		for s.Next() {
			n++
		}
		if n != 2 || !errors.Is(s.Err(), context.DeadlineExceeded) {
			t.Errorf("%d events, err %v", n, s.Err())
		}
		s.Close()
	})
	t.Run("delay", func(t *testing.T) {
		u := &anthropictest.Upstream{EventDelay: 2 * time.Millisecond, Text: "short"}
		start := time.Now()
		if _, _, err := stream(t, serve(t, u), params()); err != nil {
			t.Fatal(err)
		}
		r, _ := u.Last()
		if d := time.Since(start); d < time.Duration(r.Events)*2*time.Millisecond {
			t.Errorf("%d events took %v", r.Events, d)
		}
	})
}

func TestConcurrentAndKeep(t *testing.T) {
	u := &anthropictest.Upstream{Keep: 10}
	c := serve(t, u)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 5 {
				if _, _, err := stream(t, c, params(weatherTool)); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	if u.Count() != 20 || len(u.Requests()) != 10 {
		t.Errorf("count %d, kept %d", u.Count(), len(u.Requests()))
	}
	ids := map[string]bool{}
	for _, r := range u.Requests() {
		id := r.ResponseHeader.Get("request-id")
		if ids[id] {
			t.Errorf("request id %s twice", id)
		}
		ids[id] = true
	}
	u.Reset()
	if len(u.Requests()) != 0 {
		t.Error("Reset kept requests")
	}
}

func BenchmarkStream(b *testing.B) {
	u := &anthropictest.Upstream{TextBytes: 2048, Keep: -1}
	srv := httptest.NewServer(u)
	defer srv.Close()
	body := `{"model":"claude-sonnet-4-5","max_tokens":1024,"stream":true,"messages":[{"role":"user","content":"Hi"}]}`
	for b.Loop() {
		resp, err := http.Post(srv.URL+"/v1/messages", "application/json", strings.NewReader(body))
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}
