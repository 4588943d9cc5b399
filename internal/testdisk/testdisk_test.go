package testdisk

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// TestMount fills a disk until a write fails for want of space, and writes
// again once it is larger.
func TestMount(t *testing.T) {
	d := Mount(t, 1<<20)
	f, err := os.Create(filepath.Join(d.Dir, "fill"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := bytes.Repeat([]byte{'x'}, 64<<10)
	var written int
	for {
		n, err := f.Write(chunk)
		written += n
		if err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("write after %d bytes: %v, want ENOSPC", written, err)
			}
			break
		}
		if written > 2<<20 {
			t.Fatalf("wrote %d bytes to a disk of 1 MiB", written)
		}
	}
	d.Resize(t, 4<<20)
	if _, err := f.Write(chunk); err != nil {
		t.Fatalf("write after the disk grew: %v", err)
	}
}
