package ledger

import "time"

// SetStorageFailureFor sets how long Log.StorageFailure reports a failed
// commit, until the test ends.
func SetStorageFailureFor(tb interface{ Cleanup(func()) }, d time.Duration) {
	old := storageFailureFor
	storageFailureFor = d
	tb.Cleanup(func() { storageFailureFor = old })
}
