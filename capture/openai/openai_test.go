package openai

import (
	"encoding/json"
	"errors"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/infertrail/infertrail"
	"github.com/infertrail/infertrail/capture/gateway"
)

func TestParseRequestErrors(t *testing.T) {
	for _, tc := range []struct{ body, want string }{
		{``, "empty"},
		{`  `, "empty"},
		{`[1]`, "not a JSON object"},
		{`"gpt-4o"`, "not a JSON object"},
		{`{"model":`, "not valid JSON"},
		{`{"model":"gpt-4o"} x`, "not valid JSON"},
		{`{"messages":[]}`, `no "model"`},
		{`{"model":7}`, `"model" must be a non-empty string`},
		{`{"model":null}`, `"model" must be a non-empty string`},
		{`{"model":""}`, `"model" must be a non-empty string`},
		{`{"Model":"gpt-4o"}`, `no "model"`},
		{`{"model":"` + strings.Repeat("m", 300) + `"}`, `"model" is longer than 256 bytes`},
	} {
		for _, path := range []string{PathChat, PathResponses, PathEmbeddings} {
			_, err := Provider{}.ParseRequest(endpoint(path), []byte(tc.body))
			if !errors.Is(err, infertrail.ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%s %.40q: %v, want %q", path, tc.body, err, tc.want)
			}
		}
	}
	if c, err := (Provider{}).ParseRequest(endpoint(PathModels), nil); err != nil || !reflect.DeepEqual(c, gateway.Call{}) {
		t.Errorf("GET models: %+v %v", c, err)
	}
}

func TestParseRequest(t *testing.T) {
	for _, tc := range []struct {
		name, path, body string
		want             gateway.Call
	}{
		{"chat", PathChat, `{"model":"gpt-4o","stream":true,"stream_options":{"include_usage":true},
			"messages":[{"role":"system","content":"secret system prompt"},{"role":"user","content":"secret prompt"}],
			"max_completion_tokens":100,"max_tokens":50,"temperature":0.2,"top_p":1,"frequency_penalty":-0.5,"presence_penalty":0.5,
			"stop":["END","STOP"],"seed":12345678901234567890,"n":2,"service_tier":"flex","parallel_tool_calls":false,"response_format":{"type":"json_schema"},
			"tools":[{"type":"function","function":{"name":"pay_invoice","description":"secret description"}},{"type":"function","function":{"name":"notify"}}]}`,
			gateway.Call{Model: "gpt-4o", Stream: true, Attributes: map[string]any{
				"gen_ai.request.max_tokens": 100.0, "gen_ai.request.temperature": 0.2,
				"gen_ai.request.top_p": 1.0, "gen_ai.request.frequency_penalty": -0.5,
				"gen_ai.request.presence_penalty": 0.5, "gen_ai.request.stop_sequences": []string{"END", "STOP"},
				"gen_ai.request.seed": 12345678901234567890.0, "gen_ai.request.choice.count": 2.0,
				"openai.request.service_tier": "flex", "openai.request.parallel_tool_calls": false, "gen_ai.output.type": "json",
				"openai.request.stream_include_usage": true, "gen_ai.request.tool_names": []string{"pay_invoice", "notify"},
			}}},
		{"chat legacy max_tokens, one stop string, wrong types left out", PathChat,
			`{"model":"gpt-3.5-turbo","max_tokens":16,"stop":"\n","temperature":"hot","n":null,"stream":"yes","tools":{"x":1},"reasoning_effort":"low"}`,
			gateway.Call{Model: "gpt-3.5-turbo", Attributes: map[string]any{
				"gen_ai.request.max_tokens": 16.0, "gen_ai.request.stop_sequences": []string{"\n"},
				"openai.request.reasoning_effort": "low",
			}}},
		{"responses", PathResponses, `{"model":"o4-mini","input":"secret prompt","instructions":"secret instructions","stream":true,
			"max_output_tokens":2048,"reasoning":{"effort":"high"},"previous_response_id":"resp_prev","conversation":{"id":"conv_1"},
			"text":{"format":{"type":"text"}},"tools":[{"type":"function","name":"pay_invoice"},{"type":"web_search"}]}`,
			gateway.Call{Model: "o4-mini", Stream: true, Attributes: map[string]any{
				"gen_ai.request.max_tokens": 2048.0, "openai.request.reasoning_effort": "high",
				"openai.request.previous_response_id": "resp_prev", "gen_ai.conversation.id": "conv_1", "gen_ai.output.type": "text",
				"gen_ai.request.tool_names": []string{"pay_invoice", "web_search"},
			}}},
		{"embeddings", PathEmbeddings, `{"model":"text-embedding-3-small","input":["secret a","secret b"],"encoding_format":"base64","dimensions":256}`,
			gateway.Call{Model: "text-embedding-3-small", Attributes: map[string]any{
				"gen_ai.request.encoding_formats": []string{"base64"}, "gen_ai.embeddings.dimension.count": 256.0,
			}}},
		{"nothing but the model", PathChat, `{"model":"m","messages":[]}`, gateway.Call{Model: "m"}},
		{"names match exactly, as upstream", PathChat, `{"model":"gpt-4o","MODEL":"fake","Temperature":2,"service_tier":null}`, gateway.Call{Model: "gpt-4o"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Provider{}.ParseRequest(endpoint(tc.path), []byte(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(c, tc.want) {
				t.Errorf("got  %#v\nwant %#v", c, tc.want)
			}
			b, err := json.Marshal(c.Attributes)
			if err != nil || strings.Contains(string(b), "secret") {
				t.Errorf("attributes %s %v: content leaked, or not JSON", b, err)
			}
		})
	}
}

func TestCredential(t *testing.T) {
	for _, tc := range []struct {
		name   string
		header http.Header
		want   string
	}{
		{"bearer", http.Header{"Authorization": {"Bearer sk-proj-abc"}}, "sk-proj-abc"},
		{"bearer any case", http.Header{"Authorization": {"bearer  sk-abc "}}, "sk-abc"},
		{"azure api-key", http.Header{"Api-Key": {"azure-key"}}, "azure-key"},
		{"bearer first", http.Header{"Authorization": {"Bearer sk-a"}, "Api-Key": {"azure-key"}}, "sk-a"},
		{"basic is not a key", http.Header{"Authorization": {"Basic dXNlcjpwYXNz"}}, ""},
		{"none", http.Header{}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := (Provider{}).Credential(tc.header); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
	h := http.Header{"Api-Key": {"azure-key"}, "Authorization": {"Bearer sk-old"}}
	Provider{}.SetCredential(h, "sk-new")
	if !reflect.DeepEqual(h, http.Header{"Authorization": {"Bearer sk-new"}}) {
		t.Errorf("after SetCredential: %v", h)
	}
	Provider{}.SetCredential(h, "")
	if len(h) != 0 {
		t.Errorf("after SetCredential with no key: %v", h)
	}
}

func TestErrorBody(t *testing.T) {
	for _, tc := range []struct {
		status    int
		typ, code string
	}{
		{400, "invalid_request_error", ""},
		{401, "invalid_request_error", "invalid_api_key"},
		{404, "invalid_request_error", "unknown_url"},
		{413, "invalid_request_error", "request_too_large"},
		{429, "requests", "rate_limit_exceeded"},
		{502, "server_error", ""},
		{503, "server_error", ""},
		{504, "server_error", ""},
	} {
		b := Provider{}.ErrorBody(tc.status, `why "quoted"`)
		var e struct {
			Error map[string]*string `json:"error"`
		}
		if err := json.Unmarshal(b, &e); err != nil {
			t.Fatal(err)
		}
		code, hasParam := e.Error["code"], false
		_, hasParam = e.Error["param"]
		if *e.Error["message"] != `why "quoted"` || *e.Error["type"] != tc.typ || !hasParam || e.Error["param"] != nil ||
			tc.code == "" && code != nil || tc.code != "" && (code == nil || *code != tc.code) {
			t.Errorf("%d: %s", tc.status, b)
		}
	}
}

// FuzzParseRequest checks that any body is either refused as invalid or
// read into a call with a model and attributes that marshal to JSON.
func FuzzParseRequest(f *testing.F) {
	f.Add(`{"model":"gpt-4o","stream":true,"max_tokens":5,"stop":["a"],"tools":[{"type":"function","function":{"name":"f"}}],"stream_options":{"include_usage":true}}`)
	f.Add(`{"model":"o4-mini","input":"x","reasoning":{"effort":"low"},"conversation":"c","text":{"format":{"type":"json_schema"}},"tools":[{"type":"web_search"}]}`)
	f.Add(`{"model":"e","input":["a"],"encoding_format":"float","dimensions":8}`)
	f.Fuzz(func(t *testing.T, body string) {
		for _, path := range []string{PathChat, PathResponses, PathEmbeddings} {
			c, err := Provider{}.ParseRequest(endpoint(path), []byte(body))
			if err != nil {
				if !errors.Is(err, infertrail.ErrInvalid) {
					t.Fatalf("%s: error %v does not wrap ErrInvalid", path, err)
				}
				continue
			}
			if c.Model == "" {
				t.Fatalf("%s: no model, no error", path)
			}
			b, err := json.Marshal(c.Attributes)
			if err != nil {
				t.Fatalf("%s: attributes: %v", path, err)
			}
			if _, err := infertrail.Canonicalize(b); err != nil {
				t.Fatalf("%s: attributes %s cannot be canonical: %v", path, b, err)
			}
		}
	})
}
