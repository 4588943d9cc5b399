package main

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"filippo.io/torchwood"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/infertrail/infertrail/ledger/ledgertest"
)

// TestE2ETorchwoodInterop reads the running server's log with
// filippo.io/torchwood, a C2SP tlog-tiles client this project did not
// write, over HTTP: the checkpoint, every entry (which torchwood checks
// against the hash tiles and the signed root), and receipts.
func TestE2ETorchwoodInterop(t *testing.T) {
	t.Parallel()
	s := startServer(t, t.TempDir())
	const n = 650 // two full entry bundles and a partial one
	for i := 0; i < n; i += 130 {
		body, _ := batchBody(t, 130, i, true)
		mustPost(t, s.url, body, 130)
	}
	total := s.base + n // the tokens' access records come first
	waitCheckpoint(t, s.url, total)

	v, err := note.NewVerifier(s.vkey)
	if err != nil {
		t.Fatal(err)
	}
	origin := strings.SplitN(s.vkey, "+", 2)[0]
	policy := torchwood.ThresholdPolicy(2, torchwood.OriginPolicy(origin), torchwood.SingleVerifierPolicy(v))
	fetcher, err := torchwood.NewTileFetcher(s.url, torchwood.WithHTTPClient(httpClient))
	if err != nil {
		t.Fatal(err)
	}
	entries, cp := ledgertest.VerifyWithTorchwood(t, t.Context(), fetcher, origin, s.vkey)
	if cp.N != total || cp.Origin != origin {
		t.Fatalf("checkpoint: size %d origin %q, want %d %q", cp.N, cp.Origin, total, origin)
	}
	// A checkpoint signed by another key is refused.
	signed, err := fetcher.ReadEndpoint(t.Context(), "checkpoint")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := torchwood.VerifyCheckpoint(signed, torchwood.SingleVerifierPolicy(mustVerifier(t, otherKey(t, origin)))); err == nil {
		t.Error("torchwood accepted the checkpoint under another key")
	}

	var mismatched []int64
	for i, e := range entries {
		rec, found, err := getRecord(t.Context(), s.url, int64(i))
		if err != nil || !found {
			t.Fatalf("GET /v1/records/%d: found %v, %v", i, found, err)
		}
		if rec.LeafHash != tlog.RecordHash(e).String() {
			t.Fatalf("record %d: leaf_hash %s, torchwood's entry hashes to %s", i, rec.LeafHash, tlog.RecordHash(e))
		}
		if !bytes.Equal(rec.Record, e) {
			mismatched = append(mismatched, int64(i))
		}
	}
	if len(mismatched) > 0 {
		rec, _, _ := getRecord(t.Context(), s.url, mismatched[0])
		t.Errorf("%d of %d records: the \"record\" bytes of GET /v1/records/{seq} differ from the leaf in the log (first: %d)\n record: %s\n leaf:   %s",
			len(mismatched), total, mismatched[0], rec.Record, entries[mismatched[0]])
	}

	for _, seq := range []int64{0, 255, 256, total / 2, total - 1} {
		receipt := getBody(t, s.url, fmt.Sprintf("/v1/records/%d/receipt", seq))
		if err := torchwood.VerifyProof(policy, tlog.RecordHash(entries[seq]), receipt); err != nil {
			t.Errorf("torchwood.VerifyProof of the receipt of record %d: %v\n%s", seq, err, receipt)
		}
		// The receipt does not prove another record.
		if err := torchwood.VerifyProof(policy, tlog.RecordHash(entries[(seq+1)%total]), receipt); err == nil {
			t.Errorf("the receipt of record %d also proves record %d", seq, (seq+1)%total)
		}
	}
}

func mustVerifier(tb testing.TB, vkey string) note.Verifier {
	tb.Helper()
	v, err := note.NewVerifier(vkey)
	if err != nil {
		tb.Fatal(err)
	}
	return v
}
