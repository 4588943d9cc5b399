package gateway_test

import (
	"strings"
	"testing"

	"github.com/infertrail/infertrail"
	"github.com/infertrail/infertrail/access"
	"github.com/infertrail/infertrail/capture/gateway"
	"github.com/infertrail/infertrail/ledger"
)

// TestTokens: with Auth set, callers present an InferTrail token with the
// gateway role, in X-InferTrail-Token (their provider key passes through)
// or as their API key (the upstream's own key replaces it); the token
// never reaches the upstream; everything else is refused before the
// upstream sees it, in the provider's error shape.
func TestTokens(t *testing.T) {
	up := newUpstream(t, okUpstream)
	var tokens *access.Tokens
	rig := newRig(t, up, func(c *gateway.Config) {
		lg := c.Recorder.(*ledger.Log)
		a, err := access.New(access.Config{Tokens: lg.Store(), RateLimit: 1, Burst: 2})
		if err != nil {
			t.Fatal(err)
		}
		c.Auth, tokens = a, &access.Tokens{Store: lg.Store(), Recorder: lg}
		c.Upstreams[0].Key = "sk-gateway-own-key-0123456789"
	})
	mint := func(tenant string, roles ...infertrail.Role) (string, infertrail.Token) {
		s, tok, err := tokens.Create(t.Context(), access.TokenRequest{Name: "bot-" + tenant, Tenant: tenant, Roles: roles}, nil, infertrail.Actor{ID: "test"})
		if err != nil {
			t.Fatal(err)
		}
		return s, tok
	}
	agent, agentTok := mint("acme", infertrail.RoleGateway)
	reader, _ := mint("acme", infertrail.RoleAuditor)

	// In the header: the caller's own key goes upstream, the token does not.
	resp := rig.post(t, t.Context(), `{"model":"m"}`, map[string]string{gateway.HeaderToken: agent})
	readAll(t, resp)
	if resp.StatusCode != 200 || up.auth[0] != "Bearer sk-caller-secret-0123456789" || up.calls[0].Header.Get(gateway.HeaderToken) != "" {
		t.Fatalf("status %d, upstream saw %q %v", resp.StatusCode, up.auth[0], up.calls[0].Header)
	}
	// As the API key: the gateway's own key goes upstream.
	resp = rig.post(t, t.Context(), `{"model":"m"}`, map[string]string{"Authorization": "Bearer " + agent})
	readAll(t, resp)
	if resp.StatusCode != 200 || up.auth[1] != "Bearer sk-gateway-own-key-0123456789" {
		t.Fatalf("status %d, upstream saw %q", resp.StatusCode, up.auth[1])
	}
	// Refused: no token, an unknown one, a role without the gateway
	// permission, and over the rate limit.
	other, _ := access.NewToken()
	for _, c := range []struct {
		hdr  map[string]string
		code int
		want string
	}{
		{nil, 401, gateway.HeaderToken},
		{map[string]string{gateway.HeaderToken: other}, 401, "unknown API token"},
		{map[string]string{gateway.HeaderToken: reader}, 403, "gateway role"},
		{map[string]string{gateway.HeaderToken: agent}, 429, "requests per second"},
	} {
		resp := rig.post(t, t.Context(), `{"model":"m"}`, c.hdr)
		b := readAll(t, resp)
		if resp.StatusCode != c.code || !strings.Contains(string(b), c.want) || !strings.Contains(string(b), `"error"`) {
			t.Errorf("%v: %d %s, want %d with %q", c.hdr, resp.StatusCode, b, c.code, c.want)
		}
		if c.code == 429 && resp.Header.Get("Retry-After") == "" {
			t.Error("429 without Retry-After")
		}
	}
	if up.count() != 2 {
		t.Fatalf("%d upstream calls, want 2", up.count())
	}
	recs := rig.records(t)
	var calls, refusals int
	for _, r := range recs {
		if r.Kind == infertrail.KindAccess {
			continue
		}
		switch {
		case r.Attr("infertrail.refused") != nil:
			refusals++
		case r.Attr("infertrail.phase") == "request":
			calls++
			if r.Tenant != "acme" || r.Actor.ID != "token/"+agentTok.ID.String() || r.Attr("infertrail.token") != "bot-acme" {
				t.Errorf("request record %+v %v", r.Actor, r.Attributes)
			}
		}
	}
	// The rate-limited call is not recorded: a flood must not flood the trail.
	if calls != 2 || refusals != 3 {
		t.Errorf("%d calls and %d refusals recorded, want 2 and 3", calls, refusals)
	}
}
