package export_test

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/infertrail/infertrail"
	"github.com/infertrail/infertrail/ledger"
	"github.com/infertrail/infertrail/ledger/ledgertest"
	"github.com/infertrail/infertrail/store/sqlite"
)

const rptOrigin = "example.com/infertrail/report-test"

// rptLog is a ledger.Log over a real SQLite store in a temporary folder,
// whose background signer is slowed down so that tests decide which
// checkpoints exist.
type rptLog struct {
	*ledger.Log
	db       *sqlite.DB
	path     string
	signer   note.Signer
	verifier note.Verifier
}

func newRptLog(tb testing.TB) *rptLog {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "log.db")
	return openRptLog(tb, path, nil)
}

// openRptLog opens the log stored at path, with the keys of prev when it
// is not nil (a restart) or new keys.
func openRptLog(tb testing.TB, path string, prev *rptLog) *rptLog {
	tb.Helper()
	ctx := context.Background()
	db, err := sqlite.Open(ctx, path, sqlite.Config{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	var signer note.Signer
	var verifier note.Verifier
	var kek = ledgertest.NewKEK(tb)
	if prev != nil {
		signer, verifier = prev.signer, prev.verifier
	} else {
		skey, _, err := ledger.GenerateKey(rptOrigin)
		if err != nil {
			tb.Fatal(err)
		}
		if signer, verifier, _, err = ledger.KeyPair(skey); err != nil {
			tb.Fatal(err)
		}
	}
	secret := make([]byte, 32)
	rand.Read(secret)
	l, err := ledger.Open(ctx, ledger.Config{Store: db, Signer: signer, Verifier: verifier, Origin: rptOrigin,
		Secret: secret, KEK: kek, CheckpointInterval: time.Hour})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { l.Close() })
	return &rptLog{Log: l, db: db, path: path, signer: signer, verifier: verifier}
}

// rec builds a record received at recv.
type rec struct {
	kind     infertrail.Kind
	tenant   string
	recv     time.Time
	observed time.Time // zero: recv
	actor    infertrail.Actor
	attrs    map[string]any
	content  map[string]any
	links    []infertrail.Link
}

func (r rec) record(tb testing.TB) *infertrail.Record {
	tb.Helper()
	out := &infertrail.Record{Kind: r.kind, Tenant: r.tenant, ReceivedTime: r.recv, Time: r.observed, Actor: r.actor,
		Source: "ingest", Links: r.links, Attributes: map[string]json.RawMessage{}, Content: map[string]json.RawMessage{}}
	if out.Time.IsZero() {
		out.Time = r.recv
	}
	for k, v := range r.attrs {
		out.Attributes[k] = canonical(tb, v)
	}
	for k, v := range r.content {
		out.Content[k] = canonical(tb, v)
	}
	return out
}

func canonical(tb testing.TB, v any) json.RawMessage {
	tb.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		tb.Fatal(err)
	}
	c, err := infertrail.Canonicalize(b)
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

// add appends records and returns their sequence numbers.
func (l *rptLog) add(tb testing.TB, recs ...rec) []int64 {
	tb.Helper()
	rs := make([]*infertrail.Record, len(recs))
	for i, r := range recs {
		rs[i] = r.record(tb)
	}
	seqs, err := l.Record(context.Background(), rs...)
	if err != nil {
		tb.Fatal(err)
	}
	return seqs
}

func (l *rptLog) sign(tb testing.TB) ledger.Checkpoint {
	tb.Helper()
	cp, err := l.SignCheckpoint(context.Background())
	if err != nil {
		tb.Fatal(err)
	}
	return cp
}

// inference returns a complete inference record of tenant received at t.
func inference(tenant string, t time.Time) rec {
	return rec{kind: infertrail.KindInference, tenant: tenant, recv: t,
		actor: infertrail.Actor{ID: "agent:payments-bot", CredentialFingerprint: "hmac-sha256:aa"},
		attrs: map[string]any{"gen_ai.request.model": "gpt-4o", "gen_ai.response.model": "gpt-4o-2024-08-06", "gen_ai.operation.name": "chat"},
		content: map[string]any{
			"gen_ai.input.messages":  []any{map[string]any{"role": "user", "content": "pay invoice 7"}},
			"gen_ai.output.messages": []any{map[string]any{"role": "assistant", "content": "done"}},
		}}
}
