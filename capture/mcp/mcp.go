// Package mcp is InferTrail's MCP gateway: it relays the Model Context
// Protocol between agents and MCP servers — over Streamable HTTP, and over
// stdio by wrapping a server command — and records what the agents did:
// initialize, tools/list, tools/call, resources/read, prompts/get and
// protocol errors. The relay is byte-faithful: capture never changes a
// message; only a policy's obligation to redact a tools/call's arguments
// does. A tools/call is durable in the trail before it is forwarded.
package mcp

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"net/url"
	"regexp"
	"sync"
	"time"

	"github.com/infertrail/infertrail"
	"github.com/infertrail/infertrail/capture/gateway"
	"github.com/infertrail/infertrail/internal/quiet"
	"github.com/infertrail/infertrail/policy/obligation"
	"github.com/infertrail/infertrail/redact"
)

// Server is an upstream MCP server reached over Streamable HTTP.
type Server struct {
	Name string // the path segment: the gateway serves it at /mcp/{Name}
	URL  string // the server's MCP endpoint, http:// or https://
	// ConnectTimeout bounds TCP and TLS setup (default 10 s);
	// ResponseHeaderTimeout the wait for a response's headers (default 10
	// minutes: a server may answer a long tool call as one JSON body);
	// Timeout a POST exchange, stream included (default 30 minutes). GET
	// streams of server messages have no total timeout.
	ConnectTimeout        time.Duration
	ResponseHeaderTimeout time.Duration
	Timeout               time.Duration
	// Authorization, if set, is sent upstream as the Authorization header
	// for callers who authenticated with an InferTrail token in theirs.
	Authorization gateway.Secret
	// TLS configures connections to the server (default: system roots).
	TLS *tls.Config
	// Transport, if set, replaces the transport built from the settings above.
	Transport http.RoundTripper
}

var namePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// Durability says when a tool call's request record must be durable.
type Durability int

// The durability modes.
const (
	// RequestAhead (the default): a tools/call request is durable before
	// it is forwarded; if the trail cannot write it, the call fails with a
	// JSON-RPC error rather than run unrecorded.
	RequestAhead Durability = iota
	// Async: every record is written after the fact; nothing waits, but
	// nothing is dropped (calls wait for room when the trail falls behind).
	Async
)

// ParseDurability parses "request-ahead" or "async".
func ParseDurability(s string) (Durability, error) {
	switch s {
	case "", "request-ahead":
		return RequestAhead, nil
	case "async":
		return Async, nil
	}
	return 0, fmt.Errorf("MCP durability %q: want request-ahead or async: %w", s, infertrail.ErrInvalid)
}

// Config configures a Gateway. Zero values are documented defaults.
type Config struct {
	Recorder infertrail.Recorder // required
	Secret   []byte              // ≥ 32 bytes, required with Auth: keys credential fingerprints
	Servers  []Server            // HTTP upstreams; none is fine for a stdio-only gateway
	// Auth, if set, authenticates HTTP callers: an InferTrail token with
	// the gateway role, in X-InferTrail-Token or as the bearer token.
	Auth       infertrail.Authenticator
	Durability Durability
	// Policy, if set, decides on every tools/call before it is forwarded
	// (point tool.call). A denial is answered with JSON-RPC error -32011
	// and the call never reaches the server; every decision with a policy
	// behind it is recorded as a policy_decision record that governs the
	// call's request record, durable with it. The obligations of an allow
	// or modify are carried out on the call's arguments before it is
	// forwarded (see Redactors); a call whose obligations cannot be
	// carried out is refused as a denial is.
	Policy infertrail.PolicyEngine
	// Redactors is the rule set obligations redact with (nil:
	// obligation.NewRedactors(Secret, nil), the default rules).
	Redactors *obligation.Redactors
	// Approvals, if set, holds a tools/call its policy says needs an
	// approval (require_approval) until an approver decides or the wait
	// ends: the call's request record and the decision are made durable,
	// then the call waits and is forwarded only if approved; otherwise it
	// is answered with JSON-RPC error -32011. Nil refuses such a call at
	// once, as a denial. Over stdio, messages are relayed in order, so the
	// client's later messages wait behind a held call.
	Approvals Approver
	// Tenant is the tenant of records whose caller has none (default "default").
	Tenant string
	// MaxMessageBytes bounds one message, or one HTTP request body, that
	// the gateway reads (default 4 MiB). A larger client message is
	// refused with a JSON-RPC error; a larger server message is relayed
	// without being captured, and recorded as such.
	MaxMessageBytes int
	// MaxCaptureBytes bounds what is kept of one HTTP response to rebuild
	// its messages (default 16 MiB).
	MaxCaptureBytes int
	// MaxSessions bounds the HTTP sessions whose initialize the gateway
	// remembers (default 10,000; the oldest is forgotten first).
	MaxSessions int
	Spool       gateway.SpoolConfig // the after-the-fact writer; Recorder and Logger are filled in
	Logger      *slog.Logger
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

// Gateway is the MCP gateway. It is an http.Handler serving
// /mcp/{name} for each configured server, and runs stdio sessions
// (Gateway.Stdio). It is safe for concurrent use.
type Gateway struct {
	cfg     Config
	fp      *redact.Fingerprinter
	sp      *gateway.Spool
	log     *slog.Logger
	servers map[string]*upstream
	mux     *http.ServeMux
	// unrecorded follows tool calls refused because their record could
	// not be written: while the trail is down or full, a line every 10 s.
	unrecorded quiet.Run

	mu       sync.Mutex
	sessions map[string]*sessionInfo // by Mcp-Session-Id
	order    []string                // session ids, oldest first
}

type upstream struct {
	Server
	url   *url.URL
	proxy *httputil.ReverseProxy
}

// New returns a gateway over cfg.
func New(cfg Config) (*Gateway, error) {
	if cfg.Recorder == nil {
		return nil, errors.New("new MCP gateway: Recorder is required")
	}
	if cfg.Tenant == "" {
		cfg.Tenant = infertrail.DefaultTenant
	} else if !infertrail.ValidTenant(cfg.Tenant) {
		return nil, fmt.Errorf("new MCP gateway: tenant %q is not a valid tenant name", cfg.Tenant)
	}
	if cfg.MaxMessageBytes <= 0 {
		cfg.MaxMessageBytes = 4 << 20
	}
	if cfg.MaxCaptureBytes <= 0 {
		cfg.MaxCaptureBytes = 16 << 20
	}
	if cfg.MaxSessions <= 0 {
		cfg.MaxSessions = 10000
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
	var fp *redact.Fingerprinter
	if cfg.Auth != nil || cfg.Secret != nil {
		var err error
		if fp, err = redact.NewFingerprinter(cfg.Secret); err != nil {
			return nil, fmt.Errorf("new MCP gateway: %w", err)
		}
	}
	sc := cfg.Spool
	sc.Recorder, sc.Logger = cfg.Recorder, cfg.Logger
	g := &Gateway{cfg: cfg, fp: fp, sp: gateway.NewSpool(sc), log: cfg.Logger, servers: map[string]*upstream{},
		mux: http.NewServeMux(), sessions: map[string]*sessionInfo{}}
	for _, s := range cfg.Servers {
		if !namePattern.MatchString(s.Name) {
			return nil, fmt.Errorf("new MCP gateway: server name %q: want 1 to 64 of A-Z a-z 0-9 . _ -", s.Name)
		}
		if g.servers[s.Name] != nil {
			return nil, fmt.Errorf("new MCP gateway: two servers are named %q", s.Name)
		}
		u, err := url.Parse(s.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("new MCP gateway: server %s: URL %q: want http:// or https://", s.Name, s.URL)
		}
		up := &upstream{Server: s, url: u}
		if up.ConnectTimeout <= 0 {
			up.ConnectTimeout = 10 * time.Second
		}
		if up.ResponseHeaderTimeout <= 0 {
			up.ResponseHeaderTimeout = 10 * time.Minute
		}
		if up.Timeout <= 0 {
			up.Timeout = 30 * time.Minute
		}
		if up.Transport == nil {
			up.Transport = gateway.NewTransport(up.ConnectTimeout, up.ResponseHeaderTimeout, up.TLS)
		}
		up.proxy = g.newProxy(up)
		g.servers[s.Name] = up
	}
	g.mux.HandleFunc("/mcp/{name}", g.serveHTTP)
	return g, nil
}

// ServeHTTP relays one Streamable HTTP request to the named server.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) { g.mux.ServeHTTP(w, r) }

// Names returns the configured HTTP servers' names.
func (g *Gateway) Names() []string {
	var out []string
	for _, s := range g.cfg.Servers {
		out = append(out, s.Name)
	}
	return out
}

// Close waits until every record handed to the trail is durable, or ctx
// ends.
func (g *Gateway) Close(ctx context.Context) error {
	if err := g.sp.Flush(ctx); err != nil {
		return fmt.Errorf("close MCP gateway: %w", err)
	}
	return nil
}

// sessionInfo is what an initialize exchange told about a session.
type sessionInfo struct {
	client, server  implementation
	protocolVersion string
}

type implementation struct {
	Name    string `json:"name"`
	Version string `json:"version"`
}

func (g *Gateway) session(id string) *sessionInfo {
	if id == "" {
		return nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.sessions[id]
}

func (g *Gateway) remember(id string, si *sessionInfo) {
	if id == "" || si == nil {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if _, ok := g.sessions[id]; !ok {
		g.order = append(g.order, id)
	}
	g.sessions[id] = si
	for len(g.order) > g.cfg.MaxSessions {
		delete(g.sessions, g.order[0])
		g.order = g.order[1:]
	}
}
