package ledger_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/infertrail/infertrail/ledger"
	"github.com/infertrail/infertrail/store/sqlite"
)

// TestHeld checks checkpoints and receipts an auditor kept against the
// log later, read from its store and over its tiles: what the log only
// grew from passes; a checkpoint its key signed for a different tree, or a
// larger one, and an altered receipt, fail and say what happened.
func TestHeld(t *testing.T) {
	ctx := t.Context()
	l := newTestLog(t, sqlite.Config{}, func(c *ledger.Config) { c.CheckpointInterval = time.Hour })
	for i := range 300 {
		mustAppend(t, l.Log, parseAll(t, []string{recordJSON(i, "")}))
	}
	held, err := l.SignCheckpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	path, cp, err := l.InclusionProof(ctx, 7, held.Size)
	if err != nil {
		t.Fatal(err)
	}
	receipt, err := ledger.FormatProof(7, path, cp)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		mustAppend(t, l.Log, parseAll(t, []string{recordJSON(300+i, "")}))
	}
	latest, err := l.SignCheckpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	forged, err := ledger.SignCheckpoint(l.signer, testOrigin, held.Size, tlog.Hash{1})
	if err != nil {
		t.Fatal(err)
	}
	beyond, err := ledger.SignCheckpoint(l.signer, testOrigin, latest.Size+10, tlog.Hash{2})
	if err != nil {
		t.Fatal(err)
	}
	altered := strings.Replace(string(receipt), "\nindex 7\n", "\nindex 8\n", 1)
	if altered == string(receipt) {
		t.Fatalf("no index line in the receipt:\n%s", receipt)
	}

	fetch := logFetcher(l.Log, func(context.Context) ([]byte, error) { return latest.Note, nil }, nil)
	readers := map[string]struct {
		hr   tlog.HashReader
		leaf func(context.Context, int64) ([]byte, error)
	}{
		"store": {ledger.StoreHashReader(ctx, l.db), func(ctx context.Context, i int64) ([]byte, error) { return ledger.StoreLeaf(ctx, l.db, i) }},
		"tiles": {ledger.TileHashReader(ctx, fetch, latest), func(ctx context.Context, i int64) ([]byte, error) {
			return ledger.TileLeaf(ctx, fetch, latest.Size, i)
		}},
	}
	for name, r := range readers {
		t.Run(name, func(t *testing.T) {
			for _, tc := range []struct {
				what, text, want string
			}{
				{"the checkpoint held", string(held.Note), ""},
				{"the latest checkpoint", string(latest.Note), ""},
				{"a receipt", string(receipt), ""},
				{"a checkpoint of another tree", string(forged.Note), "the log was rewritten"},
				{"a checkpoint of a larger tree", string(beyond.Note), "truncated"},
				{"an altered receipt", altered, "receipt"},
			} {
				h, err := ledger.ParseHeld([]byte(tc.text), testOrigin, l.verif)
				if err != nil {
					t.Fatalf("%s: ParseHeld: %v", tc.what, err)
				}
				err = ledger.CheckHeld(ctx, h, latest.Size, r.hr, r.leaf)
				var ve *ledger.VerificationError
				switch {
				case tc.want == "" && err != nil:
					t.Errorf("%s: %v", tc.what, err)
				case tc.want != "" && (!errors.As(err, &ve) || !strings.Contains(err.Error(), tc.want)):
					t.Errorf("%s: %v, want a VerificationError with %q", tc.what, err, tc.want)
				}
			}
		})
	}

	// What is not a checkpoint of this log is refused as such.
	_, other := testKeys(t)
	if _, err := ledger.ParseHeld(held.Note, testOrigin, other); err == nil {
		t.Error("ParseHeld of another key's checkpoint: no error")
	}
	if _, err := ledger.ParseHeld([]byte("hello\n"), testOrigin, l.verif); err == nil {
		t.Error("ParseHeld of what is no checkpoint: no error")
	}
}
