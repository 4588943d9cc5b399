package web_test

import (
	"bytes"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/infertrail/infertrail"
	"github.com/infertrail/infertrail/export"
)

func TestSignIn(t *testing.T) {
	e := newEnv(t, true)
	good := e.token(t, "acme", time.Hour, infertrail.RoleInvestigator)

	t.Run("signed out goes to sign-in", func(t *testing.T) {
		resp, page := e.browser(t).get(t, "/ui/search")
		if resp.Request.URL.Path != "/ui/signin" || !strings.Contains(page, `<label for="token">API token</label>`) {
			t.Fatalf("signed-out search = %d at %s", resp.StatusCode, resp.Request.URL.Path)
		}
	})
	t.Run("bad token", func(t *testing.T) {
		resp, page := e.browser(t).post(t, "/ui/signin", "/ui/signin", url.Values{"token": {"it_bogus"}})
		if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(page, "Sign-in refused") {
			t.Fatalf("bad token = %d:\n%s", resp.StatusCode, page)
		}
	})
	t.Run("good token", func(t *testing.T) {
		b := e.browser(t)
		b.signIn(t, good)
		u, _ := url.Parse(e.url + "/ui/")
		for _, c := range b.c.Jar.Cookies(u) {
			if strings.Contains(c.Value, good) {
				t.Errorf("cookie %s holds the token", c.Name)
			}
		}
		_, page := b.get(t, "/ui/search")
		if !strings.Contains(page, "roles: investigator") || !strings.Contains(page, "tenant: acme") {
			t.Errorf("search page does not show who signed in:\n%s", page)
		}
		resp, page := b.post(t, "/ui/search", "/ui/signout", url.Values{})
		if resp.Request.URL.Path != "/ui/signin" {
			t.Fatalf("sign-out ended at %s:\n%s", resp.Request.URL.Path, page)
		}
		if resp, _ := b.get(t, "/ui/log"); resp.Request.URL.Path != "/ui/signin" {
			t.Errorf("after sign-out, /ui/log = %d at %s", resp.StatusCode, resp.Request.URL.Path)
		}
		// Signing in and out are on record, with who, how and from where.
		var signs []string
		for _, a := range e.accessRecords(t) {
			switch act := string(a.Attributes["access.action"]); act {
			case `"ui.sign_in"`, `"ui.sign_out"`:
				if a.Tenant != "acme" || !strings.HasPrefix(a.Actor.ID, "token/") || a.Source != "ui" || string(a.Attributes["client.address"]) != `"127.0.0.1"` {
					t.Errorf("%s record %+v %v", act, a, a.Attributes)
				}
				signs = append(signs, act+string(a.Attributes["access.method"]))
			}
		}
		if want := []string{`"ui.sign_out"`, `"ui.sign_in""token"`}; !slices.Equal(signs, want) && !slices.Equal(signs, []string{want[1], want[0]}) {
			t.Errorf("sign records %v", signs)
		}
	})
	t.Run("expired token", func(t *testing.T) {
		short := e.token(t, "acme", time.Minute, infertrail.RoleAuditor)
		b := e.browser(t)
		b.signIn(t, short)
		e.advance(2 * time.Minute)
		resp, page := b.get(t, "/ui/search")
		if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(page, "expired") {
			t.Fatalf("search with an expired token = %d:\n%s", resp.StatusCode, page)
		}
	})
}

func TestPages(t *testing.T) {
	e := newEnv(t, true)
	recs := e.paymentTrace(t)
	b := e.browser(t)
	b.signIn(t, e.token(t, "acme", time.Hour, infertrail.RoleInvestigator))

	for _, tc := range []struct {
		path string
		want []string
	}{
		{"/ui/search?go=1", []string{"Results", "/ui/traces/" + traceID, "agent:payments-bot"}},
		{"/ui/search?trace=" + traceID + "&kind=tool_call", []string{"tool_call", "pay"}},
		{"/ui/search?decision=require_approval", []string{fmt.Sprintf(`/ui/records/%d"`, recs["decision"].Seq)}},
		{"/ui/traces/" + traceID, []string{"policy_decision", "require_approval", "tool_call", "downstream_call", "gpt-4o-2024-08-06",
			"✓ verified", "no record failed verification", "Download evidence bundle"}},
		{"/ui/sessions/sess-42", []string{"Session", "policy_decision"}},
		{fmt.Sprintf("/ui/records/%d", recs["call"].Seq), []string{"✓ verified", "gen_ai.tool.name", "Reveal content", traceID}},
		{"/ui/findings", []string{"Detector findings", "/ui/traces/" + traceID, fmt.Sprintf(`/ui/records/%d"`, recs["stray"].Seq)}},
		{"/ui/log", []string{"Tree size", "Verifier key", testOrigin, "Recent checkpoints"}},
	} {
		t.Run(tc.path, func(t *testing.T) {
			resp, page := b.get(t, tc.path)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("%s = %d:\n%s", tc.path, resp.StatusCode, page)
			}
			for _, w := range tc.want {
				if !strings.Contains(page, w) {
					t.Errorf("%s lacks %q", tc.path, w)
				}
			}
			h := resp.Header
			if csp := h.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") || !strings.Contains(csp, "frame-ancestors 'none'") {
				t.Errorf("Content-Security-Policy = %q", csp)
			}
			if h.Get("X-Content-Type-Options") != "nosniff" || h.Get("Referrer-Policy") != "no-referrer" {
				t.Errorf("headers = %v", h)
			}
			if strings.Contains(page, "<script") || strings.Contains(page, "http://") || strings.Contains(page, "https://fonts") {
				t.Errorf("%s loads something it should not", tc.path)
			}
		})
	}
	t.Run("bad filter", func(t *testing.T) {
		resp, page := b.get(t, "/ui/search?finding=nonsense")
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(page, "not a detector") {
			t.Errorf("bad filter = %d:\n%s", resp.StatusCode, page)
		}
	})
	t.Run("stylesheet", func(t *testing.T) {
		resp, css := b.get(t, "/ui/static/style.css")
		if resp.StatusCode != http.StatusOK || !strings.Contains(css, ":focus-visible") {
			t.Errorf("style.css = %d", resp.StatusCode)
		}
	})
}

func TestOperator(t *testing.T) {
	e := newEnv(t, false)
	e.paymentTrace(t)
	b := e.browser(t)
	resp, page := b.get(t, "/ui")
	if resp.StatusCode != http.StatusOK || resp.Request.URL.Path != "/ui/search" {
		t.Fatalf("/ui = %d at %s:\n%s", resp.StatusCode, resp.Request.URL.Path, page)
	}
	if strings.Contains(page, "Sign out") || !strings.Contains(page, "operator") {
		t.Errorf("operator search page:\n%s", page)
	}
	if resp, page := b.get(t, "/ui/traces/"+traceID); resp.StatusCode != http.StatusOK || !strings.Contains(page, "policy_decision") {
		t.Errorf("trace = %d:\n%s", resp.StatusCode, page)
	}
}

func TestRoles(t *testing.T) {
	e := newEnv(t, true)
	recs := e.paymentTrace(t)
	page := fmt.Sprintf("/ui/records/%d", recs["prompt"].Seq)
	reveal := page + "/content"

	t.Run("auditor", func(t *testing.T) {
		b := e.browser(t)
		b.signIn(t, e.token(t, "acme", time.Hour, infertrail.RoleAuditor))
		_, p := b.get(t, page)
		if strings.Contains(p, "Reveal content") || !strings.Contains(p, "do not allow reading content") {
			t.Errorf("an auditor's record page offers content:\n%s", p)
		}
		before := len(e.accessRecords(t))
		resp, p := b.post(t, page, reveal, url.Values{"reason": {"curious"}})
		if resp.StatusCode != http.StatusForbidden || strings.Contains(p, "INV-7731") {
			t.Fatalf("auditor reveal = %d:\n%s", resp.StatusCode, p)
		}
		if n := len(e.accessRecords(t)); n != before {
			t.Errorf("a refused reveal left %d access records", n-before)
		}
		if resp, _ := b.get(t, "/ui/search?q=invoice"); resp.StatusCode != http.StatusForbidden {
			t.Errorf("auditor full-text search = %d, want 403", resp.StatusCode)
		}
	})
	t.Run("investigator", func(t *testing.T) {
		b := e.browser(t)
		b.signIn(t, e.token(t, "acme", time.Hour, infertrail.RoleInvestigator))
		if resp, p := b.post(t, page, reveal, url.Values{"reason": {""}}); resp.StatusCode != http.StatusBadRequest || !strings.Contains(p, "reason") {
			t.Errorf("reveal without a reason = %d:\n%s", resp.StatusCode, p)
		}
		resp, p := b.post(t, page, reveal, url.Values{"reason": {"case 1234: disputed payment"}})
		if resp.StatusCode != http.StatusOK || !strings.Contains(p, "INV-7731") || !strings.Contains(p, "gen_ai.input.messages") {
			t.Fatalf("investigator reveal = %d:\n%s", resp.StatusCode, p)
		}
		var found bool
		for _, a := range e.accessRecords(t) {
			if string(a.Attributes["access.action"]) == `"read_content"` && string(a.Attributes["access.reason"]) == `"case 1234: disputed payment"` &&
				len(a.Links) == 1 && a.Links[0].ID == recs["prompt"].ID {
				found = true
			}
		}
		if !found {
			t.Errorf("no access record of the read")
		}
		resp, p = b.get(t, "/ui/search?q=invoice&reason=case+1234")
		if resp.StatusCode != http.StatusOK || !strings.Contains(p, fmt.Sprintf(`/ui/records/%d"`, recs["prompt"].Seq)) {
			t.Fatalf("full-text search = %d:\n%s", resp.StatusCode, p)
		}
		found = false
		for _, a := range e.accessRecords(t) {
			if string(a.Attributes["access.action"]) == `"search"` {
				found = true
			}
		}
		if !found {
			t.Errorf("no access record of the search")
		}
	})
}

func TestCSRF(t *testing.T) {
	e := newEnv(t, true)
	recs := e.paymentTrace(t)
	b := e.browser(t)
	b.signIn(t, e.token(t, "acme", time.Hour, infertrail.RoleInvestigator))
	before := len(e.accessRecords(t))
	for _, tc := range []struct {
		path string
		form url.Values
	}{
		{fmt.Sprintf("/ui/records/%d/content", recs["prompt"].Seq), url.Values{"reason": {"r"}}},
		{fmt.Sprintf("/ui/records/%d/content", recs["prompt"].Seq), url.Values{"reason": {"r"}, "csrf": {"forged"}}},
		{"/ui/export", url.Values{"kind": {"trace"}, "id": {traceID}}},
		{"/ui/signout", url.Values{}},
	} {
		resp, page := b.do(t, http.MethodPost, tc.path, tc.form)
		if resp.StatusCode != http.StatusForbidden || strings.Contains(page, "INV-7731") {
			t.Errorf("POST %s without its CSRF token = %d", tc.path, resp.StatusCode)
		}
	}
	if n := len(e.accessRecords(t)); n != before {
		t.Errorf("refused forms left %d access records", n-before)
	}
	if resp, _ := e.browser(t).do(t, http.MethodPost, "/ui/signin", url.Values{"token": {"x"}}); resp.StatusCode != http.StatusForbidden {
		t.Errorf("sign-in without CSRF token = %d", resp.StatusCode)
	}
}

func TestTenantScoping(t *testing.T) {
	e := newEnv(t, true)
	recs := e.paymentTrace(t)
	b := e.browser(t)
	b.signIn(t, e.token(t, "globex", time.Hour, infertrail.RoleInvestigator))
	for _, p := range []string{"/ui/traces/" + traceID, fmt.Sprintf("/ui/records/%d", recs["prompt"].Seq)} {
		if resp, page := b.get(t, p); resp.StatusCode != http.StatusNotFound || strings.Contains(page, "payments-bot") {
			t.Errorf("another tenant's %s = %d", p, resp.StatusCode)
		}
	}
	if _, page := b.get(t, "/ui/search?go=1"); strings.Contains(page, traceID) {
		t.Errorf("search shows another tenant's records")
	}
	if resp, _ := b.get(t, "/ui/search?tenant=acme"); resp.StatusCode != http.StatusForbidden {
		t.Errorf("search in another tenant = %d, want 403", resp.StatusCode)
	}
}

func TestTamper(t *testing.T) {
	e := newEnv(t, true)
	recs := e.paymentTrace(t)
	b := e.browser(t)
	b.signIn(t, e.token(t, "acme", time.Hour, infertrail.RoleAuditor))
	e.tamper(t, recs["payment"].Seq)
	_, page := b.get(t, "/ui/traces/"+traceID)
	if !strings.Contains(page, "✗ FAILED") || !strings.Contains(page, `data-status="failed"`) {
		t.Fatalf("the tampered trace shows no failure:\n%s", page)
	}
	if n := strings.Count(page, `data-status="failed"`); n != 1 {
		t.Errorf("%d records failed, want 1", n)
	}
	_, page = b.get(t, fmt.Sprintf("/ui/records/%d", recs["payment"].Seq))
	if !strings.Contains(page, "✗ FAILED") {
		t.Errorf("the tampered record's page shows no failure:\n%s", page)
	}
	_, page = b.get(t, fmt.Sprintf("/ui/records/%d", recs["call"].Seq))
	if !strings.Contains(page, "✓ verified") {
		t.Errorf("an untouched record's page is not verified:\n%s", page)
	}
}

func TestExport(t *testing.T) {
	e := newEnv(t, true)
	e.paymentTrace(t)
	b := e.browser(t)
	b.signIn(t, e.token(t, "acme", time.Hour, infertrail.RoleAuditor))
	before := len(e.accessRecords(t))
	resp, body := b.post(t, "/ui/traces/"+traceID, "/ui/export", url.Values{"kind": {"trace"}, "id": {traceID}})
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/zip" ||
		!strings.HasPrefix(resp.Header.Get("Content-Disposition"), "attachment") {
		t.Fatalf("export = %d %v:\n%.500s", resp.StatusCode, resp.Header, body)
	}
	rep, err := export.VerifyBundle(bytes.NewReader([]byte(body)), int64(len(body)), e.verif)
	if err != nil {
		t.Fatalf("the bundle does not verify: %v", err)
	}
	if !strings.Contains(rep.Title, traceID) {
		t.Errorf("the bundle is of %q, want the trace", rep.Title)
	}
	if n := len(e.accessRecords(t)); n != before+1 {
		t.Errorf("the export left %d access records, want 1", n-before)
	}
	if resp, _ := b.post(t, "/ui/traces/"+traceID, "/ui/export", url.Values{"kind": {"trace"}, "id": {"nosuchtrace"}}); resp.StatusCode != http.StatusNotFound {
		t.Errorf("export of an unknown trace = %d", resp.StatusCode)
	}
}

// TestCrossSiteLink: a link from another site arrives without the session
// cookie (SameSite=Strict). The UI must not answer with a new session,
// which would replace the signed-in one: it opens the same page again from
// its own origin, and that request carries the cookie.
func TestCrossSiteLink(t *testing.T) {
	e := newEnv(t, true)
	b := e.browser(t)
	b.signIn(t, e.token(t, "acme", time.Hour, infertrail.RoleInvestigator))

	req, _ := http.NewRequest(http.MethodGet, e.url+"/ui/search?q=refund&kind=tool_call", nil)
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	resp, err := http.DefaultClient.Do(req) // no cookie, as the browser sends none
	if err != nil {
		t.Fatal(err)
	}
	var page bytes.Buffer
	page.ReadFrom(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || len(resp.Cookies()) != 0 ||
		!strings.Contains(page.String(), `<meta http-equiv="refresh" content="0;url=/ui/search?q=refund&amp;kind=tool_call">`) {
		t.Fatalf("cross-site arrival = %d, cookies %v:\n%s", resp.StatusCode, resp.Cookies(), page.String())
	}
	// The browser's session still stands.
	if _, p := b.get(t, "/ui/search"); !strings.Contains(p, "roles: investigator") {
		t.Fatalf("the session did not survive:\n%s", p)
	}
}
