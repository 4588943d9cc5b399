// Package oidctest runs a scripted OpenID provider for tests: discovery,
// an authorization endpoint that signs a configured user in (at once, or
// when Approve is pressed on its page) or refuses, a token endpoint that checks the code, the client and PKCE,
// and a JWKS, all in the wire format of OpenID Connect Core 1.0, RFC 6749
// and RFC 7636.
package oidctest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"html"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// Config describes the provider and the one client registered with it.
type Config struct {
	// ClientID is the registered client's id (required).
	ClientID string
	// ClientSecret is its secret; empty makes it a public client, which
	// sends its client_id in the token request's form and no secret.
	ClientSecret string
	// SecretInForm makes the provider take the secret in the token
	// request's form (client_secret_post) and not by HTTP Basic
	// authentication (client_secret_basic, the default).
	SecretInForm bool
	// RedirectURL is the registered redirect URI; SetRedirectURL can set
	// it later, once the client's server has its address.
	RedirectURL string
	// Host is the host name in the issuer URL: "127.0.0.1" (the default)
	// or "localhost", which a browser takes for another site.
	Host string
	// Consent makes the authorization endpoint show a page with an
	// Approve button, as a real provider shows its login page, instead of
	// redirecting back at once; the navigation back to the client then
	// starts on the provider's site, as it does for a real person.
	Consent bool
	// TokenTTL is how long an ID token is valid (default 10 minutes).
	TokenTTL time.Duration
	// Discovery, if set, edits the discovery document before it is served.
	Discovery func(doc map[string]any)
	// Now is the provider's clock (default time.Now).
	Now func() time.Time
}

// Login is what the provider does at the next authorization requests.
type Login struct {
	// Claims are the user's claims: sub, email, roles, tenant and the like.
	// The provider adds iss, aud, exp, iat and nonce.
	Claims map[string]any
	// Error, if set, is the error the authorization endpoint answers
	// instead of a code, such as "access_denied", with ErrorDescription.
	Error, ErrorDescription string
	// Edit, if set, changes the ID token's claims just before they are
	// signed: a wrong nonce, audience or expiry.
	Edit func(claims map[string]any)
}

// Provider is a running scripted OpenID provider. Its methods are safe
// for concurrent use.
type Provider struct {
	cfg    Config
	srv    *httptest.Server
	issuer string
	key    jose.JSONWebKey

	mu        sync.Mutex
	redirect  string
	login     Login
	grants    map[string]*grant     // by code
	consents  map[string]url.Values // authorization requests waiting for Approve, by ticket
	used      map[string]bool       // codes exchanged already
	refusals  []string
	exchanges int
}

// grant is an authorization code and what it was issued for.
type grant struct {
	redirect, challenge, nonce string
	login                      Login
	expires                    time.Time
}

// Start starts a provider that stops when tb's test ends. Its issuer is
// http://<Host>:<port>/realms/test.
func Start(tb testing.TB, cfg Config) *Provider {
	tb.Helper()
	if cfg.ClientID == "" {
		tb.Fatal("oidctest: ClientID is required")
	}
	if cfg.Host == "" {
		cfg.Host = "127.0.0.1"
	}
	if cfg.TokenTTL == 0 {
		cfg.TokenTTL = 10 * time.Minute
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	p := &Provider{cfg: cfg, redirect: cfg.RedirectURL, grants: map[string]*grant{}, used: map[string]bool{}, consents: map[string]url.Values{},
		key:   jose.JSONWebKey{Key: priv, KeyID: "test-" + randomString(6), Algorithm: string(jose.ES256), Use: "sig"},
		login: Login{Claims: map[string]any{"sub": "user-1", "email": "user@bank.example", "roles": []string{"investigator"}}}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /realms/test/.well-known/openid-configuration", p.discovery)
	mux.HandleFunc("GET /realms/test/authorize", p.authorize)
	mux.HandleFunc("POST /realms/test/approve", p.approve)
	mux.HandleFunc("/realms/test/token", p.token)
	mux.HandleFunc("GET /realms/test/jwks", p.jwks)
	p.srv = httptest.NewServer(mux)
	tb.Cleanup(p.srv.Close)
	_, port, _ := net.SplitHostPort(p.srv.Listener.Addr().String())
	p.issuer = "http://" + net.JoinHostPort(cfg.Host, port) + "/realms/test"
	return p
}

// Issuer is the provider's issuer URL.
func (p *Provider) Issuer() string { return p.issuer }

// SetRedirectURL registers the client's redirect URI.
func (p *Provider) SetRedirectURL(u string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.redirect = u
}

// SetLogin sets what the next authorization requests do.
func (p *Provider) SetLogin(l Login) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.login = l
}

// Refusals lists the requests the provider refused, in order, each as
// "endpoint: error: description". A client that speaks the protocol
// right, with nobody tampering, causes none.
func (p *Provider) Refusals() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.refusals)
}

// Exchanges counts the token requests that were answered with tokens.
func (p *Provider) Exchanges() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.exchanges
}

// Sign signs claims as the provider signs ID tokens.
func (p *Provider) Sign(claims map[string]any) (string, error) {
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: p.key}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return "", err
	}
	return jwt.Signed(s).Claims(claims).Serialize()
}

func (p *Provider) refuse(endpoint, code, desc string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.refusals = append(p.refusals, endpoint+": "+code+": "+desc)
}

func (p *Provider) discovery(w http.ResponseWriter, r *http.Request) {
	auth := "client_secret_basic"
	if p.cfg.SecretInForm {
		auth = "client_secret_post"
	}
	if p.cfg.ClientSecret == "" {
		auth = "none"
	}
	doc := map[string]any{
		"issuer":                                p.issuer,
		"authorization_endpoint":                p.issuer + "/authorize",
		"token_endpoint":                        p.issuer + "/token",
		"jwks_uri":                              p.issuer + "/jwks",
		"response_types_supported":              []string{"code"},
		"subject_types_supported":               []string{"public"},
		"id_token_signing_alg_values_supported": []string{"ES256"},
		"scopes_supported":                      []string{"openid", "email", "profile"},
		"grant_types_supported":                 []string{"authorization_code"},
		"token_endpoint_auth_methods_supported": []string{auth},
		"code_challenge_methods_supported":      []string{"S256"},
	}
	if p.cfg.Discovery != nil {
		p.cfg.Discovery(doc)
	}
	writeJSON(w, http.StatusOK, doc)
}

func (p *Provider) jwks(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/jwk-set+json")
	json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{p.key.Public()}})
}

// authorize is the authorization endpoint (RFC 6749 §4.1.1, RFC 7636
// §4.3, OpenID Connect Core 1.0 §3.1.2). It signs the configured user
// in at once or, with Consent, once Approve is pressed.
func (p *Provider) authorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	p.mu.Lock()
	redirect := p.redirect
	p.mu.Unlock()
	// A bad client_id or redirect_uri is shown, never redirected to.
	switch {
	case q.Get("client_id") != p.cfg.ClientID:
		p.refuse("authorize", "invalid_request", "unknown client_id "+q.Get("client_id"))
		http.Error(w, "unknown client_id", http.StatusBadRequest)
		return
	case redirect == "" || q.Get("redirect_uri") != redirect:
		p.refuse("authorize", "invalid_request", "redirect_uri "+q.Get("redirect_uri")+" is not registered")
		http.Error(w, "redirect_uri is not registered", http.StatusBadRequest)
		return
	}
	fail := func(code, desc string) {
		p.refuse("authorize", code, desc)
		p.back(w, r, q, url.Values{"error": {code}, "error_description": {desc}})
	}
	scopes := strings.Fields(q.Get("scope"))
	switch {
	case q.Get("response_type") != "code":
		fail("unsupported_response_type", "response_type must be code")
	case !slices.Contains(scopes, "openid"):
		fail("invalid_scope", "scope must contain openid")
	case q.Get("code_challenge_method") != "S256":
		fail("invalid_request", "code_challenge_method must be S256")
	case len(q.Get("code_challenge")) != 43:
		fail("invalid_request", "code_challenge must be a base64url SHA-256")
	case q.Get("state") == "":
		fail("invalid_request", "state is required")
	case q.Get("nonce") == "":
		fail("invalid_request", "nonce is required")
	case p.cfg.Consent:
		ticket := randomString(32)
		p.mu.Lock()
		p.consents[ticket] = q
		p.mu.Unlock()
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, `<!doctype html><html lang="en"><title>Test IdP</title><h1>Sign in to %s?</h1>
<form method="post" action="approve"><input type="hidden" name="ticket" value="%s"><button id="approve" type="submit">Approve</button></form></html>`,
			html.EscapeString(p.cfg.ClientID), ticket)
	default:
		p.answer(w, r, q)
	}
}

// approve is the consent page's Approve button.
func (p *Provider) approve(w http.ResponseWriter, r *http.Request) {
	ticket := r.PostFormValue("ticket")
	p.mu.Lock()
	q, ok := p.consents[ticket]
	delete(p.consents, ticket)
	p.mu.Unlock()
	if !ok {
		p.refuse("approve", "invalid_request", "unknown ticket")
		http.Error(w, "unknown ticket", http.StatusBadRequest)
		return
	}
	p.answer(w, r, q)
}

// answer sends the browser back to the client with a code for the
// authorization request q, or with the error Login says.
func (p *Provider) answer(w http.ResponseWriter, r *http.Request, q url.Values) {
	p.mu.Lock()
	login := p.login
	p.mu.Unlock()
	if login.Error != "" {
		p.back(w, r, q, url.Values{"error": {login.Error}, "error_description": {login.ErrorDescription}})
		return
	}
	code := randomString(32)
	p.mu.Lock()
	p.grants[code] = &grant{redirect: q.Get("redirect_uri"), challenge: q.Get("code_challenge"), nonce: q.Get("nonce"), login: login,
		expires: p.cfg.Now().Add(time.Minute)}
	p.mu.Unlock()
	p.back(w, r, q, url.Values{"code": {code}})
}

// back redirects to the redirect URI of the authorization request q with
// v and q's state.
func (p *Provider) back(w http.ResponseWriter, r *http.Request, q, v url.Values) {
	if s := q.Get("state"); s != "" {
		v.Set("state", s)
	}
	http.Redirect(w, r, q.Get("redirect_uri")+"?"+v.Encode(), http.StatusFound)
}

// token is the token endpoint (RFC 6749 §4.1.3 and §5, RFC 7636 §4.5,
// OpenID Connect Core 1.0 §3.1.3).
func (p *Provider) token(w http.ResponseWriter, r *http.Request) {
	fail := func(status int, code, desc string) {
		p.refuse("token", code, desc)
		if status == http.StatusUnauthorized {
			w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
		}
		writeJSON(w, status, map[string]string{"error": code, "error_description": desc})
	}
	if r.Method != http.MethodPost {
		fail(http.StatusMethodNotAllowed, "invalid_request", "the token endpoint takes POST")
		return
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/x-www-form-urlencoded") {
		fail(http.StatusBadRequest, "invalid_request", "Content-Type must be application/x-www-form-urlencoded, not "+ct)
		return
	}
	if err := r.ParseForm(); err != nil {
		fail(http.StatusBadRequest, "invalid_request", err.Error())
		return
	}
	f := r.PostForm
	if err := p.authenticateClient(r, f); err != "" {
		fail(http.StatusUnauthorized, "invalid_client", err)
		return
	}
	if f.Get("grant_type") != "authorization_code" {
		fail(http.StatusBadRequest, "unsupported_grant_type", "grant_type must be authorization_code")
		return
	}
	code := f.Get("code")
	p.mu.Lock()
	g, used := p.grants[code], p.used[code]
	delete(p.grants, code)
	if g != nil {
		p.used[code] = true
	}
	p.mu.Unlock()
	now := p.cfg.Now()
	verifier := f.Get("code_verifier")
	sum := sha256.Sum256([]byte(verifier))
	switch {
	case used:
		fail(http.StatusBadRequest, "invalid_grant", "the code was used already")
		return
	case g == nil:
		fail(http.StatusBadRequest, "invalid_grant", "unknown code")
		return
	case now.After(g.expires):
		fail(http.StatusBadRequest, "invalid_grant", "the code has expired")
		return
	case f.Get("redirect_uri") != g.redirect:
		fail(http.StatusBadRequest, "invalid_grant", "redirect_uri differs from the authorization request's")
		return
	case verifier == "":
		fail(http.StatusBadRequest, "invalid_grant", "code_verifier is required (PKCE)")
		return
	case len(verifier) < 43 || len(verifier) > 128:
		fail(http.StatusBadRequest, "invalid_grant", "code_verifier must have 43 to 128 characters")
		return
	case subtle.ConstantTimeCompare([]byte(base64.RawURLEncoding.EncodeToString(sum[:])), []byte(g.challenge)) != 1:
		fail(http.StatusBadRequest, "invalid_grant", "code_verifier does not match code_challenge")
		return
	}
	claims := maps.Clone(g.login.Claims)
	if claims == nil {
		claims = map[string]any{}
	}
	claims["iss"] = p.issuer
	claims["aud"] = p.cfg.ClientID
	claims["iat"] = now.Unix()
	claims["exp"] = now.Add(p.cfg.TokenTTL).Unix()
	claims["nonce"] = g.nonce
	if g.login.Edit != nil {
		g.login.Edit(claims)
	}
	idToken, err := p.Sign(claims)
	if err != nil {
		fail(http.StatusInternalServerError, "server_error", err.Error())
		return
	}
	p.mu.Lock()
	p.exchanges++
	p.mu.Unlock()
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	writeJSON(w, http.StatusOK, map[string]any{"access_token": randomString(32), "token_type": "Bearer",
		"expires_in": int(p.cfg.TokenTTL.Seconds()), "id_token": idToken})
}

// authenticateClient checks the client of a token request and returns
// what is wrong, or "".
func (p *Provider) authenticateClient(r *http.Request, f url.Values) string {
	user, pass, basic := r.BasicAuth()
	if basic { // RFC 6749 §2.3.1: form-encoded, then Basic
		var err1, err2 error
		user, err1 = url.QueryUnescape(user)
		pass, err2 = url.QueryUnescape(pass)
		if err1 != nil || err2 != nil {
			return "the Basic credentials are not form-encoded"
		}
	}
	switch {
	case p.cfg.ClientSecret == "":
		switch {
		case basic || f.Has("client_secret"):
			return "a public client sends no secret"
		case f.Get("client_id") != p.cfg.ClientID:
			return "a public client names itself by client_id in the form"
		}
	case p.cfg.SecretInForm:
		switch {
		case basic:
			return "this client authenticates with client_secret_post, not Basic"
		case f.Get("client_id") != p.cfg.ClientID || subtle.ConstantTimeCompare([]byte(f.Get("client_secret")), []byte(p.cfg.ClientSecret)) != 1:
			return "wrong client_id or client_secret"
		}
	default:
		switch {
		case !basic:
			return "this client authenticates with client_secret_basic"
		case f.Has("client_secret"):
			return "the secret is sent twice"
		case user != p.cfg.ClientID || subtle.ConstantTimeCompare([]byte(pass), []byte(p.cfg.ClientSecret)) != 1:
			return "wrong client id or secret"
		}
	}
	return ""
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func randomString(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)[:n]
}
