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

// TestExt4 fails an ext4 file system with a file open on it: what was
// synced before stays, later writes fail and new files are refused, as on
// a failed disk, and e2fsck repairs it.
func TestExt4(t *testing.T) {
	d := MountExt4(t, 32<<20)
	f, err := os.Create(filepath.Join(d.Dir, "open"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write([]byte("before\n")); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil { // what is not synced is lost with the journal
		t.Fatal(err)
	}
	d.Fail(t)
	if _, err := f.Write([]byte("after\n")); err == nil {
		if err := f.Sync(); err == nil {
			t.Fatal("a file open before the failure is still written and synced")
		}
	}
	if _, err := os.Create(filepath.Join(d.Dir, "new")); !errors.Is(err, syscall.EROFS) {
		t.Fatalf("create a file after the failure: %v, want EROFS", err)
	}
	f.Close()
	d.Repair(t)
	if b, err := os.ReadFile(f.Name()); err != nil || !bytes.HasPrefix(b, []byte("before\n")) {
		t.Fatalf("after the repair: %q, %v", b, err)
	}
	if err := os.WriteFile(filepath.Join(d.Dir, "new"), []byte("after the repair\n"), 0o600); err != nil {
		t.Fatalf("write after the repair: %v", err)
	}
}
