package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/infertrail/infertrail"
	"github.com/infertrail/infertrail/internal/quiet"
)

// Spool writes records after the fact, bounded: a capture path reserves
// room for a record, hands it over, and goes on; the spool writes it,
// retrying while the trail is busy or down, and keeps what the trail
// refuses as far as it can. The LLM and MCP gateways share it. It is safe
// for concurrent use.
type Spool struct {
	rec    infertrail.Recorder
	log    *slog.Logger
	wait   time.Duration
	onWait func()
	onFail func()
	// retries follows writes that failed and are retried: while the
	// trail is down or full, a line every 10 s, not one per record.
	retries quiet.Run

	slots   chan struct{} // one per record waiting to be written after the fact
	tasks   chan func()   // to a goroutine of the spool waiting for work
	wg      sync.WaitGroup
	blMu    sync.Mutex
	backlog []later
	blTimer *time.Timer
}

// later is a record waiting in the backlog, sealed ahead if the recorder
// can (prepared.Records is then not empty).
type later struct {
	r        *infertrail.Record
	prepared infertrail.Prepared
}

// SpoolConfig configures a Spool. Zero values are documented defaults.
type SpoolConfig struct {
	Recorder infertrail.Recorder // required
	// MaxPending bounds the records waiting to be written (default 16384);
	// Reserve waits up to PendingWait (default 30 s) for room.
	MaxPending  int
	PendingWait time.Duration
	Logger      *slog.Logger
	// OnWait and OnFail, if set, count waits for room and records the
	// trail refused outright.
	OnWait, OnFail func()
}

// NewSpool returns a spool writing to cfg.Recorder.
func NewSpool(cfg SpoolConfig) *Spool {
	if cfg.MaxPending <= 0 {
		cfg.MaxPending = 16384
	}
	if cfg.PendingWait <= 0 {
		cfg.PendingWait = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	nop := func() {}
	if cfg.OnWait == nil {
		cfg.OnWait = nop
	}
	if cfg.OnFail == nil {
		cfg.OnFail = nop
	}
	s := &Spool{rec: cfg.Recorder, log: cfg.Logger, wait: cfg.PendingWait, onWait: cfg.OnWait, onFail: cfg.OnFail,
		slots: make(chan struct{}, cfg.MaxPending), tasks: make(chan func())}
	s.blTimer = time.AfterFunc(time.Hour, s.flushBacklog)
	s.blTimer.Stop()
	return s
}

// Pending returns how many records wait to be written.
func (g *Spool) Pending() int { return len(g.slots) }

// RecordNow writes r (and with it, in the same commit, the records in
// with) at once, durably, together with the records waiting in the
// backlog; it returns r's sequence number. A failure that is the
// backlog's is not r's: the backlog is retried on its own and r (with
// with) alone is written again.
//
// A caller that goes away once the write has begun does not abandon it:
// a recorder may commit records and still report the caller's end (the
// client package's, over HTTP, cannot tell), and a caller told that they
// were not written would leave a request on record with no outcome. The
// write goes on without ctx's cancellation, bounded by recordNowTimeout,
// and the caller looks at ctx afterwards.
func (g *Spool) RecordNow(ctx context.Context, r *infertrail.Record, with ...*infertrail.Record) (int64, error) {
	if err := ctx.Err(); err != nil {
		return -1, err
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recordNowTimeout)
	defer cancel()
	own := append([]*infertrail.Record{r}, with...)
	backlog := g.takeBacklog()
	seqs, err := g.record(ctx, backlog, own)
	if err != nil && len(backlog) > 0 {
		go g.persistLater(backlog)
		backlog = nil
		seqs, err = g.rec.Record(ctx, own...)
	}
	if err != nil {
		return -1, err
	}
	g.written(len(backlog))
	return seqs[len(backlog)], nil
}

// recordNowTimeout bounds a RecordNow whose caller has gone away.
const recordNowTimeout = 30 * time.Second

// record writes the backlog b, then recs, in one call: sealed already,
// when every record of b could be sealed ahead (a record that could not
// is rare: then all are sealed again here).
func (g *Spool) record(ctx context.Context, b []later, recs []*infertrail.Record) ([]int64, error) {
	p, ok := g.rec.(infertrail.Preparer)
	prepared := make([]infertrail.Prepared, 0, len(b))
	for _, l := range b {
		if len(l.prepared.Records) == 0 {
			ok = false
			break
		}
		prepared = append(prepared, l.prepared)
	}
	if !ok || len(b) == 0 {
		return g.rec.Record(ctx, append(records(b), recs...)...)
	}
	return p.RecordPrepared(ctx, prepared, recs...)
}

func records(b []later) []*infertrail.Record {
	out := make([]*infertrail.Record, len(b))
	for i, l := range b {
		out[i] = l.r
	}
	return out
}

// Flush writes the backlog and waits until every record handed over is
// durable, or ctx ends.
func (g *Spool) Flush(ctx context.Context) error {
	g.flushBacklog()
	done := make(chan struct{})
	go func() { g.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		n := len(g.slots)
		g.log.Error("records not yet written at shutdown", "records", n)
		return fmt.Errorf("%d records not yet written: %w", n, ctx.Err())
	}
}

// Reserve takes room for one record to be written after the fact,
// waiting up to PendingWait when the trail is behind.
func (g *Spool) Reserve(ctx context.Context) error {
	select {
	case g.slots <- struct{}{}:
		return nil
	default:
	}
	g.onWait()
	t := time.NewTimer(g.wait)
	defer t.Stop()
	select {
	case g.slots <- struct{}{}:
		return nil
	case <-t.C:
		return fmt.Errorf("%d records are waiting to be written: %w", cap(g.slots), infertrail.ErrPushback)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Release gives back a slot taken by Reserve that no record will use.
func (g *Spool) Release() { <-g.slots }

// WriteLater writes r after the fact, holding a slot taken by Reserve: a
// record handed here is never dropped while the process runs. Records
// wait in a backlog for up to backlogDelay, so that the next request record
// written synchronously carries them into the same commit: at low
// concurrency a call then costs one commit, not two. A recorder that can
// (infertrail.Preparer) seals r first, on a goroutine of its own, so that
// the next request does not wait for that either.
func (g *Spool) WriteLater(r *infertrail.Record) {
	g.wg.Add(1)
	p, ok := g.rec.(infertrail.Preparer)
	if !ok {
		g.addLater(later{r: r})
		return
	}
	g.run(func() {
		l := later{r: r}
		// A record that does not seal goes to the backlog as it is, and
		// meets its error (and Persist's remedies) when it is written.
		if prepared, err := p.Prepare(context.Background(), r); err == nil {
			l.prepared = prepared
		}
		g.addLater(l)
	})
}

// Go runs fn, which hands records over, on a goroutine of the spool: Flush
// waits for it as for the records it hands over.
func (g *Spool) Go(fn func()) {
	g.wg.Add(1)
	g.run(func() {
		defer g.wg.Done()
		fn()
	})
}

// run runs fn on a goroutine of the spool that has finished its work and
// waits for more, or on a new one when none waits. Parsing a response and
// sealing a record grow a goroutine's stack to several times its initial
// size; a goroutine started for each piece of work grew it anew each time
// (copying the stack, 4% of the gateway's CPU at concurrency 1).
func (g *Spool) run(fn func()) {
	select {
	case g.tasks <- fn:
	default:
		go g.work(fn)
	}
}

// work runs fn, then work handed over by run, until none comes for
// workerIdle.
func (g *Spool) work(fn func()) {
	idle := time.NewTimer(workerIdle)
	defer idle.Stop()
	for {
		fn()
		idle.Reset(workerIdle)
		select {
		case fn = <-g.tasks:
		case <-idle.C:
			return
		}
	}
}

// workerIdle is how long a goroutine of the spool waits for more work.
const workerIdle = 10 * time.Second

func (g *Spool) addLater(l later) {
	g.blMu.Lock()
	g.backlog = append(g.backlog, l)
	if len(g.backlog) == 1 {
		g.blTimer.Reset(backlogDelay)
	}
	g.blMu.Unlock()
}

// backlogDelay is the longest a record written after the fact waits for a
// request record to share its commit.
const backlogDelay = 2 * time.Millisecond

// takeBacklog removes and returns the records waiting in the backlog.
func (g *Spool) takeBacklog() []later {
	g.blMu.Lock()
	defer g.blMu.Unlock()
	b := g.backlog
	g.backlog = nil
	return b
}

// flushBacklog writes what waits in the backlog in the background.
func (g *Spool) flushBacklog() {
	if b := g.takeBacklog(); len(b) > 0 {
		g.run(func() { g.persistLater(b) })
	}
}

// written releases the slots of n records that are durable.
func (g *Spool) written(n int) {
	for range n {
		<-g.slots
		g.wg.Done()
	}
}

// persistLater writes the backlog b, as sealed; if that fails, it writes
// its records again with PersistAll, which retries.
func (g *Spool) persistLater(b []later) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	_, err := g.record(ctx, b, nil)
	cancel()
	if err == nil {
		g.written(len(b))
		return
	}
	g.PersistAll(records(b))
}

// PersistAll writes b in one call, retrying while the trail is busy or
// down; if the trail refuses the batch, it writes each record on its own.
func (g *Spool) PersistAll(b []*infertrail.Record) {
	defer g.written(len(b))
	backoff := 5 * time.Millisecond
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		_, err := g.rec.Record(ctx, b...)
		cancel()
		if err == nil {
			g.retries.LogEnd(g.log, "gateway: records written again")
			return
		}
		if errors.Is(err, infertrail.ErrInvalid) || errors.Is(err, infertrail.ErrTooLarge) {
			for _, r := range b {
				g.Persist(r)
			}
			return
		}
		g.retries.Log(g.log, slog.LevelWarn, "gateway: writing records failed; retrying", "records", len(b), "err", err)
		time.Sleep(backoff)
		backoff = min(backoff*2, time.Second)
	}
}

// coreAttributes are kept when the trail refuses a record's attributes.
var coreAttributes = []string{"infertrail.phase", "gen_ai.operation.name", "gen_ai.provider.name",
	"gen_ai.request.model", "gen_ai.response.model", "http.response.status_code", "infertrail.incomplete_reason"}

// Persist writes one record, retrying until it is durable.
func (g *Spool) Persist(r *infertrail.Record) {
	backoff := 5 * time.Millisecond
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		_, err := g.rec.Record(ctx, r)
		cancel()
		if err == nil {
			g.retries.LogEnd(g.log, "gateway: records written again")
			return
		}
		if errors.Is(err, infertrail.ErrInvalid) || errors.Is(err, infertrail.ErrTooLarge) {
			// Keep the evidence that the call happened, without what the
			// trail refused: first the content, then all but the core
			// attributes.
			switch {
			case len(r.Content) > 0:
				r.Content = nil
				r.Attributes["infertrail.content_refused"] = jsonString(err.Error())
				continue
			case r.Attributes["infertrail.attributes_refused"] == nil:
				core := map[string]json.RawMessage{"infertrail.attributes_refused": jsonString(err.Error())}
				for _, k := range coreAttributes {
					if v, ok := r.Attributes[k]; ok {
						core[k] = v
					}
				}
				r.Attributes = core
				continue
			}
			g.onFail()
			g.log.Error("gateway: record refused by the trail", "id", r.ID.String(), "err", err)
			return
		}
		g.retries.Log(g.log, slog.LevelWarn, "gateway: writing records failed; retrying", "records", 1, "err", err)
		time.Sleep(backoff)
		backoff = min(backoff*2, time.Second)
	}
}
