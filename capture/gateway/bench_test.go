package gateway_test

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/infertrail/infertrail"
	"github.com/infertrail/infertrail/capture/gateway"
	"github.com/infertrail/infertrail/capture/gateway/gatewaytest"
	"github.com/infertrail/infertrail/capture/openai"
	"github.com/infertrail/infertrail/capture/openai/openaitest"
	"github.com/infertrail/infertrail/investigate"
	"github.com/infertrail/infertrail/policy"
)

// bodyScript and streamScript are the benchmarks' upstream, as
// infertrail bench gateway serves it.
func bodyScript() *openaitest.Upstream   { return openaitest.BenchmarkScript(false) }
func streamScript() *openaitest.Upstream { return openaitest.BenchmarkScript(true) }

type benchTarget struct {
	name string
	url  string
}

// benchTargets starts the scripted OpenAI upstream, a bare
// ReverseProxy hop in front of it (the calibration: a proxy that does
// nothing else), and the gateway with the OpenAI provider, in
// request-ahead mode unless INFERTRAIL_BENCH_DURABILITY says otherwise,
// over a SQLite trail.
func benchTargets(b *testing.B, script *openaitest.Upstream) []benchTarget {
	up := httptest.NewServer(script)
	b.Cleanup(up.Close)
	target, _ := url.Parse(up.URL)
	bareTransport := &http.Transport{MaxIdleConnsPerHost: 256}
	bare := httptest.NewServer(&httputil.ReverseProxy{
		Rewrite:   func(pr *httputil.ProxyRequest) { pr.SetURL(target) },
		Transport: bareTransport,
	})
	b.Cleanup(bare.Close)
	return []benchTarget{
		{"direct", up.URL + "/v1/chat/completions"},
		{"bare", bare.URL + "/v1/chat/completions"},
		{"gateway", benchGateway(b, up.URL, nil) + "/openai/v1/chat/completions"},
	}
}

// allowAll allows each request at once, evaluating nothing, with a
// decision that the gateway records as it does the example policies'.
type allowAll struct{ bundle string }

func (a allowAll) Decide(_ context.Context, point infertrail.PolicyPoint, _ map[string]any) (infertrail.Decision, error) {
	return infertrail.Decision{Result: infertrail.PolicyAllow, PolicyID: policy.PackageOf(point), Bundle: a.bundle,
		InputDigest: "sha256:" + strings.Repeat("0", 64)}, nil
}

func (allowAll) Defines(point infertrail.PolicyPoint) bool {
	return point == infertrail.PointInferenceRequest
}

// timedEngine times each decision of the engine it wraps, as the gateway
// waits for it.
type timedEngine struct {
	*policy.Engine
	mu   sync.Mutex
	took []time.Duration
}

func (t *timedEngine) Decide(ctx context.Context, point infertrail.PolicyPoint, input map[string]any) (infertrail.Decision, error) {
	start := time.Now()
	d, err := t.Engine.Decide(ctx, point, input)
	took := time.Since(start)
	t.mu.Lock()
	t.took = append(t.took, took)
	t.mu.Unlock()
	return d, err
}

// examplePolicies loads examples/policies as a server with policy.dir
// pointing there does, recording the load in trail.
func examplePolicies(b *testing.B, trail *gatewaytest.Trail) *policy.Engine {
	e, err := policy.New(b.Context(), policy.Config{Dir: "../../examples/policies", Recorder: trail.Log, Logger: slog.New(slog.DiscardHandler)})
	if err != nil || !e.Defines(infertrail.PointInferenceRequest) {
		b.Fatalf("example policies: %v, or no inference.request policy", err)
	}
	return e
}

// benchGateway starts the gateway with the OpenAI provider in front of
// upstream, over a trail of its own, and returns its URL. With engine
// set, the gateway enforces the policies it returns.
func benchGateway(b *testing.B, upstream string, engine func(*gatewaytest.Trail) infertrail.PolicyEngine) string {
	trail := gatewaytest.NewTrail(b)
	cfg := gateway.Config{
		Recorder: trail.Log, Secret: gatewaytest.Secret,
		Upstreams:  []gateway.Upstream{{Provider: openai.Provider{}, BaseURL: upstream}},
		Durability: benchDurability,
	}
	if engine != nil {
		cfg.Policy = engine(trail)
	}
	gw, err := gateway.New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	gws := httptest.NewServer(gw)
	b.Cleanup(gws.Close)
	b.Cleanup(func() { gw.Close(context.Background()) })
	if benchIndex {
		terms, err := investigate.NewTerms(gatewaytest.Secret)
		if err != nil {
			b.Fatal(err)
		}
		e, err := investigate.New(investigate.Config{Store: trail.DB, Terms: terms, Content: trail.Log.ContentReader().ReadParts})
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); e.Run(ctx) }()
		b.Cleanup(func() { cancel(); <-done })
	}
	return gws.URL
}

// benchIndex, from INFERTRAIL_BENCH_INDEX=1, runs the investigation index
// (full text included) over each gateway's trail, as infertrail serve does.
var benchIndex = os.Getenv("INFERTRAIL_BENCH_INDEX") == "1"

var benchDurability = func() gateway.Durability {
	d, _ := gateway.ParseDurability(os.Getenv("INFERTRAIL_BENCH_DURABILITY"))
	return d
}()

var benchClient = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256, MaxIdleConns: 1024}}

// call makes one request and returns its latency to the last byte, or with
// stream set, to the first chunk (read to the end either way).
func call(tb testing.TB, u string, stream bool) time.Duration {
	return send(tb, u, openaitest.BenchmarkRequest(stream), stream)
}

// send posts body and returns its latency as call does.
func send(tb testing.TB, u, body string, stream bool) time.Duration {
	req, _ := http.NewRequest("POST", u, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer sk-bench-0123456789")
	start := time.Now()
	resp, err := benchClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	var d time.Duration
	if stream {
		br := bufio.NewReader(resp.Body)
		if _, err := br.ReadString('\n'); err != nil {
			tb.Fatal(err)
		}
		d = time.Since(start)
		io.Copy(io.Discard, br)
	} else {
		if _, err := io.Copy(io.Discard, resp.Body); err != nil {
			tb.Fatal(err)
		}
		d = time.Since(start)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		tb.Fatalf("%s: status %d", u, resp.StatusCode)
	}
	return d
}

func percentile(ds []time.Duration, p float64) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[int(float64(len(s)-1)*p)]
}

func ms(d time.Duration) float64 { return float64(d) / 1e6 }

// BenchmarkGatewayLatency measures, at concurrency 1 and alternating
// between targets in rounds, the latency of a 2 KiB response called
// directly, through a bare ReverseProxy, and through the gateway in
// request-ahead mode. "Added" is a target's percentile minus direct's:
// everything between the client and the upstream — the extra hop, reading
// and parsing the request, writing the request record durably (group
// commit, fsync) before forwarding, and capturing the response (its record
// is written as the response ends, off the response's path).
// Run with -benchtime 1x; b.N only repeats the whole measurement.
func BenchmarkGatewayLatency(b *testing.B) {
	for _, stream := range []bool{false, true} {
		name := "body"
		if stream {
			name = "stream_first_chunk"
		}
		b.Run(name, func(b *testing.B) {
			ts, n := benchTargets(b, bodyScript()), 300
			if stream {
				ts, n = benchTargets(b, streamScript()), 60
			}
			lat := make([][]time.Duration, len(ts))
			for range b.N {
				for _, t := range ts { // warm up connections
					for range 20 {
						call(b, t.url, stream)
					}
				}
				for range 10 {
					for i, t := range ts {
						for range n {
							lat[i] = append(lat[i], call(b, t.url, stream))
						}
					}
				}
			}
			for i, t := range ts {
				b.ReportMetric(ms(percentile(lat[i], 0.5)), t.name+"_p50_ms")
				b.ReportMetric(ms(percentile(lat[i], 0.99)), t.name+"_p99_ms")
				if i > 0 {
					b.ReportMetric(ms(percentile(lat[i], 0.5)-percentile(lat[0], 0.5)), t.name+"_added_p50_ms")
					b.ReportMetric(ms(percentile(lat[i], 0.99)-percentile(lat[0], 0.99)), t.name+"_added_p99_ms")
				}
			}
		})
	}
}

// benchPolicyRequest is the chat request of the policy package's
// BenchmarkDecide, in OpenAI's shape: 2.5 KB, five messages, a tool call
// and its result, an approved model and no secret, so that the example
// policies allow it after scanning the whole prompt.
var benchPolicyRequest = `{"model":"gpt-4o-2024-08-06","temperature":0.2,"max_tokens":512,
"tools":[{"type":"function","function":{"name":"approve_payment","description":"Approve an invoice payment","parameters":{"type":"object"}}}],
"messages":[
{"role":"system","content":"You are a payments assistant for ACME. Never pay without an invoice."},
{"role":"user","content":[{"type":"text","text":"Pay invoice 7 of 1200 EUR to ACME."},{"type":"text","text":"` +
	strings.Repeat("Invoice 7 from ACME covers consulting for November; net 30 days. ", 30) + `"}]},
{"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"approve_payment","arguments":"{\"invoice\": 7, \"amount_eur\": 1200}"}}]},
{"role":"tool","tool_call_id":"call_1","content":"{\"status\": \"pending_approval\"}"},
{"role":"user","content":"Thanks. What is the status?"}]}`

// BenchmarkGatewayPolicyLatency measures what policy evaluation adds to a
// request, end to end: at concurrency 1 and alternating between targets in
// rounds, the latency of benchPolicyRequest (a 2 KiB response) called
// directly, through the gateway without a policy, through the gateway
// with an engine that allows at once (decidedPolicy), and through the
// gateway enforcing the example policies (examples/policies), each gateway
// over a trail of its own. "policy_added" is the example policies'
// percentile minus the gateway's without a policy: building the input
// document, evaluating, and recording the decision with the request
// record. It splits into "decision_added" (decided minus no policy: the
// input document and the decision record) and "eval_added" (example
// policies minus decided: evaluating, and the garbage it leaves, which is
// collected during the policy rounds mostly but not only). "decide" is
// Engine.Decide as the gateway waits for it, warm-up calls included. Run
// with -benchtime 1x; b.N only repeats the whole measurement.
func BenchmarkGatewayPolicyLatency(b *testing.B) {
	up := httptest.NewServer(bodyScript())
	b.Cleanup(up.Close)
	decided := func(trail *gatewaytest.Trail) infertrail.PolicyEngine {
		return allowAll{bundle: examplePolicies(b, trail).Bundle()}
	}
	var timed *timedEngine
	examples := func(trail *gatewaytest.Trail) infertrail.PolicyEngine {
		timed = &timedEngine{Engine: examplePolicies(b, trail)}
		return timed
	}
	ts := []benchTarget{
		{"direct", up.URL + "/v1/chat/completions"},
		{"gateway", benchGateway(b, up.URL, nil) + "/openai/v1/chat/completions"},
		{"gateway_decided", benchGateway(b, up.URL, decided) + "/openai/v1/chat/completions"},
		{"gateway_policy", benchGateway(b, up.URL, examples) + "/openai/v1/chat/completions"},
	}
	const n = 300
	lat := make([][]time.Duration, len(ts))
	for range b.N {
		for _, t := range ts { // warm up connections
			for range 20 {
				send(b, t.url, benchPolicyRequest, false)
			}
		}
		for range 10 {
			for i, t := range ts {
				for range n {
					lat[i] = append(lat[i], send(b, t.url, benchPolicyRequest, false))
				}
			}
		}
	}
	for i, t := range ts {
		b.ReportMetric(ms(percentile(lat[i], 0.5)), t.name+"_p50_ms")
		b.ReportMetric(ms(percentile(lat[i], 0.99)), t.name+"_p99_ms")
	}
	added := func(name string, i, base int) {
		b.ReportMetric(ms(percentile(lat[i], 0.5)-percentile(lat[base], 0.5)), name+"_added_p50_ms")
		b.ReportMetric(ms(percentile(lat[i], 0.99)-percentile(lat[base], 0.99)), name+"_added_p99_ms")
	}
	added("policy", 3, 1)
	added("decision", 2, 1)
	added("eval", 3, 2)
	b.ReportMetric(ms(percentile(timed.took, 0.5)), "decide_p50_ms")
	b.ReportMetric(ms(percentile(timed.took, 0.99)), "decide_p99_ms")
}

// BenchmarkGatewayThroughput measures requests per second at concurrency
// 16, alternating between targets in rounds of two seconds.
func BenchmarkGatewayThroughput(b *testing.B) {
	const conc = 16
	ts := benchTargets(b, bodyScript())
	count := make([]int64, len(ts))
	elapsed := make([]time.Duration, len(ts))
	lat := make([][]time.Duration, len(ts))
	for range b.N {
		for round := range 4 {
			for i, t := range ts {
				var n atomic.Int64
				var mu sync.Mutex
				var wg sync.WaitGroup
				start := time.Now()
				deadline := start.Add(2 * time.Second)
				for range conc {
					wg.Add(1)
					go func() {
						defer wg.Done()
						var mine []time.Duration
						for time.Now().Before(deadline) {
							mine = append(mine, call(b, t.url, false))
							n.Add(1)
						}
						mu.Lock()
						if round > 0 { // the first round warms up
							lat[i] = append(lat[i], mine...)
						}
						mu.Unlock()
					}()
				}
				wg.Wait()
				if round > 0 {
					count[i] += n.Load()
					elapsed[i] += time.Since(start)
				}
			}
		}
	}
	for i, t := range ts {
		b.ReportMetric(float64(count[i])/elapsed[i].Seconds(), t.name+"_req/s")
		b.ReportMetric(ms(percentile(lat[i], 0.99)), t.name+"_p99_ms")
	}
}
