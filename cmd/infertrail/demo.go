package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/infertrail/infertrail/demo"
)

// demoCmd runs 'infertrail demo': the server, in process, on a scratch
// data folder (or the one given), with package demo's scripted actors,
// and the four seed scenarios played through the server's real capture
// paths. With --once it checks the scenarios' timelines and findings,
// verifies the log and one evidence bundle per scenario, and exits;
// without, it keeps serving until interrupted.
func demoCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("demo", stderr)
	data := fs.String("data", "", "data `folder` (default: a scratch folder, removed at exit)")
	listen := fs.String("listen", "", "loopback `address` of the server (default 127.0.0.1:8470; with --once, a free port)")
	once := fs.Bool("once", false, "play the scenarios, check them, verify the log and the evidence bundles, print a summary and exit")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	start := time.Now()
	addr := *listen
	switch {
	case addr != "":
	case *once:
		addr = "127.0.0.1:0"
	default:
		addr = "127.0.0.1:8470"
	}
	if !isLoopback(addr) {
		return withHint(fmt.Errorf("--listen %s: the demo listens on loopback addresses only", addr), "give --listen 127.0.0.1:PORT")
	}
	ignoreServerEnv(stderr)

	dir, scratch := *data, *data == ""
	if scratch {
		d, err := os.MkdirTemp("", "infertrail-demo-")
		if err != nil {
			return fmt.Errorf("demo: %w", err)
		}
		dir = d
		defer os.RemoveAll(dir)
	} else if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	actors, err := demo.Start(ctx)
	if err != nil {
		return err
	}
	defer actors.Close()
	policyDir := filepath.Join(dir, "demo-policies")
	if err := demo.WritePolicies(policyDir); err != nil {
		return err
	}
	cfgPath := filepath.Join(dir, "demo.yaml")
	if err := writeDemoConfig(cfgPath, actors, policyDir); err != nil {
		return err
	}
	srv, err := startInProcess(ctx, []string{"--config", cfgPath, "--data", dir, "--listen", addr}, stderr)
	if err != nil {
		return err
	}
	defer srv.stop()
	admin, err := os.ReadFile(filepath.Join(dir, adminTokenFile))
	if err != nil {
		return withHint(fmt.Errorf("demo: read the admin token: %w", err),
			"the demo creates its API tokens with the admin token that 'infertrail serve' wrote at its first start; give a data folder that has it, or leave --data out")
	}
	dk, _, err := openDataFolder(dir, "", false, "")
	if err != nil {
		return err
	}

	fmt.Fprintf(stdout, "InferTrail demo: four scenarios through the real capture paths, in tenant %q. Everything runs on this machine.\n", demo.Tenant)
	where := dir
	if scratch {
		where += " (a scratch folder, removed at exit)"
	}
	fmt.Fprintf(stdout, "  server:       %s\n  data:         %s\n  verifier key: %s\n", srv.url, where, dk.vkey)
	fmt.Fprintf(stdout, "  web UI:       %s/ui/ (sign in with the investigator token in %s)\n", srv.url, filepath.Join(dir, "demo-investigator-token"))
	fmt.Fprintf(stdout, "  model:        %s (scripted, OpenAI wire format), behind the LLM gateway at %s/openai/v1\n", actors.ModelURL, srv.url)
	fmt.Fprintf(stdout, "  MCP tools:    %s (pay, deploy, lookup_order, read_secret), behind the MCP gateway at %s/mcp/%s\n", actors.ToolsURL, srv.url, demo.ToolsServer)
	fmt.Fprintf(stdout, "  services:     %s (vault, payments, deploy and CRM APIs)\n", actors.ServicesURL)
	fmt.Fprintf(stdout, "  policies:     %s (payments approval, approved models, no secrets, prompt injection)\n\n", policyDir)
	fmt.Fprintln(stdout, "Playing the scenarios:")

	runCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	res, err := demo.Run(runCtx, demo.Config{URL: srv.url, AdminToken: strings.TrimSpace(string(admin)), Actors: actors, Progress: stdout})
	cancel()
	if err != nil {
		return err
	}
	tokenFile := filepath.Join(dir, "demo-investigator-token")
	if err := writeSecretFile(tokenFile, []byte(res.Tokens[demo.InvestigatorToken]+"\n")); err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	for _, s := range res.Scenarios {
		printScenario(stdout, s, srv.url, tokenFile, dk.vkey)
	}
	if !*once {
		return explore(ctx, stdout, res, srv, tokenFile, scratch)
	}

	fmt.Fprintln(stdout, "\nChecking the evidence:")
	bundles, err := os.MkdirTemp("", "infertrail-demo-bundles-")
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	defer os.RemoveAll(bundles)
	verified := 0
	for _, s := range res.Scenarios {
		if s.TraceID == "" {
			continue
		}
		name := bundleName(s)
		ok, line := exportAndVerify(ctx, srv.url, res.Tokens[demo.InvestigatorToken], s.TraceID, filepath.Join(bundles, name), dk.vkey, stderr)
		if ok {
			verified++
		}
		fmt.Fprintf(stdout, "  %s bundle %s: %s\n", mark(ok), name, line)
	}
	if err := srv.stop(); err != nil {
		fmt.Fprintf(stdout, "  ✗ the server did not stop cleanly: %v\n", err)
	}
	var out bytes.Buffer
	logErr := verify(ctx, []string{"--data", dir, "--key", dk.vkey, "-q"}, &out, stderr)
	fmt.Fprintf(stdout, "  %s log (infertrail verify --data): %s\n", mark(logErr == nil), firstLine(out.String(), logErr))

	fmt.Fprintln(stdout, "\nSummary:")
	for _, s := range res.Scenarios {
		fmt.Fprintf(stdout, "  %s %d. %-18s %s\n", mark(s.OK()), s.N, s.Title, summaryOf(s))
	}
	n := len(res.Scenarios)
	pass := res.OK() && verified == n && logErr == nil
	fmt.Fprintf(stdout, "  %s the log verifies from first principles; %d of %d evidence bundles verify offline\n", mark(logErr == nil && verified == n), verified, n)
	if !pass {
		fmt.Fprintf(stdout, "FAIL after %s\n", time.Since(start).Round(100*time.Millisecond))
		return exitError{1}
	}
	fmt.Fprintf(stdout, "PASS: every expected finding appeared, every check passed, and the evidence verifies (%s)\n", time.Since(start).Round(100*time.Millisecond))
	return nil
}

// serverEnv are the INFERTRAIL_* settings of serve that the demo sets
// itself.
var serverEnv = []string{"INFERTRAIL_DATA", "INFERTRAIL_LISTEN", "INFERTRAIL_STORE", "INFERTRAIL_ORIGIN",
	"INFERTRAIL_OPENAI_UPSTREAM", "INFERTRAIL_ANTHROPIC_UPSTREAM", "INFERTRAIL_GATEWAY_DURABILITY",
	"INFERTRAIL_GATEWAY_LISTEN", "INFERTRAIL_OTLP_GRPC_LISTEN", "INFERTRAIL_POLICY_DIR"}

// ignoreServerEnv unsets the server settings in the environment, which
// would override the demo's configuration, and says so.
func ignoreServerEnv(stderr io.Writer) {
	for _, name := range serverEnv {
		if _, ok := os.LookupEnv(name); ok {
			os.Unsetenv(name)
			fmt.Fprintf(stderr, "infertrail: the demo ignores %s\n", name)
		}
	}
}

// writeDemoConfig writes the server's configuration file (0600: it holds
// the agents' virtual keys).
func writeDemoConfig(path string, a *demo.Actors, policyDir string) error {
	var vks []map[string]any
	for _, ag := range a.Agents {
		vks = append(vks, map[string]any{"name": ag.Name, "key": ag.Key, "agent": ag.ID, "owner": ag.Owner, "tenant": demo.Tenant,
			"upstream": map[string]string{"openai": ag.UpstreamKey}})
	}
	cfg := map[string]any{
		"log_level": "warn",
		"gateway": map[string]any{
			"openai":       map[string]any{"upstream": a.ModelURL},
			"anthropic":    map[string]any{"disabled": true},
			"virtual_keys": vks,
		},
		"mcp":    map[string]any{"servers": []map[string]any{{"name": demo.ToolsServer, "url": a.ToolsURL}}},
		"policy": map[string]any{"dir": policyDir, "approval_timeout": "1m"},
	}
	b, err := yaml.Marshal(cfg)
	if err != nil {
		return fmt.Errorf("demo configuration: %w", err)
	}
	b = append([]byte("# Written by 'infertrail demo' at each start: the server's configuration for the demo.\n"), b...)
	if err := writeSecretFile(path, b); err != nil {
		return fmt.Errorf("demo configuration: %w", err)
	}
	return nil
}

// inProcess is 'infertrail serve' running in this process.
type inProcess struct {
	url  string
	stop func() error // stops the server and waits for it; safe to call again
}

// startInProcess runs serve with args in a goroutine, and waits until it
// listens and answers /readyz.
func startInProcess(ctx context.Context, args []string, stderr io.Writer) (*inProcess, error) {
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	out := &readyWriter{ready: make(chan string, 1)}
	errc := make(chan error, 1)
	go func() { errc <- serve(sctx, args, out, stderr) }()
	stop := sync.OnceValue(func() error {
		cancel()
		return <-errc
	})
	fail := func(err error) (*inProcess, error) {
		stop()
		return nil, err
	}
	var addr string
	select {
	case addr = <-out.ready:
	case err := <-errc:
		errc <- err
		if err == nil {
			err = errors.New("the server stopped as it started")
		}
		return fail(err)
	case <-ctx.Done():
		return fail(ctx.Err())
	case <-time.After(time.Minute):
		return fail(errors.New("demo: the server did not start within a minute"))
	}
	s := &inProcess{url: "http://" + addr, stop: stop}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.url+"/readyz", nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s, nil
			}
		}
		if ctx.Err() != nil || time.Now().After(deadline) {
			return fail(errors.New("demo: the server is not ready after 30s"))
		}
	}
}

var listeningLine = regexp.MustCompile(`listening on http://(\S+)`)

// readyWriter takes serve's output, and sends the address it listens on
// once it prints it.
type readyWriter struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	ready chan string
	sent  bool
}

func (w *readyWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if m := listeningLine.FindSubmatch(w.buf.Bytes()); m != nil && !w.sent {
		w.sent = true
		w.ready <- string(m[1])
	}
	return len(p), nil
}

// printScenario prints what a scenario did, its timeline, findings and
// checks, and the commands that export and verify its evidence.
func printScenario(w io.Writer, s *demo.Scenario, url, tokenFile, vkey string) {
	fmt.Fprintf(w, "\n══ %d. %s\n", s.N, s.Title)
	for _, line := range s.Story {
		fmt.Fprintf(w, "  · %s\n", line)
	}
	if s.Err != nil {
		fmt.Fprintf(w, "  ✗ the scenario failed: %v\n", s.Err)
	}
	if s.TraceID == "" {
		return
	}
	fmt.Fprintf(w, "  trace %s, session %s\n", s.TraceID, s.SessionID)
	fmt.Fprintf(w, "  timeline: %s%s (API), %s/ui/traces/%s (web UI)\n", url, s.TimelinePath(), url, s.TraceID)
	if s.Timeline != nil {
		var tl bytes.Buffer
		printTimeline(&tl, s.Timeline)
		for line := range strings.Lines(tl.String()) {
			fmt.Fprintf(w, "    %s", line)
		}
	}
	for _, a := range s.Attempts {
		m := mark(a.AsDesigned())
		if a.AsDesigned() && a.Miss() {
			m = "!"
		}
		fmt.Fprintf(w, "  %s %-29s %s\n", m, a.Technique+":", a.Verdict())
		what := "the model answered"
		if a.Denied {
			what = "the gateway answered 403"
		}
		fmt.Fprintf(w, "      %s: %s\n", what, clip(a.Reason, 110))
	}
	fmt.Fprintf(w, "  %s %s\n", mark(s.FindingsAsExpected()), findingsLine(s))
	for _, c := range s.Checks {
		fmt.Fprintf(w, "  %s %s\n", mark(c.OK), c.What)
	}
	name := bundleName(s)
	fmt.Fprintf(w, "  evidence:\n    infertrail export --server %s --token \"$(cat %s)\" --trace %s --content --out %s\n", url, tokenFile, s.TraceID, name)
	fmt.Fprintf(w, "    infertrail verify %s --key '%s'\n", name, vkey)
}

func bundleName(s *demo.Scenario) string { return fmt.Sprintf("demo-%d-%s.zip", s.N, s.Name) }

// summaryOf is a scenario's line in the summary.
func summaryOf(s *demo.Scenario) string {
	if s.Err != nil {
		return "failed: " + s.Err.Error()
	}
	passed := 0
	for _, c := range s.Checks {
		if c.OK {
			passed++
		}
	}
	line := findingsLine(s)
	if len(s.Attempts) > 0 {
		designed, misses := 0, 0
		for _, a := range s.Attempts {
			if a.AsDesigned() {
				designed++
			}
			if a.Miss() {
				misses++
			}
		}
		line += fmt.Sprintf("; %d of %d attempts as designed, %d miss(es) reported", designed, len(s.Attempts), misses)
	}
	return line + fmt.Sprintf("; %d of %d checks", passed, len(s.Checks))
}

// findingsLine says what the detectors found, against what the scenario
// expects.
func findingsLine(s *demo.Scenario) string {
	list := func(ds []string) string {
		if len(ds) == 0 {
			return "none"
		}
		return strings.Join(ds, ", ")
	}
	line := "findings: " + list(s.Expected)
	switch {
	case s.FindingsAsExpected():
		line += ", as expected"
	default:
		if m := s.Missing(); len(m) > 0 {
			line += "; MISSING " + list(m)
		}
		if u := s.Unexpected(); len(u) > 0 {
			line += "; UNEXPECTED " + list(u)
		}
	}
	return line
}

// exportAndVerify exports a trace's evidence bundle from the server with
// the export command, and verifies it offline with the verify command.
func exportAndVerify(ctx context.Context, url, token, trace, path, vkey string, stderr io.Writer) (bool, string) {
	var out bytes.Buffer
	if err := exportCmd(ctx, []string{"--server", url, "--token", token, "--trace", trace, "--content", "--out", path, "-q"}, &out, stderr); err != nil {
		return false, "export failed: " + err.Error()
	}
	out.Reset()
	err := verify(ctx, []string{path, "--key", vkey}, &out, stderr)
	return err == nil, firstLine(out.String(), err)
}

// firstLine is the first line of a command's output, or its error.
func firstLine(out string, err error) string {
	line, _, _ := strings.Cut(strings.TrimSpace(out), "\n")
	if err != nil && !strings.HasPrefix(line, "FAILED") {
		return "failed: " + err.Error()
	}
	return line
}

// clip shortens s to n characters, on one line.
func clip(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}

func mark(ok bool) string {
	if ok {
		return "✓"
	}
	return "✗"
}

// explore keeps the server running for the user until interrupted.
func explore(ctx context.Context, w io.Writer, res *demo.Result, srv *inProcess, tokenFile string, scratch bool) error {
	trace := ""
	if len(res.Scenarios) > 0 {
		trace = res.Scenarios[0].TraceID
	}
	fmt.Fprintf(w, "\nThe server keeps running: explore the trail.\n")
	fmt.Fprintf(w, "  export INFERTRAIL_TOKEN=$(cat %s)\n", tokenFile)
	fmt.Fprintf(w, "  infertrail show %s --server %s\n", trace, srv.url)
	fmt.Fprintf(w, "  infertrail findings --server %s\n", srv.url)
	fmt.Fprintf(w, "  infertrail query --tool pay --server %s\n", srv.url)
	fmt.Fprintf(w, "  curl -H \"Authorization: Bearer $INFERTRAIL_TOKEN\" %s/v1/traces/%s\n", srv.url, trace)
	fmt.Fprintf(w, "Or open the web UI at %s/ui/ and sign in with the token in %s; each scenario's timeline is at %s/ui/traces/ID.\n", srv.url, tokenFile, srv.url)
	if scratch {
		fmt.Fprintln(w, "Press Ctrl-C to stop; the scratch data folder is removed then (give --data DIR to keep it).")
	} else {
		fmt.Fprintln(w, "Press Ctrl-C to stop.")
	}
	<-ctx.Done()
	fmt.Fprintln(w, "\nStopping.")
	return srv.stop()
}
