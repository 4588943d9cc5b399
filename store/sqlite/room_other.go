//go:build !unix

package sqlite

// freeBytes cannot read the free space here: there is no reserve.
func freeBytes(dir string) (int64, bool) { return 0, false }
