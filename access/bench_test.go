package access_test

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/infertrail/infertrail"
	"github.com/infertrail/infertrail/access"
	"github.com/infertrail/infertrail/store/sqlite"
)

// BenchmarkAuthenticate measures what authentication adds to a request:
// one token lookup in a real SQLite store (no cache, so that a revocation
// applies at once) and the rate-limit charge. The store holds 1,000
// tokens. "after-write" authenticates once after each write to the
// database, as a server that is recording does: SQLite then reads the
// pages it needs again. It times only the authentication.
//
//	go test ./access -run '^$' -bench Authenticate -benchtime 20000x -count 5
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
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := a.Authenticate(b.Context(), secret); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
	b.Run("after-write", func(b *testing.B) {
		var took time.Duration
		for i := range b.N {
			// A checkpoint row is the smallest write the store offers.
			if err := db.AddCheckpoint(b.Context(), infertrail.StoredCheckpoint{Size: int64(i + 1), Note: []byte("bench\n")}); err != nil {
				b.Fatal(err)
			}
			start := time.Now()
			if _, err := a.Authenticate(b.Context(), secret); err != nil {
				b.Fatal(err)
			}
			took += time.Since(start)
		}
		b.ReportMetric(float64(took.Nanoseconds())/float64(b.N), "ns/auth")
	})
}
