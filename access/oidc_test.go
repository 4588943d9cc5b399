package access

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/infertrail/infertrail"
)

const (
	oidcIssuer   = "https://idp.example/realms/acme"
	oidcAudience = "infertrail"
)

// oidcTestKeys holds generated keys by name, as RSA keys are slow to make.
var oidcTestKeys sync.Map

// oidcTestKey returns the private key of a kind ("rsa" or "ed25519") with the
// key id, the same one each time.
func oidcTestKey(t testing.TB, kind, kid string) jose.JSONWebKey {
	t.Helper()
	if k, ok := oidcTestKeys.Load(kind + "/" + kid); ok {
		return k.(jose.JSONWebKey)
	}
	k := jose.JSONWebKey{KeyID: kid, Use: "sig"}
	var err error
	switch kind {
	case "rsa":
		k.Algorithm = string(jose.RS256)
		k.Key, err = rsa.GenerateKey(rand.Reader, 2048)
	case "ed25519":
		k.Algorithm = string(jose.EdDSA)
		_, k.Key, err = ed25519.GenerateKey(rand.Reader)
	default:
		t.Fatalf("unknown key kind %q", kind)
	}
	if err != nil {
		t.Fatal(err)
	}
	v, _ := oidcTestKeys.LoadOrStore(kind+"/"+kid, k)
	return v.(jose.JSONWebKey)
}

// oidcJWKS returns the JWKS document publishing the keys' public halves.
func oidcJWKS(t testing.TB, keys ...jose.JSONWebKey) []byte {
	t.Helper()
	set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{}}
	for _, k := range keys {
		set.Keys = append(set.Keys, k.Public())
	}
	b, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// signJWT returns a JWT with the claims signed by the key. A key given as a
// JSONWebKey names its key id in the header; a bare private key names none.
func signJWT(t testing.TB, alg jose.SignatureAlgorithm, key any, claims any) string {
	t.Helper()
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.Signed(s).Claims(claims).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func signJWTWith(t testing.TB, k jose.JSONWebKey, claims any) string {
	t.Helper()
	return signJWT(t, jose.SignatureAlgorithm(k.Algorithm), k, claims)
}

// oidcTestIDP serves a JWKS and counts how often it is fetched.
type oidcTestIDP struct {
	srv     *httptest.Server
	fetches atomic.Int32
	mu      sync.Mutex
	body    []byte
	status  int
}

func newOIDCTestIDP(t testing.TB, keys ...jose.JSONWebKey) *oidcTestIDP {
	p := &oidcTestIDP{status: http.StatusOK}
	p.setKeys(t, keys...)
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.fetches.Add(1)
		p.mu.Lock()
		body, status := p.body, p.status
		p.mu.Unlock()
		w.Header().Set("Content-Type", "application/jwk-set+json")
		w.WriteHeader(status)
		w.Write(body)
	}))
	t.Cleanup(p.srv.Close)
	return p
}

func (p *oidcTestIDP) setKeys(t testing.TB, keys ...jose.JSONWebKey) {
	b := oidcJWKS(t, keys...)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.body = b
}

func (p *oidcTestIDP) setStatus(status int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.status = status
}

// oidcTestClock is a clock that moves only when told.
type oidcTestClock struct {
	mu sync.Mutex
	t  time.Time
}

func newOIDCTestClock() *oidcTestClock {
	return &oidcTestClock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
}

func (c *oidcTestClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *oidcTestClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// oidcTestClaims returns the claims of a valid token at now.
func oidcTestClaims(now time.Time) map[string]any {
	return map[string]any{
		"iss":    oidcIssuer,
		"aud":    oidcAudience,
		"sub":    "alice",
		"email":  "alice@example.com",
		"exp":    now.Add(time.Hour).Unix(),
		"iat":    now.Unix(),
		"roles":  []string{"auditor"},
		"tenant": "acme",
	}
}

func newTestOIDC(t testing.TB, cfg OIDCConfig) *OIDC {
	t.Helper()
	o, err := NewOIDC(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

// checkOIDCRefusal fails the test unless err is a refusal that does not quote
// the token.
func checkOIDCRefusal(t testing.TB, err error, tok, want string) {
	t.Helper()
	if err == nil {
		t.Errorf("Verify: no error, want one saying %q", want)
		return
	}
	if !errors.Is(err, infertrail.ErrUnauthenticated) {
		t.Errorf("Verify: %v, want an error wrapping ErrUnauthenticated", err)
	}
	if !strings.Contains(err.Error(), want) {
		t.Errorf("Verify: %v, want an error saying %q", err, want)
	}
	for seg := range strings.SplitSeq(tok, ".") {
		if len(seg) >= 16 && strings.Contains(err.Error(), seg) {
			t.Errorf("Verify: %v quotes the token", err)
		}
	}
}

func TestOIDCVerify(t *testing.T) {
	rsaKey, edKey := oidcTestKey(t, "rsa", "k1"), oidcTestKey(t, "ed25519", "e1")
	other := oidcTestKey(t, "rsa", "other")
	idp := newOIDCTestIDP(t, rsaKey, edKey)
	clk := newOIDCTestClock()
	now := clk.Now()
	auditor := []infertrail.Role{infertrail.RoleAuditor}
	alice := func(tenant string, roles ...infertrail.Role) *infertrail.Principal {
		return &infertrail.Principal{ID: "oidc:" + oidcIssuer + "#alice", Name: "alice@example.com", Tenant: tenant,
			Roles: roles, Perms: infertrail.PermissionsOf(roles)}
	}
	tests := []struct {
		name    string
		cfg     func(*OIDCConfig)
		claims  func(map[string]any)
		token   func(claims map[string]any) string // default: signed with rsaKey
		want    *infertrail.Principal
		wantErr string
	}{
		{name: "valid", want: alice("acme", auditor...)},
		{name: "Ed25519", token: func(c map[string]any) string { return signJWTWith(t, edKey, c) }, want: alice("acme", auditor...)},
		{name: "no key id", token: func(c map[string]any) string { return signJWT(t, jose.RS256, rsaKey.Key, c) },
			want: alice("acme", auditor...)},
		{name: "no key id, bad signature", token: func(c map[string]any) string { return signJWT(t, jose.RS256, other.Key, c) },
			wantErr: "bad signature"},
		{name: "audience among several", claims: func(c map[string]any) { c["aud"] = []string{"other", oidcAudience} },
			want: alice("acme", auditor...)},
		{name: "roles as a string", claims: func(c map[string]any) { c["roles"] = "admin" },
			want: alice("acme", infertrail.RoleAdmin)},
		{name: "unknown roles ignored, sorted, deduplicated",
			claims: func(c map[string]any) { c["roles"] = []any{"monitor", "root", 7, "auditor", "monitor"} },
			want:   alice("acme", infertrail.RoleAuditor, infertrail.RoleMonitor)},
		{name: "role map",
			cfg: func(c *OIDCConfig) {
				c.RoleMap = map[string][]infertrail.Role{
					"it-audit": {infertrail.RoleAuditor, infertrail.RoleMonitor},
					"secops":   {infertrail.RoleInvestigator, infertrail.RoleAuditor},
				}
			},
			claims: func(c map[string]any) { c["roles"] = []string{"secops", "it-audit", "admin"} },
			want:   alice("acme", infertrail.RoleAuditor, infertrail.RoleInvestigator, infertrail.RoleMonitor)},
		{name: "role map without a match",
			cfg:     func(c *OIDCConfig) { c.RoleMap = map[string][]infertrail.Role{"it-audit": auditor} },
			claims:  func(c map[string]any) { c["roles"] = []string{"admin"} },
			wantErr: "token grants no InferTrail role"},
		{name: "dotted claim path",
			cfg: func(c *OIDCConfig) { c.RolesClaim = "realm_access.roles"; c.TenantClaim = "org.id" },
			claims: func(c map[string]any) {
				delete(c, "roles")
				c["realm_access"] = map[string]any{"roles": []string{"investigator"}}
				c["org"] = map[string]any{"id": "globex"}
			},
			want: alice("globex", infertrail.RoleInvestigator)},
		{name: "claim name with dots",
			cfg: func(c *OIDCConfig) { c.RolesClaim = "https://infertrail.example/roles" },
			claims: func(c map[string]any) {
				delete(c, "roles")
				c["https://infertrail.example/roles"] = []string{"ingest"}
			},
			want: alice("acme", infertrail.RoleIngest)},
		{name: "roles claim of the wrong type", claims: func(c map[string]any) { c["roles"] = map[string]any{"a": 1} },
			wantErr: "neither a string nor an array"},
		{name: "no roles", claims: func(c map[string]any) { delete(c, "roles") }, wantErr: "token grants no InferTrail role"},
		{name: "only unknown roles", claims: func(c map[string]any) { c["roles"] = []string{"root"} },
			wantErr: "token grants no InferTrail role"},
		{name: "no tenant, default tenant", cfg: func(c *OIDCConfig) { c.Tenant = "default" },
			claims: func(c map[string]any) { delete(c, "tenant") }, want: alice("default", auditor...)},
		{name: "no tenant, every tenant by default", cfg: func(c *OIDCConfig) { c.Tenant = infertrail.AllTenants },
			claims: func(c map[string]any) { delete(c, "tenant") }, want: alice(infertrail.AllTenants, auditor...)},
		{name: "no tenant, no default", claims: func(c map[string]any) { delete(c, "tenant") },
			wantErr: `no "tenant" claim`},
		{name: "empty tenant", cfg: func(c *OIDCConfig) { c.Tenant = "default" },
			claims: func(c map[string]any) { c["tenant"] = "" }, wantErr: "not a tenant name"},
		{name: "long tenant", claims: func(c map[string]any) { c["tenant"] = strings.Repeat("t", 129) },
			wantErr: "not a tenant name"},
		{name: "tenant claim cannot grant every tenant", claims: func(c map[string]any) { c["tenant"] = "*" },
			wantErr: "not a tenant name"},
		{name: "numeric tenant", claims: func(c map[string]any) { c["tenant"] = 42 }, wantErr: "not a tenant name"},
		{name: "name falls back to sub", claims: func(c map[string]any) { delete(c, "email") },
			want: &infertrail.Principal{ID: "oidc:" + oidcIssuer + "#alice", Name: "alice", Tenant: "acme",
				Roles: auditor, Perms: infertrail.PermissionsOf(auditor)}},
		{name: "name claim", cfg: func(c *OIDCConfig) { c.NameClaim = "preferred_username" },
			claims: func(c map[string]any) { c["preferred_username"] = "Alice A." },
			want: &infertrail.Principal{ID: "oidc:" + oidcIssuer + "#alice", Name: "Alice A.", Tenant: "acme",
				Roles: auditor, Perms: infertrail.PermissionsOf(auditor)}},
		{name: "expired", claims: func(c map[string]any) { c["exp"] = now.Add(-2 * time.Minute).Unix() },
			wantErr: "expired at 2026-03-01T11:58:00Z"},
		{name: "expired within leeway", claims: func(c map[string]any) { c["exp"] = now.Add(-30 * time.Second).Unix() },
			want: alice("acme", auditor...)},
		{name: "expired, small leeway", cfg: func(c *OIDCConfig) { c.Leeway = time.Second },
			claims: func(c map[string]any) { c["exp"] = now.Add(-30 * time.Second).Unix() }, wantErr: "expired"},
		{name: "no expiry", claims: func(c map[string]any) { delete(c, "exp") }, wantErr: "no expiry"},
		{name: "not yet valid", claims: func(c map[string]any) { c["nbf"] = now.Add(time.Hour).Unix() },
			wantErr: "not valid before"},
		{name: "issued in the future", claims: func(c map[string]any) { c["iat"] = now.Add(time.Hour).Unix() },
			wantErr: "issued in the future"},
		{name: "wrong issuer", claims: func(c map[string]any) { c["iss"] = "https://evil.example" },
			wantErr: "wrong issuer"},
		{name: "wrong audience", claims: func(c map[string]any) { c["aud"] = "other" }, wantErr: "wrong audience"},
		{name: "no audience", claims: func(c map[string]any) { delete(c, "aud") }, wantErr: "wrong audience"},
		{name: "no subject", claims: func(c map[string]any) { delete(c, "sub") }, wantErr: "no subject"},
		{name: "long subject", claims: func(c map[string]any) { c["sub"] = strings.Repeat("s", 256) },
			wantErr: "subject (sub) longer"},
		{name: "malformed claim", claims: func(c map[string]any) { c["exp"] = "tomorrow" }, wantErr: "malformed claims"},
		{name: "bad signature", token: func(c map[string]any) string {
			k := other
			k.KeyID = rsaKey.KeyID // pretends to be the published key
			return signJWTWith(t, k, c)
		}, wantErr: "bad signature"},
		{name: "tampered payload", token: func(c map[string]any) string {
			tok := signJWTWith(t, rsaKey, c)
			c["roles"] = []string{"admin"}
			forged := strings.Split(signJWTWith(t, rsaKey, c), ".")
			parts := strings.Split(tok, ".")
			return parts[0] + "." + forged[1] + "." + parts[2]
		}, wantErr: "bad signature"},
		{name: "unknown key id", token: func(c map[string]any) string { return signJWTWith(t, oidcTestKey(t, "rsa", "gone"), c) },
			wantErr: `unknown key id "gone"`},
		{name: "key id for another algorithm", token: func(c map[string]any) string {
			k := edKey
			k.KeyID = rsaKey.KeyID
			return signJWTWith(t, k, c)
		}, wantErr: `does not fit algorithm EdDSA`},
		{name: "algorithm not configured", cfg: func(c *OIDCConfig) { c.Algorithms = []string{"ES256", "EdDSA"} },
			wantErr: `signature algorithm "RS256"`},
		{name: "malformed", token: func(map[string]any) string { return "eyJhbGciOiJSUzI1NiJ9.e30.!!" }, wantErr: "malformed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := OIDCConfig{Issuer: oidcIssuer, Audience: oidcAudience, JWKSURL: idp.srv.URL, Now: clk.Now}
			if tt.cfg != nil {
				tt.cfg(&cfg)
			}
			o := newTestOIDC(t, cfg)
			c := oidcTestClaims(now)
			if tt.claims != nil {
				tt.claims(c)
			}
			var tok string
			if tt.token != nil {
				tok = tt.token(c)
			} else {
				tok = signJWTWith(t, rsaKey, c)
			}
			p, err := o.Verify(t.Context(), tok)
			if tt.wantErr != "" {
				checkOIDCRefusal(t, err, tok, tt.wantErr)
				return
			}
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if !reflect.DeepEqual(p, tt.want) {
				t.Errorf("Verify = %+v, want %+v", p, tt.want)
			}
		})
	}
}

func TestOIDCRefusesAlgorithms(t *testing.T) {
	k := oidcTestKey(t, "rsa", "k1")
	idp := newOIDCTestIDP(t, k)
	o := newTestOIDC(t, OIDCConfig{Issuer: oidcIssuer, Audience: oidcAudience, JWKSURL: idp.srv.URL})
	claims := oidcTestClaims(time.Now())
	enc := base64.RawURLEncoding.EncodeToString
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	secret := make([]byte, 32)
	rand.Read(secret)
	hs := func(alg jose.SignatureAlgorithm, key []byte) string {
		s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, (&jose.SignerOptions{}).WithHeader("kid", k.KeyID))
		if err != nil {
			t.Fatal(err)
		}
		tok, err := jwt.Signed(s).Claims(claims).Serialize()
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	// The HMAC key of the classic confusion attack: the RSA public key.
	pub, err := json.Marshal(k.Public())
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, token, want string
	}{
		{"none", enc([]byte(`{"alg":"none","typ":"JWT","kid":"k1"}`)) + "." + enc(payload) + ".", `algorithm "none"`},
		{"none, sort of", enc([]byte(`{"alg":"NONE","typ":"JWT"}`)) + "." + enc(payload) + ".", `algorithm "NONE"`},
		{"HS256", hs(jose.HS256, secret), `algorithm "HS256"`},
		{"HS512 with the public key", hs(jose.HS512, append(pub, pub...)), `algorithm "HS512"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !LooksLikeJWT(tt.token) {
				t.Errorf("LooksLikeJWT(%s) = false", tt.token)
			}
			_, err := o.Verify(t.Context(), tt.token)
			checkOIDCRefusal(t, err, tt.token, tt.want)
		})
	}
}

func TestOIDCOversized(t *testing.T) {
	k := oidcTestKey(t, "rsa", "k1")
	idp := newOIDCTestIDP(t, k)
	o := newTestOIDC(t, OIDCConfig{Issuer: oidcIssuer, Audience: oidcAudience, JWKSURL: idp.srv.URL})
	c := oidcTestClaims(time.Now())
	c["padding"] = strings.Repeat("p", 16<<10)
	tok := signJWTWith(t, k, c)
	_, err := o.Verify(t.Context(), tok)
	checkOIDCRefusal(t, err, tok, "longer than 16384 bytes")
	if n := idp.fetches.Load(); n != 1 {
		t.Errorf("JWKS fetched %d times, want once", n)
	}
}

func TestOIDCKeyRotation(t *testing.T) {
	k1, k2, k3 := oidcTestKey(t, "rsa", "k1"), oidcTestKey(t, "rsa", "k2"), oidcTestKey(t, "ed25519", "k3")
	idp := newOIDCTestIDP(t, k1)
	clk := newOIDCTestClock()
	o := newTestOIDC(t, OIDCConfig{Issuer: oidcIssuer, Audience: oidcAudience, JWKSURL: idp.srv.URL, Now: clk.Now})
	fetches := func(want int32) {
		t.Helper()
		if n := idp.fetches.Load(); n != want {
			t.Errorf("JWKS fetched %d times, want %d", n, want)
		}
	}
	verify := func(k jose.JSONWebKey, wantErr string) {
		t.Helper()
		tok := signJWTWith(t, k, oidcTestClaims(clk.Now()))
		_, err := o.Verify(t.Context(), tok)
		if wantErr != "" {
			checkOIDCRefusal(t, err, tok, wantErr)
		} else if err != nil {
			t.Errorf("Verify(token signed by %s): %v", k.KeyID, err)
		}
	}
	fetches(1)
	verify(k1, "")
	fetches(1)

	// The provider adds a key: its first token makes the JWKS fetched again.
	idp.setKeys(t, k1, k2)
	verify(k2, "")
	fetches(2)
	verify(k2, "")
	fetches(2)

	// Another one at once: fetching again must wait 30 s.
	idp.setKeys(t, k2, k3)
	verify(k3, `unknown key id "k3"`)
	fetches(2)
	clk.Advance(31 * time.Second)
	verify(k3, "")
	fetches(3)
	verify(k1, `unknown key id "k1"`) // removed, and fetched too recently to look again
	fetches(3)

	// Many callers with an unknown key id at once fetch the JWKS once.
	clk.Advance(31 * time.Second)
	tok := signJWTWith(t, oidcTestKey(t, "rsa", "unpublished"), oidcTestClaims(clk.Now()))
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			_, err := o.Verify(context.Background(), tok)
			checkOIDCRefusal(t, err, tok, `unknown key id "unpublished"`)
		})
	}
	wg.Wait()
	fetches(4)

	// The keys are fetched again every RefreshInterval; a failure keeps
	// the keys there are.
	idp.setStatus(http.StatusInternalServerError)
	clk.Advance(16 * time.Minute)
	verify(k2, "")
	fetches(5)
	verify(k2, "")
	fetches(5)
	idp.setStatus(http.StatusOK)
	idp.setKeys(t, k3)
	clk.Advance(16 * time.Minute)
	verify(k3, "")
	fetches(6)
	verify(k2, `unknown key id "k2"`)
}

func TestOIDCUnknownKeyIDFetchFails(t *testing.T) {
	k1 := oidcTestKey(t, "rsa", "k1")
	idp := newOIDCTestIDP(t, k1)
	o := newTestOIDC(t, OIDCConfig{Issuer: oidcIssuer, Audience: oidcAudience, JWKSURL: idp.srv.URL})
	idp.setStatus(http.StatusBadGateway)
	tok := signJWTWith(t, oidcTestKey(t, "rsa", "k2"), oidcTestClaims(time.Now()))
	_, err := o.Verify(t.Context(), tok)
	checkOIDCRefusal(t, err, tok, "reloading the JWKS failed: HTTP status 502")
}

func TestOIDCJWKSFile(t *testing.T) {
	k1, k2, k3 := oidcTestKey(t, "rsa", "k1"), oidcTestKey(t, "rsa", "k2"), oidcTestKey(t, "ed25519", "k3")
	file := filepath.Join(t.TempDir(), "jwks.json")
	mtime := time.Now().Add(-time.Hour)
	write := func(b []byte) {
		t.Helper()
		if err := os.WriteFile(file, b, 0o600); err != nil {
			t.Fatal(err)
		}
		// Each version gets its own modification time, whatever the
		// file system's resolution.
		mtime = mtime.Add(time.Second)
		if err := os.Chtimes(file, mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
	write(oidcJWKS(t, k1))
	clk := newOIDCTestClock()
	o := newTestOIDC(t, OIDCConfig{Issuer: oidcIssuer, Audience: oidcAudience, JWKSFile: file, Now: clk.Now})
	verify := func(k jose.JSONWebKey, wantErr string) {
		t.Helper()
		tok := signJWTWith(t, k, oidcTestClaims(clk.Now()))
		_, err := o.Verify(t.Context(), tok)
		if wantErr != "" {
			checkOIDCRefusal(t, err, tok, wantErr)
		} else if err != nil {
			t.Errorf("Verify(token signed by %s): %v", k.KeyID, err)
		}
	}
	verify(k1, "")
	verify(k2, `unknown key id "k2"`)

	// A new key is found at once: an unknown key id makes the file checked.
	write(oidcJWKS(t, k2))
	verify(k2, "")
	verify(k1, `unknown key id "k1"`)

	// A broken file keeps the keys there are.
	write([]byte(`{"keys": [`))
	clk.Advance(2 * time.Second)
	verify(k2, "")

	// A key removed stops working within a second.
	write(oidcJWKS(t, k3))
	verify(k2, "")
	clk.Advance(2 * time.Second)
	verify(k2, `unknown key id "k2"`)
	verify(k3, "")
}

func TestNewOIDCErrors(t *testing.T) {
	k := oidcTestKey(t, "rsa", "k1")
	priv, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{k}})
	if err != nil {
		t.Fatal(err)
	}
	pub, err := json.Marshal(k.Public())
	if err != nil {
		t.Fatal(err)
	}
	secret, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: make([]byte, 32), KeyID: "s"}}})
	if err != nil {
		t.Fatal(err)
	}
	docs := map[string][]byte{
		"/html":    []byte("<html>hello</html>"),
		"/nokeys":  []byte(`{"issuer": "x"}`),
		"/empty":   []byte(`{"keys": []}`),
		"/private": priv,
		"/secret":  secret,
		"/strange": []byte(`{"keys": [{"kty": "XYZ", "kid": "x"}]}`),
		"/huge":    []byte(`{"keys": [], "pad": "` + strings.Repeat("x", 1<<20) + `"}`),
		"/mixed":   fmt.Appendf(nil, `{"keys": [{"kty": "XYZ"}, %s]}`, pub),
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/redirect" {
			http.Redirect(w, r, "http://idp.example/jwks", http.StatusFound)
			return
		}
		b, ok := docs[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Write(b)
	}))
	defer srv.Close()
	down := httptest.NewServer(http.NotFoundHandler())
	down.Close()
	missing := filepath.Join(t.TempDir(), "missing.json")

	tests := []struct {
		name    string
		cfg     func(*OIDCConfig)
		invalid bool // a configuration error, wrapping ErrInvalid
		want    []string
	}{
		{name: "no issuer", cfg: func(c *OIDCConfig) { c.Issuer = "" }, invalid: true, want: []string{"Issuer is required"}},
		{name: "no audience", cfg: func(c *OIDCConfig) { c.Audience = "" }, invalid: true, want: []string{"Audience is required (or ClientID)"}},
		{name: "no JWKS", cfg: func(c *OIDCConfig) { c.JWKSURL = "" }, invalid: true, want: []string{"JWKSURL and JWKSFile"}},
		{name: "two JWKS", cfg: func(c *OIDCConfig) { c.JWKSFile = missing }, invalid: true, want: []string{"both set"}},
		{name: "plain http", cfg: func(c *OIDCConfig) { c.JWKSURL = "http://idp.example/jwks" }, invalid: true,
			want: []string{"http://idp.example/jwks", "loopback"}},
		{name: "plain http, loopback name", cfg: func(c *OIDCConfig) { c.JWKSURL = "http://localhost:1/jwks" },
			want: []string{"load JWKS from http://localhost:1/jwks"}},
		{name: "other scheme", cfg: func(c *OIDCConfig) { c.JWKSURL = "file:///etc/jwks.json" }, invalid: true,
			want: []string{"want an absolute https:// URL"}},
		{name: "relative URL", cfg: func(c *OIDCConfig) { c.JWKSURL = "/jwks" }, invalid: true, want: []string{"absolute"}},
		{name: "HS256", cfg: func(c *OIDCConfig) { c.Algorithms = []string{"RS256", "HS256"} }, invalid: true,
			want: []string{`algorithm "HS256" is not accepted`}},
		{name: "none", cfg: func(c *OIDCConfig) { c.Algorithms = []string{"none"} }, invalid: true,
			want: []string{`algorithm "none" is not accepted`}},
		{name: "unknown role", cfg: func(c *OIDCConfig) { c.RoleMap = map[string][]infertrail.Role{"g": {"root"}} },
			invalid: true, want: []string{`unknown role "root"`}},
		{name: "bad tenant", cfg: func(c *OIDCConfig) { c.Tenant = "a tenant" }, invalid: true, want: []string{"Tenant"}},
		{name: "negative leeway", cfg: func(c *OIDCConfig) { c.Leeway = -time.Second }, invalid: true, want: []string{"Leeway"}},
		{name: "unreachable", cfg: func(c *OIDCConfig) { c.JWKSURL = down.URL + "/jwks" },
			want: []string{"load JWKS from " + down.URL + "/jwks", "connection refused"}},
		{name: "not found", cfg: func(c *OIDCConfig) { c.JWKSURL = srv.URL + "/nowhere" },
			want: []string{srv.URL + "/nowhere", "HTTP status 404"}},
		{name: "not JSON", cfg: func(c *OIDCConfig) { c.JWKSURL = srv.URL + "/html" },
			want: []string{srv.URL + "/html", "not a JWKS"}},
		{name: "no keys member", cfg: func(c *OIDCConfig) { c.JWKSURL = srv.URL + "/nokeys" },
			want: []string{srv.URL + "/nokeys", `no "keys" member`}},
		{name: "no keys", cfg: func(c *OIDCConfig) { c.JWKSURL = srv.URL + "/empty" }, want: []string{"no keys"}},
		{name: "private key", cfg: func(c *OIDCConfig) { c.JWKSURL = srv.URL + "/private" },
			want: []string{`key 0 ("k1") holds a private key`}},
		{name: "symmetric key", cfg: func(c *OIDCConfig) { c.JWKSURL = srv.URL + "/secret" },
			want: []string{"no usable public signing key", "symmetric"}},
		{name: "unknown key type", cfg: func(c *OIDCConfig) { c.JWKSURL = srv.URL + "/strange" },
			want: []string{"no usable public signing key", "key 0"}},
		{name: "too large", cfg: func(c *OIDCConfig) { c.JWKSURL = srv.URL + "/huge" },
			want: []string{"larger than 1048576 bytes"}},
		{name: "redirect to plain http", cfg: func(c *OIDCConfig) { c.JWKSURL = srv.URL + "/redirect" },
			want: []string{"redirect to http://idp.example/jwks", "loopback"}},
		{name: "missing file", cfg: func(c *OIDCConfig) { c.JWKSURL, c.JWKSFile = "", missing },
			want: []string{"load JWKS from " + missing, "no such file"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := OIDCConfig{Issuer: oidcIssuer, Audience: oidcAudience, JWKSURL: srv.URL + "/mixed"}
			tt.cfg(&cfg)
			_, err := NewOIDC(t.Context(), cfg)
			if err == nil {
				t.Fatal("NewOIDC: no error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("NewOIDC: %v, want an error saying %q", err, w)
				}
			}
			if errors.Is(err, infertrail.ErrInvalid) != tt.invalid {
				t.Errorf("NewOIDC: %v; errors.Is(err, ErrInvalid) = %v, want %v", err, !tt.invalid, tt.invalid)
			}
		})
	}

	t.Run("mixed keys", func(t *testing.T) {
		cfg := OIDCConfig{Issuer: oidcIssuer, Audience: oidcAudience, JWKSURL: srv.URL + "/mixed"}
		o := newTestOIDC(t, cfg)
		if _, err := o.Verify(t.Context(), signJWTWith(t, k, oidcTestClaims(time.Now()))); err != nil {
			t.Errorf("Verify: %v", err)
		}
	})
}

func TestOIDCConfigCopied(t *testing.T) {
	k := oidcTestKey(t, "rsa", "k1")
	idp := newOIDCTestIDP(t, k)
	cfg := OIDCConfig{Issuer: oidcIssuer, Audience: oidcAudience, JWKSURL: idp.srv.URL,
		RoleMap: map[string][]infertrail.Role{"audit": {infertrail.RoleAuditor}}}
	o := newTestOIDC(t, cfg)
	cfg.RoleMap["audit"][0] = infertrail.RoleAdmin
	maps.Copy(cfg.RoleMap, map[string][]infertrail.Role{"admins": {infertrail.RoleAdmin}})
	c := oidcTestClaims(time.Now())
	c["roles"] = []string{"audit", "admins"}
	p, err := o.Verify(t.Context(), signJWTWith(t, k, c))
	if err != nil {
		t.Fatal(err)
	}
	if want := []infertrail.Role{infertrail.RoleAuditor}; !reflect.DeepEqual(p.Roles, want) {
		t.Errorf("roles %v, want %v: the RoleMap was not copied", p.Roles, want)
	}
}

func TestLooksLikeJWT(t *testing.T) {
	tests := []struct {
		s    string
		want bool
	}{
		{"eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhIn0.c2lnbmF0dXJl", true},
		{"eyJhbGciOiJub25lIn0.eyJzdWIiOiJhIn0.", true},
		{"eyJhbGciOiJSUzI1NiJ9..c2ln", false},
		{"eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhIn0", false},
		{"eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln.ZXh0cmE", false},
		{"eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhIn0=.c2ln", false},
		{"eyJhbGciOiJSUzI1NiJ9.eyJzdWIi+iJhIn0.c2ln", false},
		{"abc.def.ghi", false},
		{"itk_" + strings.Repeat("A", 43), false},
		{"", false},
	}
	for _, tt := range tests {
		if got := LooksLikeJWT(tt.s); got != tt.want {
			t.Errorf("LooksLikeJWT(%q) = %v, want %v", tt.s, got, tt.want)
		}
	}
}

func FuzzOIDCVerify(f *testing.F) {
	k := oidcTestKey(f, "rsa", "k1")
	idp := newOIDCTestIDP(f, k)
	o := newTestOIDC(f, OIDCConfig{Issuer: oidcIssuer, Audience: oidcAudience, JWKSURL: idp.srv.URL})
	now := time.Now()
	c := oidcTestClaims(now)
	f.Add(signJWTWith(f, k, c))
	c["roles"] = map[string]any{"x": []any{1}}
	f.Add(signJWTWith(f, k, c))
	f.Add(signJWT(f, jose.RS256, k.Key, map[string]any{"iss": 1}))
	f.Add("eyJhbGciOiJub25lIn0.eyJzdWIiOiJhIn0.")
	f.Add("eyJ.e30.")
	f.Fuzz(func(t *testing.T, s string) {
		p, err := o.Verify(t.Context(), s)
		if err != nil {
			if !errors.Is(err, infertrail.ErrUnauthenticated) {
				t.Errorf("Verify: %v does not wrap ErrUnauthenticated", err)
			}
			if len(s) >= 64 && strings.Count(s, ".") == 2 && strings.Contains(err.Error(), s) {
				t.Errorf("Verify: %v quotes the token", err)
			}
			return
		}
		if p == nil || len(p.Roles) == 0 || p.Perms == 0 || !strings.HasPrefix(p.ID, "oidc:"+oidcIssuer+"#") {
			t.Errorf("Verify = %+v", p)
		}
	})
}

func ExampleNewOIDC() {
	ctx := context.Background()
	o, err := NewOIDC(ctx, OIDCConfig{
		Issuer:   "https://login.example.com/realms/acme",
		Audience: "infertrail",
		JWKSURL:  "https://login.example.com/realms/acme/protocol/openid-connect/certs",
		// Keycloak puts realm roles in a nested claim.
		RolesClaim: "realm_access.roles",
		RoleMap: map[string][]infertrail.Role{
			"audit-team": {infertrail.RoleAuditor},
			"soc":        {infertrail.RoleInvestigator},
		},
		Tenant: "acme",
	})
	if err != nil {
		log.Fatal(err)
	}
	bearer := "eyJ…" // from an Authorization header
	p, err := o.Verify(ctx, bearer)
	if err != nil {
		log.Fatal(err) // wraps infertrail.ErrUnauthenticated: HTTP 401
	}
	fmt.Println(p.ID, p.Tenant, p.Roles)
}
