package gateway

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"

	"github.com/infertrail/infertrail"
)

// Secret is a credential held in configuration. It never prints: its
// String and LogValue give "[redacted]".
type Secret string

// String implements fmt.Stringer without revealing the secret.
func (Secret) String() string { return "[redacted]" }

// LogValue implements slog.LogValuer without revealing the secret.
func (Secret) LogValue() slog.Value { return slog.StringValue("[redacted]") }

// GoString implements fmt.GoStringer without revealing the secret.
func (Secret) GoString() string { return `"[redacted]"` }

// VirtualKey is a key the gateway issues to an agent in place of a provider
// key: it names the non-human identity that acts, and holds the upstream
// keys the gateway uses on its behalf, so agents never hold provider keys.
type VirtualKey struct {
	Name   string // a label for operators, recorded as infertrail.virtual_key
	Key    Secret // what the agent presents, as it would present a provider key
	Agent  string // the agent id recorded as actor.id
	Owner  string // the human or team the agent acts for, recorded as actor.on_behalf_of
	Tenant string // the tenant of the agent's records (default: the gateway's)
	// Upstream holds the key to send upstream, by provider name. A
	// provider absent here is refused for this key.
	Upstream map[string]Secret
}

// identity is who is calling, as far as the gateway can tell.
type identity struct {
	actor    infertrail.Actor
	tenant   string
	vkey     string // the virtual key's name, if one was used
	token    string // the InferTrail token's name, if one was used
	claimed  string // the X-InferTrail-Agent header when it is not the authenticated agent
	upstream string // the key to send upstream
	replace  bool   // replace the caller's credential with upstream
}

// identify works out who is calling from the request's credential and
// headers. Headers are claims: with a virtual key or an InferTrail token
// the agent comes from the key, and a different X-InferTrail-Agent is kept
// only as a claim. With Config.Auth set, a caller must present a virtual
// key or an InferTrail token that grants the gateway permission: in
// X-InferTrail-Token (its own provider key then passes through), or as its
// API key (the upstream's configured key then replaces it).
func (g *Gateway) identify(ctx context.Context, p Provider, h http.Header) (identity, error) {
	cred := p.Credential(h)
	var fp string // the credential's fingerprint, computed once: it is an HMAC
	if cred != "" {
		fp = g.fp.Of(cred)
	}
	claimed := strings.TrimSpace(h.Get(HeaderAgent))
	id := identity{tenant: g.cfg.Tenant}
	if tok := strings.TrimSpace(h.Get(HeaderToken)); tok != "" || cred != "" && g.cfg.Auth != nil && g.vkeys[fp] == nil {
		if g.cfg.Auth == nil {
			return id, fmt.Errorf("this gateway does not authenticate InferTrail tokens: leave %s out: %w", HeaderToken, infertrail.ErrUnauthenticated)
		}
		asKey := tok == ""
		if asKey {
			tok = cred
		}
		pr, err := g.cfg.Auth.Authenticate(ctx, tok)
		if err != nil && asKey && errors.Is(err, infertrail.ErrUnauthenticated) {
			err = fmt.Errorf("the API key is neither a virtual key nor a valid InferTrail token (to pass your own provider key through, send your InferTrail token in %s): %w", HeaderToken, err)
		}
		if err != nil {
			return id, err
		}
		if cred != "" {
			id.actor.CredentialFingerprint = fp
		}
		if !pr.Can(infertrail.PermGateway) {
			return id, fmt.Errorf("%s may not use the gateway: it needs the gateway role: %w", pr.ID, infertrail.ErrForbidden)
		}
		if asKey {
			up := g.keys[p.Name()]
			if up == "" {
				return id, fmt.Errorf("the API key is an InferTrail token, and the %s gateway has no provider key of its own to send in its place: send your provider key as the API key and the token in %s: %w",
					p.Name(), HeaderToken, infertrail.ErrUnauthenticated)
			}
			id.upstream, id.replace = string(up), true
		}
		id.actor.ID, id.actor.Type, id.token = pr.ID, "agent", pr.Name
		if pr.Tenant != infertrail.AllTenants {
			id.tenant = pr.Tenant
		}
		if claimed != "" {
			id.claimed = claimed
		}
		return id, nil
	}
	if cred != "" {
		id.actor.CredentialFingerprint = fp
		if vk, ok := g.vkeys[fp]; ok {
			up, ok := vk.Upstream[p.Name()]
			if !ok {
				return id, fmt.Errorf("virtual key %q may not use the %s gateway: %w", vk.Name, p.Name(), infertrail.ErrUnauthenticated)
			}
			id.actor.ID, id.actor.Type, id.actor.OnBehalfOf = vk.Agent, "agent", vk.Owner
			if vk.Tenant != "" {
				id.tenant = vk.Tenant
			}
			id.vkey, id.upstream, id.replace = vk.Name, string(up), true
			if claimed != "" && claimed != vk.Agent {
				id.claimed = claimed
			}
			return id, nil
		}
	}
	if g.cfg.Auth != nil {
		return id, fmt.Errorf("no credential: send an InferTrail token with the gateway role as the API key or in %s, or a virtual key: %w", HeaderToken, infertrail.ErrUnauthenticated)
	}
	if g.cfg.RequireVirtualKey {
		if cred == "" {
			return id, fmt.Errorf("no API key: this gateway takes virtual keys only: %w", infertrail.ErrUnauthenticated)
		}
		return id, fmt.Errorf("the API key is not a virtual key of this gateway: %w", infertrail.ErrUnauthenticated)
	}
	if claimed != "" {
		id.actor.ID, id.actor.Type = claimed, "agent"
	}
	return id, nil
}

// TraceContext is the W3C trace context of one proxied call: the caller's
// trace (or a new one), the caller's span as parent, and the gateway's own
// span, which is what the upstream sees as its parent.
type TraceContext struct {
	TraceID  string // 32 lowercase hex digits
	ParentID string // the caller's span, 16 lowercase hex digits; "" for a new trace
	SpanID   string // the capture point's own span
	Flags    string
}

// NewTraceContext continues the trace of a W3C traceparent value; anything
// else (absent, malformed, all-zero ids) starts a new trace.
func NewTraceContext(traceparent string) TraceContext {
	tc := TraceContext{SpanID: randomHex(8), Flags: "01"}
	v := strings.TrimSpace(traceparent)
	if len(v) >= 55 && v[2] == '-' && v[35] == '-' && v[52] == '-' && v[:2] != "ff" &&
		isHex(v[:2]) && isLowerHex(v[3:35]) && isLowerHex(v[36:52]) && isHex(v[53:55]) &&
		(len(v) == 55 || v[:2] != "00") &&
		strings.Trim(v[3:35], "0") != "" && strings.Trim(v[36:52], "0") != "" {
		tc.TraceID, tc.ParentID, tc.Flags = v[3:35], v[36:52], strings.ToLower(v[53:55])
		return tc
	}
	tc.TraceID = randomHex(16)
	return tc
}

// Header returns the traceparent value that makes the capture point's
// span the parent of what it calls.
func (tc TraceContext) Header() string {
	return "00-" + tc.TraceID + "-" + tc.SpanID + "-" + tc.Flags
}

func randomHex(n int) string {
	b := make([]byte, n)
	for {
		rand.Read(b)
		for _, c := range b {
			if c != 0 {
				return hex.EncodeToString(b)
			}
		}
	}
}

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}
