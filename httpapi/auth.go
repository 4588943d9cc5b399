package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/infertrail/infertrail"
	"github.com/infertrail/infertrail/access"
)

// HeaderReason is the request header that says why evidence content is
// read; the access record keeps it.
const HeaderReason = "X-InferTrail-Reason"

// maxReason bounds the reason header.
const maxReason = 1024

// operator is the caller when authentication is off: it may do anything,
// in every tenant.
var operator = infertrail.Principal{Tenant: infertrail.AllTenants, Perms: ^infertrail.Permission(0)}

// authorize wraps a route's handler: it authenticates the caller (unless
// the route is public or authentication is off), checks that its roles
// grant the route's permission, and passes it on in the request context.
func (s *Server) authorize(rt Route, h http.HandlerFunc) http.HandlerFunc {
	if rt.Perm == 0 {
		return h
	}
	return func(w http.ResponseWriter, r *http.Request) {
		p := &operator
		if s.cfg.Auth != nil {
			var err error
			if p, err = s.cfg.Auth.Authenticate(r.Context(), access.Bearer(r.Header.Get("Authorization"))); err != nil {
				s.writeError(w, r, err)
				return
			}
		}
		if !p.Can(rt.Perm) {
			s.writeError(w, r, forbidden(p, rt.Perm))
			return
		}
		h(w, r.WithContext(infertrail.WithPrincipal(r.Context(), p)))
	}
}

// recordAction appends the access record of an administrative or
// investigative action by the caller, before its answer is sent: the
// trail audits its own use.
func (s *Server) recordAction(r *http.Request, action string, attrs map[string]json.RawMessage) error {
	return s.recordActionLinks(r, action, attrs, nil)
}

// recordActionLinks is recordAction with links to the records the action
// read.
func (s *Server) recordActionLinks(r *http.Request, action string, attrs map[string]json.RawMessage, links []infertrail.Link) error {
	a := map[string]json.RawMessage{"access.action": jsonString(action)}
	for k, v := range attrs {
		a[k] = v
	}
	rec := &infertrail.Record{Kind: infertrail.KindAccess, Tenant: ownTenant(r), Source: "api", Actor: actor(r), Attributes: a, Links: links}
	if _, err := s.log.Record(r.Context(), rec); err != nil {
		return fmt.Errorf("record access: %w", err)
	}
	return nil
}

// forbidden is the error of a principal that lacks a permission.
func forbidden(p *infertrail.Principal, perm infertrail.Permission) error {
	var need []string
	for _, r := range infertrail.Roles {
		if r.Permissions()&perm == perm {
			need = append(need, string(r))
		}
	}
	return fmt.Errorf("%s (roles %s) may not do this: it needs the %s permission, which role %s grants: %w",
		p.ID, joinRoles(p.Roles), perm, strings.Join(need, " or "), infertrail.ErrForbidden)
}

func joinRoles(rs []infertrail.Role) string {
	if len(rs) == 0 {
		return "none"
	}
	return infertrail.JoinRoles(rs)
}

// principal is the caller of an authorized route.
func principal(r *http.Request) *infertrail.Principal {
	if p := infertrail.PrincipalFrom(r.Context()); p != nil {
		return p
	}
	return &operator
}

// actor is the caller as the actor of the records its request causes.
func actor(r *http.Request) infertrail.Actor {
	p := principal(r)
	if p.ID != "" {
		return p.Actor()
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	return infertrail.Actor{ID: "api:" + host, Type: "client"}
}

// reachTenant refuses a tenant the caller does not reach.
func reachTenant(r *http.Request, field, tenant string) error {
	if p := principal(r); !p.Reaches(tenant) {
		return &infertrail.FieldError{Record: -1, Field: field,
			Reason: fmt.Sprintf("tenant %q: the caller reaches tenant %q only", tenant, p.Tenant), Err: infertrail.ErrForbidden}
	}
	return nil
}

// ownTenant is the tenant a request acts in when it names none: the
// caller's own, or the default tenant for a caller that reaches every one.
func ownTenant(r *http.Request) string {
	if p := principal(r); p.Tenant != infertrail.AllTenants {
		return p.Tenant
	}
	return infertrail.DefaultTenant
}

// reason returns the X-InferTrail-Reason header, checked.
func (s *Server) reason(r *http.Request, required bool) (string, error) {
	v := strings.TrimSpace(r.Header.Get(HeaderReason))
	switch {
	case len(v) > maxReason:
		return "", &infertrail.FieldError{Record: -1, Field: HeaderReason, Reason: fmt.Sprintf("longer than %d bytes", maxReason), Err: infertrail.ErrTooLarge}
	case v == "" && required:
		return "", &infertrail.FieldError{Record: -1, Field: HeaderReason, Reason: "required: say why you read this content (the access record keeps it)", Err: infertrail.ErrInvalid}
	}
	return v, nil
}

// decodeBody decodes a small JSON request body into v, refusing unknown
// members.
func decodeBody(r *http.Request, v any) error {
	body, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, maxAdminBody))
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return &infertrail.FieldError{Record: -1, Field: "body", Reason: "not the expected JSON object: " + err.Error(), Err: infertrail.ErrInvalid}
	}
	return nil
}

// unauthorizedHeaders sets the headers of a refused request.
func unauthorizedHeaders(w http.ResponseWriter, err error) {
	var rl *infertrail.RateLimitError
	switch {
	case errors.As(err, &rl):
		w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(max(rl.RetryAfter, time.Second).Seconds()))))
	case errors.Is(err, infertrail.ErrUnauthenticated):
		w.Header().Set("WWW-Authenticate", `Bearer realm="infertrail"`)
	}
}

type tokenRequest struct {
	Name      string   `json:"name"`
	Tenant    string   `json:"tenant"`
	Roles     []string `json:"roles"`
	ExpiresIn string   `json:"expires_in,omitempty"` // a Go duration or Nd; "never" or empty: no expiry
	RateLimit float64  `json:"rate_limit,omitempty"`
}

// TokenJSON is a token as the API shows it: never its secret or hash.
type TokenJSON struct {
	ID        string   `json:"id"`
	Name      string   `json:"name"`
	Tenant    string   `json:"tenant"`
	Roles     []string `json:"roles"`
	RateLimit float64  `json:"rate_limit,omitempty"`
	CreatedBy string   `json:"created_by"`
	Created   string   `json:"created"`
	Expires   string   `json:"expires,omitempty"`
	RevokedBy string   `json:"revoked_by,omitempty"`
	Revoked   string   `json:"revoked,omitempty"`
	// Token is the secret, in the answer to its creation only.
	Token string `json:"token,omitempty"`
}

// ToTokenJSON shows a token without its hash.
func ToTokenJSON(t infertrail.Token) TokenJSON {
	j := TokenJSON{ID: t.ID.String(), Name: t.Name, Tenant: t.Tenant, RateLimit: t.RateLimit, CreatedBy: t.CreatedBy,
		Created: fmtTime(t.Created), RevokedBy: t.RevokedBy}
	for _, r := range t.Roles {
		j.Roles = append(j.Roles, string(r))
	}
	if t.Expires != 0 {
		j.Expires = fmtTime(t.Expires)
	}
	if t.Revoked != 0 {
		j.Revoked = fmtTime(t.Revoked)
	}
	return j
}

func fmtTime(ns int64) string { return time.Unix(0, ns).UTC().Format(time.RFC3339Nano) }

// ParseTTL parses a token lifetime: a Go duration ("720h"), a number of
// days ("90d"), or "never" (0).
func ParseTTL(s string) (time.Duration, error) {
	if s == "" || s == "never" {
		return 0, nil
	}
	var d time.Duration
	var err error
	if n, ok := strings.CutSuffix(s, "d"); ok {
		var days int
		if days, err = strconv.Atoi(n); err == nil && days > 0 && days <= 36600 {
			d = time.Duration(days) * 24 * time.Hour
		} else {
			err = errors.New("bad day count")
		}
	} else {
		d, err = time.ParseDuration(s)
	}
	if err != nil || d <= 0 {
		return 0, &infertrail.FieldError{Record: -1, Field: "expires_in", Reason: fmt.Sprintf("%q: want a positive duration such as 90d or 720h, or never", s), Err: infertrail.ErrInvalid}
	}
	return d, nil
}

func (s *Server) tokensOrUnavailable() (*access.Tokens, error) {
	if s.cfg.Tokens == nil {
		return nil, fmt.Errorf("this server manages no API tokens (authentication is off): %w", infertrail.ErrUnavailable)
	}
	return s.cfg.Tokens, nil
}

func (s *Server) createToken(w http.ResponseWriter, r *http.Request) {
	var req tokenRequest
	if err := decodeBody(r, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	tm, err := s.tokensOrUnavailable()
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	ttl, err := ParseTTL(req.ExpiresIn)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if req.Tenant == "" {
		req.Tenant = ownTenant(r)
	}
	roles := make([]infertrail.Role, len(req.Roles))
	for i, ro := range req.Roles {
		roles[i] = infertrail.Role(ro)
	}
	secret, t, err := tm.Create(r.Context(), access.TokenRequest{Name: req.Name, Tenant: req.Tenant, Roles: roles, TTL: ttl, RateLimit: req.RateLimit},
		principal(r), actor(r))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	j := ToTokenJSON(t)
	j.Token = secret
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusCreated, j)
}

func (s *Server) listTokens(w http.ResponseWriter, r *http.Request) {
	tm, err := s.tokensOrUnavailable()
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	ts, err := tm.List(r.Context(), principal(r))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if err := s.recordAction(r, "token.list", map[string]json.RawMessage{"access.tokens": json.RawMessage(strconv.Itoa(len(ts)))}); err != nil {
		s.writeError(w, r, err)
		return
	}
	out := make([]TokenJSON, len(ts))
	for i, t := range ts {
		out[i] = ToTokenJSON(t)
	}
	writeJSON(w, http.StatusOK, map[string][]TokenJSON{"tokens": out})
}

type revokeRequest struct {
	Reason string `json:"reason,omitempty"`
}

func (s *Server) revokeToken(w http.ResponseWriter, r *http.Request) {
	var req revokeRequest
	if r.ContentLength != 0 {
		if err := decodeBody(r, &req); err != nil {
			s.writeError(w, r, err)
			return
		}
	}
	tm, err := s.tokensOrUnavailable()
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	id, err := uuidParam("id", r.PathValue("id"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	t, err := tm.Revoke(r.Context(), id, req.Reason, principal(r), actor(r))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, ToTokenJSON(t))
}
