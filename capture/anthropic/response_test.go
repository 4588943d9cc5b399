package anthropic

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/infertrail/infertrail"
	"github.com/infertrail/infertrail/capture/gateway"
)

// event is one server-sent event of a transcript.
type event struct{ name, data string }

// parseSSE splits a transcript into events as the gateway does: "event:"
// names an event, "data:" lines are joined by "\n", a blank line
// dispatches it, and an event the stream never finished is not dispatched.
func parseSSE(in []byte) []event {
	var out []event
	var name, data []string
	for _, line := range strings.Split(strings.ReplaceAll(string(in), "\r\n", "\n"), "\n") {
		if line == "" {
			if data != nil {
				n := ""
				if name != nil {
					n = name[0]
				}
				out = append(out, event{n, strings.Join(data, "\n")})
			}
			name, data = nil, nil
			continue
		}
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "event":
			name = []string{value}
		case "data":
			data = append(data, value)
		}
	}
	return out
}

func readFile(tb testing.TB, name string) []byte {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

var chat = gateway.Endpoint{Method: "POST", Path: "/v1/messages", Operation: "chat"}

// replay feeds a transcript to a new reconstructor.
func replay(tb testing.TB, file string, limit int) gateway.Response {
	tb.Helper()
	r := Provider{}.NewResponse(chat, &gateway.Call{Stream: true}, limit)
	for _, e := range parseSSE(readFile(tb, file)) {
		r.Event(e.name, []byte(e.data))
	}
	return r.Result()
}

// sameJSON reports whether a and b are the same JSON value.
func sameJSON(tb testing.TB, a, b []byte) bool {
	tb.Helper()
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	var x, y any
	if err := json.Unmarshal(a, &x); err != nil {
		tb.Fatalf("not JSON: %v: %s", err, a)
	}
	if err := json.Unmarshal(b, &y); err != nil {
		tb.Fatalf("not JSON: %v: %s", err, b)
	}
	return reflect.DeepEqual(x, y)
}

// checkResponse compares every field of got with want; Body and Error as
// JSON values.
func checkResponse(t *testing.T, got, want gateway.Response) {
	t.Helper()
	if !sameJSON(t, got.Body, want.Body) {
		t.Errorf("Body:\n got %s\nwant %s", got.Body, want.Body)
	}
	if !sameJSON(t, got.Error, want.Error) {
		t.Errorf("Error: got %s, want %s", got.Error, want.Error)
	}
	got.Body, want.Body, got.Error, want.Error = nil, nil, nil, nil
	if !reflect.DeepEqual(got, want) {
		t.Errorf("response:\n got %#v\nwant %#v", got, want)
	}
}

// The streamed transcripts and their non-streamed counterparts, written by
// hand after Anthropic's documented wire format.
var (
	textWant = gateway.Response{
		ID: "msg_01HCDu5LRGeP2o7s2xGmxyx8", Model: "claude-sonnet-4-5-20250929",
		FinishReasons: []string{"end_turn"},
		Usage: map[string]int64{"gen_ai.usage.input_tokens": 2095, "gen_ai.usage.output_tokens": 24,
			"gen_ai.usage.cache_read.input_tokens": 1800, "gen_ai.usage.cache_creation.input_tokens": 0},
		Attributes: map[string]any{"anthropic.usage.input_tokens": int64(295), "anthropic.response.service_tier": "standard"},
		Done:       true,
	}
	toolUseWant = gateway.Response{
		ID: "msg_014p7gG3wDgGV9EUtLvnow3U", Model: "claude-opus-4-1-20250805",
		FinishReasons: []string{"tool_use"},
		Usage: map[string]int64{"gen_ai.usage.input_tokens": 1496, "gen_ai.usage.output_tokens": 118,
			"gen_ai.usage.cache_read.input_tokens": 0, "gen_ai.usage.cache_creation.input_tokens": 1024},
		ToolCalls: []gateway.ToolCall{
			{ID: "toolu_01T1x1fJ34qAmk2tNTrN7Up6", Name: "get_weather", Arguments: `{"location": "San Francisco, CA", "unit": "fahrenheit"}`},
			{ID: "toolu_01VMnnHSqt4tV3UZ4T5Ur5Vq", Name: "get_time", Arguments: `{"timezone": "America/Los_Angeles"}`},
		},
		Attributes: map[string]any{"anthropic.usage.input_tokens": int64(472), "anthropic.response.service_tier": "standard"},
		Done:       true,
	}
	thinkingWant = gateway.Response{
		ID: "msg_01BXUb7ig4nmUFDGCu4tbvoG", Model: "claude-sonnet-4-5-20250929",
		FinishReasons: []string{"stop_sequence"},
		Usage: map[string]int64{"gen_ai.usage.input_tokens": 41, "gen_ai.usage.output_tokens": 96,
			"gen_ai.usage.cache_read.input_tokens": 0, "gen_ai.usage.cache_creation.input_tokens": 0,
			"gen_ai.usage.reasoning.output_tokens": 71},
		Attributes: map[string]any{"anthropic.usage.input_tokens": int64(41), "anthropic.response.service_tier": "standard"},
		Done:       true,
	}
)

func with(r gateway.Response, edit func(*gateway.Response)) gateway.Response {
	edit(&r)
	return r
}

func TestStream(t *testing.T) {
	for _, tc := range []struct {
		file string
		want gateway.Response
	}{
		{"text.sse", with(textWant, func(r *gateway.Response) { r.Body = readFile(t, "text.json") })},
		{"tool_use.sse", with(toolUseWant, func(r *gateway.Response) { r.Body = readFile(t, "tool_use.json") })},
		{"thinking.sse", with(thinkingWant, func(r *gateway.Response) { r.Body = readFile(t, "thinking.json") })},
		{"overloaded.sse", gateway.Response{
			ID: "msg_01Lq9CvXEGwBqV3iAz6GsUv1", Model: "claude-haiku-4-5-20251001",
			Usage: map[string]int64{"gen_ai.usage.input_tokens": 12, "gen_ai.usage.output_tokens": 1,
				"gen_ai.usage.cache_read.input_tokens": 0, "gen_ai.usage.cache_creation.input_tokens": 0},
			Attributes: map[string]any{"anthropic.usage.input_tokens": int64(12), "anthropic.response.service_tier": "standard"},
			Error:      []byte(`{"type":"overloaded_error","message":"Overloaded"}`),
			Body: []byte(`{"model":"claude-haiku-4-5-20251001","id":"msg_01Lq9CvXEGwBqV3iAz6GsUv1","type":"message","role":"assistant",
				"content":[{"type":"text","text":"Here is the first"}],"stop_reason":null,"stop_sequence":null,
				"usage":{"input_tokens":12,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":1,"service_tier":"standard"}}`),
		}},
		{"broken.sse", gateway.Response{
			ID: "msg_01Wm5zXf2QZ4KcEUa8rYtN3j", Model: "claude-sonnet-4-5-20250929",
			Usage: map[string]int64{"gen_ai.usage.input_tokens": 880, "gen_ai.usage.output_tokens": 1,
				"gen_ai.usage.cache_read.input_tokens": 0, "gen_ai.usage.cache_creation.input_tokens": 0},
			ToolCalls: []gateway.ToolCall{{ID: "toolu_01Kp2b6LQ4nZrG3xY8fVtHcE", Name: "approve_payment", Arguments: `{"invoice": 7, "amount_eur": 12`}},
			Attributes: map[string]any{"anthropic.usage.input_tokens": int64(880), "anthropic.response.service_tier": "standard",
				"infertrail.response.malformed_tool_input": []string{"toolu_01Kp2b6LQ4nZrG3xY8fVtHcE"}},
			Body: []byte(`{"model":"claude-sonnet-4-5-20250929","id":"msg_01Wm5zXf2QZ4KcEUa8rYtN3j","type":"message","role":"assistant",
				"content":[{"type":"tool_use","id":"toolu_01Kp2b6LQ4nZrG3xY8fVtHcE","name":"approve_payment","input":"{\"invoice\": 7, \"amount_eur\": 12"}],
				"stop_reason":null,"stop_sequence":null,
				"usage":{"input_tokens":880,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":1,"service_tier":"standard"}}`),
		}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			checkResponse(t, replay(t, tc.file, 1<<20), tc.want)
		})
	}
}

func TestBody(t *testing.T) {
	for _, tc := range []struct {
		file   string
		status int
		want   gateway.Response
	}{
		{"text.json", 200, textWant},
		{"tool_use.json", 200, toolUseWant},
		{"thinking.json", 200, thinkingWant},
		{"error_400.json", 400, gateway.Response{
			Error: []byte(`{"type":"invalid_request_error","message":"max_tokens: Field required"}`), Done: true}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			body := readFile(t, tc.file)
			r := Provider{}.NewResponse(chat, &gateway.Call{}, 1<<20)
			r.Body(tc.status, body)
			want := tc.want
			want.Body, _ = infertrail.Canonicalize(body)
			got := r.Result()
			if !bytes.Equal(got.Body, want.Body) {
				t.Errorf("Body is not the body as received, in canonical form:\n got %s\nwant %s", got.Body, want.Body)
			}
			checkResponse(t, got, want)
		})
	}
}

func TestBodyNotJSON(t *testing.T) {
	r := Provider{}.NewResponse(chat, &gateway.Call{}, 1<<20)
	r.Body(502, []byte("<html>Bad Gateway\xff</html>"))
	got := r.Result()
	checkResponse(t, got, gateway.Response{Body: []byte(`"<html>Bad Gateway\ufffd</html>"`), Done: true})
}

func TestOtherEndpoints(t *testing.T) {
	for _, ep := range (Provider{}).Endpoints()[1:] {
		t.Run(ep.Operation, func(t *testing.T) {
			body := []byte(`{"input_tokens":2095}`)
			if ep.Method == "GET" {
				body = []byte(`{"data":[{"type":"model","id":"claude-sonnet-4-5-20250929","display_name":"Claude Sonnet 4.5","created_at":"2025-09-29T00:00:00Z"}],"has_more":false,"first_id":"claude-sonnet-4-5-20250929","last_id":"claude-sonnet-4-5-20250929"}`)
			}
			r := Provider{}.NewResponse(ep, &gateway.Call{}, 1<<20)
			r.Body(200, body)
			checkResponse(t, r.Result(), gateway.Response{Body: body, Done: true})
		})
	}
}

func TestTruncated(t *testing.T) {
	full := replay(t, "text.sse", 1<<20)
	for _, limit := range []int{0, 100, 400, 420, 450} {
		got := replay(t, "text.sse", limit)
		if !got.Truncated {
			t.Errorf("limit %d: not truncated", limit)
		}
		// Metadata stays whatever the limit.
		if got.ID != full.ID || got.Model != full.Model || !reflect.DeepEqual(got.FinishReasons, full.FinishReasons) ||
			!reflect.DeepEqual(got.Usage, full.Usage) || !got.Done {
			t.Errorf("limit %d: metadata lost: %+v", limit, got)
		}
		if got.Body == nil {
			continue
		}
		var m struct {
			Content []struct{ Text string }
		}
		if err := json.Unmarshal(got.Body, &m); err != nil {
			t.Fatalf("limit %d: body %s: %v", limit, got.Body, err)
		}
		for _, c := range m.Content {
			if !strings.HasPrefix("Invoice 7 is due on 30 November; the amount is 1,200 EUR — \"net 30\" terms.\n", c.Text) {
				t.Errorf("limit %d: text %q is not a prefix of the reply", limit, c.Text)
			}
		}
	}

	// Past the limit, tool calls are still listed by id and name.
	got := replay(t, "tool_use.sse", 0)
	want := []gateway.ToolCall{{ID: "toolu_01T1x1fJ34qAmk2tNTrN7Up6", Name: "get_weather"}, {ID: "toolu_01VMnnHSqt4tV3UZ4T5Ur5Vq", Name: "get_time"}}
	if !got.Truncated || !got.Done || !reflect.DeepEqual(got.ToolCalls, want) || got.Usage["gen_ai.usage.output_tokens"] != 118 {
		t.Errorf("limit 0: %+v", got)
	}

	// A limit that cuts a tool call's input keeps what fitted of it.
	r := Provider{}.NewResponse(chat, &gateway.Call{}, 1<<20).(*response)
	for _, e := range parseSSE(readFile(t, "tool_use.sse")) {
		if strings.Contains(e.data, `"partial_json":"ncisco`) {
			r.limit = r.used + 5
		}
		r.Event(e.name, []byte(e.data))
	}
	res := r.Result()
	if !res.Truncated || len(res.ToolCalls) != 2 || res.ToolCalls[0].Arguments != `{"location": "San Fra` || res.ToolCalls[1].Arguments != "" {
		t.Errorf("cut input: %+v", res)
	}
	if r.used > r.limit {
		t.Errorf("kept %d bytes, limit %d", r.used, r.limit)
	}

	// A body past the limit is not kept, but read for its metadata.
	r2 := Provider{}.NewResponse(chat, &gateway.Call{}, 100)
	r2.Body(200, readFile(t, "tool_use.json"))
	res = r2.Result()
	if !res.Truncated || res.Body != nil || len(res.ToolCalls) != 2 || res.ID != toolUseWant.ID {
		t.Errorf("large body: %+v", res)
	}
}

// TestOddStreams covers streams that break the usual order.
func TestOddStreams(t *testing.T) {
	for _, tc := range []struct {
		name   string
		events []event
		check  func(t *testing.T, r gateway.Response)
	}{
		{"nothing", nil, func(t *testing.T, r gateway.Response) {
			checkResponse(t, r, gateway.Response{})
		}},
		{"only an error event", []event{{"error", `{"type":"error","error":{"type":"api_error","message":"Internal server error"}}`}},
			func(t *testing.T, r gateway.Response) {
				checkResponse(t, r, gateway.Response{Error: []byte(`{"type":"api_error","message":"Internal server error"}`)})
			}},
		{"events without names", []event{
			{"", `{"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","model":"m","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":3,"output_tokens":1}}}`},
			{"", `{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}`},
			{"", `{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"hi"}}`},
			{"", `{"type":"message_delta","delta":{"stop_reason":"max_tokens","stop_sequence":null},"usage":{"output_tokens":2}}`},
			{"", `{"type":"message_stop"}`},
		}, func(t *testing.T, r gateway.Response) {
			checkResponse(t, r, gateway.Response{ID: "msg_1", Model: "m", FinishReasons: []string{"max_tokens"},
				Usage:      map[string]int64{"gen_ai.usage.input_tokens": 3, "gen_ai.usage.output_tokens": 2},
				Attributes: map[string]any{"anthropic.usage.input_tokens": int64(3)}, Done: true,
				Body: []byte(`{"id":"msg_1","type":"message","role":"assistant","model":"m","content":[{"type":"text","text":"hi"}],"stop_reason":"max_tokens","stop_sequence":null,"usage":{"input_tokens":3,"output_tokens":2}}`)})
		}},
		{"blocks out of order, a delta without a start, garbage", []event{
			{"content_block_start", `{"type":"content_block_start","index":1,"content_block":{"type":"text","text":"b"}}`},
			{"content_block_delta", `{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"a"}}`},
			{"content_block_start", `{"type":"content_block_start","index":1,"content_block":{"type":"text","text":"again"}}`},
			{"content_block_delta", `not json`},
			{"message_delta", `{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null,"container":{"id":"container_1"}},"usage":{"output_tokens":5}}`},
			{"future_event", `{"type":"future_event","x":1}`},
		}, func(t *testing.T, r gateway.Response) {
			checkResponse(t, r, gateway.Response{FinishReasons: []string{"end_turn"},
				Usage:      map[string]int64{"gen_ai.usage.output_tokens": 5},
				Attributes: map[string]any{"infertrail.response.malformed_events": 3},
				Body:       []byte(`{"type":"message","role":"assistant","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}],"stop_reason":"end_turn","stop_sequence":null,"container":{"id":"container_1"},"usage":{"output_tokens":5}}`)})
		}},
		{"citations and server tools", []event{
			{"message_start", `{"type":"message_start","message":{"id":"msg_2","type":"message","role":"assistant","model":"m","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":1,"output_tokens":1,"server_tool_use":{"web_search_requests":0}}}}`},
			{"content_block_start", `{"type":"content_block_start","index":0,"content_block":{"type":"server_tool_use","id":"srvtoolu_1","name":"web_search","input":{}}}`},
			{"content_block_delta", `{"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":"{\"query\":\"x\"}"}}`},
			{"content_block_start", `{"type":"content_block_start","index":1,"content_block":{"type":"text","text":"","citations":[]}}`},
			{"content_block_delta", `{"type":"content_block_delta","index":1,"delta":{"type":"citations_delta","citation":{"type":"web_search_result_location","url":"https://example.com","cited_text":"c"}}}`},
			{"content_block_delta", `{"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":"cited"}}`},
			{"message_delta", `{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":9,"server_tool_use":{"web_search_requests":1}}}`},
			{"message_stop", `{"type":"message_stop"}`},
		}, func(t *testing.T, r gateway.Response) {
			// Server tools run at Anthropic: they are not tool calls for
			// the caller to run, and stay in the body.
			checkResponse(t, r, gateway.Response{ID: "msg_2", Model: "m", FinishReasons: []string{"end_turn"},
				Usage:      map[string]int64{"gen_ai.usage.input_tokens": 1, "gen_ai.usage.output_tokens": 9},
				Attributes: map[string]any{"anthropic.usage.input_tokens": int64(1)}, Done: true,
				Body: []byte(`{"id":"msg_2","type":"message","role":"assistant","model":"m","content":[
					{"type":"server_tool_use","id":"srvtoolu_1","name":"web_search","input":{"query":"x"}},
					{"type":"text","text":"cited","citations":[{"type":"web_search_result_location","url":"https://example.com","cited_text":"c"}]}],
					"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":1,"output_tokens":9,"server_tool_use":{"web_search_requests":1}}}`)})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := Provider{}.NewResponse(chat, &gateway.Call{Stream: true}, 1<<20)
			for _, e := range tc.events {
				r.Event(e.name, []byte(e.data))
			}
			tc.check(t, r.Result())
		})
	}
}

// FuzzReconstruct checks that no stream, however broken, makes the
// reconstructor panic, keep more than its limit, or give invalid JSON.
func FuzzReconstruct(f *testing.F) {
	for _, name := range []string{"text.sse", "tool_use.sse", "thinking.sse", "overloaded.sse", "broken.sse"} {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, uint16(1<<15), false)
		f.Add(b, uint16(300), false)
	}
	f.Add([]byte(`{"type":"message","content":[{"type":"tool_use","input":{}}],"usage":{"input_tokens":null}}`), uint16(100), true)
	f.Fuzz(func(t *testing.T, in []byte, limit uint16, body bool) {
		r := Provider{}.NewResponse(chat, &gateway.Call{}, int(limit)).(*response)
		if body {
			r.Body(200, in)
		} else {
			for _, e := range parseSSE(in) {
				r.Event(e.name, []byte(e.data))
			}
		}
		res := r.Result()
		if r.used > r.limit {
			t.Fatalf("kept %d bytes, limit %d", r.used, r.limit)
		}
		for _, j := range []json.RawMessage{res.Body, res.Error} {
			if j != nil && !json.Valid(j) {
				t.Fatalf("invalid JSON: %q", j)
			}
		}
		if _, err := json.Marshal(res.Attributes); err != nil {
			t.Fatalf("attributes: %v", err)
		}
	})
}
