package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/infertrail/infertrail/capture/mcp/mcptest"
)

// tokenHeader is an http.RoundTripper that sends an InferTrail token.
type tokenHeader struct{ token string }

func (h tokenHeader) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("X-InferTrail-Token", h.token)
	return http.DefaultTransport.RoundTrip(r)
}

// mcpRecords returns the records of the log that the MCP gateway wrote.
func mcpRecords(tb testing.TB, url string) []map[string]any {
	tb.Helper()
	var out []map[string]any
	for seq := range treeSize(tb, url) {
		rec, _, err := getRecord(tb.Context(), url, seq)
		if err != nil {
			tb.Fatal(err)
		}
		var r map[string]any
		json.Unmarshal(rec.Record, &r)
		if r["source"] == "mcp" || (r["attributes"] != nil && r["attributes"].(map[string]any)["mcp.server.name"] != nil) {
			r["seq"] = seq
			out = append(out, r)
		}
	}
	return out
}

func attr(r map[string]any, k string) any { return r["attributes"].(map[string]any)[k] }

// TestE2EMCPGateway relays an MCP server over Streamable HTTP through the
// built binary (--mcp NAME=URL), with the official SDK as the client.
func TestE2EMCPGateway(t *testing.T) {
	t.Parallel()
	server := mcptest.NewServer(nil, nil)
	up := httptest.NewServer(sdk.NewStreamableHTTPHandler(func(*http.Request) *sdk.Server { return server }, nil))
	defer up.Close()
	dir := t.TempDir()
	s := startServer(t, dir, "--mcp", "payments="+up.URL)
	if !strings.Contains(s.stdout.String(), "/mcp/payments → "+up.URL) {
		t.Errorf("serve does not show the MCP route:\n%s", s.stdout)
	}
	// Without a token: refused.
	cli := sdk.NewClient(&sdk.Implementation{Name: "finance-agent", Version: "0.9.0"}, nil)
	if _, err := cli.Connect(t.Context(), &sdk.StreamableClientTransport{Endpoint: s.url + "/mcp/payments", MaxRetries: -1}, nil); err == nil {
		t.Fatal("connected without a token")
	}
	cs, err := cli.Connect(t.Context(), &sdk.StreamableClientTransport{Endpoint: s.url + "/mcp/payments", MaxRetries: -1,
		HTTPClient: &http.Client{Transport: tokenHeader{s.token}}}, nil)
	if err != nil {
		t.Fatalf("connect: %v\n%s", err, s.stderr)
	}
	res, err := cs.CallTool(t.Context(), &sdk.CallToolParams{Name: "pay", Arguments: map[string]any{"invoice": "INV-7", "amount_eur": 1200}})
	if err != nil || res.IsError {
		t.Fatalf("pay: %v %v", res, err)
	}
	cs.Close()
	var req, resp map[string]any
	for deadline := time.Now().Add(10 * time.Second); resp == nil && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		for _, r := range mcpRecords(t, s.url) {
			if attr(r, "mcp.method.name") == "tools/call" {
				switch attr(r, "infertrail.phase") {
				case "request":
					req = r
				case "response":
					resp = r
				}
			}
		}
	}
	if req == nil || resp == nil || req["kind"] != "tool_call" || attr(req, "gen_ai.tool.name") != "pay" ||
		!regexp.MustCompile(`^token/[0-9a-f-]{36}$`).MatchString(req["actor"].(map[string]any)["id"].(string)) || attr(req, "redaction.findings") != nil {
		t.Fatalf("tool call records: %v / %v", req, resp)
	}
	_, content := getContent(t, s.url, int64(resp["seq"].(int64)))
	if !strings.Contains(content, "paid INV-7: 1200.00 EUR") {
		t.Errorf("recorded result %s", content)
	}
}

// TestE2EMCPWrap runs 'infertrail mcp wrap' as the SDK's command
// transport, around a real stdio MCP server, recording into a running
// server (--server) and straight into a data folder (--data).
func TestE2EMCPWrap(t *testing.T) {
	t.Parallel()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	s := startServer(t, dir)
	ingest := runCLI(t, []string{"INFERTRAIL_TOKEN=" + s.admin}, time.Minute, "tokens", "create", "--server", s.url,
		"--role", "ingest", "--tenant", "acme", "--name", "mcp-wrap")
	token := strings.TrimSpace(ingest.stdout)
	if ingest.code != 0 {
		t.Fatalf("tokens create:\n%s", ingest)
	}
	dataDir := filepath.Join(t.TempDir(), "wrapdata")
	if r := runCLI(t, nil, time.Minute, "keys", "show", "--data", dataDir); r.code == 0 {
		t.Fatal("the data folder exists already")
	}
	// A data folder to record into directly: made by a server's first start.
	d := startServer(t, dataDir)
	d.stop()

	for _, target := range [][]string{{"--server", s.url, "--token", token}, {"--data", dataDir}} {
		t.Run(target[0], func(t *testing.T) {
			args := append([]string{"mcp", "wrap", "--name", "payments", "--agent", "agent:finance-bot"}, target...)
			cmd := exec.Command(binPath, append(args, "--", self)...)
			cmd.Env = append(cleanEnv(), "INFERTRAIL_E2E_MCP_SERVER=1")
			var stderr syncBuffer
			cmd.Stderr = &stderr
			cli := sdk.NewClient(&sdk.Implementation{Name: "finance-agent", Version: "0.9.0"}, nil)
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			defer cancel()
			cs, err := cli.Connect(ctx, &sdk.CommandTransport{Command: cmd}, nil)
			if err != nil {
				t.Fatalf("connect through mcp wrap: %v\n%s", err, stderr.String())
			}
			res, err := cs.CallTool(ctx, &sdk.CallToolParams{Name: "refund", Arguments: map[string]any{}})
			if err != nil || !res.IsError {
				t.Fatalf("refund: %v %v", res, err)
			}
			if err := cs.Close(); err != nil {
				t.Logf("close: %v", err)
			}
			if strings.Contains(stderr.String(), "level=ERROR") {
				t.Errorf("mcp wrap logged errors:\n%s", stderr.String())
			}
		})
	}
	// Through the server: the records are in the token's tenant.
	var found bool
	for _, r := range mcpRecords(t, s.url) {
		if attr(r, "infertrail.phase") == "response" && attr(r, "gen_ai.tool.name") == "refund" {
			found = true
			if r["tenant"] != "acme" || attr(r, "mcp.tool.is_error") != true || attr(r, "network.transport") != "pipe" ||
				r["actor"].(map[string]any)["id"] != "agent:finance-bot" {
				t.Errorf("record %v", r)
			}
		}
	}
	if !found {
		t.Error("no refund response record on the server")
	}
	// Into the data folder: verify finds them.
	if r := runCLI(t, nil, time.Minute, "verify", "--data", dataDir); r.code != 0 || !strings.Contains(r.stdout, "OK") {
		t.Errorf("verify --data:\n%s", r)
	}
	d2 := startServer(t, dataDir)
	var local int
	for _, r := range mcpRecords(t, d2.url) {
		if attr(r, "gen_ai.tool.name") == "refund" {
			local++
		}
	}
	if local != 2 {
		t.Errorf("%d refund records in the data folder, want the request and the response", local)
	}
	d2.stop()

	// With --policy, the wrapper enforces it: a denied tool call gets the
	// gateway's JSON-RPC error and never reaches the server.
	polDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(polDir, "tools.rego"), []byte(`package infertrail.tool.call

import rego.v1

default decision := {"result": "allow"}

decision := {"result": "deny", "reasons": ["refunds are not for agents"]} if input.tool.name == "refund"
`), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(binPath, "mcp", "wrap", "--name", "payments", "--data", dataDir, "--policy", polDir, "--", self)
	cmd.Env = append(cleanEnv(), "INFERTRAIL_E2E_MCP_SERVER=1")
	var stderr syncBuffer
	cmd.Stderr = &stderr
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cs, err := sdk.NewClient(&sdk.Implementation{Name: "finance-agent", Version: "0.9.0"}, nil).Connect(ctx, &sdk.CommandTransport{Command: cmd}, nil)
	if err != nil {
		t.Fatalf("connect through mcp wrap --policy: %v\n%s", err, stderr.String())
	}
	_, err = cs.CallTool(ctx, &sdk.CallToolParams{Name: "refund", Arguments: map[string]any{}})
	if err == nil || !strings.Contains(err.Error(), "refunds are not for agents") {
		t.Fatalf("denied refund: %v", err)
	}
	cs.Close()
	d3 := startServer(t, dataDir)
	var decisions int
	for seq := range treeSize(t, d3.url) {
		rec, _, err := getRecord(t.Context(), d3.url, seq)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(rec.Record), `"policy.result":"deny"`) {
			decisions++
		}
	}
	if decisions != 1 {
		t.Errorf("%d deny decisions in the data folder, want 1", decisions)
	}
}
