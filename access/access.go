// Package access authenticates InferTrail's callers and manages their API
// tokens: who may write, read, see content, administer and erase, in which
// tenant, and how often.
//
// An API token is "itk_" and 43 base64url characters (256 random bits).
// The store keeps only its SHA-256 hash; the token itself is shown once,
// when it is created. Bearer JWTs from an OIDC provider are accepted too
// when an OIDC verifier is configured.
package access

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/infertrail/infertrail"
)

// TokenPrefix starts every InferTrail API token, so that secret scanners
// (and InferTrail's own redaction rules) recognise one.
const TokenPrefix = "itk_"

// tokenLen is the length of a token: the prefix and 43 base64url characters.
const tokenLen = len(TokenPrefix) + 43

// NewToken returns a fresh API token and its hash.
func NewToken() (string, [32]byte) {
	var b [32]byte
	rand.Read(b[:])
	tok := TokenPrefix + base64.RawURLEncoding.EncodeToString(b[:])
	return tok, HashToken(tok)
}

// HashToken returns the hash a store keeps of a token. A token has 256
// random bits, so one SHA-256 is enough: there is nothing to guess.
func HashToken(tok string) [32]byte { return sha256.Sum256([]byte(tok)) }

// LooksLikeToken reports whether s has the shape of an InferTrail API token.
func LooksLikeToken(s string) bool {
	if len(s) != tokenLen || !strings.HasPrefix(s, TokenPrefix) {
		return false
	}
	for i := len(TokenPrefix); i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// Config configures an Authenticator. Zero values are documented defaults.
type Config struct {
	Tokens infertrail.TokenStore // required
	// OIDC, if set, accepts bearer JWTs it verifies.
	OIDC *OIDC
	// Fingerprint computes the keyed fingerprint of a credential, which the
	// principal carries in place of it; nil leaves it out.
	Fingerprint func(credential string) string
	// RateLimit is each principal's requests per second, unless its token
	// sets its own (default 1,000; negative: no limit). Burst is how many
	// requests may come at once (default twice the rate, at least 1).
	RateLimit float64
	Burst     int
	Now       func() time.Time
}

// Authenticator implements infertrail.Authenticator over API tokens in a
// store and, optionally, OIDC bearer tokens. Each call reads the token from
// the store, so a revocation on any node applies to the next request.
type Authenticator struct {
	cfg Config

	mu       sync.Mutex
	limiters map[string]*limiter
	sweep    time.Time
}

type limiter struct {
	*rate.Limiter
	used time.Time
}

var _ infertrail.Authenticator = (*Authenticator)(nil)

// New returns an Authenticator.
func New(cfg Config) (*Authenticator, error) {
	if cfg.Tokens == nil {
		return nil, errors.New("new authenticator: Tokens is required")
	}
	if cfg.RateLimit == 0 {
		cfg.RateLimit = 1000
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Authenticator{cfg: cfg, limiters: map[string]*limiter{}}, nil
}

// maxCredential bounds a presented credential before any work is done on it.
const maxCredential = 16 << 10

// Authenticate returns the principal a credential stands for and charges
// one request to its rate limit.
func (a *Authenticator) Authenticate(ctx context.Context, cred string) (*infertrail.Principal, error) {
	var (
		p     *infertrail.Principal
		limit = a.cfg.RateLimit
		err   error
	)
	switch {
	case cred == "":
		return nil, fmt.Errorf("no credential: send an API token as Authorization: Bearer itk_…: %w", infertrail.ErrUnauthenticated)
	case len(cred) > maxCredential:
		return nil, fmt.Errorf("credential longer than %d bytes: %w", maxCredential, infertrail.ErrUnauthenticated)
	case LooksLikeToken(cred):
		var t infertrail.Token
		t, err = a.cfg.Tokens.TokenByHash(ctx, HashToken(cred))
		switch {
		case errors.Is(err, infertrail.ErrNotFound):
			return nil, fmt.Errorf("unknown API token: %w", infertrail.ErrUnauthenticated)
		case err != nil:
			return nil, fmt.Errorf("authenticate: %w", err)
		case t.Revoked != 0:
			return nil, fmt.Errorf("API token %s (%s) was revoked at %s: %w", t.ID, t.Name, fmtTime(t.Revoked), infertrail.ErrUnauthenticated)
		case t.Expires != 0 && a.cfg.Now().UnixNano() >= t.Expires:
			return nil, fmt.Errorf("API token %s (%s) expired at %s: %w", t.ID, t.Name, fmtTime(t.Expires), infertrail.ErrUnauthenticated)
		}
		p = &infertrail.Principal{ID: "token/" + t.ID.String(), Name: t.Name, Tenant: t.Tenant, Roles: t.Roles,
			Perms: infertrail.PermissionsOf(t.Roles)}
		if t.RateLimit != 0 {
			limit = t.RateLimit
		}
	case a.cfg.OIDC != nil && LooksLikeJWT(cred):
		if p, err = a.cfg.OIDC.Verify(ctx, cred); err != nil {
			return nil, err
		}
	default:
		what := "not an InferTrail API token (itk_…)"
		if a.cfg.OIDC == nil && LooksLikeJWT(cred) {
			what = "a JWT, but this server has no OIDC provider configured"
		}
		return nil, fmt.Errorf("the credential is %s: %w", what, infertrail.ErrUnauthenticated)
	}
	if a.cfg.Fingerprint != nil {
		p.Fingerprint = a.cfg.Fingerprint(cred)
	}
	if err := a.charge(p.ID, limit); err != nil {
		return nil, err
	}
	return p, nil
}

func fmtTime(ns int64) string { return time.Unix(0, ns).UTC().Format(time.RFC3339) }

// charge takes one request from the principal's bucket.
func (a *Authenticator) charge(id string, limit float64) error {
	if limit < 0 {
		return nil
	}
	now := a.cfg.Now()
	a.mu.Lock()
	defer a.mu.Unlock()
	l, ok := a.limiters[id]
	if !ok || l.Limit() != rate.Limit(limit) {
		burst := a.cfg.Burst
		if burst <= 0 {
			burst = max(1, int(2*limit))
		}
		l = &limiter{Limiter: rate.NewLimiter(rate.Limit(limit), burst)}
		a.limiters[id] = l
		a.sweepLocked(now)
	}
	l.used = now
	r := l.ReserveN(now, 1)
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return &infertrail.RateLimitError{Limit: limit, RetryAfter: d}
	}
	return nil
}

// sweepLocked forgets the buckets of principals idle for ten minutes (a
// full bucket is what a new one would be), so that the map stays bounded.
func (a *Authenticator) sweepLocked(now time.Time) {
	if len(a.limiters) < 1024 || now.Sub(a.sweep) < time.Minute {
		return
	}
	a.sweep = now
	for id, l := range a.limiters {
		if now.Sub(l.used) > 10*time.Minute {
			delete(a.limiters, id)
		}
	}
}

// Bearer returns the credential of an "Authorization: Bearer …" header
// value, or "".
func Bearer(h string) string {
	if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return strings.TrimSpace(h[7:])
	}
	return ""
}

// Require authenticates a credential with a, when a is not nil, and checks
// that the principal holds perm; what names the action for the error
// ("export telemetry"). With a nil a (authentication off) it returns a
// nil principal and no error.
func Require(ctx context.Context, a infertrail.Authenticator, credential string, perm infertrail.Permission, what string) (*infertrail.Principal, error) {
	if a == nil {
		return nil, nil
	}
	p, err := a.Authenticate(ctx, credential)
	if err != nil {
		return nil, err
	}
	if !p.Can(perm) {
		return nil, fmt.Errorf("%s may not %s: it needs the %s permission: %w", p.ID, what, perm, infertrail.ErrForbidden)
	}
	return p, nil
}
