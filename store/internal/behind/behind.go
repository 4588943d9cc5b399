// Package behind lets a store's background writers — the investigation
// index and the detectors — go after the log's appends. Their writes, and
// the work that makes them, share the CPU, the disk and the database with
// ingest (though not, on SQLite, the log's write lock: they write a file of
// their own), and ingest comes first: evidence is durable before it is
// searchable. But not at any price: under unbroken ingest a background
// writer still gets a bounded share of the time (about 1 in Yield+1),
// instead of waiting for a pause that may never come.
package behind

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/infertrail/infertrail"
)

// Defaults of Appends.
const (
	DefaultMaxWait = time.Second
	DefaultQuiet   = 10 * time.Millisecond
	DefaultYield   = 9
)

// Appends counts a store's append transactions. The zero value is ready;
// it is safe for concurrent use.
type Appends struct {
	open atomic.Int32 // waiting for the writer or holding it
	last atomic.Int64 // when the last one ended, Unix nanoseconds
	held atomic.Int64 // how long the last background write took, nanoseconds

	// MaxWait bounds how long Write waits (default DefaultMaxWait). Quiet
	// is how long after an append ends the log still counts as Busy
	// (default DefaultQuiet). Yield is how many times as long as the last
	// background write (Write) the next one waits, at most, for a gap
	// between appends (default DefaultYield): under unbroken appends,
	// background writes then run about 1/(Yield+1) of the time. Set them
	// before first use.
	MaxWait, Quiet time.Duration
	Yield          int
}

// Begin counts an append transaction in, before it asks for the writer.
func (a *Appends) Begin() { a.open.Add(1) }

// End counts it out, once it has committed or rolled back.
func (a *Appends) End() {
	a.last.Store(time.Now().UnixNano())
	a.open.Add(-1)
}

// Open returns how many append transactions are counted in.
func (a *Appends) Open() int { return int(a.open.Load()) }

// Busy reports whether an append is open, or one ended less than Quiet ago.
func (a *Appends) Busy() bool {
	quiet := a.Quiet
	if quiet <= 0 {
		quiet = DefaultQuiet
	}
	return a.open.Load() > 0 || time.Since(time.Unix(0, a.last.Load())) < quiet
}

// Write runs fn, a background write, once the log is not Busy, or after
// waiting Yield times as long as the last background write took (never
// more than MaxWait), or at once if ctx is Foreground; it keeps how long
// fn took to bound the next wait.
func (a *Appends) Write(ctx context.Context, fn func() error) error {
	a.wait(ctx)
	start := time.Now()
	err := fn()
	a.held.Store(int64(time.Since(start)))
	return err
}

// wait waits while Busy, or until ctx is done, as Write says.
func (a *Appends) wait(ctx context.Context) {
	if !a.Busy() || infertrail.IsForeground(ctx) {
		return
	}
	limit := a.MaxWait
	if limit <= 0 {
		limit = DefaultMaxWait
	}
	yield := a.Yield
	if yield <= 0 {
		yield = DefaultYield
	}
	if held := time.Duration(a.held.Load()); held > 0 {
		limit = min(limit, time.Duration(yield)*held)
	}
	deadline := time.Now().Add(limit)
	t := time.NewTimer(time.Millisecond)
	defer t.Stop()
	for a.Busy() && time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			t.Reset(time.Millisecond)
		}
	}
}
