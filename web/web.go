// Package web serves InferTrail's investigator UI: server-rendered pages
// for search, timelines, records, findings, log status and export, over
// the HTTP API.
//
// The UI is a client of the API in the same process: each page calls the
// API's handler with the signed-in principal's token, so that roles,
// tenant scoping, access records and errors are exactly the API's.
package web

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"embed"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/infertrail/infertrail"
	"github.com/infertrail/infertrail/ledger"
)

//go:embed templates/*.html static/*
var assets embed.FS

// Config configures the UI. Zero values mean the documented defaults.
type Config struct {
	// API is the HTTP API (an *httpapi.Server) that the UI calls in
	// process; required.
	API http.Handler
	// Auth authenticates the tokens people sign in with; it must be the
	// API's. Nil turns sign-in off: the UI acts as the operator, as the
	// API does.
	Auth infertrail.Authenticator
	// Log, when set, lets the log status page list recent checkpoints.
	Log *ledger.Log
	// SessionTTL bounds a sign-in (default 8 hours); the token's own
	// expiry and revocation apply as well, at every request.
	SessionTTL time.Duration
	// OIDC, when set, adds "Sign in with <provider>" to the sign-in page
	// (the OpenID Connect authorization code flow with PKCE). It needs
	// Auth, which must accept the ID tokens (access.OIDCConfig.ClientID).
	OIDC *OIDCSignIn
	// MaxSessions bounds the sessions held in memory (default 10,000),
	// and apart from them the OIDC sign-ins under way; beyond it the
	// oldest are dropped.
	MaxSessions int
	Logger      *slog.Logger // default slog.Default()
	Now         func() time.Time
}

// Handler is the UI. It is an http.Handler meant to be mounted at /ui/.
type Handler struct {
	cfg   Config
	mux   *http.ServeMux
	pages map[string]*template.Template
	oidc  *oidcSignIn // nil: no OIDC sign-in

	mu       sync.Mutex
	sessions map[string]*session
	pending  map[string]*pendingSignIn // OIDC sign-ins under way, by id
}

// session is one browser's sign-in, kept on the server: the browser holds
// only a random id, never the token.
type session struct {
	id    string
	csrf  string
	token string // the API token or OIDC ID token; empty when signed out (or when auth is off)
	// principal is who the token stood for at sign-in: it decides what
	// the pages offer. The API authenticates the token again at every
	// call, so that an expired or revoked token ends the session.
	principal *infertrail.Principal
	expires   time.Time
}

// New returns the UI over cfg.API.
func New(cfg Config) (*Handler, error) {
	if cfg.API == nil {
		return nil, errors.New("new web ui: API is required")
	}
	if cfg.SessionTTL <= 0 {
		cfg.SessionTTL = 8 * time.Hour
	}
	if cfg.MaxSessions <= 0 {
		cfg.MaxSessions = 10000
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	h := &Handler{cfg: cfg, mux: http.NewServeMux(), sessions: map[string]*session{}, pending: map[string]*pendingSignIn{}}
	var err error
	if h.pages, err = parsePages(); err != nil {
		return nil, fmt.Errorf("new web ui: %w", err)
	}
	if cfg.OIDC != nil {
		if cfg.Auth == nil {
			return nil, fmt.Errorf("new web ui: OIDC sign-in needs Auth: %w", infertrail.ErrInvalid)
		}
		if h.oidc, err = newOIDCSignIn(*cfg.OIDC); err != nil {
			return nil, fmt.Errorf("new web ui: %w", err)
		}
		h.mux.HandleFunc("GET "+oidcPath, h.oidcStart)
		h.mux.HandleFunc("GET "+oidcCallbackPath, h.oidcCallback)
	}
	static, err := fs.Sub(assets, "static")
	if err != nil {
		return nil, fmt.Errorf("new web ui: %w", err)
	}
	h.mux.Handle("GET /ui/static/", http.StripPrefix("/ui/static/", http.FileServerFS(static)))
	h.mux.HandleFunc("GET /ui/{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/ui/search", http.StatusSeeOther)
	})
	h.mux.HandleFunc("GET /ui/signin", h.signinPage)
	h.mux.HandleFunc("POST /ui/signin", h.signin)
	h.mux.HandleFunc("POST /ui/signout", h.signout)
	h.mux.HandleFunc("GET /ui/search", h.page(h.search))
	h.mux.HandleFunc("GET /ui/traces/{id}", h.page(h.timeline("traces")))
	h.mux.HandleFunc("GET /ui/sessions/{id}", h.page(h.timeline("sessions")))
	h.mux.HandleFunc("GET /ui/records/{seq}", h.page(h.record))
	h.mux.HandleFunc("POST /ui/records/{seq}/content", h.page(h.revealContent))
	h.mux.HandleFunc("GET /ui/findings", h.page(h.findings))
	h.mux.HandleFunc("GET /ui/log", h.page(h.logStatus))
	h.mux.HandleFunc("POST /ui/export", h.page(h.export))
	h.mux.HandleFunc("/ui/", func(w http.ResponseWriter, r *http.Request) {
		h.render(w, r, http.StatusNotFound, "error", view{Title: "Not found", Error: "There is no such page."})
	})
	return h, nil
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	hd.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Referrer-Policy", "no-referrer")
	hd.Set("X-Frame-Options", "DENY")
	hd.Set("Cache-Control", "no-store")
	if h.crossSiteArrival(r) {
		// A link from another site (a ticket, a chat) arrives without the
		// session cookie, which is SameSite=Strict: starting a session here
		// would replace the browser's signed-in one. Open the same page again
		// from this site instead, which sends the cookie.
		h.render(w, r, http.StatusOK, "continue", view{Title: "Opening the page", Refresh: r.URL.RequestURI()})
		return
	}
	h.mux.ServeHTTP(w, r)
}

// crossSiteArrival reports a page request that a browser made from another
// site's page without the session cookie (Sec-Fetch-Site: cross-site),
// other than the OIDC sign-in's own return.
func (h *Handler) crossSiteArrival(r *http.Request) bool {
	if r.Method != http.MethodGet || r.Header.Get("Sec-Fetch-Site") != "cross-site" {
		return false
	}
	if _, err := r.Cookie(cookieName); err == nil {
		return false
	}
	p := r.URL.Path
	return strings.HasPrefix(p, "/ui/") && !strings.HasPrefix(p, "//") && !strings.HasPrefix(p, "/ui/static/") && !strings.HasPrefix(p, "/ui/signin/oidc")
}

const cookieName = "infertrail_ui"

func randomID() string {
	b := make([]byte, 32)
	rand.Read(b) // never fails (crypto/rand)
	return base64.RawURLEncoding.EncodeToString(b)
}

// session returns the browser's session, starting one (signed out) when
// it has none or its own has expired.
func (h *Handler) session(w http.ResponseWriter, r *http.Request) *session {
	now := h.cfg.Now()
	h.mu.Lock()
	defer h.mu.Unlock()
	if c, err := r.Cookie(cookieName); err == nil {
		if s, ok := h.sessions[c.Value]; ok {
			if now.Before(s.expires) {
				return s
			}
			delete(h.sessions, c.Value)
		}
	}
	return h.startLocked(w, r, now, r.TLS != nil)
}

// startLocked starts a new session and sets its cookie, Secure if secure.
// h.mu is held.
func (h *Handler) startLocked(w http.ResponseWriter, r *http.Request, now time.Time, secure bool) *session {
	if len(h.sessions) >= h.cfg.MaxSessions {
		var oldest *session
		for id, s := range h.sessions {
			if !now.Before(s.expires) {
				delete(h.sessions, id)
			} else if oldest == nil || s.expires.Before(oldest.expires) {
				oldest = s
			}
		}
		if len(h.sessions) >= h.cfg.MaxSessions && oldest != nil {
			delete(h.sessions, oldest.id)
		}
	}
	s := &session{id: randomID(), csrf: randomID(), expires: now.Add(h.cfg.SessionTTL)}
	h.sessions[s.id] = s
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: s.id, Path: "/ui/", HttpOnly: true, Secure: secure,
		SameSite: http.SameSiteStrictMode, Expires: s.expires})
	return s
}

// end forgets a session.
func (h *Handler) end(s *session) {
	h.mu.Lock()
	delete(h.sessions, s.id)
	h.mu.Unlock()
}

// checkCSRF refuses a POST whose form does not carry the session's token.
func checkCSRF(r *http.Request, s *session) error {
	got := r.PostFormValue("csrf")
	if got == "" || subtle.ConstantTimeCompare([]byte(got), []byte(s.csrf)) != 1 {
		return fmt.Errorf("the form has expired or did not come from this site: reload the page and try again: %w", infertrail.ErrForbidden)
	}
	return nil
}

// signedIn is what a page handler gets: the session and the principal it
// stands for.
type signedIn struct {
	s *session
	p *infertrail.Principal
}

// operator is the principal when sign-in is off, as in the API.
var operator = infertrail.Principal{ID: "", Name: "operator", Tenant: infertrail.AllTenants, Perms: ^infertrail.Permission(0)}

// page wraps a page handler: it finds the session, sends a signed-out
// browser to sign in, checks the CSRF token of a POST, and renders what
// the handler returns.
func (h *Handler) page(fn func(w http.ResponseWriter, r *http.Request, u signedIn) (string, view, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s := h.session(w, r)
		u := signedIn{s: s, p: &operator}
		if h.cfg.Auth != nil {
			if s.token == "" {
				http.Redirect(w, r, "/ui/signin", http.StatusSeeOther)
				return
			}
			u.p = s.principal
		}
		if r.Method == http.MethodPost {
			r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
			if err := checkCSRF(r, s); err != nil {
				h.fail(w, r, u, err)
				return
			}
		}
		name, v, err := fn(w, r, u)
		if err != nil {
			h.fail(w, r, u, err)
			return
		}
		if name == "" { // the handler wrote the answer itself
			return
		}
		h.fill(&v, u)
		h.render(w, r, http.StatusOK, name, v)
	}
}

// fill sets what every page shows of the session.
func (h *Handler) fill(v *view, u signedIn) {
	v.CSRF = u.s.csrf
	v.User = u.p.Name
	if v.User == "" {
		v.User = u.p.ID
	}
	v.Tenant = u.p.Tenant
	if v.Tenant == infertrail.AllTenants {
		v.Tenant = "every tenant"
	}
	v.Roles = infertrail.JoinRoles(u.p.Roles)
	v.SignIn = h.cfg.Auth != nil
	v.CanContent = u.p.Can(infertrail.PermContent)
	v.CanExport = u.p.Can(infertrail.PermExport)
}

// fail renders an error page with the status the API gave the error.
func (h *Handler) fail(w http.ResponseWriter, r *http.Request, u signedIn, err error) {
	status, msg := statusOf(err)
	if status == http.StatusUnauthorized && h.cfg.Auth != nil {
		// The token has expired or was revoked since sign-in.
		h.end(u.s)
		h.render(w, r, status, "signin", h.signinView(h.session(w, r), "Your sign-in has ended: "+msg))
		return
	}
	if status == http.StatusInternalServerError {
		h.cfg.Logger.Error("ui request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	v := view{Title: http.StatusText(status), Error: msg, Status: status}
	h.fill(&v, u)
	h.render(w, r, status, "error", v)
}

// statusOf maps an error to its HTTP status and the message people see.
func statusOf(err error) (int, string) {
	var ae *apiError
	switch {
	case errors.As(err, &ae):
		return ae.Status, ae.Message
	case errors.Is(err, infertrail.ErrForbidden):
		return http.StatusForbidden, err.Error()
	case errors.Is(err, infertrail.ErrNotFound):
		return http.StatusNotFound, err.Error()
	case errors.Is(err, infertrail.ErrInvalid):
		return http.StatusBadRequest, err.Error()
	case errors.Is(err, context.Canceled):
		return 499, "canceled"
	}
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return http.StatusRequestEntityTooLarge, "the form is too large"
	}
	return http.StatusInternalServerError, "internal error"
}

// The access.action of the records of signing in and out of the UI.
const (
	actionSignIn  = "ui.sign_in"
	actionSignOut = "ui.sign_out"
)

// recordSign appends the access record of a sign-in (method "token" or
// "oidc") or sign-out of p, when the UI has the log: who, how, and from
// where. A sign-in that cannot be recorded does not happen.
func (h *Handler) recordSign(r *http.Request, p *infertrail.Principal, action, method string) error {
	if h.cfg.Log == nil {
		return nil
	}
	tenant := p.Tenant
	if tenant == infertrail.AllTenants || tenant == "" {
		tenant = infertrail.DefaultTenant
	}
	attrs := map[string]json.RawMessage{"access.action": infertrail.AppendString(nil, action)}
	if method != "" {
		attrs["access.method"] = infertrail.AppendString(nil, method)
	}
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		attrs["client.address"] = infertrail.AppendString(nil, host)
	}
	rec := &infertrail.Record{Kind: infertrail.KindAccess, Tenant: tenant, Actor: p.Actor(), Source: "ui", Attributes: attrs}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 10*time.Second)
	defer cancel()
	if _, err := h.cfg.Log.Append(ctx, []ledger.Submission{{Record: rec}}); err != nil {
		return fmt.Errorf("record %s: %w", action, err)
	}
	return nil
}
