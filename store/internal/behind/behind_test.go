package behind

import (
	"context"
	"testing"
	"time"

	"github.com/infertrail/infertrail"
)

func TestAppends(t *testing.T) {
	a := &Appends{MaxWait: 50 * time.Millisecond, Quiet: 20 * time.Millisecond}
	if a.Busy() {
		t.Error("busy before any append")
	}
	start := time.Now()
	a.wait(t.Context())
	if d := time.Since(start); d > 10*time.Millisecond {
		t.Errorf("wait with nothing appending took %v", d)
	}
	a.Begin()
	if !a.Busy() || a.Open() != 1 {
		t.Errorf("Busy = %v, Open = %d with one append open", a.Busy(), a.Open())
	}
	start = time.Now()
	a.wait(t.Context())
	if d := time.Since(start); d < a.MaxWait {
		t.Errorf("wait returned after %v with an append open, want MaxWait %v", d, a.MaxWait)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	for name, ctx := range map[string]context.Context{"canceled": ctx, "foreground": infertrail.Foreground(t.Context())} {
		start = time.Now()
		a.wait(ctx)
		if d := time.Since(start); d >= a.MaxWait {
			t.Errorf("wait with a %s context took %v", name, d)
		}
	}
	a.End()
	ended := time.Now()
	if !a.Busy() || a.Open() != 0 {
		t.Errorf("Busy = %v, Open = %d just after the append ended", a.Busy(), a.Open())
	}
	a.wait(t.Context())
	if d := time.Since(ended); d < a.Quiet-time.Millisecond {
		t.Errorf("wait returned %v after the append ended, want at least Quiet %v", d, a.Quiet)
	}
	if a.Busy() {
		t.Error("busy after the quiet gap")
	}
}

// TestWriteBoundsWait: under unbroken appends, a background write waits
// for a gap at most Yield times as long as the last one took, not MaxWait.
func TestWriteBoundsWait(t *testing.T) {
	a := &Appends{MaxWait: 10 * time.Second, Quiet: time.Millisecond, Yield: 2}
	if err := a.Write(t.Context(), func() error { time.Sleep(20 * time.Millisecond); return nil }); err != nil {
		t.Fatal(err)
	}
	a.Begin() // and never ends
	defer a.End()
	start := time.Now()
	ran := false
	if err := a.Write(t.Context(), func() error { ran = true; return nil }); err != nil || !ran {
		t.Fatalf("Write = %v, ran %v", err, ran)
	}
	if d := time.Since(start); d < 40*time.Millisecond || d > 5*time.Second {
		t.Errorf("a write after one of 20 ms waited %v with an append open, want about 40 ms (Yield 2)", d)
	}
	// That write took next to nothing: the next waits next to nothing.
	start = time.Now()
	a.wait(t.Context())
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("wait after a write of %v waited %v", time.Duration(a.held.Load()), d)
	}
}
