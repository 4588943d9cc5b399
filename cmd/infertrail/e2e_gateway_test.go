package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	anthropicsdk "github.com/anthropics/anthropic-sdk-go/v2"
	anthropicopt "github.com/anthropics/anthropic-sdk-go/v2/option"
	openaisdk "github.com/openai/openai-go/v3"
	openaiopt "github.com/openai/openai-go/v3/option"

	"github.com/infertrail/infertrail"
	"github.com/infertrail/infertrail/capture/anthropic/anthropictest"
	"github.com/infertrail/infertrail/capture/gateway"
	"github.com/infertrail/infertrail/capture/openai/openaitest"
	"github.com/infertrail/infertrail/ledger"
)

const (
	e2eVirtualKey  = "vk-e2e-agent-key-0123456789abcdef"
	e2eUpstreamKey = "sk-ant-e2e-upstream-key-9876543210"
)

// TestE2EGateway runs the built binary as an Anthropic gateway with a
// virtual key, drives it with the official SDK, and checks the records,
// the receipt, offline verification, and that no key landed anywhere.
func TestE2EGateway(t *testing.T) {
	up := &anthropictest.Upstream{Model: "claude-e2e-answered", APIKey: e2eUpstreamKey,
		ToolCalls: []anthropictest.ToolCall{{ID: "toolu_e2e_1", Name: "pay_invoice", Input: `{"invoice":"7","amount_eur":1200}`}}}
	upSrv := httptest.NewServer(up)
	defer upSrv.Close()

	dir := t.TempDir()
	cfg := filepath.Join(t.TempDir(), "infertrail.yaml")
	os.WriteFile(cfg, []byte(`gateway:
  virtual_keys:
    - name: payments
      key: env:E2E_VIRTUAL_KEY
      agent: agent:payments-bot
      owner: team:payments
      tenant: acme
      upstream:
        anthropic: env:E2E_UPSTREAM_KEY
`), 0o600)
	s := startServerWith(t, dir, "127.0.0.1:0", []string{"E2E_VIRTUAL_KEY=" + e2eVirtualKey, "E2E_UPSTREAM_KEY=" + e2eUpstreamKey},
		"serve", "--data", dir, "--listen", "127.0.0.1:0", "--config", cfg, "--anthropic-upstream", upSrv.URL,
		"--openai-upstream", upSrv.URL)

	var resp *http.Response
	client := anthropicsdk.NewClient(anthropicopt.WithBaseURL(s.url+"/anthropic"), anthropicopt.WithAPIKey(e2eVirtualKey),
		anthropicopt.WithMaxRetries(0), anthropicopt.WithHeader(gateway.HeaderSession, "sess-e2e"))
	stream := client.Messages.NewStreaming(t.Context(), anthropicsdk.MessageNewParams{
		Model: "claude-e2e-requested", MaxTokens: 256,
		Messages: []anthropicsdk.MessageParam{anthropicsdk.NewUserMessage(anthropicsdk.NewTextBlock("Pay invoice 7"))},
		Tools: []anthropicsdk.ToolUnionParam{{OfTool: &anthropicsdk.ToolParam{Name: "pay_invoice",
			InputSchema: anthropicsdk.ToolInputSchemaParam{Properties: map[string]any{"invoice": map[string]any{"type": "string"}}}}}},
	}, anthropicopt.WithResponseInto(&resp))
	var msg anthropicsdk.Message
	for stream.Next() {
		if err := msg.Accumulate(stream.Current()); err != nil {
			t.Fatal(err)
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatalf("stream: %v\n--- stderr:\n%s", err, s.stderr)
	}
	if msg.Model != "claude-e2e-answered" || len(msg.Content) == 0 {
		t.Fatalf("message %+v", msg)
	}
	if last, _ := up.Last(); last.Header.Get("x-api-key") != e2eUpstreamKey {
		t.Fatalf("upstream saw x-api-key %q, want the virtual key's upstream key", last.Header.Get("x-api-key"))
	}

	// The request record is durable and has a receipt.
	var seq int64
	if _, err := fmt.Sscan(resp.Header.Get(gateway.HeaderRecord), &seq); err != nil {
		t.Fatalf("%s %q: %v", gateway.HeaderRecord, resp.Header.Get(gateway.HeaderRecord), err)
	}
	waitCheckpoint(t, s.url, seq+1)
	rec, found, err := getRecord(t.Context(), s.url, seq)
	if err != nil || !found {
		t.Fatalf("record %d: %v %v", seq, found, err)
	}
	receipt := getBody(t, s.url, fmt.Sprintf("/v1/records/%d/receipt", seq))
	var info struct {
		Origin string `json:"origin"`
	}
	json.Unmarshal(getBody(t, s.url, "/v1/log"), &info)
	if idx, err := ledger.VerifyProof(receipt, rec.Record, info.Origin, mustVerifier(t, s.vkey)); err != nil || idx != seq {
		t.Fatalf("receipt for record %d: index %d, %v", seq, idx, err)
	}
	r, err := infertrail.ParseLeaf(rec.Record)
	if err != nil {
		t.Fatal(err)
	}
	if r.Tenant != "acme" || r.Actor.ID != "agent:payments-bot" || r.SessionID != "sess-e2e" || r.Source != "anthropic" ||
		!strings.HasPrefix(r.Actor.CredentialFingerprint, "hmac-sha256:") {
		t.Fatalf("request record %s", rec.Record)
	}

	// Shut down: every record is written, and the log verifies offline.
	if code := s.stop(); code != 0 {
		t.Fatalf("exit %d\n%s", code, s.stderr)
	}
	if res := runCLI(t, nil, time.Minute, "verify", "--data", dir); res.code != 0 {
		t.Fatalf("verify: %s", res)
	}
	s2 := startServer(t, dir)
	if n := treeSize(t, s2.url); n != seq+2 {
		t.Fatalf("tree size %d, want the request and the response record after record %d", n, seq)
	}
	resp2, body := getContent(t, s2.url, seq+1)
	if !strings.Contains(body, "toolu_e2e_1") || !strings.Contains(body, `"amount_eur":1200`) || !strings.Contains(resp2, "claude-e2e-answered") {
		t.Fatalf("response record %s\ncontent %s", resp2, body)
	}
	metrics := string(getBody(t, s2.url, "/metrics"))
	t.Logf("records verified offline; response content %d bytes", len(body))
	s2.stop()

	// No key landed anywhere: data folder, output, metrics.
	var stored []byte
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			b, _ := os.ReadFile(p)
			stored = append(stored, b...)
		}
		return nil
	})
	for _, key := range []string{e2eVirtualKey, e2eUpstreamKey} {
		for what, b := range map[string]string{"data folder": string(stored), "stdout": s.stdout.String(),
			"stderr": s.stderr.String() + s2.stderr.String(), "metrics": metrics} {
			if strings.Contains(b, key) {
				t.Errorf("the %s holds a key", what)
			}
		}
	}
}

// getContent returns a record's leaf and its content, read with ?content=true.
func getContent(tb testing.TB, url string, seq int64) (leaf, content string) {
	tb.Helper()
	var r struct {
		Record  json.RawMessage `json:"record"`
		Content json.RawMessage `json:"content"`
	}
	if err := json.Unmarshal(getBody(tb, url, fmt.Sprintf("/v1/records/%d?content=true", seq)), &r); err != nil {
		tb.Fatal(err)
	}
	return string(r.Record), string(r.Content)
}

// TestE2EGatewayOpenAI checks the OpenAI route of the built binary, set by
// environment variable, with a streamed chat and the caller's own key.
func TestE2EGatewayOpenAI(t *testing.T) {
	up := &openaitest.Upstream{Model: "gpt-e2e-answered"}
	upSrv := httptest.NewServer(up)
	defer upSrv.Close()
	dir := t.TempDir()
	s := startServerWith(t, dir, "127.0.0.1:0", []string{"INFERTRAIL_OPENAI_UPSTREAM=" + upSrv.URL + "/v1", "INFERTRAIL_GATEWAY_DURABILITY=fail-closed"},
		"serve", "--data", dir, "--listen", "127.0.0.1:0")
	// Without an InferTrail token the gateway refuses, in OpenAI's error shape.
	anon := openaisdk.NewClient(openaiopt.WithBaseURL(s.url+"/openai/v1/"), openaiopt.WithAPIKey("sk-e2e-caller-key-0123456789"), openaiopt.WithMaxRetries(0))
	_, err := anon.Chat.Completions.New(t.Context(), openaisdk.ChatCompletionNewParams{
		Model: "gpt-e2e", Messages: []openaisdk.ChatCompletionMessageParamUnion{openaisdk.UserMessage("hello")},
	})
	var apiErr *openaisdk.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusUnauthorized || up.Count() != 0 {
		t.Fatalf("call without a token: %v (upstream calls %d)", err, up.Count())
	}
	client := openaisdk.NewClient(openaiopt.WithBaseURL(s.url+"/openai/v1/"), openaiopt.WithAPIKey("sk-e2e-caller-key-0123456789"),
		openaiopt.WithHeader(gateway.HeaderToken, s.token), openaiopt.WithMaxRetries(0))
	var resp *http.Response
	cc, err := client.Chat.Completions.New(t.Context(), openaisdk.ChatCompletionNewParams{
		Model: "gpt-e2e", Messages: []openaisdk.ChatCompletionMessageParamUnion{openaisdk.UserMessage("hello")},
	}, openaiopt.WithResponseInto(&resp))
	if err != nil {
		t.Fatalf("%v\n--- stderr:\n%s", err, s.stderr)
	}
	var reqSeq, respSeq int64
	if _, err := fmt.Sscanf(resp.Header.Get(gateway.HeaderRecord), "%d, %d", &reqSeq, &respSeq); err != nil || cc.Model != "gpt-e2e-answered" {
		t.Fatalf("model %q, %s %q: want both records durable in fail-closed mode", cc.Model, gateway.HeaderRecord, resp.Header.Get(gateway.HeaderRecord))
	}
	if last, _ := up.Last(); last.Header.Get(gateway.HeaderToken) != "" || last.Header.Get("Authorization") != "Bearer sk-e2e-caller-key-0123456789" {
		t.Fatalf("upstream saw %v", last.Header)
	}
	leaf, content := getContent(t, s.url, respSeq)
	if r, _ := infertrail.ParseLeaf([]byte(leaf)); r == nil || !strings.HasPrefix(r.Actor.ID, "token/") {
		t.Errorf("response record's actor is not the token: %s", leaf)
	}
	if !strings.Contains(leaf, `"gen_ai.response.model":"gpt-e2e-answered"`) || !strings.Contains(content, cc.Choices[0].Message.Content) {
		t.Fatalf("response record %s\ncontent %s", leaf, content)
	}
}

// TestE2EGatewayOwnListener serves the gateway on its own address: the
// main listener then has no gateway routes.
func TestE2EGatewayOwnListener(t *testing.T) {
	upSrv := httptest.NewServer(&openaitest.Upstream{})
	defer upSrv.Close()
	dir := t.TempDir()
	s := startServer(t, dir, "--openai-upstream", upSrv.URL, "--gateway-listen", "127.0.0.1:0")
	m := regexp.MustCompile(`gateway: +(http://\S+)/openai`).FindStringSubmatch(s.stdout.String())
	if m == nil {
		t.Fatalf("no gateway address printed:\n%s", s.stdout)
	}
	get := func(url string) int {
		req, _ := http.NewRequestWithContext(t.Context(), "GET", url, nil)
		req.Header.Set("Authorization", "Bearer sk-e2e-0123456789")
		req.Header.Set(gateway.HeaderToken, s.token)
		resp, err := httpClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := get(m[1] + "/openai/v1/models"); code != 200 {
		t.Errorf("gateway listener: %d", code)
	}
	if code := get(s.url + "/openai/v1/models"); code != 404 {
		t.Errorf("main listener serves the gateway too: %d", code)
	}
}

// TestE2EGatewayTokenAsKey: an agent configured with an InferTrail token
// as its API key never holds the provider key: the gateway sends its own,
// and the records are the token's tenant's.
func TestE2EGatewayTokenAsKey(t *testing.T) {
	up := &openaitest.Upstream{Model: "gpt-e2e-answered"}
	upSrv := httptest.NewServer(up)
	defer upSrv.Close()
	dir := t.TempDir()
	cfg := filepath.Join(t.TempDir(), "infertrail.yaml")
	os.WriteFile(cfg, []byte("gateway:\n  openai:\n    upstream: "+upSrv.URL+"/v1\n    api_key: env:E2E_UPSTREAM_KEY\n"), 0o600)
	s := startServerWith(t, dir, "127.0.0.1:0", []string{"E2E_UPSTREAM_KEY=" + e2eUpstreamKey},
		"serve", "--data", dir, "--listen", "127.0.0.1:0", "--config", cfg)
	r := runCLI(t, []string{"INFERTRAIL_TOKEN=" + s.admin}, time.Minute, "tokens", "create", "--server", s.url,
		"--role", "gateway", "--tenant", "acme", "--name", "support-bot")
	agentToken := strings.TrimSpace(r.stdout)
	if r.code != 0 || !strings.HasPrefix(agentToken, "itk_") {
		t.Fatalf("tokens create:\n%s", r)
	}
	client := openaisdk.NewClient(openaiopt.WithBaseURL(s.url+"/openai/v1/"), openaiopt.WithAPIKey(agentToken), openaiopt.WithMaxRetries(0))
	var resp *http.Response
	if _, err := client.Chat.Completions.New(t.Context(), openaisdk.ChatCompletionNewParams{
		Model: "gpt-e2e", Messages: []openaisdk.ChatCompletionMessageParamUnion{openaisdk.UserMessage("hello")},
	}, openaiopt.WithResponseInto(&resp)); err != nil {
		t.Fatalf("%v\n--- stderr:\n%s", err, s.stderr)
	}
	if last, _ := up.Last(); last.Header.Get("Authorization") != "Bearer "+e2eUpstreamKey {
		t.Fatalf("upstream saw Authorization %q, want the gateway's own key", last.Header.Get("Authorization"))
	}
	var seq int64
	fmt.Sscan(resp.Header.Get(gateway.HeaderRecord), &seq)
	rec, found, err := getRecord(t.Context(), s.url, seq)
	if err != nil || !found {
		t.Fatal(found, err)
	}
	if !strings.Contains(string(rec.Record), `"tenant":"acme"`) || !strings.Contains(string(rec.Record), `"infertrail.token":"support-bot"`) ||
		strings.Contains(string(rec.Record), agentToken) {
		t.Fatalf("request record %s", rec.Record)
	}
	// Revoked: refused from the next call, in OpenAI's error shape.
	var list struct{ Tokens []struct{ ID, Name string } }
	json.Unmarshal(getBody(t, s.url, "/v1/tokens"), &list)
	for _, tok := range list.Tokens {
		if tok.Name == "support-bot" {
			if r := runCLI(t, []string{"INFERTRAIL_TOKEN=" + s.admin}, time.Minute, "tokens", "revoke", tok.ID, "--server", s.url); r.code != 0 {
				t.Fatalf("tokens revoke:\n%s", r)
			}
		}
	}
	_, err = client.Chat.Completions.New(t.Context(), openaisdk.ChatCompletionNewParams{
		Model: "gpt-e2e", Messages: []openaisdk.ChatCompletionMessageParamUnion{openaisdk.UserMessage("hello")},
	})
	var apiErr *openaisdk.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusUnauthorized || !strings.Contains(apiErr.RawJSON(), "revoked") {
		t.Fatalf("call with a revoked token: %v", err)
	}
}
