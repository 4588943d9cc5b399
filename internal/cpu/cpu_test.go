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
