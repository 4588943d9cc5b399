package mcp_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/infertrail/infertrail/capture/gateway/gatewaytest"
	"github.com/infertrail/infertrail/capture/mcp"
	"github.com/infertrail/infertrail/capture/mcp/mcptest"
)

// BenchmarkToolCall measures one agent's tools/call round trips with the
// official SDK's client, straight to a real MCP server ("direct"), through
// the gateway in its default mode ("gateway": the request record is
// durable in a real SQLite trail before the call is forwarded), and
// through it in async mode. It reports the median and the 99th
// percentile; the added latency is the difference between the runs.
//
//	go test ./capture/mcp -run '^$' -bench ToolCall -benchtime 3000x -count 3
func BenchmarkToolCall(b *testing.B) {
	server := mcptest.NewServer(nil, nil)
	up := httptest.NewServer(sdk.NewStreamableHTTPHandler(func(*http.Request) *sdk.Server { return server }, nil))
	defer up.Close()
	for _, via := range []string{"direct", "gateway", "gateway-async"} {
		b.Run(via, func(b *testing.B) {
			endpoint := up.URL
			if via != "direct" {
				trail := gatewaytest.NewTrail(b)
				cfg := mcp.Config{Recorder: trail.Log, Secret: gatewaytest.Secret, Servers: []mcp.Server{{Name: "payments", URL: up.URL}}}
				if via == "gateway-async" {
					cfg.Durability = mcp.Async
				}
				gw, err := mcp.New(cfg)
				if err != nil {
					b.Fatal(err)
				}
				srv := httptest.NewServer(gw)
				defer srv.Close()
				defer gw.Close(context.Background()) // before the trail closes
				endpoint = srv.URL + "/mcp/payments"
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
