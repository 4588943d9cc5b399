// Package ledgertest checks a served InferTrail log with a C2SP client this
// project did not write, for tests.
package ledgertest

import (
	"bytes"
	"context"
	"testing"

	"filippo.io/torchwood"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// VerifyWithTorchwood reads the log that r serves with filippo.io/torchwood:
// it verifies the checkpoint for origin with the verifier key vkey, reads
// every entry through the tiles (torchwood checks each against the Merkle
// tiles and the checkpoint's root), and checks the inclusion proofs that
// torchwood computes from the tiles for a few entries. It returns the
// entries and the checkpoint, and fails tb on any error.
func VerifyWithTorchwood(tb testing.TB, ctx context.Context, r torchwood.TileReader, origin, vkey string) ([][]byte, torchwood.Checkpoint) {
	tb.Helper()
	v, err := note.NewVerifier(vkey)
	if err != nil {
		tb.Fatalf("NewVerifier: %v", err)
	}
	policy := torchwood.ThresholdPolicy(2, torchwood.OriginPolicy(origin), torchwood.SingleVerifierPolicy(v))
	signed, err := r.ReadEndpoint(ctx, "checkpoint")
	if err != nil {
		tb.Fatalf("fetch checkpoint: %v", err)
	}
	cp, _, err := torchwood.VerifyCheckpoint(signed, policy)
	if err != nil {
		tb.Fatalf("torchwood.VerifyCheckpoint: %v\n%s", err, signed)
	}
	client, err := torchwood.NewClient(r)
	if err != nil {
		tb.Fatalf("torchwood.NewClient: %v", err)
	}
	var entries [][]byte
	for i, e := range client.AllEntries(ctx, cp.Tree, 0) {
		if i != int64(len(entries)) {
			tb.Fatalf("torchwood yielded entry %d after %d entries", i, len(entries))
		}
		entries = append(entries, bytes.Clone(e))
	}
	if err := client.Err(); err != nil {
		tb.Fatalf("torchwood Client.AllEntries: %v", err)
	}
	if int64(len(entries)) != cp.N {
		tb.Fatalf("torchwood read %d entries, checkpoint has %d", len(entries), cp.N)
	}
	for _, i := range []int64{0, cp.N / 3, cp.N / 2, cp.N - 1} {
		if i < 0 || i >= cp.N {
			continue
		}
		e, p, err := client.Entry(ctx, cp.Tree, i)
		if err != nil {
			tb.Fatalf("torchwood Client.Entry(%d): %v", i, err)
		}
		if !bytes.Equal(e, entries[i]) {
			tb.Fatalf("torchwood Client.Entry(%d) differs from AllEntries", i)
		}
		if err := tlog.CheckRecord(p, cp.N, cp.Hash, i, tlog.RecordHash(e)); err != nil {
			tb.Fatalf("inclusion proof of entry %d from torchwood: %v", i, err)
		}
	}
	return entries, cp
}
