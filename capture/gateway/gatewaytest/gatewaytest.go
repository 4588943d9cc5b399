// Package gatewaytest runs a real trail (a ledger over SQLite in a
// temporary folder) for the gateways' tests and reads back what they
// recorded.
package gatewaytest

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/infertrail/infertrail"
	"github.com/infertrail/infertrail/ledger"
	"github.com/infertrail/infertrail/ledger/ledgertest"
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
		Secret: bytes.Repeat([]byte{7}, 32), KEK: ledgertest.NewKEK(tb), CheckpointInterval: 50 * time.Millisecond,
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
		c, err := t.Log.Content(ctx, &e)
		if err != nil {
			tb.Fatalf("record %d content: %v", seq, err)
		}
		out = append(out, Record{Record: r, Content: c})
	}
	return out
}

// Serve serves gw for the test. When the test ends it closes the server
// and then gw, before the trail's log closes (cleanups run last first, and
// the trail was made before): records still being written land, instead of
// being retried against a closed log for the rest of the test binary's
// run. A test that has broken the trail waits up to 2 s for them.
func (t *Trail) Serve(tb testing.TB, gw interface {
	http.Handler
	Close(context.Context) error
}) *httptest.Server {
	srv := httptest.NewServer(gw)
	tb.Cleanup(func() {
		srv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		gw.Close(ctx)
	})
	return srv
}

// Drain closes the server in front of a gateway, waits for the gateway's
// calls and records to finish, and reads every record.
func (t *Trail) Drain(tb testing.TB, srv *httptest.Server, gw interface{ Close(context.Context) error }) []Record {
	tb.Helper()
	srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := gw.Close(ctx); err != nil {
		tb.Fatal(err)
	}
	return t.Records(tb)
}

// LateRecorder commits the records it is given; the first time (of the
// calls Match selects, if set), it then sends on Committed and waits (up
// to half a second) for the context it was given to end, and reports
// that end: as a recorder over HTTP does when its caller goes away while
// the server commits. Other calls pass through.
type LateRecorder struct {
	infertrail.Recorder
	Committed chan struct{}
	Match     func(recs []*infertrail.Record) bool
}

// Record implements infertrail.Recorder.
func (l *LateRecorder) Record(ctx context.Context, recs ...*infertrail.Record) ([]int64, error) {
	seqs, err := l.Recorder.Record(context.WithoutCancel(ctx), recs...)
	if l.Match != nil && !l.Match(recs) {
		return seqs, err
	}
	select {
	case l.Committed <- struct{}{}:
		for i := 0; i < 50 && ctx.Err() == nil; i++ {
			time.Sleep(10 * time.Millisecond)
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
	default:
	}
	return seqs, err
}

// Tee is an http.RoundTripper that keeps the bytes of every response body
// its client reads, to check that a client received exactly what an
// upstream sent. It is safe for concurrent use.
type Tee struct {
	mu     sync.Mutex
	bodies []*bytes.Buffer
}

// RoundTrip implements http.RoundTripper over http.DefaultTransport.
func (t *Tee) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	b := &bytes.Buffer{}
	t.mu.Lock()
	t.bodies = append(t.bodies, b)
	t.mu.Unlock()
	resp.Body = struct {
		io.Reader
		io.Closer
	}{io.TeeReader(resp.Body, lockedWriter{&t.mu, b}), resp.Body}
	return resp, nil
}

// Last returns the bytes read so far of the latest response body.
func (t *Tee) Last() []byte {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.bodies) == 0 {
		return nil
	}
	return bytes.Clone(t.bodies[len(t.bodies)-1].Bytes())
}

// WriteCounter is an http.RoundTripper over connections that count their
// writes, to check that a gateway sends a request's headers and body in one
// write. It is safe for concurrent use.
type WriteCounter struct {
	n atomic.Int64
	t *http.Transport
}

// NewWriteCounter returns a WriteCounter with a plain HTTP/1.1 transport.
func NewWriteCounter() *WriteCounter {
	w := &WriteCounter{}
	d := &net.Dialer{Timeout: 5 * time.Second}
	w.t = &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return countingConn{c, &w.n}, nil
	}}
	return w
}

// RoundTrip implements http.RoundTripper.
func (w *WriteCounter) RoundTrip(req *http.Request) (*http.Response, error) {
	return w.t.RoundTrip(req)
}

// Writes returns how many writes the connections have made.
func (w *WriteCounter) Writes() int64 { return w.n.Load() }

type countingConn struct {
	net.Conn
	n *atomic.Int64
}

func (c countingConn) Write(p []byte) (int, error) {
	c.n.Add(1)
	return c.Conn.Write(p)
}

type lockedWriter struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}
