package load

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeServer implements POST /v1/records as the API describes it.
type fakeServer struct {
	token string
	// override, when it returns a non-zero status, answers request number
	// n (counting from 0) instead of the normal handling.
	override func(n int) (status int, retryAfter, body string)

	mu     sync.Mutex
	seq    int64
	seen   map[string]bool
	bodies [][]byte
}

func (f *fakeServer) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(req.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	n := len(f.bodies)
	f.bodies = append(f.bodies, body)
	if req.Method != http.MethodPost || req.URL.Path != "/v1/records" {
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	if f.token != "" && req.Header.Get("Authorization") != "Bearer "+f.token {
		w.WriteHeader(http.StatusUnauthorized)
		io.WriteString(w, `{"error":{"code":"unauthenticated","message":"bad token"}}`)
		return
	}
	if f.override != nil {
		if status, retryAfter, msg := f.override(n); status != 0 {
			if retryAfter != "" {
				w.Header().Set("Retry-After", retryAfter)
			}
			w.WriteHeader(status)
			io.WriteString(w, msg)
			return
		}
	}
	var records []json.RawMessage
	switch req.Header.Get("Content-Type") {
	case "application/json":
		err = json.Unmarshal(body, &records)
	case "application/x-ndjson":
		for line := range bytes.Lines(body) {
			records = append(records, bytes.TrimSpace(line))
		}
	default:
		err = fmt.Errorf("content type %q", req.Header.Get("Content-Type"))
	}
	if err != nil {
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprintf(w, `{"error":{"code":"invalid","message":%q}}`, err.Error())
		return
	}
	type ack struct {
		Seq    int64  `json:"seq"`
		ID     string `json:"id"`
		Status string `json:"status"`
	}
	acks := make([]ack, len(records))
	for i, raw := range records {
		var r struct{ Kind, ID string }
		if err := json.Unmarshal(raw, &r); err != nil || r.Kind == "" || r.ID == "" {
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprintf(w, `{"error":{"code":"invalid","message":"kind and id are required","record":%d,"field":"kind"}}`, i)
			return
		}
		acks[i] = ack{ID: r.ID, Status: "appended"}
		if f.seen[r.ID] {
			acks[i].Status = "duplicate"
			continue
		}
		f.seen[r.ID] = true
		acks[i].Seq = f.seq
		f.seq++
	}
	json.NewEncoder(w).Encode(map[string]any{"records": acks})
}

func startFake(tb testing.TB, f *fakeServer) string {
	tb.Helper()
	f.seen = make(map[string]bool)
	s := httptest.NewServer(f)
	tb.Cleanup(s.Close)
	return s.URL
}

func TestRun(t *testing.T) {
	const badRequest = `{"error":{"code":"invalid","message":"unknown kind","record":3,"field":"kind"}}`
	tests := []struct {
		name     string
		token    string
		override func(n int) (int, string, string)
		cfg      Config
		check    func(t *testing.T, f *fakeServer, r Result)
	}{
		{
			name: "closed loop",
			cfg:  Config{Clients: 3, BatchSize: 100, Records: 1050},
			check: func(t *testing.T, f *fakeServer, r Result) {
				want(t, r, Result{Sent: 1050, Acknowledged: 1050})
				if r.Latency.Samples != 11 || len(f.seen) != 1050 {
					t.Errorf("%d latency samples, %d ids on the server; want 11 and 1050", r.Latency.Samples, len(f.seen))
				}
			},
		},
		{
			name:  "agent mix as NDJSON with a token",
			token: "s3cret",
			cfg:   Config{Clients: 2, BatchSize: 64, Records: 300, NDJSON: true, Token: "s3cret", Gen: GenConfig{Mix: MixAgent}},
			check: func(t *testing.T, f *fakeServer, r Result) {
				want(t, r, Result{Sent: 300, Acknowledged: 300})
			},
		},
		{
			name: "503 is retried with the same body after Retry-After",
			override: func(n int) (int, string, string) {
				if n == 0 {
					return http.StatusServiceUnavailable, "1", `{"error":{"code":"busy","message":"retry later"}}`
				}
				return 0, "", ""
			},
			cfg: Config{Clients: 1, BatchSize: 10, Records: 20},
			check: func(t *testing.T, f *fakeServer, r Result) {
				want(t, r, Result{Sent: 20, Acknowledged: 20, Retries: 1})
				if len(f.bodies) != 3 || !bytes.Equal(f.bodies[0], f.bodies[1]) {
					t.Errorf("the retry did not send the same body again")
				}
				if r.Elapsed < time.Second || r.Latency.Max < time.Second {
					t.Errorf("elapsed %v, max latency %v: Retry-After of 1s not honoured", r.Elapsed, r.Latency.Max)
				}
			},
		},
		{
			name: "400 is an error and not retried",
			override: func(n int) (int, string, string) {
				if n == 1 {
					return http.StatusBadRequest, "", badRequest
				}
				return 0, "", ""
			},
			cfg: Config{Clients: 1, BatchSize: 10, Records: 30},
			check: func(t *testing.T, f *fakeServer, r Result) {
				want(t, r, Result{Sent: 30, Acknowledged: 20, Failed: 10, Errors: map[string]int64{"400": 1}})
				if len(f.bodies) != 3 {
					t.Errorf("%d requests, want 3", len(f.bodies))
				}
				if w := "400 invalid: unknown kind (record 3, field kind)"; !strings.Contains(r.FirstError, w) {
					t.Errorf("first error %q does not contain %q", r.FirstError, w)
				}
			},
		},
		{
			name: "503 until retries run out",
			override: func(int) (int, string, string) {
				return http.StatusServiceUnavailable, "0", `{"error":{"code":"busy","message":"retry later"}}`
			},
			cfg: Config{Clients: 1, BatchSize: 5, Records: 5, MaxRetries: 2},
			check: func(t *testing.T, f *fakeServer, r Result) {
				want(t, r, Result{Sent: 5, Failed: 5, Retries: 2, Errors: map[string]int64{"503": 1}})
			},
		},
		{
			name: "open loop keeps the schedule",
			cfg:  Config{Clients: 2, BatchSize: 50, Records: 400, Rate: 2000},
			check: func(t *testing.T, f *fakeServer, r Result) {
				want(t, r, Result{Sent: 400, Acknowledged: 400})
				// Batch 7 is due 7×50/2000 s = 175 ms after the start.
				if r.Elapsed < 175*time.Millisecond {
					t.Errorf("elapsed %v, want at least 175ms", r.Elapsed)
				}
			},
		},
		{
			name: "duration",
			cfg:  Config{Clients: 2, BatchSize: 20, Duration: 150 * time.Millisecond, Pregenerate: -1},
			check: func(t *testing.T, f *fakeServer, r Result) {
				if r.Acknowledged == 0 || r.Acknowledged != r.Sent || r.Elapsed > 2*time.Second {
					t.Errorf("acknowledged %d of %d in %v", r.Acknowledged, r.Sent, r.Elapsed)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := &fakeServer{token: tt.token, override: tt.override}
			cfg := tt.cfg
			cfg.Server = startFake(t, f)
			r, err := Run(t.Context(), cfg, nil)
			if err != nil {
				t.Fatal(err)
			}
			f.mu.Lock()
			defer f.mu.Unlock()
			tt.check(t, f, r)
		})
	}
}

// want compares the record counters of got with w.
func want(t *testing.T, got, w Result) {
	t.Helper()
	if got.Sent != w.Sent || got.Acknowledged != w.Acknowledged || got.Duplicates != w.Duplicates ||
		got.Failed != w.Failed || got.Abandoned != w.Abandoned || got.Retries != w.Retries || fmt.Sprint(got.Errors) != fmt.Sprint(w.Errors) {
		t.Errorf("got sent %d, acknowledged %d, duplicates %d, failed %d, abandoned %d, retries %d, errors %v (%s)\n"+
			"want sent %d, acknowledged %d, duplicates %d, failed %d, abandoned %d, retries %d, errors %v",
			got.Sent, got.Acknowledged, got.Duplicates, got.Failed, got.Abandoned, got.Retries, got.Errors, got.FirstError,
			w.Sent, w.Acknowledged, w.Duplicates, w.Failed, w.Abandoned, w.Retries, w.Errors)
	}
	if got.Acknowledged > 0 && got.RecordsPerSecond <= 0 {
		t.Errorf("records/s = %v", got.RecordsPerSecond)
	}
}

func TestRunDuplicates(t *testing.T) {
	f := &fakeServer{}
	cfg := Config{Server: startFake(t, f), Clients: 2, BatchSize: 25, Records: 100,
		Gen: GenConfig{Start: time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)}}
	for i, dups := range []int64{0, 100} {
		r, err := Run(t.Context(), cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		if r.Acknowledged != 100 || r.Duplicates != dups {
			t.Errorf("run %d: %d acknowledged, %d duplicates; want 100 and %d", i, r.Acknowledged, r.Duplicates, dups)
		}
	}
}

func TestRunStops(t *testing.T) {
	slow := http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		// Once the body is read, the server notices the client going away.
		io.Copy(io.Discard, req.Body)
		select {
		case <-req.Context().Done():
		case <-time.After(5 * time.Second):
		}
	})
	s := httptest.NewServer(slow)
	defer s.Close()

	tests := []struct {
		name        string
		cfg         Config
		cancelAfter time.Duration
		wantErrors  map[string]int64
	}{
		{"cancel", Config{Clients: 2, BatchSize: 5}, 200 * time.Millisecond, nil},
		{"timeout", Config{Clients: 1, BatchSize: 5, Records: 5, Timeout: 100 * time.Millisecond}, 0, map[string]int64{"timeout": 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := t.Context()
			if tt.cancelAfter > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tt.cancelAfter)
				defer cancel()
			}
			cfg := tt.cfg
			cfg.Server = s.URL
			cfg.Pregenerate = -1
			began := time.Now()
			r, err := Run(ctx, cfg, nil)
			if err != nil {
				t.Fatal(err)
			}
			if d := time.Since(began); d > 2*time.Second {
				t.Errorf("Run took %v", d)
			}
			if fmt.Sprint(r.Errors) != fmt.Sprint(tt.wantErrors) || r.Acknowledged != 0 || r.Sent != r.Failed+r.Abandoned {
				t.Errorf("errors %v, sent %d, acknowledged %d, failed %d, abandoned %d", r.Errors, r.Sent, r.Acknowledged, r.Failed, r.Abandoned)
			}
		})
	}
}

// TestRunProgress: a run prints a progress line a second, no more. (Its
// 2.5 s leave room for a late tick on a loaded machine: a run of 1.1 s
// printed none once, under go test -race.)
func TestRunProgress(t *testing.T) {
	f := &fakeServer{}
	var progress bytes.Buffer
	r, err := Run(t.Context(), Config{Server: startFake(t, f), Clients: 1, BatchSize: 10, Duration: 2500 * time.Millisecond, Rate: 200}, &progress)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(progress.String()), "\n")
	if len(lines) < 1 || len(lines) > 2 || !strings.Contains(lines[0], "acknowledged") {
		t.Errorf("progress after %v: %q, want one or two lines", r.Elapsed, progress.String())
	}
}

func TestConfigInvalid(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
	}{
		{"no server", Config{}},
		{"not http", Config{Server: "ftp://example.com"}},
		{"negative clients", Config{Server: "http://127.0.0.1:1", Clients: -1}},
		{"negative rate", Config{Server: "http://127.0.0.1:1", Rate: -5}},
		{"token with newline", Config{Server: "http://127.0.0.1:1", Token: "a\nb"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Run(t.Context(), tt.cfg, nil); err == nil {
				t.Error("no error")
			}
		})
	}
}

func TestNewLatency(t *testing.T) {
	ms := func(vs ...int) []time.Duration {
		var d []time.Duration
		for _, v := range vs {
			d = append(d, time.Duration(v)*time.Millisecond)
		}
		return d
	}
	seq := func(n int) []time.Duration {
		var d []time.Duration
		for i := n; i >= 1; i-- { // descending, to prove it sorts
			d = append(d, time.Duration(i)*time.Millisecond)
		}
		return d
	}
	tests := []struct {
		name    string
		samples []time.Duration
		want    Latency
	}{
		{"none", nil, Latency{}},
		{"one", ms(7), Latency{1, 7 * time.Millisecond, 7 * time.Millisecond, 7 * time.Millisecond, 7 * time.Millisecond}},
		{"two", ms(9, 1), Latency{2, 1 * time.Millisecond, 9 * time.Millisecond, 9 * time.Millisecond, 9 * time.Millisecond}},
		{"ten", seq(10), Latency{10, 5 * time.Millisecond, 9 * time.Millisecond, 10 * time.Millisecond, 10 * time.Millisecond}},
		{"hundred", seq(100), Latency{100, 50 * time.Millisecond, 90 * time.Millisecond, 99 * time.Millisecond, 100 * time.Millisecond}},
		{"thousand", seq(1000), Latency{1000, 500 * time.Millisecond, 900 * time.Millisecond, 990 * time.Millisecond, 1000 * time.Millisecond}},
		{"outlier", ms(1, 1, 1, 1, 1, 1, 1, 1, 1, 1000), Latency{10, time.Millisecond, time.Millisecond, time.Second, time.Second}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := NewLatency(tt.samples); got != tt.want {
				t.Errorf("NewLatency = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestRetryDelay(t *testing.T) {
	now := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	tests := []struct {
		header  string
		attempt int
		want    time.Duration
	}{
		{"2", 0, 2 * time.Second},
		{"0", 3, 0},
		{now.Add(3 * time.Second).Format(http.TimeFormat), 0, 3 * time.Second},
		{now.Add(-time.Hour).Format(http.TimeFormat), 0, 0},
		{"", 0, 100 * time.Millisecond},
		{"soon", 2, 400 * time.Millisecond},
		{"", 20, 5 * time.Second},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%q/%d", tt.header, tt.attempt), func(t *testing.T) {
			if got := retryDelay(tt.header, tt.attempt, now); got != tt.want {
				t.Errorf("retryDelay = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestResultOutput(t *testing.T) {
	r := Result{Mix: "fixed", Clients: 4, BatchSize: 100, Sent: 1000, Acknowledged: 900, Failed: 100,
		Errors: map[string]int64{"413": 1}, FirstError: "413 too_large: body too large",
		Elapsed: 2 * time.Second, RecordsPerSecond: 450,
		Latency: Latency{Samples: 9, P50: 1500 * time.Microsecond, P90: 2 * time.Millisecond, P99: 3 * time.Millisecond, Max: 3 * time.Millisecond}}
	var b strings.Builder
	r.Print(&b)
	for _, s := range []string{"1000 sent, 900 acknowledged", "450 records/s", "p50 1.5ms", "p99 3ms", "413 1", "body too large"} {
		if !strings.Contains(b.String(), s) {
			t.Errorf("summary does not contain %q:\n%s", s, b.String())
		}
	}
	j, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var back Result
	if err := json.Unmarshal(j, &back); err != nil || fmt.Sprint(back) != fmt.Sprint(r) {
		t.Errorf("JSON round trip: %v\n%+v\n%+v", err, back, r)
	}
	if !bytes.Contains(j, []byte(`"records_per_second":450`)) || !bytes.Contains(j, []byte(`"p50_ns":1500000`)) {
		t.Errorf("JSON: %s", j)
	}
}
