package export_test

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/infertrail/infertrail"
	"github.com/infertrail/infertrail/export"
)

// receiver is a real HTTP SIEM collector that records what it accepted.
type receiver struct {
	mu      sync.Mutex
	batches [][]int64 // sequence numbers of each request body, as received
	ok      []int64   // sequence numbers of the requests answered 2xx
	kinds   []string
	auth    []string
	// answer returns the status of the next request (0: 200).
	answer func(n int) int
	n      int
}

func (rv *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var body io.Reader = r.Body
	if r.Header.Get("Content-Encoding") == "gzip" {
		z, err := gzip.NewReader(r.Body)
		if err != nil {
			http.Error(w, "bad gzip", 400)
			return
		}
		body = z
	}
	var seqs []int64
	var kinds []string
	sc := bufio.NewScanner(body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var ev struct {
			ClassUID int `json:"class_uid"`
			Metadata struct {
				Sequence int64 `json:"sequence"`
			} `json:"metadata"`
			Unmapped struct {
				Kind string `json:"kind"`
			} `json:"unmapped"`
		}
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil || ev.ClassUID == 0 {
			http.Error(w, "bad event", 400)
			return
		}
		seqs = append(seqs, ev.Metadata.Sequence)
		kinds = append(kinds, ev.Unmapped.Kind)
	}
	rv.mu.Lock()
	defer rv.mu.Unlock()
	rv.n++
	rv.batches = append(rv.batches, seqs)
	rv.auth = append(rv.auth, r.Header.Get("Authorization"))
	status := 200
	if rv.answer != nil {
		if s := rv.answer(rv.n); s != 0 {
			status = s
		}
	}
	if status/100 != 2 {
		if status == 503 {
			w.Header().Set("Retry-After", "0")
		}
		http.Error(w, "collector unavailable", status)
		return
	}
	rv.ok = append(rv.ok, seqs...)
	rv.kinds = append(rv.kinds, kinds...)
	w.WriteHeader(status)
}

func (rv *receiver) accepted() []int64 {
	rv.mu.Lock()
	defer rv.mu.Unlock()
	return slices.Clone(rv.ok)
}

// waitFor polls cond until it holds or the test times out.
func waitFor(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// checkAtLeastOnce checks that got holds every one of want, in order:
// each delivery is a contiguous run of sequence numbers, and a repeat can
// only go back to resend what the receiver already had.
func checkAtLeastOnce(tb testing.TB, got, want []int64) {
	tb.Helper()
	var firsts []int64
	seen := map[int64]bool{}
	for _, s := range got {
		if !seen[s] {
			seen[s] = true
			firsts = append(firsts, s)
		}
	}
	if !slices.Equal(firsts, want) {
		tb.Fatalf("delivered (first occurrences) %v,\nwant %v", firsts, want)
	}
}

func seqRange(from, to int64) []int64 {
	var out []int64
	for s := from; s < to; s++ {
		out = append(out, s)
	}
	return out
}

// fill appends n records of varied kinds.
func fill(tb testing.TB, l *rptLog, n int) {
	tb.Helper()
	var recs []rec
	for i := range n {
		r := inference("acme", t0.Add(time.Duration(i)*time.Second))
		switch i % 4 {
		case 1:
			r = rec{kind: infertrail.KindToolCall, tenant: "acme", recv: r.recv, actor: r.actor, attrs: map[string]any{"gen_ai.tool.name": "t"}}
		case 2:
			r.tenant = "globex"
		case 3:
			r = rec{kind: infertrail.KindDownstreamCall, tenant: "acme", recv: r.recv, actor: r.actor,
				attrs: map[string]any{"http.request.method": "GET", "http.response.status_code": 200}}
		}
		recs = append(recs, r)
	}
	l.add(tb, recs...)
}

func fastStream(cfg export.StreamConfig) export.StreamConfig {
	cfg.BatchSize = 40
	cfg.MaxWait = 20 * time.Millisecond
	cfg.Poll = 10 * time.Millisecond
	cfg.MinBackoff = 5 * time.Millisecond
	cfg.MaxBackoff = 50 * time.Millisecond
	cfg.Records = true
	return cfg
}

// runStream runs a stream until the test ends or stop is called.
func runStream(tb testing.TB, cfg export.StreamConfig) (stop func()) {
	tb.Helper()
	s, err := export.NewStream(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.Run(ctx) }()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	tb.Cleanup(stop)
	return stop
}

func cursor(tb testing.TB, l *rptLog, name string) int64 {
	tb.Helper()
	c, err := l.db.Cursor(context.Background(), name)
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

// syncBuffer is a goroutine-safe log buffer.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestHTTPStreamOutage streams to a receiver that is first not listening,
// then answers 503, then takes batches but answers 500, and then works:
// nothing is lost or reordered, and repeats are only re-sent batches.
func TestHTTPStreamOutage(t *testing.T) {
	l := newRptLog(t)
	fill(t, l, 150)

	// Reserve an address, and leave it unanswered for now.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()

	rv := &receiver{answer: func(n int) int {
		switch {
		case n <= 3:
			return 503
		case n <= 5:
			return 500 // the batch arrived, but the collector failed: it is sent again
		}
		return 0
	}}
	var logs syncBuffer
	sink, err := export.NewHTTPSink(export.HTTPConfig{URL: "http://" + addr + "/ingest?token=querysecret", Auth: "Bearer s3cret-token", Gzip: true, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	runStream(t, fastStream(export.StreamConfig{Name: "splunk", Source: l.db, Sink: sink,
		Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}))

	// Connection refused for a while.
	waitFor(t, "failed attempts", func() bool { return strings.Count(logs.String(), "retrying") >= 3 })
	ln, err = net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(rv)
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	defer srv.Close()

	// More records arrive during the outage and after.
	fill(t, l, 60)
	waitFor(t, "210 records", func() bool { return len(rv.accepted()) >= 210 })
	checkAtLeastOnce(t, rv.accepted(), seqRange(0, 210))
	waitFor(t, "the cursor", func() bool { return cursor(t, l, "siem:splunk") == 210 })

	rv.mu.Lock()
	for i, b := range rv.batches {
		if len(b) == 0 || len(b) > 40 || !slices.Equal(b, seqRange(b[0], b[0]+int64(len(b)))) {
			t.Errorf("batch %d is not a contiguous run of at most 40: %v", i, b)
		}
	}
	if len(rv.batches) < 8 {
		t.Errorf("%d requests; want the failed ones too", len(rv.batches))
	}
	if rv.batches[3][0] != rv.batches[4][0] || rv.batches[4][0] != rv.batches[5][0] {
		t.Errorf("a batch answered 500 was not sent again: %v", rv.batches[:6])
	}
	for _, a := range rv.auth {
		if a != "Bearer s3cret-token" {
			t.Errorf("Authorization %q", a)
		}
	}
	rv.mu.Unlock()
	for _, secret := range []string{"s3cret-token", "querysecret"} {
		if strings.Contains(logs.String(), secret) {
			t.Errorf("the log shows %q:\n%s", secret, logs.String())
		}
	}
	if !strings.Contains(logs.String(), "503") || !strings.Contains(logs.String(), "connection refused") {
		t.Errorf("the log does not say why delivery failed:\n%s", logs.String())
	}
}

// TestStreamRestart stops a stream, closes the store, reopens it and
// starts the stream again: it continues from its persisted cursor.
func TestStreamRestart(t *testing.T) {
	l := newRptLog(t)
	fill(t, l, 100)
	rv := &receiver{}
	srv := httptest.NewServer(rv)
	defer srv.Close()
	sink, err := export.NewHTTPSink(export.HTTPConfig{URL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	stop := runStream(t, fastStream(export.StreamConfig{Name: "restart", Source: l.db, Sink: sink}))
	waitFor(t, "the cursor at 100", func() bool { return cursor(t, l, "siem:restart") == 100 })
	stop()
	l.Close()
	l.db.Close()

	// A new process: the same database, a new log and stream.
	l2 := openRptLog(t, l.path, l)
	fill(t, l2, 50)
	runStream(t, fastStream(export.StreamConfig{Name: "restart", Source: l2.db, Sink: sink}))
	waitFor(t, "150 records", func() bool { return len(rv.accepted()) >= 150 })
	waitFor(t, "the cursor at 150", func() bool { return cursor(t, l2, "siem:restart") == 150 })
	if got := rv.accepted(); !slices.Equal(got, seqRange(0, 150)) {
		t.Errorf("delivered %v, want 0 to 149 once each", got)
	}

	// A stream with a new name starting at the end delivers only what comes next.
	sink2, _ := export.NewHTTPSink(export.HTTPConfig{URL: srv.URL})
	runStream(t, fastStream(export.StreamConfig{Name: "late", Source: l2.db, Sink: sink2, StartAtEnd: true}))
	waitFor(t, "the late cursor", func() bool { return cursor(t, l2, "siem:late") == 150 })
	fill(t, l2, 5)
	waitFor(t, "160 records", func() bool { return len(rv.accepted()) >= 160 })
	got := rv.accepted()
	if !sameSet(got[150:], 150, 155, 2) { // once from each stream
		t.Errorf("after the restart: %v", got[150:])
	}
}

// sameSet reports whether got holds each of from…to-1 exactly n times.
func sameSet(got []int64, from, to int64, n int) bool {
	c := map[int64]int{}
	for _, s := range got {
		c[s]++
	}
	for s := from; s < to; s++ {
		if c[s] != n {
			return false
		}
	}
	return len(got) == int(to-from)*n
}

// TestStreamFilter keeps only some kinds and tenants; the cursor still
// passes every record.
func TestStreamFilter(t *testing.T) {
	l := newRptLog(t)
	fill(t, l, 100)
	rv := &receiver{}
	srv := httptest.NewServer(rv)
	defer srv.Close()
	sink, _ := export.NewHTTPSink(export.HTTPConfig{URL: srv.URL, Format: export.HTTPFormatNDJSON})
	runStream(t, fastStream(export.StreamConfig{Name: "filtered", Source: l.db, Sink: sink,
		Kinds: []infertrail.Kind{infertrail.KindInference}, Tenants: []string{"acme"}}))
	waitFor(t, "the cursor", func() bool { return cursor(t, l, "siem:filtered") == 100 })
	var want []int64
	for i := int64(0); i < 100; i += 4 {
		want = append(want, i) // fill: i%4 == 0 is an inference of acme
	}
	if got := rv.accepted(); !slices.Equal(got, want) {
		t.Errorf("delivered %v, want %v", got, want)
	}
}

// TestStreamFindings streams findings in the order they were stored.
func TestStreamFindings(t *testing.T) {
	l := newRptLog(t)
	fill(t, l, 10)
	add := func(n int, detector string) {
		var fs []infertrail.Finding
		for i := range n {
			fs = append(fs, infertrail.Finding{ID: infertrail.NewUUID(), Detector: detector, Severity: infertrail.SeverityHigh,
				Tenant: "acme", Records: []int64{int64(i % 10)}, Summary: "s"})
		}
		if err := l.db.AddFindings(context.Background(), fs); err != nil {
			t.Fatal(err)
		}
	}
	add(55, "unattributed_action")
	rv := &receiver{}
	srv := httptest.NewServer(rv)
	defer srv.Close()
	sink, _ := export.NewHTTPSink(export.HTTPConfig{URL: srv.URL})
	cfg := fastStream(export.StreamConfig{Name: "alerts", Source: l.db, Sink: sink, Findings: true})
	cfg.Records = false
	runStream(t, cfg)
	waitFor(t, "55 findings", func() bool { return len(rv.accepted()) >= 55 })
	add(10, "hallucinated_tool_call")
	waitFor(t, "65 findings", func() bool { return len(rv.accepted()) >= 65 })
	if got := rv.accepted(); !slices.Equal(got, seqRange(1, 66)) {
		t.Errorf("finding numbers %v", got)
	}
	waitFor(t, "the findings cursor", func() bool { return cursor(t, l, "siem:alerts:findings") == 66 })
	if cursor(t, l, "siem:alerts") != 0 {
		t.Errorf("the record cursor moved")
	}
	rv.mu.Lock()
	for _, k := range rv.kinds {
		if k != "finding" {
			t.Errorf("kind %q", k)
		}
	}
	rv.mu.Unlock()
}

func TestNewStreamErrors(t *testing.T) {
	l := newRptLog(t)
	sink, _ := export.NewHTTPSink(export.HTTPConfig{URL: "http://127.0.0.1:1/"})
	for _, cfg := range []export.StreamConfig{
		{Name: "", Source: l.db, Sink: sink, Records: true},
		{Name: "bad name", Source: l.db, Sink: sink, Records: true},
		{Name: "x", Sink: sink, Records: true},
		{Name: "x", Source: l.db, Records: true},
		{Name: "x", Source: l.db, Sink: sink},
		{Name: "x", Source: l.db, Sink: sink, Records: true, Kinds: []infertrail.Kind{"inferense"}},
	} {
		if _, err := export.NewStream(cfg); err == nil {
			t.Errorf("%+v: no error", cfg)
		}
	}
	for _, c := range []export.HTTPConfig{
		{URL: "ftp://x"}, {URL: "http://"}, {URL: "http://x", Format: "xml"}, {URL: "http://x", AuthHeader: "Bad Header"},
	} {
		if _, err := export.NewHTTPSink(c); err == nil {
			t.Errorf("%+v: no error", c)
		}
	}
}

// TestHTTPSinkFormats checks the JSON array and Splunk HEC bodies.
func TestHTTPSinkFormats(t *testing.T) {
	events := []export.Event{{Seq: 1, Tenant: "acme", Time: t0, JSON: []byte(`{"a":1}`)}, {Seq: 2, Tenant: "acme", Time: t0, JSON: []byte(`{"a":2}`)}}
	for _, tc := range []struct{ format, want, ctype string }{
		{export.HTTPFormatJSON, `[{"a":1},{"a":2}]`, "application/json"},
		{export.HTTPFormatNDJSON, "{\"a\":1}\n{\"a\":2}\n", "application/x-ndjson"},
		{export.HTTPFormatHEC, `{"time":` + "1793577600.000" + `,"source":"infertrail","sourcetype":"ocsf","fields":{"tenant":"acme"},"event":{"a":1}}` + "\n" +
			`{"time":1793577600.000,"source":"infertrail","sourcetype":"ocsf","fields":{"tenant":"acme"},"event":{"a":2}}` + "\n", "application/json"},
	} {
		var got, ctype, header string
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			got, ctype, header = string(b), r.Header.Get("Content-Type"), r.Header.Get("X-Api-Key")
		}))
		sink, err := export.NewHTTPSink(export.HTTPConfig{URL: srv.URL, Format: tc.format, AuthHeader: "X-Api-Key", Auth: "k"})
		if err != nil {
			t.Fatal(err)
		}
		if err := sink.Send(context.Background(), events); err != nil {
			t.Fatal(err)
		}
		srv.Close()
		if got != tc.want || ctype != tc.ctype || header != "k" {
			t.Errorf("%s: body %q type %q key %q", tc.format, got, ctype, header)
		}
	}
	// A receiver that hangs is cut off by the timeout.
	hang := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-hang }))
	defer srv.Close()
	defer close(hang)
	sink, _ := export.NewHTTPSink(export.HTTPConfig{URL: srv.URL, Timeout: 50 * time.Millisecond})
	start := time.Now()
	if err := sink.Send(context.Background(), events); err == nil || time.Since(start) > 5*time.Second {
		t.Errorf("hanging receiver: %v after %s", err, time.Since(start))
	}
}

func TestSecret(t *testing.T) {
	var b bytes.Buffer
	s := export.Secret("hunter2")
	slog.New(slog.NewTextHandler(&b, nil)).Info("x", "auth", s)
	if strings.Contains(b.String(), "hunter2") || strings.Contains(s.String(), "hunter2") {
		t.Errorf("secret shown: %s", b.String())
	}
}

// ExampleNewStream streams a store's records to an HTTP collector until
// the context is done.
func ExampleNewStream() {
	var store export.StreamSource // such as a *sqlite.DB
	sink, err := export.NewHTTPSink(export.HTTPConfig{
		URL:    "https://splunk.example:8088/services/collector/event",
		Format: export.HTTPFormatHEC,
		Auth:   export.Secret(os.Getenv("SPLUNK_HEC_AUTH")), // "Splunk <token>"
	})
	if err != nil {
		log.Fatal(err)
	}
	s, err := export.NewStream(export.StreamConfig{Name: "splunk", Source: store, Sink: sink, Records: true})
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt)
	defer cancel()
	s.Run(ctx) // delivers from the cursor siem:splunk on, at least once, in log order
}
