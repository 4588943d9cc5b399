package anthropic

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/infertrail/infertrail"
	"github.com/infertrail/infertrail/capture/gateway"
)

func TestParseRequest(t *testing.T) {
	for _, tc := range []struct {
		name string
		body string
		want gateway.Call
	}{
		{"minimal", `{"model":"claude-sonnet-4-5","max_tokens":1024,"messages":[{"role":"user","content":"Hello"}]}`,
			gateway.Call{Model: "claude-sonnet-4-5", Attributes: map[string]any{"gen_ai.request.max_tokens": int64(1024)}}},
		{"every parameter", `{
			"model": "claude-opus-4-1-20250805", "stream": true, "max_tokens": 4096,
			"temperature": 0.2, "top_p": 0.9, "top_k": 40, "stop_sequences": ["</answer>", "STOP"],
			"system": "You approve invoices.",
			"messages": [{"role": "user", "content": [{"type": "text", "text": "Pay invoice 7"}]}],
			"tools": [{"name": "approve_payment", "description": "Approve", "input_schema": {"type": "object"}},
			          {"type": "web_search_20250305", "name": "web_search", "max_uses": 3}],
			"tool_choice": {"type": "tool", "name": "approve_payment", "disable_parallel_tool_use": true},
			"thinking": {"type": "enabled", "budget_tokens": 2048},
			"metadata": {"user_id": "6f1c9d2e"},
			"service_tier": "standard_only", "inference_geo": "us", "speed": "fast",
			"output_config": {"effort": "high", "format": {"type": "json_schema", "schema": {"type": "object"}}}
		}`, gateway.Call{Model: "claude-opus-4-1-20250805", Stream: true, Attributes: map[string]any{
			"gen_ai.request.max_tokens":                               int64(4096),
			"gen_ai.request.temperature":                              0.2,
			"gen_ai.request.top_p":                                    0.9,
			"gen_ai.request.top_k":                                    40.0,
			"gen_ai.request.stop_sequences":                           []string{"</answer>", "STOP"},
			"gen_ai.request.tool_names":                               []string{"approve_payment", "web_search"},
			"anthropic.request.tool_choice.type":                      "tool",
			"anthropic.request.tool_choice.name":                      "approve_payment",
			"anthropic.request.tool_choice.disable_parallel_tool_use": true,
			"anthropic.request.thinking.type":                         "enabled",
			"anthropic.request.thinking.budget_tokens":                int64(2048),
			"anthropic.request.metadata.user_id":                      "6f1c9d2e",
			"anthropic.request.service_tier":                          "standard_only",
			"anthropic.request.inference_geo":                         "us",
			"anthropic.request.speed":                                 "fast",
			"anthropic.request.output_config.effort":                  "high",
			"anthropic.request.output_config.format.type":             "json_schema",
			"gen_ai.output.type":                                      "json",
		}}},
		{"parameters of the wrong type are left out", `{"model":"m","stream":"yes","max_tokens":null,"temperature":"hot","top_k":[1],
			"stop_sequences":"STOP","tools":{"name":"x"},"tool_choice":"auto","thinking":{"type":7},"metadata":[],"service_tier":1,"output_config":"high"}`,
			gateway.Call{Model: "m"}},
		{"leading space", " \n{\"model\":\"m\",\"stream\":false}", gateway.Call{Model: "m"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Provider{}.ParseRequest(chat, []byte(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got  %#v\nwant %#v", got, tc.want)
			}
			// What the gateway keeps in clear must marshal.
			if _, err := json.Marshal(got.Attributes); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestParseRequestBounds(t *testing.T) {
	var tools []string
	for i := range 200 {
		tools = append(tools, fmt.Sprintf(`{"name":"tool_%d","input_schema":{"type":"object"}}`, i))
	}
	long := strings.Repeat("é", 300)
	body := fmt.Sprintf(`{"model":"m","tools":[%s],"stop_sequences":[%q],"metadata":{"user_id":%q}}`, strings.Join(tools, ","), long, long)
	c, err := Provider{}.ParseRequest(chat, []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	names := c.Attributes["gen_ai.request.tool_names"].([]string)
	if len(names) != maxListItems || names[127] != "tool_127" || c.Attributes["anthropic.request.tool_count"] != 200 {
		t.Errorf("tool names: %d, count %v", len(names), c.Attributes["anthropic.request.tool_count"])
	}
	for _, s := range []string{c.Attributes["gen_ai.request.stop_sequences"].([]string)[0], c.Attributes["anthropic.request.metadata.user_id"].(string)} {
		if len(s) != 256 || !strings.HasPrefix(long, s) {
			t.Errorf("not clipped to 256 bytes on a character boundary: %d bytes", len(s))
		}
	}
	b, _ := json.Marshal(c.Attributes)
	if len(b) > 16<<10 {
		t.Errorf("attributes are %d bytes", len(b))
	}
}

func TestParseRequestInvalid(t *testing.T) {
	for _, tc := range []struct{ body, says string }{
		{"", "empty"},
		{"  \n", "empty"},
		{"not json", "not valid JSON"},
		{`{"model":"m"`, "not valid JSON"},
		{`{"model":"m"} x`, "not valid JSON"},
		{`[{"model":"m"}]`, "not an object"},
		{`null`, "not an object"},
		{`"model"`, "not an object"},
		{`{}`, "model: field required"},
		{`{"model":null,"max_tokens":1}`, "model: field required"},
		{`{"model":42}`, "model: want a string"},
		{`{"model":{"id":"m"}}`, "model: want a string"},
		{`{"model":""}`, "model: is empty"},
	} {
		t.Run(tc.body, func(t *testing.T) {
			_, err := Provider{}.ParseRequest(chat, []byte(tc.body))
			if !errors.Is(err, infertrail.ErrInvalid) || !strings.Contains(err.Error(), tc.says) {
				t.Errorf("got %v, want ErrInvalid saying %q", err, tc.says)
			}
		})
	}
}

func TestParseRequestOtherEndpoints(t *testing.T) {
	eps := Provider{}.Endpoints()
	c, err := Provider{}.ParseRequest(eps[2], nil)
	if err != nil || !reflect.DeepEqual(c, gateway.Call{}) {
		t.Errorf("list models: %+v, %v", c, err)
	}
	c, err = Provider{}.ParseRequest(eps[1], []byte(`{"model":"m","messages":[]}`))
	if err != nil || c.Model != "m" {
		t.Errorf("count tokens: %+v, %v", c, err)
	}
	if _, err := (Provider{}).ParseRequest(eps[1], []byte(`{}`)); !errors.Is(err, infertrail.ErrInvalid) {
		t.Errorf("count tokens without a model: %v", err)
	}
}

func TestEndpoints(t *testing.T) {
	want := []gateway.Endpoint{
		{Method: "POST", Path: "/v1/messages", Operation: "chat", Kind: infertrail.KindInference},
		{Method: "POST", Path: "/v1/messages/count_tokens", Operation: "count_tokens", Kind: infertrail.KindDownstreamCall},
		{Method: "GET", Path: "/v1/models", Operation: "list_models", Kind: infertrail.KindDownstreamCall},
	}
	if got := (Provider{}).Endpoints(); !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v", got)
	}
	if (Provider{}).Name() != "anthropic" {
		t.Error("name")
	}
}

func TestCredential(t *testing.T) {
	for _, tc := range []struct {
		name string
		h    http.Header
		want string
	}{
		{"x-api-key", http.Header{"X-Api-Key": {"sk-ant-api03-abc"}}, "sk-ant-api03-abc"},
		{"bearer", http.Header{"Authorization": {"Bearer sk-ant-oat01-xyz"}}, "sk-ant-oat01-xyz"},
		{"bearer in lower case", http.Header{"Authorization": {"bearer tok"}}, "tok"},
		{"x-api-key wins", http.Header{"X-Api-Key": {"key"}, "Authorization": {"Bearer tok"}}, "key"},
		{"basic is not a key", http.Header{"Authorization": {"Basic dXNlcjpwYXNz"}}, ""},
		{"none", http.Header{}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := (Provider{}).Credential(tc.h); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestSetCredential(t *testing.T) {
	h := http.Header{"Authorization": {"Bearer caller"}, "X-Api-Key": {"caller"}, "Anthropic-Version": {"2023-06-01"}}
	Provider{}.SetCredential(h, "sk-ant-upstream")
	want := http.Header{"X-Api-Key": {"sk-ant-upstream"}, "Anthropic-Version": {"2023-06-01"}}
	if !reflect.DeepEqual(h, want) {
		t.Errorf("got %v", h)
	}
	Provider{}.SetCredential(h, "")
	if !reflect.DeepEqual(h, http.Header{"Anthropic-Version": {"2023-06-01"}}) {
		t.Errorf("empty key: got %v", h)
	}
}

func TestErrorBody(t *testing.T) {
	for status, typ := range map[int]string{
		400: "invalid_request_error", 401: "authentication_error", 402: "billing_error", 403: "permission_error",
		404: "not_found_error", 405: "invalid_request_error", 413: "request_too_large", 429: "rate_limit_error",
		500: "api_error", 502: "api_error", 503: "overloaded_error", 504: "timeout_error", 529: "overloaded_error",
	} {
		msg := fmt.Sprintf(`status %d: "quoted" <tag> & ünïcode`, status)
		var got struct {
			Type  string `json:"type"`
			Error struct {
				Type    string `json:"type"`
				Message string `json:"message"`
			} `json:"error"`
		}
		b := Provider{}.ErrorBody(status, msg)
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatalf("%d: %v: %s", status, err, b)
		}
		if got.Type != "error" || got.Error.Type != typ || got.Error.Message != msg {
			t.Errorf("%d: got %s, want type %s", status, b, typ)
		}
		// The gateway's own errors are read back like Anthropic's.
		r := Provider{}.NewResponse(chat, &gateway.Call{}, 1<<10)
		r.Body(status, b)
		if res := r.Result(); !strings.Contains(string(res.Error), typ) {
			t.Errorf("%d: reconstructed error %s", status, res.Error)
		}
	}
}
