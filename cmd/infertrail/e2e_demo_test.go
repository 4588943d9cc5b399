package main

import (
	"bytes"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

var (
	demoTraceRE = regexp.MustCompile(`(?m)^══ (\d)\. .*\n(?:  · .*\n|  ✗ .*\n)*  trace ([0-9a-f]{32}), session (\S+)$`)
	demoLogRE   = regexp.MustCompile(`✓ log \(infertrail verify --data\): OK: (\d+) records`)
)

// demoRun is what one 'infertrail demo --once' printed.
type demoRun struct {
	out     string
	traces  map[int]string // by scenario
	records int64          // the log's size when it was verified
}

// runDemo runs 'infertrail demo --once' on a data folder, and checks
// what every run must print: a passing summary line per scenario, each
// bundle and the log verified, PASS.
func runDemo(t *testing.T, dir string) demoRun {
	t.Helper()
	start := time.Now()
	r := runCLI(t, nil, 90*time.Second, "demo", "--once", "--data", dir)
	t.Logf("infertrail demo --once took %s", time.Since(start).Round(time.Millisecond))
	if r.code != 0 || !strings.Contains(r.stdout, "\nPASS: ") {
		t.Fatalf("infertrail demo --once: %s", r)
	}
	run := demoRun{out: r.stdout, traces: map[int]string{}}
	for _, m := range demoTraceRE.FindAllStringSubmatch(r.stdout, -1) {
		n, _ := strconv.Atoi(m[1])
		run.traces[n] = m[2]
	}
	if len(run.traces) != 4 {
		t.Fatalf("traces of the scenarios: %v\n%s", run.traces, r.stdout)
	}
	for _, want := range []string{
		"✓ 1. Finance chatbot    findings: none, as expected",
		"✓ 2. Operations agent   findings: credential_misuse, as expected",
		"✓ 3. Anomalous session  findings: hallucinated_tool_call, unattributed_action, as expected",
		"✓ 4. Red team           findings: none, as expected; 7 of 7 attempts as designed, 1 miss(es) reported",
		"! encoded instruction (base64): MISS: allowed, should have been blocked",
		"✓ bundle demo-1-finance.zip: OK: ", "✓ bundle demo-2-operations.zip: OK: ",
		"✓ bundle demo-3-anomalous.zip: OK: ", "✓ bundle demo-4-redteam.zip: OK: ",
		"infertrail export --server http://127.0.0.1:", "infertrail verify demo-1-finance.zip --key '",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("the demo's output lacks %q", want)
		}
	}
	if strings.Contains(r.stdout, "✗") {
		t.Errorf("a check failed:\n%s", r.stdout)
	}
	m := demoLogRE.FindStringSubmatch(r.stdout)
	if m == nil {
		t.Fatalf("no log verification in the output:\n%s", r.stdout)
	}
	run.records, _ = strconv.ParseInt(m[1], 10, 64)
	return run
}

// TestE2EDemo runs the built binary's 'demo --once' on a fresh data
// folder, then checks each scenario's timeline and findings on the data
// folder with 'show' and 'findings', as a user would; a second run on the
// same folder plays new traces into the same log, which still verifies.
func TestE2EDemo(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "data")
	first := runDemo(t, dir)

	show := func(trace string) string {
		t.Helper()
		r := runCLI(t, nil, 30*time.Second, "show", trace, "--data", dir)
		if r.code != 0 {
			t.Fatalf("show %s: %s", trace, r)
		}
		return r.stdout
	}
	for n, want := range map[int][]*regexp.Regexp{
		1: {
			regexp.MustCompile(`\n\S+ inference chat gpt-4o \[request\]  #\d+  ✓  by demo-agent:finance-bot`),
			regexp.MustCompile(`\n\S+   inference chat gpt-4o-2024-08-06 \(asks for 1 tool call\(s\)\) \[response\]`),
			regexp.MustCompile(`\n\S+   tool_call pay \[request\]`),
			regexp.MustCompile(`\n\S+     policy_decision require_approval at tool\.call`),
			regexp.MustCompile(`\n\S+       approval approved by token/`),
			regexp.MustCompile(`\n\S+     tool_call pay \[response\]`),
			regexp.MustCompile(`\n\S+   downstream_call POST http://127\.0\.0\.1:\d+/payments/v2/payments  #\d+  ✓  by service:demo-tools\n`),
		},
		2: {
			regexp.MustCompile(`\n\S+   tool_call deploy \[request\]`),
			regexp.MustCompile(`\n\S+   credential issued  #\d+  ✓  by demo-agent:ops-bot\n`),
			regexp.MustCompile(`\n\S+     downstream_call POST http://127\.0\.0\.1:\d+/deploy/v1/deployments  #\d+  ✓  by demo-agent:ops-bot\n`),
			regexp.MustCompile(`\n\S+     credential revoked  #\d+`),
			regexp.MustCompile(`\n\S+     downstream_call POST http://127\.0\.0\.1:\d+/deploy/v1/deployments  #\d+  ✓  by demo-agent:ops-bot  ⚑ credential_misuse`),
			regexp.MustCompile(`credential_misuse: a credential was used at \S+, after its revocation`),
		},
		3: {
			regexp.MustCompile(`inference chat gpt-4o-2024-08-06 \(asks for 2 tool call\(s\)\) \[response\]  #\d+  ✓  by demo-agent:support-bot  ⚑ hallucinated_tool_call`),
			regexp.MustCompile(`\n\S+     tool_call lookup_order \[response\]`),
			regexp.MustCompile(`\n\S+ downstream_call POST http://127\.0\.0\.1:\d+/crm/v1/customers/export  #\d+  ✓  by service:demo-support-agent  ⚑ unattributed_action`),
			regexp.MustCompile(`hallucinated_tool_call: the model asked for tool "read_secret"`),
		},
		4: {
			regexp.MustCompile(`(?s)(policy_decision deny at inference\.request.*){5}`),
			regexp.MustCompile(`inference chat gpt-3\.5-turbo \[request\]`),
		},
	} {
		out := show(first.traces[n])
		for _, re := range want {
			if !re.MatchString(out) {
				t.Errorf("scenario %d: the timeline does not match %s:\n%s", n, re, out)
			}
		}
		if strings.Contains(out, "✗") || strings.Contains(out, "tool_call read_secret") {
			t.Errorf("scenario %d: timeline:\n%s", n, out)
		}
		if n == 1 || n == 4 {
			for _, d := range []string{"hallucinated_tool_call", "unattributed_action", "policy_gap", "credential_misuse", "model_drift"} {
				if strings.Contains(out, d) {
					t.Errorf("scenario %d is flagged %s:\n%s", n, d, out)
				}
			}
		}
	}
	r := runCLI(t, nil, 30*time.Second, "findings", "--data", dir, "--detector", "credential_misuse")
	if r.code != 0 || strings.Count(r.stdout, "credential_misuse") != 1 || !strings.Contains(r.stdout, "demo") {
		t.Errorf("findings --detector credential_misuse: %s", r)
	}

	second := runDemo(t, dir)
	for n, tr := range second.traces {
		if tr == first.traces[n] {
			t.Errorf("scenario %d played the same trace twice: %s", n, tr)
		}
	}
	if second.records <= first.records {
		t.Errorf("the log has %d records after the second run, %d after the first", second.records, first.records)
	}
	r = runCLI(t, nil, 30*time.Second, "findings", "--data", dir, "--detector", "credential_misuse")
	if r.code != 0 || strings.Count(r.stdout, "credential_misuse") != 2 {
		t.Errorf("findings after two runs: %s", r)
	}
	if r := runCLI(t, nil, time.Minute, "verify", "--data", dir); r.code != 0 || !strings.HasPrefix(r.stdout, "OK: ") {
		t.Errorf("verify --data after two runs: %s", r)
	}
}

// TestDemoInProcess runs 'demo --once' in the test's own process (under
// -race, the race detector watches the actors, the scenarios and the
// server together), and refuses an address other than loopback.
func TestDemoInProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("plays the whole demo")
	}
	var stdout, stderr bytes.Buffer
	if err := run(t.Context(), []string{"demo", "--once", "--data", t.TempDir()}, &stdout, &stderr); err != nil {
		t.Fatalf("demo --once: %v\n--- stdout:\n%s--- stderr:\n%s", err, &stdout, &stderr)
	}
	if !strings.Contains(stdout.String(), "\nPASS: ") {
		t.Fatalf("demo --once:\n%s", &stdout)
	}
	err := run(t.Context(), []string{"demo", "--listen", "0.0.0.0:8470"}, &stdout, &stderr)
	if err == nil || !strings.Contains(err.Error(), "loopback") {
		t.Errorf("demo --listen 0.0.0.0:8470: %v", err)
	}
}
