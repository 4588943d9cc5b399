package web_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/infertrail/infertrail"
	"github.com/infertrail/infertrail/access/oidctest"
	"github.com/infertrail/infertrail/export"
)

// chromium finds a Chromium binary: Debian's chromium package, or another
// Chrome the machine has.
func chromium() string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "headless-shell"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// stepTimeout bounds one step of a browser test, so that a step that
// hangs fails by its name with a screenshot, and the steps after it are
// not left without time.
const stepTimeout = 45 * time.Second

// chrome is a headless Chromium that a test drives, and where its
// screenshots go.
type chrome struct {
	t         *testing.T
	ctx       context.Context
	artifacts string
	// onFail, when set, runs before a failed step ends the test: to log
	// what the server saw.
	onFail func()
}

// newChrome starts Chromium for t. It skips t without Chromium unless
// INFERTRAIL_REQUIRE_BROWSER=1. Screenshots go to INFERTRAIL_ARTIFACTS
// (default: a temporary directory), under ui-browser/.
func newChrome(t *testing.T) *chrome {
	t.Helper()
	exe := chromium()
	if exe == "" {
		if os.Getenv("INFERTRAIL_REQUIRE_BROWSER") == "1" {
			t.Fatal("no chromium binary found, and INFERTRAIL_REQUIRE_BROWSER=1")
		}
		t.Skip("no chromium binary found (apt-get install chromium); set INFERTRAIL_REQUIRE_BROWSER=1 to make this a failure")
	}
	artifacts := os.Getenv("INFERTRAIL_ARTIFACTS")
	if artifacts == "" {
		artifacts = t.TempDir()
	}
	artifacts = filepath.Join(artifacts, "ui-browser")
	if err := os.MkdirAll(artifacts, 0o755); err != nil {
		t.Fatal(err)
	}
	// The browser lives as long as the allocator's context: at most five
	// minutes. Each step then runs under its own stepTimeout, derived
	// from the browser's context once the browser runs (a deadline on the
	// context that starts the browser would be the browser's own).
	life, cancelLife := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancelLife)
	// Chromium's own temporary files (its singleton socket among them)
	// go into the test's temporary directory, not the machine's /tmp.
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(exe), chromedp.NoSandbox, chromedp.WindowSize(1366, 900),
		chromedp.Env("TMPDIR="+t.TempDir()))
	actx, cancelAlloc := chromedp.NewExecAllocator(life, opts...)
	t.Cleanup(cancelAlloc)
	ctx, cancelBrowser := chromedp.NewContext(actx)
	t.Cleanup(cancelBrowser)
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("starting %s: %v", exe, err)
	}
	t.Cleanup(func() { t.Logf("screenshots in %s", artifacts) })
	return &chrome{t: t, ctx: ctx, artifacts: artifacts}
}

// shot saves a screenshot of the page as name.png.
func (c *chrome) shot(name string) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		png, err := chromedp.FullScreenshot(100)(ctx, tg)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(c.artifacts, name+".png"), png, 0o644)
	})
}

// fail ends the test at step: it saves failed-<step>.png and says where
// the browser was.
func (c *chrome) fail(step string, err error) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(c.ctx, 10*time.Second)
	defer cancel()
	chromedp.Do(ctx, c.shot("failed-"+step))
	loc, _ := chromedp.Run(ctx, chromedp.Location())
	if c.onFail != nil {
		c.onFail()
	}
	c.t.Fatalf("%s (the browser is at %s): %v", step, loc, err)
}

// run runs a step's actions within stepTimeout; a failure saves
// failed-<step>.png.
func (c *chrome) run(step string, actions ...chromedp.Action[chromedp.Void]) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(c.ctx, stepTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		c.fail(step, err)
	}
}

// follow runs actions that start a navigation (a form sent, a link
// clicked) and waits until the page they lead to has loaded with status
// 200, redirects followed. A step after it then looks at the new page:
// a wait for an element right after a click could otherwise find it on
// the page being left, or ask the browser about a node of a document
// that is going away.
func (c *chrome) follow(step string, actions ...chromedp.Action[chromedp.Void]) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(c.ctx, stepTimeout)
	defer cancel()
	resp, err := chromedp.RunResponse(ctx, actions...)
	if err == nil && resp.Status != 200 {
		err = fmt.Errorf("%s answered %d %s", resp.URL, resp.Status, resp.StatusText)
	}
	if err != nil {
		c.fail(step, err)
	}
}

// text returns the visible text of sel.
func (c *chrome) text(step string, sel chromedp.CSS) string {
	c.t.Helper()
	s, err := read(c, chromedp.Text(sel, chromedp.NodeVisible))
	if err != nil {
		c.fail(step, err)
	}
	return s
}

// read runs an action that reads a value from the page, within
// stepTimeout.
func read[T any](c *chrome, a chromedp.Action[T]) (T, error) {
	ctx, cancel := context.WithTimeout(c.ctx, stepTimeout)
	defer cancel()
	return chromedp.Run(ctx, a)
}

// TestBrowser drives the UI in headless Chromium as an investigator
// would: sign in, search, open the payment trace, see its tool call and
// policy decision, reveal content, download the evidence bundle, and
// watch a badge turn red after the database is tampered with.
func TestBrowser(t *testing.T) {
	c := newChrome(t)
	ctx, run, follow, text, shot, artifacts := c.ctx, c.run, c.follow, c.text, c.shot, c.artifacts
	downloads := t.TempDir()

	e := newEnv(t, true)
	recs := e.paymentTrace(t)
	token := e.token(t, "acme", time.Hour, infertrail.RoleInvestigator)

	// Sign in.
	c.onFail = func() { t.Logf("the server's log:\n%s", e.logs.String()) }
	run("sign in",
		chromedp.Navigate(e.url+"/ui/signin"),
		chromedp.WaitVisible(chromedp.ID("token")),
		shot("01-signin"),
		chromedp.SendKeys(chromedp.ID("token"), token),
	)
	follow("send the token", chromedp.Submit(chromedp.ID("token")))
	run("signed in", chromedp.WaitVisible(chromedp.ID("f-actor")))

	// The keyboard reaches the skip link first.
	run("keyboard", chromedp.KeyEvent("\t"))
	focused, err := read(c, chromedp.Evaluate[string](`document.activeElement.className`))
	if err != nil || focused != "skip" {
		t.Errorf("the first Tab focuses %q (%v), want the skip link", focused, err)
	}

	// Search by actor.
	// The page signed in on lists the latest records already: the search
	// must be followed to its own page before its results are looked at.
	run("search", chromedp.SendKeys(chromedp.ID("f-actor"), "agent:payments-bot"))
	follow("send the search", chromedp.Submit(chromedp.ID("f-actor")))
	run("search results",
		chromedp.WaitVisible(chromedp.CSS("table.results")),
		shot("02-search"),
	)
	if loc, err := read(c, chromedp.Location()); err != nil || !strings.Contains(loc, "actor=agent%3Apayments-bot") {
		t.Errorf("the search is at %q (%v), want the actor in its query", loc, err)
	}

	// Open the trace: the tool call and the policy decision are there,
	// each verified.
	follow("open trace", chromedp.Click(chromedp.CSS(`table.results a[href="/ui/traces/`+traceID+`"]`), chromedp.NodeVisible))
	run("trace",
		chromedp.WaitVisible(chromedp.ID("tree-h")),
		shot("03-trace"),
	)
	tree := text("read trace", "main")
	for _, want := range []string{"tool_call", "pay", "policy_decision", "require_approval", "✓ verified", "downstream_call"} {
		if !strings.Contains(tree, want) {
			t.Errorf("the trace page lacks %q", want)
		}
	}

	// Reveal the prompt's content, with a reason.
	before := len(e.accessRecords(t))
	follow("open the prompt", chromedp.Click(chromedp.CSS(fmt.Sprintf(`a[href="/ui/records/%d"]`, recs["prompt"].Seq)), chromedp.NodeVisible))
	run("give a reason",
		chromedp.WaitVisible(chromedp.ID("reason")),
		chromedp.SendKeys(chromedp.ID("reason"), "case 1234: disputed payment"),
	)
	follow("reveal content", chromedp.Submit(chromedp.ID("reason")))
	run("content revealed",
		chromedp.WaitVisible(chromedp.CSS(".notice")),
		shot("04-content"),
	)
	if c := text("read content", "main"); !strings.Contains(c, "INV-7731") {
		t.Errorf("the revealed content lacks the prompt:\n%s", c)
	}
	var reads int
	for _, a := range e.accessRecords(t) {
		if string(a.Attributes["access.action"]) == `"read_content"` && strings.Contains(string(a.Attributes["access.reason"]), "case 1234") {
			reads++
		}
	}
	if reads != 1 || len(e.accessRecords(t)) != before+1 {
		t.Errorf("revealing content left %d access records of the read", reads)
	}

	// Download the evidence bundle of the trace on screen.
	dctx, cancelDownload := context.WithTimeout(ctx, stepTimeout)
	defer cancelDownload()
	progress := chromedp.Events(dctx, browser.DownloadProgress)
	run("download bundle",
		chromedp.Navigate(e.url+"/ui/traces/"+traceID),
		chromedp.WaitVisible(chromedp.ID("tree-h")),
		chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
			allow := true
			_, err := chromedp.Call(ctx, browser.SetDownloadBehavior, browser.SetDownloadBehaviorParams{
				Behavior: browser.SetDownloadBehaviorBehaviorAllowAndName, DownloadPath: downloads, EventsEnabled: &allow})
			return err
		}),
		chromedp.Click(chromedp.CSS(`form[action="/ui/export"] button`), chromedp.NodeVisible),
	)
	var guid string
	for ev, err := range progress {
		if err != nil {
			t.Fatalf("download: %v", err)
		}
		if ev.State == browser.DownloadProgressStateCompleted {
			guid = ev.GUID
			break
		}
		if ev.State == browser.DownloadProgressStateCanceled {
			t.Fatal("the bundle download was cancelled")
		}
	}
	zip, err := os.ReadFile(filepath.Join(downloads, guid))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(artifacts, "bundle.zip"), zip, 0o644); err != nil {
		t.Fatal(err)
	}
	rep, err := export.VerifyBundle(bytes.NewReader(zip), int64(len(zip)), e.verif)
	if err != nil {
		t.Fatalf("the downloaded bundle does not verify: %v", err)
	}
	if !strings.Contains(rep.Title, traceID) {
		t.Errorf("the bundle is of %q, want the trace", rep.Title)
	}

	// Tamper with the payment call in the database: its badge turns red.
	e.tamper(t, recs["payment"].Seq)
	failed := chromedp.CSS(fmt.Sprintf(`li[data-seq="%d"][data-status="failed"] > .card .badge`, recs["payment"].Seq))
	run("tampered trace",
		chromedp.Navigate(e.url+"/ui/traces/"+traceID),
		chromedp.WaitVisible(failed),
		chromedp.ScrollIntoView(failed),
		shot("05-tampered"),
	)
	if b := text("read badge", failed); !strings.Contains(b, "FAILED") {
		t.Errorf("the tampered record's badge says %q", b)
	}
	colour, err := read(c, chromedp.Evaluate[string](`getComputedStyle(document.querySelector('`+string(failed)+`')).backgroundColor`))
	if err != nil || colour != "rgb(179, 20, 28)" {
		t.Errorf("the failed badge's background is %s (%v), want red", colour, err)
	}
}

// TestBrowserOIDC signs in with "Sign in with …" in headless Chromium,
// through a scripted OpenID provider on another site (localhost, while
// the UI is on 127.0.0.1) whose page asks to approve, as a real
// provider's login page does, and lands signed in on the search page. It
// checks what the browser did with the cookies on the provider's
// redirect back: it sent the SameSite=Lax sign-in cookie and withheld
// the SameSite=Strict session cookie, which is why the callback answers
// with a page instead of a redirect.
func TestBrowserOIDC(t *testing.T) {
	c := newChrome(t)
	e := newEnvWith(t, envOptions{idp: &oidctest.Config{ClientSecret: idpSecret, Host: "localhost", Consent: true}})
	e.paymentTrace(t)
	e.idp.SetLogin(auditorLogin)

	var (
		mu      sync.Mutex
		urls    = map[network.RequestID]string{}
		cookies = map[network.RequestID][]*network.AssociatedCookie{}
	)
	if err := chromedp.Listen(c.ctx, func(ev any) {
		mu.Lock()
		defer mu.Unlock()
		switch ev := ev.(type) {
		case *network.EventRequestWillBeSent:
			urls[ev.RequestID] = ev.Request.URL
		case *network.EventRequestWillBeSentExtraInfo:
			cookies[ev.RequestID] = ev.AssociatedCookies
		}
	}); err != nil {
		t.Fatal(err)
	}

	c.onFail = func() { t.Logf("the server's log:\n%s", e.logs.String()) }
	c.run("sign-in page",
		chromedp.Navigate(e.url+"/ui/signin"),
		chromedp.WaitVisible(chromedp.ID("oidc-signin")),
		c.shot("06-oidc-signin"),
	)
	c.follow("sign in with the provider", chromedp.Click(chromedp.ID("oidc-signin"), chromedp.NodeVisible))
	c.run("the provider's page",
		chromedp.WaitVisible(chromedp.ID("approve")),
		c.shot("07-oidc-provider"),
	)
	// The callback answers with a page that opens the search page.
	c.follow("approve", chromedp.Click(chromedp.ID("approve"), chromedp.NodeVisible))
	c.run("signed in",
		chromedp.WaitVisible(chromedp.ID("f-actor")),
		c.shot("08-oidc-signed-in"),
	)
	if who := c.text("read who", ".who"); !strings.Contains(who, "ana@bank.example") || !strings.Contains(who, "roles: auditor") {
		t.Errorf("the page header says %q, want the OIDC user and role", who)
	}
	loc, err := read(c, chromedp.Location())
	if err != nil || loc != e.url+"/ui/search" {
		t.Errorf("the browser is at %q (%v), want the search page", loc, err)
	}
	if r := e.idp.Refusals(); len(r) != 0 {
		t.Errorf("the provider refused %q", r)
	}

	// What the browser sent to the callback, and then to search.
	time.Sleep(200 * time.Millisecond) // the events come from another goroutine
	mu.Lock()
	defer mu.Unlock()
	sent := func(path string) (sent, blocked map[string][]network.CookieBlockedReason, seen bool) {
		sent, blocked = map[string][]network.CookieBlockedReason{}, map[string][]network.CookieBlockedReason{}
		for id, u := range urls {
			if !strings.HasPrefix(u, e.url+path) {
				continue
			}
			seen = true
			for _, ac := range cookies[id] {
				if len(ac.BlockedReasons) == 0 {
					sent[ac.Cookie.Name] = nil
				} else {
					blocked[ac.Cookie.Name] = ac.BlockedReasons
				}
			}
		}
		return sent, blocked, seen
	}
	s, b, seen := sent("/ui/signin/oidc/callback")
	if !seen {
		t.Fatalf("no request to the callback was seen: %v", urls)
	}
	if _, ok := s["infertrail_oidc"]; !ok {
		t.Errorf("the callback request did not carry the sign-in cookie (sent %v, blocked %v)", s, b)
	}
	if r := b["infertrail_ui"]; !slices.Contains(r, network.CookieBlockedReasonSameSiteStrict) && !slices.Contains(r, network.CookieBlockedReasonSchemefulSameSiteStrict) {
		t.Errorf("the callback request was not cross-site: the Strict session cookie was not withheld (sent %v, blocked %v)", s, b)
	}
	if s, b, _ := sent("/ui/search"); len(b) != 0 || s == nil {
		t.Errorf("the request to search: sent %v, blocked %v", s, b)
	}
}
