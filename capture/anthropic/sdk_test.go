package anthropic_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	sdk "github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/anthropics/anthropic-sdk-go/v2/option"

	"github.com/infertrail/infertrail"
	"github.com/infertrail/infertrail/capture/anthropic"
	"github.com/infertrail/infertrail/capture/anthropic/anthropictest"
	"github.com/infertrail/infertrail/capture/gateway"
	"github.com/infertrail/infertrail/capture/gateway/gatewaytest"
)

const (
	callerKey   = "sk-ant-api03-caller-0123456789"
	traceID     = "4bf92f3577b34da6a3ce929d0e0e4736"
	callerSpan  = "00f067aa0ba902b7"
	traceparent = "00-" + traceID + "-" + callerSpan + "-01"
)

// rig is the official SDK → the gateway over a real trail → a scripted
// Anthropic upstream.
type rig struct {
	up     *anthropictest.Upstream
	trail  *gatewaytest.Trail
	gw     *gateway.Gateway
	srv    *httptest.Server
	client sdk.Client
	tee    *gatewaytest.Tee
}

func newRig(tb testing.TB, up *anthropictest.Upstream, key string, edit func(*gateway.Config)) *rig {
	tb.Helper()
	upSrv := httptest.NewServer(up)
	tb.Cleanup(upSrv.Close)
	trail := gatewaytest.NewTrail(tb)
	cfg := gateway.Config{
		Recorder: trail.Log, Secret: gatewaytest.Secret,
		Upstreams: []gateway.Upstream{{Provider: anthropic.Provider{}, BaseURL: upSrv.URL,
			ResponseHeaderTimeout: 5 * time.Second, IdleTimeout: 5 * time.Second}},
	}
	if edit != nil {
		edit(&cfg)
	}
	gw, err := gateway.New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	srv := trail.Serve(tb, gw)
	t := &gatewaytest.Tee{}
	client := sdk.NewClient(
		option.WithBaseURL(srv.URL+"/anthropic"), option.WithAPIKey(key), option.WithMaxRetries(0),
		option.WithHeader("traceparent", traceparent),
		option.WithHeader(gateway.HeaderAgent, "agent:invoice-bot"),
		option.WithHeader(gateway.HeaderSession, "session-7"),
		option.WithHTTPClient(&http.Client{Transport: t}),
	)
	return &rig{up: up, trail: trail, gw: gw, srv: srv, client: client, tee: t}
}

func (r *rig) records(tb testing.TB) []gatewaytest.Record { return r.trail.Drain(tb, r.srv, r.gw) }

var weatherTool = sdk.ToolUnionParam{OfTool: &sdk.ToolParam{
	Name: "get_weather",
	InputSchema: sdk.ToolInputSchemaParam{Properties: map[string]any{
		"location": map[string]any{"type": "string"},
		"unit":     map[string]any{"type": "string", "enum": []string{"celsius", "fahrenheit"}},
	}},
}}

func params(tools ...sdk.ToolUnionParam) sdk.MessageNewParams {
	return sdk.MessageNewParams{
		Model:         "claude-sonnet-4-5",
		MaxTokens:     1024,
		StopSequences: []string{"</answer>"},
		Messages:      []sdk.MessageParam{sdk.NewUserMessage(sdk.NewTextBlock("What is the weather in Paris?"))},
		Tools:         tools,
	}
}

func accumulate(tb testing.TB, s interface {
	Next() bool
	Current() sdk.MessageStreamEventUnion
	Err() error
	Close() error
}) (sdk.Message, error) {
	tb.Helper()
	defer s.Close()
	var m sdk.Message
	for s.Next() {
		if err := m.Accumulate(s.Current()); err != nil {
			tb.Fatal(err)
		}
	}
	return m, s.Err()
}

func attr(r gatewaytest.Record, k string) any { return r.Attr(k) }

func sameJSON(tb testing.TB, a, b []byte) bool {
	tb.Helper()
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		tb.Fatalf("not JSON: %s / %s", a, b)
	}
	return reflect.DeepEqual(x, y)
}

// split returns the request and response records of one call.
func split(tb testing.TB, recs []gatewaytest.Record) (req, resp gatewaytest.Record) {
	tb.Helper()
	if len(recs) != 2 {
		tb.Fatalf("%d records, want 2", len(recs))
	}
	req, resp = recs[0], recs[1]
	if attr(req, "infertrail.phase") != "request" {
		req, resp = resp, req
	}
	if attr(req, "infertrail.phase") != "request" || attr(resp, "infertrail.phase") != "response" {
		tb.Fatalf("phases %v, %v", attr(req, "infertrail.phase"), attr(resp, "infertrail.phase"))
	}
	if len(resp.Links) != 1 || resp.Links[0].Rel != "answers" || resp.Links[0].ID != req.ID {
		tb.Errorf("response links %+v, request id %s", resp.Links, req.ID)
	}
	return req, resp
}

func TestSDKThroughGateway(t *testing.T) {
	for _, tc := range []struct {
		name     string
		streamed bool
		tools    bool
	}{
		{"text", false, false},
		{"text streamed", true, false},
		{"tool use", false, true},
		{"tool use streamed", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up := &anthropictest.Upstream{Model: "claude-sonnet-4-5-20250929", TextBytes: 2048, ChunkBytes: 64,
				Thinking: "Paris: use the tool.", CacheReadTokens: 100, InputTokens: 50}
			rig := newRig(t, up, callerKey, nil)
			p := params()
			if tc.tools {
				p = params(weatherTool)
			}
			var m sdk.Message
			if tc.streamed {
				var err error
				if m, err = accumulate(t, rig.client.Messages.NewStreaming(t.Context(), p)); err != nil {
					t.Fatal(err)
				}
			} else {
				mp, err := rig.client.Messages.New(t.Context(), p)
				if err != nil {
					t.Fatal(err)
				}
				m = *mp
			}

			// What the SDK got.
			if m.Model != "claude-sonnet-4-5-20250929" || len(m.Content[1].Text) != 2048 || m.Content[0].Thinking != up.Thinking ||
				m.Usage.InputTokens != 50 || m.Usage.CacheReadInputTokens != 100 {
				t.Errorf("message: %s", m.RawJSON())
			}
			var toolIDs []string
			for _, b := range m.Content {
				if b.Type == "tool_use" {
					toolIDs = append(toolIDs, b.ID)
				}
			}
			if tc.tools != (len(toolIDs) == 1) {
				t.Errorf("tool calls %v", toolIDs)
			}

			// What passed through: byte for byte, both ways.
			got, ok := up.Last()
			if !ok {
				t.Fatal("the upstream got nothing")
			}
			if sent := rig.tee.Last(); !bytes.Equal(sent, got.Sent) || len(sent) < 2048 {
				t.Errorf("the client got %d bytes, the upstream sent %d:\n%q\n%q", len(sent), len(got.Sent), sent, got.Sent)
			}
			if got.Header.Get("Authorization") != "Bearer "+callerKey || got.Header.Get(gateway.HeaderAgent) != "" ||
				!strings.HasPrefix(got.Header.Get("traceparent"), "00-"+traceID+"-") || strings.Contains(got.Header.Get("traceparent"), callerSpan) {
				t.Errorf("upstream headers: %v", got.Header)
			}

			req, resp := split(t, rig.records(t))
			// The request record.
			for k, want := range map[string]any{
				"gen_ai.operation.name": "chat", "gen_ai.provider.name": "anthropic", "gen_ai.request.model": "claude-sonnet-4-5",
				"gen_ai.request.max_tokens": 1024.0, "gen_ai.request.stop_sequences": []any{"</answer>"},
			} {
				if !reflect.DeepEqual(attr(req, k), want) {
					t.Errorf("request %s = %v, want %v", k, attr(req, k), want)
				}
			}
			if tc.tools && !reflect.DeepEqual(attr(req, "gen_ai.request.tool_names"), []any{"get_weather"}) {
				t.Errorf("tool names %v", attr(req, "gen_ai.request.tool_names"))
			}
			if !bytes.Equal(req.Content["request"], got.Body) && !sameJSON(t, req.Content["request"], got.Body) {
				t.Errorf("request content %s\nupstream got %s", req.Content["request"], got.Body)
			}
			for _, r := range []gatewaytest.Record{req, resp} {
				if r.Kind != infertrail.KindInference || r.Source != "anthropic" || r.TraceID != traceID || r.ParentSpanID != callerSpan ||
					r.SessionID != "session-7" || r.Actor.ID != "agent:invoice-bot" ||
					r.Actor.CredentialFingerprint == "" || strings.Contains(r.Actor.CredentialFingerprint, callerKey) {
					t.Errorf("record envelope: %+v", r.Record)
				}
			}

			// The response record.
			for k, want := range map[string]any{
				"gen_ai.response.model": "claude-sonnet-4-5-20250929", "gen_ai.response.id": m.ID,
				"gen_ai.response.finish_reasons": []any{string(m.StopReason)},
				"gen_ai.usage.input_tokens":      150.0, "gen_ai.usage.cache_read.input_tokens": 100.0,
				"gen_ai.usage.cache_creation.input_tokens": 0.0, "anthropic.usage.input_tokens": 50.0,
				"gen_ai.usage.output_tokens": float64(m.Usage.OutputTokens), "http.response.status_code": 200.0,
				"infertrail.incomplete": nil, "infertrail.truncated": nil,
			} {
				if !reflect.DeepEqual(attr(resp, k), want) {
					t.Errorf("response %s = %v, want %v", k, attr(resp, k), want)
				}
			}
			if tc.streamed != (attr(resp, "infertrail.stream") == true) {
				t.Errorf("infertrail.stream = %v", attr(resp, "infertrail.stream"))
			}
			var calls []struct{ ID, Name string }
			if v, ok := resp.Attributes["gen_ai.response.tool_calls"]; ok {
				json.Unmarshal(v, &calls)
			}
			var callIDs []string
			for _, c := range calls {
				if c.Name != "get_weather" {
					t.Errorf("tool call %+v", c)
				}
				callIDs = append(callIDs, c.ID)
			}
			if !reflect.DeepEqual(callIDs, toolIDs) {
				t.Errorf("recorded tool calls %v, the SDK got %v", callIDs, toolIDs)
			}
			// The response content is the message, as the SDK understood it.
			if !sameJSON(t, resp.Content["response"], []byte(m.RawJSON())) {
				t.Errorf("response content %s\nSDK message %s", resp.Content["response"], m.RawJSON())
			}
			if !tc.streamed && !bytes.Equal(resp.Content["response"], got.Sent) && !sameJSON(t, resp.Content["response"], got.Sent) {
				t.Errorf("response content is not the body sent")
			}
		})
	}
}

func TestSDKVirtualKey(t *testing.T) {
	up := &anthropictest.Upstream{APIKey: "sk-ant-real-upstream-key"}
	rig := newRig(t, up, "vk-invoice-bot", func(c *gateway.Config) {
		c.VirtualKeys = []gateway.VirtualKey{{Name: "invoice-bot", Key: "vk-invoice-bot", Agent: "agent:invoice", Owner: "user:alice",
			Upstream: map[string]gateway.Secret{"anthropic": "sk-ant-real-upstream-key"}}}
		c.RequireVirtualKey = true
	})
	if _, err := accumulate(t, rig.client.Messages.NewStreaming(t.Context(), params())); err != nil {
		t.Fatal(err)
	}
	got, _ := up.Last()
	if got.Header.Get("X-Api-Key") != "sk-ant-real-upstream-key" || got.Header.Get("Authorization") != "" {
		t.Errorf("upstream credentials: x-api-key %q, authorization %q", got.Header.Get("X-Api-Key"), got.Header.Get("Authorization"))
	}

	// A provider key is refused, in Anthropic's error shape.
	c := sdk.NewClient(option.WithBaseURL(rig.srv.URL+"/anthropic"), option.WithAPIKey("sk-ant-someone-else"), option.WithMaxRetries(0))
	_, err := c.Messages.New(t.Context(), params())
	var ae *sdk.Error
	if !errors.As(err, &ae) || ae.StatusCode != 401 || ae.Type() != "authentication_error" {
		t.Errorf("provider key: %v", err)
	}

	// The refused attempt is recorded too, with the key's fingerprint only.
	var call []gatewaytest.Record
	refusals := 0
	for _, r := range rig.records(t) {
		if attr(r, "infertrail.refused") != nil {
			refusals++
			if attr(r, "http.response.status_code") != 401.0 || r.Actor.CredentialFingerprint == "" || r.Content != nil {
				t.Errorf("refusal record %+v %v", r.Actor, r.Attributes)
			}
			continue
		}
		call = append(call, r)
	}
	if refusals != 1 {
		t.Errorf("%d refusal records, want 1", refusals)
	}
	_, resp := split(t, call)
	if resp.Actor.ID != "agent:invoice" || resp.Actor.OnBehalfOf != "user:alice" || attr(resp, "infertrail.virtual_key") != "invoice-bot" {
		t.Errorf("actor %+v, attributes %v", resp.Actor, resp.Attributes)
	}
}

func TestSDKFailures(t *testing.T) {
	for _, tc := range []struct {
		name     string
		up       *anthropictest.Upstream
		streamed bool
		check    func(t *testing.T, err error, resp gatewaytest.Record)
	}{
		{"rate limited", &anthropictest.Upstream{Status: 429, ErrorMessage: "slow down"}, false, func(t *testing.T, err error, resp gatewaytest.Record) {
			var ae *sdk.Error
			if !errors.As(err, &ae) || ae.StatusCode != 429 || ae.Type() != "rate_limit_error" || ae.Message != "slow down" {
				t.Errorf("err %v", err)
			}
			if attr(resp, "error.type") != "429" || !strings.Contains(string(resp.Content["error"]), "rate_limit_error") {
				t.Errorf("record %v %s", resp.Attributes, resp.Content["error"])
			}
		}},
		{"error event", &anthropictest.Upstream{ErrorAfterEvents: 5}, true, func(t *testing.T, err error, resp gatewaytest.Record) {
			var ae *sdk.Error
			if !errors.As(err, &ae) || ae.Type() != "overloaded_error" {
				t.Errorf("err %v", err)
			}
			if attr(resp, "infertrail.incomplete_reason") != "error_event" || !strings.Contains(string(resp.Content["error"]), "overloaded_error") ||
				attr(resp, "gen_ai.response.id") == nil {
				t.Errorf("record %v %s", resp.Attributes, resp.Content)
			}
		}},
		{"connection cut", &anthropictest.Upstream{CloseAfterEvents: 6, ToolCalls: []anthropictest.ToolCall{{Name: "approve_payment", Input: `{"invoice":7}`}}, ChunkBytes: 200},
			true, func(t *testing.T, err error, resp gatewaytest.Record) {
				if err == nil {
					t.Error("no error")
				}
				if attr(resp, "infertrail.incomplete") != true || attr(resp, "gen_ai.response.model") != "claude-sonnet-4-5" {
					t.Errorf("record %v", resp.Attributes)
				}
				// What was seen before the cut is kept: the tool call had started.
				calls, _ := attr(resp, "gen_ai.response.tool_calls").([]any)
				if len(calls) != 1 || calls[0].(map[string]any)["name"] != "approve_payment" ||
					!strings.Contains(string(resp.Content["response"]), anthropictest.DefaultText) {
					t.Errorf("tool calls %v, response %s", calls, resp.Content["response"])
				}
			}},
		{"upstream gone", nil, false, func(t *testing.T, err error, resp gatewaytest.Record) {
			var ae *sdk.Error
			if !errors.As(err, &ae) || ae.StatusCode != 502 || ae.Type() != "api_error" {
				t.Errorf("err %v", err)
			}
			if attr(resp, "infertrail.incomplete_reason") != "upstream_error" {
				t.Errorf("record %v", resp.Attributes)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up := tc.up
			if up == nil {
				up = &anthropictest.Upstream{}
			}
			rig := newRig(t, up, callerKey, func(c *gateway.Config) {
				if tc.up == nil {
					c.Upstreams[0].BaseURL = "http://127.0.0.1:1" // nothing listens there
				}
			})
			var err error
			if tc.streamed {
				_, err = accumulate(t, rig.client.Messages.NewStreaming(t.Context(), params()))
			} else {
				_, err = rig.client.Messages.New(t.Context(), params())
			}
			_, resp := split(t, rig.records(t))
			tc.check(t, err, resp)
		})
	}
}

func TestSDKOtherEndpoints(t *testing.T) {
	rig := newRig(t, &anthropictest.Upstream{InputTokens: 42}, callerKey, nil)
	n, err := rig.client.Messages.CountTokens(t.Context(), sdk.MessageCountTokensParams{Model: "claude-sonnet-4-5", Messages: params().Messages})
	if err != nil || n.InputTokens != 42 {
		t.Fatalf("count tokens: %v, %v", n, err)
	}
	page, err := rig.client.Models.List(t.Context(), sdk.ModelListParams{})
	if err != nil || len(page.Data) != 1 {
		t.Fatalf("models: %v, %v", page, err)
	}
	recs := rig.records(t)
	ops := map[string]int{}
	for _, r := range recs {
		if r.Kind != infertrail.KindDownstreamCall {
			t.Errorf("kind %s", r.Kind)
		}
		if op, _ := attr(r, "gen_ai.operation.name").(string); op != "" {
			ops[op]++
		}
	}
	if !reflect.DeepEqual(ops, map[string]int{"count_tokens": 2, "list_models": 2}) {
		t.Errorf("operations %v", ops)
	}
}
