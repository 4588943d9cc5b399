package ledger

import "time"

// SetStorageFailureFor sets how long Log.StorageFailure reports a failed
// commit, until the test ends.
func SetStorageFailureFor(tb interface{ Cleanup(func()) }, d time.Duration) {
	old := storageFailureFor
	storageFailureFor = d
	tb.Cleanup(func() { storageFailureFor = old })
}

// SetCopyBatch sets how many entries a transaction of CopyStore copies,
// until the test ends.
func SetCopyBatch(tb interface{ Cleanup(func()) }, n int64) {
	old := copyBatch
	copyBatch = n
	tb.Cleanup(func() { copyBatch = old })
}
