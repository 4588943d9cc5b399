package main

// End-to-end tests of the built infertrail binary: TestMain builds it once,
// and the tests run it with exec.Command, as a user would.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/infertrail/infertrail/capture/mcp/mcptest"
)

// binPath is the infertrail binary that TestMain builds.
var binPath string

func TestMain(m *testing.M) {
	if os.Getenv("INFERTRAIL_E2E_MCP_SERVER") == "1" {
		// Re-executed by a test as the MCP server that 'infertrail mcp
		// wrap' runs: serve the scripted server over stdio.
		if err := mcptest.NewServer(nil, nil).Run(context.Background(), &sdk.StdioTransport{}); err != nil {
			fmt.Fprintln(os.Stderr, "e2e MCP server:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(buildAndRun(m))
}

func buildAndRun(m *testing.M) int {
	dir, err := os.MkdirTemp("", "infertrail-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: temp dir:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	binPath = filepath.Join(dir, "infertrail")
	args := []string{"build", "-o", binPath}
	if os.Getenv("GOCOVERDIR") != "" {
		// The binary writes coverage counters to GOCOVERDIR as it exits:
		// 'go tool covdata percent -i $GOCOVERDIR' reports them.
		args = append(args, "-cover", "-coverpkg=github.com/infertrail/infertrail/...")
	}
	cmd := exec.Command("go", append(args, ".")...)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: go build: %v\n%s", err, out)
		return 1
	}
	return m.Run()
}

// httpClient is shared by the tests; its pool suits a few concurrent
// clients. It sends each server's test token (see startServerWith) unless
// a request carries its own Authorization.
var httpClient = &http.Client{
	Timeout:   30 * time.Second,
	Transport: tokenTransport{&http.Transport{MaxIdleConnsPerHost: 16, DisableCompression: true}},
}

// serverTokens maps a server's host:port to the API token the tests use
// with it.
var serverTokens sync.Map

type tokenTransport struct{ next http.RoundTripper }

func (t tokenTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if tok, ok := serverTokens.Load(r.URL.Host); ok && r.Header.Get("Authorization") == "" {
		r = r.Clone(r.Context())
		r.Header.Set("Authorization", "Bearer "+tok.(string))
	}
	return t.next.RoundTrip(r)
}

// syncBuffer is a bytes.Buffer safe for a process writing while a test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// cliResult is the outcome of one CLI run.
type cliResult struct {
	stdout, stderr string
	code           int
}

func (r cliResult) String() string {
	return fmt.Sprintf("exit %d\n--- stdout:\n%s--- stderr:\n%s", r.code, r.stdout, r.stderr)
}

// runCLI runs the binary to completion, bounded by timeout, with env added
// to the environment.
func runCLI(tb testing.TB, env []string, timeout time.Duration, args ...string) cliResult {
	tb.Helper()
	ctx, cancel := context.WithTimeout(tb.Context(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, binPath, args...)
	cmd.Env = append(cleanEnv(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		tb.Fatalf("infertrail %s: did not finish within %v\n--- stdout:\n%s--- stderr:\n%s", strings.Join(args, " "), timeout, &stdout, &stderr)
	}
	res := cliResult{stdout: stdout.String(), stderr: stderr.String()}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		res.code = ee.ExitCode()
	case err != nil:
		tb.Fatalf("infertrail %s: %v", strings.Join(args, " "), err)
	}
	return res
}

// cleanEnv is the environment without INFERTRAIL_* variables, so that the
// developer's own settings do not leak into the tests.
func cleanEnv() []string {
	var env []string
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "INFERTRAIL_") {
			env = append(env, e)
		}
	}
	return env
}

// freeAddr returns a 127.0.0.1 address with a port that was free a moment ago.
func freeAddr(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// server is a running `infertrail serve`.
type server struct {
	tb             testing.TB
	cmd            *exec.Cmd
	addr, url      string
	dir            string
	vkey           string
	admin, token   string // the admin token serve created; a test token with every role but erase, for every tenant
	base           int64  // the tree size once the test token was made: the records of the tokens' creation
	stdout, stderr *syncBuffer
	done           chan struct{} // closed when the process has exited
	state          *os.ProcessState
}

var (
	vkeyRE      = regexp.MustCompile(`verifier key: (\S+)`)
	listeningRE = regexp.MustCompile(`listening on http://(\S+)`)
)

// startServer starts `infertrail serve --data dir --listen 127.0.0.1:0`
// with extra arguments and waits until /readyz answers. The server picks
// its own port and prints it, so parallel tests cannot race for one. The
// server is killed when the test ends, if it still runs.
func startServer(tb testing.TB, dir string, extra ...string) *server {
	tb.Helper()
	args := append([]string{"serve", "--data", dir, "--listen", "127.0.0.1:0"}, extra...)
	return startServerWith(tb, dir, "127.0.0.1:0", nil, args...)
}

// startServerWith starts the binary with args and env, and waits until a
// server answers /readyz on addr.
func startServerWith(tb testing.TB, dir, addr string, env []string, args ...string) *server {
	tb.Helper()
	s := &server{tb: tb, addr: addr, url: "http://" + addr, dir: dir,
		stdout: &syncBuffer{}, stderr: &syncBuffer{}, done: make(chan struct{})}
	s.cmd = exec.Command(binPath, args...)
	s.cmd.Env = append(cleanEnv(), env...)
	s.cmd.Stdout, s.cmd.Stderr = s.stdout, s.stderr
	if err := s.cmd.Start(); err != nil {
		tb.Fatalf("start server: %v", err)
	}
	go func() {
		s.cmd.Wait()
		s.state = s.cmd.ProcessState
		close(s.done)
	}()
	tb.Cleanup(func() {
		select {
		case <-s.done:
			return
		default:
		}
		s.cmd.Process.Kill()
		<-s.done
	})
	// The address the server reports (the port it bound, when it was 0).
	deadline := time.Now().Add(20 * time.Second)
	for {
		if m := listeningRE.FindStringSubmatch(s.stdout.String()); m != nil {
			s.addr, s.url = m[1], "http://"+m[1]
			break
		}
		select {
		case <-s.done:
			tb.Fatalf("server exited before listening: %v\n--- stdout:\n%s--- stderr:\n%s", s.state, s.stdout, s.stderr)
		default:
		}
		if time.Now().After(deadline) {
			tb.Fatalf("server printed no listening address\n--- stdout:\n%s--- stderr:\n%s", s.stdout, s.stderr)
		}
		time.Sleep(10 * time.Millisecond)
	}
	s.waitReady(20 * time.Second)
	deadline = time.Now().Add(5 * time.Second)
	for {
		if m := vkeyRE.FindStringSubmatch(s.stdout.String()); m != nil {
			s.vkey = m[1]
			break
		}
		if time.Now().After(deadline) {
			tb.Fatalf("server printed no verifier key\n--- stdout:\n%s", s.stdout)
		}
		time.Sleep(10 * time.Millisecond)
	}
	s.tokens()
	return s
}

// tokens reads the admin token serve wrote at its first start and, with
// it, creates the token the tests use (kept in the data folder, so that a
// restarted server's tests find it again). A server with authentication
// off has neither.
func (s *server) tokens() {
	s.tb.Helper()
	b, err := os.ReadFile(filepath.Join(s.dir, "admin-token"))
	if err != nil {
		return
	}
	s.admin = strings.TrimSpace(string(b))
	testTokenFile := filepath.Join(s.dir, "e2e-token")
	// The file is not synced: after a crash of its disk it may be empty.
	if b, err := os.ReadFile(testTokenFile); err == nil && len(bytes.TrimSpace(b)) > 0 {
		s.token = strings.TrimSpace(string(b))
	} else {
		req, _ := http.NewRequest("POST", s.url+"/v1/tokens", strings.NewReader(
			`{"name":"e2e","tenant":"*","roles":["ingest","gateway","investigator","admin","monitor"],"expires_in":"1h","rate_limit":1000000}`))
		req.Header.Set("Authorization", "Bearer "+s.admin)
		req.Header.Set("Content-Type", "application/json")
		resp, err := httpClient.Do(req)
		if err != nil {
			s.tb.Fatalf("create the test token: %v", err)
		}
		defer resp.Body.Close()
		var out struct{ Token string }
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != http.StatusCreated {
			s.tb.Fatalf("create the test token: %d %v", resp.StatusCode, err)
		}
		s.token = out.Token
		if err := os.WriteFile(testTokenFile, []byte(s.token), 0o600); err != nil {
			s.tb.Fatal(err)
		}
	}
	serverTokens.Store(s.addr, s.token)
	s.base = treeSize(s.tb, s.url)
}

// waitReady polls /readyz until it answers 200, the process exits, or the
// wait times out.
func (s *server) waitReady(timeout time.Duration) {
	s.tb.Helper()
	deadline := time.Now().Add(timeout)
	c := &http.Client{Timeout: time.Second}
	for {
		select {
		case <-s.done:
			s.tb.Fatalf("server exited before it was ready: %v\n--- stdout:\n%s--- stderr:\n%s", s.state, s.stdout, s.stderr)
		default:
		}
		resp, err := c.Get(s.url + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			s.tb.Fatalf("server not ready on %s within %v (last error %v)\n--- stderr:\n%s", s.addr, timeout, err, s.stderr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop sends SIGTERM and waits (bounded) for the process to exit, and
// returns its exit code.
func (s *server) stop() int {
	s.tb.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		s.tb.Fatalf("SIGTERM: %v", err)
	}
	select {
	case <-s.done:
	case <-time.After(30 * time.Second):
		s.cmd.Process.Kill()
		<-s.done
		s.tb.Fatalf("server did not stop within 30s of SIGTERM\n--- stderr:\n%s", s.stderr)
	}
	return s.state.ExitCode()
}

// kill kills the process with SIGKILL, as a crash would, and waits for it.
func (s *server) kill() {
	s.tb.Helper()
	if err := s.cmd.Process.Kill(); err != nil {
		s.tb.Fatalf("kill: %v", err)
	}
	<-s.done
}

// ingestResult is one element of a POST /v1/records answer.
type ingestResult struct {
	Seq    int64  `json:"seq"`
	ID     string `json:"id"`
	Status string `json:"status"`
}

// post sends body to POST /v1/records and returns the status and results.
func post(ctx context.Context, url string, body []byte) (int, []ingestResult, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url+"/v1/records", bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := httpClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return resp.StatusCode, nil, fmt.Errorf("POST /v1/records: %s: %s", resp.Status, b)
	}
	var out struct {
		Records []ingestResult `json:"records"`
	}
	if err := json.Unmarshal(b, &out); err != nil {
		return resp.StatusCode, nil, fmt.Errorf("POST /v1/records: decode %q: %w", b, err)
	}
	return resp.StatusCode, out.Records, nil
}

// mustPost posts body and fails the test unless every record is answered.
func mustPost(tb testing.TB, url string, body []byte, n int) []ingestResult {
	tb.Helper()
	_, res, err := post(tb.Context(), url, body)
	if err != nil {
		tb.Fatal(err)
	}
	if len(res) != n {
		tb.Fatalf("POST /v1/records answered %d records, want %d", len(res), n)
	}
	return res
}

// newID returns a UUIDv7-like id: 48 bits of Unix milliseconds, version 7,
// the RFC 9562 variant, and 74 random bits.
func newID() string {
	var b [16]byte
	rand.Read(b[6:])
	ms := uint64(time.Now().UnixMilli())
	binary.BigEndian.PutUint16(b[0:2], uint16(ms>>32))
	binary.BigEndian.PutUint32(b[2:6], uint32(ms))
	b[6] = 0x70 | b[6]&0x0f
	b[8] = 0x80 | b[8]&0x3f
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// testRecord returns a record with id; with content it carries a user
// message and an answer that are unique to n.
func testRecord(id string, n int, content bool) map[string]any {
	r := map[string]any{
		"kind":       "inference",
		"id":         id,
		"tenant":     "acme",
		"session_id": fmt.Sprintf("sess-%d", n%7),
		"actor":      map[string]any{"id": "agent:e2e", "type": "agent", "on_behalf_of": "user:alice@acme.example"},
		"attributes": map[string]any{
			"gen_ai.provider.name":       "openai",
			"gen_ai.request.model":       "gpt-4o",
			"gen_ai.usage.input_tokens":  n,
			"gen_ai.usage.output_tokens": 2 * n,
			// Characters that encoding/json escapes by default, and RFC 8785 does not.
			"e2e.note": fmt.Sprintf("q<%d> & a>%d\u2028", n, n),
		},
	}
	if content {
		r["content"] = map[string]any{
			"gen_ai.input.messages":  []any{map[string]any{"role": "user", "parts": []any{map[string]any{"type": "text", "content": fmt.Sprintf("Pay invoice %d, please.", n)}}}},
			"gen_ai.output.messages": []any{map[string]any{"role": "assistant", "parts": []any{map[string]any{"type": "text", "content": fmt.Sprintf("Invoice %d is paid.", n)}}}},
		}
	}
	return r
}

// batchBody returns a JSON array of n records and their ids; every third
// record has content when content is set.
func batchBody(tb testing.TB, n, first int, content bool) ([]byte, []string) {
	tb.Helper()
	return makeBatch(n, first, content)
}

// makeBatch is batchBody for goroutines, which must not call tb.Fatal.
func makeBatch(n, first int, content bool) ([]byte, []string) {
	recs := make([]map[string]any, n)
	ids := make([]string, n)
	for i := range recs {
		ids[i] = newID()
		recs[i] = testRecord(ids[i], first+i, content && (first+i)%3 == 0)
	}
	b, err := json.Marshal(recs)
	if err != nil {
		panic(err) // maps of strings and numbers always marshal
	}
	return b, ids
}

// recordResp is the answer of GET /v1/records/{seq}.
type recordResp struct {
	Seq      int64           `json:"seq"`
	ID       string          `json:"id"`
	LeafHash string          `json:"leaf_hash"`
	Record   json.RawMessage `json:"record"`
}

// getRecord fetches GET /v1/records/{seq}; found is false on 404.
func getRecord(ctx context.Context, url string, seq int64) (rec recordResp, found bool, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s/v1/records/%d", url, seq), nil)
	if err != nil {
		return rec, false, err
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return rec, false, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return rec, false, err
	}
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotFound:
		return rec, false, nil
	default:
		return rec, false, fmt.Errorf("GET /v1/records/%d: %s: %s", seq, resp.Status, b)
	}
	// json.RawMessage keeps the "record" member's bytes exactly as served.
	if err := json.Unmarshal(b, &rec); err != nil {
		return rec, false, fmt.Errorf("GET /v1/records/%d: decode: %w", seq, err)
	}
	return rec, true, nil
}

// getBody GETs url+path and returns the body of a 200 answer.
func getBody(tb testing.TB, url, path string) []byte {
	tb.Helper()
	req, err := http.NewRequestWithContext(tb.Context(), http.MethodGet, url+path, nil)
	if err != nil {
		tb.Fatal(err)
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		tb.Fatalf("GET %s: %s: %s", path, resp.Status, b)
	}
	return b
}

// treeSize returns the tree size from GET /v1/log.
func treeSize(tb testing.TB, url string) int64 {
	tb.Helper()
	var info struct {
		TreeSize int64 `json:"tree_size"`
	}
	if err := json.Unmarshal(getBody(tb, url, "/v1/log"), &info); err != nil {
		tb.Fatal(err)
	}
	return info.TreeSize
}

// waitCheckpoint polls GET /checkpoint until it covers size records
// (the background signer runs about once a second).
func waitCheckpoint(tb testing.TB, url string, size int64) {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		lines := strings.SplitN(string(getBody(tb, url, "/checkpoint")), "\n", 3)
		var n int64
		if len(lines) >= 2 {
			fmt.Sscan(lines[1], &n)
		}
		if n >= size {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("no checkpoint covering %d records within 10s; latest:\n%s", size, strings.Join(lines, "\n"))
		}
		time.Sleep(100 * time.Millisecond)
	}
}
