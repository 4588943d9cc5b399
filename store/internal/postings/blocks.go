package postings

import (
	"math/bits"

	"github.com/infertrail/infertrail"
)

// Both stores keep a key's postings as one row per block of BlockSize
// consecutive records that carry it, a bitmap of which do, instead of a
// row per record. A row costs about 20 bytes besides what it holds (its
// key, its place in the B-tree), and the index's keys come in runs: a
// session re-sends its history with every call, so most of the words of
// one record are words of the records just before it. With the load
// tool's agent mix a block row stood for about 20 postings.

// BlockBits is the number of low bits of a sequence number that pick its
// bit in its block's bitmap: a block is BlockSize records, and its bitmap
// one 64-bit integer, as both stores hold it.
const (
	BlockBits = 6
	BlockSize = 1 << BlockBits
)

// A Block is a key's postings among the records of one block: bit i of
// Bits (as an unsigned integer) is set when record Block<<BlockBits + i
// carries Key.
type Block struct {
	Key   string
	Block int64
	Bits  int64
}

// BlockOf returns the block of sequence number seq and its bit there.
func BlockOf(seq int64) (block, bit int64) {
	return seq >> BlockBits, int64(uint64(1) << (seq & (BlockSize - 1)))
}

// Blocks returns the blocks of ps, which is in Sort's order, in the same
// order: (key, block).
func Blocks(ps []infertrail.Posting) []Block {
	var out []Block
	for _, p := range ps {
		b, bit := BlockOf(p.Seq)
		if n := len(out); n > 0 && out[n-1].Key == p.Key && out[n-1].Block == b {
			out[n-1].Bits |= bit
			continue
		}
		out = append(out, Block{Key: p.Key, Block: b, Bits: bit})
	}
	return out
}

// AppendSeqs appends to dst the sequence numbers that bitmap bits marks in
// block, newest first, keeping those in [floor, before).
func AppendSeqs(dst []int64, block, bitmap, floor, before int64) []int64 {
	u := uint64(bitmap)
	base := block << BlockBits
	for u != 0 {
		i := 63 - bits.LeadingZeros64(u)
		u &^= 1 << i
		if seq := base + int64(i); seq >= floor && seq < before {
			dst = append(dst, seq)
		}
	}
	return dst
}

// BlockRange returns the blocks that can hold records in [floor, before):
// from lo to hi, both included. before must be above floor.
func BlockRange(floor, before int64) (lo, hi int64) {
	return floor >> BlockBits, (before - 1) >> BlockBits
}

// Pages of blocks a query walks: the first is small, for a first page of
// answers from a key many records carry; the next is sized by how many
// answers the pages before gave (NextPage).
const (
	FirstPage = 8
	MaxPage   = 1024
)

// NextPage returns how many blocks to read next, after reading blocks
// blocks that gave found answers, when need more are wanted: enough for
// them at the density seen so far and a quarter more, or four times the
// last page when none was found.
func NextPage(last, blocks, found, need int) int {
	n := 4 * last
	if found > 0 {
		n = need*blocks/found + need*blocks/(4*found) + 1
	}
	return min(max(n, FirstPage), MaxPage)
}

// EntryChunk is the fewest sequence numbers a Walk with filters looks up
// at a time.
const EntryChunk = 1024

// A Walk is a query's walk of the blocks of postings its keys share,
// newest first, a page at a time, and of the records they mark: the plan
// both stores follow for a query with keys.
type Walk struct {
	Floor, Before int64 // the records wanted: [Floor, Before)
	Lo, Hi        int64 // their blocks (BlockRange)
	Limit         int   // the most entries wanted
	Filtered      bool  // other filters may drop records the keys mark
}

// Run walks: blocks reads up to page blocks from block hi down, newest
// first, calling fn with each one's number and the bits all the keys
// have there; entries reads the entries of seqs (newest first) that pass
// the other filters, newest first, up to want, and returns how many it
// read. Run stops at the limit, or when the blocks run out.
func (w *Walk) Run(blocks func(hi int64, page int, fn func(block, bits int64)) error, entries func(seqs []int64, want int) (int, error)) error {
	var (
		seqs []int64
		done int // answers
		hi   = w.Hi
		page = FirstPage
		read int // blocks
	)
	for hi >= w.Lo && done < w.Limit {
		seqs = seqs[:0]
		n := 0
		err := blocks(hi, page, func(block, bits int64) {
			n++
			hi = block - 1
			seqs = AppendSeqs(seqs, block, bits, w.Floor, w.Before)
		})
		if err != nil {
			return err
		}
		if n < page {
			hi = w.Lo - 1 // no more
		}
		read += n
		for len(seqs) > 0 && done < w.Limit {
			want := w.Limit - done
			c := want
			if w.Filtered {
				c = max(c, EntryChunk)
			}
			c = min(c, len(seqs))
			got, err := entries(seqs[:c], want)
			if err != nil {
				return err
			}
			done += got
			seqs = seqs[c:]
		}
		page = NextPage(page, read, done, w.Limit-done)
	}
	return nil
}
