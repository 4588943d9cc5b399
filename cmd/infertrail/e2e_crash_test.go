package main

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// sentBatch is one POST /v1/records and, if acknowledged, its answer.
type sentBatch struct {
	body []byte
	ids  []string
	seqs []int64 // nil unless acknowledged
}

// TestE2ECrash is the durability test: acknowledged means durable. Eight
// clients send batches while the server is killed with SIGKILL; after each
// restart every acknowledged record must be in the log, under its
// acknowledged seq, with no gap in the sequence.
func TestE2ECrash(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	const (
		rounds    = 3
		clients   = 8
		batchSize = 20
	)
	var acked []sentBatch // every acknowledged batch, all rounds
	s := startServer(t, dir)
	vkey := s.vkey
	for round := range rounds {
		start := time.Now()
		newAcked, unacked := sendUntilKilled(t, s, clients, batchSize, 1500*time.Millisecond)
		n := 0
		for _, b := range newAcked {
			n += len(b.ids)
		}
		t.Logf("round %d: %d batches (%d records) acknowledged, %d not, before the kill at %v",
			round, len(newAcked), n, len(unacked), time.Since(start).Round(time.Millisecond))
		if len(newAcked) == 0 {
			t.Fatalf("round %d: no batch was acknowledged before the kill\n--- stderr:\n%s", round, s.stderr)
		}
		acked = append(acked, newAcked...)

		// The crashed database verifies as it is, before any restart.
		if r := runCLI(t, nil, 60*time.Second, "verify", "--data", dir, "-q"); r.code != 0 {
			t.Fatalf("round %d: verify --data after SIGKILL:\n%s", round, r)
		}

		s = startServer(t, dir)
		if s.vkey != vkey {
			t.Fatalf("round %d: key changed across restart: %q, was %q", round, s.vkey, vkey)
		}
		checkAcked(t, s.url, newAcked)
		size := checkNoGap(t, s.url, acked)

		// Resending every acknowledged batch, of all rounds, is answered
		// "duplicate" with the same seqs, and appends nothing.
		for _, b := range acked {
			res := mustPost(t, s.url, b.body, len(b.ids))
			for i, r := range res {
				if r.Status != "duplicate" || r.ID != b.ids[i] || r.Seq != b.seqs[i] {
					t.Fatalf("round %d: resent acknowledged record %s (seq %d) answered %+v", round, b.ids[i], b.seqs[i], r)
				}
			}
		}
		// A batch that was not acknowledged was committed whole or not at
		// all: resent, it is all duplicates or all appended.
		for k := range unacked {
			b := &unacked[k]
			res := mustPost(t, s.url, b.body, len(b.ids))
			for i, r := range res {
				if r.Status != res[0].Status || r.ID != b.ids[i] {
					t.Fatalf("round %d: resent unacknowledged batch answered %+v: a batch was committed in part", round, res)
				}
				b.seqs = append(b.seqs, r.Seq)
			}
			acked = append(acked, *b)
		}
		if got, want := treeSize(t, s.url), size+countAppendedRetries(unacked, size); got != want {
			t.Fatalf("round %d: tree size %d after the resends, want %d", round, got, want)
		}
	}
	if code := s.stop(); code != 0 {
		t.Fatalf("SIGTERM: exit %d\n--- stderr:\n%s", code, s.stderr)
	}
	total := 0
	for _, b := range acked {
		total += len(b.ids)
	}
	r := runCLI(t, nil, 60*time.Second, "verify", "--data", dir)
	if r.code != 0 || !strings.Contains(r.stdout, "OK: ") {
		t.Fatalf("verify --data after %d crashes:\n%s", rounds, r)
	}
	t.Logf("%d records acknowledged in all; %s", total, strings.SplitN(r.stdout, "\n", 2)[0])
}

// countAppendedRetries counts the records of resent batches whose seqs are
// at or past size, that is, that the resend appended.
func countAppendedRetries(bs []sentBatch, size int64) int64 {
	var n int64
	for _, b := range bs {
		for _, seq := range b.seqs {
			if seq >= size {
				n++
			}
		}
	}
	return n
}

// sendUntilKilled runs clients that send batches of fresh records to s
// until it is killed after killAfter, and returns the acknowledged batches
// and the ones sent without an acknowledgement.
func sendUntilKilled(t *testing.T, s *server, clients, batchSize int, killAfter time.Duration) (acked, unacked []sentBatch) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), killAfter+30*time.Second)
	defer cancel()
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
	)
	for c := range clients {
		wg.Go(func() {
			for i := 0; ; i++ {
				body, ids := makeBatch(batchSize, c*1_000_000+i*batchSize, false)
				status, res, err := post(ctx, s.url, body)
				b := sentBatch{body: body, ids: ids}
				if err == nil && len(res) != len(ids) {
					err = fmt.Errorf("answered %d records for %d", len(res), len(ids))
				}
				if err == nil {
					for j, r := range res {
						if r.ID != ids[j] || r.Status != "appended" {
							err = fmt.Errorf("record %d of a fresh batch answered %+v", j, r)
							break
						}
						b.seqs = append(b.seqs, r.Seq)
					}
				}
				mu.Lock()
				switch {
				case err == nil:
					acked = append(acked, b)
				case status >= 400 && status < 500:
					errs = append(errs, err)
				default: // the server went away, or answered 5xx
					unacked = append(unacked, b)
				}
				mu.Unlock()
				if err != nil {
					return
				}
			}
		})
	}
	select {
	case <-time.After(killAfter):
	case <-s.done:
		t.Fatalf("server exited on its own\n--- stderr:\n%s", s.stderr)
	}
	s.kill()
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	return acked, unacked
}

// checkAcked fetches each acknowledged record by its seq and checks its id.
func checkAcked(t *testing.T, url string, bs []sentBatch) {
	t.Helper()
	type item struct {
		seq int64
		id  string
	}
	work := make(chan item)
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
	)
	for range 8 {
		wg.Go(func() {
			for it := range work {
				rec, found, err := getRecord(t.Context(), url, it.seq)
				switch {
				case err != nil:
				case !found:
					err = fmt.Errorf("acknowledged record %s (seq %d) is missing: %w", it.id, it.seq, errLost)
				case rec.ID != it.id || rec.Seq != it.seq:
					err = fmt.Errorf("seq %d holds record %s, acknowledged as %s: %w", it.seq, rec.ID, it.id, errLost)
				}
				if err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			}
		})
	}
	for _, b := range bs {
		for i, id := range b.ids {
			work <- item{b.seqs[i], id}
		}
	}
	close(work)
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("%d acknowledged records not found as acknowledged; first: %v", len(errs), errs[0])
	}
}

var errLost = errors.New("an acknowledged record was lost")

// checkNoGap checks that records 0 … size-1 exist and size does not, that
// every acknowledged seq is below size, and returns size.
func checkNoGap(t *testing.T, url string, acked []sentBatch) int64 {
	t.Helper()
	size := treeSize(t, url)
	var maxSeq int64 = -1
	for _, b := range acked {
		for _, seq := range b.seqs {
			maxSeq = max(maxSeq, seq)
		}
	}
	if maxSeq >= size {
		t.Fatalf("acknowledged seq %d, but the tree has %d records", maxSeq, size)
	}
	if _, found, err := getRecord(t.Context(), url, size-1); err != nil || !found {
		t.Fatalf("last record %d of the tree: found %v, %v", size-1, found, err)
	}
	if _, found, err := getRecord(t.Context(), url, size); err != nil || found {
		t.Fatalf("record %d past the tree size: found %v, %v", size, found, err)
	}
	return size
}
