package ledger_test

import (
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/mod/sumdb/note"

	"github.com/infertrail/infertrail/ledger"
	"github.com/infertrail/infertrail/store/sqlite"
)

// faultySigner signs with its key until told to fail, then returns an
// error or a signature with one bit flipped.
type faultySigner struct {
	note.Signer
	mode atomic.Int32 // 0 good, 1 error, 2 bad signature
}

func (s *faultySigner) Sign(msg []byte) ([]byte, error) {
	sig, err := s.Signer.Sign(msg)
	switch s.mode.Load() {
	case 1:
		return nil, errors.New("the agent is gone")
	case 2:
		sig[0] ^= 1
	}
	return sig, err
}

// TestSignerFailures: a signer that fails, or returns a signature that
// does not verify, stores no checkpoint; ingest goes on, the failures are
// counted, and signing resumes once the signer works.
func TestSignerFailures(t *testing.T) {
	ctx := t.Context()
	fs := &faultySigner{}
	reg := prometheus.NewRegistry()
	l := newTestLog(t, sqlite.Config{}, func(c *ledger.Config) {
		fs.Signer = c.Signer
		c.Signer = fs
		c.Metrics = ledger.NewMetrics(reg)
		c.CheckpointInterval = time.Hour
	})
	mustAppend(t, l.Log, parseAll(t, []string{recordJSON(0, ""), recordJSON(1, "")}))
	first, err := l.SignCheckpoint(ctx)
	if err != nil || first.Size != 2 {
		t.Fatalf("SignCheckpoint: %+v, %v", first, err)
	}
	failures := value(t, reg, "infertrail_checkpoint_sign_failures_total")
	for mode, want := range map[int32]string{1: "the agent is gone", 2: "does not verify"} {
		fs.mode.Store(mode)
		mustAppend(t, l.Log, parseAll(t, []string{recordJSON(0, "")}))
		if _, err := l.SignCheckpoint(ctx); err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("SignCheckpoint with a failing signer (%d): %v, want %q", mode, err, want)
		}
		if c, err := l.db.LatestCheckpoint(ctx); err != nil || c.Size != first.Size {
			t.Fatalf("latest stored checkpoint after a failed signature: %d, %v; want %d", c.Size, err, first.Size)
		}
		failures++
		if got := value(t, reg, "infertrail_checkpoint_sign_failures_total"); got != failures {
			t.Fatalf("sign failures = %v, want %v", got, failures)
		}
		if got := value(t, reg, "infertrail_checkpoint_tree_size"); got != float64(first.Size) {
			t.Fatalf("checkpoint tree size = %v, want %d", got, first.Size)
		}
	}
	fs.mode.Store(0)
	if cp, err := l.SignCheckpoint(ctx); err != nil || cp.Size != 4 {
		t.Fatalf("SignCheckpoint once the signer works: %+v, %v", cp, err)
	}
	if got := value(t, reg, "infertrail_checkpoint_tree_size"); got != 4 {
		t.Fatalf("checkpoint tree size = %v, want 4", got)
	}
}

// value returns the value of the counter or gauge registered in reg as name.
func value(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			if g := mf.GetMetric()[0].GetGauge(); g != nil {
				return g.GetValue()
			}
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}
