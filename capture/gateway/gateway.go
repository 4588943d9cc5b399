// Package gateway is InferTrail's LLM gateway: a reverse proxy in front of
// model providers that records every call — request, response rebuilt from
// its stream, model identity, usage and calling identity — as evidence.
// Provider adapters (capture/openai, capture/anthropic) supply the wire
// formats; the gateway does the proxying, identity, durability and records.
package gateway

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/infertrail/infertrail"
	"github.com/infertrail/infertrail/internal/quiet"
	"github.com/infertrail/infertrail/policy/obligation"
	"github.com/infertrail/infertrail/redact"
)

// Durability says when a proxied call's records must be durable.
type Durability int

// The durability modes.
const (
	// RequestAhead (the default): the request record is durable before the
	// request is forwarded; the response record is written as the response
	// ends, without holding the response back.
	RequestAhead Durability = iota
	// FailClosed: as RequestAhead, and the response is held until its
	// record is durable. A streamed response passes through as it comes,
	// but its end is held: if its record cannot be written, the stream is
	// cut off instead of ending cleanly.
	FailClosed
	// Async: both records are written after the fact; nothing waits for
	// them, but none is dropped: when the trail falls behind, calls wait
	// for room (backpressure).
	Async
)

var durabilityNames = []string{"request-ahead", "fail-closed", "async"}

func (d Durability) String() string {
	if d < 0 || int(d) >= len(durabilityNames) {
		return fmt.Sprintf("Durability(%d)", int(d))
	}
	return durabilityNames[d]
}

// ParseDurability parses "request-ahead", "fail-closed" or "async".
func ParseDurability(s string) (Durability, error) {
	if i := slices.Index(durabilityNames, s); i >= 0 {
		return Durability(i), nil
	}
	return 0, fmt.Errorf("durability %q: want request-ahead, fail-closed or async: %w", s, infertrail.ErrInvalid)
}

// Headers the gateway reads from callers and sets on responses.
const (
	HeaderAgent   = "X-InferTrail-Agent"   // the calling agent's id, as the caller claims it
	HeaderSession = "X-InferTrail-Session" // the caller's session id
	// HeaderToken carries the caller's InferTrail token when its API key
	// is its own provider key. Never forwarded.
	HeaderToken = "X-InferTrail-Token"
	// HeaderRecord carries the sequence numbers of the call's records that
	// were durable when the response was sent: the request record's, and in
	// fail-closed mode the response record's too ("41, 42"). For a stream
	// in fail-closed mode the response record's number follows as a trailer.
	HeaderRecord = "X-InferTrail-Record"
	// HeaderRecordID carries the ids of the request and response records,
	// known before either is written.
	HeaderRecordID = "X-InferTrail-Record-Id"
)

// Upstream is one provider and where the gateway forwards its calls.
type Upstream struct {
	Provider Provider
	// BaseURL is the provider's API base, as its SDKs take it
	// ("https://api.openai.com/v1", "http://localhost:11434/v1",
	// "https://api.anthropic.com"). A trailing "/v1" is dropped, since the
	// endpoints' paths start with it.
	BaseURL string
	// ConnectTimeout bounds connecting, TLS handshake included (default 10s).
	ConnectTimeout time.Duration
	// ResponseHeaderTimeout bounds the wait for the response headers
	// after the request is sent (default 10 minutes: a long completion
	// that does not stream sends nothing until it is done).
	ResponseHeaderTimeout time.Duration
	// IdleTimeout bounds the silence between two reads of a response body
	// (default 5 minutes).
	IdleTimeout time.Duration
	// Timeout bounds the whole call, streamed body included (default 30 minutes).
	Timeout time.Duration
	// TLS configures connections to the upstream (default: system roots).
	TLS *tls.Config
	// Transport, if set, replaces the transport built from the settings above.
	Transport http.RoundTripper
	// Key, if set, is the provider key sent upstream for callers whose
	// API key is an InferTrail token.
	Key Secret
	// Profile is the capture profile of this route's records ("minimal",
	// "standard" or "forensic"; empty: the tenant's). It is written as the
	// attribute capture.profile, which the log's capture step honours.
	// "forensic" also keeps the raw bytes of every streamed response, as the
	// client received them (up to MaxCaptureBytes), in the content field
	// response.raw.
	Profile string
}

// Config configures a Gateway. Zero values mean the documented defaults.
type Config struct {
	Recorder  infertrail.Recorder // required: where records go
	Secret    []byte              // required, ≥ 32 bytes: keys credential fingerprints
	Upstreams []Upstream          // one per provider
	// Durability is when records must be durable (default RequestAhead).
	Durability Durability
	// VirtualKeys are keys issued to agents in place of provider keys.
	VirtualKeys []VirtualKey
	// Auth, if set, authenticates every caller that presents no virtual
	// key: it must present an InferTrail token whose roles grant the
	// gateway permission (see identify). Nil: callers are not
	// authenticated; their provider key is passed through.
	Auth infertrail.Authenticator
	// RequireVirtualKey refuses callers that do not present a virtual key.
	// By default their own provider key is passed through, and only its
	// fingerprint recorded.
	RequireVirtualKey bool
	// Policy, if set, decides on every request before it is forwarded
	// (point inference.request): a denial is answered in the provider's
	// error shape and the request is not forwarded; every decision with a
	// policy behind it is recorded as a policy_decision record that
	// governs the request record, durable with it. When it decides at the
	// inference.response point too, it decides on every complete 2xx
	// response of a model call, which is held back for it (see
	// HoldStreams), and its decision governs the response record.
	Policy infertrail.PolicyEngine
	// Approvals, if set, holds a request its policy says needs an
	// approval (require_approval) until an approver decides or the wait
	// ends: the request record and the decision are made durable, then
	// the call waits, nothing sent to the client, and goes ahead only
	// if approved. Nil refuses such a request at once, as a denial.
	// Close the approvals service before the gateway: held calls are
	// calls in flight.
	Approvals Approver
	// HoldStreams holds a streamed response back, whole, until the
	// inference.response policy has decided on it, when a policy decides
	// at that point (docs/policy.md): the client then gets the stream at
	// once, or an error in its place. Off, a stream passes through as it
	// comes, and the policy's decision on it is recorded but cannot be
	// enforced. A response that is not streamed is always held when a
	// policy decides on responses.
	HoldStreams bool
	// Redactors carries out the redact obligations of policy decisions
	// (nil: the default redaction rules).
	Redactors *obligation.Redactors
	// Tenant is the tenant of records whose caller has none (default "default").
	Tenant string
	// MaxRequestBytes bounds a request body (default 16 MiB).
	MaxRequestBytes int64
	// MaxCaptureBytes bounds what is kept of one response to rebuild it
	// (default 8 MiB). Past it the record keeps the response's digest and
	// is marked truncated. In fail-closed mode it also bounds a response
	// that is not streamed, which is held whole.
	MaxCaptureBytes int
	// MaxPending bounds the records waiting to be written after the fact
	// (default 16384). When it is reached, new calls wait for room.
	MaxPending int
	// PendingWait is how long a call waits for room before it is refused
	// with 503 (default 30s).
	PendingWait time.Duration
	Logger      *slog.Logger          // default slog.Default()
	Registry    prometheus.Registerer // where the gateway registers its metrics; nil: none
	Now         func() time.Time
}

// Approver holds a call for a human's approval (approvals.Service
// implements it).
type Approver interface {
	// Await adds a pending approval for req (its Tenant, DecisionID,
	// Governs, Point, Summary, TraceID and SessionID; the records it names
	// are durable already) and waits until an approver decides, the wait
	// times out, or ctx ends; it returns the approval as it ended. Only
	// the status approved lets the call go ahead. An error means nothing
	// is held, and the call is refused.
	Await(ctx context.Context, req infertrail.Approval) (infertrail.Approval, error)
}

// Gateway is the LLM gateway. It is an http.Handler serving each
// provider's endpoints under /{provider}/, and safe for concurrent use.
type Gateway struct {
	cfg   Config
	rec   infertrail.Recorder
	fp    *redact.Fingerprinter
	vkeys map[string]*VirtualKey // by fingerprint of the key
	keys  map[string]Secret      // upstream keys for token callers, by provider name
	mux   *http.ServeMux
	log   *slog.Logger
	m     *metrics

	sp *Spool
	// unrecorded follows calls refused because their record could not
	// be written: while the trail is down or full, a line every 10 s.
	unrecorded quiet.Run

	mu      sync.Mutex
	closed  bool
	active  int           // calls in flight
	drained chan struct{} // closed when closed and no call is in flight
}

// New returns a gateway over cfg.
func New(cfg Config) (*Gateway, error) {
	if cfg.Recorder == nil {
		return nil, errors.New("new gateway: Recorder is required")
	}
	if len(cfg.Secret) < 32 {
		return nil, errors.New("new gateway: Secret must be at least 32 bytes")
	}
	if cfg.Durability < RequestAhead || cfg.Durability > Async {
		return nil, fmt.Errorf("new gateway: unknown durability %d", cfg.Durability)
	}
	if cfg.Tenant == "" {
		cfg.Tenant = infertrail.DefaultTenant
	}
	if !infertrail.ValidTenant(cfg.Tenant) {
		return nil, fmt.Errorf("new gateway: tenant %q is not a valid tenant name", cfg.Tenant)
	}
	if cfg.MaxRequestBytes <= 0 {
		cfg.MaxRequestBytes = 16 << 20
	}
	if cfg.MaxCaptureBytes <= 0 {
		cfg.MaxCaptureBytes = 8 << 20
	}
	if cfg.MaxPending <= 0 {
		cfg.MaxPending = 16384
	}
	if cfg.PendingWait <= 0 {
		cfg.PendingWait = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Redactors == nil {
		cfg.Redactors = obligation.NewRedactors(cfg.Secret, nil)
	}
	fp, err := redact.NewFingerprinter(cfg.Secret)
	if err != nil {
		return nil, fmt.Errorf("new gateway: %w", err)
	}
	g := &Gateway{
		cfg: cfg, rec: cfg.Recorder, fp: fp,
		vkeys: map[string]*VirtualKey{}, keys: map[string]Secret{}, mux: http.NewServeMux(), log: cfg.Logger,
		drained: make(chan struct{}),
	}
	g.m = newMetrics(cfg.Registry, g)
	g.sp = NewSpool(SpoolConfig{Recorder: cfg.Recorder, MaxPending: cfg.MaxPending, PendingWait: cfg.PendingWait,
		Logger: cfg.Logger, OnWait: g.m.waited, OnFail: g.m.failed})
	names := map[string]bool{}
	for i := range cfg.VirtualKeys {
		vk := &cfg.VirtualKeys[i]
		if vk.Key == "" || vk.Agent == "" {
			return nil, fmt.Errorf("new gateway: virtual key %d (%q): Key and Agent are required", i, vk.Name)
		}
		if vk.Tenant != "" && !infertrail.ValidTenant(vk.Tenant) {
			return nil, fmt.Errorf("new gateway: virtual key %q: tenant %q is not a valid tenant name", vk.Name, vk.Tenant)
		}
		if vk.Name == "" {
			vk.Name = vk.Agent
		}
		if names[vk.Name] {
			return nil, fmt.Errorf("new gateway: two virtual keys are named %q", vk.Name)
		}
		names[vk.Name] = true
		fp := g.fp.Of(string(vk.Key))
		if _, dup := g.vkeys[fp]; dup {
			return nil, fmt.Errorf("new gateway: virtual key %q has the same key as another", vk.Name)
		}
		g.vkeys[fp] = vk
	}
	seen := map[string]bool{}
	for _, up := range cfg.Upstreams {
		if up.Provider == nil {
			return nil, errors.New("new gateway: an upstream has no Provider")
		}
		name := up.Provider.Name()
		if up.Profile != "" {
			if _, err := redact.ParseProfile(up.Profile); err != nil {
				return nil, fmt.Errorf("new gateway: upstream %s: %w", name, err)
			}
		}
		if up.Key != "" {
			g.keys[name] = up.Key
		}
		if seen[name] {
			return nil, fmt.Errorf("new gateway: two upstreams for provider %q", name)
		}
		seen[name] = true
		if err := g.mount(up); err != nil {
			return nil, fmt.Errorf("new gateway: %s upstream: %w", name, err)
		}
	}
	return g, nil
}

// ServeHTTP serves the providers' endpoints.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) { g.mux.ServeHTTP(w, r) }

// Prefixes returns the path prefixes the gateway serves, "/openai/" and
// so on, for mounting it beside other handlers.
func (g *Gateway) Prefixes() []string {
	var out []string
	for _, up := range g.cfg.Upstreams {
		out = append(out, "/"+up.Provider.Name()+"/")
	}
	return out
}

// NewTransport returns the transport a gateway uses to reach an upstream:
// connect (TCP and TLS) and response-header timeouts, tls (nil: system
// roots), a pool sized for many concurrent calls, HTTP/2 when offered.
func NewTransport(connect, responseHeader time.Duration, tls *tls.Config) *http.Transport {
	return &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: connect, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:       tls,
		TLSHandshakeTimeout:   connect,
		ResponseHeaderTimeout: responseHeader,
		ExpectContinueTimeout: time.Second,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       90 * time.Second,
		ForceAttemptHTTP2:     true,
	}
}

// Close refuses new calls (503), waits for the calls in flight and then
// for every record still being written, up to ctx's deadline, and reports
// what it could not finish.
func (g *Gateway) Close(ctx context.Context) error {
	g.mu.Lock()
	if !g.closed {
		g.closed = true
		if g.active == 0 {
			close(g.drained)
		}
	}
	g.mu.Unlock()
	select {
	case <-g.drained:
	case <-ctx.Done():
		g.mu.Lock()
		n := g.active
		g.mu.Unlock()
		return fmt.Errorf("close gateway: %d calls still in flight: %w", n, ctx.Err())
	}
	if err := g.sp.Flush(ctx); err != nil {
		return fmt.Errorf("close gateway: %w", err)
	}
	return nil
}

// enter counts a call in flight; it fails once Close has begun.
func (g *Gateway) enter() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	g.active++
	return true
}

func (g *Gateway) leave() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.active--
	if g.closed && g.active == 0 {
		close(g.drained)
	}
}

// route is one provider endpoint.
type route struct {
	g     *Gateway
	p     Provider
	ep    Endpoint
	up    Upstream
	base  *url.URL
	proxy *httputil.ReverseProxy
}

func (g *Gateway) mount(up Upstream) error {
	base, err := url.Parse(strings.TrimSpace(up.BaseURL))
	if err != nil || base.Scheme != "http" && base.Scheme != "https" || base.Host == "" {
		return fmt.Errorf("base URL %q: want http:// or https:// and a host", up.BaseURL)
	}
	if base.User != nil || base.RawQuery != "" || base.Fragment != "" {
		return fmt.Errorf("base URL %q: give no user, query or fragment", up.BaseURL)
	}
	base.Path = strings.TrimSuffix(strings.TrimSuffix(base.Path, "/"), "/v1")
	base.RawPath = ""
	if up.ConnectTimeout <= 0 {
		up.ConnectTimeout = 10 * time.Second
	}
	if up.ResponseHeaderTimeout <= 0 {
		up.ResponseHeaderTimeout = 10 * time.Minute
	}
	if up.IdleTimeout <= 0 {
		up.IdleTimeout = 5 * time.Minute
	}
	if up.Timeout <= 0 {
		up.Timeout = 30 * time.Minute
	}
	if up.Transport == nil {
		up.Transport = NewTransport(up.ConnectTimeout, up.ResponseHeaderTimeout, up.TLS)
	}
	name := up.Provider.Name()
	var list []string
	for _, ep := range up.Provider.Endpoints() {
		rt := &route{g: g, p: up.Provider, ep: ep, up: up, base: base}
		rt.proxy = &httputil.ReverseProxy{
			Rewrite:        rt.rewrite,
			Transport:      up.Transport,
			ModifyResponse: rt.modifyResponse,
			ErrorHandler:   rt.errorHandler,
			BufferPool:     BufferPool{},
			ErrorLog:       slog.NewLogLogger(g.log.Handler(), slog.LevelDebug),
		}
		g.mux.Handle(ep.Method+" /"+name+ep.Path, rt)
		list = append(list, ep.Method+" /"+name+ep.Path)
	}
	p := up.Provider
	g.mux.HandleFunc("/"+name+"/", func(w http.ResponseWriter, r *http.Request) {
		g.m.request(name, "", http.StatusNotFound)
		writeProviderError(w, p, http.StatusNotFound,
			fmt.Sprintf("%s %s is not an endpoint of the InferTrail %s gateway; it serves %s", r.Method, r.URL.Path, name, strings.Join(list, ", ")))
	})
	return nil
}

// BufferPool is the httputil.BufferPool of the gateways' reverse proxies:
// without one, each proxied call allocates a 32 KiB copy buffer.
type BufferPool struct{}

var buffers = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

func (BufferPool) Get() []byte  { return *buffers.Get().(*[]byte) }
func (BufferPool) Put(b []byte) { buffers.Put(&b) }

// SetBody makes b the body of an outgoing request, in place of what a
// ReverseProxy hands its Rewrite: the proxy wraps the body, and
// http.Transport then sends the headers in a write of their own before
// the body, in case the body is slow to come. A body it knows to be in
// memory goes out with its headers in one write: one system call and one
// wake-up of the upstream per call instead of two (on a virtual machine
// whose cores sleep while a commit is synced, each such write was seen
// to take 50 to 200 µs). GetBody lets the transport send the body again
// on a fresh connection when a kept-alive one turns out to be closed.
func SetBody(r *http.Request, b []byte) {
	r.ContentLength = int64(len(b))
	if len(b) == 0 {
		r.Body, r.GetBody = nil, nil
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(b))
	r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
}

func writeProviderError(w http.ResponseWriter, p Provider, status int, msg string) {
	body := p.ErrorBody(status, msg)
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", fmt.Sprint(len(body)))
	if status == http.StatusServiceUnavailable {
		h.Set("Retry-After", "1")
	}
	w.WriteHeader(status)
	w.Write(body)
}
