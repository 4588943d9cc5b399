package access

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/infertrail/infertrail"
	"github.com/infertrail/infertrail/access/oidctest"
)

func TestDiscover(t *testing.T) {
	t.Run("good", func(t *testing.T) {
		p := oidctest.Start(t, oidctest.Config{ClientID: "ui", ClientSecret: "s"})
		md, err := Discover(t.Context(), p.Issuer(), nil)
		if err != nil {
			t.Fatal(err)
		}
		if md.Issuer != p.Issuer() || md.AuthorizationEndpoint != p.Issuer()+"/authorize" || md.TokenEndpoint != p.Issuer()+"/token" ||
			md.JWKSURI != p.Issuer()+"/jwks" || md.SecretInForm() {
			t.Errorf("Discover = %+v", md)
		}
	})
	t.Run("client_secret_post", func(t *testing.T) {
		p := oidctest.Start(t, oidctest.Config{ClientID: "ui", ClientSecret: "s", SecretInForm: true})
		md, err := Discover(t.Context(), p.Issuer(), nil)
		if err != nil || !md.SecretInForm() {
			t.Errorf("Discover = %+v, %v; want SecretInForm", md, err)
		}
	})

	edit := func(f func(doc map[string]any)) string {
		return oidctest.Start(t, oidctest.Config{ClientID: "ui", Discovery: f}).Issuer()
	}
	big := strings.Repeat("x", 300<<10)
	odd := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/html/.well-known/openid-configuration":
			w.Write([]byte("<html>sign in</html>"))
		case "/huge/.well-known/openid-configuration":
			w.Write([]byte(`{"pad": "` + big + `"}`))
		case "/redirect/.well-known/openid-configuration":
			http.Redirect(w, r, "http://idp.example/.well-known/openid-configuration", http.StatusFound)
		default:
			http.NotFound(w, r)
		}
	}))
	defer odd.Close()
	down := httptest.NewServer(http.NotFoundHandler())
	down.Close()

	tests := []struct {
		name    string
		issuer  string
		invalid bool
		want    []string
	}{
		{name: "issuer differs", issuer: edit(func(d map[string]any) { d["issuer"] = "https://login.example/other" }),
			want: []string{`names the issuer "https://login.example/other", not the configured`}},
		{name: "issuer with a trailing slash", issuer: edit(nil) + "/", want: []string{"not the configured"}},
		{name: "plain http endpoint", issuer: edit(func(d map[string]any) { d["token_endpoint"] = "http://idp.example/token" }),
			want: []string{"token_endpoint http://idp.example/token", "loopback"}},
		{name: "no authorization endpoint", issuer: edit(func(d map[string]any) { delete(d, "authorization_endpoint") }),
			want: []string{"no authorization_endpoint"}},
		{name: "no jwks_uri", issuer: edit(func(d map[string]any) { delete(d, "jwks_uri") }), want: []string{"no jwks_uri"}},
		{name: "no code flow", issuer: edit(func(d map[string]any) { d["response_types_supported"] = []string{"id_token"} }),
			want: []string{"authorization code flow"}},
		{name: "no S256", issuer: edit(func(d map[string]any) { d["code_challenge_methods_supported"] = []string{"plain"} }),
			want: []string{"PKCE with S256"}},
		{name: "not found", issuer: odd.URL + "/nowhere", want: []string{odd.URL + "/nowhere/.well-known/openid-configuration", "HTTP status 404"}},
		{name: "not JSON", issuer: odd.URL + "/html", want: []string{"not a discovery document"}},
		{name: "too large", issuer: odd.URL + "/huge", want: []string{"larger than 262144 bytes"}},
		{name: "redirect to plain http", issuer: odd.URL + "/redirect", want: []string{"redirect to http://idp.example/", "loopback"}},
		{name: "unreachable", issuer: down.URL, want: []string{"connection refused"}},
		{name: "plain http issuer", issuer: "http://idp.example", invalid: true, want: []string{"issuer http://idp.example", "loopback"}},
		{name: "relative issuer", issuer: "idp.example", invalid: true, want: []string{"absolute"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Discover(t.Context(), tt.issuer, nil)
			if err == nil {
				t.Fatal("Discover: no error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Discover: %v, want an error saying %q", err, w)
				}
			}
			if errors.Is(err, infertrail.ErrInvalid) != tt.invalid {
				t.Errorf("Discover: %v; errors.Is(err, ErrInvalid) = %v, want %v", err, !tt.invalid, tt.invalid)
			}
		})
	}
}

func TestDiscoveryURL(t *testing.T) {
	for in, want := range map[string]string{
		"https://login.bank.example":                    "https://login.bank.example/.well-known/openid-configuration",
		"https://login.bank.example/realms/acme/":       "https://login.bank.example/realms/acme/.well-known/openid-configuration",
		"https://login.microsoftonline.com/t-1234/v2.0": "https://login.microsoftonline.com/t-1234/v2.0/.well-known/openid-configuration",
	} {
		if got := DiscoveryURL(in); got != want {
			t.Errorf("DiscoveryURL(%q) = %q, want %q", in, got, want)
		}
	}
}

func ExampleDiscover() {
	ctx := context.Background()
	const issuer = "https://login.bank.example/realms/acme"
	md, err := Discover(ctx, issuer, nil)
	if err != nil {
		log.Fatal(err) // names the document and what is wrong with it
	}
	// Verify ID tokens issued to the web UI, with the provider's keys.
	o, err := NewOIDC(ctx, OIDCConfig{Issuer: md.Issuer, ClientID: "infertrail-ui", JWKSURL: md.JWKSURI,
		RolesClaim: "realm_access.roles", Tenant: "acme"})
	if err != nil {
		log.Fatal(err)
	}
	idToken, nonce := "eyJ…", "the nonce the sign-in sent"
	p, err := o.VerifyIDToken(ctx, idToken, nonce)
	if err != nil {
		log.Fatal(err) // wraps infertrail.ErrUnauthenticated
	}
	fmt.Println("sign in", p.ID, "at", md.AuthorizationEndpoint)
}
