package access

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/infertrail/infertrail"
)

// maxDiscovery bounds the bytes of a discovery document.
const maxDiscovery = 256 << 10

// ProviderMetadata is what an OpenID provider's discovery document
// (OpenID Connect Discovery 1.0, §3) says about the provider: the
// endpoints that signing in uses, and what it supports.
type ProviderMetadata struct {
	Issuer                string `json:"issuer"`
	AuthorizationEndpoint string `json:"authorization_endpoint"`
	TokenEndpoint         string `json:"token_endpoint"`
	JWKSURI               string `json:"jwks_uri"`

	ResponseTypesSupported            []string `json:"response_types_supported"`
	ScopesSupported                   []string `json:"scopes_supported"`
	CodeChallengeMethodsSupported     []string `json:"code_challenge_methods_supported"`
	TokenEndpointAuthMethodsSupported []string `json:"token_endpoint_auth_methods_supported"`
	IDTokenSigningAlgValuesSupported  []string `json:"id_token_signing_alg_values_supported"`
}

// DiscoveryURL is where the discovery document of the provider issuer is:
// issuer, without a trailing slash, and /.well-known/openid-configuration.
func DiscoveryURL(issuer string) string {
	return strings.TrimSuffix(issuer, "/") + "/.well-known/openid-configuration"
}

// Discover fetches the discovery document of the OpenID provider issuer
// and checks it: it must name issuer as its issuer, exactly, and give
// authorization, token and JWKS endpoints that are https:// URLs (or
// http:// on a loopback host, as for a JWKS URL); the provider must
// support the authorization code flow and, if it says which PKCE methods
// it supports, S256. The document may be at most 256 KiB. A nil client
// is one with a 10 s timeout that follows redirects only to such URLs; the
// fetch also stops after 10 s.
func Discover(ctx context.Context, issuer string, client *http.Client) (*ProviderMetadata, error) {
	u, err := url.Parse(issuer)
	if err != nil {
		return nil, fmt.Errorf("discover OIDC provider: issuer %q: %v: %w", issuer, err, infertrail.ErrInvalid)
	}
	if err := checkProviderURL(u); err != nil {
		return nil, fmt.Errorf("discover OIDC provider: issuer %s: %v: %w", issuer, err, infertrail.ErrInvalid)
	}
	if client == nil {
		client = providerClient()
	}
	doc := DiscoveryURL(issuer)
	md, err := fetchDiscovery(ctx, client, doc)
	if err != nil {
		return nil, fmt.Errorf("discover OIDC provider at %s: %w", doc, err)
	}
	if err := md.check(issuer); err != nil {
		return nil, fmt.Errorf("discover OIDC provider at %s: %w", doc, err)
	}
	return md, nil
}

func fetchDiscovery(ctx context.Context, client *http.Client, doc string) (*ProviderMetadata, error) {
	b, err := getBounded(ctx, client, doc, "application/json", maxDiscovery)
	if err != nil {
		return nil, err
	}
	var md ProviderMetadata
	if err := json.Unmarshal(b, &md); err != nil {
		return nil, fmt.Errorf("not a discovery document: %w", err)
	}
	return &md, nil
}

// check applies Discover's rules to a document fetched for issuer.
func (md *ProviderMetadata) check(issuer string) error {
	if md.Issuer != issuer {
		return fmt.Errorf("the document names the issuer %q, not the configured %q: set auth.oidc.issuer to the provider's issuer exactly", clipClaim(md.Issuer), issuer)
	}
	for _, e := range []struct{ name, v string }{
		{"authorization_endpoint", md.AuthorizationEndpoint},
		{"token_endpoint", md.TokenEndpoint},
		{"jwks_uri", md.JWKSURI},
	} {
		if e.v == "" {
			return fmt.Errorf("the document has no %s", e.name)
		}
		u, err := url.Parse(e.v)
		if err != nil {
			return fmt.Errorf("%s: %v", e.name, err)
		}
		if err := checkProviderURL(u); err != nil {
			return fmt.Errorf("%s %s: %v", e.name, u.Redacted(), err)
		}
	}
	if len(md.ResponseTypesSupported) > 0 && !slices.Contains(md.ResponseTypesSupported, "code") {
		return fmt.Errorf("the provider does not support the authorization code flow (response_types_supported %q)", md.ResponseTypesSupported)
	}
	if len(md.CodeChallengeMethodsSupported) > 0 && !slices.Contains(md.CodeChallengeMethodsSupported, "S256") {
		return fmt.Errorf("the provider does not support PKCE with S256 (code_challenge_methods_supported %q)", md.CodeChallengeMethodsSupported)
	}
	return nil
}

// SecretInForm reports whether the provider wants a client secret in the
// token request's form (client_secret_post) rather than by HTTP Basic
// authentication (client_secret_basic, the default when it does not say).
func (md *ProviderMetadata) SecretInForm() bool {
	m := md.TokenEndpointAuthMethodsSupported
	return len(m) > 0 && !slices.Contains(m, "client_secret_basic") && slices.Contains(m, "client_secret_post")
}
