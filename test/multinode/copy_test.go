package multinode_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// runBinary runs the infertrail binary and returns its exit code, stdout
// and stderr.
func runBinary(t testing.TB, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if err != nil {
		code = -1
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
	}
	return code, stdout.String(), stderr.String()
}

// TestCopyFromSQLite is the move of a user who outgrew one machine: a
// server on SQLite takes records, an erasure, a legal hold and tokens (one
// revoked), and gives out a receipt; stopped, its log is copied into
// PostgreSQL with `infertrail copy`, and verifies there to the same count.
// A node on PostgreSQL over the same data folder then takes the old
// tokens (not the revoked one), numbers new records on from the old ones,
// finds the old records by session (the index rebuilt from the log), and
// proves the old receipt; the log copied back into SQLite verifies too.
// A copy into a store that holds records is refused.
func TestCopyFromSQLite(t *testing.T) {
	ctx := t.Context()
	pg := freshSchema(t, sharedDSN(t))
	one := newNode(t, "sqlite", "")
	one.start(t)
	admin := adminToken(t, one)
	app := createToken(t, one, admin, "app", "ingest", "investigator")
	code, stdout, stderr := runBinary(t, "tokens", "create", "--role", "erase", "--tenant", "*", "--name", "dpo", "--data", one.dir)
	eraser := regexp.MustCompile(`(?m)^itk_\S+`).FindString(stdout)
	if code != 0 || eraser == "" {
		t.Fatalf("tokens create --role erase: exit %d\n%s\n%s", code, stdout, stderr)
	}
	leaked := createToken(t, one, admin, "leaked", "ingest")
	revokeToken(t, one, admin, leaked.ID)
	for _, client := range []string{"a", "b", "c"} {
		if status, _, body, _, err := post(ctx, one.url(), app.Token, newBatch(client, 40).body); err != nil || status != http.StatusOK {
			t.Fatalf("ingest: %d %v %s", status, err, body)
		}
	}
	if status, body, err := apiCall(ctx, http.MethodPost, one.url()+"/v1/erasures", eraser,
		map[string]any{"scope": "tenant=multinode,session=sess-b", "reason": "GDPR Art. 17 request 9"}); err != nil || status/100 != 2 {
		t.Fatalf("erase: %d %v %s", status, err, body)
	}
	if status, body, err := apiCall(ctx, http.MethodPost, one.url()+"/v1/holds", admin,
		map[string]any{"scope": "tenant=multinode,session=sess-c", "reason": "litigation 7"}); err != nil || status/100 != 2 {
		t.Fatalf("hold: %d %v %s", status, err, body)
	}
	status, receipt, err := apiCall(ctx, http.MethodGet, one.url()+"/v1/records/5/receipt", app.Token, nil)
	for deadline := time.Now().Add(10 * time.Second); status != http.StatusOK && time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
		status, receipt, err = apiCall(ctx, http.MethodGet, one.url()+"/v1/records/5/receipt", app.Token, nil)
	}
	if err != nil || status != http.StatusOK {
		t.Fatalf("receipt: %d %v %s", status, err, receipt)
	}
	held := filepath.Join(t.TempDir(), "receipt")
	if err := os.WriteFile(held, receipt, 0o600); err != nil {
		t.Fatal(err)
	}
	one.stop(t)
	records := verifyLog(t, one.dir, "")

	code, stdout, stderr = runBinary(t, "copy", "--data", one.dir, "--to", pg, "-q")
	if code != 0 || !strings.Contains(stdout, fmt.Sprintf("Copied %d records", records)) || !strings.Contains(stdout, "4 API tokens, 1 legal holds") {
		t.Fatalf("copy into PostgreSQL: exit %d\n%s\n%s", code, stdout, stderr)
	}
	if got := verifyLog(t, one.dir, pg); got != records {
		t.Fatalf("the copy verifies with %d records, the source with %d", got, records)
	}
	code, stdout, stderr = runBinary(t, "copy", "--data", one.dir, "--to", pg)
	if code == 0 || !strings.Contains(stderr, "copy into an empty store") || !strings.Contains(stderr, "hint:") {
		t.Errorf("a copy into a store with records: exit %d\n%s\n%s", code, stdout, stderr)
	}

	// A node on PostgreSQL over the same data folder.
	two := newNode(t, "postgres", pg)
	two.dir = one.dir
	two.start(t)
	_, acks, body, _, err := post(ctx, two.url(), app.Token, newBatch("d", 10).body)
	if err != nil || len(acks) != 10 || acks[0].Seq != records {
		t.Fatalf("ingest on PostgreSQL with the old token: %v %+v %s; want seq %d first", err, acks, body, records)
	}
	if status, _, body, _, _ := post(ctx, two.url(), leaked.Token, newBatch("e", 1).body); status != http.StatusUnauthorized {
		t.Errorf("the revoked token on PostgreSQL: %d %s", status, body)
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		status, body, err := apiCall(ctx, http.MethodGet, two.url()+"/v1/records?session=sess-a", app.Token, nil)
		var page struct{ Records []json.RawMessage }
		if err == nil && status == http.StatusOK && json.Unmarshal(body, &page) == nil && len(page.Records) == 40 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("query the old records by session on PostgreSQL: %d %v %.300s", status, err, body)
		}
	}
	code, vkey, _ := runBinary(t, "keys", "show", "--data", one.dir)
	if vkey = strings.TrimSpace(vkey); code != 0 || vkey == "" {
		t.Fatalf("keys show: exit %d", code)
	}
	if code, stdout, stderr := runBinary(t, "verify", "--server", two.url(), "--key", vkey, "--token", app.Token, "-q", "--held", held); code != 0 || !strings.Contains(stdout, "Held receipt") {
		t.Fatalf("the old receipt against the node on PostgreSQL: exit %d\n%s\n%s", code, stdout, stderr)
	}
	two.stop(t)
	if got := verifyLog(t, one.dir, pg); got != records+10 {
		t.Fatalf("after new records on PostgreSQL: %d records, want %d", got, records+10)
	}

	// And back.
	back := "sqlite:" + filepath.Join(t.TempDir(), "back.db")
	if code, stdout, stderr := runBinary(t, "copy", "--data", one.dir, "--store", pg, "--to", back, "-q"); code != 0 {
		t.Fatalf("copy back into SQLite: exit %d\n%s\n%s", code, stdout, stderr)
	}
	if got := verifyLog(t, one.dir, back); got != records+10 {
		t.Fatalf("the copy back verifies with %d records, want %d", got, records+10)
	}
}
