package cpu

import (
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

// TestDefer: with nothing else to run, Defer returns at once; with other
// goroutines wanting the one CPU, it lets them run, and returns.
func TestDefer(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	Defer() // nothing else runnable

	var spun atomic.Int64
	stop := make(chan struct{})
	defer close(stop)
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
	before := spun.Load()
	start := time.Now()
	Defer()
	if d := time.Since(start); d > MaxDefer+time.Second {
		t.Errorf("Defer with others runnable took %v, want about MaxDefer %v", d, MaxDefer)
	}
	if spun.Load() == before {
		t.Error("Defer let no other goroutine run")
	}
}
