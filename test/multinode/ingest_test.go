package multinode_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/infertrail/infertrail"
	"github.com/jackc/pgx/v5"
)

// batch is one ingest request: its body and the ids of its records, in order.
type batch struct {
	body []byte
	ids  []string
}

// newBatch returns n records with client-chosen ids and distinct content.
func newBatch(client string, n int) batch {
	var b batch
	var buf bytes.Buffer
	buf.WriteByte('[')
	for i := range n {
		id := infertrail.NewUUID().String()
		b.ids = append(b.ids, id)
		if i > 0 {
			buf.WriteByte(',')
		}
		fmt.Fprintf(&buf, `{"id":%q,"kind":"inference","tenant":"multinode","session_id":%q,`+
			`"actor":{"id":"agent:%s","type":"agent"},"attributes":{"gen_ai.request.model":"gpt-4o"},`+
			`"content":{"gen_ai.input.messages":[{"role":"user","parts":[{"type":"text","content":"record %s of %s: pay invoice %d"}]}]}}`,
			id, "sess-"+client, client, id, client, i)
	}
	buf.WriteByte(']')
	b.body = buf.Bytes()
	return b
}

// ack is one record's answer.
type ack struct {
	Seq    int64  `json:"seq"`
	ID     string `json:"id"`
	Status string `json:"status"`
}

// ledgerAcks is every acknowledged record, checked as answers arrive:
// one seq per id and one id per seq.
type ledgerAcks struct {
	// base is how many records the log held before the clients began: the
	// access records the servers append for each API token created (the
	// first admin token and the clients' token).
	base int64

	mu      sync.Mutex
	seqOf   map[string]int64
	idOf    map[int64]string
	batches []batch
	perNode map[string]int64
	last    time.Time // when the latest acknowledgement arrived

	unavailable atomic.Int64 // 503 answers seen
	other503    atomic.Int64 // 503 answers whose code was not "unavailable"
	connErrors  atomic.Int64
}

// newAcks returns an empty ledgerAcks for the log in dsn, noting the
// records the log already holds; call it before any client sends.
func newAcks(t testing.TB, dsn string) *ledgerAcks {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer conn.Close(ctx)
	var base int64
	if err := conn.QueryRow(ctx, `SELECT size FROM log_head`).Scan(&base); err != nil {
		t.Fatal(err)
	}
	return &ledgerAcks{base: base, seqOf: map[string]int64{}, idOf: map[int64]string{}, perNode: map[string]int64{}}
}

// logged returns how many records the log should hold: those there before
// the clients began and those acknowledged since.
func (a *ledgerAcks) logged() int64 {
	return a.base + a.count()
}

func (a *ledgerAcks) count() int64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return int64(len(a.seqOf))
}

func (a *ledgerAcks) nodeCount(name string) int64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.perNode[name]
}

// add records a batch's answer; it fails the test if the answer does not
// match the batch or contradicts an earlier one.
func (a *ledgerAcks) add(t testing.TB, node string, b batch, got []ack) {
	t.Helper()
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(got) != len(b.ids) {
		t.Errorf("%s answered %d records for a batch of %d", node, len(got), len(b.ids))
		return
	}
	for i, r := range got {
		if r.ID != b.ids[i] {
			t.Errorf("%s answered id %s at position %d, want %s", node, r.ID, i, b.ids[i])
			continue
		}
		if s, ok := a.seqOf[r.ID]; ok && s != r.Seq {
			t.Errorf("id %s acknowledged at seq %d and at seq %d", r.ID, s, r.Seq)
		}
		if id, ok := a.idOf[r.Seq]; ok && id != r.ID {
			t.Errorf("seq %d acknowledged for id %s and for id %s", r.Seq, id, r.ID)
		}
		if _, ok := a.seqOf[r.ID]; !ok {
			a.perNode[node]++
		}
		a.seqOf[r.ID], a.idOf[r.Seq] = r.Seq, r.ID
	}
	a.batches = append(a.batches, b)
	a.last = time.Now()
}

// httpClient is shared by all simulated clients; each request is bounded.
var httpClient = &http.Client{
	Timeout:   60 * time.Second,
	Transport: &http.Transport{MaxIdleConnsPerHost: 64, DisableCompression: true},
}

// post sends one batch with the API token and returns the status, the
// parsed answer (on 200), the error body (otherwise) and the Retry-After
// header.
func post(ctx context.Context, url, token string, body []byte) (int, []ack, []byte, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url+"/v1/records", bytes.NewReader(body))
	if err != nil {
		return 0, nil, nil, "", err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := httpClient.Do(req)
	if err != nil {
		return 0, nil, nil, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return 0, nil, nil, "", err
	}
	if resp.StatusCode != http.StatusOK {
		return resp.StatusCode, nil, b, resp.Header.Get("Retry-After"), nil
	}
	var out struct {
		Records []ack `json:"records"`
	}
	if err := json.Unmarshal(b, &out); err != nil {
		return resp.StatusCode, nil, b, "", fmt.Errorf("decode answer: %w", err)
	}
	return resp.StatusCode, out.Records, nil, "", nil
}

// sendUntilAcked sends b to n until it is acknowledged, retrying after a
// 503 (honouring Retry-After) or a connection error (the node may be down),
// for at most giveUp. A retry reuses the batch's ids, so it can never
// append a record twice. It returns the answer, or nil after failing t.
func sendUntilAcked(ctx context.Context, t testing.TB, n *node, b batch, a *ledgerAcks, giveUp time.Duration) []ack {
	t.Helper()
	deadline := time.Now().Add(giveUp)
	for {
		status, got, errBody, retryAfter, err := post(ctx, n.url(), n.token, b.body)
		switch {
		case err == nil && status == http.StatusOK:
			return got
		case ctx.Err() != nil:
			t.Errorf("%s: batch not acknowledged before the test ended: %v", n.name, ctx.Err())
			return nil
		case err != nil:
			a.connErrors.Add(1)
			sleep(ctx, 100*time.Millisecond)
		case status == http.StatusServiceUnavailable:
			a.unavailable.Add(1)
			var e struct {
				Error struct{ Code string } `json:"error"`
			}
			if json.Unmarshal(errBody, &e) != nil || e.Error.Code != "unavailable" || retryAfter == "" {
				a.other503.Add(1)
				t.Logf("%s: 503 with Retry-After %q: %s", n.name, retryAfter, errBody)
			}
			secs, _ := strconv.Atoi(retryAfter)
			sleep(ctx, min(time.Duration(max(secs, 0))*time.Second, time.Second))
		default:
			t.Errorf("%s: POST /v1/records: %d %s", n.name, status, errBody)
			return nil
		}
		if time.Now().After(deadline) {
			t.Errorf("%s: batch not acknowledged within %s (last: status %d, err %v)", n.name, giveUp, status, err)
			return nil
		}
	}
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// drive runs clientsPerNode clients against each node until stop is
// closed: each sends batches of batchSize records, one at a time, and
// records what is acknowledged. A batch in flight when stop closes is still
// sent until acknowledged, so that every batch sent is acknowledged and the
// log holds exactly the acknowledged records. drive returns when all
// clients are done.
func drive(ctx context.Context, t testing.TB, nodes []*node, clientsPerNode, batchSize int, a *ledgerAcks, stop <-chan struct{}) {
	t.Helper()
	var wg sync.WaitGroup
	for _, n := range nodes {
		for c := range clientsPerNode {
			name := fmt.Sprintf("%s-c%d", n.name, c)
			wg.Go(func() {
				for {
					select {
					case <-stop:
						return
					case <-ctx.Done():
						return
					default:
					}
					b := newBatch(name, batchSize)
					got := sendUntilAcked(ctx, t, n, b, a, 90*time.Second)
					if got == nil {
						return
					}
					a.add(t, n.name, b, got)
				}
			})
		}
	}
	wg.Wait()
}

// checkStored compares the database with the acknowledgements: the tree
// size and the number of records both equal the number acknowledged plus
// the records there before the clients began, seqs run 0..N-1 with no gap
// or repeat, and every acknowledged id is stored at its acknowledged seq.
func checkStored(t testing.TB, dsn string, a *ledgerAcks) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer conn.Close(ctx)
	want := a.logged()
	var size, rows, distinct, minSeq, maxSeq int64
	if err := conn.QueryRow(ctx, `SELECT size FROM log_head`).Scan(&size); err != nil {
		t.Fatal(err)
	}
	if err := conn.QueryRow(ctx, `SELECT count(*), count(DISTINCT seq), coalesce(min(seq), -1), coalesce(max(seq), -1) FROM records`).
		Scan(&rows, &distinct, &minSeq, &maxSeq); err != nil {
		t.Fatal(err)
	}
	if size != want || rows != want || distinct != want || minSeq != 0 || maxSeq != want-1 {
		t.Errorf("tree size %d, %d rows, %d distinct seqs from %d to %d; want %d records (%d there before, %d acknowledged), seqs 0..%d",
			size, rows, distinct, minSeq, maxSeq, want, a.base, want-a.base, want-1)
	}
	stored, err := conn.Query(ctx, `SELECT id::text, seq FROM records`)
	if err != nil {
		t.Fatal(err)
	}
	seqOf := make(map[string]int64, rows)
	var id string
	var seq int64
	if _, err := pgx.ForEachRow(stored, []any{&id, &seq}, func() error {
		if _, dup := seqOf[id]; dup {
			t.Errorf("id %s is stored twice", id)
		}
		seqOf[id] = seq
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	bad := 0
	for id, want := range a.seqOf {
		if got, ok := seqOf[id]; !ok || got != want {
			if bad++; bad <= 10 {
				t.Errorf("acknowledged id %s at seq %d; stored: %d (present %v)", id, want, got, ok)
			}
		}
	}
	if bad > 10 {
		t.Errorf("… and %d more acknowledged ids not at their seq", bad-10)
	}
}

// resendAll resends every acknowledged batch, spread over nodes: each
// record must be answered "duplicate" with its acknowledged seq.
func resendAll(ctx context.Context, t testing.TB, nodes []*node, a *ledgerAcks) {
	t.Helper()
	a.mu.Lock()
	batches := append([]batch(nil), a.batches...)
	a.mu.Unlock()
	work := make(chan batch)
	var wg sync.WaitGroup
	var wrong atomic.Int64
	for w := range 4 * len(nodes) {
		n := nodes[w%len(nodes)]
		wg.Go(func() {
			for b := range work {
				got := sendUntilAcked(ctx, t, n, b, a, 60*time.Second)
				if got == nil {
					continue
				}
				a.mu.Lock()
				for i, r := range got {
					if r.Status != "duplicate" || r.ID != b.ids[i] || r.Seq != a.seqOf[r.ID] {
						if wrong.Add(1) <= 10 {
							t.Errorf("resent %s (acknowledged at seq %d): answered %+v", b.ids[i], a.seqOf[b.ids[i]], r)
						}
					}
				}
				a.mu.Unlock()
			}
		})
	}
	for _, b := range batches {
		work <- b
	}
	close(work)
	wg.Wait()
	if n := wrong.Load(); n > 0 {
		t.Errorf("%d resent records were not answered as duplicates at their seq", n)
	}
}
