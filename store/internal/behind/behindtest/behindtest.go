// Package behindtest checks a store's use of behind.Appends.
package behindtest

import (
	"context"
	"testing"
	"time"

	"github.com/infertrail/infertrail"
	"github.com/infertrail/infertrail/store/internal/behind"
)

// Store is what Check needs of a store.
type Store interface {
	BeginAppend(ctx context.Context) (infertrail.AppendTx, error)
	infertrail.Index
}

// Check checks that st counts its append transactions in a until they
// end, however they end, and that while one is open its index writes wait
// (up to a.MaxWait, which Check sets short, or a few times as long as the
// last such write took; behind's own test covers the rest). st must hold
// no record yet.
func Check(t *testing.T, st Store, a *behind.Appends) {
	a.MaxWait, a.Quiet = 50*time.Millisecond, time.Millisecond
	ctx := t.Context()
	for _, end := range []string{"commit", "rollback"} {
		tx, err := st.BeginAppend(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if n := a.Open(); n != 1 {
			t.Errorf("%d appends counted with one open", n)
		}
		if end == "commit" {
			err = tx.Commit()
		} else {
			err = tx.Rollback()
		}
		if err != nil {
			t.Fatal(err)
		}
		tx.Rollback() // a second end changes nothing
		if n := a.Open(); n != 0 {
			t.Errorf("after %s, %d appends counted", end, n)
		}
	}
	a.Begin() // an append waiting for the writer
	defer a.End()
	start := time.Now()
	if err := st.AddPostings(ctx, "indexer", 0, 1, []infertrail.Posting{{Key: "k=a", Seq: 0}}); err != nil {
		t.Fatal(err)
	}
	if waited := time.Since(start); waited < a.MaxWait {
		t.Errorf("postings written after %v while an append waited, want at least %v", waited, a.MaxWait)
	}
	// Under unbroken appends, the next write waits a few times as long as
	// that one took, not MaxWait.
	a.MaxWait = time.Minute
	start = time.Now()
	if err := st.AddPostings(ctx, "indexer", 1, 2, []infertrail.Posting{{Key: "k=a", Seq: 1}}); err != nil {
		t.Fatal(err)
	}
	if waited := time.Since(start); waited > 30*time.Second {
		t.Errorf("postings written after %v while appends went on, want a few times the last write", waited)
	}
}
