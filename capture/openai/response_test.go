package openai

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/infertrail/infertrail"
	"github.com/infertrail/infertrail/capture/gateway"
)

var update = flag.Bool("update", false, "rewrite the rebuilt bodies in testdata/rebuilt")

// events splits an SSE transcript into its events, as the gateway does:
// blank-line separated, "event:" naming one, "data:" lines joined by "\n".
func events(tb testing.TB, transcript string) [][2]string {
	tb.Helper()
	var out [][2]string
	for _, block := range strings.Split(transcript, "\n\n") {
		var name string
		var data []string
		for _, line := range strings.Split(block, "\n") {
			field, value, _ := strings.Cut(line, ":")
			value = strings.TrimPrefix(value, " ")
			switch field {
			case "event":
				name = value
			case "data":
				data = append(data, value)
			}
		}
		if data != nil {
			out = append(out, [2]string{name, strings.Join(data, "\n")})
		}
	}
	return out
}

func endpoint(path string) gateway.Endpoint {
	for _, ep := range (Provider{}).Endpoints() {
		if ep.Path == path {
			return ep
		}
	}
	panic(path)
}

func read(tb testing.TB, name string) []byte {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// reconstruct feeds a testdata file through a new reconstructor for path:
// a .sse file as events (the first cut of them, if cut > 0), a .json file
// as a body with status.
func reconstruct(tb testing.TB, path, file string, status, limit, cut int) gateway.Response {
	tb.Helper()
	rc := Provider{}.NewResponse(endpoint(path), &gateway.Call{}, limit)
	b := read(tb, file)
	if strings.HasSuffix(file, ".json") {
		rc.Body(status, b)
		return rc.Result()
	}
	evs := events(tb, string(b))
	if cut > 0 {
		evs = evs[:cut]
	}
	for _, e := range evs {
		data := []byte(e[1])
		rc.Event(e[0], data)
		copy(data, bytes.Repeat([]byte{'#'}, len(data))) // data is only valid during the call
	}
	return rc.Result()
}

func tokens(in, out, cached, reasoning int64) map[string]int64 {
	return map[string]int64{usageInput: in, usageOutput: out, usageCacheRead: cached, usageReasoning: reasoning}
}

func TestReconstruct(t *testing.T) {
	const big = 1 << 20
	for _, tc := range []struct {
		name       string
		path, file string
		status     int // for a body
		limit, cut int
		want       gateway.Response // Body and Error are checked apart
		wantError  string           // Error, as JSON
	}{
		{name: "chat stream text with usage", path: PathChat, file: "chat_text.sse", want: gateway.Response{
			ID: "chatcmpl-CXtext1", Model: "gpt-4o-2024-08-06", SystemFingerprint: "fp_f33640a400", FinishReasons: []string{"stop"},
			Usage: tokens(1200, 12, 1024, 0), Attributes: map[string]any{attrServiceTier: "default"}, Done: true}},
		{name: "chat stream parallel tool calls", path: PathChat, file: "chat_parallel_tools.sse", want: gateway.Response{
			ID: "chatcmpl-9x", Model: "gpt-4o-2024-08-06", SystemFingerprint: "fp_abc", FinishReasons: []string{"tool_calls"},
			Usage: tokens(82, 40, 64, 0), Done: true,
			ToolCalls: []gateway.ToolCall{{ID: "call_a", Name: "get_weather", Arguments: `{"city": "Paris"}`}, {ID: "call_b", Name: "get_time", Arguments: `{"tz": "CET"}`}}}},
		{name: "chat stream refusal", path: PathChat, file: "chat_refusal.sse", want: gateway.Response{
			ID: "chatcmpl-CXrefusal", Model: "gpt-4o-2024-08-06", SystemFingerprint: "fp_f33640a400", FinishReasons: []string{"stop"},
			Attributes: map[string]any{attrServiceTier: "default"}, Done: true}},
		{name: "chat stream two choices with logprobs", path: PathChat, file: "chat_n2_logprobs.sse", want: gateway.Response{
			ID: "chatcmpl-CXn2", Model: "gpt-4o-mini-2024-07-18", SystemFingerprint: "fp_n2", FinishReasons: []string{"stop", "length"},
			Attributes: map[string]any{attrServiceTier: "default"}, Done: true}},
		{name: "chat stream error event", path: PathChat, file: "chat_error.sse", want: gateway.Response{
			ID: "chatcmpl-CXerr", Model: "gpt-4o-2024-08-06", SystemFingerprint: "fp_f33640a400",
			Attributes: map[string]any{attrServiceTier: "default"}},
			wantError: `{"message":"The server had an error while processing your request. Sorry about that!","type":"server_error","param":null,"code":null}`},
		{name: "chat stream broken off", path: PathChat, file: "chat_parallel_tools.sse", cut: 4, want: gateway.Response{
			ID: "chatcmpl-9x", Model: "gpt-4o-2024-08-06", SystemFingerprint: "fp_abc",
			ToolCalls: []gateway.ToolCall{{ID: "call_a", Name: "get_weather", Arguments: `{"city": "Paris"}`}, {ID: "call_b", Name: "get_time"}}}},
		{name: "chat stream text truncated", path: PathChat, file: "chat_text.sse", limit: 10, want: gateway.Response{
			ID: "chatcmpl-CXtext1", Model: "gpt-4o-2024-08-06", SystemFingerprint: "fp_f33640a400", FinishReasons: []string{"stop"},
			Usage: tokens(1200, 12, 1024, 0), Attributes: map[string]any{attrServiceTier: "default"}, Done: true, Truncated: true}},
		{name: "chat stream tool calls truncated", path: PathChat, file: "chat_parallel_tools.sse", limit: 12, want: gateway.Response{
			ID: "chatcmpl-9x", Model: "gpt-4o-2024-08-06", SystemFingerprint: "fp_abc", FinishReasons: []string{"tool_calls"},
			Usage: tokens(82, 40, 64, 0), Done: true, Truncated: true,
			ToolCalls: []gateway.ToolCall{{ID: "call_a", Name: "get_weather", Arguments: `{"city": "Pa`}, {ID: "call_b", Name: "get_time"}}}},
		{name: "chat body", path: PathChat, file: "chat.json", status: 200, want: gateway.Response{
			ID: "chatcmpl-CXbody", Model: "o4-mini-2025-04-16", FinishReasons: []string{"stop"},
			Usage: tokens(2006, 300, 1920, 192), Attributes: map[string]any{attrServiceTier: "default"}, Done: true}},
		{name: "chat body parallel tool calls", path: PathChat, file: "chat_tools.json", status: 200, want: gateway.Response{
			ID: "chatcmpl-CXtools", Model: "gpt-4.1-2025-04-14", SystemFingerprint: "fp_b3f1157249", FinishReasons: []string{"tool_calls"},
			Usage: tokens(210, 48, 0, 0), Attributes: map[string]any{attrServiceTier: "default"}, Done: true,
			ToolCalls: []gateway.ToolCall{{ID: "call_pay", Name: "pay_invoice", Arguments: `{"invoice":"INV-7","amount_eur":1200}`}, {ID: "call_notify", Name: "notify", Arguments: `{"to":"finance"}`}}}},
		{name: "chat error body", path: PathChat, file: "error_401.json", status: 401, want: gateway.Response{Done: true},
			wantError: `{"message":"Incorrect API key provided: sk-proj-********7890. You can find your API key at https://platform.openai.com/account/api-keys.","type":"invalid_request_error","param":null,"code":"invalid_api_key"}`},

		{name: "responses stream text", path: PathResponses, file: "responses_text.sse", want: gateway.Response{
			ID: "resp_text1", Model: "gpt-4.1-2025-04-14", FinishReasons: []string{"completed"}, Usage: tokens(328, 12, 256, 0),
			Attributes: map[string]any{attrResponseStat: "completed", attrServiceTier: "default"}, Done: true}},
		{name: "responses stream function calls", path: PathResponses, file: "responses_function_calls.sse", want: gateway.Response{
			ID: "resp_fc1", Model: "o4-mini-2025-04-16", FinishReasons: []string{"completed"}, Usage: tokens(95, 140, 0, 64),
			Attributes: map[string]any{attrResponseStat: "completed", attrServiceTier: "default"}, Done: true,
			ToolCalls: []gateway.ToolCall{{ID: "call_pay", Name: "pay_invoice", Arguments: `{"invoice":"INV-7","amount_eur":1200}`}, {ID: "call_notify", Name: "notify", Arguments: `{"to":"finance"}`}}}},
		{name: "responses stream failed", path: PathResponses, file: "responses_failed.sse", want: gateway.Response{
			ID: "resp_fail", Model: "gpt-4.1-2025-04-14", FinishReasons: []string{"failed"},
			Attributes: map[string]any{attrResponseStat: "failed", attrServiceTier: "auto"}, Done: true},
			wantError: `{"code":"server_error","message":"The model produced invalid content."}`},
		{name: "responses stream incomplete", path: PathResponses, file: "responses_incomplete.sse", want: gateway.Response{
			ID: "resp_inc", Model: "gpt-4.1-2025-04-14", FinishReasons: []string{"max_output_tokens"}, Usage: tokens(10, 2, 0, 0),
			Attributes: map[string]any{attrResponseStat: "incomplete", attrServiceTier: "default"}, Done: true}},
		{name: "responses stream error event", path: PathResponses, file: "responses_error_event.sse", want: gateway.Response{
			ID: "resp_errev", Model: "gpt-4.1-2025-04-14", Attributes: map[string]any{attrResponseStat: "in_progress", attrServiceTier: "auto"}},
			wantError: `{"code":"rate_limit_exceeded","message":"Rate limit reached.","param":null}`},
		{name: "responses stream broken off", path: PathResponses, file: "responses_broken.sse", want: gateway.Response{
			ID: "resp_1", Model: "gpt-4.1-2025-04-14", Attributes: map[string]any{attrResponseStat: "in_progress"},
			ToolCalls: []gateway.ToolCall{{ID: "call_x", Name: "pay_invoice", Arguments: `{"invoice":`}}}},
		{name: "responses stream broken off after arguments", path: PathResponses, file: "responses_function_calls.sse", cut: 8, want: gateway.Response{
			ID: "resp_fc1", Model: "o4-mini-2025-04-16", Attributes: map[string]any{attrResponseStat: "in_progress", attrServiceTier: "auto"},
			ToolCalls: []gateway.ToolCall{{ID: "call_pay", Name: "pay_invoice", Arguments: `{"invoice":"INV-7","amount_eur":1200}`}}}},
		{name: "responses stream final over the limit", path: PathResponses, file: "responses_function_calls.sse", limit: 1000, want: gateway.Response{
			ID: "resp_fc1", Model: "o4-mini-2025-04-16", FinishReasons: []string{"completed"}, Usage: tokens(95, 140, 0, 64),
			Attributes: map[string]any{attrResponseStat: "completed", attrServiceTier: "default"}, Done: true, Truncated: true,
			ToolCalls: []gateway.ToolCall{{ID: "call_pay", Name: "pay_invoice", Arguments: `{"invoice":"INV-7","amount_eur":1200}`}, {ID: "call_notify", Name: "notify", Arguments: `{"to":"finance"}`}}}},
		{name: "responses stream final within the limit", path: PathResponses, file: "responses_function_calls.sse", limit: 1100, want: gateway.Response{
			ID: "resp_fc1", Model: "o4-mini-2025-04-16", FinishReasons: []string{"completed"}, Usage: tokens(95, 140, 0, 64),
			Attributes: map[string]any{attrResponseStat: "completed", attrServiceTier: "default"}, Done: true,
			ToolCalls: []gateway.ToolCall{{ID: "call_pay", Name: "pay_invoice", Arguments: `{"invoice":"INV-7","amount_eur":1200}`}, {ID: "call_notify", Name: "notify", Arguments: `{"to":"finance"}`}}}},
		{name: "responses body", path: PathResponses, file: "responses.json", status: 200, want: gateway.Response{
			ID: "resp_body1", Model: "gpt-4.1-2025-04-14", FinishReasons: []string{"completed"}, Usage: tokens(50, 20, 0, 8),
			Attributes: map[string]any{attrResponseStat: "completed", attrServiceTier: "default"}, Done: true,
			ToolCalls: []gateway.ToolCall{{ID: "call_lookup", Name: "lookup_vendor", Arguments: `{"vendor":"ACME"}`}}}},
		{name: "responses error body", path: PathResponses, file: "error_429.json", status: 429, want: gateway.Response{Done: true},
			wantError: `{"message":"Rate limit reached for gpt-4o in organization org-abc on requests per min (RPM): Limit 500, Used 500, Requested 1. Please try again in 120ms.","type":"requests","param":null,"code":"rate_limit_exceeded"}`},

		{name: "embeddings", path: PathEmbeddings, file: "embeddings.json", status: 200, want: gateway.Response{
			Model: "text-embedding-3-small", Usage: map[string]int64{usageInput: 8}, Done: true}},
		{name: "models", path: PathModels, file: "models.json", status: 200, want: gateway.Response{Done: true}},
		{name: "models error", path: PathModels, file: "error_401.json", status: 401, want: gateway.Response{Done: true},
			wantError: `{"message":"Incorrect API key provided: sk-proj-********7890. You can find your API key at https://platform.openai.com/account/api-keys.","type":"invalid_request_error","param":null,"code":"invalid_api_key"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			limit := tc.limit
			if limit == 0 {
				limit = big
			}
			got := reconstruct(t, tc.path, tc.file, tc.status, limit, tc.cut)
			checkBody(t, tc.name, tc.file, got.Body)
			if tc.wantError == "" && got.Error != nil || tc.wantError != "" && !sameJSON(got.Error, []byte(tc.wantError)) {
				t.Errorf("Error %s\nwant  %s", got.Error, tc.wantError)
			}
			got.Body, got.Error = nil, nil
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

// checkBody checks a rebuilt body: a body as received, or a stream's
// against its golden file in testdata/rebuilt.
func checkBody(tb testing.TB, name, file string, body json.RawMessage) {
	tb.Helper()
	if strings.HasSuffix(file, ".json") {
		if want, err := infertrail.Canonicalize(read(tb, file)); err != nil || !bytes.Equal(body, want) {
			tb.Errorf("Body is not the body received, in canonical form:\n%s", body)
		}
		return
	}
	if !json.Valid(body) {
		tb.Fatalf("Body is not JSON: %s", body)
	}
	golden := filepath.Join("rebuilt", strings.ReplaceAll(name, " ", "_")+".json")
	if *update {
		var b bytes.Buffer
		json.Indent(&b, body, "", "  ")
		b.WriteByte('\n')
		if err := os.WriteFile(filepath.Join("testdata", golden), b.Bytes(), 0o644); err != nil {
			tb.Fatal(err)
		}
		return
	}
	if want := read(tb, golden); !jsonEqual(body, want) {
		tb.Errorf("Body differs from testdata/%s (rerun with -update to see how):\n%s", golden, body)
	}
}

// jsonEqual reports whether a and b are the same JSON, byte for byte once
// compacted (so with the same member order).
func jsonEqual(a, b []byte) bool {
	var ca, cb bytes.Buffer
	return json.Compact(&ca, a) == nil && json.Compact(&cb, b) == nil && bytes.Equal(ca.Bytes(), cb.Bytes())
}

// sameJSON reports whether a and b are the same JSON value: the same
// canonical form.
func sameJSON(a, b []byte) bool {
	ca, err1 := infertrail.Canonicalize(a)
	cb, err2 := infertrail.Canonicalize(b)
	return err1 == nil && err2 == nil && bytes.Equal(ca, cb)
}

// A stream's rebuilt body has the shape of the non-streamed response: the
// chat.completion the SDKs decode, and the Responses API's final object
// exactly as it came.
func TestRebuiltShape(t *testing.T) {
	res := reconstruct(t, PathChat, "chat_parallel_tools.sse", 0, 1<<20, 0)
	var cc struct {
		ID, Object, Model, SystemFingerprint string
		Created                              int64
		Choices                              []struct {
			Index   int
			Message struct {
				Role      string
				Content   *string
				Refusal   *string
				ToolCalls []struct {
					ID, Type string
					Function struct{ Name, Arguments string }
				} `json:"tool_calls"`
			}
			FinishReason *string `json:"finish_reason"`
		}
		Usage struct {
			TotalTokens int `json:"total_tokens"`
		}
	}
	if err := json.Unmarshal(res.Body, &cc); err != nil {
		t.Fatal(err)
	}
	m := cc.Choices[0].Message
	if cc.Object != "chat.completion" || cc.Created != 1764115200 || m.Role != "assistant" || m.Content != nil || m.Refusal != nil ||
		len(m.ToolCalls) != 2 || m.ToolCalls[1].Type != "function" || *cc.Choices[0].FinishReason != "tool_calls" || cc.Usage.TotalTokens != 122 {
		t.Errorf("rebuilt %s", res.Body)
	}

	res = reconstruct(t, PathResponses, "responses_text.sse", 0, 1<<20, 0)
	evs := events(t, string(read(t, "responses_text.sse")))
	var final struct {
		Response json.RawMessage `json:"response"`
	}
	json.Unmarshal([]byte(evs[len(evs)-1][1]), &final)
	if !bytes.Equal(res.Body, final.Response) {
		t.Errorf("the body is not the response.completed object:\n%s\n%s", res.Body, final.Response)
	}
}

// A terminal event too big for the gateway to pass on comes without its
// data: the stream still ended.
func TestResponsesTerminalEventDropped(t *testing.T) {
	rc := Provider{}.NewResponse(endpoint(PathResponses), &gateway.Call{}, 1<<20)
	evs := events(t, string(read(t, "responses_text.sse")))
	for _, e := range evs[:len(evs)-1] {
		rc.Event(e[0], []byte(e[1]))
	}
	rc.Event("response.completed", nil)
	res := rc.Result()
	var body struct {
		Output []struct {
			Content []struct{ Text string } `json:"content"`
		} `json:"output"`
	}
	if !res.Done || !res.Truncated || res.ID != "resp_text1" || json.Unmarshal(res.Body, &body) != nil ||
		body.Output[0].Content[0].Text != "Il fait beau à Paris." {
		t.Errorf("result %+v, body %s", res, res.Body)
	}
}

func TestNotJSONBody(t *testing.T) {
	rc := Provider{}.NewResponse(endpoint(PathChat), &gateway.Call{}, 1<<20)
	rc.Body(502, []byte("<html>Bad Gateway\xff</html>"))
	res := rc.Result()
	var s string
	if json.Unmarshal(res.Body, &s) != nil || s != "<html>Bad Gateway\uFFFD</html>" || res.Error != nil || !res.Done {
		t.Errorf("result %+v, body %s", res, res.Body)
	}
}

func TestMalformedEvents(t *testing.T) {
	for _, path := range []string{PathChat, PathResponses} {
		t.Run(path, func(t *testing.T) {
			rc := Provider{}.NewResponse(endpoint(path), &gateway.Call{}, 1<<20)
			rc.Event("", []byte("not json"))
			rc.Event("", []byte(`{"choices":[{"index":-5}],"type":"response.output_text.delta","output_index":-1}`))
			if res := rc.Result(); res.Attributes[attrMalformed] != 2 || res.Done {
				t.Errorf("result %+v", res)
			}
		})
	}
}

// A stream may not make the rebuilt body grow past the limit by opening
// choices or tool calls, nor by long names.
func TestStreamBounds(t *testing.T) {
	rc := Provider{}.NewResponse(endpoint(PathChat), &gateway.Call{}, 1000)
	for i := range 3000 {
		rc.Event("", []byte(`{"choices":[{"index":0,"delta":{"tool_calls":[{"index":`+itoa(i%maxIndex)+`,"id":"c","function":{"name":"`+strings.Repeat("n", 100)+`"}}]}}]}`))
	}
	res := rc.Result()
	if len(res.ToolCalls) != maxIndex-1 || len(res.ToolCalls[0].Name) > maxString || !res.Truncated {
		t.Errorf("%d tool calls, name of %d bytes, truncated %v", len(res.ToolCalls), len(res.ToolCalls[0].Name), res.Truncated)
	}
}

func itoa(i int) string { b, _ := json.Marshal(i); return string(b) }

// FuzzReconstruct feeds arbitrary events, cut at arbitrary places, to the
// stream reconstructors: they must not panic, and what they rebuild must
// be JSON.
func FuzzReconstruct(f *testing.F) {
	for _, file := range []string{"chat_text.sse", "chat_parallel_tools.sse", "chat_n2_logprobs.sse", "chat_error.sse",
		"responses_text.sse", "responses_function_calls.sse", "responses_broken.sse", "responses_error_event.sse"} {
		b, err := os.ReadFile(filepath.Join("testdata", file))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, uint16(1<<15))
		f.Add(b, uint16(40))
	}
	f.Add([]byte("data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":-1,\"function\":{\"arguments\":\"\\xff\"}}]}}]}\n\n"), uint16(3))
	f.Fuzz(func(t *testing.T, transcript []byte, limit uint16) {
		evs := events(t, string(transcript))
		for _, path := range []string{PathChat, PathResponses} {
			rc := Provider{}.NewResponse(endpoint(path), &gateway.Call{}, int(limit))
			for _, e := range evs {
				rc.Event(e[0], []byte(e[1]))
			}
			res := rc.Result()
			if res.Body != nil && !json.Valid(res.Body) {
				t.Fatalf("%s: body is not JSON: %s", path, res.Body)
			}
			if res.Error != nil && !json.Valid(res.Error) {
				t.Fatalf("%s: error is not JSON: %s", path, res.Error)
			}
			if _, err := json.Marshal(res.Attributes); err != nil {
				t.Fatalf("%s: attributes: %v", path, err)
			}
		}
	})
}

// A chat body whose members are not all of the expected types still gives
// what the others say, and a body that is not JSON gives nothing but
// itself, as text.
func TestChatBodyOddTypes(t *testing.T) {
	for _, tc := range []struct {
		body string
		want gateway.Response
	}{
		{`{"id":7,"model":"gpt-4o-2024-08-06","choices":[{"finish_reason":null,"message":{"tool_calls":[` +
			`{"id":"call_1","function":{"name":"pay","arguments":"{\"to\":\"ACME \\\"Ltd\\\"\"}"}},{"id":"call_2","function":"oops"}]}},` +
			`{"finish_reason":"length","message":"oops"},"oops"],"usage":{"prompt_tokens":3,"completion_tokens":4},"service_tier":1}`,
			gateway.Response{Model: "gpt-4o-2024-08-06", FinishReasons: []string{"length"}, Usage: map[string]int64{usageInput: 3, usageOutput: 4}, Done: true,
				ToolCalls: []gateway.ToolCall{{ID: "call_1", Name: "pay", Arguments: `{"to":"ACME \"Ltd\""}`}, {ID: "call_2"}}}},
		{`{"choices":{"finish_reason":"stop"}}`, gateway.Response{Done: true}},
		{`not json {"id":"x"}`, gateway.Response{Done: true}},
	} {
		rc := Provider{}.NewResponse(endpoint(PathChat), &gateway.Call{}, 1<<20)
		rc.Body(200, []byte(tc.body))
		got := rc.Result()
		if want, _ := gateway.BodyValue([]byte(tc.body)); !bytes.Equal(got.Body, want) {
			t.Errorf("%s: Body %s", tc.body, got.Body)
		}
		got.Body = nil
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s:\n got %+v\nwant %+v", tc.body, got, tc.want)
		}
	}
}

// BenchmarkChatBody measures rebuilding a chat completion that was not
// streamed, as the gateway does for each such response: its body in
// canonical form, and what the records say of it.
func BenchmarkChatBody(b *testing.B) {
	body := read(b, "chat_tools.json")
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		rc := Provider{}.NewResponse(endpoint(PathChat), &gateway.Call{}, 1<<20)
		rc.Body(200, body)
		rc.Result()
	}
}
