package testdisk

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

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

// MountExt4 makes an ext4 file system of size bytes in an image file,
// mounts it through a loop device with errors=remount-ro, and unmounts it
// when the test ends. It needs root, loop devices and mkfs.ext4
// (e2fsprogs); without them the test is skipped, or fails when
// INFERTRAIL_REQUIRE_EXT4 is set.
func MountExt4(tb testing.TB, size int64) *Ext4 {
	tb.Helper()
	if os.Geteuid() != 0 {
		skipOrFailFor(tb, requireExt4Env, "mount an ext4 image: not root")
	}
	mkfs, err := exec.LookPath("mkfs.ext4")
	if err != nil {
		skipOrFailFor(tb, requireExt4Env, "mount an ext4 image: %v (install e2fsprogs)", err)
	}
	if _, err := os.Stat("/dev/loop-control"); err != nil {
		skipOrFailFor(tb, requireExt4Env, "mount an ext4 image: no loop devices: %v", err)
	}
	work := tb.TempDir()
	img, dir := filepath.Join(work, "ext4.img"), filepath.Join(work, "mnt")
	if err := os.Mkdir(dir, 0o700); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		tb.Fatal(err)
	}
	if err := os.Truncate(img, size); err != nil {
		tb.Fatal(err)
	}
	if out, err := exec.Command(mkfs, "-q", "-F", img).CombinedOutput(); err != nil {
		tb.Fatalf("mkfs.ext4 %s: %v: %s", img, err, out)
	}
	d := &Ext4{Dir: dir, img: img}
	if err := d.mount(); err != nil {
		skipOrFailFor(tb, requireExt4Env, "mount an ext4 image through a loop device: %v", err)
	}
	tb.Cleanup(func() {
		// Lazily, and the loop device is freed with the last reference
		// (mount's loop option sets autoclear).
		if out, err := exec.Command("umount", "-l", dir).CombinedOutput(); err != nil {
			tb.Errorf("unmount %s: %v: %s", dir, err, out)
		}
	})
	return d
}

func (d *Ext4) mount() error {
	if out, err := exec.Command("mount", "-o", "loop,errors=remount-ro", d.img, d.Dir).CombinedOutput(); err != nil {
		return fmt.Errorf("%w: %s", err, bytes.TrimSpace(out))
	}
	dev, err := mountSource(d.Dir)
	if err != nil {
		return err
	}
	d.device = filepath.Base(dev)
	return nil
}

// Repair does what an operator does after Fail, with nothing left using
// the file system: unmount it, check and repair it (e2fsck -fy), and
// mount it again.
func (d *Ext4) Repair(tb testing.TB) {
	tb.Helper()
	if out, err := exec.Command("umount", d.Dir).CombinedOutput(); err != nil {
		tb.Fatalf("unmount %s: %v: %s", d.Dir, err, out)
	}
	// Exit status 1: errors were found and corrected.
	if out, err := exec.Command("e2fsck", "-f", "-y", d.img).CombinedOutput(); err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 1 {
			tb.Fatalf("e2fsck %s: %v: %s", d.img, err, out)
		}
	}
	if err := d.mount(); err != nil {
		tb.Fatalf("mount %s again: %v", d.Dir, err)
	}
}

// mountSource returns the device mounted on dir, from /proc/self/mountinfo.
func mountSource(dir string) (string, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return "", err
	}
	for line := range strings.Lines(string(b)) {
		// ID parent major:minor root mountpoint options... - fstype source superoptions
		f := strings.Fields(line)
		sep := slices.Index(f, "-")
		if len(f) > 4 && f[4] == dir && sep > 0 && sep+2 < len(f) {
			return f[sep+2], nil
		}
	}
	return "", fmt.Errorf("%s is not in /proc/self/mountinfo", dir)
}

// Fail reports an error of the file system to the kernel, as ext4 does on
// a failed write to its disk: with errors=remount-ro, the file system
// goes read-only, open files included.
func (d *Ext4) Fail(tb testing.TB) {
	tb.Helper()
	trigger := filepath.Join("/sys/fs/ext4", d.device, "trigger_fs_error")
	if err := os.WriteFile(trigger, []byte("infertrail test\n"), 0o200); err != nil {
		tb.Fatalf("fail the file system on %s: %v", d.Dir, err)
	}
	// The kernel takes it read-only a moment later. Newer kernels mark
	// only ext4 itself (emergency_ro), not the mount: access(2) still
	// says writable, so a file is made to tell.
	probe := filepath.Join(d.Dir, ".probe")
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		err := os.WriteFile(probe, nil, 0o600)
		if errors.Is(err, unix.EROFS) {
			return
		}
		os.Remove(probe)
		if time.Now().After(deadline) {
			tb.Fatalf("the file system on %s is still writable 10 s after its failure (%v)", d.Dir, err)
		}
	}
}
