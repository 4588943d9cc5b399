package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestE2EInvestigate: query, show and findings, through a running server
// and on its data folder.
func TestE2EInvestigate(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "data")
	s := startServer(t, dir)
	const trace = "4bf92f3577b34da6a3ce929d0e0e4736"
	mustPost(t, s.url, exportSession(t, "sess-inv", trace), 5)
	// A downstream call in the trace that no model asked for.
	stray, _ := json.Marshal([]map[string]any{{"kind": "downstream_call", "id": newID(), "tenant": "acme", "trace_id": trace,
		"attributes": map[string]any{"url.full": "https://payments.internal/transfer", "http.request.method": "POST"}}})
	mustPost(t, s.url, stray, 1)
	waitCheckpoint(t, s.url, s.base+6)
	srv := []string{"--server", s.url, "--token", s.token}

	r := runCLI(t, nil, 30*time.Second, append([]string{"query", "--trace", trace, "--kind", "tool_call,downstream_call"}, srv...)...)
	if r.code != 0 || strings.Count(r.stdout, "\n") != 4 || !strings.Contains(r.stdout, "approve_payment") {
		t.Errorf("query:\n%s", r)
	}
	r = runCLI(t, nil, 30*time.Second, append([]string{"query", "--q", "invoice sess-inv", "--json"}, srv...)...)
	if r.code != 0 || !strings.Contains(r.stdout, `"kind": "inference"`) {
		t.Errorf("query --q:\n%s", r)
	}
	r = runCLI(t, nil, 30*time.Second, append([]string{"query", "--kind", "nope"}, srv...)...)
	if r.code == 0 || !strings.Contains(r.stderr, "kind") {
		t.Errorf("query --kind nope:\n%s", r)
	}

	r = runCLI(t, nil, 30*time.Second, append([]string{"show", trace}, srv...)...)
	if r.code != 0 || !strings.Contains(r.stdout, "6 record(s)") || !strings.Contains(r.stdout, "tool_call approve_payment") ||
		strings.Contains(r.stdout, "FAILED") {
		t.Errorf("show:\n%s", r)
	}
	// The tool call hangs under the inference (its parent span).
	lines := strings.Split(r.stdout, "\n")
	for _, l := range lines {
		if strings.Contains(l, "tool_call approve_payment") && !strings.Contains(l, "  tool_call") {
			t.Errorf("the tool call is not indented under the inference: %q", l)
		}
	}

	r = runCLI(t, nil, 30*time.Second, append([]string{"findings", "--detect", trace}, srv...)...)
	if r.code != 0 || !strings.Contains(r.stdout, "unattributed_action") {
		t.Errorf("findings --detect:\n%s", r)
	}
	r = runCLI(t, nil, 30*time.Second, append([]string{"query", "--finding", "unattributed_action", "--json"}, srv...)...)
	if r.code != 0 || !strings.Contains(r.stdout, "payments.internal") {
		t.Errorf("query --finding:\n%s", r)
	}

	if code := s.stop(); code != 0 {
		t.Fatalf("SIGTERM: exit %d\n--- stderr:\n%s", code, s.stderr)
	}
	// On the data folder, with no server running: the same answers.
	r = runCLI(t, nil, 30*time.Second, "show", trace, "--data", dir)
	if r.code != 0 || !strings.Contains(r.stdout, "6 record(s)") || !strings.Contains(r.stdout, "unattributed_action") {
		t.Errorf("show --data:\n%s", r)
	}
	r = runCLI(t, nil, 30*time.Second, "findings", "--data", dir, "--detector", "unattributed_action")
	if r.code != 0 || !strings.Contains(r.stdout, "no model asked for") {
		t.Errorf("findings --data:\n%s", r)
	}
	r = runCLI(t, nil, 30*time.Second, "show", "--data", dir)
	if r.code == 0 || !strings.Contains(r.stderr, "give one trace or session id") {
		t.Errorf("show without an id:\n%s", r)
	}
}
