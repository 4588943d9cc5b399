package ledger_test

import (
	"context"
	"fmt"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/infertrail/infertrail/ledger"
)

func ExampleSignCheckpoint() {
	skey, vkey, err := ledger.GenerateKey("example.com/log")
	if err != nil {
		panic(err)
	}
	signer, _ := note.NewSigner(skey)
	verifier, _ := note.NewVerifier(vkey)

	root := tlog.RecordHash([]byte("first entry"))
	cp, err := ledger.SignCheckpoint(signer, "example.com/log", 1, root)
	if err != nil {
		panic(err)
	}
	got, err := ledger.ParseCheckpoint(cp.Note, "example.com/log", verifier)
	if err != nil {
		panic(err)
	}
	fmt.Print(ledger.CheckpointText(got.Origin, got.Size, got.Root))
	// Output:
	// example.com/log
	// 1
	// uYmoCZl8WNzZsvX9VThOyR13ouL04Jnwbfr/UGxgKLY=
}

func ExampleTilePath() {
	fmt.Println(ledger.TilePath(0, 1234, 256))
	fmt.Println(ledger.TilePath(1, 5, 17))
	fmt.Println(ledger.EntriesPath(1234067, 3))
	level, index, width, entries, err := ledger.ParseTilePath("tile/entries/x001/234.p/3")
	fmt.Println(level, index, width, entries, err)
	// Output:
	// tile/0/x001/234
	// tile/1/005.p/17
	// tile/entries/x001/x234/067.p/3
	// -1 1234 3 true <nil>
}

func ExampleVerifyTiles() {
	// A log of three entries, served from memory.
	skey, vkey, _ := ledger.GenerateKey("example.com/log")
	signer, _ := note.NewSigner(skey)
	verifier, _ := note.NewVerifier(vkey)
	entries := [][]byte{[]byte("a"), []byte("b"), []byte("c")}
	var hashes []tlog.Hash
	reader := tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(idx))
		for i, x := range idx {
			out[i] = hashes[x]
		}
		return out, nil
	})
	var bundle []byte
	for i, e := range entries {
		hs, _ := tlog.StoredHashes(int64(i), e, reader)
		hashes = append(hashes, hs...)
		bundle = ledger.AppendEntry(bundle, e)
	}
	root, _ := tlog.TreeHash(3, reader)
	cp, _ := ledger.SignCheckpoint(signer, "example.com/log", 3, root)
	tile, _ := ledger.ReadTile(reader, 3, 0, 0, 3)
	served := map[string][]byte{
		"checkpoint":             cp.Note,
		ledger.EntriesPath(0, 3): bundle,
		ledger.TilePath(0, 0, 3): tile,
	}
	fetch := func(ctx context.Context, path string) ([]byte, error) {
		if b, ok := served[path]; ok {
			return b, nil
		}
		return nil, fmt.Errorf("%s: not found", path)
	}

	got, err := ledger.VerifyTiles(context.Background(), fetch, "example.com/log", verifier,
		func(index int64, leaf []byte) error { return nil }, nil)
	fmt.Println(got.Size, err)
	// Output:
	// 3 <nil>
}
