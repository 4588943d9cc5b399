package infertrail

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
)

// Permission is one thing a caller may do. A Principal holds a set of them,
// given by its roles.
type Permission uint16

// The permissions. Nothing grants changing or deleting a leaf: the store
// contract has no such operation.
const (
	PermIngest  Permission = 1 << iota // append records
	PermGateway                        // call model providers and tools through the gateways
	PermRead                           // read metadata, proofs, checkpoints and tiles
	PermContent                        // read evidence content (each read is recorded)
	PermExport                         // export evidence bundles (recorded)
	PermAdmin                          // manage tokens, holds and retention (recorded)
	PermErase                          // crypto-shred a scope's content (recorded, with a reason)
	PermMetrics                        // scrape /metrics
	PermApprove                        // decide on calls held for approval (recorded)
)

var permNames = []struct {
	p    Permission
	name string
}{{PermIngest, "ingest"}, {PermGateway, "gateway"}, {PermRead, "read"}, {PermContent, "content"},
	{PermExport, "export"}, {PermAdmin, "admin"}, {PermErase, "erase"}, {PermMetrics, "metrics"},
	{PermApprove, "approve"}}

// String lists the permissions in the set, such as "read,export".
func (p Permission) String() string {
	var names []string
	for _, n := range permNames {
		if p&n.p != 0 {
			names = append(names, n.name)
		}
	}
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ",")
}

// Role names a set of permissions. A token or an OIDC identity holds one
// or more roles.
type Role string

// The roles.
const (
	RoleIngest       Role = "ingest"       // writes records, nothing else
	RoleGateway      Role = "gateway"      // uses the LLM and MCP gateways
	RoleAuditor      Role = "auditor"      // metadata, proofs, exports without content
	RoleInvestigator Role = "investigator" // what an auditor may, and content
	RoleApprover     Role = "approver"     // decides on held calls; metadata; never content
	RoleAdmin        Role = "admin"        // tokens, holds, retention; metadata; never content
	RoleErase        Role = "erase"        // crypto-shredding, on its own or added to another role
	RoleMonitor      Role = "monitor"      // Prometheus metrics only
)

// Roles lists every role, in the order documentation shows them.
var Roles = []Role{RoleIngest, RoleGateway, RoleAuditor, RoleInvestigator, RoleApprover, RoleAdmin, RoleErase, RoleMonitor}

// Permissions returns what the role grants (none for an unknown role).
func (r Role) Permissions() Permission {
	switch r {
	case RoleIngest:
		return PermIngest
	case RoleGateway:
		return PermGateway
	case RoleAuditor:
		return PermRead | PermExport | PermMetrics
	case RoleInvestigator:
		return PermRead | PermExport | PermContent | PermMetrics
	case RoleApprover:
		// Approving is kept apart from investigating and administering
		// (separation of duties): whoever runs the trail or reads its
		// evidence does not also let held calls through, unless given
		// this role as well.
		return PermRead | PermApprove
	case RoleAdmin:
		return PermRead | PermAdmin | PermMetrics
	case RoleErase:
		return PermErase
	case RoleMonitor:
		return PermMetrics
	}
	return 0
}

// ParseRoles parses role names, given one per element or comma-separated,
// and returns them sorted and without repeats. An unknown or missing role
// is an error wrapping ErrInvalid.
func ParseRoles(names ...string) ([]Role, error) {
	var out []Role
	for _, n := range names {
		for r := range strings.SplitSeq(n, ",") {
			r = strings.TrimSpace(r)
			if Role(r).Permissions() == 0 {
				return nil, fmt.Errorf("role %q: want one of %s: %w", r, rolesList(), ErrInvalid)
			}
			out = append(out, Role(r))
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no role: want one or more of %s: %w", rolesList(), ErrInvalid)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

func rolesList() string {
	s := make([]string, len(Roles))
	for i, r := range Roles {
		s[i] = string(r)
	}
	return strings.Join(s, ", ")
}

// PermissionsOf returns what the roles grant together.
func PermissionsOf(roles []Role) Permission {
	var p Permission
	for _, r := range roles {
		p |= r.Permissions()
	}
	return p
}

// AllTenants is the tenant of a principal that reaches every tenant.
const AllTenants = "*"

// Principal is an authenticated caller: an API token, an OIDC identity, or
// the operator when authentication is off.
type Principal struct {
	// ID identifies the caller in records: "token/<uuid>" for an API
	// token (not "token:…", which secret detectors rightly take for a
	// credential), "oidc:<issuer>#<subject>" for an OIDC identity.
	ID string
	// Name is a label for people: the token's name, or the identity's
	// name or e-mail claim.
	Name   string
	Tenant string // the one tenant the caller reaches, or AllTenants
	Roles  []Role
	Perms  Permission
	// Fingerprint is the keyed fingerprint of the credential presented,
	// recorded in place of the credential.
	Fingerprint string
}

// Can reports whether the principal holds every permission in p.
func (p *Principal) Can(perm Permission) bool { return p.Perms&perm == perm }

// Reaches reports whether the principal may act on the tenant's data.
func (p *Principal) Reaches(tenant string) bool {
	return p.Tenant == AllTenants || p.Tenant == tenant
}

// Actor is the principal as the actor of a record it causes.
func (p *Principal) Actor() Actor {
	typ := "token"
	if strings.HasPrefix(p.ID, "oidc:") {
		typ = "user"
	} else if p.ID == "" {
		return Actor{ID: "anonymous", Type: "client"}
	}
	return Actor{ID: p.ID, Type: typ, CredentialFingerprint: p.Fingerprint}
}

type principalKey struct{}

// WithPrincipal returns a context carrying the authenticated caller.
func WithPrincipal(ctx context.Context, p *Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// PrincipalFrom returns the caller that ctx carries, or nil.
func PrincipalFrom(ctx context.Context) *Principal {
	p, _ := ctx.Value(principalKey{}).(*Principal)
	return p
}

// Authenticator works out who presents a credential. Implementations are
// safe for concurrent use.
type Authenticator interface {
	// Authenticate returns the principal the credential (an API token, or an
	// OIDC bearer token) stands for, and charges one request to its rate
	// limit. An unknown, expired or revoked credential is an error wrapping
	// ErrUnauthenticated; a principal over its rate limit, one wrapping
	// ErrRateLimited (a *RateLimitError says when to retry).
	Authenticate(ctx context.Context, credential string) (*Principal, error)
}

// Token is an API token as the store keeps it: never the token itself,
// only its SHA-256 hash.
type Token struct {
	ID     UUID
	Name   string
	Tenant string // a tenant, or AllTenants
	Roles  []Role
	Hash   [32]byte // SHA-256 of the token string
	// RateLimit is the token's requests per second; 0 means the server's
	// default.
	RateLimit float64
	CreatedBy string
	Created   int64 // Unix nanoseconds
	Expires   int64 // Unix nanoseconds; 0: never
	RevokedBy string
	Revoked   int64 // Unix nanoseconds; 0 while not revoked
}

// Validate checks a token before a store adds it: it needs an id, a
// name, a tenant, known roles, a hash and a finite rate limit ≥ 0. The
// error wraps ErrInvalid.
func (t *Token) Validate() error {
	switch {
	case t.ID.IsZero():
		return fmt.Errorf("add token: no id: %w", ErrInvalid)
	case t.Name == "":
		return fmt.Errorf("add token %v: no name: %w", t.ID, ErrInvalid)
	case t.Tenant == "":
		return fmt.Errorf("add token %v: no tenant: %w", t.ID, ErrInvalid)
	case len(t.Roles) == 0:
		return fmt.Errorf("add token %v: no role: %w", t.ID, ErrInvalid)
	case t.Hash == [32]byte{}:
		return fmt.Errorf("add token %v: no hash: %w", t.ID, ErrInvalid)
	case !(t.RateLimit >= 0) || math.IsInf(t.RateLimit, 1):
		return fmt.Errorf("add token %v: rate limit %v is not a finite number >= 0: %w", t.ID, t.RateLimit, ErrInvalid)
	}
	for _, r := range t.Roles {
		if r.Permissions() == 0 {
			return fmt.Errorf("add token %v: unknown role %q: %w", t.ID, r, ErrInvalid)
		}
	}
	return nil
}

// JoinRoles returns the roles sorted, without repeats and comma-separated,
// as stores keep them and messages show them ("" for none).
func JoinRoles(roles []Role) string {
	names := make([]string, len(roles))
	for i, r := range roles {
		names[i] = string(r)
	}
	slices.Sort(names)
	return strings.Join(slices.Compact(names), ",")
}

// Valid reports whether the token may be used at time now (Unix ns).
func (t *Token) Valid(now int64) bool {
	return t.Revoked == 0 && (t.Expires == 0 || now < t.Expires)
}

// TokenStore keeps API tokens. Implementations are safe for concurrent use.
type TokenStore interface {
	// AddToken stores a new token. A token whose id or hash is taken is an
	// error wrapping ErrConflict; one with no id, name, tenant or role, one
	// wrapping ErrInvalid.
	AddToken(ctx context.Context, t Token) error
	// TokenByHash returns the token with the hash, revoked and expired ones
	// included; a missing one is an error wrapping ErrNotFound. It reads the
	// store each time, so that a revocation on any node applies at once.
	TokenByHash(ctx context.Context, hash [32]byte) (Token, error)
	// RevokeToken marks the token revoked. A missing or already revoked
	// token is an error wrapping ErrNotFound.
	RevokeToken(ctx context.Context, id UUID, by string, at int64) error
	// Tokens returns every token, revoked and expired ones included,
	// oldest first.
	Tokens(ctx context.Context) ([]Token, error)
}
