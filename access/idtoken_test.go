package access

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/infertrail/infertrail"
)

const oidcClientID = "infertrail-ui"

func TestOIDCClientIDAudience(t *testing.T) {
	k := oidcTestKey(t, "rsa", "k1")
	idp := newOIDCTestIDP(t, k)
	clk := newOIDCTestClock()
	tests := []struct {
		name               string
		audience, clientID string
		aud                any
		wantErr            string
	}{
		{name: "audience", audience: oidcAudience, clientID: oidcClientID, aud: oidcAudience},
		{name: "client id", audience: oidcAudience, clientID: oidcClientID, aud: oidcClientID},
		{name: "client id among several", audience: oidcAudience, clientID: oidcClientID, aud: []string{"x", oidcClientID}},
		{name: "client id alone", clientID: oidcClientID, aud: oidcClientID},
		{name: "neither", audience: oidcAudience, clientID: oidcClientID, aud: "other",
			wantErr: `wrong audience "other": want "infertrail" or "infertrail-ui"`},
		{name: "client id without ClientID", audience: oidcAudience, aud: oidcClientID, wantErr: `want "infertrail"`},
		{name: "audience without Audience", clientID: oidcClientID, aud: oidcAudience, wantErr: `want "infertrail-ui"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := newTestOIDC(t, OIDCConfig{Issuer: oidcIssuer, Audience: tt.audience, ClientID: tt.clientID, JWKSURL: idp.srv.URL, Now: clk.Now})
			c := oidcTestClaims(clk.Now())
			c["aud"] = tt.aud
			tok := signJWTWith(t, k, c)
			p, err := o.Verify(t.Context(), tok)
			if tt.wantErr != "" {
				checkOIDCRefusal(t, err, tok, tt.wantErr)
				return
			}
			if err != nil || p.Tenant != "acme" || !reflect.DeepEqual(p.Roles, []infertrail.Role{infertrail.RoleAuditor}) {
				t.Errorf("Verify = %+v, %v", p, err)
			}
		})
	}
}

func TestOIDCVerifyIDToken(t *testing.T) {
	k := oidcTestKey(t, "rsa", "k1")
	idp := newOIDCTestIDP(t, k)
	clk := newOIDCTestClock()
	now := clk.Now()
	const nonce = "n-0S6_WzA2Mj"
	o := newTestOIDC(t, OIDCConfig{Issuer: oidcIssuer, Audience: oidcAudience, ClientID: oidcClientID, JWKSURL: idp.srv.URL, Now: clk.Now})
	tests := []struct {
		name    string
		claims  func(map[string]any)
		nonce   string // default nonce
		wantErr string
	}{
		{name: "valid"},
		{name: "azp is the client", claims: func(c map[string]any) { c["aud"] = []string{oidcClientID, "api"}; c["azp"] = oidcClientID }},
		{name: "azp is another client", claims: func(c map[string]any) { c["azp"] = "other-app" },
			wantErr: `issued to another client (azp "other-app")`},
		{name: "wrong nonce", nonce: "another", wantErr: "wrong nonce"},
		{name: "no nonce", claims: func(c map[string]any) { delete(c, "nonce") }, wantErr: "has no nonce"},
		{name: "nonce not a string", claims: func(c map[string]any) { c["nonce"] = 7 }, wantErr: "has no nonce"},
		{name: "API audience only", claims: func(c map[string]any) { c["aud"] = oidcAudience },
			wantErr: `wrong audience "infertrail": want the client id "infertrail-ui"`},
		{name: "expired", claims: func(c map[string]any) { c["exp"] = now.Add(-2 * time.Minute).Unix() }, wantErr: "expired at"},
		{name: "wrong issuer", claims: func(c map[string]any) { c["iss"] = "https://evil.example" }, wantErr: "wrong issuer"},
		{name: "no role", claims: func(c map[string]any) { c["roles"] = []string{"marketing"} }, wantErr: "grants no InferTrail role"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := oidcTestClaims(now)
			c["aud"], c["nonce"] = oidcClientID, nonce
			if tt.claims != nil {
				tt.claims(c)
			}
			want := nonce
			if tt.nonce != "" {
				want = tt.nonce
			}
			tok := signJWTWith(t, k, c)
			p, err := o.VerifyIDToken(t.Context(), tok, want)
			if tt.wantErr != "" {
				checkOIDCRefusal(t, err, tok, tt.wantErr)
				return
			}
			if err != nil {
				t.Fatalf("VerifyIDToken: %v", err)
			}
			if p.ID != "oidc:"+oidcIssuer+"#alice" || p.Name != "alice@example.com" || p.Tenant != "acme" {
				t.Errorf("VerifyIDToken = %+v", p)
			}
			// The same token authenticates API calls.
			if q, err := o.Verify(t.Context(), tok); err != nil || !reflect.DeepEqual(p, q) {
				t.Errorf("Verify = %+v, %v; want %+v", q, err, p)
			}
		})
	}

	t.Run("no ClientID", func(t *testing.T) {
		o := newTestOIDC(t, OIDCConfig{Issuer: oidcIssuer, Audience: oidcAudience, JWKSURL: idp.srv.URL, Now: clk.Now})
		c := oidcTestClaims(now)
		c["nonce"] = nonce
		if _, err := o.VerifyIDToken(t.Context(), signJWTWith(t, k, c), nonce); err == nil || !strings.Contains(err.Error(), "ClientID is not set") {
			t.Errorf("VerifyIDToken without ClientID: %v", err)
		}
	})
	t.Run("no nonce to check", func(t *testing.T) {
		c := oidcTestClaims(now)
		c["aud"], c["nonce"] = oidcClientID, ""
		if _, err := o.VerifyIDToken(t.Context(), signJWTWith(t, k, c), ""); err == nil || !strings.Contains(err.Error(), "no nonce to check") {
			t.Errorf("VerifyIDToken with an empty nonce: %v", err)
		}
	})
}
