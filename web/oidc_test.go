package web_test

import (
	"context"
	"fmt"
	"html"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/infertrail/infertrail"
	"github.com/infertrail/infertrail/access"
	"github.com/infertrail/infertrail/access/oidctest"
	"github.com/infertrail/infertrail/web"
)

const idpSecret = "idp-secret-Qx7+/="

// auditorLogin is a user the provider signs in: an auditor of acme.
var auditorLogin = oidctest.Login{Claims: map[string]any{"sub": "u-auditor", "email": "ana@bank.example",
	"roles": []string{"auditor"}, "tenant": "acme"}}

// hop sends one request without following redirects.
func (b *client) hop(tb testing.TB, target string) (*http.Response, string) {
	tb.Helper()
	c := *b.c
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	nb := &client{e: b.e, c: &c}
	if strings.HasPrefix(target, "/") {
		return nb.get(tb, target)
	}
	req, err := http.NewRequest(http.MethodGet, target, nil)
	if err != nil {
		tb.Fatal(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	resp.Body.Close()
	return resp, ""
}

// oidcFlow is one pass through "Sign in with …", hop by hop as a browser
// makes it.
type oidcFlow struct {
	start     *http.Response // GET /ui/signin/oidc
	authorize *url.URL       // where it sent the browser
	callback  *url.URL       // where the provider sent it back
}

// startOIDC clicks "Sign in with …" and lets the provider answer; it
// returns the flow before the callback.
func (b *client) startOIDC(tb testing.TB) *oidcFlow {
	tb.Helper()
	_, page := b.get(tb, "/ui/signin")
	if !strings.Contains(page, `href="/ui/signin/oidc"`) || !strings.Contains(page, "Sign in with Test IdP") {
		tb.Fatalf("the sign-in page has no OIDC link:\n%s", page)
	}
	f := &oidcFlow{}
	f.start, _ = b.hop(tb, "/ui/signin/oidc")
	if f.start.StatusCode != http.StatusFound {
		tb.Fatalf("GET /ui/signin/oidc = %d", f.start.StatusCode)
	}
	var err error
	if f.authorize, err = url.Parse(f.start.Header.Get("Location")); err != nil {
		tb.Fatal(err)
	}
	resp, _ := b.hop(tb, f.authorize.String())
	if resp.StatusCode != http.StatusFound {
		tb.Fatalf("the provider's authorization endpoint = %d (refusals %q)", resp.StatusCode, b.e.idp.Refusals())
	}
	if f.callback, err = url.Parse(resp.Header.Get("Location")); err != nil {
		tb.Fatal(err)
	}
	return f
}

// finish follows the provider's redirect back to the UI.
func (b *client) finish(tb testing.TB, f *oidcFlow) (*http.Response, string) {
	tb.Helper()
	return b.hop(tb, strings.TrimPrefix(f.callback.String(), b.e.url))
}

// oidcSignIn signs in through the provider and checks that it worked.
func (b *client) oidcSignIn(tb testing.TB) *oidcFlow {
	tb.Helper()
	f := b.startOIDC(tb)
	resp, page := b.finish(tb, f)
	if resp.StatusCode != http.StatusOK || !strings.Contains(page, `<meta http-equiv="refresh" content="0;url=/ui/search">`) {
		tb.Fatalf("callback = %d:\n%s\nrefusals %q", resp.StatusCode, page, b.e.idp.Refusals())
	}
	return f
}

// signedOut checks that the browser is not signed in.
func (b *client) signedOut(tb testing.TB) {
	tb.Helper()
	if resp, _ := b.get(tb, "/ui/search"); resp.Request.URL.Path != "/ui/signin" {
		tb.Errorf("/ui/search = %d at %s: signed in", resp.StatusCode, resp.Request.URL.Path)
	}
}

func setCookie(resp *http.Response, name string) *http.Cookie {
	for _, c := range resp.Cookies() {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// noSecretsLogged checks that the server's log holds no JWT, code or
// client secret.
func noSecretsLogged(tb testing.TB, e *env, codes ...string) {
	tb.Helper()
	logs := e.logs.String()
	for _, s := range append(codes, idpSecret) {
		if s != "" && strings.Contains(logs, s) {
			tb.Errorf("the server logged %q:\n%s", s, logs)
		}
	}
	if jwt := jwtShape.FindString(logs); jwt != "" {
		tb.Errorf("the server logged a JWT %q:\n%s", jwt, logs)
	}
}

// jwtShape matches a JSON Web Token in a string.
var jwtShape = regexp.MustCompile(`eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*\.`)

func TestOIDCSignIn(t *testing.T) {
	for _, tc := range []struct {
		name   string
		secret string
		inForm bool
	}{
		{"client_secret_basic", idpSecret, false},
		{"client_secret_post", idpSecret, true},
		{"public client", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnvWith(t, envOptions{idp: &oidctest.Config{ClientSecret: tc.secret, SecretInForm: tc.inForm}})
			recs := e.paymentTrace(t)
			e.idp.SetLogin(auditorLogin)
			b := e.browser(t)
			_, _ = b.get(t, "/ui/signin")
			u, _ := url.Parse(e.url + "/ui/")
			before := b.c.Jar.Cookies(u)

			f := b.startOIDC(t)
			q := f.authorize.Query()
			for k, want := range map[string]string{"response_type": "code", "client_id": "infertrail-ui",
				"redirect_uri": e.url + "/ui/signin/oidc/callback", "scope": "openid email profile", "code_challenge_method": "S256"} {
				if q.Get(k) != want {
					t.Errorf("authorization request %s = %q, want %q", k, q.Get(k), want)
				}
			}
			for _, k := range []string{"state", "nonce", "code_challenge"} {
				if len(q.Get(k)) < 43 {
					t.Errorf("authorization request %s = %q: want 256 random bits", k, q.Get(k))
				}
			}
			c := setCookie(f.start, "infertrail_oidc")
			if c == nil || c.Path != "/ui/signin/oidc" || !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.MaxAge != 600 || c.Secure {
				t.Errorf("sign-in cookie %+v: want Path=/ui/signin/oidc, HttpOnly, SameSite=Lax, Max-Age=600, not Secure over http", c)
			}

			resp, page := b.finish(t, f)
			if resp.StatusCode != http.StatusOK || !strings.Contains(page, `<meta http-equiv="refresh" content="0;url=/ui/search">`) ||
				!strings.Contains(page, `<a href="/ui/search">`) || !strings.Contains(page, "Signed in as ana@bank.example, roles: auditor, tenant: acme") {
				t.Fatalf("callback = %d:\n%s\nrefusals %q", resp.StatusCode, page, e.idp.Refusals())
			}
			if strings.Contains(page, "<script") || jwtShape.MatchString(page) {
				t.Errorf("the callback page holds a script or a token:\n%s", page)
			}
			csp := resp.Header.Get("Content-Security-Policy")
			if !strings.Contains(csp, "default-src 'self'") || strings.Contains(csp, "navigate-to") {
				t.Errorf("Content-Security-Policy = %q", csp)
			}
			sc := setCookie(resp, "infertrail_ui")
			if sc == nil || sc.SameSite != http.SameSiteStrictMode || !sc.HttpOnly || sc.Path != "/ui/" {
				t.Errorf("session cookie %+v", sc)
			}
			for _, old := range before {
				if old.Name == "infertrail_ui" && sc != nil && old.Value == sc.Value {
					t.Errorf("the session id did not change at sign-in")
				}
			}
			if c := setCookie(resp, "infertrail_oidc"); c == nil || c.MaxAge >= 0 {
				t.Errorf("the callback does not clear the sign-in cookie: %+v", c)
			}
			if r := e.idp.Refusals(); len(r) != 0 {
				t.Errorf("the provider refused %q", r)
			}

			// Signed in as the auditor: the roles are the token's.
			_, page = b.get(t, "/ui/search")
			if !strings.Contains(page, "ana@bank.example") || !strings.Contains(page, "roles: auditor") || !strings.Contains(page, "tenant: acme") {
				t.Errorf("search page does not show who signed in:\n%s", page)
			}
			if resp, _ := b.get(t, "/ui/traces/"+traceID); resp.StatusCode != http.StatusOK {
				t.Errorf("trace = %d", resp.StatusCode)
			}
			n := len(e.accessRecords(t))
			record := fmt.Sprintf("/ui/records/%d", recs["prompt"].Seq)
			if resp, p := b.post(t, record, record+"/content", url.Values{"reason": {"curious"}}); resp.StatusCode != http.StatusForbidden || strings.Contains(p, "INV-7731") {
				t.Errorf("an auditor's reveal = %d", resp.StatusCode)
			}
			if m := len(e.accessRecords(t)); m != n {
				t.Errorf("a refused reveal left %d access records", m-n)
			}
			for _, c := range b.c.Jar.Cookies(u) {
				// A JWT is three base64url parts, the first of them "eyJ…"
				// ("{\"…"); a random session id may hold "eyJ" by chance.
				if jwtShape.MatchString(c.Value) {
					t.Errorf("cookie %s holds a token", c.Name)
				}
			}
			if !strings.Contains(e.logs.String(), "ui sign-in") || !strings.Contains(e.logs.String(), "oidc:"+e.idp.Issuer()+"#u-auditor") {
				t.Errorf("the sign-in is not logged:\n%s", e.logs)
			}
			noSecretsLogged(t, e, f.callback.Query().Get("code"))

			// Sign out.
			if resp, _ := b.post(t, "/ui/search", "/ui/signout", url.Values{}); resp.Request.URL.Path != "/ui/signin" {
				t.Errorf("sign-out ended at %s", resp.Request.URL.Path)
			}
			b.signedOut(t)
		})
	}
}

func TestOIDCSignInInvestigator(t *testing.T) {
	e := newEnvWith(t, envOptions{idp: &oidctest.Config{ClientSecret: idpSecret}})
	recs := e.paymentTrace(t)
	e.idp.SetLogin(oidctest.Login{Claims: map[string]any{"sub": "u-inv", "email": "ivan@bank.example", "roles": []string{"investigator"}, "tenant": "acme"}})
	b := e.browser(t)
	b.oidcSignIn(t)
	record := fmt.Sprintf("/ui/records/%d", recs["prompt"].Seq)
	resp, p := b.post(t, record, record+"/content", url.Values{"reason": {"case 1234"}})
	if resp.StatusCode != http.StatusOK || !strings.Contains(p, "INV-7731") {
		t.Fatalf("an investigator's reveal = %d:\n%s", resp.StatusCode, p)
	}
	var found bool
	for _, a := range e.accessRecords(t) {
		if string(a.Attributes["access.action"]) == `"read_content"` && a.Actor.ID == "oidc:"+e.idp.Issuer()+"#u-inv" {
			found = true
		}
	}
	if !found {
		t.Errorf("no access record names the OIDC reader")
	}
}

func TestOIDCSignInRefused(t *testing.T) {
	e := newEnvWith(t, envOptions{idp: &oidctest.Config{ClientSecret: idpSecret}})
	now := e.clock()
	tests := []struct {
		name   string
		login  oidctest.Login
		tamper func(f *oidcFlow, b *client) // before the callback
		status int
		want   string
	}{
		{name: "state mismatch", login: auditorLogin, status: http.StatusBadRequest, want: "its state differs",
			tamper: func(f *oidcFlow, _ *client) {
				q := f.callback.Query()
				q.Set("state", "forged")
				f.callback.RawQuery = q.Encode()
			}},
		{name: "no state", login: auditorLogin, status: http.StatusBadRequest, want: "its state differs",
			tamper: func(f *oidcFlow, _ *client) {
				q := f.callback.Query()
				q.Del("state")
				f.callback.RawQuery = q.Encode()
			}},
		{name: "access denied", login: oidctest.Login{Error: "access_denied", ErrorDescription: "The user is not assigned to this application"},
			status: http.StatusUnauthorized, want: "the identity provider refused it: access_denied (The user is not assigned to this application)"},
		{name: "wrong nonce", status: http.StatusUnauthorized, want: "wrong nonce",
			login: oidctest.Login{Claims: auditorLogin.Claims, Edit: func(c map[string]any) { c["nonce"] = "from another sign-in" }}},
		{name: "wrong audience", status: http.StatusUnauthorized, want: `wrong audience "another-app"`,
			login: oidctest.Login{Claims: auditorLogin.Claims, Edit: func(c map[string]any) { c["aud"] = "another-app" }}},
		{name: "expired token", status: http.StatusUnauthorized, want: "expired at",
			login: oidctest.Login{Claims: auditorLogin.Claims, Edit: func(c map[string]any) { c["exp"] = now.Add(-time.Hour).Unix() }}},
		{name: "no role", status: http.StatusUnauthorized, want: `grants no InferTrail role (claim "roles")`,
			login: oidctest.Login{Claims: map[string]any{"sub": "u-mkt", "roles": []string{"marketing"}, "tenant": "acme"}}},
		{name: "no tenant", status: http.StatusUnauthorized, want: `no "tenant" claim`,
			login: oidctest.Login{Claims: map[string]any{"sub": "u-x", "roles": []string{"auditor"}}}},
		{name: "expired sign-in", login: auditorLogin, status: http.StatusBadRequest, want: "this sign-in has expired",
			tamper: func(*oidcFlow, *client) { e.advance(11 * time.Minute) }},
		{name: "no sign-in cookie", login: auditorLogin, status: http.StatusBadRequest, want: "it sent no sign-in cookie",
			tamper: func(_ *oidcFlow, b *client) {
				u, _ := url.Parse(e.url + "/ui/signin/oidc")
				b.c.Jar.SetCookies(u, []*http.Cookie{{Name: "infertrail_oidc", Path: "/ui/signin/oidc", MaxAge: -1}})
			}},
		{name: "no code", login: auditorLogin, status: http.StatusBadRequest, want: "has no code",
			tamper: func(f *oidcFlow, _ *client) {
				q := f.callback.Query()
				q.Del("code")
				f.callback.RawQuery = q.Encode()
			}},
		{name: "code from another sign-in", login: auditorLogin, status: http.StatusBadGateway, want: "invalid_grant",
			tamper: func(f *oidcFlow, b *client) {
				// The attacker's code and state, in a browser whose own sign-in is under way: the state is the browser's, the code is not.
				other := e.browser(t).startOIDC(t)
				q := f.callback.Query()
				q.Set("code", other.callback.Query().Get("code"))
				f.callback.RawQuery = q.Encode()
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.idp.SetLogin(tt.login)
			exchanges := e.idp.Exchanges()
			b := e.browser(t)
			f := b.startOIDC(t)
			if tt.tamper != nil {
				tt.tamper(f, b)
			}
			resp, page := b.finish(t, f)
			page = html.UnescapeString(page)
			if resp.StatusCode != tt.status || !strings.Contains(page, "Sign-in with Test IdP failed") || !strings.Contains(page, tt.want) {
				t.Fatalf("callback = %d, want %d saying %q:\n%s", resp.StatusCode, tt.status, tt.want, page)
			}
			if !strings.Contains(page, `href="/ui/signin/oidc"`) || !strings.Contains(page, `name="token"`) {
				t.Errorf("the failure is not shown on the sign-in page:\n%s", page)
			}
			if jwtShape.MatchString(page) || strings.Contains(page, f.callback.Query().Get("code")) && f.callback.Query().Get("code") != "" {
				t.Errorf("the page quotes a token or the code:\n%s", page)
			}
			if tt.status == http.StatusBadRequest && e.idp.Exchanges() != exchanges {
				t.Errorf("a refused callback exchanged the code")
			}
			b.signedOut(t)
			noSecretsLogged(t, e, f.callback.Query().Get("code"))
		})
	}
}

func TestOIDCReplay(t *testing.T) {
	e := newEnvWith(t, envOptions{idp: &oidctest.Config{ClientSecret: idpSecret}})
	e.idp.SetLogin(auditorLogin)
	b := e.browser(t)
	cookieURL, _ := url.Parse(e.url + "/ui/signin/oidc")
	f := b.startOIDC(t)
	pending := setCookie(f.start, "infertrail_oidc")
	if resp, page := b.finish(t, f); resp.StatusCode != http.StatusOK {
		t.Fatalf("callback = %d:\n%s", resp.StatusCode, page)
	}
	exchanges := e.idp.Exchanges()

	// Another browser replays the callback, cookie and all.
	r := e.browser(t)
	r.c.Jar.SetCookies(cookieURL, []*http.Cookie{pending})
	resp, page := r.finish(t, f)
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(page, "unknown or was used already") {
		t.Errorf("replayed callback = %d:\n%s", resp.StatusCode, page)
	}
	r.signedOut(t)
	// The same browser again: its cookie is gone.
	if resp, page := b.finish(t, f); resp.StatusCode != http.StatusBadRequest || !strings.Contains(page, "no sign-in under way") {
		t.Errorf("callback again = %d:\n%s", resp.StatusCode, page)
	}
	// A later sign-in's cookie does not make the old answer good.
	b.startOIDC(t)
	if resp, page := b.finish(t, f); resp.StatusCode != http.StatusBadRequest || !strings.Contains(page, "its state differs") {
		t.Errorf("old callback with a new sign-in = %d:\n%s", resp.StatusCode, page)
	}
	if e.idp.Exchanges() != exchanges {
		t.Errorf("replays reached the token endpoint")
	}
}

func TestOIDCExchangeFails(t *testing.T) {
	e := newEnvWith(t, envOptions{idp: &oidctest.Config{ClientSecret: idpSecret}, uiSecret: "not-the-secret"})
	e.idp.SetLogin(auditorLogin)
	b := e.browser(t)
	resp, page := b.finish(t, b.startOIDC(t))
	if resp.StatusCode != http.StatusBadGateway || !strings.Contains(page, "did not exchange the code for tokens: invalid_client (wrong client id or secret)") {
		t.Fatalf("callback with a wrong client secret = %d:\n%s", resp.StatusCode, page)
	}
	b.signedOut(t)
	if logs := e.logs.String(); !strings.Contains(logs, "ui sign-in refused") || strings.Contains(logs, "not-the-secret") {
		t.Errorf("log:\n%s", logs)
	}
}

// TestOIDCSessionEnds checks that a session ends when its ID token
// expires: the API refuses it at the next page.
func TestOIDCSessionEnds(t *testing.T) {
	e := newEnvWith(t, envOptions{idp: &oidctest.Config{ClientSecret: idpSecret, TokenTTL: 10 * time.Minute}})
	e.idp.SetLogin(auditorLogin)
	b := e.browser(t)
	b.oidcSignIn(t)
	if resp, _ := b.get(t, "/ui/search"); resp.StatusCode != http.StatusOK {
		t.Fatalf("search = %d", resp.StatusCode)
	}
	e.advance(12 * time.Minute)
	resp, page := b.get(t, "/ui/search")
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(page, "Your sign-in has ended: OIDC token expired at") ||
		!strings.Contains(page, "Sign in with Test IdP") {
		t.Fatalf("search after the ID token expired = %d:\n%s", resp.StatusCode, page)
	}
	b.signedOut(t)
}

// mustAuth is an authenticator of API tokens in e's store.
func mustAuth(tb testing.TB, e *env) *access.Authenticator {
	tb.Helper()
	a, err := access.New(access.Config{Tokens: e.db})
	if err != nil {
		tb.Fatal(err)
	}
	return a
}

type noVerifier struct{}

func (noVerifier) VerifyIDToken(context.Context, string, string) (*infertrail.Principal, error) {
	return nil, infertrail.ErrUnauthenticated
}

func TestOIDCConfig(t *testing.T) {
	e := newEnv(t, true)
	good := web.OIDCSignIn{AuthURL: "https://idp.example/authorize", TokenURL: "https://idp.example/token", ClientID: "ui",
		RedirectURL: "https://infertrail.example/ui/signin/oidc/callback", Verifier: noVerifier{}}
	for _, tc := range []struct {
		name string
		edit func(*web.OIDCSignIn)
		want string
	}{
		{"no client id", func(c *web.OIDCSignIn) { c.ClientID = "" }, "ClientID is required"},
		{"no endpoints", func(c *web.OIDCSignIn) { c.TokenURL = "" }, "AuthURL and TokenURL are required"},
		{"no verifier", func(c *web.OIDCSignIn) { c.Verifier = nil }, "Verifier is required"},
		{"relative redirect", func(c *web.OIDCSignIn) { c.RedirectURL = "/ui/signin/oidc/callback" }, "want an absolute https:// URL"},
		{"plain http redirect", func(c *web.OIDCSignIn) { c.RedirectURL = "http://infertrail.example/ui/signin/oidc/callback" }, "loopback"},
		{"other path", func(c *web.OIDCSignIn) { c.RedirectURL = "https://infertrail.example/callback" }, "want the path /ui/signin/oidc/callback"},
		{"no openid scope", func(c *web.OIDCSignIn) { c.Scopes = []string{"email"} }, "want openid among them"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := good
			tc.edit(&c)
			_, err := web.New(web.Config{API: http.NotFoundHandler(), Auth: mustAuth(t, e), OIDC: &c})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("web.New: %v, want an error saying %q", err, tc.want)
			}
		})
	}
	if _, err := web.New(web.Config{API: http.NotFoundHandler(), OIDC: &good}); err == nil || !strings.Contains(err.Error(), "needs Auth") {
		t.Errorf("web.New without Auth: %v", err)
	}
	c := good
	c.RedirectURL = "http://127.0.0.1:8470/ui/signin/oidc/callback"
	if _, err := web.New(web.Config{API: http.NotFoundHandler(), Auth: mustAuth(t, e), OIDC: &c}); err != nil {
		t.Errorf("web.New with a loopback http redirect URL: %v", err)
	}
	if s := fmt.Sprint(web.Secret("hunter2"), fmt.Sprintf("%#v", web.Secret("hunter2"))); strings.Contains(s, "hunter2") {
		t.Errorf("a Secret prints as %s", s)
	}
}
