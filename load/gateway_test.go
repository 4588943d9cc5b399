package load

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/infertrail/infertrail/capture/openai/openaitest"
)

// tokenProxy forwards to up the calls that carry token, and counts them.
type tokenProxy struct {
	token string
	calls atomic.Int64
	proxy *httputil.ReverseProxy
}

func (p *tokenProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("X-InferTrail-Token") != p.token {
		w.WriteHeader(http.StatusUnauthorized)
		w.Write([]byte(`{"error":{"message":"bad token"}}`))
		return
	}
	p.calls.Add(1)
	// The body is read whole first, as InferTrail's gateways do: a body
	// streamed through is closed by the proxy's server once the answer's
	// headers are written, and http.Transport, reading it once more to
	// check its length, then tears down the upstream connection and cuts
	// the stream (golang/go#40747; seen once in CI).
	body, err := io.ReadAll(r.Body)
	if err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	p.proxy.ServeHTTP(w, r)
}

// newTokenProxy starts a tokenProxy in front of upstream. Its transport is
// its own, not http.DefaultTransport, whose connections every test in the
// process shares (and every httptest.Server's Close prunes): once in CI, a
// stream through the proxy broke after its first event on a connection of
// DefaultTransport closed under it.
func newTokenProxy(t *testing.T, upstream, token string) (*tokenProxy, string) {
	u, _ := url.Parse(upstream)
	p := &tokenProxy{token: token, proxy: httputil.NewSingleHostReverseProxy(u)}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	p.proxy.Transport = tr
	p.proxy.FlushInterval = -1
	s := httptest.NewServer(p)
	t.Cleanup(func() {
		s.Close()
		tr.CloseIdleConnections()
	})
	return p, s.URL
}

func TestGateway(t *testing.T) {
	var direct atomic.Int64
	script := &openaitest.Upstream{Text: openaitest.ReplyOfSize(400), Keep: -1}
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-InferTrail-Token") == "" {
			direct.Add(1)
		}
		script.ServeHTTP(w, r)
	}))
	t.Cleanup(up.Close)
	gw, gwURL := newTokenProxy(t, up.URL, "itk_bench")

	res, err := Gateway(t.Context(), GatewayConfig{Gateway: gwURL + "/v1/chat/completions", Direct: up.URL + "/v1/chat/completions",
		Token: "itk_bench", Calls: 25, Block: 10, Warmup: 3})
	if err != nil {
		t.Fatal(err)
	}
	if res.Calls != 25 || res.Direct.Samples != 25 || res.Gateway.Samples != 25 {
		t.Errorf("samples: %+v", res)
	}
	if d, g := direct.Load(), gw.calls.Load(); d != 28 || g != 28 {
		t.Errorf("calls made: direct %d, through the gateway %d; want 28 each (3 to warm up)", d, g)
	}
	if res.Direct.P50 <= 0 || res.Gateway.P99 < res.Gateway.P50 || res.AddedP50 != res.Gateway.P50-res.Direct.P50 {
		t.Errorf("latencies: %+v", res)
	}
	var out strings.Builder
	res.Print(&out)
	if !strings.Contains(out.String(), "added by the gateway: p50 ") {
		t.Errorf("Print:\n%s", out.String())
	}
}

// TestGatewayStream checks that a streamed call is timed to its first
// event: the whole stream takes most of a second, its first event comes at
// once.
func TestGatewayStream(t *testing.T) {
	up := httptest.NewServer(&openaitest.Upstream{Text: strings.Repeat("x", 40), ChunkBytes: 10, EventDelay: 150 * time.Millisecond, Keep: -1})
	t.Cleanup(up.Close)
	_, gwURL := newTokenProxy(t, up.URL, "itk_bench")
	start := time.Now()
	res, err := Gateway(t.Context(), GatewayConfig{Gateway: gwURL + "/v1/chat/completions", Direct: up.URL + "/v1/chat/completions",
		Token: "itk_bench", Calls: 1, Warmup: -1, Stream: true})
	if err != nil {
		t.Fatal(err)
	}
	whole := time.Since(start) / 2 // two calls, one after the other
	if !res.Stream || res.Gateway.Max >= whole || res.Direct.Max >= whole {
		t.Errorf("a streamed call took %v (direct) and %v (gateway) to its first event, against %v for the whole stream", res.Direct.Max, res.Gateway.Max, whole)
	}
}

func TestGatewayErrors(t *testing.T) {
	up := httptest.NewServer(&openaitest.Upstream{Keep: -1})
	t.Cleanup(up.Close)
	_, gwURL := newTokenProxy(t, up.URL, "itk_right")
	_, err := Gateway(t.Context(), GatewayConfig{Gateway: gwURL + "/v1/chat/completions", Direct: up.URL + "/v1/chat/completions",
		Token: "itk_wrong", Calls: 1})
	if err == nil || !strings.Contains(err.Error(), "through the gateway") || !strings.Contains(err.Error(), "401") || !strings.Contains(err.Error(), "bad token") {
		t.Errorf("a refused token: err = %v", err)
	}
	if _, err := Gateway(t.Context(), GatewayConfig{Gateway: gwURL}); err == nil || !strings.Contains(err.Error(), "direct URL") {
		t.Errorf("no direct URL: err = %v", err)
	}
	_, err = Gateway(t.Context(), GatewayConfig{Gateway: gwURL + "/v1/chat/completions", Direct: "http://127.0.0.1:1/v1/chat/completions", Calls: 1})
	if err == nil || !strings.Contains(err.Error(), "direct") {
		t.Errorf("an unreachable upstream: err = %v", err)
	}
}
