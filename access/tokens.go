package access

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/infertrail/infertrail"
)

// Tokens creates, lists and revokes API tokens. Each creation and
// revocation appends an access record to the trail, naming who did it.
type Tokens struct {
	Store    infertrail.TokenStore // required
	Recorder infertrail.Recorder   // required: where the access records go
	Now      func() time.Time      // default time.Now
}

// TokenRequest describes a token to create.
type TokenRequest struct {
	Name      string
	Tenant    string // a tenant, or infertrail.AllTenants
	Roles     []infertrail.Role
	TTL       time.Duration // 0: never expires
	RateLimit float64       // requests per second; 0: the server's default
}

// Limits on what a token request may hold.
const (
	maxTokenName = 128
	maxRateLimit = 1e6
)

func (m *Tokens) now() time.Time {
	if m.Now != nil {
		return m.Now()
	}
	return time.Now()
}

// Create makes a token and returns it, with the one copy of its secret
// there will ever be. by is who asks; nil means the operator with the data
// folder in hand, who may grant anything. A principal may only create
// tokens in tenants it reaches, only create tokens for every tenant if it
// reaches every tenant, and only grant erase if it holds erase itself.
func (m *Tokens) Create(ctx context.Context, req TokenRequest, by *infertrail.Principal, actor infertrail.Actor) (string, infertrail.Token, error) {
	if err := checkTokenRequest(&req); err != nil {
		return "", infertrail.Token{}, fmt.Errorf("create token: %w", err)
	}
	if by != nil {
		if !by.Reaches(req.Tenant) {
			return "", infertrail.Token{}, fmt.Errorf("create token: %s reaches tenant %q only, not %q: %w", by.ID, by.Tenant, req.Tenant, infertrail.ErrForbidden)
		}
		if infertrail.PermissionsOf(req.Roles)&infertrail.PermErase != 0 && !by.Can(infertrail.PermErase) {
			return "", infertrail.Token{}, fmt.Errorf("create token: only a holder of the erase permission may grant it (or the operator, with 'infertrail tokens create --data'): %w", infertrail.ErrForbidden)
		}
	}
	secret, hash := NewToken()
	now := m.now()
	t := infertrail.Token{ID: infertrail.NewUUID(), Name: req.Name, Tenant: req.Tenant, Roles: req.Roles, Hash: hash,
		RateLimit: req.RateLimit, CreatedBy: actorName(actor), Created: now.UnixNano()}
	if req.TTL > 0 {
		t.Expires = now.Add(req.TTL).UnixNano()
	}
	if err := m.Store.AddToken(ctx, t); err != nil {
		return "", infertrail.Token{}, fmt.Errorf("create token: %w", err)
	}
	attrs := map[string]json.RawMessage{
		"token.id":     jsonString(t.ID.String()),
		"token.name":   jsonString(t.Name),
		"token.tenant": jsonString(t.Tenant),
		"token.roles":  jsonStrings(t.Roles),
	}
	if t.Expires != 0 {
		attrs["token.expires"] = jsonString(fmtTime(t.Expires))
	}
	if t.RateLimit != 0 {
		attrs["token.rate_limit"] = json.RawMessage(strconv.FormatFloat(t.RateLimit, 'g', -1, 64))
	}
	if err := m.record(ctx, t.Tenant, actor, "token.create", attrs); err != nil {
		// The token works, but nothing says who made it: revoke it again.
		if rerr := m.Store.RevokeToken(ctx, t.ID, "infertrail (recording its creation failed)", m.now().UnixNano()); rerr != nil {
			return "", infertrail.Token{}, fmt.Errorf("create token %s: recording it failed (%w), and so did revoking it again: %w", t.ID, err, rerr)
		}
		return "", infertrail.Token{}, fmt.Errorf("create token: recording it failed, so it was revoked: %w", err)
	}
	return secret, t, nil
}

func checkTokenRequest(req *TokenRequest) error {
	switch {
	case req.Name == "":
		return &infertrail.FieldError{Record: -1, Field: "name", Reason: "required", Err: infertrail.ErrInvalid}
	case len(req.Name) > maxTokenName:
		return &infertrail.FieldError{Record: -1, Field: "name", Reason: fmt.Sprintf("longer than %d bytes", maxTokenName), Err: infertrail.ErrTooLarge}
	case strings.IndexFunc(req.Name, func(r rune) bool { return !unicode.IsPrint(r) }) >= 0:
		return &infertrail.FieldError{Record: -1, Field: "name", Reason: "holds a control character", Err: infertrail.ErrInvalid}
	case req.Tenant == "":
		return &infertrail.FieldError{Record: -1, Field: "tenant", Reason: "required (a tenant, or * for every tenant)", Err: infertrail.ErrInvalid}
	case req.Tenant != infertrail.AllTenants && !infertrail.ValidTenant(req.Tenant):
		return &infertrail.FieldError{Record: -1, Field: "tenant", Reason: fmt.Sprintf("%q is not a tenant name", req.Tenant), Err: infertrail.ErrInvalid}
	case req.TTL < 0:
		return &infertrail.FieldError{Record: -1, Field: "expires", Reason: "in the past", Err: infertrail.ErrInvalid}
	case math.IsNaN(req.RateLimit) || req.RateLimit < 0 || req.RateLimit > maxRateLimit:
		return &infertrail.FieldError{Record: -1, Field: "rate_limit", Reason: fmt.Sprintf("want 0 (the server's default) to %g requests per second", float64(maxRateLimit)), Err: infertrail.ErrInvalid}
	}
	roles := make([]string, len(req.Roles))
	for i, r := range req.Roles {
		roles[i] = string(r)
	}
	rs, err := infertrail.ParseRoles(roles...)
	if err != nil {
		return &infertrail.FieldError{Record: -1, Field: "roles", Reason: strings.TrimSuffix(err.Error(), ": "+infertrail.ErrInvalid.Error()), Err: infertrail.ErrInvalid}
	}
	req.Roles = rs
	return nil
}

// List returns the tokens that by may see: those of the tenants it reaches
// (every token when by is nil), oldest first.
func (m *Tokens) List(ctx context.Context, by *infertrail.Principal) ([]infertrail.Token, error) {
	all, err := m.Store.Tokens(ctx)
	if err != nil {
		return nil, fmt.Errorf("list tokens: %w", err)
	}
	if by == nil || by.Tenant == infertrail.AllTenants {
		return all, nil
	}
	out := all[:0]
	for _, t := range all {
		if t.Tenant == by.Tenant {
			out = append(out, t)
		}
	}
	return out, nil
}

// Revoke revokes the token with the id and returns it as revoked. Its next
// use is refused, on every node. A principal may revoke only tokens of the
// tenants it reaches.
func (m *Tokens) Revoke(ctx context.Context, id infertrail.UUID, reason string, by *infertrail.Principal, actor infertrail.Actor) (infertrail.Token, error) {
	if len(reason) > 1024 {
		return infertrail.Token{}, &infertrail.FieldError{Record: -1, Field: "reason", Reason: "longer than 1,024 bytes", Err: infertrail.ErrTooLarge}
	}
	toks, err := m.List(ctx, by)
	if err != nil {
		return infertrail.Token{}, err
	}
	var t *infertrail.Token
	for i := range toks {
		if toks[i].ID == id {
			t = &toks[i]
		}
	}
	if t == nil {
		return infertrail.Token{}, fmt.Errorf("revoke token %s: no such token: %w", id, infertrail.ErrNotFound)
	}
	at := m.now().UnixNano()
	if err := m.Store.RevokeToken(ctx, id, actorName(actor), at); err != nil {
		return infertrail.Token{}, fmt.Errorf("revoke token %s: %w", id, err)
	}
	t.Revoked, t.RevokedBy = at, actorName(actor)
	attrs := map[string]json.RawMessage{"token.id": jsonString(id.String()), "token.name": jsonString(t.Name)}
	if reason != "" {
		attrs["token.reason"] = jsonString(reason)
	}
	if err := m.record(ctx, t.Tenant, actor, "token.revoke", attrs); err != nil {
		return *t, fmt.Errorf("revoke token %s: the token is revoked, but recording it failed: %w", id, err)
	}
	return *t, nil
}

// record appends the access record of a token operation. A token for every
// tenant is recorded in the default tenant.
func (m *Tokens) record(ctx context.Context, tenant string, actor infertrail.Actor, action string, attrs map[string]json.RawMessage) error {
	if m.Recorder == nil {
		return errors.New("no recorder configured")
	}
	if tenant == infertrail.AllTenants {
		tenant = infertrail.DefaultTenant
	}
	attrs["access.action"] = jsonString(action)
	// A token's record may use the reserve of a full disk: the operator
	// who erases content to make room needs a token to do it with.
	_, err := m.Recorder.Record(infertrail.WithReserve(ctx), &infertrail.Record{Kind: infertrail.KindAccess, Tenant: tenant, Actor: actor,
		Source: "admin", Attributes: attrs})
	return err
}

func actorName(a infertrail.Actor) string {
	if a.ID != "" {
		return a.ID
	}
	return "unknown"
}

func jsonString(s string) json.RawMessage { return infertrail.AppendString(nil, s) }

func jsonStrings(roles []infertrail.Role) json.RawMessage {
	b := []byte{'['}
	for i, r := range roles {
		if i > 0 {
			b = append(b, ',')
		}
		b = infertrail.AppendString(b, string(r))
	}
	return append(b, ']')
}
