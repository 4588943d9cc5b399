package httpapi_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/infertrail/infertrail"
	"github.com/infertrail/infertrail/access"
	"github.com/infertrail/infertrail/httpapi"
)

// authServer is a test server with API tokens switched on.
type authServer struct {
	*testServer
	tokens *access.Tokens
	now    time.Time
}

func newAuthServer(tb testing.TB, edit func(*httpapi.Config, *access.Config)) *authServer {
	tb.Helper()
	as := &authServer{now: time.Now()}
	as.testServer = newTestServer(tb, func(c *httpapi.Config) {
		ac := access.Config{Tokens: c.Log.Store(), Now: func() time.Time { return as.now }, RateLimit: -1}
		if edit != nil {
			edit(c, &ac)
		}
		a, err := access.New(ac)
		if err != nil {
			tb.Fatal(err)
		}
		as.tokens = &access.Tokens{Store: c.Log.Store(), Recorder: c.Log}
		c.Auth, c.Tokens = a, as.tokens
	})
	return as
}

// token creates a token with the roles in the tenant.
func (s *authServer) token(tb testing.TB, tenant string, ttl time.Duration, roles ...infertrail.Role) (string, infertrail.Token) {
	tb.Helper()
	secret, tok, err := s.tokens.Create(tb.Context(), access.TokenRequest{Name: fmt.Sprintf("%s %v", tenant, roles), Tenant: tenant, Roles: roles, TTL: ttl},
		nil, infertrail.Actor{ID: "test"})
	if err != nil {
		tb.Fatal(err)
	}
	return secret, tok
}

// as sends a request with a bearer token.
func (s *authServer) as(tb testing.TB, token, method, path, ctype, body string, extra http.Header) (*http.Response, []byte) {
	tb.Helper()
	h := http.Header{}
	if token != "" {
		h.Set("Authorization", "Bearer "+token)
	}
	if ctype != "" {
		h.Set("Content-Type", ctype)
	}
	for k, v := range extra {
		h[k] = v
	}
	return s.do(tb, method, path, h, []byte(body))
}

// matrixTrace is the trace of each tenant's record in the matrix.
var matrixTrace = map[string]string{"acme": "4bf92f3577b34da6a3ce929d0e0e4736", "globex": "0af7651916cd43dd8448eb211c80319c"}

// scoping says how a route answers a caller acting on another tenant's data.
type scoping int

const (
	global   scoping = iota // no tenant in the request: the same answer
	named                   // the request names the tenant: 403
	hidden                  // the request names a record or object of the tenant: 404, as if it did not exist
	filtered                // the answer leaves the other tenant's data out: 2xx
)

// matrixRequest builds a route's request acting on a tenant's data.
type matrixRequest struct {
	scope scoping
	build func(tb testing.TB, s *authServer, tenant string) (method, path, ctype, body string)
}

// TestAuthorizationMatrix sends every route and variant of the API's route
// table, as a caller with each role, on its own tenant's data and on
// another's, and checks the answer; a route without an entry here fails the
// test, so a new route cannot escape it. A refused request appends nothing.
func TestAuthorizationMatrix(t *testing.T) {
	s := newAuthServer(t, func(c *httpapi.Config, _ *access.Config) { withApprovals(t, c) })
	seqs := map[string]int64{}
	for _, tenant := range []string{"acme", "globex"} {
		ids, err := s.log.Record(t.Context(), &infertrail.Record{Kind: infertrail.KindInference, Tenant: tenant, SessionID: "s-" + tenant,
			TraceID: matrixTrace[tenant], Source: "test",
			Content: map[string]json.RawMessage{"prompt": json.RawMessage(`"hello from ` + tenant + `"`)}})
		if err != nil {
			t.Fatal(err)
		}
		seqs[tenant] = ids[0]
	}
	s.checkpoint(t)
	seqPath := func(format string) func(testing.TB, *authServer, string) (string, string, string, string) {
		return func(_ testing.TB, _ *authServer, tenant string) (string, string, string, string) {
			return "GET", fmt.Sprintf(format, seqs[tenant]), "", ""
		}
	}
	get := func(path string) func(testing.TB, *authServer, string) (string, string, string, string) {
		return func(testing.TB, *authServer, string) (string, string, string, string) { return "GET", path, "", "" }
	}
	post := func(path, body string) func(testing.TB, *authServer, string) (string, string, string, string) {
		return func(_ testing.TB, _ *authServer, tenant string) (string, string, string, string) {
			return "POST", path, "application/json", strings.ReplaceAll(body, "$T", tenant)
		}
	}
	requests := map[string]matrixRequest{
		"POST /v1/records":              {named, post("/v1/records", `{"kind":"tool_call","tenant":"$T","attributes":{"gen_ai.tool.name":"t"}}`)},
		"GET /v1/records/{seq}":         {hidden, seqPath("/v1/records/%d")},
		"GET /v1/records/{seq}/proof":   {hidden, seqPath("/v1/records/%d/proof")},
		"GET /v1/records/{seq}/receipt": {hidden, seqPath("/v1/records/%d/receipt")},
		"GET /v1/consistency":           {global, get("/v1/consistency?from=1&to=2")},
		"GET /v1/log":                   {global, get("/v1/log")},
		"GET /checkpoint":               {global, get("/checkpoint")},
		"GET /tile/":                    {global, get("/tile/0/000.p/2")},
		"POST /v1/erasures":             {named, post("/v1/erasures", `{"scope":"tenant=$T","reason":"matrix"}`)},
		"GET /v1/holds": {named, func(_ testing.TB, _ *authServer, tenant string) (string, string, string, string) {
			return "GET", "/v1/holds?tenant=" + tenant, "", ""
		}},
		"POST /v1/holds": {named, post("/v1/holds", `{"scope":"tenant=$T","reason":"matrix"}`)},
		"POST /v1/holds/{id}/release": {named, func(tb testing.TB, s *authServer, tenant string) (string, string, string, string) {
			h, err := s.log.PlaceHold(tb.Context(), infertrail.Scope("tenant="+tenant), "to release", infertrail.Actor{ID: "test"})
			if err != nil {
				tb.Fatal(err)
			}
			return "POST", "/v1/holds/" + h.ID.String() + "/release", "application/json", `{"tenant":"` + tenant + `"}`
		}},
		"POST /v1/fingerprints": {filtered, post("/v1/fingerprints", `{"credential":"sk-test-$T"}`)},
		"GET /v1/tokens":        {filtered, get("/v1/tokens")},
		"POST /v1/tokens":       {named, post("/v1/tokens", `{"name":"made in the matrix","tenant":"$T","roles":["auditor"]}`)},
		"POST /v1/tokens/{id}/revoke": {hidden, func(tb testing.TB, s *authServer, tenant string) (string, string, string, string) {
			_, tok := s.token(tb, tenant, 0, infertrail.RoleIngest)
			return "POST", "/v1/tokens/" + tok.ID.String() + "/revoke", "", ""
		}},
		"GET /v1/records": {filtered, get("/v1/records")},
		"GET /v1/traces/{id}": {hidden, func(_ testing.TB, _ *authServer, tenant string) (string, string, string, string) {
			return "GET", "/v1/traces/" + matrixTrace[tenant], "", ""
		}},
		"GET /v1/sessions/{id}": {hidden, func(_ testing.TB, _ *authServer, tenant string) (string, string, string, string) {
			return "GET", "/v1/sessions/s-" + tenant, "", ""
		}},
		"GET /v1/findings": {filtered, get("/v1/findings")},
		"GET /v1/export": {hidden, func(_ testing.TB, _ *authServer, tenant string) (string, string, string, string) {
			return "GET", "/v1/export?trace=" + matrixTrace[tenant], "", ""
		}},
		"GET /v1/report": {filtered, get("/v1/report")},
		"POST /v1/detect": {hidden, func(_ testing.TB, _ *authServer, tenant string) (string, string, string, string) {
			return "POST", "/v1/detect?window=0s&trace=" + matrixTrace[tenant], "", ""
		}},
		"GET /v1/approvals": {filtered, get("/v1/approvals?status=pending")},
		"GET /v1/approvals/{id}": {hidden, func(tb testing.TB, s *authServer, tenant string) (string, string, string, string) {
			return "GET", "/v1/approvals/" + pendingApproval(tb, s.testServer, tenant).String(), "", ""
		}},
		"POST /v1/approvals/{id}": {hidden, func(tb testing.TB, s *authServer, tenant string) (string, string, string, string) {
			return "POST", "/v1/approvals/" + pendingApproval(tb, s.testServer, tenant).String(), "application/json", `{"decision":"approved","rationale":"matrix"}`
		}},
		"GET /healthz": {global, get("/healthz")},
		"GET /readyz":  {global, get("/readyz")},
		"GET /metrics": {global, get("/metrics")},
	}

	type caller struct {
		name  string
		token string
		perms infertrail.Permission
	}
	var callers []caller
	for _, r := range infertrail.Roles {
		tok, _ := s.token(t, "acme", time.Hour, r)
		callers = append(callers, caller{string(r), tok, r.Permissions()})
	}
	wildAuditor, _ := s.token(t, infertrail.AllTenants, time.Hour, infertrail.RoleAuditor)

	seen := map[string]bool{}
	for _, rt := range httpapi.Routes {
		req, ok := requests[rt.Pattern]
		if !ok {
			t.Errorf("route %s has no request in the authorization matrix", rt.Pattern)
			continue
		}
		seen[rt.Pattern] = true
		variants := append([]httpapi.Variant{{Perm: rt.Perm}}, rt.Variants...)
		for _, v := range variants {
			for _, c := range callers {
				for _, tenant := range []string{"acme", "globex"} {
					method, path, ctype, body := req.build(t, s, tenant)
					if v.Path != "" {
						path = v.Path
					}
					if v.Query != "" && strings.Contains(path, "?") {
						path += "&" + v.Query
					} else if v.Query != "" {
						path += "?" + v.Query
					}
					want := "2xx"
					switch {
					case v.Perm == 0:
					case c.perms&v.Perm != v.Perm:
						want = "403"
					case v.AllTenants:
						want = "403"
					case tenant == "globex" && req.scope == named:
						want = "403"
					case tenant == "globex" && req.scope == hidden:
						want = "404"
					}
					before := s.size(t)
					resp, b := s.as(t, c.token, method, path, ctype, body, nil)
					got := fmt.Sprint(resp.StatusCode)
					if resp.StatusCode/100 == 2 {
						got = "2xx"
					}
					if got != want {
						t.Errorf("%s %s as %s on %s's data = %d %s, want %s", method, path, c.name, tenant, resp.StatusCode, b, want)
					}
					if got != "2xx" && s.size(t) != before {
						t.Errorf("%s %s as %s on %s's data was refused (%d) but the log grew", method, path, c.name, tenant, resp.StatusCode)
					}
				}
			}
			// No credential: every route but the public ones answers 401.
			method, path, ctype, body := req.build(t, s, "acme")
			if v.Path != "" {
				path = v.Path
			}
			resp, b := s.as(t, "", method, path, ctype, body, nil)
			if v.Perm != 0 && (resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") == "") {
				t.Errorf("%s %s without a token = %d %s, want 401 with WWW-Authenticate", method, path, resp.StatusCode, b)
			}
			if v.Perm == 0 && resp.StatusCode != http.StatusOK {
				t.Errorf("%s %s (public) without a token = %d %s", method, path, resp.StatusCode, b)
			}
			if v.AllTenants {
				if resp, b := s.as(t, wildAuditor, method, path, ctype, body, nil); resp.StatusCode != http.StatusOK {
					t.Errorf("%s %s as an auditor of every tenant = %d %s", method, path, resp.StatusCode, b)
				}
			}
		}
	}
	for p := range requests {
		if !seen[p] {
			t.Errorf("the authorization matrix has a request for %s, which is not a route", p)
		}
	}
}

// TestTokenLifecycle: a token works until it expires or is revoked, and is
// refused at once after; the secret appears nowhere in the trail.
func TestTokenLifecycle(t *testing.T) {
	s := newAuthServer(t, nil)
	admin, _ := s.token(t, infertrail.AllTenants, 0, infertrail.RoleAdmin)
	resp, b := s.as(t, admin, "POST", "/v1/tokens", "application/json", `{"name":"ci ingest","tenant":"acme","roles":["ingest"],"expires_in":"1h"}`, nil)
	if resp.StatusCode != http.StatusCreated || resp.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("create token = %d %s", resp.StatusCode, b)
	}
	var created httpapi.TokenJSON
	if err := json.Unmarshal(b, &created); err != nil {
		t.Fatal(err)
	}
	if !access.LooksLikeToken(created.Token) || created.Tenant != "acme" || created.Expires == "" {
		t.Fatalf("created token = %+v", created)
	}
	ingest := func(tok string) int {
		resp, _ := s.as(t, tok, "POST", "/v1/records", "application/json", `{"kind":"tool_call","attributes":{"gen_ai.tool.name":"t"}}`, nil)
		return resp.StatusCode
	}
	if code := ingest(created.Token); code != http.StatusOK {
		t.Fatalf("ingest with the new token = %d", code)
	}
	// The record without a tenant lands in the token's.
	last := s.entry(t, s.size(t)-1)
	if last.Tenant != "acme" {
		t.Errorf("record ingested by an acme token has tenant %q", last.Tenant)
	}
	// Listing never shows a secret.
	resp, b = s.as(t, admin, "GET", "/v1/tokens", "", "", nil)
	if resp.StatusCode != http.StatusOK || strings.Contains(string(b), created.Token) || strings.Contains(string(b), `"token"`) {
		t.Errorf("list tokens = %d %s", resp.StatusCode, b)
	}

	// Expiry: refused as soon as the clock passes it.
	s.now = s.now.Add(time.Hour + time.Second)
	resp, b = s.as(t, created.Token, "POST", "/v1/records", "application/json", `{"kind":"tool_call"}`, nil)
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(string(b), "expired") {
		t.Errorf("expired token = %d %s", resp.StatusCode, b)
	}
	s.now = time.Now()

	// Revocation: refused from the next request.
	worker, tok := s.token(t, "acme", 0, infertrail.RoleIngest)
	if code := ingest(worker); code != http.StatusOK {
		t.Fatalf("ingest = %d", code)
	}
	resp, b = s.as(t, admin, "POST", "/v1/tokens/"+tok.ID.String()+"/revoke", "application/json", `{"reason":"leaked in a CI log"}`, nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("revoke = %d %s", resp.StatusCode, b)
	}
	resp, b = s.as(t, worker, "POST", "/v1/records", "application/json", `{"kind":"tool_call"}`, nil)
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(string(b), "revoked") {
		t.Errorf("revoked token = %d %s", resp.StatusCode, b)
	}
	resp, _ = s.as(t, admin, "POST", "/v1/tokens/"+tok.ID.String()+"/revoke", "", "", nil)
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("second revoke = %d, want 404", resp.StatusCode)
	}
	// Unknown and malformed credentials.
	other, _ := access.NewToken()
	for _, cred := range []string{other, "itk_short", "sk-proj-abc", strings.Repeat("a", 20000)} {
		if resp, _ := s.as(t, cred, "GET", "/v1/log", "", "", nil); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("credential %.12q… = %d, want 401", cred, resp.StatusCode)
		}
	}

	// Token creation and revocation are access records, in the log, and no
	// leaf holds a token.
	var actions []string
	for _, leaf := range s.leaves(t) {
		for _, secret := range []string{admin, created.Token, worker} {
			if strings.Contains(string(leaf), secret) {
				t.Fatalf("a leaf holds a token: %s", leaf)
			}
		}
		var rec struct {
			Kind       string
			Actor      infertrail.Actor
			Attributes map[string]any
		}
		json.Unmarshal(leaf, &rec)
		if rec.Kind == "access" {
			actions = append(actions, fmt.Sprint(rec.Attributes["access.action"]))
		}
	}
	if want := "token.create token.create token.list token.create token.revoke"; strings.Join(actions, " ") != want {
		t.Errorf("access actions = %q, want %q", strings.Join(actions, " "), want)
	}
}

// TestTokenGrants: an admin of one tenant manages that tenant's tokens
// only, and nobody grants erase without holding it.
func TestTokenGrants(t *testing.T) {
	s := newAuthServer(t, nil)
	acmeAdmin, _ := s.token(t, "acme", 0, infertrail.RoleAdmin)
	wildAdmin, _ := s.token(t, infertrail.AllTenants, 0, infertrail.RoleAdmin)
	eraser, _ := s.token(t, infertrail.AllTenants, 0, infertrail.RoleAdmin, infertrail.RoleErase)
	for _, c := range []struct {
		token, body string
		want        int
	}{
		{acmeAdmin, `{"name":"x","tenant":"acme","roles":["ingest"]}`, 201},
		{acmeAdmin, `{"name":"x","roles":["ingest"]}`, 201}, // the admin's own tenant
		{acmeAdmin, `{"name":"x","tenant":"globex","roles":["ingest"]}`, 403},
		{acmeAdmin, `{"name":"x","tenant":"*","roles":["auditor"]}`, 403},
		{wildAdmin, `{"name":"x","tenant":"*","roles":["auditor"]}`, 201},
		{wildAdmin, `{"name":"x","tenant":"acme","roles":["erase"]}`, 403},
		{eraser, `{"name":"x","tenant":"acme","roles":["erase"]}`, 201},
		{wildAdmin, `{"name":"","tenant":"acme","roles":["ingest"]}`, 400},
		{wildAdmin, `{"name":"x","tenant":"acme","roles":["root"]}`, 400},
		{wildAdmin, `{"name":"x","tenant":"acme","roles":[]}`, 400},
		{wildAdmin, `{"name":"x","tenant":"Not A Tenant!","roles":["ingest"]}`, 400},
		{wildAdmin, `{"name":"x","tenant":"acme","roles":["ingest"],"expires_in":"-5d"}`, 400},
		{wildAdmin, `{"name":"x","tenant":"acme","roles":["ingest"],"rate_limit":-1}`, 400},
		{wildAdmin, `{"name":"x","tenant":"acme","roles":["ingest"],"extra":1}`, 400},
		{wildAdmin, `{"name":"` + strings.Repeat("n", 200) + `","tenant":"acme","roles":["ingest"]}`, 413},
	} {
		before := s.size(t)
		resp, b := s.as(t, c.token, "POST", "/v1/tokens", "application/json", c.body, nil)
		if resp.StatusCode != c.want {
			t.Errorf("create %s = %d %s, want %d", c.body, resp.StatusCode, b, c.want)
		}
		if c.want != 201 && s.size(t) != before {
			t.Errorf("refused create %s grew the log", c.body)
		}
	}
	// The acme admin sees acme's tokens only.
	var out struct{ Tokens []httpapi.TokenJSON }
	resp, b := s.as(t, acmeAdmin, "GET", "/v1/tokens", "", "", nil)
	if err := json.Unmarshal(b, &out); err != nil || resp.StatusCode != 200 {
		t.Fatalf("list = %d %s", resp.StatusCode, b)
	}
	for _, tok := range out.Tokens {
		if tok.Tenant != "acme" {
			t.Errorf("acme admin sees token %+v", tok)
		}
	}
}

// TestContentReadReason: content reads are recorded with their reader and
// reason, and the reason can be made mandatory.
func TestContentReadReason(t *testing.T) {
	s := newAuthServer(t, func(c *httpapi.Config, _ *access.Config) { c.RequireReason = true })
	inv, tok := s.token(t, "acme", 0, infertrail.RoleInvestigator)
	ids, err := s.log.Record(t.Context(), &infertrail.Record{Kind: infertrail.KindInference, Tenant: "acme", Source: "test",
		Content: map[string]json.RawMessage{"prompt": json.RawMessage(`"secret plans"`)}})
	if err != nil {
		t.Fatal(err)
	}
	path := fmt.Sprintf("/v1/records/%d?content=true", ids[0])
	before := s.size(t)
	resp, b := s.as(t, inv, "GET", path, "", "", nil)
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(b), httpapi.HeaderReason) {
		t.Errorf("content read without a reason = %d %s", resp.StatusCode, b)
	}
	if s.size(t) != before {
		t.Error("a refused content read appended a record")
	}
	resp, b = s.as(t, inv, "GET", path, "", "", http.Header{httpapi.HeaderReason: {"incident 4711"}})
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), "secret plans") {
		t.Fatalf("content read = %d %s", resp.StatusCode, b)
	}
	e := s.entry(t, s.size(t)-1)
	var rec struct {
		Kind       string
		Actor      infertrail.Actor
		Attributes map[string]any
	}
	json.Unmarshal(e.Leaf, &rec)
	if rec.Kind != "access" || rec.Actor.ID != "token/"+tok.ID.String() || rec.Attributes["access.reason"] != "incident 4711" {
		t.Errorf("access record = %s", e.Leaf)
	}
}

// TestRateLimit: a token over its rate is refused with 429 and Retry-After,
// and other tokens are not.
func TestRateLimit(t *testing.T) {
	s := newAuthServer(t, func(_ *httpapi.Config, ac *access.Config) { ac.RateLimit, ac.Burst = 1, 3 })
	busy, _ := s.token(t, "acme", 0, infertrail.RoleAuditor)
	calm, _ := s.token(t, "acme", 0, infertrail.RoleAuditor)
	codes := []int{}
	for range 5 {
		resp, _ := s.as(t, busy, "GET", "/v1/log", "", "", nil)
		codes = append(codes, resp.StatusCode)
		if resp.StatusCode == http.StatusTooManyRequests && resp.Header.Get("Retry-After") == "" {
			t.Error("429 without Retry-After")
		}
	}
	if fmt.Sprint(codes) != "[200 200 200 429 429]" {
		t.Errorf("codes = %v, want three 200 then 429", codes)
	}
	if resp, _ := s.as(t, calm, "GET", "/v1/log", "", "", nil); resp.StatusCode != http.StatusOK {
		t.Errorf("another token = %d", resp.StatusCode)
	}
	s.now = s.now.Add(2 * time.Second)
	if resp, _ := s.as(t, busy, "GET", "/v1/log", "", "", nil); resp.StatusCode != http.StatusOK {
		t.Errorf("after waiting = %d", resp.StatusCode)
	}
}
