package cpu

import (
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/infertrail/infertrail"
)

// TestDefer: with nothing else to run, Defer returns at once; with other
// goroutines wanting the one CPU, it lets them run, and returns.
func TestDefer(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	Defer(t.Context()) // nothing else runnable

	spun := spin(t)
	before := spun.Load()
	start := time.Now()
	Defer(infertrail.Foreground(t.Context()))
	if d := time.Since(start); d > time.Second {
		t.Errorf("Defer with a Foreground context took %v, want no wait", d)
	}
	start = time.Now()
	Defer(t.Context())
	if d := time.Since(start); d > MaxDefer+time.Second {
		t.Errorf("Defer with others runnable took %v, want about MaxDefer %v", d, MaxDefer)
	}
	if spun.Load() == before {
		t.Error("Defer let no other goroutine run")
	}
}

// TestDeferSleeps: while other goroutines want the CPU throughout, Defer
// yields a few times, then sleeps between looks instead of spinning in
// Go's scheduler (which cost a saturated server about a tenth of its
// CPU), and still returns after about MaxDefer.
func TestDeferSleeps(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	spin(t)
	var slept int
	defer func(f func(time.Duration)) { sleep = f }(sleep)
	sleep = func(d time.Duration) {
		slept++
		time.Sleep(d)
	}
	start := time.Now()
	Defer(t.Context())
	took := time.Since(start)
	if slept == 0 || slept > int(MaxDefer/pause)+1 {
		t.Errorf("Defer slept %d times in %v, want 1 to %d", slept, took, int(MaxDefer/pause)+1)
	}
	if took > MaxDefer+time.Second {
		t.Errorf("Defer took %v, want about MaxDefer %v", took, MaxDefer)
	}
}

// spin keeps three goroutines wanting the CPU until the test ends, and
// returns how many times they have run, once they have.
func spin(t *testing.T) *atomic.Int64 {
	var spun atomic.Int64
	stop := make(chan struct{})
	t.Cleanup(func() { close(stop) })
	for range 3 {
		go func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				spun.Add(1)
				runtime.Gosched()
			}
		}()
	}
	for spun.Load() == 0 {
		runtime.Gosched()
	}
	return &spun
}
