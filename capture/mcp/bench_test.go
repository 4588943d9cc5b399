package mcp_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/infertrail/infertrail"
	"github.com/infertrail/infertrail/access"
	"github.com/infertrail/infertrail/capture/gateway/gatewaytest"
	"github.com/infertrail/infertrail/capture/mcp"
	"github.com/infertrail/infertrail/capture/mcp/mcptest"
)

// BenchmarkToolCall measures one agent's tools/call round trips with the
// official SDK's client, straight to a real MCP server ("direct"), through
// the gateway in its default mode ("gateway": the request record is
// durable in a real SQLite trail before the call is forwarded), and
// through it in async mode, and in its default mode with each request
// authenticated by an InferTrail token in the trail's store
// ("gateway-token", as infertrail serve runs it). It reports the median
// and the 99th percentile; the added latency is the difference between
// the runs.
//
//	go test ./capture/mcp -run '^$' -bench ToolCall -benchtime 3000x -count 3
func BenchmarkToolCall(b *testing.B) {
	server := mcptest.NewServer(nil, nil)
	up := httptest.NewServer(sdk.NewStreamableHTTPHandler(func(*http.Request) *sdk.Server { return server }, nil))
	defer up.Close()
	for _, via := range []string{"direct", "gateway", "gateway-async", "gateway-token"} {
		b.Run(via, func(b *testing.B) {
			endpoint, client := up.URL, http.DefaultClient
			if via != "direct" {
				trail := gatewaytest.NewTrail(b)
				cfg := mcp.Config{Recorder: trail.Log, Secret: gatewaytest.Secret, Servers: []mcp.Server{{Name: "payments", URL: up.URL}}}
				switch via {
				case "gateway-async":
					cfg.Durability = mcp.Async
				case "gateway-token":
					cfg.Auth, client = tokenAuth(b, trail)
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
			cs, err := cli.Connect(b.Context(), &sdk.StreamableClientTransport{Endpoint: endpoint, HTTPClient: client, MaxRetries: -1, DisableStandaloneSSE: true}, nil)
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

// tokenAuth returns an authenticator over a gateway token stored in the
// trail, and a client that sends the token with every request.
func tokenAuth(b *testing.B, trail *gatewaytest.Trail) (infertrail.Authenticator, *http.Client) {
	secret, hash := access.NewToken()
	if err := trail.DB.AddToken(b.Context(), infertrail.Token{ID: infertrail.NewUUID(), Name: "bench-agent", Tenant: infertrail.AllTenants,
		Roles: []infertrail.Role{infertrail.RoleGateway}, Hash: hash, Created: 1}); err != nil {
		b.Fatal(err)
	}
	a, err := access.New(access.Config{Tokens: trail.DB})
	if err != nil {
		b.Fatal(err)
	}
	return a, &http.Client{Transport: withHeader{http.DefaultTransport, mcp.HeaderToken, secret}}
}

// withHeader sets a header on every request it sends.
type withHeader struct {
	rt          http.RoundTripper
	name, value string
}

func (h withHeader) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set(h.name, h.value)
	return h.rt.RoundTrip(r)
}
