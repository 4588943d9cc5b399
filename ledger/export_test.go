package ledger

import "time"

// SetStorageFailureFor sets how long Log.StorageFailure reports a failed
// commit, until the test ends.
func SetStorageFailureFor(tb interface{ Cleanup(func()) }, d time.Duration) {
	old := storageFailureFor
	storageFailureFor = d
	tb.Cleanup(func() { storageFailureFor = old })
}

// SetCopyBatch sets how many entries, and how many bytes, a transaction
// of CopyStore copies at most, until the test ends.
func SetCopyBatch(tb interface{ Cleanup(func()) }, n int64, bytes int) {
	old, oldBytes := copyBatch, copyBatchBytes
	copyBatch, copyBatchBytes = n, bytes
	tb.Cleanup(func() { copyBatch, copyBatchBytes = old, oldBytes })
}
