package quiet

import (
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestRun(t *testing.T) {
	var r Run
	t0 := time.Date(2026, 11, 29, 9, 0, 0, 0, time.UTC)
	type step struct {
		at    time.Duration
		log   bool
		count int
	}
	for i, s := range []step{
		{0, true, 1},                   // the first of a run
		{time.Second, false, 0},        // within 10 s: not logged
		{9 * time.Second, false, 0},    //
		{10 * time.Second, true, 3},    // a line for this one and the two before
		{11 * time.Second, false, 0},   //
		{25 * time.Second, true, 2},    //
		{25*time.Second + 1, false, 0}, //
		{35*time.Second + 1, true, 2},  //
		{35*time.Second + 2, false, 0}, //
	} {
		log, count := r.fail(t0.Add(s.at))
		if log != s.log || count != s.count {
			t.Fatalf("step %d at %v: Failed = %v, %d; want %v, %d", i, s.at, log, count, s.log, s.count)
		}
	}
	if n, start := r.ended(); n != 9 || !start.Equal(t0) {
		t.Fatalf("Ended = %d, %v; want 9, %v", n, start, t0)
	}
	if n, _ := r.ended(); n != 0 {
		t.Fatalf("Ended again = %d, want 0", n)
	}
	// A new run logs its first failure at once, however soon.
	if log, count := r.fail(t0.Add(35*time.Second + 3)); !log || count != 1 {
		t.Fatalf("first failure of a new run: %v, %d", log, count)
	}
}

func TestRunEvery(t *testing.T) {
	r := Run{Every: time.Second}
	t0 := time.Now()
	r.fail(t0)
	if log, _ := r.fail(t0.Add(999 * time.Millisecond)); log {
		t.Fatal("logged within Every")
	}
	if log, count := r.fail(t0.Add(time.Second)); !log || count != 2 {
		t.Fatalf("after Every: %v, %d", log, count)
	}
}

// TestRunConcurrent counts every failure once, whichever goroutine has it.
func TestRunConcurrent(t *testing.T) {
	var r Run
	var mu sync.Mutex
	total := 0
	var wg sync.WaitGroup
	t0 := time.Now()
	for g := range 8 {
		wg.Go(func() {
			for i := range 1000 {
				if log, count := r.fail(t0.Add(time.Duration(g*1000+i) * time.Millisecond)); log {
					mu.Lock()
					total += count
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	n, _ := r.ended()
	if n != 8000 {
		t.Fatalf("run of %d failures, want 8000", n)
	}
	if total > n {
		t.Fatalf("lines stand for %d failures, more than the %d there were", total, n)
	}
}

// TestRunLog writes the first failure of a run and its end, and nothing
// for the failures between, on a real logger.
func TestRunLog(t *testing.T) {
	var b strings.Builder
	l := slog.New(slog.NewTextHandler(&b, nil))
	var r Run
	for range 5 {
		r.Log(l, slog.LevelWarn, "store down", "err", "refused")
	}
	r.LogEnd(l, "store back")
	r.LogEnd(l, "store back") // no run to end
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], `msg="store down" err=refused repeats=1`) ||
		!strings.Contains(lines[1], `msg="store back" failures=5`) {
		t.Fatalf("log:\n%s", b.String())
	}
}
