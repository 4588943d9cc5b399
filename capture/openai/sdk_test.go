package openai_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	sdk "github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/responses"
	"github.com/openai/openai-go/v3/shared"

	"github.com/infertrail/infertrail/capture/gateway"
	"github.com/infertrail/infertrail/capture/gateway/gatewaytest"
	"github.com/infertrail/infertrail/capture/openai"
	"github.com/infertrail/infertrail/capture/openai/openaitest"
)

const callerKey = "sk-proj-caller-secret-0123456789"

// rig is the official SDK → the gateway over a real trail → the scripted
// OpenAI upstream.
type rig struct {
	up     *openaitest.Upstream
	trail  *gatewaytest.Trail
	gw     *gateway.Gateway
	srv    *httptest.Server
	client sdk.Client
	tee    *gatewaytest.Tee
}

func newRig(tb testing.TB, up *openaitest.Upstream) *rig {
	tb.Helper()
	upSrv := httptest.NewServer(up)
	tb.Cleanup(upSrv.Close)
	trail := gatewaytest.NewTrail(tb)
	gw, err := gateway.New(gateway.Config{
		Recorder: trail.Log, Secret: gatewaytest.Secret,
		Upstreams: []gateway.Upstream{{Provider: openai.Provider{}, BaseURL: upSrv.URL + "/v1"}},
	})
	if err != nil {
		tb.Fatal(err)
	}
	srv := trail.Serve(tb, gw)
	t := &gatewaytest.Tee{}
	client := sdk.NewClient(option.WithBaseURL(srv.URL+"/openai/v1/"), option.WithAPIKey(callerKey), option.WithMaxRetries(0),
		option.WithHeader(gateway.HeaderSession, "sess-openai"), option.WithHTTPClient(&http.Client{Transport: t}))
	return &rig{up: up, trail: trail, gw: gw, srv: srv, client: client, tee: t}
}

func (r *rig) records(tb testing.TB) []gatewaytest.Record { return r.trail.Drain(tb, r.srv, r.gw) }

// checkPassthrough checks that the client got exactly what the upstream sent.
func (r *rig) checkPassthrough(tb testing.TB) {
	tb.Helper()
	last, ok := r.up.Last()
	if !ok {
		tb.Fatal("the upstream got no request")
	}
	if got := r.tee.Last(); !bytes.Equal(got, last.Sent) {
		tb.Fatalf("the client got %d bytes that differ from the %d the upstream sent:\n%q\n%q", len(got), len(last.Sent), got, last.Sent)
	}
	if a := last.Header.Get("Authorization"); a != "Bearer "+callerKey {
		tb.Errorf("upstream Authorization %q: want the caller's key passed through", a)
	}
}

// split returns the request and the response record of one call.
func split(tb testing.TB, recs []gatewaytest.Record) (req, resp gatewaytest.Record) {
	tb.Helper()
	if len(recs) != 2 {
		tb.Fatalf("%d records, want 2", len(recs))
	}
	req, resp = recs[0], recs[1]
	if req.Attr("infertrail.phase") != "request" {
		req, resp = resp, req
	}
	if len(resp.Links) != 1 || resp.Links[0].Rel != "answers" || resp.Links[0].ID != req.ID {
		tb.Fatalf("response links %+v, request %s", resp.Links, req.ID)
	}
	for _, r := range recs {
		if r.SessionID != "sess-openai" || r.Source != "openai" || !strings.HasPrefix(r.Actor.CredentialFingerprint, "hmac-sha256:") {
			tb.Errorf("record %d: session %q source %q actor %+v", r.Seq, r.SessionID, r.Source, r.Actor)
		}
	}
	return req, resp
}

func toolCallIDs(r gatewaytest.Record) []string {
	var ids []string
	list, _ := r.Attr("gen_ai.response.tool_calls").([]any)
	for _, tc := range list {
		ids = append(ids, tc.(map[string]any)["id"].(string))
	}
	return ids
}

var payTools = []openaitest.ToolCall{
	{ID: "call_pay_1", Name: "pay_invoice", Arguments: `{"invoice":"7","amount_eur":1200}`},
	{ID: "call_lookup_2", Name: "lookup_vendor", Arguments: `{"vendor":"ACME GmbH","country":"DE"}`},
}

func chatParams() sdk.ChatCompletionNewParams {
	return sdk.ChatCompletionNewParams{
		Model:       "gpt-requested",
		Messages:    []sdk.ChatCompletionMessageParamUnion{sdk.UserMessage("Pay invoice 7")},
		Temperature: sdk.Float(0.2),
		Tools: []sdk.ChatCompletionToolUnionParam{
			sdk.ChatCompletionFunctionTool(shared.FunctionDefinitionParam{Name: "pay_invoice"}),
			sdk.ChatCompletionFunctionTool(shared.FunctionDefinitionParam{Name: "lookup_vendor"}),
		},
	}
}

func TestSDKChat(t *testing.T) {
	rig := newRig(t, &openaitest.Upstream{Model: "gpt-answered-2026-01-01", SystemFingerprint: "fp_e2e"})
	cc, err := rig.client.Chat.Completions.New(t.Context(), chatParams())
	if err != nil {
		t.Fatal(err)
	}
	if cc.Model != "gpt-answered-2026-01-01" || cc.Choices[0].Message.Content == "" {
		t.Fatalf("completion %+v", cc)
	}
	rig.checkPassthrough(t)
	req, resp := split(t, rig.records(t))
	if req.Attr("gen_ai.request.model") != "gpt-requested" || req.Attr("gen_ai.request.temperature") != 0.2 ||
		resp.Attr("gen_ai.response.model") != "gpt-answered-2026-01-01" || resp.Attr("openai.response.system_fingerprint") != "fp_e2e" ||
		resp.Attr("gen_ai.usage.output_tokens") == nil || resp.Attr("gen_ai.response.id") != cc.ID {
		t.Fatalf("records:\n%v\n%v", req.Attributes, resp.Attributes)
	}
	names, _ := req.Attr("gen_ai.request.tool_names").([]any)
	if len(names) != 2 {
		t.Errorf("tool names %v", names)
	}
	var got sdk.ChatCompletion
	if err := json.Unmarshal(resp.Content["response"], &got); err != nil || got.Choices[0].Message.Content != cc.Choices[0].Message.Content {
		t.Errorf("response content %s", resp.Content["response"])
	}
}

func TestSDKChatStreamParallelToolCalls(t *testing.T) {
	rig := newRig(t, &openaitest.Upstream{Model: "gpt-answered", ToolCalls: payTools, ChunkBytes: 5})
	p := chatParams()
	p.StreamOptions = sdk.ChatCompletionStreamOptionsParam{IncludeUsage: sdk.Bool(true)}
	stream := rig.client.Chat.Completions.NewStreaming(t.Context(), p)
	var acc sdk.ChatCompletionAccumulator
	for stream.Next() {
		acc.AddChunk(stream.Current())
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	tcs := acc.Choices[0].Message.ToolCalls
	if len(tcs) != 2 || tcs[0].Function.Arguments != payTools[0].Arguments || tcs[1].ID != "call_lookup_2" {
		t.Fatalf("accumulated tool calls %+v", tcs)
	}
	rig.checkPassthrough(t)
	req, resp := split(t, rig.records(t))
	if req.Attr("infertrail.stream") != true || req.Attr("openai.request.stream_include_usage") != true {
		t.Errorf("request %v", req.Attributes)
	}
	if ids := toolCallIDs(resp); len(ids) != 2 || ids[0] != "call_pay_1" || ids[1] != "call_lookup_2" {
		t.Errorf("tool call ids %v", ids)
	}
	if resp.Attr("gen_ai.usage.input_tokens") == nil || resp.Attr("infertrail.incomplete") != nil ||
		resp.Attr("gen_ai.response.finish_reasons").([]any)[0] != "tool_calls" {
		t.Errorf("response %v", resp.Attributes)
	}
	// The rebuilt body is the chat.completion the SDK accumulated.
	var rebuilt sdk.ChatCompletion
	if err := json.Unmarshal(resp.Content["response"], &rebuilt); err != nil {
		t.Fatal(err)
	}
	if len(rebuilt.Choices) != 1 || len(rebuilt.Choices[0].Message.ToolCalls) != 2 ||
		rebuilt.Choices[0].Message.ToolCalls[1].Function.Arguments != payTools[1].Arguments || rebuilt.Usage.TotalTokens != acc.Usage.TotalTokens {
		t.Errorf("rebuilt %s", resp.Content["response"])
	}
}

func TestSDKResponsesStream(t *testing.T) {
	for _, tools := range []bool{false, true} {
		t.Run(map[bool]string{false: "text", true: "function call"}[tools], func(t *testing.T) {
			up := &openaitest.Upstream{Model: "gpt-answered", Text: openaitest.ReplyOfSize(300)}
			if tools {
				up.ToolCalls = payTools[:1]
			}
			rig := newRig(t, up)
			stream := rig.client.Responses.NewStreaming(t.Context(), responses.ResponseNewParams{
				Model: "gpt-requested", Input: responses.ResponseNewParamsInputUnion{OfString: sdk.String("Pay invoice 7")},
				Tools: []responses.ToolUnionParam{responses.ToolParamOfFunction("pay_invoice", map[string]any{"type": "object"}, false)},
			})
			var completed responses.Response
			for stream.Next() {
				if ev := stream.Current(); ev.Type == "response.completed" {
					completed = ev.AsResponseCompleted().Response
				}
			}
			if err := stream.Err(); err != nil {
				t.Fatal(err)
			}
			if completed.ID == "" || !tools && completed.OutputText() != up.Text {
				t.Fatalf("completed %+v", completed)
			}
			rig.checkPassthrough(t)
			_, resp := split(t, rig.records(t))
			if resp.Attr("gen_ai.response.id") != completed.ID || resp.Attr("gen_ai.response.model") != "gpt-answered" ||
				resp.Attr("gen_ai.usage.output_tokens") == nil || resp.Attr("infertrail.incomplete") != nil {
				t.Fatalf("response %v", resp.Attributes)
			}
			if ids := toolCallIDs(resp); tools && (len(ids) != 1 || ids[0] != "call_pay_1") {
				t.Errorf("tool calls %v", ids)
			}
			var rebuilt responses.Response
			if err := json.Unmarshal(resp.Content["response"], &rebuilt); err != nil || rebuilt.OutputText() != completed.OutputText() {
				t.Errorf("rebuilt %s", resp.Content["response"])
			}
		})
	}
}

func TestSDKEmbeddingsAndModels(t *testing.T) {
	rig := newRig(t, &openaitest.Upstream{})
	emb, err := rig.client.Embeddings.New(t.Context(), sdk.EmbeddingNewParams{
		Model: "text-embedding-3-small", Input: sdk.EmbeddingNewParamsInputUnion{OfArrayOfStrings: []string{"a", "b"}},
	})
	if err != nil || len(emb.Data) != 2 || len(emb.Data[0].Embedding) != 8 {
		t.Fatalf("embeddings %+v %v", emb, err)
	}
	rig.checkPassthrough(t)
	page, err := rig.client.Models.List(t.Context())
	if err != nil || len(page.Data) != 1 {
		t.Fatalf("models %+v %v", page, err)
	}
	rig.checkPassthrough(t)
	recs := rig.records(t)
	if len(recs) != 4 {
		t.Fatalf("%d records, want 4", len(recs))
	}
	ops := map[string]int{}
	for _, r := range recs {
		ops[string(r.Kind)+"/"+r.Attr("gen_ai.operation.name").(string)]++
		if r.Attr("infertrail.phase") == "response" && r.Attr("gen_ai.operation.name") == "embeddings" &&
			(r.Attr("gen_ai.usage.input_tokens") == nil || r.Attr("gen_ai.response.model") != "text-embedding-3-small") {
			t.Errorf("embeddings response %v", r.Attributes)
		}
	}
	if ops["inference/embeddings"] != 2 || ops["downstream_call/list_models"] != 2 {
		t.Errorf("records by kind and operation %v", ops)
	}
}

func TestSDKErrors(t *testing.T) {
	rig := newRig(t, &openaitest.Upstream{Status: 429, ErrorMessage: "Rate limit reached"})
	_, err := rig.client.Chat.Completions.New(t.Context(), chatParams())
	var ae *sdk.Error
	if !errors.As(err, &ae) || ae.StatusCode != 429 || ae.Message != "Rate limit reached" {
		t.Fatalf("err %v", err)
	}
	_, resp := split(t, rig.records(t))
	if resp.Attr("error.type") != "429" || !strings.Contains(string(resp.Content["error"]), "rate_limit_exceeded") {
		t.Errorf("response %v %s", resp.Attributes, resp.Content["error"])
	}

	// Errors the gateway raises itself come in OpenAI's shape too.
	rig = newRig(t, &openaitest.Upstream{})
	_, err = rig.client.Chat.Completions.New(t.Context(), chatParams(), option.WithJSONSet("model", 42))
	if !errors.As(err, &ae) || ae.StatusCode != 400 || ae.Type != "invalid_request_error" || !strings.Contains(ae.Message, "model") {
		t.Fatalf("err %v", err)
	}
	if recs := rig.records(t); len(recs) != 1 || recs[0].Attr("infertrail.refused") == nil || rig.up.Count() != 0 {
		t.Fatalf("a refused request: %d records, %d upstream calls", len(recs), rig.up.Count())
	}
}

func TestSDKStreamBroken(t *testing.T) {
	rig := newRig(t, &openaitest.Upstream{CloseAfterEvents: 4, ChunkBytes: 4})
	stream := rig.client.Chat.Completions.NewStreaming(t.Context(), chatParams())
	for stream.Next() {
	}
	if stream.Err() == nil {
		t.Fatal("the SDK saw no error for a broken stream")
	}
	_, resp := split(t, rig.records(t))
	if resp.Attr("infertrail.incomplete") != true || resp.Attr("infertrail.incomplete_reason") != "upstream_error" ||
		!strings.Contains(string(resp.Content["response"]), "Hello! This") {
		t.Fatalf("response %v %s", resp.Attributes, resp.Content["response"])
	}
}

func TestSDKNoKeyStored(t *testing.T) {
	rig := newRig(t, &openaitest.Upstream{})
	if _, err := rig.client.Chat.Completions.New(t.Context(), chatParams()); err != nil {
		t.Fatal(err)
	}
	rig.records(t)
	rig.trail.DB.Close()
	for _, suffix := range []string{"", "-wal"} {
		b, _ := os.ReadFile(rig.trail.Path + suffix)
		if bytes.Contains(b, []byte(callerKey)) {
			t.Fatalf("the database file%s holds the caller's key", suffix)
		}
	}
}

func TestSDKResponsesParallelCallsAndUsageDetails(t *testing.T) {
	rig := newRig(t, &openaitest.Upstream{CallTools: true, CachedTokens: 1024, ReasoningTokens: 64, ChunkBytes: 3})
	stream := rig.client.Responses.NewStreaming(t.Context(), responses.ResponseNewParams{
		Model: "o4-mini", Input: responses.ResponseNewParamsInputUnion{OfString: sdk.String("Pay invoice 7")},
		Tools: []responses.ToolUnionParam{
			responses.ToolParamOfFunction("pay_invoice", map[string]any{"type": "object"}, false),
			responses.ToolParamOfFunction("lookup_vendor", map[string]any{"type": "object"}, false),
		},
	})
	var calls []string
	for stream.Next() {
		if ev := stream.Current(); ev.Type == "response.output_item.done" {
			calls = append(calls, ev.AsResponseOutputItemDone().Item.AsFunctionCall().CallID)
		}
	}
	if err := stream.Err(); err != nil || len(calls) != 2 {
		t.Fatalf("calls %v, err %v", calls, err)
	}
	rig.checkPassthrough(t)
	req, resp := split(t, rig.records(t))
	if names, _ := req.Attr("gen_ai.request.tool_names").([]any); len(names) != 2 || names[1] != "lookup_vendor" {
		t.Errorf("request %v", req.Attributes)
	}
	if ids := toolCallIDs(resp); len(ids) != 2 || ids[0] != calls[0] || ids[1] != calls[1] {
		t.Errorf("tool call ids %v, want %v", ids, calls)
	}
	if resp.Attr("gen_ai.usage.cache_read.input_tokens") != 1024.0 || resp.Attr("gen_ai.usage.reasoning.output_tokens") != 64.0 ||
		resp.Attr("openai.response.status") != "completed" {
		t.Errorf("response %v", resp.Attributes)
	}
}

func TestSDKStreamErrors(t *testing.T) {
	t.Run("chat error chunk", func(t *testing.T) {
		rig := newRig(t, &openaitest.Upstream{ErrorAfterEvents: 3, ErrorMessage: "upstream exploded"})
		stream := rig.client.Chat.Completions.NewStreaming(t.Context(), chatParams())
		for stream.Next() {
		}
		if err := stream.Err(); err == nil || !strings.Contains(err.Error(), "upstream exploded") {
			t.Fatalf("err %v", err)
		}
		rig.checkPassthrough(t)
		_, resp := split(t, rig.records(t))
		if resp.Attr("infertrail.incomplete") != true || resp.Attr("infertrail.incomplete_reason") != "error_event" ||
			!strings.Contains(string(resp.Content["error"]), "upstream exploded") {
			t.Fatalf("response %v %s", resp.Attributes, resp.Content["error"])
		}
	})
	t.Run("response failed", func(t *testing.T) {
		rig := newRig(t, &openaitest.Upstream{ErrorAfterEvents: 4, ErrorMessage: "upstream exploded"})
		stream := rig.client.Responses.NewStreaming(t.Context(), responses.ResponseNewParams{
			Model: "gpt-4.1", Input: responses.ResponseNewParamsInputUnion{OfString: sdk.String("hello")},
		})
		var failed responses.Response
		for stream.Next() {
			if ev := stream.Current(); ev.Type == "response.failed" {
				failed = ev.AsResponseFailed().Response
			}
		}
		if err := stream.Err(); err != nil || failed.Error.Message != "upstream exploded" {
			t.Fatalf("failed %+v, err %v", failed, err)
		}
		rig.checkPassthrough(t)
		_, resp := split(t, rig.records(t))
		if resp.Attr("openai.response.status") != "failed" || resp.Attr("gen_ai.response.id") != failed.ID ||
			!strings.Contains(string(resp.Content["error"]), "upstream exploded") {
			t.Fatalf("response %v %s", resp.Attributes, resp.Content["error"])
		}
	})
}
