package ledger_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/infertrail/infertrail"
	"github.com/infertrail/infertrail/keys"
	"github.com/infertrail/infertrail/ledger"
	"github.com/infertrail/infertrail/store/sqlite"
)

// sessionRecord is an ingest record of tenant acme (or other) in a session,
// with a distinctive prompt.
func sessionRecord(tb testing.TB, tenant, session, prompt string) ledger.Submission {
	tb.Helper()
	src := fmt.Sprintf(`{"kind":"inference","tenant":%q,"session_id":%q,"actor":{"id":"agent:a"},
		"attributes":{"gen_ai.request.model":"m"},"content":{"prompt":%q,"response":"ok"}}`, tenant, session, prompt)
	return parse(tb, src)
}

// blobsOfSeq returns the stored (sealed) bytes of a record's blobs.
func storedBlobs(tb testing.TB, l *testLog, seq int64) [][]byte {
	tb.Helper()
	e, err := l.Entry(tb.Context(), seq)
	if err != nil {
		tb.Fatal(err)
	}
	bs := blobsOf(tb, l.db, &e)
	var out [][]byte
	for _, b := range bs {
		out = append(out, append([]byte(nil), b.Data...))
	}
	return out
}

// fileHas reports whether the database file or its WAL contains b.
func fileHas(tb testing.TB, path string, b []byte) bool {
	tb.Helper()
	for _, p := range []string{path, path + "-wal"} {
		data, err := os.ReadFile(p)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			tb.Fatal(err)
		}
		if bytes.Contains(data, b) {
			return true
		}
	}
	return false
}

func TestEraseScope(t *testing.T) {
	ctx := t.Context()
	l := newTestLog(t, sqlite.Config{}, nil)
	res := mustAppend(t, l.Log, []ledger.Submission{
		sessionRecord(t, "acme", "s1", "secret plan of s1, part one"),
		sessionRecord(t, "acme", "s2", "harmless question of s2"),
		sessionRecord(t, "acme", "s1", "secret plan of s1, part two"),
		sessionRecord(t, "other", "s1", "another tenant's s1"),
	})
	// Content is encrypted at rest: the prompt is nowhere in the file.
	if fileHas(t, l.path, []byte("secret plan")) {
		t.Fatal("plain content found in the database file")
	}
	victim := append(storedBlobs(t, l, res[0].Seq), storedBlobs(t, l, res[2].Seq)...)
	kept := append(storedBlobs(t, l, res[1].Seq), storedBlobs(t, l, res[3].Seq)...)
	var victimKey []byte
	if err := rawDB(t, l.path).QueryRow(`SELECT wrapped FROM data_keys WHERE scope = 'tenant=acme,session=s1'`).Scan(&victimKey); err != nil {
		t.Fatal(err)
	}
	for _, b := range append(victim, victimKey) {
		if !fileHas(t, l.path, b) {
			t.Fatal("test setup: a sealed blob or wrapped key is not in the file")
		}
	}

	who := infertrail.Actor{ID: "user:dpo", Type: "user"}
	out, err := l.Erase(ctx, ledger.Erasure{Scope: "tenant=acme,session=s1", Reason: "GDPR Art. 17 request 42", Authority: "DPO ticket 7", Actor: who})
	if err != nil {
		t.Fatal(err)
	}
	if out.Keys != 1 || out.Blobs == 0 || out.Seq != 4 {
		t.Errorf("Erase = %+v, want 1 key, some blobs, record 4", out)
	}
	// The erasure record says who, what, why.
	e, err := l.Entry(ctx, out.Seq)
	if err != nil {
		t.Fatal(err)
	}
	r, err := infertrail.ParseLeaf(e.Leaf)
	if err != nil {
		t.Fatal(err)
	}
	if r.Kind != infertrail.KindErasure || r.Actor.ID != "user:dpo" || r.Tenant != "acme" ||
		string(r.Attributes["erasure.scope"]) != `"tenant=acme,session=s1"` ||
		string(r.Attributes["erasure.reason"]) != `"GDPR Art. 17 request 42"` ||
		string(r.Attributes["erasure.authority"]) != `"DPO ticket 7"` {
		t.Errorf("erasure record = %s", e.Leaf)
	}

	// Gone from the file; the other scopes are intact.
	for _, b := range append(victim, victimKey) {
		if fileHas(t, l.path, b) {
			t.Errorf("erased bytes still in the database file or WAL")
		}
	}
	for _, b := range kept {
		if !fileHas(t, l.path, b) {
			t.Errorf("content of another scope is gone")
		}
	}
	for i, want := range []string{"", `"harmless question of s2"`, "", `"another tenant's s1"`} {
		e, _ := l.Entry(ctx, res[i].Seq)
		c, err := l.Content(ctx, &e)
		var ee *infertrail.ErasedError
		if want == "" {
			if !errors.As(err, &ee) || ee.ErasedBy != out.Seq || len(c) != 0 {
				t.Errorf("record %d: content %v, %v; want erased by %d", i, c, err, out.Seq)
			}
			continue
		}
		if err != nil || string(c["prompt"]) != want {
			t.Errorf("record %d: content %s, %v; want %s", i, c["prompt"], err, want)
		}
	}

	// New content in the scope gets a new key and reads back.
	again := mustAppend(t, l.Log, []ledger.Submission{sessionRecord(t, "acme", "s1", "after the erasure")})
	e, _ = l.Entry(ctx, again[0].Seq)
	if c, err := l.Content(ctx, &e); err != nil || string(c["prompt"]) != `"after the erasure"` {
		t.Errorf("content after erasure = %s, %v", c["prompt"], err)
	}

	// The log verifies and says what was erased.
	rep, err := ledger.VerifyStore(ctx, l.db, testOrigin, l.verif, l.kek, nil)
	if err != nil {
		t.Fatalf("verify after erasure: %v", err)
	}
	if rep.ErasedBy[out.Seq] != 2 || rep.Erased() != 2 || rep.Records != 6 {
		t.Errorf("report %+v, want 2 records erased by %d", rep, out.Seq)
	}
	// Without the KEK, live content is not checked, and erasure still reported.
	rep, err = ledger.VerifyStore(ctx, l.db, testOrigin, l.verif, nil, nil)
	if err != nil || rep.Sealed != 3 || rep.ErasedBy[out.Seq] != 2 {
		t.Errorf("verify without KEK: %+v, %v; want 3 sealed, 2 erased", rep, err)
	}
}

func TestEraseRefused(t *testing.T) {
	ctx := t.Context()
	l := newTestLog(t, sqlite.Config{}, nil)
	mustAppend(t, l.Log, []ledger.Submission{sessionRecord(t, "acme", "s1", "p1"), sessionRecord(t, "acme", "s2", "p2")})
	size := treeSize(t, l.db)
	for _, tc := range []struct {
		name string
		e    ledger.Erasure
		want error
		msg  string
	}{
		{"no reason", ledger.Erasure{Scope: "tenant=acme,session=s1"}, infertrail.ErrInvalid, "reason"},
		{"no tenant", ledger.Erasure{Scope: "session=s1", Reason: "x"}, infertrail.ErrInvalid, "tenant"},
		{"unknown name", ledger.Erasure{Scope: "tenant=acme,color=red", Reason: "x"}, infertrail.ErrInvalid, "color"},
		{"field not keyed", ledger.Erasure{Scope: "tenant=acme,user=bob", Reason: "x"}, infertrail.ErrInvalid, "not by user"},
		{"reason too long", ledger.Erasure{Scope: "tenant=acme", Reason: strings.Repeat("x", 2000)}, infertrail.ErrTooLarge, "reason"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := l.Erase(ctx, tc.e)
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("Erase: %v; want %v naming %q", err, tc.want, tc.msg)
			}
		})
	}
	if n := treeSize(t, l.db); n != size {
		t.Errorf("refused erasures appended %d records", n-size)
	}
}

func TestLegalHold(t *testing.T) {
	ctx := t.Context()
	l := newTestLog(t, sqlite.Config{}, nil)
	res := mustAppend(t, l.Log, []ledger.Submission{sessionRecord(t, "acme", "s1", "p1"), sessionRecord(t, "acme", "s2", "p2")})
	legal := infertrail.Actor{ID: "user:legal"}
	h, err := l.PlaceHold(ctx, "tenant=acme,session=s1", "litigation 2026-17", legal)
	if err != nil {
		t.Fatal(err)
	}
	size := treeSize(t, l.db)
	for _, scope := range []infertrail.Scope{"tenant=acme,session=s1", "tenant=acme"} {
		_, err := l.Erase(ctx, ledger.Erasure{Scope: scope, Reason: "request", Actor: legal})
		if !errors.Is(err, infertrail.ErrHeld) || !strings.Contains(err.Error(), h.ID.String()) || !strings.Contains(err.Error(), "litigation 2026-17") {
			t.Errorf("Erase %s under hold: %v; want ErrHeld naming the hold", scope, err)
		}
	}
	if n := treeSize(t, l.db); n != size {
		t.Errorf("refused erasures appended %d records", n-size)
	}
	e, _ := l.Entry(ctx, res[0].Seq)
	if _, err := l.Content(ctx, &e); err != nil {
		t.Errorf("held content after refused erasures: %v", err)
	}
	// Another session is not held.
	if _, err := l.Erase(ctx, ledger.Erasure{Scope: "tenant=acme,session=s2", Reason: "request"}); err != nil {
		t.Errorf("Erase of an unheld session: %v", err)
	}
	if err := l.ReleaseHold(ctx, "other", h.ID, "", legal); !errors.Is(err, infertrail.ErrNotFound) {
		t.Errorf("ReleaseHold from another tenant: %v, want ErrNotFound", err)
	}
	if err := l.ReleaseHold(ctx, "acme", h.ID, "case closed", legal); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Erase(ctx, ledger.Erasure{Scope: "tenant=acme,session=s1", Reason: "request"}); err != nil {
		t.Errorf("Erase after release: %v", err)
	}
	// Placing and releasing were recorded.
	var actions []string
	l.db.Entries(ctx, 0, treeSize(t, l.db), func(e *infertrail.Entry) error {
		r, _ := infertrail.ParseLeaf(e.Leaf)
		if r.Kind == infertrail.KindAccess {
			var a string
			json.Unmarshal(r.Attributes["access.action"], &a)
			actions = append(actions, a)
		}
		return nil
	})
	if strings.Join(actions, ",") != "hold.add,hold.release" {
		t.Errorf("access records %v, want hold.add and hold.release", actions)
	}
	if _, err := ledger.VerifyStore(ctx, l.db, testOrigin, l.verif, l.kek, nil); err != nil {
		t.Error(err)
	}
}

func TestRetention(t *testing.T) {
	ctx := t.Context()
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	l := newTestLog(t, sqlite.Config{}, nil)
	old := func(tenant, session string, kind infertrail.Kind, age time.Duration) ledger.Submission {
		s := sessionRecord(t, tenant, session, "content of "+session)
		s.Record.Kind = kind
		s.Record.Time = now.Add(-age)
		s.Raw = nil
		if kind == infertrail.KindToolCall {
			s.Record.Attributes = nil
		}
		return s
	}
	day := 24 * time.Hour
	res := mustAppend(t, l.Log, []ledger.Submission{
		old("acme", "s1", infertrail.KindInference, 200*day),   // 0: past 180 days: erased
		old("acme", "s2", infertrail.KindInference, 100*day),   // 1: kept
		old("acme", "s3", infertrail.KindToolCall, 40*day),     // 2: tool calls of acme: 30 days: erased
		old("beta", "s1", infertrail.KindInference, 200*day),   // 3: beta keeps everything
		old("acme", "held", infertrail.KindInference, 300*day), // 4: held
	})
	if _, err := l.PlaceHold(ctx, "tenant=acme,session=held", "audit", infertrail.Actor{ID: "user:legal"}); err != nil {
		t.Fatal(err)
	}
	rules := []ledger.RetentionRule{
		{Content: 180 * day},
		{Tenant: "acme", Kind: infertrail.KindToolCall, Content: 30 * day},
		{Tenant: "beta"},
	}
	var calls int
	out, err := l.Expire(ctx, rules, now, func(ledger.Expired) { calls++ })
	if err != nil {
		t.Fatal(err)
	}
	if out.Erasures != 2 || out.Keys != 2 || out.Held != 1 || calls != 2 {
		t.Errorf("Expire = %+v (%d progress calls); want 2 erasures of 2 keys, 1 held", out, calls)
	}
	for i, erased := range []bool{true, false, true, false, false} {
		e, _ := l.Entry(ctx, res[i].Seq)
		_, err := l.Content(ctx, &e)
		var ee *infertrail.ErasedError
		if got := errors.As(err, &ee); got != erased {
			t.Errorf("record %d: erased %v (%v), want %v", i, got, err, erased)
		}
	}
	// A second run finds nothing more.
	if out, err := l.Expire(ctx, rules, now, nil); err != nil || out.Erasures != 0 {
		t.Errorf("second Expire = %+v, %v", out, err)
	}
	rep, err := ledger.VerifyStore(ctx, l.db, testOrigin, l.verif, l.kek, nil)
	if err != nil || rep.Erased() != 2 {
		t.Errorf("verify: %+v, %v", rep, err)
	}
	for _, bad := range [][]ledger.RetentionRule{
		{{Content: time.Hour}},
		{{Kind: "nonsense", Content: 48 * time.Hour}},
		{{Tenant: "a", Content: 48 * time.Hour}, {Tenant: "a", Content: 72 * time.Hour}},
	} {
		if _, err := l.Expire(ctx, bad, now, nil); !errors.Is(err, infertrail.ErrInvalid) {
			t.Errorf("Expire(%+v): %v, want ErrInvalid", bad, err)
		}
	}
}

func TestRotateKEK(t *testing.T) {
	ctx := t.Context()
	l := newTestLog(t, sqlite.Config{}, nil)
	ring := l.kek.(*keys.Keyring)
	first := ring.Current()
	res := mustAppend(t, l.Log, []ledger.Submission{sessionRecord(t, "acme", "s1", "before rotation")})

	// Rotate while the log keeps writing and reading.
	second, err := ring.Rotate()
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				done <- nil
				return
			default:
			}
			sub := sessionRecord(t, "acme", fmt.Sprintf("busy-%d", i), "during rotation")
			if _, err := l.Append(ctx, []ledger.Submission{sub}); err != nil {
				done <- err
				return
			}
			e, _ := l.Entry(ctx, res[0].Seq)
			if _, err := l.Content(ctx, &e); err != nil {
				done <- err
				return
			}
		}
	}()
	time.Sleep(20 * time.Millisecond)
	rw, err := ledger.RewrapKeys(ctx, l.db, l.kek, nil)
	close(stop)
	if err := <-done; err != nil {
		t.Fatalf("writing and reading during rotation: %v", err)
	}
	if err != nil || rw.Keys == 0 {
		t.Fatalf("RewrapKeys = %+v, %v", rw, err)
	}
	if n, err := ledger.LiveKeysWrappedBy(ctx, l.db, first); err != nil || n != 0 {
		t.Fatalf("%d keys still wrapped by %s (%v)", n, first, err)
	}
	if err := ring.Remove(first); err != nil {
		t.Fatal(err)
	}
	// A fresh reader with only the new KEK reads old content.
	cr := ledger.NewContentReader(l.db, ring)
	e, _ := l.Entry(ctx, res[0].Seq)
	if c, err := cr.Read(ctx, &e); err != nil || string(c["prompt"]) != `"before rotation"` {
		t.Errorf("old content after rotation: %s, %v", c["prompt"], err)
	}
	if ring.Current() != second {
		t.Errorf("current KEK %s, want %s", ring.Current(), second)
	}
	if _, err := ledger.VerifyStore(ctx, l.db, testOrigin, l.verif, ring, nil); err != nil {
		t.Error(err)
	}
}

func TestEraseTenantScope(t *testing.T) {
	ctx := t.Context()
	l := newTestLog(t, sqlite.Config{}, func(c *ledger.Config) { c.ScopeFields = []string{"tenant"} })
	res := mustAppend(t, l.Log, []ledger.Submission{
		sessionRecord(t, "acme", "s1", "same prompt"), sessionRecord(t, "acme", "s2", "same prompt"), sessionRecord(t, "beta", "s1", "same prompt"),
	})
	if _, err := l.Erase(ctx, ledger.Erasure{Scope: "tenant=acme,session=s1", Reason: "x"}); !errors.Is(err, infertrail.ErrInvalid) || !strings.Contains(err.Error(), "tenant alone") {
		t.Errorf("erase of a session when content is keyed by tenant: %v", err)
	}
	out, err := l.Erase(ctx, ledger.Erasure{Scope: "tenant=acme", Reason: "tenant offboarded"})
	if err != nil || out.Keys != 1 {
		t.Fatalf("Erase = %+v, %v; want one key (the tenant's)", out, err)
	}
	for i, erased := range []bool{true, true, false} {
		e, _ := l.Entry(ctx, res[i].Seq)
		_, err := l.Content(ctx, &e)
		var ee *infertrail.ErasedError
		if errors.As(err, &ee) != erased {
			t.Errorf("record %d: %v, erased should be %v", i, err, erased)
		}
	}
}

// TestCaptureMinimal commits content without storing it when the capture
// hook says so: verification counts it, reading shows no content.
func TestCaptureMinimal(t *testing.T) {
	ctx := t.Context()
	l := newTestLog(t, sqlite.Config{}, func(c *ledger.Config) {
		c.Capture = func(r *infertrail.Record) (bool, error) { return r.Tenant != "min", nil }
	})
	res := mustAppend(t, l.Log, []ledger.Submission{sessionRecord(t, "min", "s1", "not kept"), sessionRecord(t, "acme", "s1", "kept")})
	e, _ := l.Entry(ctx, res[0].Seq)
	r, _ := infertrail.ParseLeaf(e.Leaf)
	if c, err := l.Content(ctx, &e); err != nil || len(c) != 0 || len(r.Commitments) != 2 {
		t.Errorf("minimal record: content %v, %v; %d commitments", c, err, len(r.Commitments))
	}
	if fileHas(t, l.path, []byte("not kept")) {
		t.Error("minimal content stored")
	}
	rep, err := ledger.VerifyStore(ctx, l.db, testOrigin, l.verif, l.kek, nil)
	if err != nil || rep.Omitted != 1 {
		t.Errorf("verify: %+v, %v; want 1 record committed, not stored", rep, err)
	}
}

// TestReadParts: ReadParts gives each blob of the entries' fields once,
// decoded, the parts ReadMany joins into each field; it leaves out the
// blobs skip reports and those of fields whose key was erased.
func TestReadParts(t *testing.T) {
	ctx := t.Context()
	l := newTestLog(t, sqlite.Config{}, nil)
	history := `[{"role":"system","content":"be careful"},{"role":"user","content":"pay invoice 7"}]`
	res := mustAppend(t, l.Log, []ledger.Submission{
		parse(t, `{"kind":"inference","tenant":"acme","session_id":"s1","actor":{"id":"agent:a"},"content":{"messages":`+history+`,"response":"done"}}`),
		parse(t, `{"kind":"inference","tenant":"acme","session_id":"s1","actor":{"id":"agent:a"},"content":{"messages":`+
			strings.TrimSuffix(history, "]")+`,{"role":"user","content":"and 8"}],"response":"done too"}}`),
		sessionRecord(t, "acme", "s2", "to be erased"),
	})
	var es []infertrail.Entry
	for _, r := range res {
		e, err := l.Entry(ctx, r.Seq)
		if err != nil {
			t.Fatal(err)
		}
		es = append(es, e)
	}
	cr := l.ContentReader()
	values, _, err := cr.ReadMany(ctx, es)
	if err != nil {
		t.Fatal(err)
	}
	none := func(infertrail.BlobID) bool { return false }
	parts, err := cr.ReadParts(ctx, es, none)
	if err != nil {
		t.Fatal(err)
	}
	// sys, user 7, done, user 8, done too; prompt and ok of s2.
	if len(parts) != 7 {
		t.Errorf("%d parts, want 7 distinct blobs", len(parts))
	}
	for i, e := range es {
		for _, ref := range e.Content {
			var ps [][]byte
			for _, id := range ref.Blobs {
				ps = append(ps, parts[id])
			}
			got := ps[0]
			if ref.Array {
				got = infertrail.JoinArray(nil, ps)
			}
			if want := values[i][ref.Field]; !bytes.Equal(got, want) {
				t.Errorf("record %d field %s: parts give %s, ReadMany %s", i, ref.Field, got, want)
			}
		}
	}
	// What the caller knows already is not read.
	first := map[infertrail.BlobID]bool{}
	for _, ref := range es[0].Content {
		for _, id := range ref.Blobs {
			first[id] = true
		}
	}
	parts, err = cr.ReadParts(ctx, es[1:2], func(id infertrail.BlobID) bool { return first[id] })
	if err != nil {
		t.Fatal(err)
	}
	if len(parts) != 2 {
		t.Errorf("with the first record's blobs known, %d parts read, want 2 (user 8, done too)", len(parts))
	}
	for id := range parts {
		if first[id] {
			t.Errorf("blob %x read though known", id[:8])
		}
	}
	// An erased field gives nothing, and no error.
	if _, err := l.Erase(ctx, ledger.Erasure{Scope: "tenant=acme,session=s2", Reason: "test", Actor: infertrail.Actor{ID: "user:dpo"}}); err != nil {
		t.Fatal(err)
	}
	parts, err = cr.ReadParts(ctx, es, none)
	if err != nil {
		t.Fatal(err)
	}
	if len(parts) != 5 {
		t.Errorf("after the erasure of s2, %d parts, want 5", len(parts))
	}
	for _, ref := range es[2].Content {
		for _, id := range ref.Blobs {
			if _, ok := parts[id]; ok {
				t.Errorf("erased blob %x read", id[:8])
			}
		}
	}
}
