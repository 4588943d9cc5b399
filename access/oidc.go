package access

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/infertrail/infertrail"
)

// OIDCConfig configures the verification of bearer JWTs issued by an
// OpenID Connect provider. Zero values are documented defaults.
type OIDCConfig struct {
	// Issuer is the iss claim that tokens must carry (required).
	Issuer string
	// Audience is a value that the aud claim must contain: a token is
	// accepted when its aud contains Audience or ClientID. At least one of
	// the two is required.
	Audience string
	// ClientID is InferTrail's client id at the provider, when people sign
	// in to the web UI through it: the ID tokens issued to the UI carry it
	// as their audience. VerifyIDToken requires it.
	ClientID string

	// JWKSURL is the provider's JSON Web Key Set: https://, or http:// for
	// a loopback host only. JWKSFile is a JWKS file instead, reread when it
	// changes. Exactly one of them is set.
	JWKSURL  string
	JWKSFile string

	// RolesClaim is the claim holding role names, a string or an array of
	// strings (default "roles"). A name with dots, such as
	// "realm_access.roles", is a path into nested objects unless the token
	// has a top-level claim of that very name.
	RolesClaim string
	// RoleMap maps values of the roles claim to roles; values not in it
	// grant nothing. When RoleMap is nil, values that are InferTrail role
	// names grant that role. Other values are ignored either way, and a
	// token that is left with no role is refused.
	RoleMap map[string][]infertrail.Role

	// TenantClaim is the claim holding the caller's tenant (default
	// "tenant"; a dotted path like RolesClaim). A token without it gets
	// Tenant; when Tenant is "" too, the token is refused. The claim never
	// grants AllTenants; Tenant may.
	TenantClaim string
	Tenant      string

	// NameClaim is the claim naming the caller for people (default
	// "email"). A token without it is named by its sub claim.
	NameClaim string

	// Algorithms are the accepted JWS algorithms (default RS256, ES256,
	// EdDSA and PS256). Only asymmetric ones may be given: never "none",
	// never HS256 and the like.
	Algorithms []string
	// Leeway is the clock skew allowed when checking exp, nbf and iat
	// (default one minute).
	Leeway time.Duration

	// HTTPClient fetches the JWKS (default: a client with a 10 s timeout
	// that follows redirects only to URLs JWKSURL could be).
	HTTPClient *http.Client
	// RefreshInterval is how often the JWKS is fetched again (default 15
	// minutes). A token naming a key id the set lacks makes it fetched at
	// once too, at most once per 30 s. A JWKSFile is checked for changes
	// once a second and on an unknown key id.
	RefreshInterval time.Duration

	Now func() time.Time // default time.Now
}

// Limits and intervals of OIDC verification.
const (
	maxJWT                = 16 << 10 // bytes of a token, checked before parsing
	maxJWKS               = 1 << 20  // bytes of a JWKS document
	maxSubject            = 255      // bytes of the sub claim (OpenID Connect Core 1.0, §2)
	maxNameClaim          = 256      // bytes of a name claim used as the principal's name
	jwksFetchTimeout      = 10 * time.Second
	jwksMissInterval      = 30 * time.Second // between fetches for unknown key ids
	jwksFileCheckInterval = time.Second
	defaultJWKSRefresh    = 15 * time.Minute
	defaultOIDCLeeway     = time.Minute
	defaultRolesClaim     = "roles"
	defaultTenantClaim    = "tenant"
	defaultNameClaim      = "email"
)

var (
	// asymmetricAlgs are the algorithms that Algorithms may name.
	asymmetricAlgs = []jose.SignatureAlgorithm{jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384,
		jose.PS512, jose.ES256, jose.ES384, jose.ES512, jose.EdDSA}
	defaultAlgs = []string{string(jose.RS256), string(jose.ES256), string(jose.EdDSA), string(jose.PS256)}
)

// OIDC verifies bearer JWTs against an OpenID Connect provider's keys and
// turns them into principals. It is safe for concurrent use. When the JWKS
// cannot be loaded again, it keeps the keys it has.
type OIDC struct {
	cfg  OIDCConfig
	algs []jose.SignatureAlgorithm

	keys atomic.Pointer[jose.JSONWebKeySet] // never nil after NewOIDC
	due  atomic.Int64                       // Unix ns when the keys are to be checked again

	mu     sync.Mutex  // held while the keys are loaded; guards the fields below
	missed time.Time   // when the keys were last fetched for an unknown key id
	file   os.FileInfo // the JWKSFile as last loaded
}

// NewOIDC checks the configuration and loads the JWKS, which must be
// reachable and hold at least one usable public signing key.
func NewOIDC(ctx context.Context, cfg OIDCConfig) (*OIDC, error) {
	if err := checkOIDCConfig(&cfg); err != nil {
		return nil, err
	}
	o := &OIDC{cfg: cfg}
	for _, a := range cfg.Algorithms {
		o.algs = append(o.algs, jose.SignatureAlgorithm(a))
	}
	if err := o.reloadLocked(ctx, cfg.Now()); err != nil {
		src := cfg.JWKSURL
		if src == "" {
			src = cfg.JWKSFile
		}
		return nil, fmt.Errorf("load JWKS from %s: %w", src, err)
	}
	return o, nil
}

func checkOIDCConfig(cfg *OIDCConfig) error {
	invalid := func(format string, args ...any) error {
		return fmt.Errorf("OIDC config: "+format+": %w", append(args, infertrail.ErrInvalid)...)
	}
	switch {
	case cfg.Issuer == "":
		return invalid("Issuer is required")
	case cfg.Audience == "" && cfg.ClientID == "":
		return invalid("Audience is required (or ClientID)")
	case cfg.JWKSURL == "" && cfg.JWKSFile == "":
		return invalid("one of JWKSURL and JWKSFile is required")
	case cfg.JWKSURL != "" && cfg.JWKSFile != "":
		return invalid("JWKSURL and JWKSFile are both set; set one")
	case cfg.Tenant != "" && cfg.Tenant != infertrail.AllTenants && !infertrail.ValidTenant(cfg.Tenant):
		return invalid("Tenant %q is not a tenant name", cfg.Tenant)
	case cfg.Leeway < 0:
		return invalid("Leeway %s is negative", cfg.Leeway)
	case cfg.RefreshInterval < 0:
		return invalid("RefreshInterval %s is negative", cfg.RefreshInterval)
	}
	if cfg.JWKSURL != "" {
		u, err := url.Parse(cfg.JWKSURL)
		if err != nil {
			return invalid("JWKSURL: %v", err)
		}
		if err := checkProviderURL(u); err != nil {
			return invalid("JWKSURL %s: %v", cfg.JWKSURL, err)
		}
	}
	if len(cfg.Algorithms) == 0 {
		cfg.Algorithms = defaultAlgs
	}
	cfg.Algorithms = slices.Clone(cfg.Algorithms)
	for _, a := range cfg.Algorithms {
		if !slices.Contains(asymmetricAlgs, jose.SignatureAlgorithm(a)) {
			return invalid("algorithm %q is not accepted: want some of %s", a, joseAlgList(asymmetricAlgs))
		}
	}
	slices.Sort(cfg.Algorithms)
	cfg.Algorithms = slices.Compact(cfg.Algorithms)
	if cfg.RoleMap != nil {
		m := make(map[string][]infertrail.Role, len(cfg.RoleMap))
		for _, k := range slices.Sorted(maps.Keys(cfg.RoleMap)) {
			for _, r := range cfg.RoleMap[k] {
				if r.Permissions() == 0 {
					return invalid("RoleMap[%q]: unknown role %q", k, r)
				}
			}
			m[k] = slices.Clone(cfg.RoleMap[k])
		}
		cfg.RoleMap = m
	}
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	def(&cfg.RolesClaim, defaultRolesClaim)
	def(&cfg.TenantClaim, defaultTenantClaim)
	def(&cfg.NameClaim, defaultNameClaim)
	if cfg.Leeway == 0 {
		cfg.Leeway = defaultOIDCLeeway
	}
	if cfg.RefreshInterval == 0 {
		cfg.RefreshInterval = defaultJWKSRefresh
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = providerClient()
	}
	return nil
}

// providerClient is the default HTTP client for an OpenID provider's
// documents: a 10 s timeout, and redirects only to URLs that
// checkProviderURL accepts.
func providerClient() *http.Client {
	return &http.Client{
		Timeout: jwksFetchTimeout,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= 5 {
				return errors.New("stopped after 5 redirects")
			}
			if err := checkProviderURL(req.URL); err != nil {
				return fmt.Errorf("redirect to %s: %w", req.URL.Redacted(), err)
			}
			return nil
		},
	}
}

// checkProviderURL refuses a URL that would talk to the provider (fetch
// its keys, send it a code) over plain HTTP to another machine.
func checkProviderURL(u *url.URL) error {
	switch {
	case u.Host == "":
		return errors.New("want an absolute https:// URL")
	case u.Scheme == "https":
		return nil
	case u.Scheme != "http":
		return fmt.Errorf("scheme %q: want https", u.Scheme)
	}
	h := u.Hostname()
	if a, err := netip.ParseAddr(h); strings.EqualFold(h, "localhost") || err == nil && a.IsLoopback() {
		return nil
	}
	return errors.New("plain http is allowed for loopback hosts only: want https")
}

func joseAlgList(algs []jose.SignatureAlgorithm) string {
	s := make([]string, len(algs))
	for i, a := range algs {
		s[i] = string(a)
	}
	return strings.Join(s, ", ")
}

// LooksLikeJWT reports whether s has the shape of a JWS in compact form:
// three base64url segments separated by dots, the first (the header, a
// JSON object) starting with "eyJ". The signature segment may be empty, so
// that an unsigned token is refused by Verify with a clear reason.
func LooksLikeJWT(s string) bool {
	header, rest, _ := strings.Cut(s, ".")
	payload, sig, ok := strings.Cut(rest, ".")
	if !ok || !strings.HasPrefix(header, "eyJ") || payload == "" {
		return false
	}
	return isBase64URLSegment(header) && isBase64URLSegment(payload) && isBase64URLSegment(sig)
}

func isBase64URLSegment(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// refuseJWT returns an error wrapping ErrUnauthenticated that says what is
// wrong with a token. It must never quote the token itself.
func refuseJWT(format string, args ...any) error {
	return fmt.Errorf("OIDC token "+format+": %w", append(args, infertrail.ErrUnauthenticated)...)
}

// clipClaim shortens a value taken from a token for quoting in an error.
func clipClaim(s string) string {
	const n = 64
	if len(s) <= n {
		return s
	}
	i := n
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i] + "…"
}

// Verify checks a bearer JWT and returns the principal it stands for. Any
// failure is an error wrapping infertrail.ErrUnauthenticated that says
// what was wrong, without quoting the token. A JWKS fetch that Verify
// starts runs to its end (at most 10 s) even when ctx is cancelled, as
// other callers may be waiting for it.
func (o *OIDC) Verify(ctx context.Context, raw string) (*infertrail.Principal, error) {
	return o.verify(ctx, raw, nil)
}

// VerifyIDToken checks an ID token that the provider issued to the web
// UI's sign-in, as Verify does, and also that its aud contains ClientID
// (and azp, if present, is ClientID) and that its nonce claim is nonce,
// the value the sign-in sent. It fails with an error wrapping
// infertrail.ErrInvalid when ClientID is not configured.
func (o *OIDC) VerifyIDToken(ctx context.Context, raw, nonce string) (*infertrail.Principal, error) {
	switch {
	case o.cfg.ClientID == "":
		return nil, fmt.Errorf("verify ID token: OIDCConfig.ClientID is not set: %w", infertrail.ErrInvalid)
	case nonce == "":
		return nil, fmt.Errorf("verify ID token: no nonce to check: %w", infertrail.ErrInvalid)
	}
	return o.verify(ctx, raw, &nonce)
}

// verify checks a JWT: for an ID token, nonce is the nonce it must carry;
// for a bearer token, it is nil.
func (o *OIDC) verify(ctx context.Context, raw string, nonce *string) (*infertrail.Principal, error) {
	if len(raw) > maxJWT {
		return nil, refuseJWT("is longer than %d bytes", maxJWT)
	}
	tok, err := jwt.ParseSigned(raw, o.algs)
	if err != nil {
		if ae := (*jose.ErrUnexpectedSignatureAlgorithm)(nil); errors.As(err, &ae) {
			return nil, refuseJWT("uses signature algorithm %q: want one of %s", clipClaim(string(ae.Got)), joseAlgList(o.algs))
		}
		return nil, refuseJWT("is malformed: %s", joseReason(err))
	}
	h := tok.Headers[0]
	keys, err := o.keysFor(ctx, h.KeyID, jose.SignatureAlgorithm(h.Algorithm))
	if err != nil {
		return nil, err
	}
	var key any
	for _, k := range keys {
		err = tok.Claims(k.Key)
		if err == nil {
			key = k.Key
			break
		}
		if !errors.Is(err, jose.ErrCryptoFailure) {
			return nil, refuseJWT("cannot be verified: %s", joseReason(err))
		}
	}
	if key == nil {
		return nil, refuseJWT("has a bad signature")
	}
	var (
		std    jwt.Claims
		claims map[string]any
	)
	if err := tok.Claims(key, &std, &claims); err != nil {
		return nil, refuseJWT("has malformed claims: %s", joseReason(err))
	}
	return o.principal(&std, claims, nonce)
}

// joseReason is a go-jose error's text without its package prefix.
func joseReason(err error) string {
	s := err.Error()
	for _, p := range []string{"go-jose/go-jose/jwt: ", "go-jose/go-jose: "} {
		s = strings.TrimPrefix(s, p)
	}
	return s
}

// principal checks the claims of a token whose signature is good and
// maps them to a principal. A non-nil nonce makes it an ID token's check.
func (o *OIDC) principal(std *jwt.Claims, claims map[string]any, nonce *string) (*infertrail.Principal, error) {
	now := o.cfg.Now()
	switch {
	case std.Issuer != o.cfg.Issuer:
		return nil, refuseJWT("has the wrong issuer %q: want %q", clipClaim(std.Issuer), o.cfg.Issuer)
	case nonce != nil && !std.Audience.Contains(o.cfg.ClientID):
		return nil, refuseJWT("has the wrong audience %q: want the client id %q", clipClaim(strings.Join(std.Audience, " ")), o.cfg.ClientID)
	case nonce == nil && !o.audience(std.Audience):
		return nil, refuseJWT("has the wrong audience %q: want %s", clipClaim(strings.Join(std.Audience, " ")), o.wantAudience())
	case std.Expiry == nil:
		return nil, refuseJWT("has no expiry (exp)")
	}
	switch err := std.ValidateWithLeeway(jwt.Expected{Time: now}, o.cfg.Leeway); {
	case errors.Is(err, jwt.ErrExpired):
		return nil, refuseJWT("expired at %s", std.Expiry.Time().UTC().Format(time.RFC3339))
	case errors.Is(err, jwt.ErrNotValidYet):
		return nil, refuseJWT("is not valid before %s", std.NotBefore.Time().UTC().Format(time.RFC3339))
	case errors.Is(err, jwt.ErrIssuedInTheFuture):
		return nil, refuseJWT("was issued in the future, at %s", std.IssuedAt.Time().UTC().Format(time.RFC3339))
	case err != nil:
		return nil, refuseJWT("is invalid: %s", joseReason(err))
	}
	switch {
	case std.Subject == "":
		return nil, refuseJWT("has no subject (sub)")
	case len(std.Subject) > maxSubject:
		return nil, refuseJWT("has a subject (sub) longer than %d bytes", maxSubject)
	case !printableClaim(std.Subject):
		return nil, refuseJWT("has a subject (sub) that is not printable UTF-8")
	}
	if nonce != nil {
		if err := o.checkNonce(claims, *nonce); err != nil {
			return nil, err
		}
	}
	roles, err := o.roles(claims)
	if err != nil {
		return nil, err
	}
	tenant, err := o.tenant(claims)
	if err != nil {
		return nil, err
	}
	name := std.Subject
	if v, _ := lookupClaim(claims, o.cfg.NameClaim); v != nil {
		if s, ok := v.(string); ok && s != "" && len(s) <= maxNameClaim && printableClaim(s) {
			name = s
		}
	}
	return &infertrail.Principal{
		ID:     "oidc:" + std.Issuer + "#" + std.Subject,
		Name:   name,
		Tenant: tenant,
		Roles:  roles,
		Perms:  infertrail.PermissionsOf(roles),
	}, nil
}

// audience reports whether a bearer token's aud names InferTrail: the
// configured Audience or ClientID.
func (o *OIDC) audience(aud jwt.Audience) bool {
	return o.cfg.Audience != "" && aud.Contains(o.cfg.Audience) || o.cfg.ClientID != "" && aud.Contains(o.cfg.ClientID)
}

// wantAudience says which audiences a bearer token may have.
func (o *OIDC) wantAudience() string {
	switch {
	case o.cfg.ClientID == "":
		return strconv.Quote(o.cfg.Audience)
	case o.cfg.Audience == "":
		return strconv.Quote(o.cfg.ClientID)
	}
	return strconv.Quote(o.cfg.Audience) + " or " + strconv.Quote(o.cfg.ClientID)
}

// checkNonce checks an ID token's nonce and authorized party (OpenID
// Connect Core 1.0, §3.1.3.7).
func (o *OIDC) checkNonce(claims map[string]any, nonce string) error {
	got, _ := claims["nonce"].(string)
	switch {
	case got == "":
		return refuseJWT("has no nonce: it was not issued for this sign-in")
	case subtle.ConstantTimeCompare([]byte(got), []byte(nonce)) != 1:
		return refuseJWT("has the wrong nonce: it was not issued for this sign-in")
	}
	if azp, ok := claims["azp"]; ok {
		if s, _ := azp.(string); s != o.cfg.ClientID {
			return refuseJWT("was issued to another client (azp %q): want %q", clipClaim(fmt.Sprint(azp)), o.cfg.ClientID)
		}
	}
	return nil
}

func printableClaim(s string) bool {
	return utf8.ValidString(s) && strings.IndexFunc(s, func(r rune) bool { return !unicode.IsPrint(r) }) < 0
}

// lookupClaim returns the claim called name or, when there is none, the
// one at name taken as a dotted path into nested objects. A null claim is
// a missing one.
func lookupClaim(claims map[string]any, name string) (any, bool) {
	if v, ok := claims[name]; ok {
		return v, v != nil
	}
	var v any = claims
	for part := range strings.SplitSeq(name, ".") {
		m, ok := v.(map[string]any)
		if !ok {
			return nil, false
		}
		if v, ok = m[part]; !ok {
			return nil, false
		}
	}
	return v, v != nil
}

func (o *OIDC) roles(claims map[string]any) ([]infertrail.Role, error) {
	var names []string
	switch v, _ := lookupClaim(claims, o.cfg.RolesClaim); v := v.(type) {
	case nil:
	case string:
		names = []string{v}
	case []any:
		for _, e := range v {
			if s, ok := e.(string); ok {
				names = append(names, s)
			}
		}
	default:
		return nil, refuseJWT("has a %q claim that is neither a string nor an array of strings", o.cfg.RolesClaim)
	}
	var roles []infertrail.Role
	for _, n := range names {
		if o.cfg.RoleMap != nil {
			roles = append(roles, o.cfg.RoleMap[n]...)
		} else if r := infertrail.Role(n); r.Permissions() != 0 {
			roles = append(roles, r)
		}
	}
	if len(roles) == 0 {
		return nil, refuseJWT("grants no InferTrail role (claim %q)", o.cfg.RolesClaim)
	}
	slices.Sort(roles)
	return slices.Compact(roles), nil
}

func (o *OIDC) tenant(claims map[string]any) (string, error) {
	v, ok := lookupClaim(claims, o.cfg.TenantClaim)
	if !ok {
		if o.cfg.Tenant == "" {
			return "", refuseJWT("has no %q claim, and no default tenant is configured", o.cfg.TenantClaim)
		}
		return o.cfg.Tenant, nil
	}
	s, _ := v.(string)
	if !infertrail.ValidTenant(s) {
		return "", refuseJWT("has a %q claim that is not a tenant name: want 1 to 128 characters of A-Z a-z 0-9 . _ - starting with a letter or digit", o.cfg.TenantClaim)
	}
	return s, nil
}

// keysFor returns the keys that may have signed a token with the key id
// and algorithm, at least one, fetching the JWKS again for an unknown key
// id.
func (o *OIDC) keysFor(ctx context.Context, kid string, alg jose.SignatureAlgorithm) ([]jose.JSONWebKey, error) {
	set := o.current(ctx)
	if kid == "" {
		keys := fittingKeys(set.Keys, alg)
		if len(keys) == 0 {
			return nil, refuseJWT("names no key id, and no key in the JWKS fits algorithm %s", alg)
		}
		return keys, nil
	}
	named := set.Key(kid)
	if len(named) == 0 {
		var err error
		set, err = o.reloadForMiss(ctx, set)
		if named = set.Key(kid); len(named) == 0 {
			if err != nil {
				return nil, refuseJWT("names an unknown key id %q, and reloading the JWKS failed: %v", clipClaim(kid), err)
			}
			return nil, refuseJWT("names an unknown key id %q", clipClaim(kid))
		}
	}
	keys := fittingKeys(named, alg)
	if len(keys) == 0 {
		return nil, refuseJWT("names key id %q, which does not fit algorithm %s", clipClaim(kid), alg)
	}
	return keys, nil
}

// fittingKeys returns the keys that may verify signatures made with alg.
func fittingKeys(keys []jose.JSONWebKey, alg jose.SignatureAlgorithm) []jose.JSONWebKey {
	var out []jose.JSONWebKey
	for _, k := range keys {
		if k.Algorithm != "" && k.Algorithm != string(alg) {
			continue
		}
		var ok bool
		switch pub := k.Key.(type) {
		case *rsa.PublicKey:
			ok = strings.HasPrefix(string(alg), "RS") || strings.HasPrefix(string(alg), "PS")
		case *ecdsa.PublicKey:
			ok = alg == jose.ES256 && pub.Curve == elliptic.P256() || alg == jose.ES384 && pub.Curve == elliptic.P384() ||
				alg == jose.ES512 && pub.Curve == elliptic.P521()
		case ed25519.PublicKey:
			ok = alg == jose.EdDSA
		}
		if ok {
			out = append(out, k)
		}
	}
	return out
}

// current returns the keys, first loading them again if that is due. A
// failed load keeps the keys there are, and is retried when due again;
// while another caller loads them, current does not wait.
func (o *OIDC) current(ctx context.Context) *jose.JSONWebKeySet {
	if o.cfg.Now().UnixNano() >= o.due.Load() && o.mu.TryLock() {
		if now := o.cfg.Now(); now.UnixNano() >= o.due.Load() {
			_ = o.reloadLocked(context.WithoutCancel(ctx), now)
		}
		o.mu.Unlock()
	}
	return o.keys.Load()
}

// reloadForMiss loads the keys again for a key id that seen lacks, unless
// another caller did so meanwhile or, from a URL, it was done less than
// jwksMissInterval ago. It returns the keys there are then.
func (o *OIDC) reloadForMiss(ctx context.Context, seen *jose.JSONWebKeySet) (*jose.JSONWebKeySet, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if cur := o.keys.Load(); cur != seen {
		return cur, nil
	}
	now := o.cfg.Now()
	if o.cfg.JWKSURL != "" {
		if !o.missed.IsZero() && now.Sub(o.missed) < jwksMissInterval {
			return seen, nil
		}
		o.missed = now
	}
	err := o.reloadLocked(context.WithoutCancel(ctx), now)
	return o.keys.Load(), err
}

// reloadLocked fetches the JWKS from its URL, or reads its file if that
// changed, and sets when to do so next. It keeps the keys there are if it
// fails. The caller holds o.mu (or is NewOIDC).
func (o *OIDC) reloadLocked(ctx context.Context, now time.Time) error {
	if o.cfg.JWKSFile != "" {
		o.due.Store(now.Add(jwksFileCheckInterval).UnixNano())
		fi, err := os.Stat(o.cfg.JWKSFile)
		if err != nil {
			return err
		}
		if o.file != nil && os.SameFile(o.file, fi) && fi.ModTime().Equal(o.file.ModTime()) && fi.Size() == o.file.Size() {
			return nil
		}
		set, fi, err := readJWKSFile(o.cfg.JWKSFile)
		if err != nil {
			return err
		}
		o.file = fi
		o.keys.Store(set)
		return nil
	}
	o.due.Store(now.Add(o.cfg.RefreshInterval).UnixNano())
	set, err := o.fetch(ctx)
	if err != nil {
		return err
	}
	o.keys.Store(set)
	return nil
}

func (o *OIDC) fetch(ctx context.Context) (*jose.JSONWebKeySet, error) {
	b, err := getBounded(ctx, o.cfg.HTTPClient, o.cfg.JWKSURL, "application/jwk-set+json, application/json", maxJWKS)
	if err != nil {
		return nil, err
	}
	return parseJWKS(b)
}

// getBounded GETs a document of the provider's (a JWKS, the discovery
// document): at most limit bytes, within jwksFetchTimeout. Its errors do
// not repeat the URL, which the caller names.
func getBounded(ctx context.Context, client *http.Client, u, accept string, limit int) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, jwksFetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", accept)
	resp, err := client.Do(req)
	if err != nil {
		if ue := (*url.Error)(nil); errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("HTTP status %s", resp.Status)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, int64(limit)+1))
	if err != nil {
		return nil, fmt.Errorf("read response: %w", err)
	}
	if len(b) > limit {
		return nil, fmt.Errorf("response is larger than %d bytes", limit)
	}
	return b, nil
}

func readJWKSFile(name string) (*jose.JSONWebKeySet, os.FileInfo, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, nil, err
	}
	b, err := io.ReadAll(io.LimitReader(f, maxJWKS+1))
	if err != nil {
		return nil, nil, err
	}
	if len(b) > maxJWKS {
		return nil, nil, fmt.Errorf("file is larger than %d bytes", maxJWKS)
	}
	set, err := parseJWKS(b)
	return set, fi, err
}

// parseJWKS reads a JWKS document, keeping its public signing keys. Keys
// of kinds go-jose does not know, and encryption keys, are skipped, so
// that a provider may publish them; a private key is an error.
func parseJWKS(b []byte) (*jose.JSONWebKeySet, error) {
	var doc struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("not a JWKS: %w", err)
	}
	if doc.Keys == nil {
		return nil, errors.New(`not a JWKS: no "keys" member`)
	}
	set := &jose.JSONWebKeySet{}
	var skipped error
	for i, raw := range doc.Keys {
		var k jose.JSONWebKey
		if err := k.UnmarshalJSON(raw); err != nil {
			skipped = fmt.Errorf("key %d: %s", i, joseReason(err))
			continue
		}
		_, symmetric := k.Key.([]byte)
		switch {
		case symmetric:
			skipped = fmt.Errorf("key %d (%q) is a symmetric key", i, k.KeyID)
		case !k.Valid():
			skipped = fmt.Errorf("key %d (%q) is not valid", i, k.KeyID)
		case !k.IsPublic():
			return nil, fmt.Errorf("key %d (%q) holds a private key: publish public keys only", i, k.KeyID)
		case k.Use != "" && k.Use != "sig":
			skipped = fmt.Errorf("key %d (%q) is for use %q", i, k.KeyID, k.Use)
		default:
			set.Keys = append(set.Keys, k)
		}
	}
	if len(set.Keys) == 0 {
		if skipped != nil {
			return nil, fmt.Errorf("no usable public signing key (%v)", skipped)
		}
		return nil, errors.New("no keys")
	}
	return set, nil
}
