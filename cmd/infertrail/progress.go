package main

import (
	"fmt"
	"io"
	"os"
	"time"
)

// progressPrinter prints how far a long job got, on one line rewritten at
// most once a second, from its first second on.
type progressPrinter struct {
	w     io.Writer
	quiet bool
	what  string // what report and reportBytes print first: "verified", "report: read"
	last  time.Time
	start time.Time
	shown bool
}

func newProgress(w io.Writer, quiet bool, what string) *progressPrinter {
	return &progressPrinter{w: w, quiet: quiet, what: what, start: time.Now()}
}

// show prints a line, unless one was printed less than a second ago.
func (p *progressPrinter) show(format string, args ...any) {
	if p.quiet || time.Since(p.last) < time.Second || time.Since(p.start) < time.Second {
		return
	}
	p.last = time.Now()
	p.shown = true
	fmt.Fprintf(p.w, "\r"+format+"   ", args...)
}

// rate returns done per second since the start.
func (p *progressPrinter) rate(done int64) float64 {
	return float64(done) / time.Since(p.start).Seconds()
}

// report prints "<what> N / M records (R/s)".
func (p *progressPrinter) report(done, total int64) {
	p.show("%s %d / %d records (%.0f/s)", p.what, done, total, p.rate(done))
}

// reportBytes prints "<what> X MB of at most Y MB (R MB/s)".
func (p *progressPrinter) reportBytes(done, most int64) {
	p.show("%s %.1f MB of at most %.1f MB (%.0f MB/s)", p.what, float64(done)/1e6, float64(most)/1e6, p.rate(done)/1e6)
}

// done ends the line, if one was printed.
func (p *progressPrinter) done() {
	if p.shown {
		fmt.Fprintln(p.w)
		p.shown = false
	}
}

// watchCopy reports, through p, how much of a copy of the log's file at src
// SQLite has written to dst so far, until stop is called; the copy is at
// most the size of src and its WAL.
func watchCopy(p *progressPrinter, src, dst string) (stop func()) {
	var most int64
	for _, f := range []string{src, src + "-wal"} {
		if fi, err := os.Stat(f); err == nil {
			most += fi.Size()
		}
	}
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				if fi, err := os.Stat(dst); err == nil {
					p.reportBytes(fi.Size(), most)
				}
			}
		}
	}()
	return func() {
		close(done)
		<-finished
		p.done()
	}
}
