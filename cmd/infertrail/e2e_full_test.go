package main

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	openaisdk "github.com/openai/openai-go/v3"
	openaiopt "github.com/openai/openai-go/v3/option"

	"github.com/infertrail/infertrail/capture/gateway"
	"github.com/infertrail/infertrail/capture/openai/openaitest"
	"github.com/infertrail/infertrail/internal/testdisk"
)

// bulkyBody returns a batch of n records whose content (about 4 KiB of
// text each) hardly compresses, so that a small disk fills.
func bulkyBody(tb testing.TB, n, first int) []byte {
	tb.Helper()
	recs := make([]map[string]any, n)
	for i := range recs {
		r := testRecord(newID(), first+i, false)
		b := make([]byte, 2048)
		rand.Read(b)
		r["content"] = map[string]any{"gen_ai.input.messages": []any{map[string]any{"role": "user",
			"parts": []any{map[string]any{"type": "text", "content": hex.EncodeToString(b)}}}}}
		recs[i] = r
	}
	body, err := json.Marshal(recs)
	if err != nil {
		tb.Fatal(err)
	}
	return body
}

// chatOnce makes one chat completion through s's LLM gateway with the
// official OpenAI SDK, without retries.
func chatOnce(t *testing.T, s *server) error {
	client := openaisdk.NewClient(openaiopt.WithBaseURL(s.url+"/openai/v1/"), openaiopt.WithAPIKey("sk-e2e-caller-key-0123456789"),
		openaiopt.WithHeader(gateway.HeaderToken, s.token), openaiopt.WithMaxRetries(0))
	_, err := client.Chat.Completions.New(t.Context(), openaisdk.ChatCompletionNewParams{
		Model: "gpt-e2e", Messages: []openaisdk.ChatCompletionMessageParamUnion{openaisdk.UserMessage("hello")},
	})
	return err
}

// refusesAll checks a server that cannot write (its readiness says code,
// on what): not ready but alive, its LLM gateway forwards nothing it
// cannot record (503 in OpenAI's shape, to the official SDK, and no
// upstream call), and ingest refuses 20 more batches with 503.
func refusesAll(t *testing.T, s *server, up *openaitest.Upstream, code, what string) {
	t.Helper()
	if c, body := getStatus(t, s.url+"/readyz"); c != http.StatusServiceUnavailable || !strings.Contains(body, code) {
		t.Errorf("/readyz on %s: %d %s", what, c, body)
	}
	if c, _ := getStatus(t, s.url+"/healthz"); c != http.StatusOK {
		t.Errorf("/healthz on %s: %d", what, c)
	}
	calls := up.Count()
	var oerr *openaisdk.Error
	if err := chatOnce(t, s); !errors.As(err, &oerr) || oerr.StatusCode != http.StatusServiceUnavailable || up.Count() != calls {
		t.Fatalf("a call on %s: %v (upstream calls %d → %d), want 503 and no call", what, err, calls, up.Count())
	}
	for range 20 {
		if c, _, _ := post(t.Context(), s.url, bulkyBody(t, 10, 0)); c != http.StatusServiceUnavailable {
			t.Fatalf("ingest on %s answered %d", what, c)
		}
	}
}

// TestE2EStorageFull runs the server on a small disk that fills up. Once
// the disk is down to the reserve (storage.min_free_bytes), ingest answers
// 503 storage_full with Retry-After, /readyz 503, the metrics show it, and
// the LLM gateway forwards nothing (503 in OpenAI's shape, to the official
// SDK); the log says so in a few lines, not one per request. When the
// operator grows the disk, everything resumes without a restart, and the
// log verifies with every acknowledged record.
func TestE2EStorageFull(t *testing.T) {
	disk := testdisk.Mount(t, 64<<20)
	dir := filepath.Join(disk.Dir, "data")
	cfgPath := filepath.Join(t.TempDir(), "infertrail.yaml")
	if err := os.WriteFile(cfgPath, []byte("storage:\n  min_free_bytes: 16777216\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	up := &openaitest.Upstream{Model: "gpt-e2e-answered"}
	upSrv := httptest.NewServer(up)
	defer upSrv.Close()
	s := startServerWith(t, dir, "127.0.0.1:0", []string{"INFERTRAIL_OPENAI_UPSTREAM=" + upSrv.URL + "/v1"},
		"serve", "--data", dir, "--listen", "127.0.0.1:0", "--config", cfgPath)
	chat := func() error { return chatOnce(t, s) }
	if err := chat(); err != nil {
		t.Fatalf("a call with room on the disk: %v", err)
	}

	// Fill the disk with batches of 100 records.
	acked := 0
	var refused *http.Response
	var refusedBody []byte
	for n := 0; refused == nil; n++ {
		if n > 1000 {
			t.Fatalf("%d records acknowledged and no refusal on a 64 MiB disk", acked)
		}
		req, _ := http.NewRequest(http.MethodPost, s.url+"/v1/records", strings.NewReader(string(bulkyBody(t, 100, n*100))))
		req.Header.Set("Content-Type", "application/json")
		resp, err := httpClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		switch resp.StatusCode {
		case http.StatusOK:
			acked += 100
		case http.StatusServiceUnavailable:
			refused, refusedBody = resp, body
		default:
			t.Fatalf("batch %d: %s: %s", n, resp.Status, body)
		}
	}
	var apiErr struct {
		Error struct{ Code, Message string }
	}
	if err := json.Unmarshal(refusedBody, &apiErr); err != nil || apiErr.Error.Code != "storage_full" ||
		!strings.Contains(apiErr.Error.Message, "storage is full") || strings.Contains(apiErr.Error.Message, disk.Dir) {
		t.Fatalf("refusal body %s: want code storage_full, a message that says so and no path", refusedBody)
	}
	if ra := refused.Header.Get("Retry-After"); ra != "10" {
		t.Errorf("Retry-After %q, want 10", ra)
	}
	if acked < 1000 {
		t.Fatalf("only %d records before the reserve", acked)
	}
	refusesAll(t, s, up, "storage_full", "a full disk")
	metrics := string(getBody(t, s.url, "/metrics"))
	free := metricValue(t, metrics, "infertrail_storage_free_bytes")
	if reserve := metricValue(t, metrics, "infertrail_storage_reserve_bytes"); reserve != 16<<20 || free >= reserve {
		t.Errorf("metrics: free %v, reserve %v", free, reserve)
	}
	if metricValue(t, metrics, "infertrail_storage_full_total") < 1 {
		t.Error("infertrail_storage_full_total did not count the refusal")
	}
	if n := strings.Count(s.stderr.String(), `msg="request refused"`); n > 3 {
		t.Errorf("%d 'request refused' lines for 22 refusals in a few seconds; want a line every 10 s\n%s", n, s.stderr)
	}

	// The operator makes a token to erase with on the full disk (its
	// record may use the reserve); an erasure that needs more room than
	// is left (a tenant's, spread over the whole file) is refused whole,
	// with a hint.
	made := runCLI(t, nil, time.Minute, "tokens", "create", "--role", "erase", "--tenant", "*", "--name", "ops", "--data", dir)
	eraseToken := regexp.MustCompile(`(?m)^itk_\S+`).FindString(made.stdout)
	if made.code != 0 || eraseToken == "" {
		t.Fatalf("tokens create on a full disk: %s", made)
	}
	erase := func() cliResult {
		return runCLI(t, []string{"INFERTRAIL_TOKEN=" + eraseToken}, time.Minute,
			"erase", "--scope", "tenant=acme", "--reason", "make room", "--server", s.url)
	}
	if out := erase(); out.code == 0 || !strings.Contains(out.stderr, "storage is full") || !strings.Contains(out.stderr, "erase smaller scopes") {
		t.Fatalf("a tenant's erasure on a full disk: %s", out)
	}

	// The operator grows the volume: ready again, by itself.
	disk.Resize(t, 256<<20)
	s.waitReady(10 * time.Second)
	if out := erase(); out.code != 0 {
		t.Fatalf("the erasure once the disk grew: %s", out)
	}
	res := mustPost(t, s.url, bulkyBody(t, 100, 0), 100)
	if err := chat(); err != nil {
		t.Fatalf("a call once the disk grew: %v", err)
	}
	last := res[99].Seq
	waitCheckpoint(t, s.url, last+3)
	if code := s.stop(); code != 0 {
		t.Fatalf("serve exited %d", code)
	}
	out := runCLI(t, nil, time.Minute, "verify", "--data", dir, "-q")
	if out.code != 0 {
		t.Fatalf("verify: %s", out)
	}
	m := regexp.MustCompile(`OK: (\d+) records`).FindStringSubmatch(out.stdout)
	if m == nil {
		t.Fatalf("verify: %s", out)
	}
	// Every record acknowledged: the test's batches, the tokens' records,
	// two calls' request and response records, the erasure's; nothing of
	// the erasure refused.
	if n, _ := strconv.Atoi(m[1]); int64(n) != s.base+int64(acked)+100+4+2 {
		t.Fatalf("verified %d records, want %d", n, s.base+int64(acked)+100+4+2)
	}
}

// TestE2EStorageFailed runs the server on an ext4 disk mounted with
// errors=remount-ro and fails the disk under it, as a failed write to a
// real disk does: the file system goes read-only with the log's files
// open. Ingest then answers 503 storage_failed with Retry-After and a
// message that says so (it answered 500 internal before), /readyz 503
// while /healthz stays 200, the LLM gateway forwards nothing, and the log
// says so in a few lines. Stopped, the server leaves a folder whose copy
// verifies with every acknowledged record; once the operator has repaired
// the file system (e2fsck) and started the server again, the log holds
// every acknowledged record and resumes where it stopped.
func TestE2EStorageFailed(t *testing.T) {
	disk := testdisk.MountExt4(t, 384<<20)
	dir := filepath.Join(disk.Dir, "data")
	up := &openaitest.Upstream{Model: "gpt-e2e-answered"}
	upSrv := httptest.NewServer(up)
	defer upSrv.Close()
	s := startServerWith(t, dir, "127.0.0.1:0", []string{"INFERTRAIL_OPENAI_UPSTREAM=" + upSrv.URL + "/v1"},
		"serve", "--data", dir, "--listen", "127.0.0.1:0")
	chat := func() error { return chatOnce(t, s) }
	if err := chat(); err != nil {
		t.Fatalf("a call before the failure: %v", err)
	}
	for n := range 5 {
		mustPost(t, s.url, bulkyBody(t, 100, n*100), 100)
	}
	waitCheckpoint(t, s.url, treeSize(t, s.url))

	disk.Fail(t)
	req, _ := http.NewRequest(http.MethodPost, s.url+"/v1/records", bytes.NewReader(bulkyBody(t, 10, 0)))
	req.Header.Set("Content-Type", "application/json")
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var apiErr struct {
		Error struct{ Code, Message string }
	}
	if err := json.Unmarshal(body, &apiErr); err != nil || resp.StatusCode != http.StatusServiceUnavailable || apiErr.Error.Code != "storage_failed" ||
		!strings.Contains(apiErr.Error.Message, "storage failed a write") || strings.Contains(apiErr.Error.Message, disk.Dir) {
		t.Fatalf("ingest on a failed disk: %s %s: want 503, code storage_failed, a message that says so and no path", resp.Status, body)
	}
	if ra := resp.Header.Get("Retry-After"); ra != "10" {
		t.Errorf("Retry-After %q, want 10", ra)
	}
	refusesAll(t, s, up, "storage_failed", "a failed disk")
	if metricValue(t, string(getBody(t, s.url, "/metrics")), "infertrail_commit_failures_total") < 1 {
		t.Error("infertrail_commit_failures_total did not count the failed commits")
	}
	for _, line := range []string{`msg="request refused"`, `msg="commit batch"`} {
		if n := strings.Count(s.stderr.String(), line); n < 1 || n > 3 {
			t.Errorf("%d %s lines for 22 failures in a few seconds; want one, then a line every 10 s\n%s", n, line, s.stderr)
		}
	}
	if strings.Contains(s.stderr.String(), `"internal error"`) || strings.Contains(s.stderr.String(), `msg="request failed"`) {
		t.Errorf("the failure was taken for an internal error:\n%s", s.stderr)
	}
	s.stop()

	// A copy of the folder verifies (where it lies, verification reads it
	// read-only too, unless its WAL holds commits: then it asks for a copy).
	out := runCLI(t, nil, time.Minute, "verify", "--data", copyDataFolder(t, dir), "-q")
	m := regexp.MustCompile(`OK: (\d+) records`).FindStringSubmatch(out.stdout)
	if out.code != 0 || m == nil {
		t.Fatalf("verify a copy of the folder: %s", out)
	}
	// The test's batches and the first call's request and response.
	acked := s.base + 500 + 2
	if n, _ := strconv.Atoi(m[1]); int64(n) != acked {
		t.Fatalf("verified %d records, want %d", n, acked)
	}

	// The operator repairs the file system and starts the server again:
	// the log resumes where it stopped.
	disk.Repair(t)
	if out := runCLI(t, nil, time.Minute, "verify", "--data", dir, "-q"); out.code != 0 || !strings.Contains(out.stdout, fmt.Sprintf("OK: %d records", acked)) {
		t.Fatalf("verify after the repair: %s", out)
	}
	s2 := startServerWith(t, dir, "127.0.0.1:0", []string{"INFERTRAIL_OPENAI_UPSTREAM=" + upSrv.URL + "/v1"},
		"serve", "--data", dir, "--listen", "127.0.0.1:0")
	if res := mustPost(t, s2.url, bulkyBody(t, 100, 0), 100); res[0].Seq != s2.base {
		t.Fatalf("the first record after the repair has seq %d, want %d", res[0].Seq, s2.base)
	}
	waitCheckpoint(t, s2.url, s2.base+100)
	if code := s2.stop(); code != 0 {
		t.Fatalf("serve exited %d after the repair", code)
	}
	if out := runCLI(t, nil, time.Minute, "verify", "--data", dir, "-q"); out.code != 0 || !strings.Contains(out.stdout, fmt.Sprintf("OK: %d records", s2.base+100)) {
		t.Fatalf("verify after the repair and 100 more records: %s", out)
	}
}

// getStatus GETs url without a token and returns the status and body.
func getStatus(tb testing.TB, url string) (int, string) {
	tb.Helper()
	resp, err := http.Get(url)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// metricValue returns the value of an unlabelled metric in a Prometheus
// text exposition.
func metricValue(tb testing.TB, text, name string) float64 {
	tb.Helper()
	m := regexp.MustCompile(`(?m)^` + name + ` (\S+)$`).FindStringSubmatch(text)
	if m == nil {
		tb.Fatalf("no metric %s", name)
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		tb.Fatal(fmt.Errorf("metric %s: %w", name, err))
	}
	return v
}

// TestE2EBackup backs a log up while records keep coming: the copy is the
// log as of one commit, verifies from first principles with the data
// folder's keys, and holds every record acknowledged before the backup
// began. A file already there is refused and left as it is.
// folderHashes returns the SHA-256 of each file in dir, by name.
func folderHashes(t *testing.T, dir string) map[string]string {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, de := range des {
		b, err := os.ReadFile(filepath.Join(dir, de.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out[de.Name()] = fmt.Sprintf("%x", sha256.Sum256(b))
	}
	return out
}

func TestE2EBackup(t *testing.T) {
	dir := t.TempDir()
	s := startServer(t, dir)
	first := len(mustPost(t, s.url, bulkyBody(t, 200, 0), 200))

	stop := make(chan struct{})
	done := make(chan error, 1)
	go func() { // ingest goes on during the backup
		for n := 1; ; n++ {
			select {
			case <-stop:
				done <- nil
				return
			default:
			}
			body, _ := makeBatch(50, n*50, true)
			if code, _, err := post(t.Context(), s.url, body); err != nil {
				done <- fmt.Errorf("ingest during the backup: %d %v", code, err)
				return
			}
		}
	}()
	out := filepath.Join(t.TempDir(), "infertrail-backup.db")
	res := runCLI(t, nil, time.Minute, "backup", "--data", dir, "--out", out)
	close(stop)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`as of (\d+) records`).FindStringSubmatch(res.stdout)
	if res.code != 0 || m == nil || !strings.Contains(res.stdout, "verify --data") {
		t.Fatalf("backup: %s", res)
	}
	size, _ := strconv.ParseInt(m[1], 10, 64)
	if size < s.base+int64(first) {
		t.Fatalf("the backup holds %d records, fewer than the %d acknowledged before it", size, s.base+int64(first))
	}
	// Verifying the backup changes nothing in its folder.
	before := folderHashes(t, filepath.Dir(out))
	ver := runCLI(t, nil, time.Minute, "verify", "--data", dir, "--store", "sqlite:"+out, "-q")
	if ver.code != 0 || !strings.Contains(ver.stdout, fmt.Sprintf("OK: %d records", size)) {
		t.Fatalf("verify the backup: %s", ver)
	}
	if after := folderHashes(t, filepath.Dir(out)); !maps.Equal(before, after) {
		t.Fatalf("verify changed the backup's folder: %v, then %v", before, after)
	}
	// So does a compliance report of it.
	from, to := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339), time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	if rep := runCLI(t, nil, time.Minute, "report", "--from", from, "--to", to, "--data", dir, "--store", "sqlite:"+out, "--format", "json", "-q"); rep.code != 0 || !strings.Contains(rep.stdout, `"records"`) || !strings.Contains(rep.stdout, "without its index file") {
		t.Fatalf("report on the backup: %s", rep)
	}
	if after := folderHashes(t, filepath.Dir(out)); !maps.Equal(before, after) {
		t.Fatalf("report changed the backup's folder: %v, then %v", before, after)
	}

	// A backup of an older schema is verified through a migrated copy in
	// TMPDIR, which is removed; the backup is left as it is.
	old := filepath.Join(t.TempDir(), "older.db")
	if b, err := os.ReadFile(out); err != nil || os.WriteFile(old, b, 0o600) != nil {
		t.Fatalf("copy the backup: %v", err)
	}
	raw, err := sql.Open("sqlite", old)
	if err != nil {
		t.Fatal(err)
	}
	_, err = raw.Exec(`DELETE FROM schema_migrations WHERE version = (SELECT max(version) FROM schema_migrations)`)
	raw.Close()
	if err != nil {
		t.Fatal(err)
	}
	before = folderHashes(t, filepath.Dir(old))
	tmp := t.TempDir()
	ver = runCLI(t, []string{"TMPDIR=" + tmp}, time.Minute, "verify", "--data", dir, "--store", "sqlite:"+old, "-q")
	if ver.code != 0 || !strings.Contains(ver.stdout, fmt.Sprintf("OK: %d records", size)) || !strings.Contains(ver.stderr, "migrated copy") {
		t.Fatalf("verify a backup of an older schema: %s", ver)
	}
	if after := folderHashes(t, filepath.Dir(old)); !maps.Equal(before, after) {
		t.Fatalf("verify changed the older backup's folder: %v, then %v", before, after)
	}
	if left, _ := os.ReadDir(tmp); len(left) != 0 {
		t.Fatalf("verify left %d files in TMPDIR", len(left))
	}
	if res := runCLI(t, nil, time.Minute, "backup", "--data", dir, "--store", "sqlite:"+old, "--out", old+".2"); res.code == 0 || !strings.Contains(res.stderr, "older than this build") {
		t.Fatalf("a backup of an older schema: %s", res)
	}
	if again := runCLI(t, nil, time.Minute, "backup", "--data", dir, "--out", out); again.code == 0 || !strings.Contains(again.stderr, "exists") {
		t.Fatalf("a backup over an existing file: %s", again)
	}
}

// TestE2ECopy copies a stopped server's log into another SQLite file with
// `infertrail copy`; the copy verifies to the same count and a server
// runs on it. Bad input is refused, naming what is wrong, and changes
// nothing. (The move into PostgreSQL is test/multinode's TestCopyFromSQLite.)
func TestE2ECopy(t *testing.T) {
	dir := t.TempDir()
	s := startServer(t, dir)
	mustPost(t, s.url, batchBodyOnly(t, 25, 0), 25)
	if s.stop() != 0 {
		t.Fatalf("serve did not stop cleanly:\n%s", s.stderr)
	}
	before := folderHashes(t, dir)
	dst := filepath.Join(t.TempDir(), "copy.db")
	r := runCLI(t, nil, time.Minute, "copy", "--data", dir, "--to", "sqlite:"+dst)
	if r.code != 0 || !strings.Contains(r.stdout, fmt.Sprintf("Copied %d records", s.base+25)) || !strings.Contains(r.stdout, "infertrail verify --data") {
		t.Fatalf("copy: %s", r)
	}
	// Reading a WAL-mode file whose server stopped cleanly leaves an empty
	// -wal and -shm beside it (SQLite makes them); nothing else changes.
	unchanged := func(what string) {
		t.Helper()
		after := folderHashes(t, dir)
		for name, h := range before {
			if after[name] != h {
				t.Errorf("%s changed %s in the source's folder", what, name)
			}
		}
		for name := range after {
			if _, ok := before[name]; !ok && !strings.HasSuffix(name, "-wal") && !strings.HasSuffix(name, "-shm") {
				t.Errorf("%s left %s in the source's folder", what, name)
			}
		}
	}
	unchanged("the copy")
	if v := runCLI(t, nil, time.Minute, "verify", "--data", dir, "--store", "sqlite:"+dst, "-q"); v.code != 0 || !strings.Contains(v.stdout, fmt.Sprintf("OK: %d records", s.base+25)) {
		t.Fatalf("verify the copy: %s", v)
	}
	s2 := startServer(t, dir, "--store", "sqlite:"+dst)
	if res := mustPost(t, s2.url, batchBodyOnly(t, 5, 25), 5); res[0].Seq != s.base+25 {
		t.Errorf("the first record on the copy has seq %d, want %d", res[0].Seq, s.base+25)
	}
	s2.stop()

	before = folderHashes(t, dir)
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"no destination", []string{"copy", "--data", dir}, "--to is required"},
		{"an existing file", []string{"copy", "--data", dir, "--to", "sqlite:" + dst}, "exists"},
		{"an unknown store", []string{"copy", "--data", dir, "--to", "mysql://db/x"}, "unknown kind"},
		{"no data folder", []string{"copy", "--data", filepath.Join(dir, "nope"), "--to", "sqlite:" + dst + ".2"}, "nope"},
		{"a stray argument", []string{"copy", "--data", dir, "--to", "sqlite:" + dst + ".3", "extra"}, "unexpected argument"},
	} {
		r := runCLI(t, nil, time.Minute, c.args...)
		if r.code == 0 || !strings.Contains(r.stderr, c.want) {
			t.Errorf("%s: %s", c.name, r)
		}
	}
	for _, p := range []string{dst + ".2", dst + ".3"} {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("a refused copy left %s", p)
		}
	}
	unchanged("a refused copy")
}
