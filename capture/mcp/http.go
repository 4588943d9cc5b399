package mcp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"mime"
	"net/http"
	"net/http/httputil"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/infertrail/infertrail"
	"github.com/infertrail/infertrail/access"
	"github.com/infertrail/infertrail/capture/gateway"
)

// Headers the MCP gateway reads from clients. X-InferTrail-* headers are
// never forwarded.
const (
	HeaderToken      = gateway.HeaderToken   // the caller's InferTrail token
	HeaderAgent      = gateway.HeaderAgent   // the agent's id, as it claims it
	HeaderSession    = gateway.HeaderSession // the records' session id (default: Mcp-Session-Id)
	HeaderToolCallID = "X-InferTrail-Tool-Call-Id"
	headerSessionID  = "Mcp-Session-Id"
)

type ctxKey struct{}

// exchange is one HTTP request relayed to a server, and its tap.
type exchange struct {
	t        *tap
	up       *upstream
	asBearer bool // the caller's Authorization held its InferTrail token
	incoming context.Context
	body     []byte // a POST's body as it is forwarded
}

func (g *Gateway) serveHTTP(w http.ResponseWriter, r *http.Request) {
	up := g.servers[r.PathValue("name")]
	if up == nil {
		writeRPCError(w, http.StatusNotFound, nil, codeInvalidRequest, fmt.Sprintf("no MCP server named %q on this gateway", r.PathValue("name")))
		return
	}
	switch r.Method {
	case http.MethodPost, http.MethodGet, http.MethodDelete:
	default:
		w.Header().Set("Allow", "GET, POST, DELETE")
		writeRPCError(w, http.StatusMethodNotAllowed, nil, codeInvalidRequest, "method not allowed: the MCP Streamable HTTP transport uses POST, GET and DELETE")
		return
	}
	id, asBearer, err := g.identify(r)
	if err != nil {
		var rl *infertrail.RateLimitError
		status := http.StatusUnauthorized
		switch {
		case errors.As(err, &rl):
			w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(max(rl.RetryAfter, time.Second).Seconds()))))
			status = http.StatusTooManyRequests
		case errors.Is(err, infertrail.ErrForbidden):
			status = http.StatusForbidden
		case errors.Is(err, infertrail.ErrUnauthenticated):
			w.Header().Set("WWW-Authenticate", `Bearer realm="infertrail"`)
		default:
			g.log.Error("mcp: authentication failed", "err", err)
			status = http.StatusServiceUnavailable
			err = errors.New("InferTrail cannot authenticate callers right now; try again")
		}
		writeRPCError(w, status, nil, codeInvalidRequest, err.Error())
		return
	}
	mcpSession := r.Header.Get(headerSessionID)
	t := &tap{g: g, server: up.Name, transport: "tcp", id: id, mcpSession: mcpSession, info: g.session(mcpSession),
		sessionID: strings.TrimSpace(r.Header.Get(HeaderSession))}
	if t.sessionID == "" {
		t.sessionID = mcpSession
	}
	ex := &exchange{t: t, up: up, asBearer: asBearer, incoming: r.Context()}
	ctx := context.WithValue(r.Context(), ctxKey{}, ex)
	if r.Method == http.MethodPost {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, int64(g.cfg.MaxMessageBytes)))
		if err != nil {
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				t.protocolError("client", nil, fmt.Sprintf("a message larger than %d bytes was refused", g.cfg.MaxMessageBytes))
				writeRPCError(w, http.StatusRequestEntityTooLarge, nil, codeInvalidRequest,
					fmt.Sprintf("the message is larger than %d bytes, the most this gateway takes", g.cfg.MaxMessageBytes))
				return
			}
			writeRPCError(w, http.StatusBadRequest, nil, codeInvalidRequest, "the request body could not be read")
			return
		}
		msgs, perr := parseMessages(body)
		if perr != nil {
			// Relayed as it is: the server answers with the error the
			// specification requires. The gateway records it.
			t.protocolError("client", body, perr.Error())
		} else {
			hints := callHints{traceparent: r.Header.Get("traceparent"), toolCallID: strings.TrimSpace(r.Header.Get(HeaderToolCallID))}
			forward, refusals := t.fromClient(ctx, body, msgs, hints)
			if refusals != nil {
				answer := refusals[0]
				if len(refusals) > 1 || bytes.HasPrefix(bytes.TrimSpace(body), []byte("[")) {
					answer = append(append([]byte("["), bytes.Join(refusals, []byte(","))...), ']')
				}
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusOK)
				w.Write(answer)
				return
			}
			body = forward
		}
		ex.body = body
		gateway.SetBody(r, body)
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, up.Timeout)
		defer cancel()
	}
	up.proxy.ServeHTTP(w, r.WithContext(ctx))
}

// identify authenticates the caller (when Auth is set) and works out the
// records' identity. It reports whether the caller's Authorization header
// held its InferTrail token, which then is not forwarded.
func (g *Gateway) identify(r *http.Request) (identity, bool, error) {
	id := identity{tenant: g.cfg.Tenant}
	claimed := strings.TrimSpace(r.Header.Get(HeaderAgent))
	if g.cfg.Auth == nil {
		if claimed != "" {
			id.actor = infertrail.Actor{ID: claimed, Type: "agent"}
		}
		return id, false, nil
	}
	tok, asBearer := strings.TrimSpace(r.Header.Get(HeaderToken)), false
	if tok == "" {
		tok = access.Bearer(r.Header.Get("Authorization"))
		asBearer = tok != ""
	}
	if tok == "" {
		return id, false, fmt.Errorf("no credential: send an InferTrail token with the gateway role in %s or as the bearer token: %w", HeaderToken, infertrail.ErrUnauthenticated)
	}
	p, err := g.cfg.Auth.Authenticate(r.Context(), tok)
	if err != nil {
		return id, false, err
	}
	if !p.Can(infertrail.PermGateway) {
		return id, false, fmt.Errorf("%s may not use the MCP gateway: it needs the gateway role: %w", p.ID, infertrail.ErrForbidden)
	}
	fp := p.Fingerprint // the authenticator's, when it fingerprints credentials
	if fp == "" {
		fp = g.fp.Of(tok)
	}
	id.actor = infertrail.Actor{ID: p.ID, Type: "agent", CredentialFingerprint: fp}
	id.token = p.Name
	if p.Tenant != infertrail.AllTenants {
		id.tenant = p.Tenant
	}
	if claimed != "" && claimed != p.ID {
		id.claimed = claimed
	}
	return id, asBearer, nil
}

func writeRPCError(w http.ResponseWriter, status int, id []byte, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(errorResponse(id, code, msg))
}

func (g *Gateway) newProxy(up *upstream) *httputil.ReverseProxy {
	return &httputil.ReverseProxy{
		Transport:     up.Transport,
		FlushInterval: -1, // server-sent events pass through at once
		BufferPool:    gateway.BufferPool{},
		ErrorLog:      slog.NewLogLogger(g.log.Handler(), slog.LevelDebug),
		Rewrite: func(pr *httputil.ProxyRequest) {
			ex := pr.In.Context().Value(ctxKey{}).(*exchange)
			u := *up.url
			pr.Out.URL = &u
			pr.Out.Host = ""
			if pr.In.Method == http.MethodPost {
				gateway.SetBody(pr.Out, ex.body)
			}
			h := pr.Out.Header
			for k := range h {
				if len(k) > 13 && strings.EqualFold(k[:13], "x-infertrail-") {
					delete(h, k)
				}
			}
			if ex.asBearer {
				h.Del("Authorization")
				if up.Authorization != "" {
					h.Set("Authorization", string(up.Authorization))
				}
			}
		},
		ModifyResponse: func(resp *http.Response) error {
			ex := resp.Request.Context().Value(ctxKey{}).(*exchange)
			if sid := resp.Header.Get(headerSessionID); sid != "" {
				ex.t.mu.Lock()
				if ex.t.mcpSession == "" {
					ex.t.mcpSession = sid
					if ex.t.sessionID == "" {
						ex.t.sessionID = sid
					}
				}
				ex.t.mu.Unlock()
			}
			resp.Body = g.newCapture(ex, resp)
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			ex := r.Context().Value(ctxKey{}).(*exchange)
			reason := "the MCP server could not be reached: " + err.Error()
			if ex.incoming.Err() != nil {
				reason = "the client went away before the MCP server answered"
			} else if errors.Is(err, context.DeadlineExceeded) {
				reason = fmt.Sprintf("the MCP server did not answer within %s", ex.up.Timeout)
			}
			ex.t.end(reason)
			g.log.Warn("mcp: upstream failed", "server", ex.up.Name, "err", err)
			if ex.incoming.Err() == nil {
				writeRPCError(w, http.StatusBadGateway, nil, codeInvalidRequest, "the MCP server "+ex.up.Name+" could not be reached")
			}
		},
	}
}

// capture is a response body that the gateway reads along as the client
// does: every message in it goes to the tap; at its end, calls still
// unanswered are recorded as such.
type capture struct {
	ex      *exchange
	body    io.ReadCloser
	sse     *gateway.SSEParser
	json    bytes.Buffer // a JSON body, kept up to MaxCaptureBytes
	length  int64        // the JSON body's Content-Length, or -1
	tooBig  bool
	isJSON  bool
	parsed  bool // the JSON body was read whole and handed to the tap
	once    sync.Once
	readErr error
}

func (g *Gateway) newCapture(ex *exchange, resp *http.Response) io.ReadCloser {
	c := &capture{ex: ex, body: resp.Body, length: resp.ContentLength}
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	switch mt {
	case "text/event-stream":
		c.sse = gateway.NewSSEParser(g.cfg.MaxMessageBytes, func(_ string, data []byte) {
			if data == nil {
				ex.t.protocolError("server", nil, fmt.Sprintf("an event larger than %d bytes was relayed without being captured", g.cfg.MaxMessageBytes))
				return
			}
			if len(bytes.TrimSpace(data)) > 0 {
				ex.t.fromServer(data)
			}
		})
	case "application/json":
		c.isJSON = true
	}
	return c
}

func (c *capture) Read(p []byte) (int, error) {
	n, err := c.body.Read(p)
	if n > 0 {
		switch {
		case c.sse != nil:
			c.sse.Feed(p[:n])
		case c.isJSON && !c.tooBig:
			if c.json.Len()+n > c.ex.t.g.cfg.MaxCaptureBytes {
				c.tooBig, c.json = true, bytes.Buffer{}
			} else {
				c.json.Write(p[:n])
				if int64(c.json.Len()) == c.length {
					// Whole: the tap sees it before the client does, as
					// the client may send its next request before EOF.
					c.parsed = true
					c.ex.t.fromServer(c.json.Bytes())
				}
			}
		}
	}
	if err != nil {
		c.readErr = err
		c.done()
	}
	return n, err
}

func (c *capture) Close() error {
	err := c.body.Close()
	c.done()
	return err
}

// done is called once, at the body's end or when it is closed early.
func (c *capture) done() {
	c.once.Do(func() {
		t := c.ex.t
		switch {
		case c.isJSON && c.tooBig:
			t.protocolError("server", nil, fmt.Sprintf("a response larger than %d bytes was relayed without being captured", t.g.cfg.MaxCaptureBytes))
		case c.isJSON && !c.parsed && errors.Is(c.readErr, io.EOF) && c.json.Len() > 0:
			t.fromServer(c.json.Bytes())
		}
		if t.waiting() {
			reason := "the MCP server's answer broke off"
			switch {
			case c.ex.incoming.Err() != nil:
				reason = "the client went away before the answer came"
			case errors.Is(c.readErr, io.EOF):
				reason = "the MCP server ended the response without answering"
			case c.readErr == nil:
				reason = "the client stopped reading before the answer came"
			}
			t.end(reason)
		}
		if si := t.sessionInfo(); si != nil {
			t.mu.Lock()
			sid := t.mcpSession
			t.mu.Unlock()
			t.g.remember(sid, si)
		}
	})
}
