package mcp_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/infertrail/infertrail/capture/gateway/gatewaytest"
	"github.com/infertrail/infertrail/capture/mcp"
	"github.com/infertrail/infertrail/capture/mcp/mcptest"
)

// BenchmarkToolCall measures one agent's tools/call round trips with the
// official SDK's client, straight to a real MCP server ("direct"), and
// through the gateway: in its default mode ("gateway": the request record
// is durable in a real SQLite trail before the call is forwarded), in
// async mode, and, for comparison, in the benchmark's own process. The
// gateway runs in a process of its own, as it is deployed: the SDK's
// client and server allocate about 400 KB per call, and in one process
// their garbage collection slows the gateway too. It reports the median
// and the 99th percentile; the added latency is the difference between
// the runs.
//
//	go test ./capture/mcp -run '^$' -bench ToolCall -benchtime 3000x -count 3
func BenchmarkToolCall(b *testing.B) {
	server := mcptest.NewServer(nil, nil)
	up := httptest.NewServer(sdk.NewStreamableHTTPHandler(func(*http.Request) *sdk.Server { return server }, nil))
	defer up.Close()
	for _, via := range []string{"direct", "gateway", "gateway-async", "gateway-in-process"} {
		b.Run(via, func(b *testing.B) {
			var endpoint string
			switch via {
			case "direct":
				endpoint = up.URL
			case "gateway-in-process":
				trail := gatewaytest.NewTrail(b)
				gw, err := mcp.New(mcp.Config{Recorder: trail.Log, Secret: gatewaytest.Secret, Servers: []mcp.Server{{Name: "payments", URL: up.URL}}})
				if err != nil {
					b.Fatal(err)
				}
				srv := httptest.NewServer(gw)
				defer srv.Close()
				defer gw.Close(context.Background()) // before the trail closes
				endpoint = srv.URL + "/mcp/payments"
			default:
				endpoint = startGatewayProcess(b, up.URL, strings.TrimPrefix(strings.TrimPrefix(via, "gateway"), "-")) + "/mcp/payments"
			}
			cli := sdk.NewClient(&sdk.Implementation{Name: "bench-agent", Version: "1"}, nil)
			cs, err := cli.Connect(b.Context(), &sdk.StreamableClientTransport{Endpoint: endpoint, MaxRetries: -1, DisableStandaloneSSE: true}, nil)
			if err != nil {
				b.Fatal(err)
			}
			defer cs.Close()
			params := &sdk.CallToolParams{Name: "pay", Arguments: map[string]any{"invoice": "INV-7", "amount_eur": 1200}}
			for range 50 { // warm up connections and caches
				if _, err := cs.CallTool(b.Context(), params); err != nil {
					b.Fatal(err)
				}
			}
			lat := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for range b.N {
				t0 := time.Now()
				if _, err := cs.CallTool(b.Context(), params); err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(t0))
			}
			b.StopTimer()
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
		})
	}
}

// startGatewayProcess runs TestBenchGateway in a child process of the test
// binary and returns the gateway's base URL. The child ends with the
// benchmark.
func startGatewayProcess(b *testing.B, upstream, durability string) string {
	cmd := exec.Command(os.Args[0], "-test.run", "^TestBenchGateway$")
	cmd.Env = append(os.Environ(), "INFERTRAIL_BENCH_UPSTREAM="+upstream, "INFERTRAIL_BENCH_DURABILITY="+durability)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		stdin.Close()
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			b.Error("the gateway process did not end")
		}
	})
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		if addr, ok := strings.CutPrefix(sc.Text(), "gateway listening on "); ok {
			go io.Copy(io.Discard, stdout)
			return "http://" + addr
		}
	}
	b.Fatalf("the gateway process ended before it listened: %v", sc.Err())
	return ""
}

// TestBenchGateway is the gateway process of BenchmarkToolCall; it is
// skipped unless the benchmark runs it. It serves the MCP gateway in front
// of INFERTRAIL_BENCH_UPSTREAM over a real SQLite trail, prints its
// address, and stops when its standard input closes.
func TestBenchGateway(t *testing.T) {
	upstream := os.Getenv("INFERTRAIL_BENCH_UPSTREAM")
	if upstream == "" {
		t.Skip("run by BenchmarkToolCall")
	}
	trail := gatewaytest.NewTrail(t)
	cfg := mcp.Config{Recorder: trail.Log, Secret: gatewaytest.Secret, Servers: []mcp.Server{{Name: "payments", URL: upstream}}}
	if os.Getenv("INFERTRAIL_BENCH_DURABILITY") == "async" {
		cfg.Durability = mcp.Async
	}
	gw, err := mcp.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: gw, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	fmt.Printf("gateway listening on %s\n", ln.Addr())
	io.Copy(io.Discard, os.Stdin)
	srv.Close()
	if err := gw.Close(context.Background()); err != nil {
		t.Error(err)
	}
}
