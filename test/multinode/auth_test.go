package multinode_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// adminToken returns the admin token n wrote to the admin-token file of
// its data folder at its first start. Only the node that found the token
// store empty writes that file: the first node of a test.
func adminToken(t testing.TB, n *node) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(n.dir, "admin-token"))
	if err != nil {
		t.Fatalf("%s: read its admin token: %v", n.name, err)
	}
	tok := strings.TrimSpace(string(b))
	if !strings.HasPrefix(tok, "itk_") {
		t.Fatalf("%s: admin-token holds %q, not an API token", n.name, tok)
	}
	return tok
}

// apiToken is the answer to POST /v1/tokens.
type apiToken struct {
	ID    string `json:"id"`
	Token string `json:"token"` // the secret, itk_…
}

// createToken creates, via n with the admin token, an API token for every
// tenant with the roles. Its rate limit is the highest allowed, so that the
// per-token limiter (1,000 requests/s by default) never throttles the load
// the tests drive.
func createToken(t testing.TB, n *node, admin, name string, roles ...string) apiToken {
	t.Helper()
	status, body, err := apiCall(t.Context(), http.MethodPost, n.url()+"/v1/tokens", admin, map[string]any{
		"name": name, "tenant": "*", "roles": roles, "expires_in": "1h", "rate_limit": 1e6,
	})
	if err != nil || status != http.StatusCreated {
		t.Fatalf("%s: POST /v1/tokens: status %d, err %v: %s", n.name, status, err, body)
	}
	var tok apiToken
	if err := json.Unmarshal(body, &tok); err != nil || tok.ID == "" || !strings.HasPrefix(tok.Token, "itk_") {
		t.Fatalf("%s: POST /v1/tokens answered %s (%v)", n.name, body, err)
	}
	return tok
}

// revokeToken revokes the token with the id via n with the admin token.
func revokeToken(t testing.TB, n *node, admin, id string) {
	t.Helper()
	status, body, err := apiCall(t.Context(), http.MethodPost, n.url()+"/v1/tokens/"+id+"/revoke", admin,
		map[string]string{"reason": "multinode test"})
	if err != nil || status != http.StatusOK {
		t.Fatalf("%s: revoke token %s: status %d, err %v: %s", n.name, id, status, err, body)
	}
}

// apiCall sends one request with a JSON body (none if body is nil) and the
// token, and returns the status and the answer's body.
func apiCall(ctx context.Context, method, url, token string, body any) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, nil, err
		}
		rd = bytes.NewReader(b)
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return 0, nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := httpClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return resp.StatusCode, nil, fmt.Errorf("read answer: %w", err)
	}
	return resp.StatusCode, b, nil
}

// TestTokenRevocationAcrossNodes creates an ingest token via one node, uses
// it on another, revokes it via the first: the very next request with it
// on the second node is refused, with no wait, since every node reads the
// tokens from the shared database on each request.
func TestTokenRevocationAcrossNodes(t *testing.T) {
	dsn := freshSchema(t, sharedDSN(t))
	nodes := startNodes(t, dsn, 2)
	node1, node2 := nodes[0], nodes[1]
	admin := adminToken(t, node1)

	tok := createToken(t, node1, admin, "revocation test", "ingest")
	b := newBatch("revocation", 3)
	status, got, errBody, _, err := post(t.Context(), node2.url(), tok.Token, b.body)
	if err != nil || status != http.StatusOK || len(got) != len(b.ids) {
		t.Fatalf("%s: POST /v1/records with a token created via %s: status %d, err %v, %d records: %s",
			node2.name, node1.name, status, err, len(got), errBody)
	}

	revokeToken(t, node1, admin, tok.ID)
	b = newBatch("revocation", 3)
	status, _, errBody, _, err = post(t.Context(), node2.url(), tok.Token, b.body)
	if err != nil {
		t.Fatalf("%s: POST /v1/records after the revocation: %v", node2.name, err)
	}
	if status != http.StatusUnauthorized || !strings.Contains(string(errBody), "revoked") {
		t.Errorf("%s: POST /v1/records with a token revoked via %s: status %d %s; want 401 saying it was revoked",
			node2.name, node1.name, status, errBody)
	}

	// The revocation touches that token only: the clients' token still works.
	status, got, errBody, _, err = post(t.Context(), node2.url(), node2.token, b.body)
	if err != nil || status != http.StatusOK || len(got) != len(b.ids) {
		t.Errorf("%s: POST /v1/records with another token: status %d, err %v, %d records: %s",
			node2.name, status, err, len(got), errBody)
	}
}
