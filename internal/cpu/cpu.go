// Package cpu lets background work run on the CPU that the process's other
// goroutines leave.
package cpu

import (
	"context"
	"runtime"
	"runtime/metrics"
	"time"

	"github.com/infertrail/infertrail"
)

// MaxDefer bounds how long one call of Defer gives the CPU away.
const MaxDefer = 10 * time.Millisecond

// How Defer waits: it yields to the waiting goroutines yields times, then
// sleeps pause between looks.
const (
	yields = 4
	pause  = 100 * time.Microsecond
)

var sleep = time.Sleep // a test counts the sleeps

// Defer gives the CPU to the process's other goroutines while any of them
// is waiting for it, for at most MaxDefer. Background work that does not
// block — the investigation index's tokenising, hashing and inserts — calls
// it between small pieces of work, so that under unbroken ingest it takes
// the CPU that ingest leaves, rather than an equal turn of Go's scheduler
// with each request. It yields first (runtime.Gosched), since what waits is
// often a goroutine of the background work itself or one about to block,
// then sleeps: yielding for the whole wait spent about a tenth of a
// saturated server's CPU in Go's scheduler. Checking costs about 0.2 µs.
// With a Foreground ctx (a request waiting for the work) it returns at
// once.
func Defer(ctx context.Context) {
	if infertrail.IsForeground(ctx) {
		return
	}
	s := [1]metrics.Sample{{Name: "/sched/goroutines/runnable:goroutines"}}
	var deadline time.Time
	for looks := 0; ; looks++ {
		metrics.Read(s[:])
		if s[0].Value.Kind() != metrics.KindUint64 || s[0].Value.Uint64() == 0 {
			return
		}
		now := time.Now()
		if deadline.IsZero() {
			deadline = now.Add(MaxDefer)
		} else if now.After(deadline) {
			return
		}
		if looks < yields {
			runtime.Gosched()
		} else {
			sleep(pause)
		}
	}
}
