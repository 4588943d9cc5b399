package web

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode"

	"golang.org/x/oauth2"

	"github.com/infertrail/infertrail"
)

// OIDCSignIn configures "Sign in with <provider>": the OpenID Connect
// authorization code flow with PKCE (S256), through the person's identity
// provider. The session then holds the ID token, which the API accepts as
// a bearer token (its audience is ClientID), so roles and tenant come
// from its claims exactly as for any OIDC caller of the API.
type OIDCSignIn struct {
	// ProviderName labels the button, "Sign in with <ProviderName>"
	// (default "OIDC").
	ProviderName string
	// AuthURL and TokenURL are the provider's authorization and token
	// endpoints, from its discovery document; required.
	AuthURL, TokenURL string
	// ClientID is InferTrail's client id at the provider; required.
	ClientID string
	// ClientSecret authenticates InferTrail at the token endpoint, by HTTP
	// Basic authentication (client_secret_basic), or in the request's form
	// (client_secret_post) when SecretInForm is set. Empty for a public
	// client, which sends its client_id in the form: PKCE alone binds the
	// code to the browser's sign-in then.
	ClientSecret Secret
	SecretInForm bool
	// RedirectURL is the absolute URL of the callback, as registered at
	// the provider: https://<host>/ui/signin/oidc/callback (http:// only
	// for a loopback host); required. It is configured, never derived
	// from a request's Host header.
	RedirectURL string
	// Scopes are the scopes asked for (default openid, email, profile);
	// they must include openid.
	Scopes []string
	// Verifier checks the ID token of a sign-in; required. An
	// *access.OIDC whose ClientID is ClientID is one.
	Verifier IDTokenVerifier
	// HTTPClient calls the token endpoint (default: a 10 s timeout, no
	// redirects followed).
	HTTPClient *http.Client
}

// IDTokenVerifier checks OpenID Connect ID tokens.
type IDTokenVerifier interface {
	// VerifyIDToken returns the principal that an ID token stands for if
	// it is valid, was issued to the UI's client id, and carries nonce.
	// Its errors wrap infertrail.ErrUnauthenticated when the token is
	// refused, and never quote the token. It must be safe for concurrent
	// use.
	VerifyIDToken(ctx context.Context, raw, nonce string) (*infertrail.Principal, error)
}

// Secret is a credential in configuration. It never prints: String,
// GoString and LogValue give "[redacted]".
type Secret string

func (Secret) String() string       { return "[redacted]" }
func (Secret) GoString() string     { return `"[redacted]"` }
func (Secret) LogValue() slog.Value { return slog.StringValue("[redacted]") }

// The OIDC sign-in's paths, cookie and limits.
const (
	oidcPath         = "/ui/signin/oidc"
	oidcCallbackPath = oidcPath + "/callback"
	oidcCookie       = "infertrail_oidc"
	oidcPendingTTL   = 10 * time.Minute
	oidcTimeout      = 10 * time.Second // of the token request
	maxIdPText       = 200              // bytes of an error the provider sends that a page quotes
)

// pendingSignIn is a sign-in sent to the provider and not yet back. It
// lives on the server; the browser holds only its random id, in a cookie
// that the provider's redirect back carries (SameSite=Lax).
type pendingSignIn struct {
	id, state, nonce, verifier string
	expires                    time.Time
}

// oidcSignIn is the sign-in's checked configuration.
type oidcSignIn struct {
	cfg    OIDCSignIn
	oauth  oauth2.Config
	secure bool // the redirect URL is https: the browser is on https there
}

func newOIDCSignIn(cfg OIDCSignIn) (*oidcSignIn, error) {
	invalid := func(format string, args ...any) error {
		return fmt.Errorf("OIDC sign-in: "+format+": %w", append(args, infertrail.ErrInvalid)...)
	}
	switch {
	case cfg.ClientID == "":
		return nil, invalid("ClientID is required")
	case cfg.AuthURL == "" || cfg.TokenURL == "":
		return nil, invalid("AuthURL and TokenURL are required")
	case cfg.Verifier == nil:
		return nil, invalid("Verifier is required")
	}
	u, err := url.Parse(cfg.RedirectURL)
	if err != nil || u.Host == "" || u.Scheme != "https" && !(u.Scheme == "http" && loopback(u.Hostname())) {
		return nil, invalid("RedirectURL %q: want an absolute https:// URL (http:// only for a loopback host)", cfg.RedirectURL)
	}
	if u.Path != oidcCallbackPath || u.RawQuery != "" || u.Fragment != "" {
		return nil, invalid("RedirectURL %q: want the path %s and no query", cfg.RedirectURL, oidcCallbackPath)
	}
	if len(cfg.Scopes) == 0 {
		cfg.Scopes = []string{"openid", "email", "profile"}
	}
	if !slices.Contains(cfg.Scopes, "openid") {
		return nil, invalid("Scopes %q: want openid among them", cfg.Scopes)
	}
	if cfg.ProviderName == "" {
		cfg.ProviderName = "OIDC"
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{
			Timeout: oidcTimeout,
			// The code and the secret go to the token endpoint only.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	style := oauth2.AuthStyleInHeader
	if cfg.SecretInForm || cfg.ClientSecret == "" {
		style = oauth2.AuthStyleInParams
	}
	return &oidcSignIn{cfg: cfg, secure: u.Scheme == "https", oauth: oauth2.Config{
		ClientID: cfg.ClientID, ClientSecret: string(cfg.ClientSecret), RedirectURL: cfg.RedirectURL, Scopes: cfg.Scopes,
		Endpoint: oauth2.Endpoint{AuthURL: cfg.AuthURL, TokenURL: cfg.TokenURL, AuthStyle: style},
	}}, nil
}

func loopback(host string) bool {
	a, err := netip.ParseAddr(host)
	return strings.EqualFold(host, "localhost") || err == nil && a.IsLoopback()
}

// oidcStart begins a sign-in: it keeps a new state, nonce and PKCE
// verifier on the server, and sends the browser to the provider.
func (h *Handler) oidcStart(w http.ResponseWriter, r *http.Request) {
	now := h.cfg.Now()
	p := &pendingSignIn{id: randomID(), state: randomID(), nonce: randomID(), verifier: oauth2.GenerateVerifier(),
		expires: now.Add(oidcPendingTTL)}
	h.mu.Lock()
	h.addPendingLocked(p, now)
	h.mu.Unlock()
	http.SetCookie(w, &http.Cookie{Name: oidcCookie, Value: p.id, Path: oidcPath, MaxAge: int(oidcPendingTTL / time.Second),
		HttpOnly: true, Secure: r.TLS != nil || h.oidc.secure, SameSite: http.SameSiteLaxMode})
	http.Redirect(w, r, h.oidc.oauth.AuthCodeURL(p.state, oauth2.S256ChallengeOption(p.verifier),
		oauth2.SetAuthURLParam("nonce", p.nonce)), http.StatusFound)
}

// addPendingLocked keeps a pending sign-in, dropping expired ones and,
// beyond MaxSessions, the oldest. h.mu is held.
func (h *Handler) addPendingLocked(p *pendingSignIn, now time.Time) {
	if len(h.pending) >= h.cfg.MaxSessions {
		var oldest *pendingSignIn
		for id, q := range h.pending {
			if !now.Before(q.expires) {
				delete(h.pending, id)
			} else if oldest == nil || q.expires.Before(oldest.expires) {
				oldest = q
			}
		}
		if len(h.pending) >= h.cfg.MaxSessions && oldest != nil {
			delete(h.pending, oldest.id)
		}
	}
	h.pending[p.id] = p
}

// signInError is why an OIDC sign-in failed, for the sign-in page.
type signInError struct {
	status int
	msg    string
	err    error // logged, when set: a failure the operator may need to fix
}

func (e *signInError) Error() string { return e.msg }

// oidcCallback finishes a sign-in when the provider sends the browser
// back: the pending sign-in (taken once), the state, the code exchanged
// for tokens with the PKCE verifier, the ID token checked with the nonce.
// Then it starts a new session holding the ID token, and answers with a
// page that moves on to search: the session cookie is SameSite=Strict,
// and a browser arriving by a redirect from another site would not send
// it along a redirect.
func (h *Handler) oidcCallback(w http.ResponseWriter, r *http.Request) {
	// The sign-in cookie works once, whatever happens.
	http.SetCookie(w, &http.Cookie{Name: oidcCookie, Value: "", Path: oidcPath, MaxAge: -1, HttpOnly: true,
		Secure: r.TLS != nil || h.oidc.secure, SameSite: http.SameSiteLaxMode})
	token, p, err := h.oidcFinish(r)
	if err != nil {
		se := &signInError{status: http.StatusInternalServerError, msg: "internal error", err: err}
		errors.As(err, &se)
		if se.err != nil {
			h.cfg.Logger.Warn("ui sign-in refused", "method", "oidc", "err", se.err)
		}
		h.render(w, r, se.status, "signin", h.signinView(h.session(w, r), fmt.Sprintf("Sign-in with %s failed: %s", h.oidc.cfg.ProviderName, se.msg)))
		return
	}
	if err := h.recordSign(r, p, actionSignIn, "oidc"); err != nil {
		h.render(w, r, http.StatusServiceUnavailable, "signin", h.signinView(h.session(w, r), "Sign-in refused: it could not be recorded; try again"))
		return
	}
	now := h.cfg.Now()
	h.mu.Lock()
	// A session the browser had is over: a fresh one, with a new id,
	// holds the sign-in.
	if c, err := r.Cookie(cookieName); err == nil {
		delete(h.sessions, c.Value)
	}
	s := h.startLocked(w, r, now, r.TLS != nil || h.oidc.secure)
	s.token, s.principal = token, p
	h.mu.Unlock()
	h.cfg.Logger.Info("ui sign-in", "principal", p.ID, "method", "oidc")
	v := view{Title: "Signed in", Refresh: "/ui/search"}
	h.fill(&v, signedIn{s: s, p: p})
	h.render(w, r, http.StatusOK, "signedin", v)
}

// oidcFinish checks the provider's answer and returns the ID token and
// the principal it stands for, or a *signInError.
func (h *Handler) oidcFinish(r *http.Request) (string, *infertrail.Principal, error) {
	refuse := func(status int, err error, format string, args ...any) error {
		return &signInError{status: status, msg: fmt.Sprintf(format, args...), err: err}
	}
	c, err := r.Cookie(oidcCookie)
	if err != nil || c.Value == "" {
		return "", nil, refuse(http.StatusBadRequest, nil, "this browser has no sign-in under way (it sent no sign-in cookie). "+
			"Start again here; if that fails too, open InferTrail at the address registered with the identity provider, %s.",
			origin(h.oidc.cfg.RedirectURL))
	}
	now := h.cfg.Now()
	h.mu.Lock()
	p, ok := h.pending[c.Value]
	delete(h.pending, c.Value)
	h.mu.Unlock()
	switch {
	case !ok:
		return "", nil, refuse(http.StatusBadRequest, nil, "this sign-in is unknown or was used already: start again.")
	case !now.Before(p.expires):
		return "", nil, refuse(http.StatusBadRequest, nil, "this sign-in has expired (it must end within %s): start again.", oidcPendingTTL)
	}
	q := r.URL.Query()
	if subtle.ConstantTimeCompare([]byte(q.Get("state")), []byte(p.state)) != 1 {
		return "", nil, refuse(http.StatusBadRequest, nil, "the answer does not belong to the sign-in this browser started (its state differs): start again.")
	}
	if e := q.Get("error"); e != "" {
		msg := "the identity provider refused it: " + idpText(e)
		if d := q.Get("error_description"); d != "" {
			msg += " (" + idpText(d) + ")"
		}
		return "", nil, refuse(http.StatusUnauthorized, nil, "%s.", msg)
	}
	code := q.Get("code")
	if code == "" {
		return "", nil, refuse(http.StatusBadRequest, nil, "the identity provider's answer has no code: start again.")
	}
	ctx, cancel := context.WithTimeout(r.Context(), oidcTimeout)
	defer cancel()
	ctx = context.WithValue(ctx, oauth2.HTTPClient, h.oidc.cfg.HTTPClient)
	tok, err := h.oidc.oauth.Exchange(ctx, code, oauth2.VerifierOption(p.verifier))
	if err != nil {
		why := exchangeError(err)
		return "", nil, refuse(http.StatusBadGateway, errors.New("token request: "+why), "the identity provider did not exchange the code for tokens: %s.", why)
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		return "", nil, refuse(http.StatusBadGateway, errors.New("the token response has no id_token"),
			"the identity provider's token response has no ID token (is the openid scope granted to this client?).")
	}
	if _, err := h.oidc.cfg.Verifier.VerifyIDToken(ctx, raw, p.nonce); err != nil {
		return "", nil, refuse(http.StatusUnauthorized, err, "%v", err)
	}
	// The API authenticates the session's token at every page: it must
	// accept this one, and its principal is the one the pages show.
	pr, err := h.cfg.Auth.Authenticate(ctx, raw)
	if err != nil {
		status := http.StatusUnauthorized
		if errors.Is(err, infertrail.ErrRateLimited) {
			status = http.StatusTooManyRequests
		}
		return "", nil, refuse(status, err, "the API refuses the ID token: %v", err)
	}
	return raw, pr, nil
}

// exchangeError says why a token request failed, from the provider's
// error code and description or the status, never from the raw body.
func exchangeError(err error) string {
	var re *oauth2.RetrieveError
	switch {
	case errors.As(err, &re) && re.ErrorCode != "":
		s := idpText(re.ErrorCode)
		if re.ErrorDescription != "" {
			s += " (" + idpText(re.ErrorDescription) + ")"
		}
		return s
	case errors.As(err, &re) && re.Response != nil:
		return "HTTP status " + re.Response.Status
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Sprintf("no answer within %s", oidcTimeout)
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		var ne *net.OpError
		if errors.As(ue.Err, &ne) {
			return ne.Error()
		}
		return ue.Err.Error()
	}
	return strings.TrimPrefix(err.Error(), "oauth2: ")
}

// idpText is a text the identity provider sent, cut short and printable,
// for a page.
func idpText(s string) string {
	s = strings.Map(func(r rune) rune {
		if !unicode.IsPrint(r) {
			return ' '
		}
		return r
	}, strings.ToValidUTF8(s, "?"))
	if len(s) > maxIdPText {
		i := maxIdPText
		for i > 0 && s[i]&0xC0 == 0x80 {
			i--
		}
		s = s[:i] + "…"
	}
	return s
}

// origin is a URL's scheme and host.
func origin(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return u
	}
	return p.Scheme + "://" + p.Host
}
