package main

import (
	"encoding/json"
	"regexp"
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
