package web_test

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/infertrail/infertrail"
	"github.com/infertrail/infertrail/access"
	"github.com/infertrail/infertrail/access/oidctest"
	"github.com/infertrail/infertrail/httpapi"
	"github.com/infertrail/infertrail/investigate"
	"github.com/infertrail/infertrail/investigate/investigatetest"
	"github.com/infertrail/infertrail/ledger"
	"github.com/infertrail/infertrail/ledger/ledgertest"
	"github.com/infertrail/infertrail/store/sqlite"
	"github.com/infertrail/infertrail/web"
)

const (
	testOrigin = "example.com/infertrail/web-test"
	traceID    = investigatetest.TraceID
)

// env is a server with the API at / and the UI at /ui/, over a real
// ledger in SQLite.
type env struct {
	url    string
	path   string // the SQLite file
	log    *ledger.Log
	db     *sqlite.DB
	engine *investigate.Engine
	tokens *access.Tokens // nil with authentication off
	verif  note.Verifier
	idp    *oidctest.Provider // nil without OIDC sign-in
	logs   *syncBuffer        // what the server logged

	mu  sync.Mutex
	now time.Time // the authenticator's clock
}

func (e *env) clock() time.Time {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.now
}

func (e *env) advance(d time.Duration) {
	e.mu.Lock()
	e.now = e.now.Add(d)
	e.mu.Unlock()
}

// syncBuffer is a bytes.Buffer safe for concurrent use.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// envOptions say how to set a test server up.
type envOptions struct {
	auth bool // API tokens on
	// idp, when set, turns OIDC sign-in on (and auth): a scripted OpenID
	// provider with this configuration; ClientID defaults to
	// "infertrail-ui", the redirect URL is the server's.
	idp *oidctest.Config
	// uiSecret, when set, is the client secret the UI sends in place of
	// the provider's.
	uiSecret string
}

// newEnv starts the server; with auth, API tokens are on.
func newEnv(tb testing.TB, auth bool) *env {
	tb.Helper()
	return newEnvWith(tb, envOptions{auth: auth})
}

// newEnvWith starts the server as opts say.
func newEnvWith(tb testing.TB, opts envOptions) *env {
	tb.Helper()
	e := &env{path: filepath.Join(tb.TempDir(), "log.db"), now: time.Now(), logs: &syncBuffer{}}
	db, err := sqlite.Open(context.Background(), e.path, sqlite.Config{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	skey, _, err := ledger.GenerateKey(testOrigin)
	if err != nil {
		tb.Fatal(err)
	}
	signer, verif, vkey, err := ledger.KeyPair(skey)
	if err != nil {
		tb.Fatal(err)
	}
	logger := slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	lg, err := ledger.Open(context.Background(), ledger.Config{Store: db, Signer: signer, Verifier: verif, Origin: testOrigin,
		Secret: bytes.Repeat([]byte{7}, 32), KEK: ledgertest.NewKEK(tb), CheckpointInterval: 50 * time.Millisecond, Logger: logger})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { lg.Close() })
	terms, err := investigate.NewTerms(bytes.Repeat([]byte{7}, 32))
	if err != nil {
		tb.Fatal(err)
	}
	engine, err := investigate.New(investigate.Config{Store: db, Terms: terms, Content: lg.ContentReader().ReadParts, Logger: logger,
		Checkpoint: func(ctx context.Context) (int64, tlog.Hash, error) {
			cp, err := lg.LatestCheckpoint(ctx)
			return cp.Size, cp.Root, err
		}})
	if err != nil {
		tb.Fatal(err)
	}
	// The server starts first: the provider needs its redirect URL.
	mux := http.NewServeMux()
	srv := httptest.NewServer(mux)
	tb.Cleanup(srv.Close)
	cfg := httpapi.Config{Log: lg, VerifierKey: vkey, Logger: logger, Investigate: engine}
	uiCfg := web.Config{Log: lg, Logger: logger, Now: e.clock}
	if opts.auth || opts.idp != nil {
		ac := access.Config{Tokens: db, Now: e.clock, RateLimit: -1}
		if opts.idp != nil {
			ic := *opts.idp
			if ic.ClientID == "" {
				ic.ClientID = "infertrail-ui"
			}
			ic.RedirectURL = srv.URL + "/ui/signin/oidc/callback"
			ic.Now = e.clock
			e.idp = oidctest.Start(tb, ic)
			md, err := access.Discover(context.Background(), e.idp.Issuer(), nil)
			if err != nil {
				tb.Fatal(err)
			}
			ac.OIDC, err = access.NewOIDC(context.Background(), access.OIDCConfig{Issuer: md.Issuer, Audience: "infertrail",
				ClientID: ic.ClientID, JWKSURL: md.JWKSURI, Now: e.clock})
			if err != nil {
				tb.Fatal(err)
			}
			secret := ic.ClientSecret
			if opts.uiSecret != "" {
				secret = opts.uiSecret
			}
			uiCfg.OIDC = &web.OIDCSignIn{ProviderName: "Test IdP", AuthURL: md.AuthorizationEndpoint, TokenURL: md.TokenEndpoint,
				ClientID: ic.ClientID, ClientSecret: web.Secret(secret), SecretInForm: md.SecretInForm(), RedirectURL: ic.RedirectURL,
				Verifier: ac.OIDC}
		}
		a, err := access.New(ac)
		if err != nil {
			tb.Fatal(err)
		}
		e.tokens = &access.Tokens{Store: db, Recorder: lg}
		cfg.Auth, cfg.Tokens = a, e.tokens
	}
	api, err := httpapi.New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	uiCfg.API, uiCfg.Auth = api, cfg.Auth
	ui, err := web.New(uiCfg)
	if err != nil {
		tb.Fatal(err)
	}
	mux.Handle("/", api)
	mux.Handle("/ui/", ui)
	e.url, e.log, e.db, e.engine, e.verif = srv.URL, lg, db, engine, verif
	return e
}

// token creates an API token with the roles in the tenant.
func (e *env) token(tb testing.TB, tenant string, ttl time.Duration, roles ...infertrail.Role) string {
	tb.Helper()
	secret, _, err := e.tokens.Create(context.Background(), access.TokenRequest{Name: fmt.Sprintf("%s %v", tenant, roles), Tenant: tenant, Roles: roles, TTL: ttl},
		nil, infertrail.Actor{ID: "test"})
	if err != nil {
		tb.Fatal(err)
	}
	return secret
}

// paymentTrace appends a finance agent's trace in tenant acme: the prompt,
// the model's answer asking for a payment, the policy decision, the
// approval, the tool call and the payment API call, then signs a
// checkpoint over them and runs the detectors. It returns the records by
// name.
func (e *env) paymentTrace(tb testing.TB) map[string]*infertrail.Record {
	tb.Helper()
	ctx := context.Background()
	r, err := investigatetest.RecordPaymentTrace(ctx, e.log)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := e.log.SignCheckpoint(ctx); err != nil {
		tb.Fatal(err)
	}
	if _, err := e.engine.IndexCurrent(ctx, 100); err != nil {
		tb.Fatal(err)
	}
	if _, err := e.engine.DetectSubject(ctx, "acme", infertrail.IndexKey(infertrail.IndexTrace, traceID), time.Nanosecond); err != nil {
		tb.Fatal(err)
	}
	return r
}

// tamper alters a record's leaf in SQLite behind the store's back.
func (e *env) tamper(tb testing.TB, seq int64) {
	tb.Helper()
	db, err := sql.Open("sqlite", "file:"+e.path+"?_pragma=busy_timeout(10000)")
	if err != nil {
		tb.Fatal(err)
	}
	defer db.Close()
	var leaf []byte
	if err := db.QueryRow("SELECT leaf FROM records WHERE seq = ?", seq).Scan(&leaf); err != nil {
		tb.Fatal(err)
	}
	plain, err := sqlite.DecodeLeafColumn(leaf)
	if err != nil {
		tb.Fatal(err)
	}
	altered := []byte(strings.Replace(string(plain), "payments.internal", "paymentz.internal", 1))
	if bytes.Equal(altered, plain) {
		tb.Fatalf("record %d has nothing to alter", seq)
	}
	if _, err := db.Exec("UPDATE records SET leaf = ? WHERE seq = ?", altered, seq); err != nil {
		tb.Fatal(err)
	}
}

// accessRecords returns the access records in the log.
func (e *env) accessRecords(tb testing.TB) []*infertrail.Record {
	tb.Helper()
	var out []*infertrail.Record
	err := e.db.Query(context.Background(), infertrail.Query{Kinds: []infertrail.Kind{infertrail.KindAccess}, Limit: 1000}, func(en *infertrail.Entry) error {
		r, err := infertrail.ParseLeaf(en.Leaf)
		if err != nil {
			return err
		}
		out = append(out, r)
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

// client is a cookie-keeping HTTP client of the UI.
type client struct {
	e *env
	c *http.Client
}

func (e *env) browser(tb testing.TB) *client {
	tb.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		tb.Fatal(err)
	}
	return &client{e: e, c: &http.Client{Jar: jar}}
}

func (b *client) do(tb testing.TB, method, path string, form url.Values) (*http.Response, string) {
	tb.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, b.e.url+path, body)
	if err != nil {
		tb.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := b.c.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatal(err)
	}
	return resp, string(data)
}

func (b *client) get(tb testing.TB, path string) (*http.Response, string) {
	tb.Helper()
	return b.do(tb, http.MethodGet, path, nil)
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// csrf reads the CSRF token of the forms on a page.
func csrf(tb testing.TB, page string) string {
	tb.Helper()
	m := csrfField.FindStringSubmatch(page)
	if m == nil {
		tb.Fatalf("no CSRF token on the page:\n%s", page)
	}
	return m[1]
}

// post sends a form from the page at path, with that page's CSRF token.
func (b *client) post(tb testing.TB, from, path string, form url.Values) (*http.Response, string) {
	tb.Helper()
	_, page := b.get(tb, from)
	form.Set("csrf", csrf(tb, page))
	return b.do(tb, http.MethodPost, path, form)
}

// signIn signs in with the token and checks that it worked.
func (b *client) signIn(tb testing.TB, token string) {
	tb.Helper()
	resp, page := b.post(tb, "/ui/signin", "/ui/signin", url.Values{"token": {token}})
	if resp.StatusCode != http.StatusOK || resp.Request.URL.Path != "/ui/search" {
		tb.Fatalf("sign-in = %d at %s:\n%s", resp.StatusCode, resp.Request.URL.Path, page)
	}
}
