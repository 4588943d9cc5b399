package oidctest_test

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"golang.org/x/oauth2"

	"github.com/infertrail/infertrail/access/oidctest"
)

const redirect = "http://127.0.0.1:1/callback"

// authorize sends the browser's authorization request and returns the
// query of the redirect back to the client.
func authorize(t *testing.T, c *oauth2.Config, opts ...oauth2.AuthCodeOption) url.Values {
	t.Helper()
	hc := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := hc.Get(c.AuthCodeURL("st-1", opts...))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("authorize = %d", resp.StatusCode)
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || !strings.HasPrefix(loc.String(), redirect+"?") {
		t.Fatalf("authorize redirects to %q (%v)", loc, err)
	}
	return loc.Query()
}

func TestProvider(t *testing.T) {
	for _, tc := range []struct {
		name   string
		secret string
		inForm bool
		style  oauth2.AuthStyle
	}{
		{"client_secret_basic", "s3cret+/=", false, oauth2.AuthStyleInHeader},
		{"client_secret_post", "s3cret", true, oauth2.AuthStyleInParams},
		{"public client", "", false, oauth2.AuthStyleInParams},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := oidctest.Start(t, oidctest.Config{ClientID: "ui", ClientSecret: tc.secret, SecretInForm: tc.inForm, RedirectURL: redirect})
			c := &oauth2.Config{ClientID: "ui", ClientSecret: tc.secret, RedirectURL: redirect, Scopes: []string{"openid", "email"},
				Endpoint: oauth2.Endpoint{AuthURL: p.Issuer() + "/authorize", TokenURL: p.Issuer() + "/token", AuthStyle: tc.style}}
			verifier := oauth2.GenerateVerifier()
			q := authorize(t, c, oauth2.S256ChallengeOption(verifier), oauth2.SetAuthURLParam("nonce", "n-1"))
			if q.Get("state") != "st-1" || q.Get("code") == "" {
				t.Fatalf("callback query %v", q)
			}
			tok, err := c.Exchange(t.Context(), q.Get("code"), oauth2.VerifierOption(verifier))
			if err != nil {
				t.Fatalf("Exchange: %v (refusals %q)", err, p.Refusals())
			}
			raw, _ := tok.Extra("id_token").(string)
			idt, err := jwt.ParseSigned(raw, []jose.SignatureAlgorithm{jose.ES256})
			if err != nil {
				t.Fatal(err)
			}
			var claims map[string]any
			if err := idt.UnsafeClaimsWithoutVerification(&claims); err != nil {
				t.Fatal(err)
			}
			if claims["iss"] != p.Issuer() || claims["aud"] != "ui" || claims["nonce"] != "n-1" || claims["sub"] != "user-1" {
				t.Errorf("ID token claims %v", claims)
			}
			if n := len(p.Refusals()); n != 0 {
				t.Errorf("refusals %q", p.Refusals())
			}
			// The code works once.
			_, err = c.Exchange(t.Context(), q.Get("code"), oauth2.VerifierOption(verifier))
			if re := (*oauth2.RetrieveError)(nil); !errors.As(err, &re) || re.ErrorCode != "invalid_grant" {
				t.Errorf("replayed code: %v", err)
			}
		})
	}
}

func TestProviderRefuses(t *testing.T) {
	p := oidctest.Start(t, oidctest.Config{ClientID: "ui", ClientSecret: "s3cret", RedirectURL: redirect})
	good := oauth2.Config{ClientID: "ui", ClientSecret: "s3cret", RedirectURL: redirect, Scopes: []string{"openid"},
		Endpoint: oauth2.Endpoint{AuthURL: p.Issuer() + "/authorize", TokenURL: p.Issuer() + "/token", AuthStyle: oauth2.AuthStyleInHeader}}
	verifier := oauth2.GenerateVerifier()
	pkce := []oauth2.AuthCodeOption{oauth2.S256ChallengeOption(verifier), oauth2.SetAuthURLParam("nonce", "n")}

	t.Run("authorize", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			edit func(*oauth2.Config)
			opts []oauth2.AuthCodeOption
			want string
		}{
			{"no openid scope", func(c *oauth2.Config) { c.Scopes = []string{"email"} }, pkce, "invalid_scope"},
			{"no PKCE", nil, []oauth2.AuthCodeOption{oauth2.SetAuthURLParam("nonce", "n")}, "invalid_request"},
			{"plain PKCE", nil, []oauth2.AuthCodeOption{oauth2.SetAuthURLParam("nonce", "n"), oauth2.SetAuthURLParam("code_challenge", verifier),
				oauth2.SetAuthURLParam("code_challenge_method", "plain")}, "invalid_request"},
			{"no nonce", nil, []oauth2.AuthCodeOption{oauth2.S256ChallengeOption(verifier)}, "invalid_request"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				c := good
				if tc.edit != nil {
					tc.edit(&c)
				}
				if q := authorize(t, &c, tc.opts...); q.Get("error") != tc.want || q.Get("code") != "" || q.Get("state") != "st-1" {
					t.Errorf("callback query %v, want error %s", q, tc.want)
				}
			})
		}
		p.SetLogin(oidctest.Login{Error: "access_denied", ErrorDescription: "the user said no"})
		if q := authorize(t, &good, pkce...); q.Get("error") != "access_denied" || q.Get("error_description") != "the user said no" {
			t.Errorf("denied: callback query %v", q)
		}
		p.SetLogin(oidctest.Login{Claims: map[string]any{"sub": "u"}})
		c := good
		c.RedirectURL = "http://127.0.0.1:1/elsewhere"
		resp, err := http.Get(c.AuthCodeURL("st", pkce...))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("unregistered redirect_uri: %d, want 400 and no redirect", resp.StatusCode)
		}
	})

	t.Run("token", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			edit func(*oauth2.Config)
			opts []oauth2.AuthCodeOption
			want string
		}{
			{"wrong secret", func(c *oauth2.Config) { c.ClientSecret = "guess" }, []oauth2.AuthCodeOption{oauth2.VerifierOption(verifier)}, "invalid_client"},
			{"secret in the form", func(c *oauth2.Config) { c.Endpoint.AuthStyle = oauth2.AuthStyleInParams },
				[]oauth2.AuthCodeOption{oauth2.VerifierOption(verifier)}, "invalid_client"},
			{"no verifier", nil, nil, "invalid_grant"},
			{"wrong verifier", nil, []oauth2.AuthCodeOption{oauth2.VerifierOption(oauth2.GenerateVerifier())}, "invalid_grant"},
			{"other redirect_uri", func(c *oauth2.Config) { c.RedirectURL += "x" }, []oauth2.AuthCodeOption{oauth2.VerifierOption(verifier)}, "invalid_grant"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				code := authorize(t, &good, pkce...).Get("code")
				c := good
				if tc.edit != nil {
					tc.edit(&c)
				}
				_, err := c.Exchange(context.Background(), code, tc.opts...)
				if re := (*oauth2.RetrieveError)(nil); !errors.As(err, &re) || re.ErrorCode != tc.want {
					t.Errorf("Exchange: %v, want %s", err, tc.want)
				}
			})
		}
	})
	if p.Exchanges() != 0 {
		t.Errorf("%d exchanges succeeded, want none", p.Exchanges())
	}
}
