package openai

import (
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/infertrail/infertrail"
	"github.com/infertrail/infertrail/capture/gateway"
)

// feed splits an SSE transcript into events (blank-line separated, with
// optional "event:" lines) and feeds them to rc.
func feed(tb testing.TB, rc gateway.Reconstructor, transcript string) {
	tb.Helper()
	for _, block := range strings.Split(transcript, "\n\n") {
		var name, data string
		for _, line := range strings.Split(block, "\n") {
			switch {
			case strings.HasPrefix(line, "event: "):
				name = line[7:]
			case strings.HasPrefix(line, "data: "):
				data = line[6:]
			}
		}
		if data != "" {
			rc.Event(name, []byte(data))
		}
	}
}

func endpoint(path string) gateway.Endpoint {
	for _, ep := range (Provider{}).Endpoints() {
		if ep.Path == path {
			return ep
		}
	}
	panic(path)
}

func read(tb testing.TB, name string) string {
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		tb.Fatal(err)
	}
	return string(b)
}

func TestChatStreamParallelToolCalls(t *testing.T) {
	rc := Provider{}.NewResponse(endpoint(PathChat), &gateway.Call{}, 1<<20)
	feed(t, rc, read(t, "chat_parallel_tools.sse"))
	res := rc.Result()
	want := []gateway.ToolCall{{ID: "call_a", Name: "get_weather", Arguments: `{"city": "Paris"}`}, {ID: "call_b", Name: "get_time", Arguments: `{"tz": "CET"}`}}
	if !reflect.DeepEqual(res.ToolCalls, want) {
		t.Errorf("tool calls %+v", res.ToolCalls)
	}
	if res.ID != "chatcmpl-9x" || res.Model != "gpt-4o-2024-08-06" || res.SystemFingerprint != "fp_abc" || !res.Done || res.Truncated ||
		!reflect.DeepEqual(res.FinishReasons, []string{"tool_calls"}) ||
		!reflect.DeepEqual(res.Usage, map[string]int64{usageInput: 82, usageOutput: 40, usageCacheRead: 64, usageReasoning: 0}) {
		t.Errorf("result %+v", res)
	}
	var body struct {
		Object  string `json:"object"`
		Choices []struct {
			Message struct {
				Content   *string `json:"content"`
				ToolCalls []struct {
					ID       string                     `json:"id"`
					Function struct{ Arguments string } `json:"function"`
				} `json:"tool_calls"`
			} `json:"message"`
			FinishReason string `json:"finish_reason"`
		} `json:"choices"`
		Usage struct {
			TotalTokens int `json:"total_tokens"`
		} `json:"usage"`
	}
	if err := json.Unmarshal(res.Body, &body); err != nil || body.Object != "chat.completion" || len(body.Choices) != 1 ||
		body.Choices[0].Message.Content != nil || len(body.Choices[0].Message.ToolCalls) != 2 ||
		body.Choices[0].Message.ToolCalls[0].Function.Arguments != `{"city": "Paris"}` || body.Usage.TotalTokens != 122 {
		t.Errorf("body %s", res.Body)
	}
}

func TestChatStreamBrokenAndTruncated(t *testing.T) {
	full := read(t, "chat_parallel_tools.sse")
	broken := full[:strings.Index(full, `"finish_reason":"tool_calls"`)]
	broken = broken[:strings.LastIndex(broken, "\n\n")]
	rc := Provider{}.NewResponse(endpoint(PathChat), &gateway.Call{}, 1<<20)
	feed(t, rc, broken)
	if res := rc.Result(); res.Done || len(res.ToolCalls) != 2 || res.ToolCalls[1].Arguments != `{"tz": "CET"}` || res.FinishReasons != nil {
		t.Errorf("broken stream %+v", res)
	}
	rc = Provider{}.NewResponse(endpoint(PathChat), &gateway.Call{}, 20)
	feed(t, rc, full)
	res := rc.Result()
	if !res.Truncated || res.Usage[usageOutput] != 40 || res.ToolCalls[0].ID != "call_a" || len(res.ToolCalls[1].Arguments) > 20 {
		t.Errorf("truncated %+v", res)
	}
}

func TestChatStreamErrorEvent(t *testing.T) {
	rc := Provider{}.NewResponse(endpoint(PathChat), &gateway.Call{}, 1<<20)
	feed(t, rc, `data: {"id":"c","object":"chat.completion.chunk","model":"m","choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}]}

data: {"error":{"message":"The server had an error","type":"server_error","param":null,"code":null}}

data: not json

`)
	res := rc.Result()
	if res.Done || !strings.Contains(string(res.Error), "server_error") || res.Attributes[attrMalformed] != 1 || !strings.Contains(string(res.Body), `"content":"Hi"`) {
		t.Errorf("result %+v body %s", res, res.Body)
	}
}

func TestResponsesStreamBroken(t *testing.T) {
	rc := Provider{}.NewResponse(endpoint(PathResponses), &gateway.Call{}, 1<<20)
	feed(t, rc, read(t, "responses_broken.sse"))
	res := rc.Result()
	if res.Done || res.ID != "resp_1" || res.Model != "gpt-4.1-2025-04-14" ||
		!reflect.DeepEqual(res.ToolCalls, []gateway.ToolCall{{ID: "call_x", Name: "pay_invoice", Arguments: `{"invoice":`}}) {
		t.Errorf("result %+v", res)
	}
	var body struct {
		Output []struct {
			Type      string                  `json:"type"`
			Arguments string                  `json:"arguments"`
			Content   []struct{ Text string } `json:"content"`
		} `json:"output"`
	}
	if err := json.Unmarshal(res.Body, &body); err != nil || len(body.Output) != 2 || body.Output[0].Content[0].Text != "Let me check." ||
		body.Output[1].Arguments != `{"invoice":` {
		t.Errorf("assembled body %s", res.Body)
	}
}

func TestBodies(t *testing.T) {
	for _, tc := range []struct {
		name, path, body string
		status           int
		check            func(gateway.Response) bool
	}{
		{"chat", PathChat, `{"id":"c1","object":"chat.completion","model":"gpt-x","system_fingerprint":"fp","choices":[{"index":0,"message":{"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"f","arguments":"{}"}}]},"finish_reason":"tool_calls"}],"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}`, 200,
			func(r gateway.Response) bool {
				return r.ID == "c1" && r.Model == "gpt-x" && r.ToolCalls[0].ID == "call_1" && r.Usage[usageOutput] == 4 && r.FinishReasons[0] == "tool_calls" && r.Done
			}},
		{"responses", PathResponses, `{"id":"resp_2","object":"response","status":"incomplete","incomplete_details":{"reason":"max_output_tokens"},"model":"gpt-y","output":[{"type":"function_call","call_id":"call_9","name":"g","arguments":"{\"a\":1}"}],"usage":{"input_tokens":5,"output_tokens":6,"output_tokens_details":{"reasoning_tokens":2}}}`, 200,
			func(r gateway.Response) bool {
				return r.ID == "resp_2" && r.FinishReasons[0] == "max_output_tokens" && r.ToolCalls[0].ID == "call_9" && r.Usage[usageReasoning] == 2
			}},
		{"embeddings", PathEmbeddings, `{"object":"list","data":[],"model":"text-embedding-3-small","usage":{"prompt_tokens":8,"total_tokens":8}}`, 200,
			func(r gateway.Response) bool { return r.Model == "text-embedding-3-small" && r.Usage[usageInput] == 8 }},
		{"error", PathChat, `{"error":{"message":"nope","type":"invalid_request_error","param":null,"code":null}}`, 400,
			func(r gateway.Response) bool { return strings.Contains(string(r.Error), "nope") }},
		{"not json", PathChat, `<html>bad gateway</html>`, 502,
			func(r gateway.Response) bool {
				var s string
				return json.Unmarshal(r.Body, &s) == nil && s == "<html>bad gateway</html>" && r.Error == nil
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rc := Provider{}.NewResponse(endpoint(tc.path), &gateway.Call{}, 1<<20)
			rc.Body(tc.status, []byte(tc.body))
			if res := rc.Result(); !tc.check(res) {
				t.Errorf("result %+v", res)
			}
		})
	}
}

func TestParseRequest(t *testing.T) {
	for _, tc := range []struct{ body, want string }{
		{``, "empty"},
		{`[1]`, "not a JSON object"},
		{`{"model":`, "not valid JSON"},
		{`{"messages":[]}`, `no "model"`},
		{`{"model":7}`, `"model" must be a non-empty string`},
		{`{"model":""}`, `"model" must be a non-empty string`},
	} {
		_, err := Provider{}.ParseRequest(endpoint(PathChat), []byte(tc.body))
		if !errors.Is(err, infertrail.ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %q", tc.body, err, tc.want)
		}
	}
	c, err := Provider{}.ParseRequest(endpoint(PathChat), []byte(`{"model":"gpt-4o","stream":true,"max_completion_tokens":100,"temperature":"hot",
		"stop":"END","tools":[{"type":"function","function":{"name":"pay"}}],"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"secret prompt"}]}`))
	if err != nil || c.Model != "gpt-4o" || !c.Stream || string(c.Attributes["gen_ai.request.max_tokens"].(json.RawMessage)) != "100" ||
		c.Attributes["gen_ai.request.temperature"] != nil || !reflect.DeepEqual(c.Attributes["gen_ai.request.stop_sequences"], []string{"END"}) ||
		!reflect.DeepEqual(c.Attributes["gen_ai.request.tool_names"], []string{"pay"}) || c.Attributes["openai.request.stream_include_usage"] != true {
		t.Errorf("call %+v %v", c, err)
	}
	for _, v := range c.Attributes {
		if b, _ := json.Marshal(v); strings.Contains(string(b), "secret prompt") {
			t.Error("message content in attributes")
		}
	}
}

func TestCredentialsAndErrors(t *testing.T) {
	h := http.Header{}
	h.Set("api-key", "azure-key")
	if got := (Provider{}).Credential(h); got != "azure-key" {
		t.Errorf("api-key: %q", got)
	}
	Provider{}.SetCredential(h, "sk-new")
	if h.Get("api-key") != "" || h.Get("Authorization") != "Bearer sk-new" || (Provider{}).Credential(h) != "sk-new" {
		t.Errorf("after SetCredential %v", h)
	}
	for status, typ := range map[int]string{400: "invalid_request_error", 401: "invalid_request_error", 413: "invalid_request_error", 503: "server_error", 504: "server_error"} {
		var e struct {
			Error struct{ Message, Type string } `json:"error"`
		}
		if json.Unmarshal(Provider{}.ErrorBody(status, "why"), &e) != nil || e.Error.Type != typ || e.Error.Message != "why" {
			t.Errorf("%d: %+v", status, e)
		}
	}
}

func FuzzReconstruct(f *testing.F) {
	f.Add([]byte(`{"choices":[{"index":0,"delta":{"tool_calls":[{"index":3,"function":{"arguments":"x"}}]}}]}`), "")
	f.Add([]byte(`{"type":"response.output_text.delta","output_index":2,"content_index":1,"delta":"y"}`), "response.output_text.delta")
	f.Fuzz(func(t *testing.T, data []byte, name string) {
		for _, path := range []string{PathChat, PathResponses} {
			rc := Provider{}.NewResponse(endpoint(path), &gateway.Call{}, 256)
			rc.Event(name, data)
			rc.Event(name, data)
			if res := rc.Result(); res.Body != nil && !json.Valid(res.Body) {
				t.Fatalf("%s: body is not JSON: %s", path, res.Body)
			}
		}
	})
}
