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

// Preparer is a Recorder that can validate and seal records ahead of
// appending them, so that the work is done off the path of a call that
// waits for a later commit. The ledger is one.
type Preparer interface {
	Recorder
	// Prepare validates recs, fills in what is unset and seals them, as
	// Record does, without appending them. The same rules apply to recs
	// once handed over.
	Prepare(ctx context.Context, recs ...*Record) (Prepared, error)
	// RecordPrepared appends the records of prepared, then recs, all or
	// none, and returns their sequence numbers in that order once every
	// one is durable. Prepared values are used once, with the Preparer
	// that made them.
	RecordPrepared(ctx context.Context, prepared []Prepared, recs ...*Record) ([]int64, error)
}

// Prepared is records a Preparer sealed: the records, and the Preparer's
// own form of them.
type Prepared struct {
	Records []*Record
	Sealed  any
}

type reserveKey struct{}

// WithReserve returns a context under which records may be appended into
// the free space that a store keeps in reserve (see Room), when others
// are refused with ErrStorageFull. It is for the records of operators'
// management of the trail — a token made or revoked, a legal hold — which
// are few, and needed most when the disk is full: the token of the person
// who erases content to make room, the revocation of a leaked one.
func WithReserve(ctx context.Context) context.Context {
	return context.WithValue(ctx, reserveKey{}, true)
}

// UsesReserve reports whether ctx came from WithReserve.
func UsesReserve(ctx context.Context) bool {
	v, _ := ctx.Value(reserveKey{}).(bool)
	return v
}
