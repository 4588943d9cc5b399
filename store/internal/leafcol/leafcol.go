// Package leafcol is how the stores keep a leaf in their records table:
// canonical JSON, compressed, with the hex it holds written as bytes.
package leafcol

import (
	"encoding/hex"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"

	"github.com/klauspost/compress/s2"

	"github.com/infertrail/infertrail"
)

// Leaves are canonical JSON whose member names and common values repeat
// from record to record, so a store keeps each one compressed with S2
// against a dictionary of those repeats (zstd at its fastest level with
// the same dictionary packed tighter but took three times as long, on the
// append path). What S2 cannot shrink is the random part of a leaf:
// commitments, ids, trace and span ids, written in hex, two characters a
// byte; packLeaf first writes those as the bytes they spell. 1.1 KiB
// leaves of agent traffic shrink to about 440 bytes in a few microseconds
// (about 590 without packing).
//
// The leaf column holds either the plain leaf, which always starts with
// '{', or a tag byte and the compressed leaf. A new encoding gets a new
// tag; old ones stay readable. (SQLite's stores wrote tag 0x01 before
// 2026-11-29, PostgreSQL's plain leaves.)
const (
	tagS2Dict1  = 0x01 // S2 block of the leaf against leafDict1
	tagS2Packed = 0x02 // S2 block of packLeaf(leaf) against leafDict2
)

// leafDict1 holds what most leaves share: member names in canonical order,
// OpenTelemetry GenAI attribute names, and common values. Changing it
// would corrupt every leaf stored with tag 0x01: add a new tag instead.
const leafDict1 = `{"actor":{"credential_fingerprint":"","id":"agent:","on_behalf_of":"user:","type":"agent","workload":"spiffe://"},` +
	`"attributes":{"gen_ai.agent.id":"","gen_ai.conversation.id":"","gen_ai.operation.name":"chat","gen_ai.provider.name":"openai",` +
	`"gen_ai.request.model":"gpt-4o","gen_ai.request.max_tokens":1024,"gen_ai.request.temperature":0.2,` +
	`"gen_ai.response.finish_reasons":["stop"],"gen_ai.response.id":"chatcmpl-","gen_ai.response.model":"gpt-4o-2024-08-06",` +
	`"gen_ai.tool.call.id":"call_","gen_ai.tool.name":"","gen_ai.usage.input_tokens":120,"gen_ai.usage.output_tokens":30,` +
	`"http.request.method":"POST","http.response.status_code":200,"openai.response.system_fingerprint":"fp_",` +
	`"server.address":"","url.full":"https://"},` +
	`"commitments":{"gen_ai.input.messages":"sha256:","gen_ai.output.messages":"sha256:","gen_ai.system_instructions":"sha256:",` +
	`"gen_ai.tool.call.arguments":"sha256:","gen_ai.tool.call.result":"sha256:","gen_ai.tool.definitions":"sha256:"},` +
	`"id":"019","kind":"inference","links":[{"id":"019","rel":"answers"}],"parent_span_id":"",` +
	`"received_time":"2026-11-26T10:00:00.123456789Z","schema_version":1,"seq":1,"session_id":"sess-","source":"ingest",` +
	`"span_id":"","tenant":"default","time":"2026-11-26T10:00:00.123456Z","trace_id":""}`

// leafDict2 is leafDict1 as packLeaf writes it: a commitment's 64 hex
// digits follow "sha256:" as a packed run of 32 bytes. Changing it would
// corrupt every leaf stored with tag 0x02.
var leafDict2 = strings.ReplaceAll(leafDict1, `"sha256:"`, `"sha256:`+string([]byte{packHex, 32}))

var (
	dict1 = s2.MakeDict([]byte(leafDict1), nil)
	dict2 = s2.MakeDict([]byte(leafDict2), nil)
)

// Compact returns what the leaf column stores for leaf: leaf itself, or,
// when compressed is true, part of sc's buffers, valid until the next call
// with sc.
func Compact(leaf []byte, sc *Scratch) (col []byte, compressed bool) {
	if len(leaf) < 64 {
		if leaf == nil {
			leaf = []byte{}
		}
		return leaf, false
	}
	tag, dict := byte(tagS2Packed), dict2
	src := packLeaf(sc.packed[:0], leaf)
	if src == nil {
		tag, dict, src = tagS2Dict1, dict1, leaf
	} else {
		sc.packed = src
	}
	if n := 1 + s2.MaxEncodedLen(len(src)); cap(sc.col) < n {
		sc.col = make([]byte, n)
	}
	buf := sc.col[:cap(sc.col)]
	buf[0] = tag
	c := dict.Encode(buf[1:], src) // within buf, which is large enough
	if 1+len(c) >= len(leaf) {
		return leaf, false
	}
	return buf[:1+len(c)], true
}

// Scratch holds Compact's and Expand's buffers from one call to the next.
type Scratch struct{ packed, col []byte }

// Bytes below 0x20 never occur in canonical JSON (RFC 8785 escapes them
// in strings, and they are not whitespace it keeps), so packLeaf uses two
// of them to mark what it packs.
const (
	packHex  = 0x01 // then n (1 to 255), then n bytes: 2n lowercase hex digits
	packUUID = 0x02 // then 16 bytes: a UUID, 8-4-4-4-12 lowercase hex digits
)

// minPackedHex is the shortest run of hex digits packLeaf packs: shorter
// ones are mostly words and numbers, which S2 or the dictionary handle.
const minPackedHex = 16

// packLeaf appends to dst the leaf with each UUID and each run of at least
// minPackedHex lowercase hex digits written as the bytes they spell, and
// returns nil if the leaf holds a byte below 0x20 (it is not canonical
// JSON, and is stored as it is). unpackLeaf reverses it exactly.
func packLeaf(dst, leaf []byte) []byte {
	lit := 0 // leaf[lit:i] is still to be copied as it is
	for i := 0; i < len(leaf); {
		c := leaf[i]
		if c < 0x20 {
			return nil
		}
		if !lowerHex[c] {
			i++
			continue
		}
		// A run of hex digits starts at i.
		if isUUID(leaf[i:]) {
			dst = append(dst, leaf[lit:i]...)
			dst = append(dst, packUUID)
			for _, g := range uuidGroups {
				dst, _ = hex.AppendDecode(dst, leaf[i+g[0]:i+g[1]])
			}
			i += 36
			lit = i
			continue
		}
		end := i + 1
		for end < len(leaf) && lowerHex[leaf[end]] {
			end++
		}
		if end-i >= minPackedHex {
			dst = append(dst, leaf[lit:i]...)
			for end-i >= minPackedHex {
				m := min(end-i, 2*255) &^ 1
				dst = append(dst, packHex, byte(m/2))
				dst, _ = hex.AppendDecode(dst, leaf[i:i+m])
				i += m
			}
			lit = i
		}
		i = end
	}
	return append(dst, leaf[lit:]...)
}

var (
	errDamaged = errors.New("leaf column: damaged packed leaf")
	errTooLong = fmt.Errorf("leaf column: damaged packed leaf (longer than %d bytes)", maxLeaf)
)

// unpackLeaf appends to dst what packLeaf packed into src.
func unpackLeaf(dst, src []byte) ([]byte, error) {
	const digits = "0123456789abcdef"
	start := len(dst)
	for i := 0; i < len(src); {
		j := i
		for j < len(src) && src[j] >= 0x20 {
			j++
		}
		dst = append(dst, src[i:j]...)
		if i = j; i == len(src) {
			break
		}
		switch src[i] {
		case packHex:
			if i+1 >= len(src) || src[i+1] == 0 || i+2+int(src[i+1]) > len(src) {
				return nil, errDamaged
			}
			n := int(src[i+1])
			dst = hex.AppendEncode(dst, src[i+2:i+2+n])
			i += 2 + n
		case packUUID:
			if i+17 > len(src) {
				return nil, errDamaged
			}
			for k, b := range src[i+1 : i+17] {
				if k == 4 || k == 6 || k == 8 || k == 10 {
					dst = append(dst, '-')
				}
				dst = append(dst, digits[b>>4], digits[b&15])
			}
			i += 17
		default:
			return nil, fmt.Errorf("leaf column: damaged packed leaf (byte 0x%02x)", src[i])
		}
		if len(dst)-start > maxLeaf {
			return nil, errTooLong
		}
	}
	if len(dst)-start > maxLeaf {
		return nil, errTooLong
	}
	return dst, nil
}

// lowerHex marks the bytes that are lowercase hex digits.
var lowerHex = func() (t [256]bool) {
	for _, c := range []byte("0123456789abcdef") {
		t[c] = true
	}
	return t
}()

// uuidGroups are the hex groups of a UUID's 36 characters.
var uuidGroups = [5][2]int{{0, 8}, {9, 13}, {14, 18}, {19, 23}, {24, 36}}

// isUUID reports whether b starts with a UUID in lowercase hex.
func isUUID(b []byte) bool {
	if len(b) < 36 || b[8] != '-' || b[13] != '-' || b[18] != '-' || b[23] != '-' {
		return false
	}
	for _, g := range uuidGroups {
		for _, c := range b[g[0]:g[1]] {
			if !lowerHex[c] {
				return false
			}
		}
	}
	return true
}

// CompactAll compresses the entries' leaves on every core: the append
// transaction is the log's one serial path, and this keeps it short. The
// caller takes a share itself, so a small batch (a gateway's commit)
// starts no goroutine and waits for none. The column values are copied
// into a few shared arrays rather than one allocation each.
func CompactAll(entries []infertrail.Entry) [][]byte {
	out := make([][]byte, len(entries))
	workers := min(runtime.GOMAXPROCS(0), (len(entries)+63)/64)
	share := func(w int) {
		var (
			sc    Scratch
			arena []byte
		)
		for i := w; i < len(entries); i += workers {
			col, compressed := Compact(entries[i].Leaf, &sc)
			if !compressed {
				out[i] = col
				continue
			}
			if cap(arena)-len(arena) < len(col) {
				arena = make([]byte, 0, max(64<<10, len(col)))
			}
			n := len(arena)
			arena = append(arena, col...)
			out[i] = arena[n:len(arena):len(arena)]
		}
	}
	var wg sync.WaitGroup
	for w := 1; w < workers; w++ {
		wg.Go(func() { share(w) })
	}
	share(0)
	wg.Wait()
	return out
}

// maxLeaf bounds a decoded leaf: the C2SP entry limit.
const maxLeaf = 1<<16 - 1

// Expand appends the leaf that column value v holds to dst. sc, if not
// nil, holds a packed leaf between its two steps.
func Expand(dst, v []byte, sc *Scratch) ([]byte, error) {
	if len(v) == 0 || v[0] == '{' {
		return append(dst, v...), nil
	}
	var dict *s2.Dict
	switch v[0] {
	case tagS2Dict1:
		dict = dict1
	case tagS2Packed:
		dict = dict2
	default:
		return nil, fmt.Errorf("leaf column: unknown encoding 0x%02x", v[0])
	}
	n, err := s2.DecodedLen(v[1:])
	if err != nil || n > maxLeaf {
		return nil, errors.New("leaf column: damaged compressed leaf")
	}
	if v[0] == tagS2Dict1 {
		dst = slices.Grow(dst, n)
		out, err := dict.Decode(dst[len(dst):len(dst)+n], v[1:])
		if err != nil {
			return nil, fmt.Errorf("leaf column: %w", err)
		}
		return dst[:len(dst)+len(out)], nil
	}
	if sc == nil {
		sc = new(Scratch)
	}
	sc.packed = slices.Grow(sc.packed[:0], n)
	packed, err := dict.Decode(sc.packed[:n], v[1:])
	if err != nil {
		return nil, fmt.Errorf("leaf column: %w", err)
	}
	return unpackLeaf(dst, packed)
}

// Decode returns the leaf that a value of the records table's leaf
// column holds.
func Decode(v []byte) ([]byte, error) { return Expand(nil, v, nil) }
