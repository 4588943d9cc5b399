// Package load generates realistic AI-agent audit traffic and drives ingest load against an InferTrail server.
package load

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Config configures Run. Zero values are the documented defaults.
type Config struct {
	// Server is the base URL of the server, such as http://127.0.0.1:8080;
	// records go to Server + "/v1/records".
	Server string
	// Token, when set, is sent as "Authorization: Bearer Token".
	Token string
	// Clients is the number of concurrent senders (default 4). Client i
	// sends batches i, i+Clients, i+2×Clients…, each once the previous one
	// was answered; so with Records set and a fixed Gen.Start a run sends
	// the same records every time. In an open loop a batch that is due
	// while its client still waits for an answer goes out late, and its
	// lateness counts in its latency.
	Clients int
	// BatchSize is the number of records in a request (default 100).
	BatchSize int
	// Records stops the run after this many records were sent; 0 means no
	// limit.
	Records int64
	// Duration stops sending new batches after this long; 0 means no
	// limit. Batches in flight then get up to Timeout to finish.
	Duration time.Duration
	// Rate is the offered load in records per second. 0 runs a closed loop:
	// each client sends its next batch as soon as the previous one is
	// acknowledged, and latency is measured from the send. A positive Rate
	// runs an open loop on a fixed schedule, batch k being due at
	// k×BatchSize/Rate seconds after the start, and latency is measured from
	// that due time, so that a slow server cannot hide its queueing delay
	// (coordinated omission).
	Rate float64
	// NDJSON sends application/x-ndjson bodies, one record per line,
	// instead of a JSON array.
	NDJSON bool
	// Gen configures the records. Client i uses Gen with Stream
	// Gen.Stream+i; a zero Gen.Start becomes the start of the run, so that
	// reruns with one seed send new ids.
	Gen GenConfig
	// Timeout bounds each request (default 30s).
	Timeout time.Duration
	// HTTPClient sends the requests. Nil means a client of its own with one
	// transport that keeps a connection per client alive.
	HTTPClient *http.Client
	// MaxRetries is how often a batch answered with 503 (or 429) is sent
	// again, after the Retry-After delay, before it counts as an error
	// (default 10). A retry sends the same body, so the same record ids.
	MaxRetries int
	// Pregenerate is how many bytes of request bodies are generated before
	// the clock starts (default 64 MiB; negative: none), so that the load
	// tool spends less CPU while it measures; later bodies are generated
	// between requests.
	Pregenerate int64
}

// Result is the outcome of Run. Records are counted by batch outcome:
// every sent record is acknowledged, failed or abandoned.
type Result struct {
	Mix       string  `json:"mix"`
	Clients   int     `json:"clients"`
	BatchSize int     `json:"batch_size"`
	Rate      float64 `json:"rate,omitempty"` // offered records/s; 0 for a closed loop

	Sent         int64 `json:"sent"`         // records in batches sent at least once
	Acknowledged int64 `json:"acknowledged"` // records the server acknowledged as durable
	Duplicates   int64 `json:"duplicates"`   // acknowledged records the server had already
	Failed       int64 `json:"failed"`       // records in batches that failed
	Abandoned    int64 `json:"abandoned"`    // records in batches in flight when the run was stopped
	// Errors counts failed batches by HTTP status ("400", "413", "503"
	// after MaxRetries), or "timeout", "transport" or "bad_response" (a 200
	// whose body does not acknowledge each record).
	Errors     map[string]int64 `json:"errors,omitempty"`
	FirstError string           `json:"first_error,omitempty"`
	Retries    int64            `json:"retries"` // requests sent again after 503 or 429

	Elapsed          time.Duration `json:"elapsed_ns"`
	RecordsPerSecond float64       `json:"records_per_second"` // Acknowledged / Elapsed
	// Latency is the acknowledgement latency of acknowledged batches,
	// retries included.
	Latency Latency `json:"latency"`
}

// Print writes a short human summary of r to w.
func (r Result) Print(w io.Writer) {
	var b strings.Builder
	loop := "closed loop"
	if r.Rate > 0 {
		loop = fmt.Sprintf("open loop at %.0f records/s", r.Rate)
	}
	fmt.Fprintf(&b, "load: mix %s, %d clients, batches of %d, %s\n", r.Mix, r.Clients, r.BatchSize, loop)
	fmt.Fprintf(&b, "records: %d sent, %d acknowledged (%d duplicates), %d failed, %d abandoned\n",
		r.Sent, r.Acknowledged, r.Duplicates, r.Failed, r.Abandoned)
	fmt.Fprintf(&b, "throughput: %.0f records/s in %v, %d retries\n", r.RecordsPerSecond, r.Elapsed.Round(time.Millisecond), r.Retries)
	l := r.Latency
	fmt.Fprintf(&b, "latency per batch: p50 %v, p90 %v, p99 %v, max %v (%d batches)\n",
		roundLatency(l.P50), roundLatency(l.P90), roundLatency(l.P99), roundLatency(l.Max), l.Samples)
	if len(r.Errors) > 0 {
		b.WriteString("errors (batches):")
		for _, k := range slices.Sorted(maps.Keys(r.Errors)) {
			fmt.Fprintf(&b, " %s %d", k, r.Errors[k])
		}
		fmt.Fprintf(&b, "\nfirst error: %s\n", r.FirstError)
	}
	io.WriteString(w, b.String())
}

func roundLatency(d time.Duration) time.Duration {
	if d >= 10*time.Millisecond {
		return d.Round(100 * time.Microsecond)
	}
	return d.Round(time.Microsecond)
}

// Run sends generated records to cfg.Server until ctx is done, cfg.Records
// were sent or cfg.Duration has passed, and reports what happened. It
// returns an error only for an invalid cfg; failed requests are counted in
// the Result. Progress lines go to progress, at most one a second, when it
// is not nil.
func Run(ctx context.Context, cfg Config, progress io.Writer) (Result, error) {
	r, err := newRunner(cfg)
	if err != nil {
		return Result{}, err
	}
	if cfg.HTTPClient == nil {
		defer r.client.CloseIdleConnections()
	}
	return r.run(ctx, progress), nil
}

type runner struct {
	cfg    Config
	url    string
	client *http.Client
	total  int64 // batches to send; -1 for no limit

	start    time.Time
	deadline time.Time // zero without Duration

	sent       atomic.Int64
	acked      atomic.Int64
	dups       atomic.Int64
	failed     atomic.Int64
	abandoned  atomic.Int64
	retries    atomic.Int64
	firstError atomic.Pointer[string]

	mu     sync.Mutex
	errors map[string]int64
}

func newRunner(cfg Config) (*runner, error) {
	u, err := url.Parse(cfg.Server)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("parse server %q: want an http or https URL", cfg.Server)
	}
	switch {
	case cfg.Clients < 0, cfg.BatchSize < 0, cfg.Records < 0, cfg.Duration < 0, cfg.Rate < 0, cfg.Timeout < 0, cfg.MaxRetries < 0:
		return nil, errors.New("check config: Clients, BatchSize, Records, Duration, Rate, Timeout and MaxRetries must not be negative")
	case strings.ContainsAny(cfg.Token, "\r\n"):
		return nil, errors.New("check config: Token contains a line break")
	}
	if cfg.Clients == 0 {
		cfg.Clients = 4
	}
	if cfg.BatchSize == 0 {
		cfg.BatchSize = 100
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 30 * time.Second
	}
	if cfg.MaxRetries == 0 {
		cfg.MaxRetries = 10
	}
	if cfg.Pregenerate == 0 {
		cfg.Pregenerate = 64 << 20
	}
	r := &runner{
		cfg:    cfg,
		url:    strings.TrimSuffix(cfg.Server, "/") + "/v1/records",
		client: cfg.HTTPClient,
		total:  -1,
		errors: make(map[string]int64),
	}
	if cfg.Records > 0 {
		r.total = (cfg.Records + int64(cfg.BatchSize) - 1) / int64(cfg.BatchSize)
	}
	if r.client == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxIdleConns = 2 * cfg.Clients
		t.MaxIdleConnsPerHost = 2 * cfg.Clients
		t.DisableCompression = true
		r.client = &http.Client{Transport: t}
	}
	return r, nil
}

func (r *runner) run(ctx context.Context, progress io.Writer) Result {
	cfg := r.cfg
	if cfg.Gen.Start.IsZero() {
		cfg.Gen.Start = time.Now().UTC()
	}
	workers := make([]*worker, cfg.Clients)
	for i := range workers {
		gc := cfg.Gen
		gc.Stream += uint64(i)
		w := &worker{r: r, gen: NewGenerator(gc), first: int64(i)}
		if cfg.Pregenerate > 0 {
			w.pregenerate(ctx, cfg.Pregenerate/int64(cfg.Clients))
		}
		workers[i] = w
	}

	r.start = time.Now()
	runCtx := ctx
	if cfg.Duration > 0 {
		r.deadline = r.start.Add(cfg.Duration)
		var cancel context.CancelFunc
		runCtx, cancel = context.WithDeadline(ctx, r.deadline.Add(cfg.Timeout))
		defer cancel()
	}

	var wg sync.WaitGroup
	for _, w := range workers {
		wg.Go(func() { w.loop(runCtx) })
	}
	if progress != nil {
		done := make(chan struct{})
		var pwg sync.WaitGroup
		pwg.Go(func() { r.report(progress, done) })
		wg.Wait()
		close(done)
		pwg.Wait()
	} else {
		wg.Wait()
	}
	elapsed := time.Since(r.start)

	var samples []time.Duration
	for _, w := range workers {
		samples = append(samples, w.latencies...)
	}
	res := Result{
		Mix:          cfg.Gen.Mix.String(),
		Clients:      cfg.Clients,
		BatchSize:    cfg.BatchSize,
		Rate:         cfg.Rate,
		Sent:         r.sent.Load(),
		Acknowledged: r.acked.Load(),
		Duplicates:   r.dups.Load(),
		Failed:       r.failed.Load(),
		Abandoned:    r.abandoned.Load(),
		Retries:      r.retries.Load(),
		Elapsed:      elapsed,
		Latency:      NewLatency(samples),
	}
	if len(r.errors) > 0 {
		res.Errors = r.errors
	}
	if p := r.firstError.Load(); p != nil {
		res.FirstError = *p
	}
	if elapsed > 0 {
		res.RecordsPerSecond = float64(res.Acknowledged) / elapsed.Seconds()
	}
	return res
}

// report writes a progress line every second until done is closed.
func (r *runner) report(w io.Writer, done <-chan struct{}) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	var last int64
	for {
		select {
		case <-done:
			return
		case now := <-t.C:
			acked := r.acked.Load()
			r.mu.Lock()
			var errs int64
			for _, n := range r.errors {
				errs += n
			}
			r.mu.Unlock()
			fmt.Fprintf(w, "%5.0fs  sent %d  acknowledged %d  %d records/s  failed batches %d  retries %d\n",
				now.Sub(r.start).Seconds(), r.sent.Load(), acked, acked-last, errs, r.retries.Load())
			last = acked
		}
	}
}

func (r *runner) fail(reason, detail string, n int) {
	r.failed.Add(int64(n))
	r.mu.Lock()
	r.errors[reason]++
	r.mu.Unlock()
	msg := reason + ": " + detail
	r.firstError.CompareAndSwap(nil, &msg)
}

// worker is one client: it sends batches first, first+Clients,
// first+2×Clients… each after the previous one was answered. This fixed
// share makes the records a run sends depend only on the Config.
type worker struct {
	r         *runner
	first     int64
	gen       *Generator
	pregen    [][]byte // full batches generated before the start
	body      []byte   // reused for batches generated during the run
	resp      bytes.Buffer
	ack       ackBody
	latencies []time.Duration
}

type ackBody struct {
	Records []struct {
		Status string `json:"status"`
	} `json:"records"`
}

type errorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
		Record  *int   `json:"record"`
		Field   string `json:"field"`
	} `json:"error"`
}

// pregenerate fills w.pregen with full batches of up to budget bytes in all,
// and no more batches than the worker is likely to send.
func (w *worker) pregenerate(ctx context.Context, budget int64) {
	r := w.r
	batches := r.total
	if r.cfg.Rate > 0 && r.cfg.Duration > 0 {
		due := int64(r.cfg.Rate*r.cfg.Duration.Seconds())/int64(r.cfg.BatchSize) + 1
		if batches < 0 || due < batches {
			batches = due
		}
	}
	limit := int64(-1)
	if batches >= 0 {
		limit = batches/int64(r.cfg.Clients) + 1
	}
	for size := int64(0); size < budget && int64(len(w.pregen)) != limit && ctx.Err() == nil; {
		b := w.build(nil, r.cfg.BatchSize)
		w.pregen = append(w.pregen, b)
		size += int64(len(b))
	}
}

// build appends a body of n records to dst.
func (w *worker) build(dst []byte, n int) []byte {
	if w.r.cfg.NDJSON {
		for range n {
			dst = w.gen.AppendNext(dst)
			dst = append(dst, '\n')
		}
		return dst
	}
	dst = append(dst, '[')
	for i := range n {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = w.gen.AppendNext(dst)
	}
	return append(dst, ']')
}

func (w *worker) loop(ctx context.Context) {
	r := w.r
	cfg := &r.cfg
	for k := w.first; ctx.Err() == nil; k += int64(cfg.Clients) {
		if cfg.Rate == 0 && !r.deadline.IsZero() && !time.Now().Before(r.deadline) {
			return
		}
		if r.total >= 0 && k >= r.total {
			return
		}
		n := cfg.BatchSize
		if cfg.Records > 0 && k == r.total-1 {
			n = int(cfg.Records - k*int64(cfg.BatchSize))
		}
		var body []byte
		if len(w.pregen) > 0 && n == cfg.BatchSize {
			body = w.pregen[0]
			w.pregen[0] = nil
			w.pregen = w.pregen[1:]
		} else {
			w.body = w.build(w.body[:0], n)
			body = w.body
		}

		due := time.Now()
		if cfg.Rate > 0 {
			due = r.start.Add(time.Duration(float64(k) * float64(cfg.BatchSize) / cfg.Rate * float64(time.Second)))
			if !r.deadline.IsZero() && !due.Before(r.deadline) {
				return
			}
			if !sleep(ctx, time.Until(due)) {
				return
			}
		}
		r.sent.Add(int64(n))
		if w.send(ctx, body, n) {
			w.latencies = append(w.latencies, time.Since(due))
		}
	}
}

// send posts one batch, again after each 503 or 429 up to MaxRetries times,
// and reports whether the server acknowledged it.
func (w *worker) send(ctx context.Context, body []byte, n int) bool {
	r := w.r
	for attempt := 0; ; attempt++ {
		code, header, err := w.post(ctx, body)
		switch {
		case ctx.Err() != nil:
			r.abandoned.Add(int64(n))
			return false
		case errors.Is(err, context.DeadlineExceeded):
			r.fail("timeout", err.Error(), n)
			return false
		case err != nil:
			r.fail("transport", err.Error(), n)
			return false
		case code == http.StatusOK:
			w.ack.Records = w.ack.Records[:0]
			if err := json.Unmarshal(w.resp.Bytes(), &w.ack); err != nil || len(w.ack.Records) != n {
				r.fail("bad_response", fmt.Sprintf("acknowledgement of %d records: %.200s", n, w.resp.Bytes()), n)
				return false
			}
			var dups int64
			for _, a := range w.ack.Records {
				if a.Status == "duplicate" {
					dups++
				}
			}
			r.acked.Add(int64(n))
			r.dups.Add(dups)
			return true
		case (code == http.StatusServiceUnavailable || code == http.StatusTooManyRequests) && attempt < r.cfg.MaxRetries:
			r.retries.Add(1)
			if !sleep(ctx, retryDelay(header.Get("Retry-After"), attempt, time.Now())) {
				r.abandoned.Add(int64(n))
				return false
			}
		default:
			r.fail(strconv.Itoa(code), describeError(code, w.resp.Bytes()), n)
			return false
		}
	}
}

// post sends body once and reads the response into w.resp.
func (w *worker) post(ctx context.Context, body []byte) (int, http.Header, error) {
	r := w.r
	ctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.url, bytes.NewReader(body))
	if err != nil {
		return 0, nil, fmt.Errorf("make request: %w", err)
	}
	if r.cfg.NDJSON {
		req.Header.Set("Content-Type", "application/x-ndjson")
	} else {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	if r.cfg.Token != "" {
		req.Header.Set("Authorization", "Bearer "+r.cfg.Token)
	}
	resp, err := r.client.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("post records: %w", err)
	}
	defer resp.Body.Close()
	w.resp.Reset()
	if _, err := w.resp.ReadFrom(io.LimitReader(resp.Body, 64<<20)); err != nil {
		return 0, nil, fmt.Errorf("read response: %w", err)
	}
	return resp.StatusCode, resp.Header, nil
}

// describeError renders an error response of the API, or the start of any
// other body.
func describeError(code int, body []byte) string {
	var e errorBody
	if json.Unmarshal(body, &e) != nil || e.Error.Message == "" && e.Error.Code == "" {
		return fmt.Sprintf("%d %s: %.200q", code, http.StatusText(code), body)
	}
	s := fmt.Sprintf("%d %s: %s", code, e.Error.Code, e.Error.Message)
	if e.Error.Record != nil {
		s += fmt.Sprintf(" (record %d", *e.Error.Record)
		if e.Error.Field != "" {
			s += ", field " + e.Error.Field
		}
		s += ")"
	} else if e.Error.Field != "" {
		s += " (field " + e.Error.Field + ")"
	}
	return s
}

// retryDelay is how long to wait before retrying after a 503: what the
// Retry-After header says (seconds or an HTTP date), or else an exponential
// backoff from 100 ms to 5 s.
func retryDelay(retryAfter string, attempt int, now time.Time) time.Duration {
	if retryAfter != "" {
		if s, err := strconv.Atoi(strings.TrimSpace(retryAfter)); err == nil && s >= 0 {
			return time.Duration(s) * time.Second
		}
		if t, err := http.ParseTime(retryAfter); err == nil {
			return max(t.Sub(now), 0)
		}
	}
	return min(100*time.Millisecond<<min(attempt, 6), 5*time.Second)
}

// sleep waits for d and reports whether ctx was still alive after it.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
