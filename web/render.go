package web

import (
	"bytes"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"strings"
	"time"

	"github.com/infertrail/infertrail"
	"github.com/infertrail/infertrail/investigate"
)

// pageNames are the templates under templates/, each rendered inside
// layout.html.
var pageNames = []string{"signin", "signedin", "continue", "search", "timeline", "record", "findings", "log", "error"}

var funcs = template.FuncMap{
	// badge is a verification status in words, with the class that colours it.
	"badgeClass": func(status string) string {
		switch status {
		case investigate.Verified:
			return "badge ok"
		case investigate.Failed:
			return "badge bad"
		}
		return "badge wait"
	},
	"badgeText": func(status string) string {
		switch status {
		case investigate.Verified:
			return "✓ verified"
		case investigate.Failed:
			return "✗ FAILED"
		case investigate.Pending:
			return "… pending"
		case "":
			return "? unknown"
		}
		return "? " + status
	},
	"fmtTime": func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format("2006-01-02 15:04:05.000 UTC")
	},
	"subjectID": func(key string) string {
		_, id, _ := infertrail.SplitIndexKey(key)
		return id
	},
	"join": strings.Join,
}

func parsePages() (map[string]*template.Template, error) {
	pages := map[string]*template.Template{}
	for _, name := range pageNames {
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(assets, "templates/layout.html", "templates/node.html", "templates/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("parse template %s: %w", name, err)
		}
		pages[name] = t
	}
	return pages, nil
}

// render executes a page into a buffer first, so that a template error
// is an error page and not half a page.
func (h *Handler) render(w http.ResponseWriter, r *http.Request, status int, name string, v view) {
	t, ok := h.pages[name]
	if !ok {
		panic("web: no page " + name)
	}
	if v.Status == 0 {
		v.Status = status
	}
	var b bytes.Buffer
	if err := t.Execute(&b, v); err != nil {
		h.cfg.Logger.Error("render page", "page", name, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	w.Write(b.Bytes())
}

// signinPage shows the sign-in form (or, with sign-in off, sends the
// browser on to search).
func (h *Handler) signinPage(w http.ResponseWriter, r *http.Request) {
	if h.cfg.Auth == nil {
		http.Redirect(w, r, "/ui/search", http.StatusSeeOther)
		return
	}
	h.render(w, r, http.StatusOK, "signin", h.signinView(h.session(w, r), ""))
}

// signinView is the sign-in page with an error message, if any.
func (h *Handler) signinView(s *session, msg string) view {
	v := view{Title: "Sign in", Error: msg, CSRF: s.csrf, SignIn: true}
	if h.oidc != nil {
		v.Provider = h.oidc.cfg.ProviderName
	}
	return v
}

// signin checks a pasted API token with the API's authenticator and, when
// it is good, keeps it in a new server-side session: the browser's cookie
// holds only the session's random id.
func (h *Handler) signin(w http.ResponseWriter, r *http.Request) {
	s := h.session(w, r)
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	if err := checkCSRF(r, s); err != nil {
		h.render(w, r, http.StatusForbidden, "signin", h.signinView(s, err.Error()))
		return
	}
	if h.cfg.Auth == nil {
		http.Redirect(w, r, "/ui/search", http.StatusSeeOther)
		return
	}
	token := strings.TrimSpace(r.PostFormValue("token"))
	p, err := h.cfg.Auth.Authenticate(r.Context(), token)
	if token == "" {
		err = errors.New("paste an API token")
	}
	if err != nil {
		status := http.StatusUnauthorized
		if errors.Is(err, infertrail.ErrRateLimited) {
			status = http.StatusTooManyRequests
		}
		h.render(w, r, status, "signin", h.signinView(s, "Sign-in refused: "+err.Error()))
		return
	}
	if err := h.recordSign(r, p, actionSignIn, "token"); err != nil {
		h.render(w, r, http.StatusServiceUnavailable, "signin", h.signinView(s, "Sign-in refused: it could not be recorded; try again"))
		return
	}
	// A new session id at sign-in, so that an id planted before it is
	// worth nothing after.
	h.end(s)
	h.mu.Lock()
	ns := h.startLocked(w, r, h.cfg.Now(), r.TLS != nil)
	ns.token, ns.principal = token, p
	h.mu.Unlock()
	h.cfg.Logger.Info("ui sign-in", "principal", p.ID, "method", "token")
	http.Redirect(w, r, "/ui/search", http.StatusSeeOther)
}

// signout forgets the session.
func (h *Handler) signout(w http.ResponseWriter, r *http.Request) {
	s := h.session(w, r)
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	if err := checkCSRF(r, s); err != nil {
		h.render(w, r, http.StatusForbidden, "error", view{Title: "Forbidden", Error: err.Error(), CSRF: s.csrf, SignIn: h.cfg.Auth != nil})
		return
	}
	if s.principal != nil {
		if err := h.recordSign(r, s.principal, actionSignOut, ""); err != nil {
			h.cfg.Logger.Warn("ui sign-out not recorded", "principal", s.principal.ID, "err", err)
		}
	}
	h.end(s)
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: "", Path: "/ui/", MaxAge: -1, HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode})
	http.Redirect(w, r, "/ui/signin", http.StatusSeeOther)
}
