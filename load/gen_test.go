package load

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"regexp"
	"slices"
	"testing"
	"time"
)

// wireRecord is what a generated record must look like to the server.
type wireRecord struct {
	Kind   string    `json:"kind"`
	ID     string    `json:"id"`
	Time   time.Time `json:"time"`
	Tenant string    `json:"tenant"`
	Actor  struct {
		ID                    string `json:"id"`
		Type                  string `json:"type"`
		OnBehalfOf            string `json:"on_behalf_of"`
		Workload              string `json:"workload"`
		CredentialFingerprint string `json:"credential_fingerprint"`
	} `json:"actor"`
	SessionID    string                     `json:"session_id"`
	TraceID      string                     `json:"trace_id"`
	SpanID       string                     `json:"span_id"`
	ParentSpanID string                     `json:"parent_span_id"`
	Links        []struct{ Rel, ID string } `json:"links"`
	Attributes   map[string]json.RawMessage `json:"attributes"`
	Content      map[string]json.RawMessage `json:"content"`
}

var (
	uuidv7RE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	traceRE  = regexp.MustCompile(`^[0-9a-f]{32}$`)
	spanRE   = regexp.MustCompile(`^[0-9a-f]{16}$`)
	kinds    = []string{"inference", "policy_decision", "tool_call", "downstream_call", "retrieval", "credential", "approval", "access", "erasure"}
)

// checkRecord decodes b strictly and checks the fields the server requires.
func checkRecord(tb testing.TB, b []byte) wireRecord {
	tb.Helper()
	if !json.Valid(b) {
		tb.Fatalf("invalid JSON: %s", b)
	}
	var c bytes.Buffer
	if err := json.Compact(&c, b); err != nil || !bytes.Equal(c.Bytes(), b) {
		tb.Fatalf("record is not compact JSON (%v): %s", err, b)
	}
	var r wireRecord
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(&r); err != nil {
		tb.Fatalf("decode record: %v: %s", err, b)
	}
	switch {
	case !slices.Contains(kinds, r.Kind):
		tb.Fatalf("kind %q: %s", r.Kind, b)
	case !uuidv7RE.MatchString(r.ID):
		tb.Fatalf("id %q is not a UUIDv7", r.ID)
	case r.Time.IsZero() || r.Time.Location() != time.UTC:
		tb.Fatalf("time %v is not set in UTC", r.Time)
	case r.Tenant == "" || r.Actor.ID == "" || r.Actor.Type == "" || r.SessionID == "":
		tb.Fatalf("tenant, actor or session missing: %s", b)
	case !traceRE.MatchString(r.TraceID) || !spanRE.MatchString(r.SpanID):
		tb.Fatalf("trace id %q or span id %q malformed", r.TraceID, r.SpanID)
	case r.ParentSpanID != "" && !spanRE.MatchString(r.ParentSpanID):
		tb.Fatalf("parent span id %q malformed", r.ParentSpanID)
	case len(r.Attributes) == 0:
		tb.Fatalf("no attributes: %s", b)
	}
	for _, l := range r.Links {
		if l.Rel == "" || !uuidv7RE.MatchString(l.ID) {
			tb.Fatalf("bad link %+v", l)
		}
	}
	if r.Kind == "inference" && (r.Content["gen_ai.input.messages"] == nil || r.Content["gen_ai.output.messages"] == nil) {
		tb.Fatalf("inference without input or output messages: %s", b)
	}
	return r
}

func TestGeneratorDeterministic(t *testing.T) {
	for _, mix := range []Mix{MixFixed, MixAgent} {
		t.Run(mix.String(), func(t *testing.T) {
			cfg := GenConfig{Mix: mix, Seed: 42, Stream: 3}
			a, b := NewGenerator(cfg), NewGenerator(cfg)
			other := NewGenerator(GenConfig{Mix: mix, Seed: 42, Stream: 4})
			var buf []byte
			for i := range 300 {
				ra := a.Next()
				buf = b.AppendNext(buf[:0])
				if !bytes.Equal(ra, buf) {
					t.Fatalf("record %d differs between two generators with the same config:\n%s\n%s", i, ra, buf)
				}
				if bytes.Equal(ra, other.Next()) {
					t.Fatalf("record %d is the same in streams 3 and 4", i)
				}
			}
		})
	}
}

func TestGeneratorValid(t *testing.T) {
	for _, mix := range []Mix{MixFixed, MixAgent} {
		t.Run(mix.String(), func(t *testing.T) {
			ids := make(map[string]bool)
			var last time.Time
			for stream := range uint64(3) {
				g := NewGenerator(GenConfig{Mix: mix, Seed: 7, Stream: stream})
				last = time.Time{}
				for range 600 {
					r := checkRecord(t, g.Next())
					if ids[r.ID] {
						t.Fatalf("id %s generated twice", r.ID)
					}
					ids[r.ID] = true
					if r.Time.Before(last) {
						t.Fatalf("time went back from %v to %v", last, r.Time)
					}
					last = r.Time
				}
			}
		})
	}
}

func TestFixedContentBytes(t *testing.T) {
	tests := []struct {
		name     string
		size     int
		wantSize int
	}{
		{"default", 0, DefaultContentBytes},
		{"4KiB", 4096, 4096},
		{"odd", 1001, 1001},
		{"below minimum", 10, MinContentBytes},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewGenerator(GenConfig{ContentBytes: tt.size, Seed: 1})
			seen := make(map[[32]byte]bool)
			for range 50 {
				rec := g.Next()
				r := checkRecord(t, rec)
				if r.Kind != "inference" {
					t.Fatalf("kind %q, want inference", r.Kind)
				}
				n, err := ContentSize(rec)
				if err != nil {
					t.Fatal(err)
				}
				if n != tt.wantSize {
					t.Fatalf("ContentSize = %d, want %d", n, tt.wantSize)
				}
				h := sha256.Sum256(r.Content["gen_ai.input.messages"])
				if seen[h] && tt.wantSize > MinContentBytes {
					t.Fatal("input message repeated")
				}
				seen[h] = true
			}
		})
	}
}

func TestContentSize(t *testing.T) {
	tests := []struct {
		name, record string
		want         int
	}{
		{"none", `{"kind":"access"}`, 0},
		{"compact", `{"content":{"a":[1,2],"b":"xy"}}`, len(`[1,2]`) + len(`"xy"`)},
		{"spaced", `{"content": {"a": [ 1, {"k" : true} ]}}`, len(`[1,{"k":true}]`)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ContentSize([]byte(tt.record))
			if err != nil || got != tt.want {
				t.Fatalf("ContentSize = %d, %v; want %d", got, err, tt.want)
			}
		})
	}
	if _, err := ContentSize([]byte(`{"content":`)); err == nil {
		t.Fatal("ContentSize of truncated JSON: no error")
	}
}

// agentStats describes a sample of MixAgent records.
type agentStats struct {
	records, contentBytes, repeatedBytes int
	kinds                                map[string]int
	inferenceBytes                       []int // record sizes
	systemPromptSeen                     map[string]int
}

// measureAgent generates n records and counts, as the server's
// element-by-element content addressing would, how many content bytes are
// repeats of an element stored before.
func measureAgent(tb testing.TB, cfg GenConfig, n int) agentStats {
	tb.Helper()
	g := NewGenerator(cfg)
	st := agentStats{kinds: make(map[string]int), systemPromptSeen: make(map[string]int)}
	stored := make(map[[32]byte]bool)
	var buf bytes.Buffer
	for range n {
		rec := g.Next()
		r := checkRecord(tb, rec)
		st.records++
		st.kinds[r.Kind]++
		if r.Kind == "inference" {
			st.inferenceBytes = append(st.inferenceBytes, len(rec))
		}
		for k, v := range r.Content {
			var elems []json.RawMessage
			if v[0] != '[' || json.Unmarshal(v, &elems) != nil {
				elems = []json.RawMessage{v}
			}
			st.contentBytes += len(v)
			for i, e := range elems {
				buf.Reset()
				if err := json.Compact(&buf, e); err != nil {
					tb.Fatal(err)
				}
				h := sha256.Sum256(buf.Bytes())
				if stored[h] {
					st.repeatedBytes += buf.Len()
				}
				stored[h] = true
				if k == "gen_ai.input.messages" && i == 0 {
					var m struct {
						Role  string
						Parts []struct{ Content string }
					}
					if err := json.Unmarshal(e, &m); err != nil || m.Role != "system" {
						tb.Fatalf("first input message is not the system prompt: %s", e)
					}
					st.systemPromptSeen[m.Parts[0].Content]++
				}
			}
		}
	}
	return st
}

func TestAgentMix(t *testing.T) {
	cfg := GenConfig{Mix: MixAgent, Seed: 1}
	const n = 2000
	st := measureAgent(t, cfg, n)

	share := func(kind string) float64 { return float64(st.kinds[kind]) / float64(st.records) }
	slices.Sort(st.inferenceBytes)
	t.Logf("kinds: inference %.3f, tool_call %.3f, policy_decision %.3f, downstream_call %.3f",
		share("inference"), share("tool_call"), share("policy_decision"), share("downstream_call"))
	t.Logf("raw content %d B/record, repeated %.3f; inference record p50 %d B, p90 %d B, max %d B",
		st.contentBytes/st.records, float64(st.repeatedBytes)/float64(st.contentBytes),
		st.inferenceBytes[len(st.inferenceBytes)/2], st.inferenceBytes[len(st.inferenceBytes)*9/10], st.inferenceBytes[len(st.inferenceBytes)-1])

	for _, c := range []struct {
		kind   string
		lo, hi float64
	}{
		{"inference", 0.50, 0.58},
		{"tool_call", 0.22, 0.29},
		{"policy_decision", 0.05, 0.11},
		{"downstream_call", 0.10, 0.16},
	} {
		if s := share(c.kind); s < c.lo || s > c.hi {
			t.Errorf("share of %s = %.3f, want in [%.2f, %.2f]", c.kind, s, c.lo, c.hi)
		}
	}
	if r := float64(st.repeatedBytes) / float64(st.contentBytes); r < 0.8 {
		t.Errorf("repeated content = %.3f of raw content, want at least 0.8", r)
	}
	if len(st.systemPromptSeen) != 6 {
		t.Errorf("%d distinct system prompts, want one for each of the 6 agents", len(st.systemPromptSeen))
	}
	for p, seen := range st.systemPromptSeen {
		if seen < 20 {
			t.Errorf("a system prompt was sent %d times in %d records, want it repeated", seen, n)
		}
		if len(p) < 2048 || len(p) > 4096 {
			t.Errorf("system prompt of %d bytes, want 2 to 4 KiB", len(p))
		}
	}
}

func TestAgentWorld(t *testing.T) {
	for seed := range int64(20) {
		s := newAgentState(GenConfig{Seed: seed, Tenants: 3, Agents: len(agentNames)})
		for _, a := range s.agents {
			var defs []json.RawMessage
			if err := json.Unmarshal(a.toolDefs, &defs); err != nil {
				t.Fatalf("tool definitions of %s: %v", a.name, err)
			}
			if len(defs) < 3 || len(defs) > 8 || len(a.toolDefs) < 1024 || len(a.toolDefs) > 4096 {
				t.Errorf("seed %d, agent %s: %d tools in %d bytes, want 3 to 8 in 1 to 4 KiB", seed, a.name, len(defs), len(a.toolDefs))
			}
		}
	}
	// Generators that share a Seed share the world.
	a := NewGenerator(GenConfig{Mix: MixAgent, Seed: 5, Stream: 1}).agent.agents
	b := NewGenerator(GenConfig{Mix: MixAgent, Seed: 5, Stream: 2}).agent.agents
	for i := range a {
		if !bytes.Equal(a[i].systemMsg, b[i].systemMsg) || !bytes.Equal(a[i].toolDefs, b[i].toolDefs) {
			t.Fatalf("agent %d differs between streams of one seed", i)
		}
	}
}

func TestParseMix(t *testing.T) {
	for _, m := range []Mix{MixFixed, MixAgent} {
		got, err := ParseMix(m.String())
		if err != nil || got != m {
			t.Errorf("ParseMix(%q) = %v, %v", m.String(), got, err)
		}
	}
	if _, err := ParseMix("bursty"); err == nil {
		t.Error("ParseMix(bursty): no error")
	}
}

func BenchmarkGenerator(b *testing.B) {
	for _, mix := range []Mix{MixFixed, MixAgent} {
		b.Run(mix.String(), func(b *testing.B) {
			g := NewGenerator(GenConfig{Mix: mix})
			var buf []byte
			for b.Loop() {
				buf = g.AppendNext(buf[:0])
				b.SetBytes(int64(len(buf)))
			}
		})
	}
}
