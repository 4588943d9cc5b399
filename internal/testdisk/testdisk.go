// Package testdisk gives tests a small disk of their own, to fill: what
// happens when the disk under the log is full is tested against a real
// file system that runs out of space, not a fake error.
package testdisk

import (
	"os"
	"testing"
)

// Disk is a file system of a fixed size mounted on Dir for one test.
type Disk struct {
	Dir string
}

// requireEnv, when set, turns "cannot mount here" from a skip into a
// failure: CI sets it, as it runs as root.
const requireEnv = "INFERTRAIL_REQUIRE_TMPFS"

// requireExt4Env is requireEnv for MountExt4, which needs loop devices
// and mkfs.ext4 besides root: CI sets it where /dev/loop-control exists.
const requireExt4Env = "INFERTRAIL_REQUIRE_EXT4"

func skipOrFail(tb testing.TB, format string, args ...any) {
	tb.Helper()
	skipOrFailFor(tb, requireEnv, format, args...)
}

func skipOrFailFor(tb testing.TB, env, format string, args ...any) {
	tb.Helper()
	if os.Getenv(env) != "" {
		tb.Fatalf(format+" ("+env+" is set)", args...)
	}
	tb.Skipf(format+" (set "+env+" to fail instead)", args...)
}

// Ext4 is an ext4 file system on a loop device, mounted on Dir for one
// test with errors=remount-ro, as production disks often are: Fail makes
// the kernel take it for damaged, and it goes read-only under whatever
// has files open on it, as after a real I/O error.
type Ext4 struct {
	Dir    string
	img    string // the image file
	device string // the loop device's name, as in /sys/fs/ext4
}
