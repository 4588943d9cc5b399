//go:build unix

package sqlite

import "golang.org/x/sys/unix"

// freeBytes returns the space free on the file system of dir for a writer
// without root's reserved blocks.
func freeBytes(dir string) (int64, bool) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, false
	}
	return int64(st.Bavail) * int64(st.Bsize), true
}
