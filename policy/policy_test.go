package policy_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/infertrail/infertrail"
	"github.com/infertrail/infertrail/capture/gateway/gatewaytest"
	"github.com/infertrail/infertrail/policy"
)

// examplesDir holds the example policies the tests and the benchmark use.
const examplesDir = "../examples/policies"

// copyExamples copies the example policies into a temporary folder, so that
// a test can change them.
func copyExamples(tb testing.TB) string {
	tb.Helper()
	dir := tb.TempDir()
	ents, err := os.ReadDir(examplesDir)
	if err != nil {
		tb.Fatal(err)
	}
	for _, ent := range ents {
		if !strings.HasSuffix(ent.Name(), ".rego") && ent.Name() != "data.json" {
			continue
		}
		b, err := os.ReadFile(filepath.Join(examplesDir, ent.Name()))
		if err != nil {
			tb.Fatal(err)
		}
		writeFile(tb, dir, ent.Name(), string(b))
	}
	return dir
}

func writeFile(tb testing.TB, dir, name, text string) {
	tb.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
		tb.Fatal(err)
	}
}

// policyDir writes files (name, text, name, text, …) into a new folder.
func policyDir(tb testing.TB, files ...string) string {
	tb.Helper()
	dir := tb.TempDir()
	for i := 0; i < len(files); i += 2 {
		writeFile(tb, dir, files[i], files[i+1])
	}
	return dir
}

func testLogger(tb testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tb.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// newEngine opens an engine on dir that records into a new trail.
func newEngine(tb testing.TB, dir string) (*policy.Engine, *gatewaytest.Trail) {
	tb.Helper()
	trail := gatewaytest.NewTrail(tb)
	e, err := policy.New(tb.Context(), policy.Config{Dir: dir, Recorder: trail.Log, Tenant: "acme", Logger: testLogger(tb)})
	if err != nil {
		tb.Fatal(err)
	}
	return e, trail
}

// jsonInput builds an input document from JSON, as a gateway would from a
// decoded request.
func jsonInput(tb testing.TB, s string) map[string]any {
	tb.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		tb.Fatalf("input %s: %v", s, err)
	}
	return m
}

// gatewayInput is an inference.request input document with the prompt
// as one string, as the gateway gives it.
func gatewayInput(tb testing.TB, s string) map[string]any {
	in := jsonInput(tb, s)
	inf := in["inference"].(map[string]any)
	inf["prompt_text"] = policy.PromptText(inf)
	return in
}

const caller = `"caller": {"actor": {"id": "agent:payments-bot", "type": "agent", "on_behalf_of": "user:alice@acme.example"},
	"tenant": "acme", "virtual_key": "vk-payments", "credential_fingerprint": "hmac-sha256:1f2e"},
	"session_id": "sess-42", "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "time": "2026-11-26T10:00:01Z"`

func toolCall(name, args string) string {
	return `{"point": "tool.call", ` + caller + `,
		"tool": {"server": "payments", "name": "` + name + `", "arguments": ` + args + `, "call_id": "call_1"},
		"earlier": [{"point": "inference.request", "result": "allow", "policy_id": "infertrail.inference.request", "time": "2026-11-26T10:00:00Z"}]}`
}

func request(model, messages string) string {
	return `{"point": "inference.request", ` + caller + `,
		"inference": {"provider": "openai", "model": "` + model + `", "messages": ` + messages + `,
			"tools": [{"name": "approve_payment", "description": "Approve an invoice payment", "input_schema": {"type": "object"}}],
			"parameters": {"temperature": 0.2}, "stream": false},
		"earlier": []}`
}

// Secrets in the shapes secret scanners know them (not real credentials).
var (
	awsKey    = "AKIA" + "IOSFODNN7EXAMPLE"
	ghToken   = "ghp_" + strings.Repeat("aB3d", 9)
	openaiKey = "sk-proj-" + strings.Repeat("x7Y", 10)
	pemKey    = "-----BEGIN RSA PRIVATE KEY-----\\nMIIEpAIBAAKCAQEA…\\n-----END RSA PRIVATE KEY-----"
)

func TestExamplePolicies(t *testing.T) {
	e, _ := newEngine(t, examplesDir)
	tests := []struct {
		name    string
		point   infertrail.PolicyPoint
		input   string
		want    infertrail.PolicyResult
		reasons []string
	}{
		{"payment above limit", infertrail.PointToolCall,
			toolCall("approve_payment", `{"invoice": 7, "amount_eur": 1200}`), infertrail.PolicyRequireApproval,
			[]string{"approve_payment of 1200 EUR is above the 1000 EUR limit for unattended payments"}},
		{"payment amount as a string", infertrail.PointToolCall,
			toolCall("transfer", `{"to": "DE89370400440532013000", "amount": "1500.50"}`), infertrail.PolicyRequireApproval,
			[]string{"transfer of 1500.5 EUR is above the 1000 EUR limit for unattended payments"}},
		{"amount_eur before amount", infertrail.PointToolCall,
			toolCall("pay", `{"amount_eur": 10, "amount": 5000}`), infertrail.PolicyAllow, nil},
		{"payment at the limit", infertrail.PointToolCall,
			toolCall("pay", `{"amount_eur": 1000}`), infertrail.PolicyAllow, nil},
		{"payment below limit", infertrail.PointToolCall,
			toolCall("pay", `{"amount": 999.99}`), infertrail.PolicyAllow, nil},
		{"payment without amount", infertrail.PointToolCall,
			toolCall("pay", `{"to": "ACME"}`), infertrail.PolicyRequireApproval,
			[]string{"pay has no readable amount_eur or amount"}},
		{"payment with unreadable amount", infertrail.PointToolCall,
			toolCall("pay", `{"amount": "a lot"}`), infertrail.PolicyRequireApproval,
			[]string{"pay has no readable amount_eur or amount"}},
		{"other tool", infertrail.PointToolCall,
			toolCall("search_invoices", `{"query": "ACME", "amount": 50000}`), infertrail.PolicyAllow, nil},

		{"approved model, string content", infertrail.PointInferenceRequest,
			request("gpt-4o", `[{"role": "system", "content": "You are a payments assistant."},
				{"role": "user", "content": "Pay invoice 7 of 1200 EUR to ACME"}]`), infertrail.PolicyAllow, nil},
		{"approved model version", infertrail.PointInferenceRequest,
			request("gpt-4o-2024-08-06", `[{"role": "user", "content": "Hello"}]`), infertrail.PolicyAllow, nil},
		{"approved Anthropic model, content blocks", infertrail.PointInferenceRequest,
			`{"point": "inference.request", ` + caller + `, "inference": {"provider": "anthropic", "model": "claude-sonnet-4-5-20250929",
				"system": [{"type": "text", "text": "You are a payments assistant."}],
				"messages": [{"role": "user", "content": [{"type": "text", "text": "Summarise invoice 7"}]}],
				"parameters": {"max_tokens": 1024}, "stream": true}}`, infertrail.PolicyAllow, nil},
		{"unapproved model", infertrail.PointInferenceRequest,
			request("gpt-3.5-turbo", `[{"role": "user", "content": "Hello"}]`), infertrail.PolicyDeny,
			[]string{`model "gpt-3.5-turbo" is not on the approved list`}},
		{"no model", infertrail.PointInferenceRequest,
			`{"point": "inference.request", "inference": {"messages": []}}`, infertrail.PolicyDeny,
			[]string{"the request names no model"}},
		{"AWS key in string content", infertrail.PointInferenceRequest,
			request("gpt-4o-mini", `[{"role": "system", "content": "You are helpful."},
				{"role": "user", "content": "Use key `+awsKey+` to list the bucket"}]`), infertrail.PolicyDeny,
			[]string{"message 1 carries an AWS access key id"}},
		{"GitHub token in content parts", infertrail.PointInferenceRequest,
			request("gpt-4o", `[{"role": "user", "content": [{"type": "text", "text": "Clone it with this token:"},
				{"type": "text", "text": "`+ghToken+`"}, {"type": "image_url", "image_url": {"url": "https://acme.example/a.png"}}]}]`),
			infertrail.PolicyDeny, []string{"message 0 carries a GitHub personal access token"}},
		{"API key in tool call arguments", infertrail.PointInferenceRequest,
			request("gpt-4o", `[{"role": "user", "content": "Call the API"},
				{"role": "assistant", "content": null, "tool_calls": [{"id": "call_9", "type": "function",
					"function": {"name": "http_get", "arguments": "{\"auth\": \"Bearer `+openaiKey+`\"}"}}]}]`),
			infertrail.PolicyDeny, []string{"message 1 carries a secret API key (sk-…)"}},
		{"PEM key in a tool result", infertrail.PointInferenceRequest,
			request("gpt-4o", `[{"role": "tool", "tool_call_id": "call_9", "content": "`+pemKey+`"}]`),
			infertrail.PolicyDeny, []string{"message 0 carries a PEM private key"}},
		{"secret in the system prompt", infertrail.PointInferenceRequest,
			`{"point": "inference.request", "inference": {"provider": "anthropic", "model": "claude-opus-4-1-20250805",
				"system": [{"type": "text", "text": "Deploy with ` + openaiKey + `"}],
				"messages": [{"role": "user", "content": "Deploy"}]}}`,
			infertrail.PolicyDeny, []string{"the system prompt carries a secret API key (sk-…)"}},
		{"Responses API input as a string", infertrail.PointInferenceRequest,
			`{"point": "inference.request", "inference": {"provider": "openai", "operation": "chat", "model": "gpt-4o",
				"instructions": "Be brief.", "input": "my key is ` + ghToken + `"}}`,
			infertrail.PolicyDeny, []string{"the input carries a GitHub personal access token"}},
		{"Responses API input items and instructions", infertrail.PointInferenceRequest,
			`{"point": "inference.request", "inference": {"provider": "openai", "operation": "chat", "model": "gpt-4o",
				"instructions": "Sign with ` + pemKey + `",
				"input": [{"role": "user", "content": [{"type": "input_text", "text": "hello"}]},
					{"role": "user", "content": [{"type": "input_text", "text": "` + awsKey + `"}]}]}}`,
			infertrail.PolicyDeny, []string{"input item 1 carries an AWS access key id", "the instructions carry a PEM private key"}},
		{"Responses API clean input", infertrail.PointInferenceRequest,
			`{"point": "inference.request", "inference": {"provider": "openai", "model": "gpt-4o-mini", "instructions": "Be brief.",
				"input": [{"role": "user", "content": [{"type": "input_text", "text": "Summarise the risk-based approach"}]}]}}`,
			infertrail.PolicyAllow, nil},
		{"both files deny", infertrail.PointInferenceRequest,
			request("llama-3-70b", `[{"role": "user", "content": "`+awsKey+`"}]`), infertrail.PolicyDeny,
			[]string{"message 0 carries an AWS access key id", `model "llama-3-70b" is not on the approved list`}},
		{"words that look like key prefixes", infertrail.PointInferenceRequest,
			request("gpt-4o", `[{"role": "user", "content": "task-scheduler-configuration-reference and AKIA as a word, ghp_short"}]`),
			infertrail.PolicyAllow, nil},
		{"a keyword outside the prompt", infertrail.PointInferenceRequest,
			`{"point": "inference.request", "inference": {"provider": "openai", "model": "gpt-4o",
				"tools": [{"type": "function", "function": {"name": "add_task", "description": "Add to the task-list; ASIA region only"}}],
				"messages": [{"role": "user", "content": "Plan my week"}]}}`,
			infertrail.PolicyAllow, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			input := jsonInput(t, tt.input)
			d, err := e.Decide(t.Context(), tt.point, input)
			if err != nil {
				t.Fatal(err)
			}
			if d.Result != tt.want || !slices.Equal(d.Reasons, tt.reasons) {
				t.Errorf("decision %s %q, want %s %q", d.Result, d.Reasons, tt.want, tt.reasons)
			}
			if want := policy.PackageOf(tt.point); d.PolicyID != want {
				t.Errorf("PolicyID %q, want %q", d.PolicyID, want)
			}
			if d.Bundle != e.Bundle() {
				t.Errorf("Bundle %q, want %q", d.Bundle, e.Bundle())
			}
			if want := inputDigest(t, tt.input); d.InputDigest != want {
				t.Errorf("InputDigest %q, want %q", d.InputDigest, want)
			}
			if d.EvalTime <= 0 {
				t.Errorf("EvalTime %v", d.EvalTime)
			}
			if inf, ok := input["inference"].(map[string]any); ok {
				// As the gateway gives it: with the prompt as one string.
				inf["prompt_text"] = policy.PromptText(inf)
				d, err := e.Decide(t.Context(), tt.point, input)
				if err != nil {
					t.Fatal(err)
				}
				if d.Result != tt.want || !slices.Equal(d.Reasons, tt.reasons) {
					t.Errorf("with prompt_text: decision %s %q, want %s %q", d.Result, d.Reasons, tt.want, tt.reasons)
				}
			}
		})
	}
}

// TestPromptText: every string of the prompt fields, one per line, in the
// fields' order and objects' key order, whatever order the members came in.
func TestPromptText(t *testing.T) {
	req := jsonInput(t, `{"model": "gpt-4o", "tools": [{"description": "not the prompt"}],
		"messages": [{"role": "user", "content": [{"type": "text", "text": "hello"}]},
			{"role": "assistant", "tool_calls": [{"id": "call_1", "function": {"name": "pay", "arguments": "{\"amount\": 7}"}}]}],
		"system": "be brief", "input": ["first", {"z": "last", "a": 1}], "instructions": "sign it"}`)
	want := "hello\ntext\nuser\nassistant\n{\"amount\": 7}\npay\ncall_1\nbe brief\nfirst\nlast\nsign it"
	for range 20 {
		if got := policy.PromptText(req); got != want {
			t.Fatalf("PromptText = %q, want %q", got, want)
		}
	}
	if got := policy.PromptText(map[string]any{"model": "gpt-4o"}); got != "" {
		t.Errorf("no prompt: %q", got)
	}
}

// inputDigest computes the digest of an input document independently: the
// RFC 8785 form of the JSON, then SHA-256.
func inputDigest(tb testing.TB, s string) string {
	tb.Helper()
	c, err := infertrail.Canonicalize([]byte(s))
	if err != nil {
		tb.Fatal(err)
	}
	sum := sha256.Sum256(c)
	return "sha256:" + hex.EncodeToString(sum[:])
}

func TestNoPolicyForPoint(t *testing.T) {
	e, _ := newEngine(t, examplesDir) // nothing for inference.response
	d, err := e.Decide(t.Context(), infertrail.PointInferenceResponse, map[string]any{
		"point": "inference.response", "response": map[string]any{"text": "Paid.", "finish_reason": "stop"}})
	if err != nil {
		t.Fatal(err)
	}
	if d.Result != infertrail.PolicyAllow || d.PolicyID != "" || d.Reasons != nil || d.InputDigest != "" {
		t.Errorf("got %+v, want allow with no PolicyID", d)
	}

	// A package with other rules but no decision is no policy either.
	e, _ = newEngine(t, policyDir(t, "helpers.rego", "package infertrail.tool.call\n\nlimit := 5\n"))
	d, err = e.Decide(t.Context(), infertrail.PointToolCall, map[string]any{})
	if err != nil || d.Result != infertrail.PolicyAllow || d.PolicyID != "" {
		t.Errorf("got %+v, %v; want allow with no PolicyID", d, err)
	}

	if _, err := e.Decide(t.Context(), "tool.list", map[string]any{}); !errors.Is(err, infertrail.ErrInvalid) {
		t.Errorf("unknown point: got %v, want ErrInvalid", err)
	}
}

func TestMalformedDecision(t *testing.T) {
	tests := []struct {
		name, rule, want string
	}{
		{"not an object", `decision := "allow"`, `is "allow", want an object`},
		{"unknown result", `decision := {"result": "maybe"}`, `result is "maybe"`},
		{"no result", `decision := {"reasons": ["x"]}`, "has no result"},
		{"result not a string", `decision := {"result": true}`, "result is true"},
		{"reasons not strings", `decision := {"result": "deny", "reasons": [1]}`, "reasons[0] is the number 1"},
		{"reasons a string", `decision := {"result": "deny", "reasons": "no"}`, `reasons is "no"`},
		{"obligations an object", `decision := {"result": "modify", "obligations": {"redact": "x"}}`, "obligations is an object"},
		{"misspelt member", `decision := {"result": "deny", "reason": ["x"]}`, `unknown member "reason"`},
		{"undefined for the input", "decision := {\"result\": \"deny\"} if input.tool.name == \"rm\"", "undefined for this input"},
		{"conflicting values", "decision := {\"result\": \"deny\"} if input.x\ndecision := {\"result\": \"allow\"} if input.y", "conflict"},
		{"built-in error (undefined, as in OPA)", "decision := {\"result\": \"allow\", \"reasons\": [sprintf(\"%d\", [1 / input.zero])]}", "undefined for this input"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, _ := newEngine(t, policyDir(t, "p.rego", "package infertrail.tool.call\n\n"+tt.rule+"\n"))
			input := map[string]any{"tool": map[string]any{"name": "ls"}, "x": true, "y": true, "zero": 0}
			d, err := e.Decide(t.Context(), infertrail.PointToolCall, input)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %+v, %v; want an error containing %q", d, err, tt.want)
			}
			if !errors.Is(err, policy.ErrPolicy) || !strings.Contains(err.Error(), "data.infertrail.tool.call.decision") {
				t.Errorf("error %q is not ErrPolicy naming the rule", err)
			}
			// What is known is there to record the failure.
			if d.Result != "" || d.PolicyID != "infertrail.tool.call" || d.Bundle != e.Bundle() ||
				!strings.HasPrefix(d.InputDigest, "sha256:") || d.EvalTime <= 0 {
				t.Errorf("decision with the error: %+v", d)
			}
		})
	}
}

// print() in a policy goes to the log at Debug level.
func TestPrint(t *testing.T) {
	var buf strings.Builder
	var mu sync.Mutex
	log := slog.New(slog.NewTextHandler(lockedWriter{&mu, &buf}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	dir := policyDir(t, "p.rego", "package infertrail.tool.call\n\ndecision := {\"result\": \"allow\"} if {\n\tprint(\"tool\", input.tool.name)\n}\n")
	e, err := policy.New(t.Context(), policy.Config{Dir: dir, Recorder: gatewaytest.NewTrail(t).Log, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Decide(t.Context(), infertrail.PointToolCall, map[string]any{"tool": map[string]any{"name": "ls"}}); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if !strings.Contains(buf.String(), `msg="policy print" location=p.rego:4 print="tool ls"`) {
		t.Errorf("log:\n%s", buf.String())
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *strings.Builder
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.w.Write(p)
}

func TestDecisionObject(t *testing.T) {
	dir := policyDir(t, "p.rego", `package infertrail.inference.response

default decision := {"result": "allow"}

decision := {
	"result": "modify",
	"reasons": ["response quotes an IBAN"],
	"obligations": [{"redact": "response.text", "pattern": data.patterns.iban}, "notify"],
} if regex.match(data.patterns.iban, input.response.text)
`, "data.json", `{"patterns": {"iban": "[A-Z]{2}[0-9]{2}[A-Z0-9]{11,30}"}}`)
	e, _ := newEngine(t, dir)
	d, err := e.Decide(t.Context(), infertrail.PointInferenceResponse, map[string]any{
		"response": map[string]any{"text": "Pay to DE89370400440532013000", "finish_reason": "stop"}})
	if err != nil {
		t.Fatal(err)
	}
	var obl []string
	for _, o := range d.Obligations {
		obl = append(obl, string(o))
	}
	want := []string{`{"pattern":"[A-Z]{2}[0-9]{2}[A-Z0-9]{11,30}","redact":"response.text"}`, `"notify"`}
	if d.Result != infertrail.PolicyModify || !slices.Equal(d.Reasons, []string{"response quotes an IBAN"}) || !slices.Equal(obl, want) {
		t.Errorf("got %s %q %q, want modify with the IBAN reason and obligations %q", d.Result, d.Reasons, obl, want)
	}
	if d.PolicyID != "infertrail.inference.response" {
		t.Errorf("PolicyID %q", d.PolicyID)
	}
}

// A decision given by data.json alone is a policy too.
func TestDecisionFromData(t *testing.T) {
	dir := policyDir(t, "p.rego", "package infertrail.other\n",
		"data.json", `{"infertrail": {"tool": {"call": {"decision": {"result": "deny", "reasons": ["tools are off"]}}}}}`)
	e, _ := newEngine(t, dir)
	d, err := e.Decide(t.Context(), infertrail.PointToolCall, map[string]any{})
	if err != nil || d.Result != infertrail.PolicyDeny || d.PolicyID != "infertrail.tool.call" {
		t.Errorf("got %+v, %v; want deny by infertrail.tool.call", d, err)
	}
}

func TestInputDigestIgnoresEncoding(t *testing.T) {
	e, _ := newEngine(t, examplesDir)
	a := map[string]any{"tool": map[string]any{"name": "pay", "arguments": map[string]any{"amount_eur": 5}}, "note": "<é>"}
	d, err := e.Decide(t.Context(), infertrail.PointToolCall, a)
	if err != nil {
		t.Fatal(err)
	}
	// The same document written differently has the same digest.
	if want := inputDigest(t, `{ "note":"\u003c\u00e9>", "tool": {"arguments": {"amount_eur": 5.0}, "name": "pay"}}`); d.InputDigest != want {
		t.Errorf("InputDigest %s, want %s", d.InputDigest, want)
	}
}

func TestNewErrors(t *testing.T) {
	trail := gatewaytest.NewTrail(t)
	ctx := t.Context()
	if _, err := policy.New(ctx, policy.Config{Recorder: trail.Log}); !errors.Is(err, infertrail.ErrInvalid) {
		t.Errorf("no Dir: got %v, want ErrInvalid", err)
	}
	if _, err := policy.New(ctx, policy.Config{Dir: examplesDir}); !errors.Is(err, infertrail.ErrInvalid) {
		t.Errorf("no Recorder: got %v, want ErrInvalid", err)
	}
	tests := []struct {
		name  string
		files []string
		want  string
	}{
		{"syntax error", []string{"ok.rego", "package infertrail.tool.call\n\ndefault decision := {\"result\": \"allow\"}\n",
			"broken.rego", "package infertrail.inference.request\n\ndecision := {\"result\": \"deny\"} if {\n\tinput.x == == 1\n}\n"}, "broken.rego:4"},
		{"Rego v0 syntax", []string{"old.rego", "package infertrail.tool.call\n\ndefault allow = false\n\nallow { input.x }\n"}, "old.rego:5"},
		{"compile error", []string{"p.rego", "package infertrail.tool.call\n\ndecision := {\"result\": \"allow\"}\n\nx := undefined_function(1)\n"}, "p.rego:5"},
		{"data not an object", []string{"p.rego", "package infertrail.tool.call\n", "data.json", "[1]"}, "data.json"},
		{"data not JSON", []string{"p.rego", "package infertrail.tool.call\n", "data.json", "{"}, "data.json"},
		{"no policy", []string{"README.md", "policies go here"}, "no .rego file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			trail := gatewaytest.NewTrail(t)
			dir := policyDir(t, tt.files...)
			_, err := policy.New(ctx, policy.Config{Dir: dir, Recorder: trail.Log, Logger: testLogger(t)})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error naming %q", err, tt.want)
			}
			recs := trail.Records(t)
			if len(recs) != 1 || recs[0].Attr("access.action") != policy.ActionLoadFailed {
				t.Fatalf("records %v, want one policy.load_failed", recs)
			}
			if msg, _ := recs[0].Attr("policy.error").(string); !strings.Contains(msg, tt.want) {
				t.Errorf("policy.error %q does not name %q", msg, tt.want)
			}
			if recs[0].Attr("policy.bundle") != nil {
				t.Errorf("policy.bundle %v, want none in force", recs[0].Attr("policy.bundle"))
			}
		})
	}
	if _, err := policy.New(ctx, policy.Config{Dir: filepath.Join(t.TempDir(), "missing"), Recorder: trail.Log, Logger: testLogger(t)}); err == nil {
		t.Error("missing folder: no error")
	}
}

func TestLoadRecord(t *testing.T) {
	dir := copyExamples(t)
	writeFile(t, dir, "notes.txt", "not a policy")
	writeFile(t, dir, ".payments.rego.swp", "editor state")
	if err := os.Mkdir(filepath.Join(dir, "old.rego"), 0o755); err != nil {
		t.Fatal(err)
	}
	e, trail := newEngine(t, dir)
	recs := trail.Records(t)
	if len(recs) != 1 {
		t.Fatalf("%d records, want 1", len(recs))
	}
	r := recs[0]
	if r.Kind != infertrail.KindAccess || r.Source != "policy" || r.Tenant != "acme" ||
		r.Actor.ID != "infertrail:policy" || r.Actor.Type != "service" {
		t.Errorf("record %+v", r.Record)
	}
	files := []any{"models.rego", "payments.rego", "secrets.rego"}
	if r.Attr("access.action") != "policy.load" || r.Attr("policy.bundle") != e.Bundle() ||
		fmt.Sprint(r.Attr("policy.files")) != fmt.Sprint(files) || r.Attr("policy.previous_bundle") != nil {
		t.Errorf("attributes %s", attrs(r))
	}
	var src map[string]string
	if err := json.Unmarshal(r.Content["policy.sources"], &src); err != nil {
		t.Fatal(err)
	}
	want, _ := os.ReadFile(filepath.Join(dir, "payments.rego"))
	if len(src) != 3 || src["payments.rego"] != string(want) {
		t.Errorf("policy.sources holds %d files; payments.rego as recorded:\n%s", len(src), src["payments.rego"])
	}
	digests, _ := r.Attr("policy.file_digests").(map[string]any)
	sum := sha256.Sum256(want)
	if digests["payments.rego"] != "sha256:"+hex.EncodeToString(sum[:]) {
		t.Errorf("policy.file_digests %v", digests)
	}
}

func attrs(r gatewaytest.Record) string {
	var b strings.Builder
	for k, v := range r.Attributes {
		fmt.Fprintf(&b, "%s=%s ", k, v)
	}
	return b.String()
}

// The bundle digest is what sha256sum computes over sha256sum's listing.
func TestBundleDigest(t *testing.T) {
	dir := copyExamples(t)
	writeFile(t, dir, "data.json", `{"a": 1}`)
	e, _ := newEngine(t, dir)
	if _, err := exec.LookPath("sha256sum"); err != nil {
		t.Skip("no sha256sum")
	}
	cmd := exec.Command("sh", "-c", `ls | LC_ALL=C sort | xargs sha256sum | sha256sum`)
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	if want := "sha256:" + strings.Fields(string(out))[0]; e.Bundle() != want {
		t.Errorf("Bundle %s, sha256sum gives %s", e.Bundle(), want)
	}
}

const allowAll = "package infertrail.tool.call\n\ndefault decision := {\"result\": \"allow\"}\n"

func TestReload(t *testing.T) {
	dir := policyDir(t, "tools.rego", allowAll)
	e, trail := newEngine(t, dir)
	first := e.Bundle()
	ctx := t.Context()
	input := map[string]any{"tool": map[string]any{"name": "rm"}}

	// Unchanged files: nothing to load, nothing recorded.
	if err := e.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	if n := len(trail.Records(t)); n != 1 {
		t.Fatalf("%d records after a reload with no change, want 1", n)
	}

	// A new file.
	writeFile(t, dir, "rm.rego", "package infertrail.tool.call\n\ndecision := {\"result\": \"deny\", \"reasons\": [\"rm is not allowed\"]} if input.tool.name == \"rm\"\n")
	if err := e.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	second := e.Bundle()
	if second == first {
		t.Fatal("bundle unchanged after a reload with a new file")
	}
	d, err := e.Decide(ctx, infertrail.PointToolCall, input)
	if err != nil || d.Result != infertrail.PolicyDeny || d.Bundle != second {
		t.Fatalf("got %+v, %v; want deny by the new bundle", d, err)
	}
	recs := trail.Records(t)
	last := recs[len(recs)-1]
	if len(recs) != 2 || last.Attr("access.action") != "policy.load" || last.Attr("policy.bundle") != second ||
		last.Attr("policy.previous_bundle") != first || fmt.Sprint(last.Attr("policy.files")) != "[rm.rego tools.rego]" {
		t.Fatalf("%d records; last: %s", len(recs), attrs(last))
	}

	// A broken file: the reload fails, the last good policy stays.
	writeFile(t, dir, "broken.rego", "package infertrail.tool.call\n\nimport rego.v1\n\nbad := {\"a\" 1}\n\nfine := 1\n")
	err = e.Reload(ctx)
	if err == nil || !strings.Contains(err.Error(), "broken.rego:5") {
		t.Fatalf("got %v, want an error naming broken.rego:5", err)
	}
	if e.Bundle() != second {
		t.Errorf("bundle %s after a failed reload, want %s", e.Bundle(), second)
	}
	d, err = e.Decide(ctx, infertrail.PointToolCall, input)
	if err != nil || d.Result != infertrail.PolicyDeny || d.Bundle != second {
		t.Fatalf("got %+v, %v; want deny by the last good bundle", d, err)
	}
	recs = trail.Records(t)
	last = recs[len(recs)-1]
	msg, _ := last.Attr("policy.error").(string)
	attempted, _ := last.Attr("policy.bundle_attempted").(string)
	if len(recs) != 3 || last.Attr("access.action") != "policy.load_failed" || !strings.Contains(msg, "broken.rego:5") ||
		last.Attr("policy.bundle") != second || !strings.HasPrefix(attempted, "sha256:") || attempted == second ||
		fmt.Sprint(last.Attr("policy.files")) != "[broken.rego rm.rego tools.rego]" {
		t.Fatalf("%d records; last: %s", len(recs), attrs(last))
	}
	var src map[string]string
	if err := json.Unmarshal(last.Content["policy.sources"], &src); err != nil || !strings.Contains(src["broken.rego"], "bad := {") {
		t.Errorf("policy.sources %v, %v: want the broken file", src, err)
	}

	// Fixed: the reload succeeds and names the last good bundle as previous.
	if err := os.Remove(filepath.Join(dir, "broken.rego")); err != nil {
		t.Fatal(err)
	}
	writeFile(t, dir, "rm.rego", "package infertrail.tool.call\n\ndecision := {\"result\": \"require_approval\"} if input.tool.name == \"rm\"\n")
	if err := e.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	recs = trail.Records(t)
	last = recs[len(recs)-1]
	if last.Attr("access.action") != "policy.load" || last.Attr("policy.previous_bundle") != second {
		t.Fatalf("last: %s", attrs(last))
	}
	if d, err := e.Decide(ctx, infertrail.PointToolCall, input); err != nil || d.Result != infertrail.PolicyRequireApproval {
		t.Fatalf("got %+v, %v; want require_approval", d, err)
	}

	// All policies removed: a failure, not a silent switch-off.
	for _, f := range []string{"rm.rego", "tools.rego"} {
		if err := os.Remove(filepath.Join(dir, f)); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.Reload(ctx); err == nil || !strings.Contains(err.Error(), "no .rego file") {
		t.Fatalf("got %v, want no .rego file", err)
	}
	if d, err := e.Decide(ctx, infertrail.PointToolCall, input); err != nil || d.Result != infertrail.PolicyRequireApproval {
		t.Fatalf("got %+v, %v; want the last good policy", d, err)
	}
}

// failingRecorder fails every record.
type failingRecorder struct{ ok *gatewaytest.Trail }

func (f *failingRecorder) Record(ctx context.Context, recs ...*infertrail.Record) ([]int64, error) {
	if f.ok != nil {
		return f.ok.Log.Record(ctx, recs...)
	}
	return nil, infertrail.ErrPushback
}

// A load that cannot be recorded is not put in force.
func TestUnrecordedLoad(t *testing.T) {
	dir := policyDir(t, "tools.rego", allowAll)
	rec := &failingRecorder{}
	if _, err := policy.New(t.Context(), policy.Config{Dir: dir, Recorder: rec, Logger: testLogger(t)}); !errors.Is(err, infertrail.ErrPushback) {
		t.Fatalf("got %v, want ErrPushback", err)
	}
	rec.ok = gatewaytest.NewTrail(t)
	e, err := policy.New(t.Context(), policy.Config{Dir: dir, Recorder: rec, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	first := e.Bundle()
	rec.ok = nil
	writeFile(t, dir, "more.rego", "package infertrail.inference.request\n\ndefault decision := {\"result\": \"deny\"}\n")
	if err := e.Reload(t.Context()); !errors.Is(err, infertrail.ErrPushback) {
		t.Fatalf("got %v, want ErrPushback", err)
	}
	if e.Bundle() != first {
		t.Error("an unrecorded load was put in force")
	}
}

func TestRun(t *testing.T) {
	dir := policyDir(t, "tools.rego", allowAll)
	trail := gatewaytest.NewTrail(t)
	e, err := policy.New(t.Context(), policy.Config{Dir: dir, Recorder: trail.Log, Interval: 10 * time.Millisecond, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	first := e.Bundle()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		e.Run(ctx)
	}()
	defer func() {
		cancel()
		<-done
	}()
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
		}
	}
	writeFile(t, dir, "tools.rego", "package infertrail.tool.call\n\ndefault decision := {\"result\": \"deny\"}\n")
	waitFor("the new bundle", func() bool { return e.Bundle() != first })
	d, err := e.Decide(t.Context(), infertrail.PointToolCall, map[string]any{})
	if err != nil || d.Result != infertrail.PolicyDeny {
		t.Fatalf("got %+v, %v; want deny", d, err)
	}

	// A broken change is recorded once, and the policy in force stays.
	second := e.Bundle()
	writeFile(t, dir, "tools.rego", "package infertrail.tool.call\n\ndecision := {\n")
	failed := func() int {
		n := 0
		for _, r := range trail.Records(t) {
			if r.Attr("access.action") == "policy.load_failed" {
				n++
			}
		}
		return n
	}
	waitFor("the failed load record", func() bool { return failed() == 1 })
	time.Sleep(100 * time.Millisecond)
	if n := failed(); n != 1 || e.Bundle() != second {
		t.Fatalf("%d failed loads recorded, bundle %s; want 1 and %s", n, e.Bundle(), second)
	}
}

// Decide from many goroutines while the policies change under them.
func TestConcurrentDecideAndReload(t *testing.T) {
	dir := copyExamples(t)
	e, _ := newEngine(t, dir)
	ctx := t.Context()
	var (
		mu      sync.Mutex
		results = map[string]infertrail.PolicyResult{e.Bundle(): infertrail.PolicyRequireApproval} // bundle → result for the input
	)
	input := jsonInput(t, toolCall("pay", `{"amount_eur": 5000}`))
	stop := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for range 8 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				d, err := e.Decide(ctx, infertrail.PointToolCall, input)
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				want, ok := results[d.Bundle]
				mu.Unlock()
				if !ok || d.Result != want {
					errs <- fmt.Errorf("bundle %s decided %s, want %s", d.Bundle, d.Result, want)
					return
				}
			}
		})
	}
	for i := range 20 {
		limit := 1000 // requires approval for 5000 EUR; 10000 allows it
		if i%2 == 1 {
			limit = 10000
		}
		src, _ := os.ReadFile(filepath.Join(examplesDir, "payments.rego"))
		text := strings.Replace(string(src), "limit_eur := 1000", fmt.Sprintf("limit_eur := %d # %d", limit, i), 1)
		writeFile(t, dir, "payments.rego", text)
		// Publish the expected result before the bundle can be in force.
		sum := bundleOf(t, dir)
		mu.Lock()
		results[sum] = infertrail.PolicyRequireApproval
		if limit == 10000 {
			results[sum] = infertrail.PolicyAllow
		}
		mu.Unlock()
		if err := e.Reload(ctx); err != nil {
			t.Fatal(err)
		}
		if e.Bundle() != sum {
			t.Fatalf("bundle %s, computed %s", e.Bundle(), sum)
		}
	}
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// bundleOf computes a folder's bundle digest as docs/policy.md describes it.
func bundleOf(tb testing.TB, dir string) string {
	tb.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		tb.Fatal(err)
	}
	h := sha256.New()
	for _, ent := range ents { // ReadDir sorts by name
		if !strings.HasSuffix(ent.Name(), ".rego") && ent.Name() != "data.json" {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, ent.Name()))
		if err != nil {
			tb.Fatal(err)
		}
		fmt.Fprintf(h, "%x  %s\n", sha256.Sum256(b), ent.Name())
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}

// benchRequest is BenchmarkDecide's inference.request input: a 2.5 KB
// chat request with five messages, a tool call and its result, an approved
// model and no secret, so that the example policies allow it after
// scanning the whole prompt.
var benchRequest = request("gpt-4o-2024-08-06", `[
	{"role": "system", "content": "You are a payments assistant for ACME. Never pay without an invoice."},
	{"role": "user", "content": [{"type": "text", "text": "Pay invoice 7 of 1200 EUR to ACME."}, {"type": "text", "text": "`+
	strings.Repeat("Invoice 7 from ACME covers consulting for November; net 30 days. ", 30)+`"}]},
	{"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "approve_payment", "arguments": "{\"invoice\": 7, \"amount_eur\": 1200}"}}]},
	{"role": "tool", "tool_call_id": "call_1", "content": "{\"status\": \"pending_approval\"}"},
	{"role": "user", "content": "Thanks. What is the status?"}]`)

// BenchmarkDecide measures Decide with the example policies on realistic
// inputs, and reports the median and 99th percentile latency.
func BenchmarkDecide(b *testing.B) {
	trail := gatewaytest.NewTrail(b)
	e, err := policy.New(b.Context(), policy.Config{Dir: examplesDir, Recorder: trail.Log, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	cases := []struct {
		name  string
		point infertrail.PolicyPoint
		input map[string]any
	}{
		{"tool.call", infertrail.PointToolCall, jsonInput(b, toolCall("approve_payment", `{"invoice": 7, "amount_eur": 1200, "iban": "DE89370400440532013000"}`))},
		{"inference.request", infertrail.PointInferenceRequest, gatewayInput(b, benchRequest)},
		{"inference.response", infertrail.PointInferenceResponse, map[string]any{"response": map[string]any{"text": "Done."}}},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			ctx := context.Background()
			lat := make([]time.Duration, 0, b.N)
			for b.Loop() {
				start := time.Now()
				if _, err := e.Decide(ctx, c.point, c.input); err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(start))
			}
			slices.Sort(lat)
			pct := func(p float64) float64 {
				return float64(lat[int(p*float64(len(lat)-1))].Nanoseconds()) / 1e3
			}
			b.ReportMetric(pct(0.50), "p50-µs")
			b.ReportMetric(pct(0.99), "p99-µs")
		})
	}
}

// TestEarlier: the input's "earlier" holds the session's earlier
// decisions, so that a policy can escalate.
func TestEarlier(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "escalate.rego"), []byte(`package infertrail.tool.call

import rego.v1

denials := count([e | some e in input.earlier; e.result == "deny"])

default decision := {"result": "allow"}

decision := {"result": "deny", "reasons": ["delete is not allowed"]} if input.tool.name == "delete"

decision := {"result": "deny", "reasons": [sprintf("%d earlier denials in this session", [denials])]} if {
	input.tool.name != "delete"
	denials >= 2
}
`), 0o600)
	e, err := policy.New(t.Context(), policy.Config{Dir: dir, Recorder: gatewaytest.NewTrail(t).Log, History: true})
	if err != nil {
		t.Fatal(err)
	}
	call := func(session, tool string) infertrail.PolicyResult {
		d, err := e.Decide(t.Context(), infertrail.PointToolCall, map[string]any{"session_id": session, "tool": map[string]any{"name": tool}})
		if err != nil {
			t.Fatal(err)
		}
		return d.Result
	}
	got := []infertrail.PolicyResult{call("s1", "read"), call("s1", "delete"), call("s1", "delete"), call("s1", "read"), call("s2", "read")}
	want := []infertrail.PolicyResult{"allow", "deny", "deny", "deny", "allow"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("results %v, want %v", got, want)
	}
}

// TestDecideTypedInput: an input holding other than plain JSON types is
// decided on, and digested as, its JSON form; one that has no JSON form
// is refused.
func TestDecideTypedInput(t *testing.T) {
	e, _ := newEngine(t, examplesDir)
	type args struct {
		AmountEUR float64 `json:"amount_eur"`
	}
	in := map[string]any{"tool": map[string]any{"name": "pay", "arguments": args{AmountEUR: 1200}}}
	d, err := e.Decide(t.Context(), infertrail.PointToolCall, in)
	if err != nil {
		t.Fatal(err)
	}
	if d.Result != infertrail.PolicyRequireApproval {
		t.Errorf("result %q for a payment of 1200 EUR given as a struct, want require_approval", d.Result)
	}
	if want := inputDigest(t, `{"tool":{"arguments":{"amount_eur":1200},"name":"pay"}}`); d.InputDigest != want {
		t.Errorf("InputDigest %s, want %s", d.InputDigest, want)
	}
	for name, bad := range map[string]any{"channel": make(chan int), "NaN": math.NaN()} {
		in := map[string]any{"tool": map[string]any{"name": "pay", "arguments": map[string]any{"amount_eur": bad}}}
		if _, err := e.Decide(t.Context(), infertrail.PointToolCall, in); err == nil || !strings.Contains(err.Error(), "encode input") {
			t.Errorf("%s in the input: err = %v, want an encoding error", name, err)
		}
	}
}
