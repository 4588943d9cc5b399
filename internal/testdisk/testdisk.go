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

func skipOrFail(tb testing.TB, format string, args ...any) {
	tb.Helper()
	if os.Getenv(requireEnv) != "" {
		tb.Fatalf(format+" ("+requireEnv+" is set)", args...)
	}
	tb.Skipf(format+" (set "+requireEnv+" to fail instead)", args...)
}
