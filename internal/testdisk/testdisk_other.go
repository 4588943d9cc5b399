//go:build !linux

package testdisk

import "testing"

// Mount skips the test: mounting a tmpfs is done on Linux only.
func Mount(tb testing.TB, size int64) *Disk {
	tb.Helper()
	skipOrFail(tb, "a tmpfs is mounted on Linux only")
	return nil
}

// Resize is not reached off Linux.
func (d *Disk) Resize(tb testing.TB, size int64) {}

// ReadOnly is not reached off Linux.
func (d *Disk) ReadOnly(tb testing.TB) {}

// GiveTo is not reached off Linux.
func (d *Disk) GiveTo(tb testing.TB, uid, gid int) {}

func MountExt4(tb testing.TB, size int64) *Ext4 {
	tb.Helper()
	skipOrFailFor(tb, requireExt4Env, "an ext4 image is mounted on Linux only")
	return nil
}

func (d *Ext4) Fail(tb testing.TB) {}

func (d *Ext4) Repair(tb testing.TB) {}
