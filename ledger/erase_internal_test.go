package ledger

import (
	"context"
	"encoding/json"
	"errors"
	"testing"

	"github.com/infertrail/infertrail"
	"github.com/infertrail/infertrail/ledger/ledgertest"
	"github.com/infertrail/infertrail/store/sqlite"
)

// TestEraseKeyCreatedDuringSearch creates a key in the erased scope after
// the erasure searched for keys without the lock: the erasure still finds
// it under the lock.
func TestEraseKeyCreatedDuringSearch(t *testing.T) {
	ctx := t.Context()
	db, err := sqlite.Open(ctx, t.TempDir()+"/log.db", sqlite.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	skey, _, _ := GenerateKey("test.example/erase")
	s, v, _, _ := KeyPair(skey)
	l, err := Open(ctx, Config{Store: db, Signer: s, Verifier: v, Origin: "test.example/erase", Secret: make([]byte, 32), KEK: ledgertest.NewKEK(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	rec := func(prompt string) *infertrail.Record {
		return &infertrail.Record{Kind: infertrail.KindInference, Tenant: "acme", SessionID: "s1", Source: "test",
			Content: map[string]json.RawMessage{"prompt": infertrail.AppendString(nil, prompt)}}
	}
	if _, err := l.Record(ctx, rec("before")); err != nil {
		t.Fatal(err)
	}
	var late []int64
	testHookAfterEraseScan = func() {
		l.keys.forget(nil) // a new key for the scope, as another node would make
		late, err = l.Record(context.Background(), rec("during"))
	}
	defer func() { testHookAfterEraseScan = nil }()
	out, err2 := l.Erase(ctx, Erasure{Scope: "tenant=acme,session=s1", Reason: "test"})
	if err2 != nil || err != nil {
		t.Fatal(err2, err)
	}
	if out.Keys != 2 {
		t.Errorf("erased %d keys, want 2 (one found before the search, one after)", out.Keys)
	}
	e, _ := l.Entry(ctx, late[0])
	var ee *infertrail.ErasedError
	if _, err := l.Content(ctx, &e); !errors.As(err, &ee) {
		t.Errorf("content written during the search: %v, want erased", err)
	}
}
