package main

import (
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/infertrail/infertrail/access/oidctest"
)

// TestServeUI checks that `infertrail serve` serves the investigator UI
// under /ui/ (web's own tests drive its pages): /ui redirects, a signed-out
// browser is sent to sign in, and the server's token signs in.
func TestServeUI(t *testing.T) {
	s := startServer(t, t.TempDir())
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Jar: jar}
	get := func(path string) (*http.Response, string) {
		t.Helper()
		resp, err := c.Get(s.url + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	resp, page := get("/ui")
	if resp.StatusCode != http.StatusOK || resp.Request.URL.Path != "/ui/signin" {
		t.Fatalf("/ui = %d at %s", resp.StatusCode, resp.Request.URL.Path)
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") {
		t.Errorf("Content-Security-Policy = %q", csp)
	}
	m := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no sign-in form:\n%s", page)
	}
	resp, err = c.PostForm(s.url+"/ui/signin", url.Values{"csrf": {m[1]}, "token": {s.token}})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Request.URL.Path != "/ui/search" || !strings.Contains(string(b), "Search records") {
		t.Fatalf("sign-in = %d at %s:\n%s", resp.StatusCode, resp.Request.URL.Path, b)
	}
	if resp, page := get("/ui/log"); resp.StatusCode != http.StatusOK || !strings.Contains(html.UnescapeString(page), s.vkey) {
		t.Errorf("/ui/log = %d, without the verifier key %s", resp.StatusCode, s.vkey)
	}
}

// TestE2EOIDCSignIn signs in to the UI of `infertrail serve` through a
// scripted OpenID provider, configured by auth.oidc's keys with the
// client secret in $INFERTRAIL_OIDC_CLIENT_SECRET: the endpoints and the
// JWKS come from discovery, the provider's groups map to roles, and the
// secret, the code and the ID token appear in no output.
func TestE2EOIDCSignIn(t *testing.T) {
	t.Parallel()
	const secret = "e2e-client-secret-8f3a"
	addr := freeAddr(t)
	redirect := "http://" + addr + "/ui/signin/oidc/callback"
	idp := oidctest.Start(t, oidctest.Config{ClientID: "infertrail-ui", ClientSecret: secret, RedirectURL: redirect})
	idp.SetLogin(oidctest.Login{Claims: map[string]any{"sub": "u-42", "email": "ana@bank.example", "groups": []string{"internal-audit"}, "tenant": "acme"}})
	tmp := t.TempDir()
	cfg := filepath.Join(tmp, "infertrail.yaml")
	os.WriteFile(cfg, fmt.Appendf(nil, `auth:
  oidc:
    issuer: %s
    audience: infertrail
    client_id: infertrail-ui
    redirect_url: %s
    provider_name: Bank SSO
    roles_claim: groups
    role_map:
      soc-analysts: [investigator]
      internal-audit: [auditor]
`, idp.Issuer(), redirect), 0o600)
	dir := filepath.Join(tmp, "data")
	s := startServerWith(t, dir, addr, []string{"INFERTRAIL_OIDC_CLIENT_SECRET=" + secret}, "serve", "--data", dir, "--listen", addr, "--config", cfg)
	body, _ := batchBody(t, 2, 0, true) // tenant acme; record 0 has content
	res := mustPost(t, s.url, body, 2)

	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	get := func(target string) (*http.Response, string) {
		t.Helper()
		if strings.HasPrefix(target, "/") {
			target = s.url + target
		}
		resp, err := c.Get(target)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	if _, page := get("/ui/signin"); !strings.Contains(page, "Sign in with Bank SSO") {
		t.Fatalf("the sign-in page has no OIDC button:\n%s", page)
	}
	resp, _ := get("/ui/signin/oidc")
	if resp.StatusCode != http.StatusFound || !strings.HasPrefix(resp.Header.Get("Location"), idp.Issuer()+"/authorize?") {
		t.Fatalf("GET /ui/signin/oidc = %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	resp, _ = get(resp.Header.Get("Location"))
	callback := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusFound || !strings.HasPrefix(callback, redirect+"?code=") {
		t.Fatalf("the provider answered %d to %q (refusals %q)", resp.StatusCode, callback, idp.Refusals())
	}
	resp, page := get(callback)
	if resp.StatusCode != http.StatusOK || !strings.Contains(page, `content="0;url=/ui/search"`) {
		t.Fatalf("callback = %d:\n%s\nrefusals %q", resp.StatusCode, page, idp.Refusals())
	}
	if resp, page := get("/ui/search"); resp.StatusCode != http.StatusOK || !strings.Contains(page, "ana@bank.example") || !strings.Contains(page, "roles: auditor") {
		t.Fatalf("search after sign-in = %d:\n%s", resp.StatusCode, page)
	}
	// An auditor reads no content.
	record := fmt.Sprintf("/ui/records/%d", res[0].Seq)
	_, page = get(record)
	m := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no CSRF token on %s:\n%s", record, page)
	}
	resp, err = c.PostForm(s.url+record+"/content", url.Values{"csrf": {m[1]}, "reason": {"curious"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("an auditor's reveal = %d, want 403", resp.StatusCode)
	}
	// An ID token issued to the UI's client id is a bearer token of the API too.
	idToken, err := idp.Sign(map[string]any{"iss": idp.Issuer(), "aud": "infertrail-ui", "sub": "u-42", "groups": []string{"soc-analysts"},
		"tenant": "acme", "exp": time.Now().Add(time.Hour).Unix(), "iat": time.Now().Unix()})
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, s.url+fmt.Sprintf("/v1/records/%d?content=true", res[0].Seq), nil)
	req.Header.Set("Authorization", "Bearer "+idToken)
	req.Header.Set("X-InferTrail-Reason", "case 9")
	if resp, err := httpClient.Do(req); err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("content read with an ID token: %v %v", resp.Status, err)
	} else {
		resp.Body.Close()
	}
	if r := idp.Refusals(); len(r) != 0 {
		t.Errorf("the provider refused %q", r)
	}
	code := strings.TrimPrefix(callback, redirect+"?code=")
	code = code[:strings.IndexByte(code, '&')]
	out := s.stdout.String() + s.stderr.String()
	for _, leak := range []string{secret, code, "eyJ"} {
		if strings.Contains(out, leak) {
			t.Errorf("the server printed %q:\n%s", leak, out)
		}
	}
	if !strings.Contains(out, "sign-in with OIDC") || !strings.Contains(out, "oidc:"+idp.Issuer()+"#u-42") {
		t.Errorf("the server's log says nothing of the OIDC sign-in:\n%s", out)
	}
}

// TestE2EOIDCSignInConfig checks that serve refuses a bad OIDC sign-in
// configuration at start, naming the problem.
func TestE2EOIDCSignInConfig(t *testing.T) {
	t.Parallel()
	good := oidctest.Start(t, oidctest.Config{ClientID: "ui"})
	wrongIssuer := oidctest.Start(t, oidctest.Config{ClientID: "ui", Discovery: func(d map[string]any) { d["issuer"] = "https://login.example/other" }})
	for _, tc := range []struct {
		name string
		oidc string
		env  []string
		want []string
	}{
		{"issuer differs", "issuer: " + wrongIssuer.Issuer() + "\n    client_id: ui\n    redirect_url: http://127.0.0.1:1/ui/signin/oidc/callback",
			nil, []string{"auth.oidc: discover OIDC provider at " + wrongIssuer.Issuer() + "/.well-known/openid-configuration", `names the issuer "https://login.example/other"`}},
		{"provider down", "issuer: http://127.0.0.1:1/realms/x\n    client_id: ui\n    redirect_url: http://127.0.0.1:1/ui/signin/oidc/callback",
			nil, []string{"auth.oidc: discover OIDC provider at http://127.0.0.1:1/realms/x/.well-known/openid-configuration", "connection refused"}},
		{"redirect_url without client_id", "issuer: " + good.Issuer() + "\n    audience: infertrail\n    redirect_url: http://127.0.0.1:1/ui/signin/oidc/callback",
			nil, []string{"auth.oidc.redirect_url is set, but sign-in to the web UI is off", "client_id and auth.oidc.redirect_url"}},
		{"secret without sign-in", "issuer: " + good.Issuer() + "\n    audience: infertrail\n    jwks_url: " + good.Issuer() + "/jwks",
			[]string{"INFERTRAIL_OIDC_CLIENT_SECRET=s3cret-value"}, []string{"client_secret (or $INFERTRAIL_OIDC_CLIENT_SECRET) is set"}},
		{"wrong callback path", "issuer: " + good.Issuer() + "\n    client_id: ui\n    redirect_url: http://127.0.0.1:1/callback",
			nil, []string{"auth.oidc: new web ui: OIDC sign-in: RedirectURL", "/ui/signin/oidc/callback"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tmp := t.TempDir()
			cfg := filepath.Join(tmp, "infertrail.yaml")
			os.WriteFile(cfg, []byte("auth:\n  oidc:\n    "+tc.oidc+"\n"), 0o600)
			r := runCLI(t, tc.env, 30*time.Second, "serve", "--data", filepath.Join(tmp, "data"), "--listen", "127.0.0.1:0", "--config", cfg)
			if r.code == 0 {
				t.Fatalf("serve started:\n%s", r)
			}
			for _, w := range tc.want {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("serve: want %q in\n%s", w, r)
				}
			}
			if strings.Contains(r.stdout+r.stderr, "s3cret-value") {
				t.Errorf("serve printed the client secret:\n%s", r)
			}
		})
	}
}
