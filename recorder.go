package infertrail

import "context"

// Recorder appends records to the trail. Capture adapters (the gateways,
// the OTLP receiver) hand their records to one; the ledger implements it.
type Recorder interface {
	// Record validates recs, fills in what is unset (id, times, tenant),
	// appends them, and returns their sequence numbers in order once every
	// one is durable. On error none is appended; ErrPushback means the trail
	// is busy and the call may be retried, ErrInvalid or ErrTooLarge that a
	// record is at fault. Record is safe for concurrent use and must not
	// be called with records that are still being changed.
	Record(ctx context.Context, recs ...*Record) ([]int64, error)
}
