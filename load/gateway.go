package load

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/infertrail/infertrail/capture/openai/openaitest"
)

// GatewayConfig configures Gateway. Zero values are the documented
// defaults.
type GatewayConfig struct {
	// Gateway is the URL of chat completions through the gateway, such as
	// http://127.0.0.1:8470/openai/v1/chat/completions; Direct is the same
	// endpoint on the upstream the gateway forwards to.
	Gateway, Direct string
	// Token is the InferTrail token with the gateway role, sent as
	// X-InferTrail-Token; APIKey goes to both as the provider key
	// (default "sk-infertrail-bench").
	Token, APIKey string
	// Calls is the number of calls to each of Direct and Gateway (default
	// 3000), made one at a time; Block is how many go to one before the
	// other has its turn (default 300), so that both see the same machine.
	Calls, Block int
	// Warmup is how many calls go to each before the measured ones
	// (default 20; negative: none).
	Warmup int
	// Stream asks for streamed responses and measures the time to the
	// first event; otherwise the time to the whole response.
	Stream bool
	// Timeout bounds each call (default 30s).
	Timeout time.Duration
	// HTTPClient sends the calls. Nil means a client of its own.
	HTTPClient *http.Client
}

// GatewayResult is the outcome of Gateway: the latency of each target and
// what the gateway added, the difference of their percentiles.
type GatewayResult struct {
	Calls    int           `json:"calls"`
	Stream   bool          `json:"stream"`
	Direct   Latency       `json:"direct"`
	Gateway  Latency       `json:"gateway"`
	AddedP50 time.Duration `json:"added_p50_ns"`
	AddedP99 time.Duration `json:"added_p99_ns"`
}

// Print writes r for people.
func (r GatewayResult) Print(w io.Writer) {
	what := "whole response"
	if r.Stream {
		what = "first streamed event"
	}
	fmt.Fprintf(w, "%d calls each, one at a time, time to the %s:\n", r.Calls, what)
	for _, t := range []struct {
		name string
		l    Latency
	}{{"direct ", r.Direct}, {"gateway", r.Gateway}} {
		fmt.Fprintf(w, "  %s  p50 %v  p90 %v  p99 %v  max %v\n", t.name,
			roundLatency(t.l.P50), roundLatency(t.l.P90), roundLatency(t.l.P99), roundLatency(t.l.Max))
	}
	fmt.Fprintf(w, "added by the gateway: p50 %v, p99 %v\n", roundLatency(r.AddedP50), roundLatency(r.AddedP99))
}

// Gateway measures the latency an LLM gateway adds to OpenAI chat
// completions (openaitest.BenchmarkRequest, the request of the gateway's
// in-process benchmarks): it calls Direct and Gateway in turns of Block calls, one
// call at a time, after Warmup calls to each that are not counted.
func Gateway(ctx context.Context, cfg GatewayConfig) (GatewayResult, error) {
	if cfg.Gateway == "" || cfg.Direct == "" {
		return GatewayResult{}, errors.New("load: gateway: both the gateway's and the direct URL are needed")
	}
	if cfg.Calls <= 0 {
		cfg.Calls = 3000
	}
	if cfg.Block <= 0 {
		cfg.Block = 300
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	if cfg.Warmup == 0 {
		cfg.Warmup = 20
	}
	if cfg.APIKey == "" {
		cfg.APIKey = "sk-infertrail-bench"
	}
	c := cfg.HTTPClient
	if c == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxIdleConnsPerHost = 2
		c = &http.Client{Transport: t}
		defer t.CloseIdleConnections()
	}
	call := func(url, token string) (time.Duration, error) {
		ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
		defer cancel()
		return gatewayCall(ctx, c, url, token, cfg.APIKey, cfg.Stream)
	}
	for range max(cfg.Warmup, 0) {
		if _, err := call(cfg.Direct, ""); err != nil {
			return GatewayResult{}, fmt.Errorf("load: gateway: direct: %w", err)
		}
		if _, err := call(cfg.Gateway, cfg.Token); err != nil {
			return GatewayResult{}, fmt.Errorf("load: gateway: through the gateway: %w", err)
		}
	}
	direct := make([]time.Duration, 0, cfg.Calls)
	through := make([]time.Duration, 0, cfg.Calls)
	for len(through) < cfg.Calls {
		n := min(cfg.Block, cfg.Calls-len(through))
		for range n {
			d, err := call(cfg.Direct, "")
			if err != nil {
				return GatewayResult{}, fmt.Errorf("load: gateway: direct: %w", err)
			}
			direct = append(direct, d)
		}
		for range n {
			d, err := call(cfg.Gateway, cfg.Token)
			if err != nil {
				return GatewayResult{}, fmt.Errorf("load: gateway: through the gateway: %w", err)
			}
			through = append(through, d)
		}
	}
	r := GatewayResult{Calls: cfg.Calls, Stream: cfg.Stream, Direct: NewLatency(direct), Gateway: NewLatency(through)}
	r.AddedP50 = r.Gateway.P50 - r.Direct.P50
	r.AddedP99 = r.Gateway.P99 - r.Direct.P99
	return r, nil
}

// gatewayCall makes one call and returns its latency: to the end of the
// response, or with stream to the end of its first event. A status other
// than 200 is an error that quotes the answer.
func gatewayCall(ctx context.Context, c *http.Client, url, token, apiKey string, stream bool) (time.Duration, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(openaitest.BenchmarkRequest(stream)))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+apiKey)
	if token != "" {
		req.Header.Set("X-InferTrail-Token", token)
	}
	start := time.Now()
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return 0, fmt.Errorf("%s answered %s: %s", url, resp.Status, bytes.TrimSpace(b))
	}
	var took time.Duration
	if stream {
		// The first event ends at the first empty line.
		br := bufio.NewReader(resp.Body)
		for {
			line, err := br.ReadSlice('\n')
			if errors.Is(err, bufio.ErrBufferFull) {
				continue // a long line, not the empty one
			}
			if err != nil {
				return 0, fmt.Errorf("%s: the stream ended before its first event: %w", url, err)
			}
			if len(bytes.TrimRight(line, "\r\n")) == 0 {
				break
			}
		}
		took = time.Since(start)
		_, err = io.Copy(io.Discard, br)
	} else {
		_, err = io.Copy(io.Discard, resp.Body)
		took = time.Since(start)
	}
	if err != nil {
		return 0, fmt.Errorf("%s: reading the response: %w", url, err)
	}
	return took, nil
}
