package load

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strconv"
	"time"
)

// Mix is a kind of generated traffic.
type Mix int

const (
	// MixFixed makes every record an inference with exactly
	// GenConfig.ContentBytes bytes of raw content (as ContentSize counts
	// them) of random, unique, hardly compressible text: a user message
	// holding three fifths of the text and an assistant answer holding the
	// rest. Attributes are those of a real chat completion (provider, request
	// and response model, fingerprint, temperature, token usage). Nothing
	// repeats between records except the attribute names and values. It is
	// the record of the throughput benchmark.
	MixFixed Mix = iota

	// MixAgent is realistic AI-agent traffic.
	//
	// The world depends on GenConfig.Seed only: Agents agents (default 6)
	// spread over Tenants tenants (default 3), each acting for 2 to 4 users,
	// calling one of four models (OpenAI, Anthropic, Bedrock), with a fixed
	// system prompt of 2 to 4 KiB of instruction text and 3 to 8 JSON-schema
	// function tools (gen_ai.tool.definitions, 1 to 4 KiB in all).
	//
	// A session picks an agent and one of its users and lasts 2 to 8 user
	// turns (uniform). Each turn is one trace and makes, in order:
	//   - an inference whose gen_ai.input.messages are the system prompt,
	//     every earlier message of the session, re-sent byte for byte, and
	//     the new user message (1 to 4 sentences), with the agent's tool
	//     definitions as content; in 60% of turns the model asks for tools
	//     (two calls in 30% of those, else one), otherwise it answers in 2
	//     to 8 sentences;
	//   - for each tool call: a policy_decision in 30% of calls (5% of
	//     them deny, and the tool does not run), a tool_call with the
	//     arguments and a result of 1 to 6 sentences as content, and for
	//     half of the tool calls a downstream_call (HTTP or database
	//     metadata and body digests, no content);
	//   - after tool calls, a second inference with the assistant's tool
	//     calls and the tool results added to the history, answering in
	//     text.
	//
	// Per turn that is on average 1.6 inference, 0.768 tool_call, 0.234
	// policy_decision and 0.384 downstream_call records. Measured over
	// 30,000 records of seed 1: 53.6% inference, 25.7% tool_call, 7.9%
	// policy_decision and 12.9% downstream_call records; 6.0 KB of JSON
	// and 5.1 KB of raw content (ContentSize) per record on average;
	// inference records of 7.2 KB (p10), 9.9 KB (p50) and 14 KB (p90), up
	// to 21 KB. 86% of the raw content bytes repeat a content element sent
	// before (system prompts, tool definitions, re-sent history), which
	// leaves about 0.7 KB of new content per record.
	MixAgent
)

// String returns "fixed" or "agent".
func (m Mix) String() string {
	switch m {
	case MixFixed:
		return "fixed"
	case MixAgent:
		return "agent"
	}
	return "Mix(" + strconv.Itoa(int(m)) + ")"
}

// ParseMix parses the names String returns.
func ParseMix(s string) (Mix, error) {
	switch s {
	case "fixed":
		return MixFixed, nil
	case "agent":
		return MixAgent, nil
	}
	return 0, fmt.Errorf("parse mix %q: want fixed or agent", s)
}

// DefaultContentBytes is the raw content size of a MixFixed record when
// GenConfig.ContentBytes is zero.
const DefaultContentBytes = 1024

// GenConfig configures a Generator. The zero value is valid: MixFixed with
// 1 KiB of content, seed 0, stream 0, records timed from 2026-01-01 UTC.
type GenConfig struct {
	Mix Mix

	// Seed determines everything generated: the same Seed, Stream and Start
	// give the same records, byte for byte. For MixAgent the Seed alone
	// determines the tenants, agents, system prompts and tool definitions,
	// so generators that differ only in Stream share them, as the replicas
	// of a real agent fleet do.
	Seed int64

	// Stream distinguishes generators that share a Seed: their sessions,
	// texts and record ids differ. Run gives client i the Stream i.
	Stream uint64

	// Start is the time of the first record; later records are 0.1 to 2 ms
	// apart. Zero means 2026-01-01T00:00:00Z. The record ids are UUIDv7 of
	// these times, so two generators with the same Seed and Stream give
	// different ids only when their Start differs.
	Start time.Time

	// ContentBytes is the raw content size of each MixFixed record
	// (DefaultContentBytes when zero). Sizes under MinContentBytes are
	// raised to it.
	ContentBytes int

	// Tenants and Agents size the MixAgent world: Agents agents (default 6,
	// at most 16) spread round-robin over Tenants tenants (default 3, at
	// most 8).
	Tenants int
	Agents  int
}

// MinContentBytes is the smallest raw content size of a MixFixed record:
// the JSON of its two messages around two bytes of text.
const MinContentBytes = len(fixedIn1) + len(fixedIn2) + len(fixedOut1) + len(fixedOut2) + 2

const (
	fixedIn1  = `[{"role":"user","parts":[{"type":"text","content":"`
	fixedIn2  = `"}]}]`
	fixedOut1 = `[{"role":"assistant","parts":[{"type":"text","content":"`
	fixedOut2 = `"}],"finish_reason":"stop"}]`
)

// A Generator makes records as compact JSON. It is deterministic (see
// GenConfig.Seed) and not safe for concurrent use: use one per goroutine.
type Generator struct {
	cfg   GenConfig
	rng   *rand.Rand
	clock time.Time
	n     int64 // records generated

	agent *agentState // MixAgent only
}

// NewGenerator returns a generator for cfg, with the zero values of cfg
// replaced by their documented defaults.
func NewGenerator(cfg GenConfig) *Generator {
	if cfg.Start.IsZero() {
		cfg.Start = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	}
	if cfg.ContentBytes == 0 {
		cfg.ContentBytes = DefaultContentBytes
	}
	cfg.ContentBytes = max(cfg.ContentBytes, MinContentBytes)
	if cfg.Tenants <= 0 {
		cfg.Tenants = 3
	}
	cfg.Tenants = min(cfg.Tenants, len(tenantNames))
	if cfg.Agents <= 0 {
		cfg.Agents = 6
	}
	cfg.Agents = min(cfg.Agents, len(agentNames))
	g := &Generator{
		cfg:   cfg,
		rng:   rand.New(rand.NewPCG(uint64(cfg.Seed), cfg.Stream^0x9e3779b97f4a7c15)),
		clock: cfg.Start.UTC(),
	}
	if cfg.Mix == MixAgent {
		g.agent = newAgentState(cfg)
	}
	return g
}

// Config returns the generator's configuration with defaults filled in.
func (g *Generator) Config() GenConfig { return g.cfg }

// Next returns the next record as compact JSON in a new slice.
func (g *Generator) Next() []byte { return g.AppendNext(nil) }

// AppendNext appends the next record, as compact JSON, to dst and returns
// the extended slice.
func (g *Generator) AppendNext(dst []byte) []byte {
	g.n++
	if g.cfg.Mix == MixAgent {
		return g.appendAgent(dst)
	}
	return g.appendFixed(dst)
}

// tick advances the generator's clock by 0.1 to 2 ms and returns it.
func (g *Generator) tick() time.Time {
	g.clock = g.clock.Add(100*time.Microsecond + time.Duration(g.rng.Int64N(int64(1900*time.Microsecond))))
	return g.clock
}

func (g *Generator) appendFixed(dst []byte) []byte {
	t := g.tick()
	text := g.cfg.ContentBytes - (MinContentBytes - 2)
	in := text * 3 / 5
	out := text - in
	tenant := tenantNames[g.n%4]
	id := g.uuid(t)
	inTok, outTok := in/4+8, out/4+1

	dst = append(dst, `{"kind":"inference","id":`...)
	dst = appendUUID(dst, id)
	dst = append(dst, `,"time":`...)
	dst = appendTime(dst, t)
	dst = append(dst, `,"tenant":"`...)
	dst = append(dst, tenant...)
	dst = append(dst, `","actor":{"id":"agent:bench-`...)
	dst = strconv.AppendInt(dst, g.n%8, 10)
	dst = append(dst, `","type":"agent","on_behalf_of":"user:`...)
	dst = append(dst, userNames[g.n%int64(len(userNames))]...)
	dst = append(dst, '@')
	dst = append(dst, tenant...)
	dst = append(dst, `.example"},"session_id":"sess-`...)
	dst = appendHex(dst, g.rng.Uint64(), 8)
	dst = append(dst, `","trace_id":"`...)
	dst = appendHex(dst, g.rng.Uint64(), 8)
	dst = appendHex(dst, g.rng.Uint64(), 8)
	dst = append(dst, `","span_id":"`...)
	dst = appendHex(dst, g.rng.Uint64()|1, 8)
	dst = append(dst, `","attributes":{"gen_ai.operation.name":"chat","gen_ai.provider.name":"openai","gen_ai.request.model":"gpt-4o","gen_ai.response.model":"gpt-4o-2024-08-06","gen_ai.response.id":"chatcmpl-`...)
	dst = appendHex(dst, g.rng.Uint64(), 8)
	dst = append(dst, `","openai.response.system_fingerprint":"fp_`...)
	dst = appendHex(dst, g.rng.Uint64()%8, 4)
	dst = append(dst, `","gen_ai.request.temperature":0.2,"gen_ai.usage.input_tokens":`...)
	dst = strconv.AppendInt(dst, int64(inTok), 10)
	dst = append(dst, `,"gen_ai.usage.output_tokens":`...)
	dst = strconv.AppendInt(dst, int64(outTok), 10)
	dst = append(dst, `,"gen_ai.response.finish_reasons":["stop"]},"content":{"gen_ai.input.messages":`...)
	dst = append(dst, fixedIn1...)
	dst = g.appendNoise(dst, in)
	dst = append(dst, fixedIn2...)
	dst = append(dst, `,"gen_ai.output.messages":`...)
	dst = append(dst, fixedOut1...)
	dst = g.appendNoise(dst, out)
	dst = append(dst, fixedOut2...)
	return append(dst, `}}`...)
}

// noiseAlphabet has 32 symbols, so that a random symbol costs 5 bits: 26
// letters and 6 spaces make word-like text of about 4 letters a word that
// compresses to no better than about 5/8 of its size.
const noiseAlphabet = "abcdefghijklmnopqrstuvwxyz      "

// appendNoise appends n bytes of random text that needs no JSON escaping.
func (g *Generator) appendNoise(dst []byte, n int) []byte {
	for n > 0 {
		r := g.rng.Uint64()
		for i := 0; i < 12 && n > 0; i++ {
			dst = append(dst, noiseAlphabet[r&31])
			r >>= 5
			n--
		}
	}
	return dst
}

// uuid returns a UUIDv7 for time t with random bits from the generator.
func (g *Generator) uuid(t time.Time) [16]byte {
	var u [16]byte
	binary.BigEndian.PutUint64(u[0:8], uint64(t.UnixMilli())<<16|g.rng.Uint64()&0xffff)
	binary.BigEndian.PutUint64(u[8:16], g.rng.Uint64())
	u[6] = 0x70 | u[6]&0x0f
	u[8] = 0x80 | u[8]&0x3f
	return u
}

const hexDigits = "0123456789abcdef"

// appendUUID appends u in quotes, in the canonical hyphenated form.
func appendUUID(dst []byte, u [16]byte) []byte {
	dst = append(dst, '"')
	for i, b := range u {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			dst = append(dst, '-')
		}
		dst = append(dst, hexDigits[b>>4], hexDigits[b&15])
	}
	return append(dst, '"')
}

// appendHex appends the low n bytes of v as 2n lowercase hex digits.
func appendHex(dst []byte, v uint64, n int) []byte {
	for i := n - 1; i >= 0; i-- {
		b := byte(v >> (8 * i))
		dst = append(dst, hexDigits[b>>4], hexDigits[b&15])
	}
	return dst
}

// appendTime appends t in quotes as RFC 3339 UTC with microseconds.
func appendTime(dst []byte, t time.Time) []byte {
	dst = append(dst, '"')
	dst = t.UTC().AppendFormat(dst, "2006-01-02T15:04:05.000000Z")
	return append(dst, '"')
}

// appendString appends s as a JSON string.
func appendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		dst = append(dst, s[start:i]...)
		switch c {
		case '"', '\\':
			dst = append(dst, '\\', c)
		case '\n':
			dst = append(dst, '\\', 'n')
		case '\t':
			dst = append(dst, '\\', 't')
		default:
			dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&15])
		}
		start = i + 1
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// ContentSize returns the raw content bytes of one record: the sum of the
// lengths of the compact JSON of the values of its "content" object. Storage
// benchmarks divide bytes on disk by it.
func ContentSize(record []byte) (int, error) {
	var r struct {
		Content map[string]json.RawMessage `json:"content"`
	}
	if err := json.Unmarshal(record, &r); err != nil {
		return 0, fmt.Errorf("decode record: %w", err)
	}
	n := 0
	var buf bytes.Buffer
	for k, v := range r.Content {
		buf.Reset()
		if err := json.Compact(&buf, v); err != nil {
			return 0, fmt.Errorf("compact content %q: %w", k, err)
		}
		n += buf.Len()
	}
	return n, nil
}
