package main

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

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
	os.WriteFile(cfg, []byte("policy:\n  dir: "+policies+"\n  approval_timeout: 1m\n"), 0o600)
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
	// A payment above the limit is held until an approver decides: the
	// first is approved and runs, the second is rejected and does not.
	approver := createToken(t, s, `{"name":"carol","tenant":"*","roles":["approver"],"expires_in":"1h"}`)
	for _, c := range []struct {
		invoice, decision string
		ok                bool
	}{{"INV-2", "approved", true}, {"INV-3", "rejected", false}} {
		done := make(chan error, 1)
		go func() {
			_, err := cs.CallTool(t.Context(), &sdk.CallToolParams{Name: "pay", Arguments: map[string]any{"invoice": c.invoice, "amount_eur": 1200}})
			done <- err
		}()
		id := waitPendingApproval(t, s, approver)
		select {
		case err := <-done:
			t.Fatalf("the held call %s returned before a decision: %v", c.invoice, err)
		default:
		}
		code, body := apiDo(t, approver, "POST", s.url+"/v1/approvals/"+id, `{"decision":"`+c.decision+`","rationale":"checked against PO-2231"}`)
		if code != http.StatusOK {
			t.Fatalf("decide %s: %d %s", c.invoice, code, body)
		}
		err := <-done
		if c.ok && err != nil || !c.ok && (err == nil || !strings.Contains(err.Error(), "rejected")) {
			t.Fatalf("payment %s after %s: %v", c.invoice, c.decision, err)
		}
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
		for _, d := range []string{"approved", "rejected"} {
			if strings.Contains(string(rec.Record), `"approval.decision":"`+d+`"`) && strings.Contains(string(rec.Record), `"approval.approver":`) {
				results[d]++
			}
		}
		if strings.Contains(string(rec.Record), `"access.action":"policy.load"`) {
			results["load"]++
		}
	}
	if results["allow"] != 2 || results["deny"] != 2 || results["require_approval"] != 2 || results["load"] != 1 ||
		results["approved"] != 1 || results["rejected"] != 1 {
		t.Fatalf("decisions on record: %v", results)
	}
}

// createToken creates an API token with the server's admin token and
// returns its secret.
func createToken(tb testing.TB, s *server, body string) string {
	tb.Helper()
	code, b := apiDo(tb, s.admin, "POST", s.url+"/v1/tokens", body)
	var out struct{ Token string }
	if code != http.StatusCreated || json.Unmarshal(b, &out) != nil {
		tb.Fatalf("create token: %d %s", code, b)
	}
	return out.Token
}

// apiDo sends a JSON request with a bearer token and returns the status
// and body.
func apiDo(tb testing.TB, token, method, url, body string) (int, []byte) {
	tb.Helper()
	req, err := http.NewRequestWithContext(tb.Context(), method, url, strings.NewReader(body))
	if err != nil {
		tb.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// waitPendingApproval waits for one pending approval and returns its id.
func waitPendingApproval(tb testing.TB, s *server, token string) string {
	tb.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		code, b := apiDo(tb, token, "GET", s.url+"/v1/approvals?status=pending", "")
		var out struct {
			Approvals []struct {
				ID string `json:"id"`
			} `json:"approvals"`
		}
		if code == http.StatusOK && json.Unmarshal(b, &out) == nil && len(out.Approvals) == 1 {
			return out.Approvals[0].ID
		}
		time.Sleep(20 * time.Millisecond)
	}
	tb.Fatal("no pending approval appeared")
	return ""
}

// TestE2EResponsePolicy runs a response policy and a redact obligation in
// the built binary, configured with policy.hold_streams: a streamed
// response the policy denies reaches the OpenAI SDK as a 403 and never as
// text; e-mail addresses in a prompt are masked before the upstream sees
// them; a malformed obligation refuses the call.
func TestE2EResponsePolicy(t *testing.T) {
	t.Parallel()
	up := &openaitest.Upstream{Text: "Project Falcon launches on Monday."}
	upSrv := httptest.NewServer(up)
	defer upSrv.Close()
	policies := t.TempDir()
	for name, text := range map[string]string{
		"response.rego": `package infertrail.inference.response

import rego.v1

default decision := {"result": "allow"}

decision := {"result": "deny", "reasons": ["the response names project Falcon"]} if contains(input.response.text, "Falcon")
`,
		"request.rego": `package infertrail.inference.request

import rego.v1

default decision := {"result": "modify", "obligations": [{"redact": "prompt", "detectors": ["email"]}]}

decision := {"result": "allow", "obligations": [{"redact": "prompt", "detectors": ["no-such-detector"]}]} if {
	input.inference.model == "gpt-broken"
}
`,
	} {
		if err := os.WriteFile(filepath.Join(policies, name), []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cfg := filepath.Join(t.TempDir(), "infertrail.yaml")
	os.WriteFile(cfg, []byte("policy:\n  dir: "+policies+"\n  hold_streams: true\n"), 0o600)
	s := startServer(t, t.TempDir(), "--config", cfg, "--openai-upstream", upSrv.URL+"/v1")
	client := openaisdk.NewClient(openaiopt.WithBaseURL(s.url+"/openai/v1/"), openaiopt.WithAPIKey("sk-e2e-caller-key-0123456789"),
		openaiopt.WithHeader(gateway.HeaderToken, s.token), openaiopt.WithMaxRetries(0))
	params := func(model, prompt string) openaisdk.ChatCompletionNewParams {
		return openaisdk.ChatCompletionNewParams{Model: model, Messages: []openaisdk.ChatCompletionMessageParamUnion{openaisdk.UserMessage(prompt)}}
	}

	stream := client.Chat.Completions.NewStreaming(t.Context(), params("gpt-4o", "Mail bob@example.com: what launches Monday?"))
	var text strings.Builder
	for stream.Next() {
		for _, c := range stream.Current().Choices {
			text.WriteString(c.Delta.Content)
		}
	}
	var apiErr *openaisdk.Error
	if err := stream.Err(); !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusForbidden ||
		!strings.Contains(apiErr.Message, "the response names project Falcon") || strings.Contains(text.String(), "Falcon") {
		t.Fatalf("denied stream: %v, text %q\n%s", err, text.String(), s.stderr)
	}
	if last, ok := up.Last(); !ok || strings.Contains(string(last.Body), "bob@example.com") || !strings.Contains(string(last.Body), "[redacted:email]") {
		t.Fatalf("the upstream got %s", last.Body)
	}

	_, err := client.Chat.Completions.New(t.Context(), params("gpt-broken", "hello"))
	if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusForbidden || !strings.Contains(apiErr.Message, `"no-such-detector"`) {
		t.Fatalf("unfulfillable obligation: %v", err)
	}
	if up.Count() != 1 {
		t.Fatalf("%d upstream calls, want 1", up.Count())
	}

	// The withheld response's record is written after the fact, as the
	// stream's end is: wait for it.
	deadline := time.Now().Add(10 * time.Second)
	for {
		var withheld, notEnforced int
		for seq := range treeSize(t, s.url) {
			rec, _, err := getRecord(t.Context(), s.url, seq)
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(string(rec.Record), `"infertrail.withheld":`) {
				withheld++
			}
			if strings.Contains(string(rec.Record), `"policy.enforced":false`) {
				notEnforced++
			}
		}
		if withheld == 1 && notEnforced == 0 {
			return
		}
		if withheld > 1 || notEnforced > 0 || time.Now().After(deadline) {
			t.Fatalf("%d withheld responses, %d decisions not enforced", withheld, notEnforced)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
