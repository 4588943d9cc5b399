package main

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
	openaisdk "github.com/openai/openai-go/v3"
	openaiopt "github.com/openai/openai-go/v3/option"

	"github.com/infertrail/infertrail/capture/gateway"
	"github.com/infertrail/infertrail/capture/mcp/mcptest"
	"github.com/infertrail/infertrail/capture/openai/openaitest"
)

// TestE2EPolicy runs the example policies in the built binary, with the
// official SDKs as clients: unapproved models and prompts carrying secrets
// are denied in OpenAI's error shape without reaching the upstream; a
// payment above the limit is not run; the rest passes; every decision is
// on record.
func TestE2EPolicy(t *testing.T) {
	t.Parallel()
	up := &openaitest.Upstream{Model: "gpt-4o-2024-08-06"}
	upSrv := httptest.NewServer(up)
	defer upSrv.Close()
	server := mcptest.NewServer(nil, nil)
	mcpSrv := httptest.NewServer(sdk.NewStreamableHTTPHandler(func(*http.Request) *sdk.Server { return server }, nil))
	defer mcpSrv.Close()
	policies, err := filepath.Abs("../../examples/policies")
	if err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(t.TempDir(), "infertrail.yaml")
	os.WriteFile(cfg, []byte("policy:\n  dir: "+policies+"\n"), 0o600)
	dir := t.TempDir()
	s := startServer(t, dir, "--config", cfg, "--openai-upstream", upSrv.URL+"/v1", "--mcp", "payments="+mcpSrv.URL)

	client := openaisdk.NewClient(openaiopt.WithBaseURL(s.url+"/openai/v1/"), openaiopt.WithAPIKey("sk-e2e-caller-key-0123456789"),
		openaiopt.WithHeader(gateway.HeaderToken, s.token), openaiopt.WithMaxRetries(0))
	chat := func(model, prompt string) error {
		_, err := client.Chat.Completions.New(t.Context(), openaisdk.ChatCompletionNewParams{
			Model: model, Messages: []openaisdk.ChatCompletionMessageParamUnion{openaisdk.UserMessage(prompt)}})
		return err
	}
	if err := chat("gpt-4o", "What is the balance of account 7?"); err != nil {
		t.Fatalf("allowed chat: %v\n%s", err, s.stderr)
	}
	for _, c := range []struct{ model, prompt, want string }{
		{"gpt-3.5-turbo", "hello", "not on the approved list"},
		{"gpt-4o", "use my key AKIA" + "Z7Q2M4N6P3R2T3V5 to upload", "carries"},
	} {
		err := chat(c.model, c.prompt)
		var apiErr *openaisdk.Error
		if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusForbidden || !strings.Contains(apiErr.RawJSON(), c.want) {
			t.Errorf("chat %s %q: %v, want 403 mentioning %q", c.model, c.prompt, err, c.want)
		}
	}
	if up.Count() != 1 {
		t.Fatalf("%d upstream calls, want 1: a denied call was forwarded", up.Count())
	}

	cs, err := sdk.NewClient(&sdk.Implementation{Name: "finance-agent", Version: "1"}, nil).Connect(t.Context(),
		&sdk.StreamableClientTransport{Endpoint: s.url + "/mcp/payments", MaxRetries: -1, HTTPClient: &http.Client{Transport: tokenHeader{s.token}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CallTool(t.Context(), &sdk.CallToolParams{Name: "pay", Arguments: map[string]any{"invoice": "INV-1", "amount_eur": 300}}); err != nil {
		t.Fatalf("small payment: %v", err)
	}
	if _, err := cs.CallTool(t.Context(), &sdk.CallToolParams{Name: "pay", Arguments: map[string]any{"invoice": "INV-2", "amount_eur": 1200}}); err == nil ||
		!strings.Contains(err.Error(), "above the 1000 EUR limit") {
		t.Fatalf("large payment: %v", err)
	}
	cs.Close()

	results := map[string]int{}
	for seq := range treeSize(t, s.url) {
		rec, _, err := getRecord(t.Context(), s.url, seq)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(rec.Record), `"kind":"policy_decision"`) {
			for _, r := range []string{"allow", "deny", "require_approval"} {
				if strings.Contains(string(rec.Record), `"policy.result":"`+r+`"`) {
					results[r]++
				}
			}
		}
		if strings.Contains(string(rec.Record), `"access.action":"policy.load"`) {
			results["load"]++
		}
	}
	if results["allow"] != 2 || results["deny"] != 2 || results["require_approval"] != 1 || results["load"] != 1 {
		t.Fatalf("decisions on record: %v", results)
	}
}
