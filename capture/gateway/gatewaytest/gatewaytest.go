// Package gatewaytest runs a real trail (a ledger over SQLite in a
// temporary folder) for the gateways' tests and reads back what they
// recorded.
package gatewaytest

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/infertrail/infertrail"
	"github.com/infertrail/infertrail/ledger"
	"github.com/infertrail/infertrail/store/sqlite"
)

// Trail is a ledger over a SQLite store in a test's temporary folder.
type Trail struct {
	Log  *ledger.Log
	DB   *sqlite.DB
	Path string // the database file
}

// Secret is the server secret the trail's tests give the gateway.
var Secret = bytes.Repeat([]byte{0x5e}, 32)

// NewTrail opens a trail that is closed when the test ends.
func NewTrail(tb testing.TB) *Trail {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "trail.db")
	db, err := sqlite.Open(tb.Context(), path, sqlite.Config{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	const origin = "test.infertrail.example/gateway"
	skey, _, err := ledger.GenerateKey(origin)
	if err != nil {
		tb.Fatal(err)
	}
	signer, verif, _, err := ledger.KeyPair(skey)
	if err != nil {
		tb.Fatal(err)
	}
	lg, err := ledger.Open(tb.Context(), ledger.Config{
		Store: db, Signer: signer, Verifier: verif, Origin: origin,
		Secret: bytes.Repeat([]byte{7}, 32), CheckpointInterval: 50 * time.Millisecond,
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { lg.Close() })
	return &Trail{Log: lg, DB: db, Path: path}
}

// Record is a record read back from the trail, with its content.
type Record struct {
	*infertrail.Record
	Content map[string]json.RawMessage
}

// Attr returns attribute k decoded into a Go value (nil if absent).
func (r Record) Attr(k string) any {
	v, ok := r.Attributes[k]
	if !ok {
		return nil
	}
	var x any
	if err := json.Unmarshal(v, &x); err != nil {
		return nil
	}
	return x
}

// Records reads every record in the trail, in sequence order.
func (t *Trail) Records(tb testing.TB) []Record {
	tb.Helper()
	ctx := context.Background()
	size, err := t.Log.TreeSize(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	var out []Record
	for seq := range size {
		e, err := t.Log.Entry(ctx, seq)
		if err != nil {
			tb.Fatal(err)
		}
		r, err := infertrail.ParseLeaf(e.Leaf)
		if err != nil {
			tb.Fatalf("record %d: %v", seq, err)
		}
		c, err := ledger.ReadContent(ctx, t.DB, &e)
		if err != nil {
			tb.Fatalf("record %d content: %v", seq, err)
		}
		out = append(out, Record{Record: r, Content: c})
	}
	return out
}
