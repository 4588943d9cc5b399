// Package behind lets a store's background writers — the investigation
// index and the detectors — go after the log's appends. Their writes, and
// the work that makes them, share the writer (SQLite has one) and the CPU
// with ingest, which comes first: evidence is durable before it is
// searchable.
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
)

// Appends counts a store's append transactions. The zero value is ready;
// it is safe for concurrent use.
type Appends struct {
	open atomic.Int32 // waiting for the writer or holding it
	last atomic.Int64 // when the last one ended, Unix nanoseconds
	// MaxWait bounds how long Wait waits (default DefaultMaxWait), so
	// that under a steady stream of appends a background writer still
	// gets a turn once per MaxWait. Quiet is how long after an append
	// ends the log still counts as busy (default DefaultQuiet). Set them
	// before first use.
	MaxWait, Quiet time.Duration
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

// Wait waits while Busy, up to MaxWait, or until ctx is done. A
// Foreground ctx does not wait.
func (a *Appends) Wait(ctx context.Context) {
	if !a.Busy() || infertrail.IsForeground(ctx) {
		return
	}
	max := a.MaxWait
	if max <= 0 {
		max = DefaultMaxWait
	}
	deadline := time.Now().Add(max)
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
