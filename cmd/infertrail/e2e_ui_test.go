package main

import (
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
)

// TestServeUI checks that `infertrail serve` serves the investigator UI
// under /ui/ (web's own tests drive its pages): /ui redirects, a signed-out
// browser is sent to sign in, and the server's token signs in.
func TestServeUI(t *testing.T) {
	s := startServer(t, t.TempDir())
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Jar: jar}
	get := func(path string) (*http.Response, string) {
		t.Helper()
		resp, err := c.Get(s.url + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	resp, page := get("/ui")
	if resp.StatusCode != http.StatusOK || resp.Request.URL.Path != "/ui/signin" {
		t.Fatalf("/ui = %d at %s", resp.StatusCode, resp.Request.URL.Path)
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") {
		t.Errorf("Content-Security-Policy = %q", csp)
	}
	m := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no sign-in form:\n%s", page)
	}
	resp, err = c.PostForm(s.url+"/ui/signin", url.Values{"csrf": {m[1]}, "token": {s.token}})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Request.URL.Path != "/ui/search" || !strings.Contains(string(b), "Search records") {
		t.Fatalf("sign-in = %d at %s:\n%s", resp.StatusCode, resp.Request.URL.Path, b)
	}
	if resp, page := get("/ui/log"); resp.StatusCode != http.StatusOK || !strings.Contains(html.UnescapeString(page), s.vkey) {
		t.Errorf("/ui/log = %d, without the verifier key %s", resp.StatusCode, s.vkey)
	}
}
