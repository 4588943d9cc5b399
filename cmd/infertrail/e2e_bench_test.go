package main

import (
	"encoding/json"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestE2EBenchIngest runs the load tool against a server, in its text and
// JSON forms.
func TestE2EBenchIngest(t *testing.T) {
	t.Parallel()
	s := startServer(t, t.TempDir())
	args := []string{"bench", "ingest", "--server", s.url, "--records", "2000", "--clients", "4", "--batch", "100"}

	env := []string{"INFERTRAIL_TOKEN=" + s.token}
	r := runCLI(t, env, 60*time.Second, args...)
	if r.code != 0 || !regexp.MustCompile(`(?m)^throughput: [1-9]\d* records/s`).MatchString(r.stdout) {
		t.Errorf("bench ingest: want a throughput line\n%s", r)
	}

	r = runCLI(t, env, 60*time.Second, append(args, "--json")...)
	if r.code != 0 {
		t.Fatalf("bench ingest --json:\n%s", r)
	}
	var res struct {
		Acknowledged     int64   `json:"acknowledged"`
		Failed           int64   `json:"failed"`
		RecordsPerSecond float64 `json:"records_per_second"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
		t.Fatalf("bench ingest --json: stdout is not JSON: %v\n%s", err, r)
	}
	if res.RecordsPerSecond <= 0 || res.Acknowledged < 2000 || res.Failed != 0 {
		t.Errorf("bench ingest --json: %+v\n%s", res, r.stdout)
	}
	if got := treeSize(t, s.url); got < 4000 {
		t.Errorf("tree size after two runs of 2,000 records = %d", got)
	}
}

// TestE2EBenchGateway runs the gateway benchmark against a server whose
// OpenAI upstream is the benchmark's scripted one, streamed and not, and
// checks what it says when the token cannot use the gateway.
func TestE2EBenchGateway(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	upAddr := ln.Addr().String()
	ln.Close()
	s := startServer(t, t.TempDir(), "--openai-upstream", "http://"+upAddr+"/v1")
	args := []string{"bench", "gateway", "--server", s.url, "--upstream-listen", upAddr, "--calls", "30", "--block", "10"}
	env := []string{"INFERTRAIL_TOKEN=" + s.token}

	r := runCLI(t, env, 60*time.Second, args...)
	if r.code != 0 || !regexp.MustCompile(`(?m)^added by the gateway: p50 -?[0-9.]+[µm]?s, p99 `).MatchString(r.stdout) {
		t.Errorf("bench gateway: want the added latency\n%s", r)
	}
	r = runCLI(t, env, 60*time.Second, append(args, "--stream", "--json")...)
	var res struct {
		Calls   int  `json:"calls"`
		Stream  bool `json:"stream"`
		Gateway struct {
			Samples int   `json:"samples"`
			P50     int64 `json:"p50_ns"`
		} `json:"gateway"`
	}
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &res) != nil || res.Calls != 30 || !res.Stream || res.Gateway.Samples != 30 || res.Gateway.P50 <= 0 {
		t.Errorf("bench gateway --stream --json: %+v\n%s", res, r)
	}
	// Each call through the gateway left a request and a response record.
	if got := treeSize(t, s.url); got < 2*(30+30+2*20) {
		t.Errorf("tree size after two runs of 30 calls and 20 to warm up = %d", got)
	}

	r = runCLI(t, env, 60*time.Second, append(args, "--calls", "0")...)
	if r.code == 0 || !strings.Contains(r.stderr, "--calls 0") {
		t.Errorf("bench gateway --calls 0: want an error that names it\n%s", r)
	}
	ingest := createToken(t, s, `{"name":"bench","tenant":"acme","roles":["ingest"]}`)
	r = runCLI(t, []string{"INFERTRAIL_TOKEN=" + ingest}, 60*time.Second, args...)
	if r.code == 0 || !strings.Contains(r.stderr, "through the gateway") || !strings.Contains(r.stderr, "403") || !strings.Contains(r.stderr, "gateway role") {
		t.Errorf("bench gateway with an ingest token: want a refusal that names the gateway role\n%s", r)
	}
}
