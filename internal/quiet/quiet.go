// Package quiet keeps a failure that repeats from flooding the server's
// log. When the disk is full or the database is down, every batch and
// every request fails the same way, hundreds of times a second; a line
// for each would bury the first one, and on a full disk make it fuller.
package quiet

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultEvery is how often a run of failures is logged by default.
const DefaultEvery = 10 * time.Second

// Run follows a run of failures of one kind: the first of a run is logged,
// then at most one line every Every (default DefaultEvery), each saying how
// many failures it stands for. A zero Run is ready to use, and safe for
// concurrent use.
type Run struct {
	Every time.Duration

	active atomic.Bool // a run is on: ended need not lock otherwise
	mu     sync.Mutex
	failed int       // failures in the run so far
	since  int       // failures since the last line logged
	start  time.Time // of the run's first failure
	last   time.Time // when the last line was logged
}

// fail notes a failure at now. It reports whether to log it, and if so
// how many failures the line stands for: this one and those not logged
// since the last line.
func (r *Run) fail(now time.Time) (log bool, count int) {
	every := r.Every
	if every <= 0 {
		every = DefaultEvery
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.failed == 0 {
		r.start = now
		r.active.Store(true)
	}
	r.failed++
	r.since++
	if r.failed > 1 && now.Sub(r.last) < every {
		return false, 0
	}
	count, r.since, r.last = r.since, 0, now
	return true, count
}

// ended notes a success. When it ends a run of failures, it returns how
// many failures the run had and when it began; otherwise 0. Outside a run
// it costs an atomic load.
func (r *Run) ended() (failures int, start time.Time) {
	if !r.active.Load() {
		return 0, time.Time{}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	failures, start = r.failed, r.start
	r.failed, r.since = 0, 0
	r.active.Store(false)
	return failures, start
}

// Log notes a failure and logs it on l at level, as fail allows: the
// line carries args and "repeats", the failures it stands for.
func (r *Run) Log(l *slog.Logger, level slog.Level, msg string, args ...any) {
	if log, count := r.fail(time.Now()); log {
		l.Log(context.Background(), level, msg, append(args, "repeats", count)...)
	}
}

// LogEnd notes a success, and when it ends a run of failures logs msg on
// l at Info with how many failures the run had and how long it lasted.
func (r *Run) LogEnd(l *slog.Logger, msg string) {
	if failed, start := r.ended(); failed > 0 {
		l.Info(msg, "failures", failed, "lasted", time.Since(start).Round(time.Millisecond))
	}
}
