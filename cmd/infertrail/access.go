package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/infertrail/infertrail"
	"github.com/infertrail/infertrail/access"
	"github.com/infertrail/infertrail/httpapi"
	"github.com/infertrail/infertrail/web"
)

// adminTokenFile is where serve writes the admin token it creates at first
// start, in the data folder.
const adminTokenFile = "admin-token"

// authConfig is the access-control part of the configuration file.
type authConfig struct {
	// Disabled turns authentication off: every caller may do anything.
	// Only for loopback listeners, or with allow_unauthenticated_remote
	// when a proxy in front authenticates.
	Disabled bool `yaml:"disabled"`
	// RateLimit is each token's requests per second unless the token sets
	// its own (default 1000; -1: none); Burst how many may come at once.
	RateLimit float64 `yaml:"rate_limit"`
	Burst     int     `yaml:"burst"`
	// RequireReason refuses content reads without an X-InferTrail-Reason.
	RequireReason bool        `yaml:"require_reason"`
	OIDC          *oidcConfig `yaml:"oidc"`
}

type oidcConfig struct {
	Issuer      string              `yaml:"issuer"`
	Audience    string              `yaml:"audience"`
	JWKSURL     string              `yaml:"jwks_url"`
	JWKSFile    string              `yaml:"jwks_file"`
	RolesClaim  string              `yaml:"roles_claim"`
	RoleMap     map[string][]string `yaml:"role_map"`
	TenantClaim string              `yaml:"tenant_claim"`
	Tenant      string              `yaml:"tenant"`
	NameClaim   string              `yaml:"name_claim"`
	Algorithms  []string            `yaml:"algorithms"`

	// ClientID is InferTrail's client id at the provider: ID tokens
	// issued to it are accepted too. With RedirectURL, it turns on "Sign
	// in with <ProviderName>" in the web UI (docs/ui.md).
	ClientID string `yaml:"client_id"`
	// ClientSecret is a secret reference ("env:NAME", "file:PATH", or the
	// secret itself); $INFERTRAIL_OIDC_CLIENT_SECRET, when set, wins.
	// Empty: a public client (PKCE only).
	ClientSecret string `yaml:"client_secret"`
	// RedirectURL is the callback's absolute URL, as registered at the
	// provider: https://<host>/ui/signin/oidc/callback.
	RedirectURL  string   `yaml:"redirect_url"`
	Scopes       []string `yaml:"scopes"`        // default openid, email, profile
	ProviderName string   `yaml:"provider_name"` // the button's label; default "OIDC"
}

// envOIDCClientSecret holds the OIDC client secret, so that it need not
// sit in the configuration file.
const envOIDCClientSecret = "INFERTRAIL_OIDC_CLIENT_SECRET"

// authenticator builds the server's authenticator over the token store
// and, when auth.oidc configures it, the web UI's OIDC sign-in, whose
// endpoints it discovers from the provider.
func (c *authConfig) authenticator(ctx context.Context, tokens infertrail.TokenStore, fingerprint func(string) string) (*access.Authenticator, *web.OIDCSignIn, error) {
	cfg := access.Config{Tokens: tokens, Fingerprint: fingerprint, RateLimit: c.RateLimit, Burst: c.Burst}
	var signIn *web.OIDCSignIn
	if o := c.OIDC; o != nil {
		oc := access.OIDCConfig{Issuer: o.Issuer, Audience: o.Audience, ClientID: o.ClientID, JWKSURL: o.JWKSURL, JWKSFile: o.JWKSFile,
			RolesClaim: o.RolesClaim, TenantClaim: o.TenantClaim, Tenant: o.Tenant, NameClaim: o.NameClaim, Algorithms: o.Algorithms}
		var err error
		if signIn, err = o.signIn(); err != nil {
			return nil, nil, err
		}
		var md *access.ProviderMetadata
		if signIn != nil {
			if md, err = access.Discover(ctx, o.Issuer, nil); err != nil {
				return nil, nil, withHint(fmt.Errorf("auth.oidc: %w", err),
					"sign-in to the web UI reads the provider's discovery document at start: check auth.oidc.issuer, and that the provider is reachable")
			}
			if oc.JWKSURL == "" && oc.JWKSFile == "" {
				oc.JWKSURL = md.JWKSURI
			}
			signIn.AuthURL, signIn.TokenURL, signIn.SecretInForm = md.AuthorizationEndpoint, md.TokenEndpoint, md.SecretInForm()
		}
		if o.RoleMap != nil {
			oc.RoleMap = map[string][]infertrail.Role{}
			for claim, names := range o.RoleMap {
				roles, err := infertrail.ParseRoles(names...)
				if err != nil {
					return nil, nil, fmt.Errorf("auth.oidc.role_map[%q]: %w", claim, err)
				}
				oc.RoleMap[claim] = roles
			}
		}
		v, err := access.NewOIDC(ctx, oc)
		if err != nil {
			return nil, nil, withHint(fmt.Errorf("auth.oidc: %w", err), "check issuer, audience or client_id, and jwks_url or jwks_file in the configuration file")
		}
		cfg.OIDC = v
		if signIn != nil {
			signIn.Verifier = v
		}
	}
	a, err := access.New(cfg)
	return a, signIn, err
}

// signIn returns the web UI's OIDC sign-in without its endpoints, or nil
// when client_id and redirect_url do not both turn it on.
func (o *oidcConfig) signIn() (*web.OIDCSignIn, error) {
	secret := o.ClientSecret
	if v := os.Getenv(envOIDCClientSecret); v != "" {
		secret = v
	}
	if o.ClientID == "" || o.RedirectURL == "" {
		for _, k := range []struct {
			name string
			set  bool
		}{
			{"redirect_url", o.RedirectURL != ""}, {"client_secret (or $" + envOIDCClientSecret + ")", secret != ""},
			{"scopes", o.Scopes != nil}, {"provider_name", o.ProviderName != ""},
		} {
			if k.set {
				return nil, withHint(fmt.Errorf("auth.oidc.%s is set, but sign-in to the web UI is off", k.name),
					"set both auth.oidc.client_id and auth.oidc.redirect_url to turn it on")
			}
		}
		return nil, nil
	}
	s := &web.OIDCSignIn{ProviderName: o.ProviderName, ClientID: o.ClientID, RedirectURL: o.RedirectURL, Scopes: o.Scopes}
	if secret != "" {
		v, err := resolveSecret(secret, "auth.oidc.client_secret")
		if err != nil {
			return nil, err
		}
		s.ClientSecret = web.Secret(v)
	}
	return s, nil
}

// bootstrapAdminToken creates an admin token for every tenant when the
// store has no token at all (a server's first start), writes it to the
// data folder's admin-token file (0600), and returns that file's path.
func bootstrapAdminToken(ctx context.Context, tm *access.Tokens, tokens infertrail.TokenStore, dataDir string) (string, bool, error) {
	path := filepath.Join(dataDir, adminTokenFile)
	existing, err := tokens.Tokens(ctx)
	if err != nil {
		return "", false, err
	}
	if len(existing) > 0 {
		return path, false, nil
	}
	secret, _, err := tm.Create(ctx, access.TokenRequest{Name: "admin (created at first start)", Tenant: infertrail.AllTenants,
		Roles: []infertrail.Role{infertrail.RoleAdmin}}, nil, infertrail.Actor{ID: "infertrail:serve", Type: "service"})
	if err != nil {
		return "", false, fmt.Errorf("create the first admin token: %w", err)
	}
	if err := writeSecretFile(path, []byte(secret+"\n")); err != nil {
		return "", false, fmt.Errorf("write the first admin token: %w", err)
	}
	return path, true, nil
}

// writeSecretFile writes a file only its owner can read (0600), atomically:
// through a temporary file in the same folder, synced, then renamed.
func writeSecretFile(path string, b []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name()) // after the rename, there is nothing to remove
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// tokenFlag adds --token to a command that talks to a server; its default
// is $INFERTRAIL_TOKEN.
func tokenFlag(fs *flag.FlagSet) *string {
	return fs.String("token", "", "API `token` for --server (default $INFERTRAIL_TOKEN)")
}

// resolveToken returns the token from --token or INFERTRAIL_TOKEN.
func resolveToken(flagValue string) string {
	if flagValue != "" {
		return flagValue
	}
	return strings.TrimSpace(os.Getenv("INFERTRAIL_TOKEN"))
}

// bearer is a RoundTripper that sends an API token with each request.
type bearer struct {
	token string
	next  http.RoundTripper
}

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	if b.token != "" {
		r = r.Clone(r.Context())
		r.Header.Set("Authorization", "Bearer "+b.token)
	}
	return b.next.RoundTrip(r)
}

// clientWithToken returns an HTTP client that sends the token.
func clientWithToken(token string, timeout time.Duration) *http.Client {
	return &http.Client{Timeout: timeout, Transport: bearer{token: token, next: http.DefaultTransport}}
}

func tokensCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return withHint(errors.New("tokens: want create, list or revoke"), "infertrail tokens create --role ingest --tenant acme --name ci-ingest --data DIR")
	}
	sub, args := args[0], args[1:]
	fs := newFlagSet("tokens "+sub, stderr)
	t := addTarget(fs)
	var (
		role, tenant, name, expires *string
		rateLimit                   *float64
		all                         *bool
		reason                      *string
	)
	switch sub {
	case "create":
		role = fs.String("role", "", "comma-separated `roles`: ingest, gateway, auditor, investigator, approver, admin, erase, monitor")
		tenant = fs.String("tenant", "", "the `tenant` the token acts in, or * for every tenant (default: the caller's, or default)")
		name = fs.String("name", "", "a `label` for people, such as the service that uses it (required)")
		expires = fs.String("expires", "90d", "lifetime: a `duration` such as 90d or 720h, or never")
		rateLimit = fs.Float64("rate-limit", 0, "requests per `second` (default: the server's)")
	case "list":
		all = fs.Bool("all", false, "include revoked and expired tokens")
	case "revoke":
		reason = fs.String("reason", "", "why, for the record")
	default:
		return withHint(fmt.Errorf("tokens %s: unknown subcommand", sub), "want create, list or revoke")
	}
	var id infertrail.UUID
	if sub == "revoke" {
		if len(args) == 0 || strings.HasPrefix(args[0], "-") {
			return withHint(errors.New("tokens revoke: which token?"), "infertrail tokens revoke ID (the id from 'infertrail tokens list')")
		}
		var err error
		if id, err = infertrail.ParseUUID(args[0]); err != nil {
			return fmt.Errorf("token id %q: %w", args[0], err)
		}
		args = args[1:]
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := t.check(); err != nil {
		return err
	}
	switch sub {
	case "create":
		if *name == "" {
			return withHint(errors.New("tokens create: --name is required"), "name the service or person that will use the token")
		}
		roles, err := infertrail.ParseRoles(*role)
		if err != nil {
			return err
		}
		ttl, err := httpapi.ParseTTL(*expires)
		if err != nil {
			return err
		}
		var out httpapi.TokenJSON
		if *t.server != "" {
			names := make([]string, len(roles))
			for i, r := range roles {
				names[i] = string(r)
			}
			if err := t.call(ctx, "POST", "v1/tokens", map[string]any{"name": *name, "tenant": *tenant, "roles": names,
				"expires_in": *expires, "rate_limit": *rateLimit}, &out); err != nil {
				return err
			}
		} else {
			if *tenant == "" {
				*tenant = infertrail.DefaultTenant
			}
			lg, _, closeFn, err := t.openLog(ctx, stderr)
			if err != nil {
				return err
			}
			defer closeFn()
			tm := &access.Tokens{Store: lg.Store(), Recorder: lg}
			secret, tok, err := tm.Create(ctx, access.TokenRequest{Name: *name, Tenant: *tenant, Roles: roles, TTL: ttl, RateLimit: *rateLimit}, nil, cliActor())
			if err != nil {
				return err
			}
			out = httpapi.ToTokenJSON(tok)
			out.Token = secret
		}
		fmt.Fprintf(stderr, "Created token %s (%s) for tenant %s with roles %s, expires %s.\n", out.ID, out.Name, out.Tenant,
			strings.Join(out.Roles, ","), orNever(out.Expires))
		fmt.Fprintln(stderr, "This is the only time the token is shown; store it as a secret:")
		fmt.Fprintln(stdout, out.Token)
		return nil
	case "list":
		var toks []httpapi.TokenJSON
		if *t.server != "" {
			var out struct{ Tokens []httpapi.TokenJSON }
			if err := t.call(ctx, "GET", "v1/tokens", nil, &out); err != nil {
				return err
			}
			toks = out.Tokens
		} else {
			lg, _, closeFn, err := t.openLog(ctx, stderr)
			if err != nil {
				return err
			}
			defer closeFn()
			ts, err := (&access.Tokens{Store: lg.Store(), Recorder: lg}).List(ctx, nil)
			if err != nil {
				return err
			}
			for _, tok := range ts {
				toks = append(toks, httpapi.ToTokenJSON(tok))
			}
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tNAME\tTENANT\tROLES\tCREATED\tEXPIRES\tSTATE")
		now := time.Now()
		for _, tok := range toks {
			state := "active"
			switch {
			case tok.Revoked != "":
				state = "revoked " + tok.Revoked[:10] + " by " + tok.RevokedBy
			case tok.Expires != "" && expired(tok.Expires, now):
				state = "expired"
			}
			if state != "active" && !*all {
				continue
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", tok.ID, tok.Name, tok.Tenant, strings.Join(tok.Roles, ","),
				tok.Created[:10], orNever(tok.Expires), state)
		}
		return tw.Flush()
	default: // revoke
		if *t.server != "" {
			if err := t.call(ctx, "POST", "v1/tokens/"+id.String()+"/revoke", map[string]string{"reason": *reason}, nil); err != nil {
				return err
			}
		} else {
			lg, _, closeFn, err := t.openLog(ctx, stderr)
			if err != nil {
				return err
			}
			defer closeFn()
			if _, err := (&access.Tokens{Store: lg.Store(), Recorder: lg}).Revoke(ctx, id, *reason, nil, cliActor()); err != nil {
				return err
			}
		}
		fmt.Fprintf(stdout, "Revoked token %s: every node refuses it from its next request.\n", id)
		return nil
	}
}

func orNever(s string) string {
	if s == "" {
		return "never"
	}
	return s
}

func expired(rfc3339 string, now time.Time) bool {
	t, err := time.Parse(time.RFC3339Nano, rfc3339)
	return err == nil && !now.Before(t)
}
