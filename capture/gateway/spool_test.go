package gateway

import (
	"bytes"
	"context"
	"log/slog"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

// goroutineID returns the id of the calling goroutine, from its stack trace.
func goroutineID() uint64 {
	b := make([]byte, 64)
	b = b[:runtime.Stack(b, false)]
	b = bytes.TrimPrefix(b, []byte("goroutine "))
	id, _ := strconv.ParseUint(string(b[:bytes.IndexByte(b, ' ')]), 10, 64)
	return id
}

// TestSpoolGoReusesGoroutines checks that work handed to the spool runs on
// a goroutine that finished earlier work, that work handed over while all
// are busy still runs at once, and that Flush waits for it.
func TestSpoolGoReusesGoroutines(t *testing.T) {
	sp := NewSpool(SpoolConfig{Logger: slog.New(slog.DiscardHandler)})
	ids := make(chan uint64, 1)
	sp.Go(func() { ids <- goroutineID() })
	first := <-ids
	// The goroutine is back waiting once Flush sees the work done.
	if err := sp.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		sp.Go(func() { ids <- goroutineID() })
		if <-ids == first {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the spool started a new goroutine for each piece of work")
		}
		time.Sleep(time.Millisecond)
	}

	// Work handed over while every goroutine is busy runs at once, on
	// another goroutine.
	release := make(chan struct{})
	var ran atomic.Int32
	for range 3 {
		sp.Go(func() { ran.Add(1); <-release })
	}
	for ran.Load() < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("%d of 3 blocked pieces of work ran", ran.Load())
		}
		time.Sleep(time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if err := sp.Flush(ctx); err == nil {
		t.Fatal("Flush returned while work was still running")
	}
	close(release)
	if err := sp.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
}
