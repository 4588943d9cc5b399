package testdisk

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// Mount mounts a tmpfs of size bytes on a new temporary folder for tb,
// unmounted when tb ends (after the cleanups registered later, such as a
// store's Close). Mounting needs root (CAP_SYS_ADMIN): without it the test
// is skipped, or fails when INFERTRAIL_REQUIRE_TMPFS is set.
func Mount(tb testing.TB, size int64) *Disk {
	tb.Helper()
	dir := tb.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, fmt.Sprintf("size=%d,mode=0700", size)); err != nil {
		if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
			skipOrFail(tb, "mount a tmpfs: %v", err)
		}
		tb.Fatalf("mount a tmpfs of %d bytes on %s: %v", size, dir, err)
	}
	tb.Cleanup(func() {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			tb.Errorf("unmount %s: %v", dir, err)
		}
	})
	return &Disk{Dir: dir}
}

// Resize gives the disk a new size: larger, as an operator who grows a
// full volume does. What is stored on it stays.
func (d *Disk) Resize(tb testing.TB, size int64) {
	tb.Helper()
	if err := unix.Mount("tmpfs", d.Dir, "tmpfs", unix.MS_REMOUNT|unix.MS_NOSUID|unix.MS_NODEV, fmt.Sprintf("size=%d", size)); err != nil {
		tb.Fatalf("resize the tmpfs on %s to %d bytes: %v", d.Dir, size, err)
	}
}

// ReadOnly makes the disk read-only, as a snapshot or a write-once share
// handed to an auditor is: every write to it fails (EROFS), root's too.
func (d *Disk) ReadOnly(tb testing.TB) {
	tb.Helper()
	if err := unix.Mount("tmpfs", d.Dir, "tmpfs", unix.MS_REMOUNT|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV, ""); err != nil {
		tb.Fatalf("make the tmpfs on %s read-only: %v", d.Dir, err)
	}
}

// GiveTo makes the disk's root owned by the user uid and group gid, and
// the folders above it passable, so that another process — a database
// server running as its own user — can keep files on it.
func (d *Disk) GiveTo(tb testing.TB, uid, gid int) {
	tb.Helper()
	if err := os.Chown(d.Dir, uid, gid); err != nil {
		tb.Fatalf("give %s to %d:%d: %v", d.Dir, uid, gid, err)
	}
	for dir := filepath.Dir(d.Dir); dir != "/" && dir != "."; dir = filepath.Dir(dir) {
		fi, err := os.Stat(dir)
		if err != nil {
			tb.Fatal(err)
		}
		if fi.Mode().Perm()&0o011 != 0o011 {
			if err := os.Chmod(dir, fi.Mode().Perm()|0o011); err != nil {
				tb.Fatal(err)
			}
		}
	}
}
