package storetest

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"testing"

	"github.com/infertrail/infertrail"
)

// tokenTests are Run's subtests of API tokens.
var tokenTests = []struct {
	name string
	fn   func(t *testing.T, s infertrail.Store)
}{
	{"TokensAddAndLookup", testTokensAddAndLookup},
	{"TokensConflict", testTokensConflict},
	{"TokensInvalid", testTokensInvalid},
	{"TokensRevoke", testTokensRevoke},
	{"TokensOrder", testTokensOrder},
	{"TokensConcurrent", testTokensConcurrent},
}

// testToken returns the nth test token: its id and hash derive from n, it
// was created at 1000+n and it is not revoked.
func testToken(n int) infertrail.Token {
	var id infertrail.UUID
	id[0], id[1], id[15] = byte(n>>8), byte(n), 7
	return infertrail.Token{
		ID:        id,
		Name:      fmt.Sprintf("token %d", n),
		Tenant:    "acme",
		Roles:     []infertrail.Role{infertrail.RoleAuditor},
		Hash:      sha256.Sum256(fmt.Appendf(nil, "itk_test_%d", n)),
		CreatedBy: "token:admin",
		Created:   int64(1000 + n),
	}
}

func sameToken(a, b infertrail.Token) bool {
	return a.ID == b.ID && a.Name == b.Name && a.Tenant == b.Tenant && slices.Equal(a.Roles, b.Roles) && a.Hash == b.Hash &&
		a.RateLimit == b.RateLimit && a.CreatedBy == b.CreatedBy && a.Created == b.Created && a.Expires == b.Expires &&
		a.RevokedBy == b.RevokedBy && a.Revoked == b.Revoked
}

func addToken(t *testing.T, s infertrail.Store, tok infertrail.Token) {
	t.Helper()
	if err := s.AddToken(t.Context(), tok); err != nil {
		t.Fatalf("AddToken(%s): %v", tok.Name, err)
	}
}

// tokenNames returns the names of ts, for messages and comparisons.
func tokenNames(ts []infertrail.Token) []string {
	var out []string
	for _, tok := range ts {
		out = append(out, tok.Name)
	}
	return out
}

func testTokensAddAndLookup(t *testing.T, s infertrail.Store) {
	ctx := t.Context()
	if ts, err := s.Tokens(ctx); err != nil || len(ts) != 0 {
		t.Errorf("Tokens of an empty store = %v, %v; want none, nil", tokenNames(ts), err)
	}
	plain := testToken(1)
	full := testToken(2)
	full.Name, full.Tenant = "CI ingest ü✓, \"quoted\"", "tenant-ü✓"
	full.Roles = []infertrail.Role{infertrail.RoleInvestigator, infertrail.RoleErase}
	full.RateLimit, full.Created, full.Expires = 0.1, 1_767_225_600_123_456_789, 1_798_761_600_987_654_321
	all := testToken(3)
	all.Tenant = infertrail.AllTenants
	all.Roles = []infertrail.Role{infertrail.RoleMonitor, infertrail.RoleAdmin, infertrail.RoleMonitor}
	all.RateLimit, all.CreatedBy = 2500, ""
	expired := testToken(4)
	expired.Expires = 1 // long past: still stored and returned
	for _, tok := range []infertrail.Token{plain, full, all, expired} {
		addToken(t, s, tok)
	}
	// Roles come back sorted, without repeats.
	full.Roles = []infertrail.Role{infertrail.RoleErase, infertrail.RoleInvestigator}
	all.Roles = []infertrail.Role{infertrail.RoleAdmin, infertrail.RoleMonitor}
	for _, want := range []infertrail.Token{plain, full, all, expired} {
		got, err := s.TokenByHash(ctx, want.Hash)
		if err != nil {
			t.Errorf("TokenByHash(%s): %v", want.Name, err)
			continue
		}
		if !sameToken(got, want) {
			t.Errorf("TokenByHash(%s) =\n%+v, want\n%+v", want.Name, got, want)
		}
	}
	if _, err := s.TokenByHash(ctx, sha256.Sum256([]byte("itk_unknown"))); !errors.Is(err, infertrail.ErrNotFound) {
		t.Errorf("TokenByHash of an unknown hash: err = %v, want ErrNotFound", err)
	}
	if _, err := s.TokenByHash(ctx, [32]byte{}); !errors.Is(err, infertrail.ErrNotFound) {
		t.Errorf("TokenByHash of the zero hash: err = %v, want ErrNotFound", err)
	}
	ts, err := s.Tokens(ctx)
	if err != nil {
		t.Fatalf("Tokens: %v", err)
	}
	want := []infertrail.Token{plain, all, expired, full} // by Created
	if len(ts) != len(want) {
		t.Fatalf("Tokens = %q, want %q", tokenNames(ts), tokenNames(want))
	}
	for i := range want {
		if !sameToken(ts[i], want[i]) {
			t.Errorf("Tokens()[%d] =\n%+v, want\n%+v", i, ts[i], want[i])
		}
	}
}

func testTokensConflict(t *testing.T, s infertrail.Store) {
	ctx := t.Context()
	first := testToken(1)
	addToken(t, s, first)
	sameID := testToken(2)
	sameID.ID = first.ID
	sameHash := testToken(3)
	sameHash.Hash = first.Hash
	for _, tc := range []struct {
		name string
		tok  infertrail.Token
	}{
		{"same token", first},
		{"same id", sameID},
		{"same hash", sameHash},
	} {
		if err := s.AddToken(ctx, tc.tok); !errors.Is(err, infertrail.ErrConflict) {
			t.Errorf("AddToken of a token with the %s: err = %v, want ErrConflict", tc.name, err)
		}
	}
	ts, err := s.Tokens(ctx)
	if err != nil || len(ts) != 1 || !sameToken(ts[0], first) {
		t.Errorf("Tokens after conflicts = %q, %v; want only %q, unchanged", tokenNames(ts), err, first.Name)
	}
	if _, err := s.TokenByHash(ctx, sameID.Hash); !errors.Is(err, infertrail.ErrNotFound) {
		t.Errorf("TokenByHash of a token refused for its id: err = %v, want ErrNotFound", err)
	}
}

func testTokensInvalid(t *testing.T, s infertrail.Store) {
	ctx := t.Context()
	for _, tc := range []struct {
		name   string
		change func(*infertrail.Token)
	}{
		{"zero id", func(tok *infertrail.Token) { tok.ID = infertrail.UUID{} }},
		{"no name", func(tok *infertrail.Token) { tok.Name = "" }},
		{"no tenant", func(tok *infertrail.Token) { tok.Tenant = "" }},
		{"nil roles", func(tok *infertrail.Token) { tok.Roles = nil }},
		{"empty roles", func(tok *infertrail.Token) { tok.Roles = []infertrail.Role{} }},
		{"unknown role", func(tok *infertrail.Token) { tok.Roles = []infertrail.Role{infertrail.RoleAuditor, "root"} }},
		{"empty role", func(tok *infertrail.Token) { tok.Roles = []infertrail.Role{""} }},
		{"roles in one string", func(tok *infertrail.Token) { tok.Roles = []infertrail.Role{"auditor,admin"} }},
		{"zero hash", func(tok *infertrail.Token) { tok.Hash = [32]byte{} }},
		{"negative rate limit", func(tok *infertrail.Token) { tok.RateLimit = -1 }},
		{"NaN rate limit", func(tok *infertrail.Token) { tok.RateLimit = math.NaN() }},
		{"infinite rate limit", func(tok *infertrail.Token) { tok.RateLimit = math.Inf(1) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok := testToken(1)
			tc.change(&tok)
			if err := s.AddToken(ctx, tok); !errors.Is(err, infertrail.ErrInvalid) {
				t.Errorf("AddToken: err = %v, want ErrInvalid", err)
			}
			if tok.Hash != ([32]byte{}) {
				if got, err := s.TokenByHash(ctx, tok.Hash); !errors.Is(err, infertrail.ErrNotFound) {
					t.Errorf("TokenByHash of the refused token = %+v, %v; want ErrNotFound", got, err)
				}
			}
		})
	}
	if ts, err := s.Tokens(ctx); err != nil || len(ts) != 0 {
		t.Errorf("Tokens after invalid adds = %q, %v; want none", tokenNames(ts), err)
	}
	// The refusals left the id and hash free.
	addToken(t, s, testToken(1))
}

func testTokensRevoke(t *testing.T, s infertrail.Store) {
	ctx := t.Context()
	victim, other := testToken(1), testToken(2)
	victim.Expires = 5000
	addToken(t, s, victim)
	addToken(t, s, other)
	const at = 1_767_225_600_000_000_001
	if err := s.RevokeToken(ctx, victim.ID, "token:admin-2", 0); !errors.Is(err, infertrail.ErrInvalid) {
		t.Errorf("RevokeToken at time 0: err = %v, want ErrInvalid", err)
	}
	if err := s.RevokeToken(ctx, victim.ID, "token:admin-2", at); err != nil {
		t.Fatalf("RevokeToken: %v", err)
	}
	want := victim
	want.RevokedBy, want.Revoked = "token:admin-2", at
	got, err := s.TokenByHash(ctx, victim.Hash)
	if err != nil || !sameToken(got, want) {
		t.Errorf("TokenByHash after RevokeToken =\n%+v, %v; want\n%+v", got, err, want)
	}
	if got.Valid(2000) {
		t.Errorf("revoked token is Valid")
	}
	if err := s.RevokeToken(ctx, victim.ID, "token:admin-3", at+1); !errors.Is(err, infertrail.ErrNotFound) {
		t.Errorf("second RevokeToken: err = %v, want ErrNotFound", err)
	}
	if got, _ := s.TokenByHash(ctx, victim.Hash); !sameToken(got, want) {
		t.Errorf("second RevokeToken changed the token to\n%+v, want\n%+v", got, want)
	}
	if err := s.RevokeToken(ctx, testToken(9).ID, "token:admin-2", at); !errors.Is(err, infertrail.ErrNotFound) {
		t.Errorf("RevokeToken of an unknown id: err = %v, want ErrNotFound", err)
	}
	if got, err := s.TokenByHash(ctx, other.Hash); err != nil || !sameToken(got, other) {
		t.Errorf("other token after RevokeToken = %+v, %v; want unchanged", got, err)
	}
	// Revoked tokens stay listed.
	if ts, err := s.Tokens(ctx); err != nil || len(ts) != 2 || !sameToken(ts[0], want) || !sameToken(ts[1], other) {
		t.Errorf("Tokens after RevokeToken = %+v, %v", ts, err)
	}
}

func testTokensOrder(t *testing.T, s infertrail.Store) {
	ctx := t.Context()
	// Added out of order; two created at once, ordered by id.
	var toks []infertrail.Token
	for _, c := range []struct {
		n       int
		created int64
	}{{1, 300}, {2, 100}, {5, 200}, {4, 200}, {3, 50}} {
		tok := testToken(c.n)
		tok.Created = c.created
		toks = append(toks, tok)
		addToken(t, s, tok)
	}
	if err := s.RevokeToken(ctx, toks[2].ID, "token:admin", 400); err != nil {
		t.Fatal(err)
	}
	ts, err := s.Tokens(ctx)
	if want := []string{"token 3", "token 2", "token 4", "token 5", "token 1"}; err != nil || !slices.Equal(tokenNames(ts), want) {
		t.Fatalf("Tokens = %q, %v; want %q", tokenNames(ts), err, want)
	}
	if ts[3].Revoked != 400 || ts[3].RevokedBy != "token:admin" {
		t.Errorf("Tokens()[3] = %+v, want revoked at 400 by token:admin", ts[3])
	}
}

func testTokensConcurrent(t *testing.T, s infertrail.Store) {
	ctx := t.Context()
	const workers, each = 8, 10
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				tok := testToken(w*each + i)
				if err := s.AddToken(ctx, tok); err != nil {
					t.Errorf("AddToken(%s): %v", tok.Name, err)
				}
			}
		})
	}
	wg.Wait()
	ts, err := s.Tokens(ctx)
	if err != nil || len(ts) != workers*each {
		t.Fatalf("Tokens after concurrent adds = %d tokens, %v; want %d", len(ts), err, workers*each)
	}
	for n := range workers * each {
		want := testToken(n)
		if !sameToken(ts[n], want) {
			t.Errorf("Tokens()[%d] = %+v, want %+v", n, ts[n], want)
		}
		if got, err := s.TokenByHash(ctx, want.Hash); err != nil || got.ID != want.ID {
			t.Errorf("TokenByHash(%s) = %v, %v", want.Name, got.ID, err)
		}
	}
}
