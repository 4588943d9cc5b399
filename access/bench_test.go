package access_test

import (
	"path/filepath"
	"testing"

	"github.com/infertrail/infertrail"
	"github.com/infertrail/infertrail/access"
	"github.com/infertrail/infertrail/store/sqlite"
)

// BenchmarkAuthenticate measures what authentication adds to a request:
// one token lookup in a real SQLite store (no cache, so that a revocation
// applies at once) and the rate-limit charge. The store holds 1,000
// tokens.
func BenchmarkAuthenticate(b *testing.B) {
	db, err := sqlite.Open(b.Context(), filepath.Join(b.TempDir(), "t.db"), sqlite.Config{})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	var secret string
	for i := range 1000 {
		s, hash := access.NewToken()
		if err := db.AddToken(b.Context(), infertrail.Token{ID: infertrail.NewUUID(), Name: "t", Tenant: "acme",
			Roles: []infertrail.Role{infertrail.RoleIngest}, Hash: hash, Created: int64(i + 1)}); err != nil {
			b.Fatal(err)
		}
		secret = s
	}
	a, err := access.New(access.Config{Tokens: db, RateLimit: -1})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := a.Authenticate(b.Context(), secret); err != nil {
				b.Fatal(err)
			}
		}
	})
}
