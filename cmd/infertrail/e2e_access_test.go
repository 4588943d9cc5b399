package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// TestE2EOIDC signs in with bearer JWTs from an OIDC provider whose keys
// are in a JWKS file: claims map to roles and the tenant, and the roles
// apply as they do to API tokens.
func TestE2EOIDC(t *testing.T) {
	t.Parallel()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	jwks, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: pub, KeyID: "k1", Algorithm: "EdDSA", Use: "sig"}}})
	jwksFile := filepath.Join(tmp, "jwks.json")
	os.WriteFile(jwksFile, jwks, 0o600)
	cfg := filepath.Join(tmp, "infertrail.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`auth:
  oidc:
    issuer: https://idp.example.com
    audience: infertrail
    jwks_file: %s
    roles_claim: groups
    role_map:
      soc-analysts: [investigator]
      internal-audit: [auditor]
`, jwksFile)), 0o600)
	dir := filepath.Join(tmp, "data")
	s := startServer(t, dir, "--config", cfg)

	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.EdDSA, Key: priv}, (&jose.SignerOptions{}).WithHeader("kid", "k1").WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	mint := func(groups []string, tenant string, exp time.Time) string {
		tok, err := jwt.Signed(signer).Claims(map[string]any{
			"iss": "https://idp.example.com", "aud": "infertrail", "sub": "u-123", "email": "ana@bank.example",
			"groups": groups, "tenant": tenant, "exp": exp.Unix(), "iat": time.Now().Unix(),
		}).Serialize()
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	body, _ := batchBody(t, 2, 0, true) // tenant acme
	res := mustPost(t, s.url, body, 2)
	get := func(tok, path string) (int, string) {
		req, _ := http.NewRequestWithContext(t.Context(), "GET", s.url+path, nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("X-InferTrail-Reason", "case 77")
		resp, err := httpClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b strings.Builder
		buf := make([]byte, 4096)
		for {
			n, err := resp.Body.Read(buf)
			b.Write(buf[:n])
			if err != nil {
				break
			}
		}
		return resp.StatusCode, b.String()
	}
	content := fmt.Sprintf("/v1/records/%d?content=true", res[0].Seq)
	analyst := mint([]string{"soc-analysts"}, "acme", time.Now().Add(time.Hour))
	if code, b := get(analyst, content); code != 200 || !strings.Contains(b, `"content"`) {
		t.Fatalf("investigator reads content: %d %s", code, b)
	}
	auditor := mint([]string{"internal-audit"}, "acme", time.Now().Add(time.Hour))
	if code, b := get(auditor, content); code != 403 {
		t.Errorf("auditor reads content: %d %s", code, b)
	}
	if code, b := get(auditor, fmt.Sprintf("/v1/records/%d/proof", res[0].Seq)); code != 200 {
		t.Errorf("auditor reads a proof: %d %s", code, b)
	}
	other := mint([]string{"soc-analysts"}, "globex", time.Now().Add(time.Hour))
	if code, b := get(other, content); code != 404 {
		t.Errorf("another tenant's investigator reads content: %d %s", code, b)
	}
	for name, tok := range map[string]string{
		"expired":   mint([]string{"soc-analysts"}, "acme", time.Now().Add(-time.Hour)),
		"no role":   mint([]string{"marketing"}, "acme", time.Now().Add(time.Hour)),
		"tampered":  analyst[:len(analyst)-4] + "AAAA",
		"malformed": "eyJhbGciOiJub25lIn0.e30.",
	} {
		if code, b := get(tok, "/v1/log"); code != 401 {
			t.Errorf("%s token: %d %s", name, code, b)
		}
	}
	// The content read is recorded with the identity and the reason.
	size := treeSize(t, s.url)
	rec, _, err := getRecord(t.Context(), s.url, size-1)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(rec.Record), `"access.reason":"case 77"`) || !strings.Contains(string(rec.Record), `"id":"oidc:https://idp.example.com#u-123"`) {
		t.Errorf("access record %s", rec.Record)
	}
}
