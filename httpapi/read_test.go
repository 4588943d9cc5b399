package httpapi_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"filippo.io/torchwood"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/infertrail/infertrail"
	"github.com/infertrail/infertrail/ledger"
	"github.com/infertrail/infertrail/ledger/ledgertest"
)

type recordResponse struct {
	Seq      int64                      `json:"seq"`
	ID       string                     `json:"id"`
	LeafHash string                     `json:"leaf_hash"`
	Record   json.RawMessage            `json:"record"`
	Content  map[string]json.RawMessage `json:"content"`
	Salts    map[string]string          `json:"salts"`
}

// getJSON requires a 200 JSON answer to GET path and decodes it into v.
func (s *testServer) getJSON(tb testing.TB, path string, header http.Header, v any) {
	tb.Helper()
	resp, b := s.do(tb, http.MethodGet, path, header, nil)
	if resp.StatusCode != http.StatusOK {
		tb.Fatalf("GET %s = %d %s", path, resp.StatusCode, b)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		tb.Errorf("GET %s Content-Type = %q", path, ct)
	}
	if err := json.Unmarshal(b, v); err != nil {
		tb.Fatalf("GET %s: %s: %v", path, b, err)
	}
}

func parseHash(tb testing.TB, s string) tlog.Hash {
	tb.Helper()
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil || len(b) != tlog.HashSize {
		tb.Fatalf("hash %q: %v", s, err)
	}
	return tlog.Hash(b)
}

func TestRecordRead(t *testing.T) {
	s := newTestServer(t, nil)
	s.fill(t, 0, 2)
	s.ingest(t, "application/json", exampleRecord)
	stored := s.entry(t, 2)

	var got recordResponse
	s.getJSON(t, "/v1/records/2", nil, &got)
	if got.Seq != 2 || got.ID != exampleID {
		t.Errorf("seq %d id %s", got.Seq, got.ID)
	}
	if !bytes.Equal(got.Record, stored.Leaf) {
		t.Errorf("record\n%s\nwant the stored leaf\n%s", got.Record, stored.Leaf)
	}
	if h := tlog.RecordHash(got.Record); h != parseHash(t, got.LeafHash) {
		t.Errorf("record hashes to %v, leaf_hash is %s", h, got.LeafHash)
	}
	if got.Content != nil || got.Salts != nil {
		t.Errorf("content served without ?content=true: %v %v", got.Content, got.Salts)
	}
	s.getJSON(t, "/v1/records/2?content=false", nil, &got)
	if got.Content != nil || got.Salts != nil {
		t.Errorf("content served with ?content=false")
	}
	if n := s.size(t); n != 3 {
		t.Errorf("tree size %d after reads without content, want 3", n)
	}
}

func TestRecordContent(t *testing.T) {
	s := newTestServer(t, nil)
	s.fill(t, 0, 2)
	s.ingest(t, "application/json", exampleRecord)
	leaf, err := infertrail.ParseLeaf(s.entry(t, 2).Leaf)
	if err != nil {
		t.Fatal(err)
	}

	h := http.Header{"X-Infertrail-Reason": {"incident 42: payment review"}}
	var got recordResponse
	s.getJSON(t, "/v1/records/2?content=true", h, &got)
	if len(got.Content) != 2 || len(got.Salts) != 2 {
		t.Fatalf("content %v salts %v, want two fields", got.Content, got.Salts)
	}
	for f, commitment := range leaf.Commitments {
		v, ok := got.Content[f]
		if !ok {
			t.Errorf("content field %s missing", f)
			continue
		}
		canon, err := infertrail.Canonicalize(v)
		if err != nil {
			t.Fatalf("content %s: %v", f, err)
		}
		salt, err := hex.DecodeString(got.Salts[f])
		if err != nil || len(salt) != infertrail.SaltSize {
			t.Fatalf("salt %s = %q: %v", f, got.Salts[f], err)
		}
		if c := infertrail.Commitment(salt, canon); c != commitment {
			t.Errorf("content %s commits to %s, the leaf says %s", f, c, commitment)
		}
	}
	var sent map[string]json.RawMessage
	if err := json.Unmarshal([]byte(exampleRecord), &struct {
		Content *map[string]json.RawMessage `json:"content"`
	}{&sent}); err != nil {
		t.Fatal(err)
	}
	for f, v := range sent {
		want, _ := infertrail.Canonicalize(v)
		if gotv, _ := infertrail.Canonicalize(got.Content[f]); !bytes.Equal(gotv, want) {
			t.Errorf("content %s = %s, want %s", f, gotv, want)
		}
	}

	// The read left an access record at the next sequence number.
	if n := s.size(t); n != 4 {
		t.Fatalf("tree size %d after a content read, want 4", n)
	}
	acc, err := infertrail.ParseLeaf(s.entry(t, 3).Leaf)
	if err != nil {
		t.Fatal(err)
	}
	if acc.Kind != infertrail.KindAccess || acc.Tenant != "acme" || acc.Source != "api" {
		t.Errorf("access record kind %s tenant %s source %s", acc.Kind, acc.Tenant, acc.Source)
	}
	if len(acc.Links) != 1 || acc.Links[0].Rel != "reads" || acc.Links[0].ID.String() != exampleID {
		t.Errorf("access record links %+v", acc.Links)
	}
	for k, want := range map[string]string{
		"access.reason":     `"incident 42: payment review"`,
		"access.action":     `"read_content"`,
		"access.record.seq": `2`,
	} {
		if v := string(acc.Attributes[k]); v != want {
			t.Errorf("access record attribute %s = %s, want %s", k, v, want)
		}
	}

	t.Run("without a reason", func(t *testing.T) {
		var got recordResponse
		s.getJSON(t, "/v1/records/0?content=true", nil, &got)
		if len(got.Content) != 1 {
			t.Errorf("content %v", got.Content)
		}
		acc, err := infertrail.ParseLeaf(s.entry(t, 4).Leaf)
		if err != nil {
			t.Fatal(err)
		}
		if acc.Kind != infertrail.KindAccess || acc.Links[0].ID.String() != testID(0) {
			t.Errorf("access record %+v", acc)
		}
		if _, ok := acc.Attributes["access.reason"]; ok {
			t.Errorf("access.reason without the header")
		}
	})
	t.Run("record without content", func(t *testing.T) {
		var got recordResponse
		s.getJSON(t, "/v1/records/3?content=true", nil, &got)
		if got.Content != nil || len(got.Salts) != 0 {
			t.Errorf("content %v salts %v of an access record", got.Content, got.Salts)
		}
	})
	t.Run("reason too long", func(t *testing.T) {
		n := s.size(t)
		resp, b := s.do(t, http.MethodGet, "/v1/records/2?content=true",
			http.Header{"X-Infertrail-Reason": {strings.Repeat("r", 1025)}}, nil)
		wantError(t, resp, b, http.StatusRequestEntityTooLarge, "too_large", -1, "X-InferTrail-Reason")
		if s.size(t) != n {
			t.Errorf("an access record was appended")
		}
	})
}

func TestRecordReadErrors(t *testing.T) {
	s := newTestServer(t, nil)
	s.fill(t, 0, 3)
	tests := []struct {
		path   string
		status int
		code   string
		field  string
	}{
		{"/v1/records/abc", 400, "invalid", "seq"},
		{"/v1/records/-1", 400, "invalid", "seq"},
		{"/v1/records/01", 400, "invalid", "seq"},
		{"/v1/records/+1", 400, "invalid", "seq"},
		{"/v1/records/1.0", 400, "invalid", "seq"},
		{"/v1/records/99999999999999999999", 400, "invalid", "seq"},
		{"/v1/records/3", 404, "not_found", ""},
		{"/v1/records/1000", 404, "not_found", ""},
		{"/v1/records/3?content=true", 404, "not_found", ""},
		{"/v1/records/abc?content=true", 400, "invalid", "seq"},
		{"/v1/records/1?content=maybe", 400, "invalid", "content"},
		{"/v1/records/1?content=1", 400, "invalid", "content"},
		{"/v1/records/1?content=TRUE", 400, "invalid", "content"},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			before := s.size(t)
			resp, b := s.get(t, tt.path)
			wantError(t, resp, b, tt.status, tt.code, -1, tt.field)
			if n := s.size(t); n != before {
				t.Errorf("tree size %d, want %d: a failed read left a record", n, before)
			}
		})
	}
}

type proofResponse struct {
	Seq        int64    `json:"seq"`
	TreeSize   int64    `json:"tree_size"`
	LeafHash   string   `json:"leaf_hash"`
	Proof      []string `json:"proof"`
	Checkpoint string   `json:"checkpoint"`
}

// verifierFromLog reads the verifier key that GET /v1/log serves, and
// checks the other fields.
func verifierFromLog(tb testing.TB, s *testServer) note.Verifier {
	tb.Helper()
	var info struct {
		Origin      string `json:"origin"`
		VerifierKey string `json:"verifier_key"`
		TreeSize    int64  `json:"tree_size"`
	}
	s.getJSON(tb, "/v1/log", nil, &info)
	if info.Origin != testOrigin || info.VerifierKey != s.vkey || info.TreeSize != s.size(tb) {
		tb.Errorf("/v1/log = %+v", info)
	}
	v, err := note.NewVerifier(info.VerifierKey)
	if err != nil {
		tb.Fatal(err)
	}
	return v
}

// proofHashes decodes the hashes of a JSON proof, in both representations
// the verifiers take.
func proofHashes(tb testing.TB, p []string) ([]tlog.Hash, [][]byte) {
	tb.Helper()
	hs := make([]tlog.Hash, len(p))
	bs := make([][]byte, len(p))
	for i, s := range p {
		hs[i] = parseHash(tb, s)
		bs[i] = hs[i][:]
	}
	return hs, bs
}

func TestProofs(t *testing.T) {
	s := newTestServer(t, nil)
	s.fill(t, 0, 5)
	cp1 := s.checkpoint(t)
	s.fill(t, 5, 10) // one request: the tree goes from 5 to 15 at once
	cp2 := s.checkpoint(t)
	v := verifierFromLog(t, s)

	checkInclusion := func(t *testing.T, path string, seq, wantSize int64) {
		t.Helper()
		var got proofResponse
		s.getJSON(t, path, nil, &got)
		cp, err := ledger.ParseCheckpoint([]byte(got.Checkpoint), testOrigin, v)
		if err != nil {
			t.Fatalf("checkpoint: %v", err)
		}
		leaf := s.entry(t, seq).Leaf
		lh := tlog.RecordHash(leaf)
		if got.Seq != seq || got.TreeSize != wantSize || cp.Size != wantSize || parseHash(t, got.LeafHash) != lh {
			t.Fatalf("proof response %+v, checkpoint size %d", got, cp.Size)
		}
		hs, bs := proofHashes(t, got.Proof)
		if err := tlog.CheckRecord(hs, cp.Size, cp.Root, seq, lh); err != nil {
			t.Errorf("tlog.CheckRecord: %v", err)
		}
		if err := proof.VerifyInclusion(rfc6962.DefaultHasher, uint64(seq), uint64(cp.Size), lh[:], bs, cp.Root[:]); err != nil {
			t.Errorf("proof.VerifyInclusion: %v", err)
		}
		if err := tlog.CheckRecord(hs, cp.Size, cp.Root, seq, tlog.RecordHash(append(bytes.Clone(leaf), ' '))); err == nil {
			t.Error("the proof also proves another leaf")
		}
	}
	for _, seq := range []int64{0, 4, 7, 14} {
		t.Run(fmt.Sprintf("proof %d", seq), func(t *testing.T) {
			checkInclusion(t, fmt.Sprintf("/v1/records/%d/proof", seq), seq, cp2.Size)
		})
		if seq < cp1.Size {
			t.Run(fmt.Sprintf("proof %d in %d", seq, cp1.Size), func(t *testing.T) {
				checkInclusion(t, fmt.Sprintf("/v1/records/%d/proof?tree_size=%d", seq, cp1.Size), seq, cp1.Size)
			})
		}
		t.Run(fmt.Sprintf("receipt %d", seq), func(t *testing.T) {
			resp, b := s.get(t, fmt.Sprintf("/v1/records/%d/receipt", seq))
			if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
				t.Fatalf("receipt = %d %s %s", resp.StatusCode, resp.Header.Get("Content-Type"), b)
			}
			leaf := s.entry(t, seq).Leaf
			idx, err := ledger.VerifyProof(b, leaf, testOrigin, v)
			if err != nil || idx != seq {
				t.Errorf("VerifyProof = %d, %v", idx, err)
			}
			if _, err := ledger.VerifyProof(b, s.entry(t, (seq+1)%cp2.Size).Leaf, testOrigin, v); err == nil {
				t.Error("the receipt also proves another leaf")
			}
		})
	}
	t.Run("receipt in an older checkpoint", func(t *testing.T) {
		resp, b := s.get(t, fmt.Sprintf("/v1/records/3/receipt?tree_size=%d", cp1.Size))
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("receipt = %d %s", resp.StatusCode, b)
		}
		p, err := ledger.ParseProof(b)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(p.Checkpoint, cp1.Note) {
			t.Errorf("receipt checkpoint\n%s\nwant\n%s", p.Checkpoint, cp1.Note)
		}
		if idx, err := ledger.VerifyProof(b, s.entry(t, 3).Leaf, testOrigin, v); err != nil || idx != 3 {
			t.Errorf("VerifyProof = %d, %v", idx, err)
		}
	})

	t.Run("consistency", func(t *testing.T) {
		var got struct {
			From, To int64
			Proof    []string
		}
		s.getJSON(t, fmt.Sprintf("/v1/consistency?from=%d&to=%d", cp1.Size, cp2.Size), nil, &got)
		if got.From != cp1.Size || got.To != cp2.Size {
			t.Errorf("from %d to %d", got.From, got.To)
		}
		hs, bs := proofHashes(t, got.Proof)
		if err := proof.VerifyConsistency(rfc6962.DefaultHasher, uint64(cp1.Size), uint64(cp2.Size), bs, cp1.Root[:], cp2.Root[:]); err != nil {
			t.Errorf("proof.VerifyConsistency: %v", err)
		}
		if err := tlog.CheckTree(hs, cp2.Size, cp2.Root, cp1.Size, cp1.Root); err != nil {
			t.Errorf("tlog.CheckTree: %v", err)
		}
		s.getJSON(t, fmt.Sprintf("/v1/consistency?from=%d&to=%d", cp2.Size, cp2.Size), nil, &got)
		if len(got.Proof) != 0 {
			t.Errorf("proof from a size to itself has %d hashes", len(got.Proof))
		}
	})

	tests := []struct {
		path   string
		status int
		code   string
		field  string
	}{
		{"/v1/records/3/proof?tree_size=7", 404, "not_found", ""}, // no checkpoint of size 7
		{"/v1/records/3/receipt?tree_size=7", 404, "not_found", ""},
		{"/v1/records/3/proof?tree_size=1000", 404, "not_found", ""},
		{"/v1/records/6/proof?tree_size=5", 400, "invalid", ""},
		{"/v1/records/3/proof?tree_size=x", 400, "invalid", "tree_size"},
		{"/v1/records/3/proof?tree_size=-5", 400, "invalid", "tree_size"},
		{"/v1/records/3/proof?tree_size=05", 400, "invalid", "tree_size"},
		{"/v1/records/abc/proof", 400, "invalid", "seq"},
		{"/v1/records/01/receipt", 400, "invalid", "seq"},
		{"/v1/records/15/proof", 404, "not_found", ""},
		{"/v1/records/15/receipt", 404, "not_found", ""},
		{"/v1/consistency", 400, "invalid", "from"},
		{"/v1/consistency?from=5", 400, "invalid", "to"},
		{"/v1/consistency?to=5", 400, "invalid", "from"},
		{"/v1/consistency?from=a&to=5", 400, "invalid", "from"},
		{"/v1/consistency?from=1&to=5x", 400, "invalid", "to"},
		{"/v1/consistency?from=-1&to=5", 400, "invalid", "from"},
		{"/v1/consistency?from=0&to=5", 400, "invalid", ""},
		{"/v1/consistency?from=6&to=5", 400, "invalid", ""},
		{"/v1/consistency?from=5&to=16", 404, "not_found", ""},
		{"/v1/consistency?from=5&to=1000", 404, "not_found", ""},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			resp, b := s.get(t, tt.path)
			wantError(t, resp, b, tt.status, tt.code, -1, tt.field)
		})
	}
}

// subtreeRoot is the RFC 6962 root of a power-of-two number of hashes.
func subtreeRoot(hs []tlog.Hash) tlog.Hash {
	for len(hs) > 1 {
		next := make([]tlog.Hash, len(hs)/2)
		for i := range next {
			next[i] = tlog.NodeHash(hs[2*i], hs[2*i+1])
		}
		hs = next
	}
	return hs[0]
}

func concatHashes(hs []tlog.Hash) []byte {
	var b []byte
	for _, h := range hs {
		b = append(b, h[:]...)
	}
	return b
}

// fetcher is a ledger.TileFetcher over HTTP against the test server.
func (s *testServer) fetcher() ledger.TileFetcher {
	return func(ctx context.Context, path string) ([]byte, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url+"/"+path, nil)
		if err != nil {
			return nil, err
		}
		resp, err := s.client.Do(req)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		if _, err := b.ReadFrom(resp.Body); err != nil {
			return nil, err
		}
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("GET %s: %s", path, resp.Status)
		}
		return b.Bytes(), nil
	}
}

func TestTiles(t *testing.T) {
	const n = 700 // two full tiles and a partial one; a partial level-1 tile of width 2
	s := newTestServer(t, nil)
	s.fill(t, 0, n)
	cp := s.checkpoint(t)
	leaves := s.leaves(t)
	if len(leaves) != n {
		t.Fatalf("%d leaves", len(leaves))
	}
	hashes := make([]tlog.Hash, n)
	for i, l := range leaves {
		hashes[i] = tlog.RecordHash(l)
	}

	t.Run("checkpoint", func(t *testing.T) {
		resp, b := s.get(t, "/checkpoint")
		if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
			t.Fatalf("GET /checkpoint = %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		got, err := ledger.ParseCheckpoint(b, testOrigin, s.verif)
		if err != nil {
			t.Fatal(err)
		}
		if got.Size != n || got.Root != cp.Root {
			t.Errorf("checkpoint size %d root %v, want %d %v", got.Size, got.Root, n, cp.Root)
		}
		if cc := resp.Header.Get("Cache-Control"); strings.Contains(cc, "immutable") {
			t.Errorf("checkpoint Cache-Control %q", cc)
		}
	})

	l1 := []tlog.Hash{subtreeRoot(hashes[0:256]), subtreeRoot(hashes[256:512])}
	tiles := []struct {
		path string
		want []byte
		full bool
	}{
		{"tile/0/000", concatHashes(hashes[0:256]), true},
		{"tile/0/001", concatHashes(hashes[256:512]), true},
		{"tile/0/002.p/188", concatHashes(hashes[512:700]), false},
		{"tile/0/002.p/10", concatHashes(hashes[512:522]), false},
		{"tile/1/000.p/2", concatHashes(l1), false},
		{"tile/1/000.p/1", concatHashes(l1[:1]), false},
	}
	for _, tt := range tiles {
		t.Run(tt.path, func(t *testing.T) {
			resp, b := s.get(t, "/"+tt.path)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("GET /%s = %d %s", tt.path, resp.StatusCode, b)
			}
			if !bytes.Equal(b, tt.want) {
				t.Errorf("GET /%s: %d bytes that differ from the tree's hashes (%d bytes)", tt.path, len(b), len(tt.want))
			}
			checkTileHeaders(t, resp, tt.full)
		})
	}
	bundles := []struct {
		path     string
		from, to int
		full     bool
	}{
		{"tile/entries/000", 0, 256, true},
		{"tile/entries/001", 256, 512, true},
		{"tile/entries/002.p/188", 512, 700, false},
		{"tile/entries/002.p/1", 512, 513, false},
	}
	for _, tt := range bundles {
		t.Run(tt.path, func(t *testing.T) {
			resp, b := s.get(t, "/"+tt.path)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("GET /%s = %d %s", tt.path, resp.StatusCode, b)
			}
			entries, err := ledger.ParseEntryBundle(b)
			if err != nil {
				t.Fatal(err)
			}
			if len(entries) != tt.to-tt.from {
				t.Fatalf("%d entries, want %d", len(entries), tt.to-tt.from)
			}
			for i, e := range entries {
				if !bytes.Equal(e, leaves[tt.from+i]) {
					t.Fatalf("entry %d differs from the stored leaf", tt.from+i)
				}
			}
			checkTileHeaders(t, resp, tt.full)
		})
	}

	notFound := []string{
		// malformed
		"/tile/0/0", "/tile/0/0000", "/tile/0/1", "/tile/0/000.p/0", "/tile/0/000.p/256", "/tile/0/000.p/",
		"/tile/0/000.p/01", "/tile/a/000", "/tile/64/000", "/tile/-1/000", "/tile/00/000", "/tile/entries",
		"/tile/entries/", "/tile/", "/tile/0/x000/001", "/tile/0/001/", "/tile/0/x001", "/tile/0/x001/", "/tile/data/000",
		// beyond the tree
		"/tile/0/003", "/tile/0/002", "/tile/0/002.p/189", "/tile/0/x001/000", "/tile/1/000", "/tile/1/000.p/3",
		"/tile/1/001.p/1", "/tile/2/000.p/1", "/tile/entries/002", "/tile/entries/002.p/189", "/tile/entries/003.p/1",
		"/tile/entries/x001/000",
	}
	for _, p := range notFound {
		t.Run(p, func(t *testing.T) {
			resp, b := s.get(t, p)
			wantError(t, resp, b, http.StatusNotFound, "not_found", -1, "")
			if cc := resp.Header.Get("Cache-Control"); strings.Contains(cc, "immutable") {
				t.Errorf("404 with Cache-Control %q", cc)
			}
		})
	}

	t.Run("ledger.VerifyTiles", func(t *testing.T) {
		var checked int
		got, err := ledger.VerifyTiles(t.Context(), s.fetcher(), testOrigin, s.verif, func(i int64, leaf []byte) error {
			if !bytes.Equal(leaf, leaves[i]) {
				return fmt.Errorf("entry %d differs from the stored leaf", i)
			}
			checked++
			return nil
		}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got.Size != n || got.Root != cp.Root || checked != n {
			t.Errorf("verified checkpoint size %d, %d entries checked", got.Size, checked)
		}
	})
	t.Run("torchwood", func(t *testing.T) {
		f, err := torchwood.NewTileFetcher(s.url+"/", torchwood.WithHTTPClient(s.client))
		if err != nil {
			t.Fatal(err)
		}
		entries, tcp := ledgertest.VerifyWithTorchwood(t, t.Context(), f, testOrigin, s.vkey)
		if tcp.N != n || tcp.Hash != cp.Root || tcp.Origin != testOrigin {
			t.Errorf("torchwood checkpoint %+v", tcp)
		}
		for i := range entries {
			if !bytes.Equal(entries[i], leaves[i]) {
				t.Fatalf("torchwood entry %d differs from the stored leaf", i)
			}
		}
	})
}

func checkTileHeaders(tb testing.TB, resp *http.Response, full bool) {
	tb.Helper()
	if ct := resp.Header.Get("Content-Type"); ct != "application/octet-stream" {
		tb.Errorf("Content-Type %q", ct)
	}
	cc := resp.Header.Get("Cache-Control")
	if immutable := strings.Contains(cc, "immutable"); immutable != full {
		tb.Errorf("Cache-Control %q for a tile that is full: %v", cc, full)
	}
}
