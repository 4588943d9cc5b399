package sqlite

import (
	"errors"
	"fmt"
	"runtime"
	"sync"

	"github.com/klauspost/compress/s2"

	"github.com/infertrail/infertrail"
)

// Leaves are canonical JSON whose member names and common values repeat
// from record to record, so the store keeps each one compressed with S2
// against a dictionary of those repeats: 1.1 KiB leaves of agent traffic
// shrink to about half in a few microseconds (zstd at its fastest level
// with the same dictionary packed tighter but took three times as long,
// on the append path).
//
// The leaf column holds either the plain leaf, which always starts with
// '{', or a tag byte and the compressed leaf. A new dictionary gets a new
// tag; old ones stay readable.
const (
	tagS2Dict1 = 0x01 // S2 block against leafDict1
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

var dict1 = s2.MakeDict([]byte(leafDict1), nil)

// compactLeaf returns what the leaf column stores for leaf.
func compactLeaf(leaf []byte) []byte {
	if len(leaf) < 64 {
		return nonNil(leaf)
	}
	c := dict1.Encode(make([]byte, 0, s2.MaxEncodedLen(len(leaf))), leaf)
	if 1+len(c) >= len(leaf) {
		return leaf
	}
	return append([]byte{tagS2Dict1}, c...)
}

// compactLeaves compresses the entries' leaves on every core: the append
// transaction is the log's one serial path, and this keeps it short. The
// caller takes a share itself, so a small batch (a gateway's commit)
// starts no goroutine and waits for none.
func compactLeaves(entries []infertrail.Entry) [][]byte {
	out := make([][]byte, len(entries))
	workers := min(runtime.GOMAXPROCS(0), (len(entries)+63)/64)
	share := func(w int) {
		for i := w; i < len(entries); i += workers {
			out[i] = compactLeaf(entries[i].Leaf)
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

// expandLeaf appends the leaf that column value v holds to dst.
func expandLeaf(dst, v []byte) ([]byte, error) {
	if len(v) == 0 || v[0] == '{' {
		return append(dst, v...), nil
	}
	if v[0] != tagS2Dict1 {
		return nil, fmt.Errorf("leaf column: unknown encoding 0x%02x", v[0])
	}
	n, err := s2.DecodedLen(v[1:])
	if err != nil || n > maxLeaf {
		return nil, errors.New("leaf column: damaged compressed leaf")
	}
	out, err := dict1.Decode(make([]byte, n), v[1:])
	if err != nil {
		return nil, fmt.Errorf("leaf column: %w", err)
	}
	return append(dst, out...), nil
}

// DecodeLeafColumn returns the leaf that a value of the records table's
// leaf column holds. It is for tools and tests that read the file directly.
func DecodeLeafColumn(v []byte) ([]byte, error) { return expandLeaf(nil, v) }
