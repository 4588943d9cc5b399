package ledger_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/infertrail/infertrail"
	"github.com/infertrail/infertrail/ledger"
	"github.com/infertrail/infertrail/load"
	"github.com/infertrail/infertrail/redact"
	"github.com/infertrail/infertrail/store/sqlite"
)

func TestAppendDurable(t *testing.T) {
	l := newTestLog(t, sqlite.Config{}, nil)
	contents := []string{
		``,
		`{"gen_ai.input.messages": [ {"role": "user", "content": "hi"} ], "gen_ai.output.messages": [1.0, 2e3, "\u0041"]}`,
		`{"tool.arguments": {"b": 1, "a": [true, null]}}`,
		`{"tool.result": "` + strings.Repeat("long compressible text ", 40) + `"}`,
	}
	var srcs []string
	for i := range 20 {
		srcs = append(srcs, recordJSON(i, contents[i%len(contents)]))
	}
	subs := parseAll(t, srcs)
	res := mustAppend(t, l.Log, subs)

	// A second store on the same file, opened after Append returned, sees
	// every record: acknowledged means committed.
	other := openStore(t, l.path, sqlite.Config{})
	if n := treeSize(t, other); n != int64(len(srcs)) {
		t.Fatalf("tree size %d, want %d", n, len(srcs))
	}
	for i, r := range res {
		e, err := other.EntryByID(t.Context(), r.ID)
		if err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		if e.Seq != r.Seq || r.Duplicate || r.ID != subs[i].Record.ID {
			t.Errorf("record %d: result %+v, stored seq %d", i, r, e.Seq)
		}
		cr := ledger.NewContentReader(other, l.kek)
		if err := ledger.CheckEntry(t.Context(), cr, &e, blobsOf(t, other, &e)); err != nil {
			t.Errorf("record %d: %v", i, err)
		}
		got, err := cr.Read(t.Context(), &e)
		if err != nil {
			t.Fatal(err)
		}
		c := contents[i%len(contents)]
		if c == "" {
			if len(got) != 0 {
				t.Errorf("record %d: content %v, want none", i, got)
			}
			continue
		}
		canon, err := infertrail.Canonicalize([]byte(c))
		if err != nil {
			t.Fatal(err)
		}
		want := fields(t, canon)
		if len(got) != len(want) {
			t.Errorf("record %d: %d content fields, want %d", i, len(got), len(want))
		}
		for f, w := range want {
			if !bytes.Equal(got[f], w) {
				t.Errorf("record %d field %s: read %s, want %s", i, f, got[f], w)
			}
		}
	}
}

func TestAppendIdempotent(t *testing.T) {
	ctx := t.Context()
	l := newTestLog(t, sqlite.Config{}, nil)
	content := `{"msg": ["a", "b"]}`

	t.Run("retry across calls", func(t *testing.T) {
		srcs := []string{recordJSON(1, content), recordJSON(2, "")}
		first := mustAppend(t, l.Log, parseAll(t, srcs))
		size := treeSize(t, l.db)
		again := mustAppend(t, l.Log, parseAll(t, srcs))
		for i := range again {
			if !again[i].Duplicate || again[i].Seq != first[i].Seq || again[i].ID != first[i].ID {
				t.Errorf("retry of record %d: %+v, want duplicate of %+v", i, again[i], first[i])
			}
		}
		if n := treeSize(t, l.db); n != size {
			t.Errorf("tree size %d after a retry, want %d", n, size)
		}
	})
	t.Run("retry among new records", func(t *testing.T) {
		// The store refuses the resent id; the batch is appended again
		// after a lookup, and only the new records are appended.
		a := recordJSON(20, content)
		first := mustAppend(t, l.Log, parseAll(t, []string{a}))
		size := treeSize(t, l.db)
		res := mustAppend(t, l.Log, parseAll(t, []string{recordJSON(21, ""), a, recordJSON(22, content)}))
		if res[0].Duplicate || !res[1].Duplicate || res[2].Duplicate ||
			res[1].Seq != first[0].Seq || res[0].Seq != size || res[2].Seq != size+1 {
			t.Errorf("results %+v, want new records at %d and %d, and a duplicate of %d", res, size, size+1, first[0].Seq)
		}
		if n := treeSize(t, l.db); n != size+2 {
			t.Errorf("tree size %d, want %d", n, size+2)
		}
	})
	t.Run("repeat within one call", func(t *testing.T) {
		a, b := recordJSON(3, content), recordJSON(4, "")
		size := treeSize(t, l.db)
		res := mustAppend(t, l.Log, parseAll(t, []string{a, b, a, a}))
		if res[0].Duplicate || res[1].Duplicate || !res[2].Duplicate || !res[3].Duplicate ||
			res[2].Seq != res[0].Seq || res[3].Seq != res[0].Seq || res[1].Seq != res[0].Seq+1 {
			t.Errorf("results %+v", res)
		}
		if n := treeSize(t, l.db); n != size+2 {
			t.Errorf("tree size %d, want %d", n, size+2)
		}
	})
	t.Run("concurrent retries", func(t *testing.T) {
		src := recordJSON(5, content)
		size := treeSize(t, l.db)
		res := make([]ledger.Result, 16)
		var wg sync.WaitGroup
		for i := range res {
			wg.Go(func() { res[i] = mustAppend(t, l.Log, parseAll(t, []string{src}))[0] })
		}
		wg.Wait()
		fresh := 0
		for _, r := range res {
			if !r.Duplicate {
				fresh++
			}
			if r.Seq != size || r.ID != res[0].ID {
				t.Errorf("result %+v, want seq %d", r, size)
			}
		}
		if fresh != 1 {
			t.Errorf("%d results not marked duplicate, want 1", fresh)
		}
		if n := treeSize(t, l.db); n != size+1 {
			t.Errorf("tree size %d, want %d", n, size+1)
		}
	})

	// conflicting returns an ingest record with the id of src but another
	// content.
	conflicting := func(t *testing.T, src string) string {
		t.Helper()
		out := strings.Replace(src, `"a"`, `"changed"`, 1)
		if out == src {
			t.Fatal("nothing to change")
		}
		return out
	}
	for _, tc := range []struct {
		name  string
		prior []string // appended first
		call  func(prior []string) []string
		index int // record index the error must name
	}{
		{"across calls", []string{recordJSON(6, content)}, func(p []string) []string {
			return []string{recordJSON(7, ""), recordJSON(8, content), conflicting(t, p[0]), recordJSON(9, "")}
		}, 2},
		{"within one call", nil, func([]string) []string {
			a := recordJSON(10, content)
			return []string{recordJSON(11, ""), a, conflicting(t, a)}
		}, 2},
		{"duplicate then conflict", []string{recordJSON(12, content)}, func(p []string) []string {
			return []string{p[0], recordJSON(13, ""), conflicting(t, p[0])}
		}, 2},
	} {
		t.Run("conflict "+tc.name, func(t *testing.T) {
			if tc.prior != nil {
				mustAppend(t, l.Log, parseAll(t, tc.prior))
			}
			size := treeSize(t, l.db)
			subs := parseAll(t, tc.call(tc.prior))
			_, err := l.Append(ctx, subs)
			wantConflict(t, err, tc.index)
			if n := treeSize(t, l.db); n != size {
				t.Errorf("tree size %d after a failed call, want %d", n, size)
			}
			for i, s := range subs {
				if i == tc.index || slicesContainsID(tc.prior, s.Record.ID) {
					continue
				}
				if _, err := l.db.EntryByID(ctx, s.Record.ID); !errors.Is(err, infertrail.ErrNotFound) {
					t.Errorf("record %d of the failed call: %v, want ErrNotFound", i, err)
				}
			}
		})
	}

	t.Run("conflict among concurrent calls", func(t *testing.T) {
		prior := recordJSON(14, content)
		mustAppend(t, l.Log, parseAll(t, []string{prior}))
		size := treeSize(t, l.db)
		var wg sync.WaitGroup
		var ok atomic.Int64
		for g := range 16 {
			wg.Go(func() {
				if g == 7 {
					subs := parseAll(t, []string{recordJSON(100, ""), conflicting(t, prior)})
					_, err := l.Append(ctx, subs)
					wantConflict(t, err, 1)
					if _, err := l.db.EntryByID(ctx, subs[0].Record.ID); !errors.Is(err, infertrail.ErrNotFound) {
						t.Errorf("first record of the conflicting call: %v, want ErrNotFound", err)
					}
					return
				}
				res := mustAppend(t, l.Log, parseAll(t, []string{recordJSON(g, content), recordJSON(g+1, "")}))
				ok.Add(int64(len(res)))
			})
		}
		wg.Wait()
		if n := treeSize(t, l.db); n != size+ok.Load() || ok.Load() != 30 {
			t.Errorf("tree size %d, want %d + %d", n, size, ok.Load())
		}
	})

	// Records built in Go carry no submitted form (Raw is nil). A record
	// reusing the id of a different record must still be refused, not
	// answered as a duplicate of it: that would drop evidence silently.
	t.Run("conflict of records built in Go", func(t *testing.T) {
		id := infertrail.NewUUID()
		first := goRecord(id, map[string]string{"tool.name": `"search"`}, map[string]string{"tool.arguments": `{"q":"a"}`})
		res := mustAppend(t, l.Log, []ledger.Submission{{Record: first}})
		size := treeSize(t, l.db)
		other := goRecord(id, map[string]string{"tool.name": `"delete_all"`}, map[string]string{"tool.arguments": `{"q":"b"}`})
		got, err := l.Append(ctx, []ledger.Submission{{Record: other}})
		if err == nil {
			t.Errorf("a different record with the id of record %d was accepted: %+v", res[0].Seq, got)
		} else {
			wantConflict(t, err, 0)
		}
		if n := treeSize(t, l.db); n != size {
			t.Errorf("tree size %d, want %d", n, size)
		}
	})
}

func wantConflict(tb testing.TB, err error, index int) {
	tb.Helper()
	var fe *infertrail.FieldError
	if !errors.Is(err, infertrail.ErrConflict) || !errors.As(err, &fe) || fe.Record != index || fe.Field != "id" {
		tb.Errorf("got %v (%#v), want a FieldError for record %d field id wrapping ErrConflict", err, fe, index)
	}
}

func slicesContainsID(srcs []string, id infertrail.UUID) bool {
	for _, s := range srcs {
		if strings.Contains(s, id.String()) {
			return true
		}
	}
	return false
}

func TestAppendConcurrent(t *testing.T) {
	ctx := t.Context()
	l := newTestLog(t, sqlite.Config{}, nil)
	const goroutines, batches = 64, 50
	// Up to 20 records per batch; fewer under the race detector, which
	// slows SQLite (transpiled C) down about fifteenfold.
	maxBatch := 20
	if raceEnabled() {
		maxBatch = 4
	}
	results := make([][]ledger.Result, goroutines)
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(g), 1))
			for b := range batches {
				n := 1 + rng.IntN(maxBatch)
				srcs := make([]string, n)
				for i := range srcs {
					c := ""
					if i%2 == 0 {
						c = fmt.Sprintf(`{"m": ["shared", "g%d b%d i%d"]}`, g, b, i)
					}
					srcs[i] = recordJSON(i, c)
				}
				res, err := l.Append(ctx, parseAll(t, srcs))
				if err != nil {
					t.Errorf("goroutine %d batch %d: %v", g, b, err)
					return
				}
				results[g] = append(results[g], res...)
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	var total int
	for _, rs := range results {
		total += len(rs)
	}
	seen := make([]bool, total)
	ids := make(map[infertrail.UUID]bool, total)
	for _, rs := range results {
		for _, r := range rs {
			if r.Duplicate || r.Seq < 0 || r.Seq >= int64(total) || seen[r.Seq] {
				t.Fatalf("result %+v: duplicate, out of 0..%d or seen twice", r, total-1)
			}
			seen[r.Seq] = true
			if ids[r.ID] {
				t.Fatalf("id %v returned twice", r.ID)
			}
			ids[r.ID] = true
		}
	}
	if n := treeSize(t, l.db); n != int64(total) {
		t.Fatalf("tree size %d, want %d", n, total)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	rep, err := ledger.VerifyStore(ctx, l.db, testOrigin, l.verif, l.kek, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Records != int64(total) || rep.Latest != int64(total) || rep.Unsigned != 0 || rep.Checkpoints < 1 {
		t.Errorf("report %+v for %d records", rep, total)
	}
	checkCheckpoints(t, l)
}

// checkCheckpoints checks that every stored checkpoint is signed, in
// increasing size, and has the root of the stored tree of its size.
func checkCheckpoints(tb testing.TB, l *testLog) []ledger.Checkpoint {
	tb.Helper()
	ctx := context.Background()
	var cps []ledger.Checkpoint
	err := l.db.Checkpoints(ctx, 0, func(c infertrail.StoredCheckpoint) error {
		cp, err := ledger.ParseCheckpoint(c.Note, testOrigin, l.verif)
		if err != nil {
			return fmt.Errorf("checkpoint %d: %w", c.Size, err)
		}
		if cp.Size != c.Size || len(cps) > 0 && cp.Size <= cps[len(cps)-1].Size {
			return fmt.Errorf("checkpoint stored as %d has size %d", c.Size, cp.Size)
		}
		root, err := l.TreeHash(ctx, cp.Size)
		if err != nil {
			return err
		}
		if root != cp.Root {
			return fmt.Errorf("checkpoint %d: root %v, tree has %v", cp.Size, cp.Root, root)
		}
		cps = append(cps, cp)
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	if len(cps) == 0 {
		tb.Fatal("no checkpoint")
	}
	return cps
}

// holdWriteLock takes SQLite's write lock on the file at path from another
// connection, so that the sequencer waits in BeginAppend, and returns the
// function that releases it.
func holdWriteLock(tb testing.TB, path string) (release func()) {
	tb.Helper()
	db := rawDB(tb, path)
	conn, err := db.Conn(context.Background())
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := conn.ExecContext(context.Background(), "BEGIN IMMEDIATE"); err != nil {
		tb.Fatal(err)
	}
	var once sync.Once
	release = func() {
		once.Do(func() {
			if _, err := conn.ExecContext(context.Background(), "ROLLBACK"); err != nil {
				tb.Error(err)
			}
			conn.Close()
		})
	}
	tb.Cleanup(release)
	return release
}

func TestAppendPushback(t *testing.T) {
	ctx := t.Context()
	l := newTestLog(t, sqlite.Config{BusyTimeout: time.Minute}, func(c *ledger.Config) { c.QueueLimit = 8 })
	// While the sequencer is stuck on the write lock, the queue fills up.
	release := holdWriteLock(t, l.path)

	type call struct {
		subs []ledger.Submission
		res  []ledger.Result
		err  error
	}
	calls := make([]call, 40)
	var wg sync.WaitGroup
	var pushed atomic.Int64
	for i := range calls {
		c := &calls[i]
		c.subs = parseAll(t, []string{recordJSON(i, `{"m": ["x"]}`), recordJSON(i+1, ""), recordJSON(i+2, "")}[:1+i%3])
		wg.Go(func() {
			c.res, c.err = l.Append(ctx, c.subs)
			if errors.Is(c.err, infertrail.ErrPushback) {
				pushed.Add(1)
			}
		})
	}
	deadline := time.Now().Add(10 * time.Second)
	for pushed.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	release()
	wg.Wait()
	if pushed.Load() == 0 {
		t.Fatal("no call was pushed back")
	}
	var stored int64
	for i, c := range calls {
		switch {
		case c.err == nil:
			for j, r := range c.res {
				e, err := l.db.EntryByID(ctx, c.subs[j].Record.ID)
				if err != nil || e.Seq != r.Seq {
					t.Errorf("call %d record %d: %+v, stored: %v", i, j, r, err)
				}
			}
			stored += int64(len(c.res))
		case errors.Is(c.err, infertrail.ErrPushback):
			for j, s := range c.subs {
				if _, err := l.db.EntryByID(ctx, s.Record.ID); !errors.Is(err, infertrail.ErrNotFound) {
					t.Errorf("call %d was pushed back but record %d is stored (%v)", i, j, err)
				}
			}
		default:
			t.Errorf("call %d: %v", i, c.err)
		}
	}
	if n := treeSize(t, l.db); n != stored {
		t.Errorf("tree size %d, want %d", n, stored)
	}
	t.Logf("%d of %d calls pushed back", pushed.Load(), len(calls))

	// Callers that retry after a pushback all get in.
	size := treeSize(t, l.db)
	for i := range calls {
		wg.Go(func() {
			subs := calls[i].subs
			for {
				_, err := l.Append(ctx, subs)
				if !errors.Is(err, infertrail.ErrPushback) {
					if err != nil {
						t.Error(err)
					}
					return
				}
				time.Sleep(time.Millisecond)
			}
		})
	}
	wg.Wait()
	var all int64
	for _, c := range calls {
		all += int64(len(c.subs))
	}
	if n := treeSize(t, l.db); n != size+all-stored {
		t.Errorf("tree size %d after retries, want %d", n, size+all-stored)
	}
}

func TestClose(t *testing.T) {
	t.Run("queued records commit", func(t *testing.T) {
		ctx := t.Context()
		l := newTestLog(t, sqlite.Config{BusyTimeout: time.Minute}, func(c *ledger.Config) { c.CheckpointInterval = time.Hour })
		mustAppend(t, l.Log, parseAll(t, []string{recordJSON(0, "")}))
		release := holdWriteLock(t, l.path)
		calls := make([]struct {
			subs []ledger.Submission
			res  []ledger.Result
			err  error
		}, 20)
		var wg sync.WaitGroup
		var started sync.WaitGroup
		for i := range calls {
			c := &calls[i]
			c.subs = parseAll(t, []string{recordJSON(i, `{"m": "v"}`), recordJSON(i, "")})
			started.Add(1)
			wg.Go(func() {
				started.Done()
				c.res, c.err = l.Append(ctx, c.subs)
			})
		}
		started.Wait()
		time.Sleep(50 * time.Millisecond) // let them queue behind the write lock
		closed := make(chan error)
		go func() { closed <- l.Close() }()
		time.Sleep(20 * time.Millisecond)
		release()
		if err := <-closed; err != nil {
			t.Fatal(err)
		}
		wg.Wait()
		var acked int64 = 1
		for i, c := range calls {
			if c.err != nil {
				if !errors.Is(c.err, infertrail.ErrUnavailable) {
					t.Errorf("call %d: %v", i, c.err)
				}
				continue
			}
			acked += int64(len(c.res))
			for j := range c.res {
				if _, err := l.db.EntryByID(ctx, c.subs[j].Record.ID); err != nil {
					t.Errorf("acknowledged record %d of call %d: %v", j, i, err)
				}
			}
		}
		if acked == 1 {
			t.Error("no queued call was committed")
		}
		size := treeSize(t, l.db)
		if size != acked {
			t.Errorf("tree size %d, %d records acknowledged", size, acked)
		}
		cp, err := l.LatestCheckpoint(ctx)
		if err != nil || cp.Size != size {
			t.Errorf("latest checkpoint %d (%v), want the final one of size %d", cp.Size, err, size)
		}
		_, err = l.Append(ctx, parseAll(t, []string{recordJSON(1, "")}))
		if !errors.Is(err, infertrail.ErrUnavailable) {
			t.Errorf("append after close: %v, want ErrUnavailable", err)
		}
		if err := l.Close(); err != nil {
			t.Errorf("second close: %v", err)
		}
	})

	// Appends racing Close must each end: committed, or refused with
	// ErrUnavailable. None may be left waiting in a queue that nobody reads.
	t.Run("appends racing close", func(t *testing.T) {
		// Large content makes sealing, between Append's check of Close and
		// its enqueuing, take a while.
		big := `{"doc": "` + strings.Repeat("evidence ", 30000) + `"}`
		for round := range 20 {
			l := newTestLog(t, sqlite.Config{}, nil)
			var wg sync.WaitGroup
			var mu sync.Mutex
			var acked []infertrail.UUID
			for g := range 8 {
				wg.Go(func() {
					for i := 0; ; i++ {
						ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
						subs := parseAll(t, []string{recordJSON(g+i, big)})
						_, err := l.Append(ctx, subs)
						cancel()
						if err != nil {
							if !errors.Is(err, infertrail.ErrUnavailable) {
								t.Errorf("round %d: append racing close: %v, want ErrUnavailable", round, err)
							}
							return
						}
						mu.Lock()
						acked = append(acked, subs[0].Record.ID)
						mu.Unlock()
					}
				})
			}
			time.Sleep(time.Duration(1+round%5) * time.Millisecond)
			l.Close()
			wg.Wait()
			for _, id := range acked {
				if _, err := l.db.EntryByID(t.Context(), id); err != nil {
					t.Fatalf("round %d: acknowledged record %v: %v", round, id, err)
				}
			}
			if t.Failed() {
				return
			}
		}
	})
}

func TestContentDedup(t *testing.T) {
	sys := `{"role":"system","content":"` + strings.Repeat("You are a careful assistant. ", 10) + `"}`
	u1 := `{"role":"user","content":"hello"}`
	a1 := `{"role":"assistant","content":"hi there"}`
	u2 := `{"role":"user","content":"what next?"}`
	tools := `[{"name":"search"}]`
	first := `{"messages": [` + sys + `,` + u1 + `], "tools": {"list": ` + tools + `}}`
	second := `{"messages": [` + sys + `, ` + u1 + `, ` + a1 + `, ` + u2 + `], "tools": {"list": ` + tools + `}}`
	// Distinct blobs: sys, u1, a1, u2 and the tools object.
	const wantBlobs = 5
	for _, tc := range []struct {
		name     string
		separate bool
	}{{"one call", false}, {"two calls", true}} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := t.Context()
			l := newTestLog(t, sqlite.Config{}, nil)
			// One session: content is deduplicated within a data key.
			srcs := []string{recordJSON(1, first), recordJSON(8, second)}
			var res []ledger.Result
			if tc.separate {
				res = append(mustAppend(t, l.Log, parseAll(t, srcs[:1])), mustAppend(t, l.Log, parseAll(t, srcs[1:]))...)
			} else {
				res = mustAppend(t, l.Log, parseAll(t, srcs))
			}
			var blobs int
			if err := rawDB(t, l.path).QueryRowContext(ctx, "SELECT count(*) FROM blobs").Scan(&blobs); err != nil {
				t.Fatal(err)
			}
			if blobs != wantBlobs {
				t.Errorf("%d blobs stored, want %d", blobs, wantBlobs)
			}
			for i, src := range []string{first, second} {
				e, err := l.Entry(ctx, res[i].Seq)
				if err != nil {
					t.Fatal(err)
				}
				got, err := l.Content(ctx, &e)
				if err != nil {
					t.Fatal(err)
				}
				canon, err := infertrail.Canonicalize([]byte(src))
				if err != nil {
					t.Fatal(err)
				}
				for f, want := range fields(t, canon) {
					if !bytes.Equal(got[f], want) {
						t.Errorf("record %d field %s: read %s, want %s", i, f, got[f], want)
					}
				}
			}
		})
	}
}

func TestAppendTooLarge(t *testing.T) {
	big := `"` + strings.Repeat("x", 15000) + `"`
	attrs := map[string]string{}
	var js []string
	for i := range 5 {
		attrs[fmt.Sprintf("big.%d", i)] = big
		js = append(js, fmt.Sprintf(`"big.%d": %s`, i, big))
	}
	for _, tc := range []struct {
		name string
		subs func(t *testing.T) []ledger.Submission
	}{
		{"built in Go", func(t *testing.T) []ledger.Submission {
			return []ledger.Submission{
				{Record: goRecord(infertrail.UUID{}, nil, map[string]string{"c": `"ok"`})},
				{Record: goRecord(infertrail.UUID{}, attrs, nil)},
			}
		}},
		{"parsed", func(t *testing.T) []ledger.Submission {
			return parseAll(t, []string{
				recordJSON(0, `{"c": "ok"}`),
				`{"kind": "inference", "attributes": {` + strings.Join(js, ",") + `}}`,
			})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := newTestLog(t, sqlite.Config{}, nil)
			_, err := l.Append(t.Context(), tc.subs(t))
			var fe *infertrail.FieldError
			if !errors.Is(err, infertrail.ErrTooLarge) || !errors.As(err, &fe) || fe.Record != 1 || fe.Field != "attributes" {
				t.Fatalf("got %v, want a FieldError for record 1 field attributes wrapping ErrTooLarge", err)
			}
			if n := treeSize(t, l.db); n != 0 {
				t.Errorf("tree size %d, want 0", n)
			}
			var blobs int
			if err := rawDB(t, l.path).QueryRowContext(t.Context(), "SELECT count(*) FROM blobs").Scan(&blobs); err != nil || blobs != 0 {
				t.Errorf("%d blobs stored (%v), want 0", blobs, err)
			}
		})
	}
}

func TestProofs(t *testing.T) {
	ctx := t.Context()
	l := newTestLog(t, sqlite.Config{}, func(c *ledger.Config) { c.CheckpointInterval = time.Hour })
	rng := rand.New(rand.NewPCG(1, 2))
	var leaves [][]byte
	for len(leaves) < 530 {
		n := 1 + rng.IntN(40)
		if len(leaves) < 8 {
			n = 1 // small trees too
		}
		srcs := make([]string, n)
		for i := range srcs {
			srcs[i] = recordJSON(len(leaves)+i, fmt.Sprintf(`{"m": %d}`, i))
		}
		for _, r := range mustAppend(t, l.Log, parseAll(t, srcs)) {
			e, err := l.Entry(ctx, r.Seq)
			if err != nil {
				t.Fatal(err)
			}
			if r.Seq != int64(len(leaves)) {
				t.Fatalf("seq %d, want %d", r.Seq, len(leaves))
			}
			leaves = append(leaves, e.Leaf)
		}
		if _, err := l.SignCheckpoint(ctx); err != nil {
			t.Fatal(err)
		}
	}
	cps := checkCheckpoints(t, l)
	if len(cps) < 20 {
		t.Fatalf("%d checkpoints", len(cps))
	}
	hasher := rfc6962.DefaultHasher

	t.Run("inclusion", func(t *testing.T) {
		for _, cp := range cps {
			seqs := []int64{0, cp.Size - 1, cp.Size / 2, rng.Int64N(cp.Size), rng.Int64N(cp.Size)}
			for _, seq := range seqs {
				p, got, err := l.InclusionProof(ctx, seq, cp.Size)
				if err != nil {
					t.Fatalf("prove %d in %d: %v", seq, cp.Size, err)
				}
				if got.Size != cp.Size || got.Root != cp.Root {
					t.Fatalf("prove %d in %d: checkpoint %d", seq, cp.Size, got.Size)
				}
				h := tlog.RecordHash(leaves[seq])
				if err := tlog.CheckRecord(p, cp.Size, cp.Root, seq, h); err != nil {
					t.Errorf("tlog: record %d in %d: %v", seq, cp.Size, err)
				}
				if err := proof.VerifyInclusion(hasher, uint64(seq), uint64(cp.Size), h[:], hashBytes(p), cp.Root[:]); err != nil {
					t.Errorf("merkle: record %d in %d: %v", seq, cp.Size, err)
				}
			}
		}
		// With no size, the proof is to the latest checkpoint.
		p, cp, err := l.InclusionProof(ctx, 3, 0)
		if err != nil || cp.Size != int64(len(leaves)) {
			t.Fatalf("prove 3 in the latest: %v, checkpoint %d", err, cp.Size)
		}
		if err := tlog.CheckRecord(p, cp.Size, cp.Root, 3, tlog.RecordHash(leaves[3])); err != nil {
			t.Error(err)
		}
	})
	t.Run("consistency", func(t *testing.T) {
		for i, from := range cps {
			for _, to := range cps[i:] {
				p, err := l.ConsistencyProof(ctx, from.Size, to.Size)
				if err != nil {
					t.Fatalf("prove %d to %d: %v", from.Size, to.Size, err)
				}
				if err := tlog.CheckTree(p, to.Size, to.Root, from.Size, from.Root); err != nil {
					t.Errorf("tlog: %d to %d: %v", from.Size, to.Size, err)
				}
				if err := proof.VerifyConsistency(hasher, uint64(from.Size), uint64(to.Size), hashBytes(p), from.Root[:], to.Root[:]); err != nil {
					t.Errorf("merkle: %d to %d: %v", from.Size, to.Size, err)
				}
			}
		}
	})
	t.Run("tiles", func(t *testing.T) {
		var served []string
		fetch := logFetcher(l.Log, func(ctx context.Context) ([]byte, error) {
			cp, err := l.LatestCheckpoint(ctx)
			return cp.Note, err
		}, &served)
		cp, err := ledger.VerifyTiles(ctx, fetch, testOrigin, l.verif, func(index int64, leaf []byte) error {
			if !bytes.Equal(leaf, leaves[index]) {
				return fmt.Errorf("entry %d differs from the stored leaf", index)
			}
			return nil
		}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if cp.Size != int64(len(leaves)) {
			t.Errorf("verified checkpoint of size %d, want %d", cp.Size, len(leaves))
		}
		n := int64(len(leaves))
		var want []string
		for _, tile := range tlog.NewTiles(ledger.TileHeight, 0, n) {
			want = append(want, ledger.TilePath(tile.L, tile.N, tile.W))
		}
		for i := int64(0); i*ledger.TileWidth < n; i++ {
			want = append(want, ledger.EntriesPath(i, int(min(ledger.TileWidth, n-i*ledger.TileWidth))))
		}
		for _, p := range want {
			if !slices.Contains(served, p) {
				t.Errorf("%s was not fetched (fetched %v)", p, served)
			}
		}
		if !slices.Contains(want, "tile/1/000.p/2") {
			t.Errorf("the tree of %d leaves has no level-1 tile: want more than 512 leaves", n)
		}
	})
}

func hashBytes(hs []tlog.Hash) [][]byte {
	out := make([][]byte, len(hs))
	for i := range hs {
		out[i] = hs[i][:]
	}
	return out
}

// BenchmarkAppend measures the ledger without HTTP: parse, capture
// (redaction, in the redaction=on run), seal (with encryption), sequence and
// commit, with 16 appenders in batches of 100 records of 1 KiB content.
func BenchmarkAppend(b *testing.B) {
	for _, redaction := range []bool{false, true} {
		b.Run(fmt.Sprintf("redaction=%v", map[bool]string{false: "off", true: "on"}[redaction]), func(b *testing.B) {
			benchmarkAppend(b, redaction)
		})
	}
}

// benchMix is the traffic of BenchmarkAppend: INFERTRAIL_BENCH_MIX=agent
// for realistic agent sessions, else 1 KiB of unique content per record.
func benchMix(b *testing.B) load.Mix {
	v := os.Getenv("INFERTRAIL_BENCH_MIX")
	if v == "" {
		return load.MixFixed
	}
	m, err := load.ParseMix(v)
	if err != nil {
		b.Fatal(err)
	}
	return m
}

func benchmarkAppend(b *testing.B, redaction bool) {
	const appenders, batch = 16, 100
	l := newTestLog(b, sqlite.Config{}, func(c *ledger.Config) {
		if !redaction {
			return
		}
		capture, err := redact.NewCapture(redact.CaptureConfig{Redaction: redact.Config{FingerprintSecret: make([]byte, 32)}})
		if err != nil {
			b.Fatal(err)
		}
		c.Capture = capture.Apply
	})
	gens := make([]*load.Generator, appenders)
	for i := range gens {
		gens[i] = load.NewGenerator(load.GenConfig{Stream: uint64(i), Mix: benchMix(b)})
	}
	work := make(chan [][]byte, b.N/batch+1)
	for i, n := 0, 0; n < b.N; i++ {
		k := min(batch, b.N-n)
		recs := make([][]byte, k)
		for j := range recs {
			recs[j] = gens[i%appenders].Next()
		}
		work <- recs
		n += k
	}
	close(work)
	b.ResetTimer()
	var wg sync.WaitGroup
	for range appenders {
		wg.Go(func() {
			for recs := range work {
				subs := make([]ledger.Submission, len(recs))
				for j, src := range recs {
					r, raw, err := infertrail.ParseRecord(src, infertrail.Limits{})
					if err != nil {
						b.Error(err)
						return
					}
					r.Source = "bench"
					subs[j] = ledger.Submission{Record: r, Raw: raw}
				}
				if _, err := l.Append(context.Background(), subs); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
}

func BenchmarkVerifyStore(b *testing.B) {
	const records = 100_000
	l := newTestLog(b, sqlite.Config{}, func(c *ledger.Config) { c.CheckpointInterval = 200 * time.Millisecond })
	gen := load.NewGenerator(load.GenConfig{})
	for n := 0; n < records; {
		subs := make([]ledger.Submission, min(1000, records-n))
		for i := range subs {
			r, raw, err := infertrail.ParseRecord(gen.Next(), infertrail.Limits{})
			if err != nil {
				b.Fatal(err)
			}
			r.Source = "bench"
			subs[i] = ledger.Submission{Record: r, Raw: raw}
		}
		mustAppend(b, l.Log, subs)
		n += len(subs)
	}
	if err := l.Close(); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		rep, err := ledger.VerifyStore(context.Background(), l.db, testOrigin, l.verif, l.kek, nil)
		if err != nil {
			b.Fatal(err)
		}
		if rep.Records != records {
			b.Fatalf("verified %d records", rep.Records)
		}
	}
	b.ReportMetric(float64(records)*float64(b.N)/b.Elapsed().Seconds(), "records/s")
}

// BenchmarkRecordOne measures one caller recording one small record at a
// time, as a gateway does on a call's path: the fixed cost of a commit.
//
//	go test ./ledger -run '^$' -bench RecordOne -benchtime 5000x -count 3
func BenchmarkRecordOne(b *testing.B) {
	l := newTestLog(b, sqlite.Config{}, nil)
	ctx := context.Background()
	rec := func() *infertrail.Record {
		return &infertrail.Record{ID: infertrail.NewUUID(), Kind: infertrail.KindToolCall, Tenant: "acme", Source: "bench",
			Actor:      infertrail.Actor{ID: "agent:payments-bot"},
			Attributes: map[string]json.RawMessage{"gen_ai.tool.name": json.RawMessage(`"pay"`), "mcp.method.name": json.RawMessage(`"tools/call"`)},
			Content:    map[string]json.RawMessage{"gen_ai.tool.call.arguments": json.RawMessage(`{"invoice":"INV-7","amount_eur":1200}`)}}
	}
	for range 100 {
		if _, err := l.Record(ctx, rec()); err != nil {
			b.Fatal(err)
		}
	}
	lat := make([]time.Duration, 0, b.N)
	for b.Loop() {
		r := rec()
		t0 := time.Now()
		if _, err := l.Record(ctx, r); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t0))
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}

// TestRecordPrepared: records sealed ahead with Prepare are appended by
// RecordPrepared before the records given with them, in one commit; a
// field error names its index among all of them; records prepared by
// another log are refused, and nothing is appended.
func TestRecordPrepared(t *testing.T) {
	ctx := t.Context()
	l := newTestLog(t, sqlite.Config{}, nil)
	rec := func(n int) *infertrail.Record {
		return &infertrail.Record{Kind: infertrail.KindToolCall, Tenant: "acme", Source: "test", Actor: infertrail.Actor{ID: "agent:a"},
			Content: map[string]json.RawMessage{"gen_ai.tool.call.arguments": json.RawMessage(fmt.Sprintf(`{"n":%d}`, n))}}
	}
	p1, err := l.Prepare(ctx, rec(1))
	if err != nil {
		t.Fatal(err)
	}
	p2, err := l.Prepare(ctx, rec(2), rec(3))
	if err != nil {
		t.Fatal(err)
	}
	size := treeSize(t, l.db)
	own := rec(4)
	seqs, err := l.RecordPrepared(ctx, []infertrail.Prepared{p1, p2}, own)
	if err != nil {
		t.Fatal(err)
	}
	if want := []int64{size, size + 1, size + 2, size + 3}; !slices.Equal(seqs, want) {
		t.Fatalf("seqs %v, want %v", seqs, want)
	}
	for i, r := range append(append(p1.Records, p2.Records...), own) {
		e, err := l.db.EntryByID(ctx, r.ID)
		if err != nil || e.Seq != seqs[i] {
			t.Errorf("record %d: entry %d, %v; want seq %d", i, e.Seq, err, seqs[i])
		}
	}

	other := newTestLog(t, sqlite.Config{}, nil)
	foreign, err := other.Prepare(ctx, rec(5))
	if err != nil {
		t.Fatal(err)
	}
	size = treeSize(t, l.db)
	if _, err := l.RecordPrepared(ctx, []infertrail.Prepared{foreign}, rec(6)); !errors.Is(err, infertrail.ErrInvalid) {
		t.Errorf("records prepared by another log: %v, want ErrInvalid", err)
	}
	p3, err := l.Prepare(ctx, rec(7))
	if err != nil {
		t.Fatal(err)
	}
	bad := rec(8)
	bad.Kind = "nonsense"
	_, err = l.RecordPrepared(ctx, []infertrail.Prepared{p3}, rec(9), bad)
	var fe *infertrail.FieldError
	if !errors.As(err, &fe) || fe.Record != 2 || fe.Field != "kind" {
		t.Errorf("a bad record after 2 others: %v, want a FieldError of record 2, field kind", err)
	}
	if n := treeSize(t, l.db); n != size {
		t.Errorf("tree size %d after refused calls, want %d", n, size)
	}
}

// slowCommit is a store whose first append transaction, at Commit, says
// so on committing and waits for release.
type slowCommit struct {
	infertrail.Store
	committing, release chan struct{}
	once                sync.Once
}

func (s *slowCommit) BeginAppend(ctx context.Context) (infertrail.AppendTx, error) {
	tx, err := s.Store.BeginAppend(ctx)
	if err != nil {
		return nil, err
	}
	return &slowTx{AppendTx: tx, s: s}, nil
}

type slowTx struct {
	infertrail.AppendTx
	s *slowCommit
}

func (t *slowTx) Commit() error {
	t.s.once.Do(func() {
		close(t.s.committing)
		<-t.s.release
	})
	return t.AppendTx.Commit()
}

// TestAppendCancelledWhileCommitting: a caller whose context ends while its
// batch commits is told the outcome, not the context's end: an error from
// Append always means that nothing was appended.
func TestAppendCancelledWhileCommitting(t *testing.T) {
	sc := &slowCommit{committing: make(chan struct{}), release: make(chan struct{})}
	lg := newTestLog(t, sqlite.Config{}, func(c *ledger.Config) {
		sc.Store = c.Store
		c.Store = sc
	})
	ctx, cancel := context.WithCancel(t.Context())
	go func() {
		<-sc.committing
		cancel()
		time.Sleep(50 * time.Millisecond) // let a caller that does not wait return first
		close(sc.release)
	}()
	res, err := lg.Append(ctx, []ledger.Submission{parse(t, recordJSON(1, ""))})
	if err != nil {
		t.Fatalf("Append = %v, though its record committed", err)
	}
	if e, err := lg.db.EntryByID(t.Context(), res[0].ID); err != nil || e.Seq != res[0].Seq {
		t.Fatalf("entry %+v, %v: want seq %d", e, err, res[0].Seq)
	}
	// A caller whose context has ended before its batch is gathered is
	// left out, and told so.
	if _, err := lg.Append(ctx, []ledger.Submission{parse(t, recordJSON(2, ""))}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Append with an ended context = %v", err)
	}
	if n, err := lg.db.TreeSize(t.Context()); err != nil || n != 1 {
		t.Fatalf("size %d, %v: want 1", n, err)
	}
}
