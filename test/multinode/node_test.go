package multinode_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// node is one infertrail serve process.
type node struct {
	name  string
	dir   string // its data folder
	dsn   string
	token string // the API token clients send it; set by startNodes before any client runs
	mu    sync.Mutex
	addr  string // host:port, kept across restarts; clients read it while the node restarts
	logs  string // its stderr, appended across restarts

	cmd  *exec.Cmd
	exit chan error // receives the process's exit once
	up   atomic.Bool
}

// newNode returns a node over data folder dir; start runs it.
func newNode(t testing.TB, name, dsn string) *node {
	t.Helper()
	dir := filepath.Join(t.TempDir(), name)
	n := &node{name: name, dir: dir, dsn: dsn, addr: "127.0.0.1:0", logs: filepath.Join(t.TempDir(), name+".log")}
	t.Cleanup(func() {
		if n.up.Load() {
			n.kill(t)
		}
		if t.Failed() {
			if b, err := os.ReadFile(n.logs); err == nil {
				t.Logf("%s stderr (last 16 KiB):\n%s", n.name, tail(b, 16<<10))
			}
		}
	})
	return n
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// url returns the node's base URL.
func (n *node) url() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return "http://" + n.addr
}

// start runs the node and waits, at most 30 s, until it answers /readyz.
func (n *node) start(t testing.TB) {
	t.Helper()
	logf, err := os.OpenFile(n.logs, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	n.mu.Lock()
	listen := n.addr
	n.mu.Unlock()
	cmd := exec.Command(binary, "serve", "--data", n.dir, "--listen", listen, "--store", n.dsn, "--log-level", "warn")
	cmd.Stderr = logf
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", n.name, err)
	}
	n.cmd, n.exit = cmd, make(chan error, 1)
	n.up.Store(true)
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if a, ok := strings.CutPrefix(sc.Text(), "InferTrail is listening on http://"); ok {
				addr <- a
			}
		}
		io.Copy(io.Discard, stdout)
		n.exit <- cmd.Wait()
	}()
	select {
	case a := <-addr:
		n.mu.Lock()
		n.addr = a
		n.mu.Unlock()
	case err := <-n.exit:
		n.up.Store(false)
		b, _ := os.ReadFile(n.logs)
		t.Fatalf("%s exited before listening: %v\n%s", n.name, err, tail(b, 4<<10))
	case <-time.After(30 * time.Second):
		t.Fatalf("%s did not listen within 30 s", n.name)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(n.url() + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready within 30 s: %v", n.name, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop sends SIGTERM and waits, at most 60 s, for a clean exit.
func (n *node) stop(t testing.TB) {
	t.Helper()
	if !n.up.Load() {
		return
	}
	n.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-n.exit:
		n.up.Store(false)
		if err != nil {
			t.Errorf("%s exited with %v after SIGTERM", n.name, err)
		}
	case <-time.After(60 * time.Second):
		t.Errorf("%s did not stop within 60 s of SIGTERM; killing it", n.name)
		n.kill(t)
	}
}

// kill sends SIGKILL and waits for the process to be gone.
func (n *node) kill(t testing.TB) {
	t.Helper()
	if !n.up.Load() {
		return
	}
	n.cmd.Process.Kill()
	select {
	case <-n.exit:
	case <-time.After(10 * time.Second):
		t.Errorf("%s still running 10 s after SIGKILL", n.name)
	}
	n.up.Store(false)
}

// shareKeys copies the log key, secret key and keyring of from into to's data folder,
// so that both nodes sign as one log.
func shareKeys(t testing.TB, from, to *node) {
	t.Helper()
	if err := os.MkdirAll(to.dir, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"log.key", "secret.key", "content-keys"} {
		b, err := os.ReadFile(filepath.Join(from.dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(to.dir, f), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// verifyLog runs infertrail verify --data dir --store dsn, which must exit
// 0, and returns the number of records it verified.
func verifyLog(t testing.TB, dir, dsn string) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, binary, "verify", "--data", dir, "--store", dsn, "-q")
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	if err := cmd.Run(); err != nil {
		t.Fatalf("verify: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.Bytes(), stderr.Bytes())
	}
	var records, checkpoints int64
	if _, err := fmt.Sscanf(stdout.String(), "OK: %d records and %d signed checkpoints", &records, &checkpoints); err != nil {
		t.Fatalf("verify output %q: %v", stdout.String(), err)
	}
	t.Logf("verify: %d records, %d checkpoints, in %s", records, checkpoints, time.Since(start).Round(time.Millisecond))
	return records
}
