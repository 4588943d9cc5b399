package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	openaisdk "github.com/openai/openai-go/v3"
	openaiopt "github.com/openai/openai-go/v3/option"

	"github.com/infertrail/infertrail/capture/gateway"
	"github.com/infertrail/infertrail/capture/openai/openaitest"
)

// TestE2EErase drives erasure and legal holds through the CLI, against a
// running server and against its data folder, and checks the database file
// and verification afterwards.
func TestE2EErase(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	srv := startServer(t, dir)
	var recs []map[string]any
	for n := range 14 { // sessions sess-0 … sess-6, twice each
		r := testRecord(newID(), n, true)
		recs = append(recs, r)
	}
	body, _ := json.Marshal(recs)
	res := mustPost(t, srv.url, body, len(recs))
	// Content is encrypted at rest.
	db, err := os.ReadFile(filepath.Join(dir, "infertrail.db"))
	if err != nil {
		t.Fatal(err)
	}
	wal, _ := os.ReadFile(filepath.Join(dir, "infertrail.db-wal"))
	if bytes.Contains(append(db, wal...), []byte("Pay invoice 1,")) {
		t.Fatal("plain content in the database file")
	}

	cli := func(args ...string) cliResult {
		return runCLI(t, []string{"INFERTRAIL_TOKEN=" + srv.admin}, 60*time.Second, args...)
	}
	r := cli("hold", "add", "--server", srv.url, "--scope", "tenant=acme,session=sess-1", "--reason", "litigation 2026-17")
	holdID := regexp.MustCompile(`Hold (\S+) placed`).FindStringSubmatch(r.stdout)
	if r.code != 0 || holdID == nil {
		t.Fatalf("hold add:\n%s", r)
	}
	// Erasure needs the erase permission, which an admin does not hold
	// and cannot grant: the operator grants it on the data folder.
	r = cli("erase", "--server", srv.url, "--scope", "tenant=acme,session=sess-1", "--reason", "GDPR Art. 17 request 9")
	if r.code != 1 || !strings.Contains(r.stderr, "403") || !strings.Contains(r.stderr, "erase permission") {
		t.Fatalf("erase with an admin token:\n%s", r)
	}
	r = cli("tokens", "create", "--server", srv.url, "--role", "erase", "--tenant", "acme", "--name", "dpo")
	if r.code != 1 || !strings.Contains(r.stderr, "only a holder of the erase permission") {
		t.Fatalf("an admin grants erase:\n%s", r)
	}
	r = cli("tokens", "create", "--data", dir, "--role", "erase", "--tenant", "acme", "--name", "dpo", "--expires", "1h")
	eraser := strings.TrimSpace(r.stdout)
	if r.code != 0 || !strings.HasPrefix(eraser, "itk_") || !strings.Contains(r.stderr, "only time the token is shown") {
		t.Fatalf("tokens create --data:\n%s", r)
	}
	eraseCLI := func(args ...string) cliResult {
		return runCLI(t, nil, 60*time.Second, append(args, "--token", eraser)...)
	}
	r = eraseCLI("erase", "--server", srv.url, "--scope", "tenant=acme,session=sess-1", "--reason", "GDPR Art. 17 request 9")
	if r.code != 1 || !strings.Contains(r.stderr, "legal hold "+holdID[1]) {
		t.Fatalf("erase under hold:\n%s", r)
	}
	r = eraseCLI("erase", "--server", srv.url, "--scope", "tenant=globex,session=sess-1", "--reason", "GDPR Art. 17 request 10")
	if r.code != 1 || !strings.Contains(r.stderr, "403") {
		t.Fatalf("erase in another tenant:\n%s", r)
	}
	r = cli("hold", "list", "--server", srv.url, "--tenant", "acme")
	if r.code != 0 || !strings.Contains(r.stdout, holdID[1]) || !strings.Contains(r.stdout, "litigation 2026-17") {
		t.Fatalf("hold list:\n%s", r)
	}
	r = cli("hold", "release", holdID[1], "--tenant", "acme", "--server", srv.url)
	if r.code != 0 {
		t.Fatalf("hold release:\n%s", r)
	}
	r = eraseCLI("erase", "--server", srv.url, "--scope", "tenant=acme,session=sess-1", "--reason", "GDPR Art. 17 request 9", "--authority", "DPO")
	m := regexp.MustCompile(`Erasure record: (\d+)\.`).FindStringSubmatch(r.stdout)
	if r.code != 0 || m == nil {
		t.Fatalf("erase:\n%s", r)
	}
	// The API shows the record's content as erased, and others intact.
	if c := readContent(t, srv.url, res[1].Seq); len(c.Content) != 0 || c.ErasedBy == nil || fmt.Sprint(*c.ErasedBy) != m[1] {
		t.Errorf("erased record's content: %+v", c)
	}
	if c := readContent(t, srv.url, res[2].Seq); len(c.Content) != 2 || c.ErasedBy != nil {
		t.Errorf("another session's content: %+v", c)
	}
	if code := srv.stop(); code != 0 {
		t.Fatalf("server exit %d", code)
	}

	// The same on the data folder, with the server stopped.
	r = cli("erase", "--data", dir, "--scope", "tenant=acme,session=sess-2", "--reason", "retention request")
	m2 := regexp.MustCompile(`Erasure record: (\d+)\.`).FindStringSubmatch(r.stdout)
	if r.code != 0 || m2 == nil {
		t.Fatalf("erase --data:\n%s", r)
	}
	r = cli("erase", "--data", dir, "--scope", "tenant=acme,user=bob", "--reason", "x")
	if r.code != 1 || !strings.Contains(r.stderr, "not by user") {
		t.Errorf("erase by a field content is not keyed by:\n%s", r)
	}
	r = cli("erase", "--data", dir, "--scope", "tenant=acme,session=no-such-session", "--reason", "request 12")
	if r.code != 0 || !strings.Contains(r.stdout, "nothing was erased") {
		t.Errorf("erase of a scope with no content:\n%s", r)
	}
	r = cli("verify", "--data", dir)
	if r.code != 0 ||
		!strings.Contains(r.stdout, fmt.Sprintf("Content of 2 records erased by record %s", m[1])) ||
		!strings.Contains(r.stdout, fmt.Sprintf("Content of 2 records erased by record %s", m2[1])) {
		t.Fatalf("verify after erasures:\n%s", r)
	}

	// Rotate the key-encryption key; old content stays readable; the old
	// KEK can then be removed.
	r = cli("keys", "list-kek", "--data", dir)
	old := regexp.MustCompile(`(kek-\S+)`).FindStringSubmatch(r.stdout)
	if r.code != 0 || old == nil {
		t.Fatalf("keys list-kek:\n%s", r)
	}
	r = cli("keys", "remove-kek", old[1], "--data", dir)
	if r.code != 1 {
		t.Errorf("remove-kek of the current KEK:\n%s", r)
	}
	r = cli("keys", "rotate-kek", "--data", dir)
	if r.code != 0 || !strings.Contains(r.stdout, "data keys re-wrapped") {
		t.Fatalf("keys rotate-kek:\n%s", r)
	}
	r = cli("keys", "remove-kek", old[1], "--data", dir)
	if r.code != 0 {
		t.Fatalf("keys remove-kek after rotation:\n%s", r)
	}
	r = cli("verify", "--data", dir)
	if r.code != 0 || strings.Contains(r.stdout, "not checked") {
		t.Fatalf("verify after rotation:\n%s", r)
	}
	srv = startServer(t, dir)
	if c := readContent(t, srv.url, res[3].Seq); len(c.Content) != 2 {
		t.Errorf("content after rotation: %+v", c)
	}
}

type contentResp struct {
	Content  map[string]json.RawMessage `json:"content"`
	ErasedBy *int64                     `json:"content_erased_by"`
}

// readContent reads a record with its content, and the erasure that removed it.
func readContent(tb testing.TB, url string, seq int64) contentResp {
	tb.Helper()
	var c contentResp
	if err := json.Unmarshal(getBody(tb, url, fmt.Sprintf("/v1/records/%d?content=true", seq)), &c); err != nil {
		tb.Fatal(err)
	}
	return c
}

// TestE2ESecretsNeverLand plants secrets in prompts, tool arguments,
// attributes, headers and the caller's API key, through native ingest and
// the LLM gateway (driven by the OpenAI SDK), then scans the database file,
// its WAL and the server's output: none of them may appear anywhere.
func TestE2ESecretsNeverLand(t *testing.T) {
	up := &openaitest.Upstream{Model: "gpt-e2e"}
	upSrv := httptest.NewServer(up)
	defer upSrv.Close()
	dir := filepath.Join(t.TempDir(), "data")
	s := startServerWith(t, dir, "127.0.0.1:0", []string{"INFERTRAIL_OPENAI_UPSTREAM=" + upSrv.URL + "/v1"},
		"serve", "--data", dir, "--listen", "127.0.0.1:0", "--log-level", "debug")

	// Fake, format-valid secrets, built here so no scanner flags this file.
	secrets := map[string]string{
		"aws":       "AKIA" + "Z7Q2M4N6P3R2T3V5",
		"github":    "ghp_" + strings.Repeat("Ab3Cd5Ef7Gh9", 3),
		"openai":    "sk-proj-" + strings.Repeat("Qw8Er7Ty6Ui5", 4),
		"password":  "Tr0ub4dor&3-horse-battery",
		"callerkey": "sk-e2e-caller-" + strings.Repeat("k3y", 8),
		"header":    "ghp_" + strings.Repeat("Zz9Yy8Xx7Ww6", 3),
	}
	// Native ingest: a prompt, tool arguments and an attribute.
	rec := map[string]any{
		"kind": "tool_call", "tenant": "acme", "session_id": "s1",
		"attributes": map[string]any{"gen_ai.tool.name": "deploy", "note": "used " + secrets["aws"]},
		"content": map[string]any{
			"gen_ai.tool.call.arguments": map[string]any{"token": secrets["github"], "cmd": "deploy --password=" + secrets["password"]},
			"gen_ai.input.messages":      "my key is " + secrets["openai"],
		},
	}
	body, _ := json.Marshal([]any{rec})
	ingested := mustPost(t, s.url, body, 1)
	// The API tokens are secrets too: never in a record or a log line.
	secrets["admin token"], secrets["test token"] = s.admin, s.token

	// The gateway: the caller's own key, a secret in the prompt, in the
	// tool-call arguments of the history, and in a session header.
	client := openaisdk.NewClient(openaiopt.WithBaseURL(s.url+"/openai/v1/"), openaiopt.WithAPIKey(secrets["callerkey"]),
		openaiopt.WithMaxRetries(0), openaiopt.WithHeader("X-InferTrail-Session", "sess-"+secrets["header"]),
		openaiopt.WithHeader(gateway.HeaderToken, s.token))
	_, err := client.Chat.Completions.New(t.Context(), openaisdk.ChatCompletionNewParams{
		Model: "gpt-e2e",
		Messages: []openaisdk.ChatCompletionMessageParamUnion{
			openaisdk.UserMessage("Use AWS key " + secrets["aws"] + " and password=" + secrets["password"]),
			openaisdk.ToolMessage(`{"api_key":"`+secrets["openai"]+`"}`, "call_1"),
		},
	})
	if err != nil {
		t.Fatalf("%v\n--- stderr:\n%s", err, s.stderr)
	}
	// The upstream got the request unredacted: redaction is of the evidence,
	// not of the traffic.
	if last, _ := up.Last(); !strings.Contains(string(last.Body), secrets["aws"]) {
		t.Errorf("the upstream did not get the caller's prompt as sent")
	}
	// Content reads back with fingerprints in place of secrets.
	_, content := getContent(t, s.url, ingested[0].Seq)
	if !strings.Contains(content, "hmac-sha256:") {
		t.Errorf("ingested content has no fingerprint: %s", content)
	}
	if code := s.stop(); code != 0 {
		t.Fatalf("server exit %d", code)
	}
	var all []byte
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "infertrail.db") {
			b, err := os.ReadFile(filepath.Join(dir, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			all = append(all, b...)
		}
	}
	all = append(all, s.stdout.String()...)
	all = append(all, s.stderr.String()...)
	for name, secret := range secrets {
		if bytes.Contains(all, []byte(secret)) {
			i := bytes.Index(all, []byte(secret))
			t.Errorf("secret %s found in the database or the server's output: …%q…", name, all[max(0, i-300):min(len(all), i+100)])
		}
	}
	if r := runCLI(t, nil, 60*time.Second, "verify", "--data", dir); r.code != 0 {
		t.Errorf("verify:\n%s", r)
	}
}

// TestE2EForeignKeyring starts a server on a store whose data keys its
// keyring cannot unwrap (a node given a fresh keyring): it must refuse.
func TestE2EForeignKeyring(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	s := startServer(t, dir)
	body, _ := json.Marshal([]any{testRecord(newID(), 1, true)})
	mustPost(t, s.url, body, 1)
	if code := s.stop(); code != 0 {
		t.Fatalf("server exit %d", code)
	}
	if err := os.Remove(filepath.Join(dir, "content-keys")); err != nil {
		t.Fatal(err)
	}
	r := runCLI(t, nil, 30*time.Second, "serve", "--data", dir, "--listen", "127.0.0.1:0")
	if r.code != 1 || !strings.Contains(r.stderr, "does not hold KEK") || !strings.Contains(r.stderr, "hint: every node") {
		t.Errorf("serve with a foreign keyring:\n%s", r)
	}
}

// TestE2ERetention runs the retention job from the CLI on a data folder
// and checks what it erased and what a hold kept.
func TestE2ERetention(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	cfg := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(cfg, []byte("privacy:\n  retention:\n    - {content: 30d}\n    - {tenant: keepall, content: forever}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := startServer(t, dir, "--config", cfg)
	old := time.Now().Add(-40 * 24 * time.Hour).UTC().Format(time.RFC3339Nano)
	var recs []any
	for i, tenant := range []string{"acme", "acme", "keepall"} {
		r := testRecord(newID(), i, true)
		r["tenant"], r["time"], r["session_id"] = tenant, old, fmt.Sprintf("old-%d", i)
		recs = append(recs, r)
	}
	recs = append(recs, testRecord(newID(), 9, true)) // recent
	body, _ := json.Marshal(recs)
	res := mustPost(t, s.url, body, len(recs))
	if code := s.stop(); code != 0 {
		t.Fatalf("server exit %d", code)
	}
	r := runCLI(t, nil, 60*time.Second, "hold", "add", "--data", dir, "--scope", "tenant=acme,session=old-1", "--reason", "audit")
	if r.code != 0 {
		t.Fatalf("hold add:\n%s", r)
	}
	r = runCLI(t, nil, 60*time.Second, "retention", "run", "--data", dir, "--config", cfg)
	if r.code != 0 || !strings.Contains(r.stdout, "1 erasure records appended, 1 data keys destroyed") || !strings.Contains(r.stdout, "1 expired keys kept under legal hold") {
		t.Fatalf("retention run:\n%s", r)
	}
	s = startServer(t, dir, "--config", cfg)
	for i, erased := range []bool{true, false, false, false} {
		if c := readContent(t, s.url, res[i].Seq); (c.ErasedBy != nil) != erased {
			t.Errorf("record %d: erased %v, want %v", i, c.ErasedBy != nil, erased)
		}
	}
}
