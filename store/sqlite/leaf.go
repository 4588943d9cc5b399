package sqlite

import (
	"fmt"
	"runtime"
	"sync"

	"github.com/infertrail/infertrail"

	"github.com/klauspost/compress/zstd"
)

// Leaves are canonical JSON whose member names repeat from record to record,
// so the store keeps each one zstd-compressed when that is smaller. A leaf
// always starts with '{' and a zstd frame never does, so the column needs
// no flag.

var (
	leafEncoder, _ = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderConcurrency(1), zstd.WithLowerEncoderMem(true))
	leafDecoder, _ = zstd.NewReader(nil, zstd.WithDecoderConcurrency(0), zstd.WithDecoderMaxMemory(1<<20))
)

// compactLeaf returns what the leaf column stores for leaf.
func compactLeaf(leaf []byte) []byte {
	if len(leaf) < 128 {
		return nonNil(leaf)
	}
	c := leafEncoder.EncodeAll(leaf, make([]byte, 0, len(leaf)))
	if len(c) >= len(leaf) {
		return leaf
	}
	return c
}

// compactLeaves compresses the entries' leaves on every core: the append
// transaction is the log's one serial path, and this keeps it short.
func compactLeaves(entries []infertrail.Entry) [][]byte {
	out := make([][]byte, len(entries))
	workers := min(runtime.GOMAXPROCS(0), (len(entries)+63)/64)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; i < len(entries); i += workers {
				out[i] = compactLeaf(entries[i].Leaf)
			}
		})
	}
	wg.Wait()
	return out
}

// expandLeaf appends the leaf that column value v holds to dst.
func expandLeaf(dst, v []byte) ([]byte, error) {
	if len(v) == 0 || v[0] == '{' {
		return append(dst, v...), nil
	}
	out, err := leafDecoder.DecodeAll(v, dst)
	if err != nil {
		return nil, fmt.Errorf("decompress leaf: %w", err)
	}
	return out, nil
}
