package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestWatchCopy reports a copy's bytes as its file grows, against the size
// of the file it copies.
func TestWatchCopy(t *testing.T) {
	dir := t.TempDir()
	src, dst := filepath.Join(dir, "log.db"), filepath.Join(dir, "copy.db")
	if err := os.WriteFile(src, make([]byte, 2_000_000), 0o600); err != nil {
		t.Fatal(err)
	}
	out := &syncBuffer{}
	p := newProgress(out, false, "backup: wrote")
	p.start = time.Now().Add(-time.Hour) // past the first second's silence
	stop := watchCopy(p, src, dst)
	if err := os.WriteFile(dst, make([]byte, 500_000), 0o600); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(out.String(), "wrote") && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	stop()
	if got := out.String(); !strings.Contains(got, "backup: wrote 0.5 MB of at most 2.0 MB") || !strings.HasSuffix(got, "\n") {
		t.Fatalf("progress: %q", got)
	}

	out = &syncBuffer{}
	quiet := newProgress(out, true, "backup: wrote")
	quiet.start = time.Now().Add(-time.Hour)
	stop = watchCopy(quiet, src, dst)
	time.Sleep(600 * time.Millisecond)
	stop()
	if out.String() != "" {
		t.Fatalf("progress with -q: %q", out.String())
	}
}
