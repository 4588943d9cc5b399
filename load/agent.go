package load

import (
	"math/rand/v2"
	"strconv"
	"time"
)

// agentProfile is one agent of the MixAgent world. Its system message and
// tool definitions are fixed, so they repeat byte for byte in every inference
// the agent makes.
type agentProfile struct {
	name, tenant string
	model        int
	temperature  string
	users        []string
	tools        []int  // indexes into toolTemplates
	systemMsg    []byte // the system message, a gen_ai.input.messages element
	toolDefs     []byte // the gen_ai.tool.definitions array
	credential   string // keyed fingerprint of the agent's credential
}

// agentState is the MixAgent part of a Generator: the world and the session
// in progress.
type agentState struct {
	agents       []agentProfile
	policyDigest string

	// The session in progress.
	agent     *agentProfile
	user      string
	session   string
	turnsLeft int
	history   [][]byte // messages after the system message, as sent again

	pending [][]byte // records of the current turn not yet returned
	next    int
	spare   [][]byte // buffers to reuse for pending
}

func newAgentState(cfg GenConfig) *agentState {
	// The world depends on the Seed only, not on the Stream.
	rng := rand.New(rand.NewPCG(uint64(cfg.Seed), 0x5bd1e9955bd1e995))
	s := &agentState{policyDigest: "sha256:" + string(appendHex(appendHex(appendHex(appendHex(nil,
		rng.Uint64(), 8), rng.Uint64(), 8), rng.Uint64(), 8), rng.Uint64(), 8))}
	temperatures := []string{"0", "0.2", "0.3", "0.7"}
	for i := range cfg.Agents {
		a := agentProfile{
			name:        agentNames[i],
			tenant:      tenantNames[i%cfg.Tenants],
			model:       i % len(models),
			temperature: temperatures[rng.IntN(len(temperatures))],
			credential:  "hmac-sha256:" + string(appendHex(appendHex(nil, rng.Uint64(), 8), rng.Uint64(), 8)),
		}
		for _, u := range rng.Perm(len(userNames))[:2+rng.IntN(3)] {
			a.users = append(a.users, "user:"+userNames[u]+"@"+a.tenant+".example")
		}
		a.tools = rng.Perm(len(toolTemplates))[:3+rng.IntN(6)]
		a.systemMsg = textMessage(nil, "system", systemPrompt(rng, &a), "")
		a.toolDefs = toolDefinitions(rng, a.tools)
		s.agents = append(s.agents, a)
	}
	return s
}

// systemPrompt returns 2 to 4 KiB of instructions for agent a.
func systemPrompt(rng *rand.Rand, a *agentProfile) string {
	const most = 4096
	target := 2048 + rng.IntN(most-2048+1)
	b := []byte("You are " + a.name + ", an assistant that works for " + a.tenant +
		" employees and customers. Follow these rules in order of priority.")
	for _, i := range rng.Perm(len(instructions)) {
		if len(b) >= target || len(b)+1+len(instructions[i]) > most {
			break
		}
		b = append(b, ' ')
		b = append(b, instructions[i]...)
	}
	for len(b) < target {
		start := len(b)
		b = append(b, ' ')
		b = appendSentence(rng, b, 8, 20)
		if len(b) > most {
			b = b[:start]
			break
		}
	}
	return string(b)
}

// toolDefinitions returns the JSON array of the definitions of tools, 1 to
// 4 KiB in all.
func toolDefinitions(rng *rand.Rand, tools []int) []byte {
	target := (1200 + rng.IntN(2800)) / len(tools)
	out := []byte{'['}
	for i, ti := range tools {
		if i > 0 {
			out = append(out, ',')
		}
		t := &toolTemplates[ti]
		desc := []byte(t.desc)
		for {
			def := toolDefinition(nil, t, desc)
			gap := target - len(def)
			if gap <= 0 {
				out = append(out, def...)
				break
			}
			n := len(desc)
			desc = append(desc, ' ')
			if gap > 140 {
				desc = appendSentence(rng, desc, 8, 16)
			} else {
				desc = append(desc, words[rng.IntN(len(words))]...)
			}
			if len(desc)-n > gap {
				out = append(out, toolDefinition(nil, t, desc[:n])...)
				break
			}
		}
	}
	return append(out, ']')
}

func toolDefinition(dst []byte, t *toolTemplate, desc []byte) []byte {
	dst = append(dst, `{"type":"function","name":`...)
	dst = appendString(dst, t.name)
	dst = append(dst, `,"description":`...)
	dst = appendString(dst, string(desc))
	dst = append(dst, `,"parameters":{"type":"object","properties":{`...)
	for i, p := range t.params {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendString(dst, p.name)
		dst = append(dst, `:{"type":"`...)
		switch p.typ {
		case pInt:
			dst = append(dst, "integer"...)
		case pAmount:
			dst = append(dst, "number"...)
		case pBool:
			dst = append(dst, "boolean"...)
		default:
			dst = append(dst, "string"...)
		}
		dst = append(dst, `","description":`...)
		dst = appendString(dst, p.desc)
		dst = append(dst, '}')
	}
	dst = append(dst, `},"required":[`...)
	for i, p := range t.params {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendString(dst, p.name)
	}
	return append(dst, `],"additionalProperties":false}}`...)
}

// appendSentence appends a sentence of lo to hi words; some nouns are
// followed by a number, as in "invoice 4821".
func appendSentence(rng *rand.Rand, dst []byte, lo, hi int) []byte {
	n := lo + rng.IntN(hi-lo+1)
	for i := range n {
		if i > 0 {
			dst = append(dst, ' ')
		}
		w := words[rng.IntN(len(words))]
		if i == 0 {
			dst = append(dst, w[0]-'a'+'A')
			dst = append(dst, w[1:]...)
		} else {
			dst = append(dst, w...)
		}
		switch w {
		case "invoice", "order", "ticket", "amount", "number", "account":
			dst = append(dst, ' ')
			dst = strconv.AppendInt(dst, 100+rng.Int64N(99900), 10)
		}
	}
	return append(dst, '.')
}

// appendProse appends lo to hi sentences.
func appendProse(rng *rand.Rand, dst []byte, lo, hi int) []byte {
	n := lo + rng.IntN(hi-lo+1)
	for i := range n {
		if i > 0 {
			dst = append(dst, ' ')
		}
		dst = appendSentence(rng, dst, 5, 18)
	}
	return dst
}

// textMessage appends a message with one text part; finish is the finish
// reason of an output message, "" for a message sent as input.
func textMessage(dst []byte, role, text, finish string) []byte {
	dst = append(dst, `{"role":"`...)
	dst = append(dst, role...)
	dst = append(dst, `","parts":[{"type":"text","content":`...)
	dst = appendString(dst, text)
	dst = append(dst, `}]`...)
	if finish != "" {
		dst = append(dst, `,"finish_reason":"`...)
		dst = append(dst, finish...)
		dst = append(dst, '"')
	}
	return append(dst, '}')
}

// toolCall is a tool call the model asked for in the current turn.
type toolCall struct {
	tool *toolTemplate
	id   string // the model's tool-call id
	args []byte // JSON object
}

// genTurn generates the records of one user turn of the current session,
// starting a new session first when the current one has no turns left.
func (g *Generator) genTurn() {
	s := g.agent
	for _, b := range s.pending {
		s.spare = append(s.spare, b[:0])
	}
	s.pending, s.next = s.pending[:0], 0
	if s.turnsLeft == 0 {
		s.agent = &s.agents[g.rng.IntN(len(s.agents))]
		s.user = s.agent.users[g.rng.IntN(len(s.agent.users))]
		s.session = "sess-" + string(appendHex(nil, g.rng.Uint64(), 8))
		s.turnsLeft = 2 + g.rng.IntN(7)
		s.history = s.history[:0]
	}
	s.turnsLeft--
	a := s.agent
	tr := turn{trace: string(appendHex(appendHex(nil, g.rng.Uint64(), 8), g.rng.Uint64(), 8)), root: g.rng.Uint64() | 1}

	text := appendProse(g.rng, nil, 1, 4)
	s.history = append(s.history, textMessage(nil, "user", string(text), ""))

	var calls []toolCall
	if g.rng.IntN(100) < 60 {
		n := 1
		if g.rng.IntN(100) < 30 {
			n = 2
		}
		for range n {
			t := &toolTemplates[a.tools[g.rng.IntN(len(a.tools))]]
			calls = append(calls, toolCall{tool: t, id: "call_" + string(appendHex(nil, g.rng.Uint64(), 8)), args: g.toolArgs(t)})
		}
	}

	// The model answers, or asks for tools.
	out, finish := toolCallMessage(nil, calls, "tool_call"), "tool_call"
	if len(calls) == 0 {
		out, finish = textMessage(nil, "assistant", string(appendProse(g.rng, nil, 2, 8)), "stop"), "stop"
	}
	first := g.emitInference(&tr, out, finish, [16]byte{})
	if len(calls) == 0 {
		s.history = append(s.history, withoutFinish(out))
		return
	}
	s.history = append(s.history, toolCallMessage(nil, calls, ""))

	for _, c := range calls {
		span := g.rng.Uint64() | 1
		denied := false
		if g.rng.IntN(100) < 30 {
			denied = g.rng.IntN(100) < 5
			g.emitPolicy(&tr, c, first, denied)
		}
		var result []byte
		if denied {
			result = []byte(`{"error":"denied by policy agents/tool_access"}`)
		} else {
			result = g.toolResult(c.tool)
			toolID := g.emitToolCall(&tr, span, c, result, first)
			if g.rng.IntN(100) < 50 {
				g.emitDownstream(&tr, span, c, toolID)
			}
		}
		m := append([]byte(nil), `{"role":"tool","parts":[{"type":"tool_call_response","id":"`...)
		m = append(m, c.id...)
		m = append(m, `","response":`...)
		m = append(m, result...)
		s.history = append(s.history, append(m, `}]}`...))
	}

	// The model answers with the tool results.
	out = textMessage(nil, "assistant", string(appendProse(g.rng, nil, 2, 8)), "stop")
	g.emitInference(&tr, out, "stop", first)
	s.history = append(s.history, withoutFinish(out))
}

// turn is the trace of one user turn.
type turn struct {
	trace string
	root  uint64 // the span of the agent invocation, parent of inferences and tool calls
}

// withoutFinish returns the output message m as it is sent back as input:
// without its finish reason.
func withoutFinish(m []byte) []byte {
	const suffix = `,"finish_reason":"stop"}`
	return append(append([]byte(nil), m[:len(m)-len(suffix)]...), '}')
}

func toolCallMessage(dst []byte, calls []toolCall, finish string) []byte {
	dst = append(dst, `{"role":"assistant","parts":[`...)
	for i, c := range calls {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, `{"type":"tool_call","id":"`...)
		dst = append(dst, c.id...)
		dst = append(dst, `","name":"`...)
		dst = append(dst, c.tool.name...)
		dst = append(dst, `","arguments":`...)
		dst = append(dst, c.args...)
		dst = append(dst, '}')
	}
	dst = append(dst, ']')
	if finish != "" {
		dst = append(dst, `,"finish_reason":"`...)
		dst = append(dst, finish...)
		dst = append(dst, '"')
	}
	return append(dst, '}')
}

func (g *Generator) toolArgs(t *toolTemplate) []byte {
	b := []byte{'{'}
	for i, p := range t.params {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, p.name)
		b = append(b, ':')
		switch p.typ {
		case pID:
			b = append(b, '"')
			b = append(b, p.name[:min(3, len(p.name))]...)
			b = append(b, '_')
			b = appendHex(b, g.rng.Uint64(), 4)
			b = append(b, '"')
		case pText:
			b = appendString(b, string(appendSentence(g.rng, nil, 3, 24)))
		case pInt:
			b = strconv.AppendInt(b, 1+g.rng.Int64N(9999), 10)
		case pAmount:
			b = strconv.AppendInt(b, 10+g.rng.Int64N(20000), 10)
			b = append(b, '.')
			b = strconv.AppendInt(b, 10+g.rng.Int64N(90), 10)
		case pEnum:
			b = appendString(b, enumValues[g.rng.IntN(len(enumValues))])
		case pBool:
			b = strconv.AppendBool(b, g.rng.IntN(2) == 0)
		}
	}
	return append(b, '}')
}

func (g *Generator) toolResult(t *toolTemplate) []byte {
	b := []byte(`{"status":"ok","ref":"`)
	b = append(b, t.name[:3]...)
	b = append(b, '_')
	b = appendHex(b, g.rng.Uint64(), 6)
	b = append(b, `","summary":`...)
	b = appendString(b, string(appendProse(g.rng, nil, 1, 6)))
	return append(b, '}')
}

// record starts a record in a pending buffer: every field up to and
// including span_id and parent_span_id. The caller appends links,
// attributes and content and closes the object.
func (g *Generator) record(kind string, id [16]byte, t time.Time, tr *turn, span, parent uint64, credential bool) []byte {
	s := g.agent
	var b []byte
	if n := len(s.spare); n > 0 {
		b, s.spare = s.spare[n-1], s.spare[:n-1]
	}
	b = append(b, `{"kind":"`...)
	b = append(b, kind...)
	b = append(b, `","id":`...)
	b = appendUUID(b, id)
	b = append(b, `,"time":`...)
	b = appendTime(b, t)
	b = append(b, `,"tenant":"`...)
	b = append(b, s.agent.tenant...)
	b = append(b, `","actor":{"id":"agent:`...)
	b = append(b, s.agent.name...)
	b = append(b, `","type":"agent","on_behalf_of":"`...)
	b = append(b, s.user...)
	b = append(b, `","workload":"spiffe://`...)
	b = append(b, s.agent.tenant...)
	b = append(b, `.example/agent/`...)
	b = append(b, s.agent.name...)
	if credential {
		b = append(b, `","credential_fingerprint":"`...)
		b = append(b, s.agent.credential...)
	}
	b = append(b, `"},"session_id":"`...)
	b = append(b, s.session...)
	b = append(b, `","trace_id":"`...)
	b = append(b, tr.trace...)
	b = append(b, `","span_id":"`...)
	b = appendHex(b, span, 8)
	b = append(b, `","parent_span_id":"`...)
	b = appendHex(b, parent, 8)
	return append(b, '"')
}

func appendLink(b []byte, rel string, id [16]byte) []byte {
	b = append(b, `,"links":[{"rel":"`...)
	b = append(b, rel...)
	b = append(b, `","id":`...)
	b = appendUUID(b, id)
	return append(b, `}]`...)
}

// emitInference adds an inference whose input is the system message and the
// session history, and whose output is out. A non-zero follows links it to
// the inference it continues.
func (g *Generator) emitInference(tr *turn, out []byte, finish string, follows [16]byte) [16]byte {
	s := g.agent
	a := s.agent
	m := &models[a.model]
	t := g.tick()
	id := g.uuid(t)
	b := g.record("inference", id, t, tr, g.rng.Uint64()|1, tr.root, false)
	if follows != ([16]byte{}) {
		b = appendLink(b, "follows", follows)
	}
	in := len(a.systemMsg) + len(a.toolDefs)
	for _, h := range s.history {
		in += len(h) + 1
	}
	b = append(b, `,"attributes":{"gen_ai.operation.name":"chat","gen_ai.provider.name":"`...)
	b = append(b, m.provider...)
	b = append(b, `","gen_ai.agent.name":"`...)
	b = append(b, a.name...)
	b = append(b, `","gen_ai.request.model":"`...)
	b = append(b, m.request...)
	b = append(b, `","gen_ai.response.model":"`...)
	b = append(b, m.response...)
	b = append(b, `","gen_ai.response.id":"resp_`...)
	b = appendHex(b, g.rng.Uint64(), 8)
	b = append(b, '"')
	if m.provider == "openai" {
		b = append(b, `,"openai.response.system_fingerprint":"fp_`...)
		b = appendHex(b, uint64(a.model), 4)
		b = append(b, '"')
	}
	b = append(b, `,"gen_ai.request.temperature":`...)
	b = append(b, a.temperature...)
	b = append(b, `,"gen_ai.request.max_tokens":1024,"gen_ai.usage.input_tokens":`...)
	b = strconv.AppendInt(b, int64(in/4), 10)
	b = append(b, `,"gen_ai.usage.output_tokens":`...)
	b = strconv.AppendInt(b, int64(len(out)/4), 10)
	b = append(b, `,"gen_ai.response.finish_reasons":["`...)
	b = append(b, finish...)
	b = append(b, `"]},"content":{"gen_ai.input.messages":[`...)
	b = append(b, a.systemMsg...)
	for _, h := range s.history {
		b = append(b, ',')
		b = append(b, h...)
	}
	b = append(b, `],"gen_ai.output.messages":[`...)
	b = append(b, out...)
	b = append(b, `],"gen_ai.tool.definitions":`...)
	b = append(b, a.toolDefs...)
	s.pending = append(s.pending, append(b, `}}`...))
	return id
}

func (g *Generator) emitPolicy(tr *turn, c toolCall, inference [16]byte, denied bool) {
	s := g.agent
	t := g.tick()
	b := g.record("policy_decision", g.uuid(t), t, tr, g.rng.Uint64()|1, tr.root, false)
	b = appendLink(b, "governs", inference)
	b = append(b, `,"attributes":{"policy.engine":"opa","policy.id":"agents/tool_access","policy.bundle_digest":"`...)
	b = append(b, s.policyDigest...)
	b = append(b, `","policy.input_digest":"sha256:`...)
	for range 4 {
		b = appendHex(b, g.rng.Uint64(), 8)
	}
	b = append(b, `","policy.result":"`...)
	if denied {
		b = append(b, "deny"...)
	} else {
		b = append(b, "allow"...)
	}
	b = append(b, `","gen_ai.tool.name":"`...)
	b = append(b, c.tool.name...)
	b = append(b, `","gen_ai.tool.call.id":"`...)
	b = append(b, c.id...)
	b = append(b, `"},"content":{"policy.input":{"tenant":"`...)
	b = append(b, s.agent.tenant...)
	b = append(b, `","agent":"agent:`...)
	b = append(b, s.agent.name...)
	b = append(b, `","tool":"`...)
	b = append(b, c.tool.name...)
	b = append(b, `","arguments":`...)
	b = append(b, c.args...)
	b = append(b, `},"policy.reasons":[`...)
	if denied {
		b = append(b, `"tool not allowed for this principal"`...)
	}
	s.pending = append(s.pending, append(b, `]}}`...))
}

func (g *Generator) emitToolCall(tr *turn, span uint64, c toolCall, result []byte, inference [16]byte) [16]byte {
	t := g.tick()
	id := g.uuid(t)
	b := g.record("tool_call", id, t, tr, span, tr.root, false)
	b = appendLink(b, "answers", inference)
	b = append(b, `,"attributes":{"gen_ai.operation.name":"execute_tool","gen_ai.tool.type":"function","gen_ai.tool.name":"`...)
	b = append(b, c.tool.name...)
	b = append(b, `","gen_ai.tool.call.id":"`...)
	b = append(b, c.id...)
	b = append(b, `","tool.duration_ms":`...)
	b = strconv.AppendInt(b, 5+g.rng.Int64N(800), 10)
	b = append(b, `},"content":{"gen_ai.tool.call.arguments":`...)
	b = append(b, c.args...)
	b = append(b, `,"gen_ai.tool.call.result":`...)
	b = append(b, result...)
	g.agent.pending = append(g.agent.pending, append(b, `}}`...))
	return id
}

func (g *Generator) emitDownstream(tr *turn, parent uint64, c toolCall, toolID [16]byte) {
	t := g.tick()
	b := g.record("downstream_call", g.uuid(t), t, tr, g.rng.Uint64()|1, parent, true)
	b = appendLink(b, "follows", toolID)
	tt := c.tool
	if tt.method == "" {
		b = append(b, `,"attributes":{"db.system.name":"`...)
		b = append(b, tt.host...)
		b = append(b, `","db.operation.name":"`...)
		b = append(b, tt.path...)
		b = append(b, `","server.address":"`...)
		b = append(b, tt.name[:3]...)
		b = append(b, `-db.internal.example","db.response.returned_rows":`...)
		b = strconv.AppendInt(b, g.rng.Int64N(200), 10)
	} else {
		b = append(b, `,"attributes":{"http.request.method":"`...)
		b = append(b, tt.method...)
		b = append(b, `","server.address":"`...)
		b = append(b, tt.host...)
		b = append(b, `","url.path":"`...)
		b = append(b, tt.path...)
		b = append(b, `","http.response.status_code":`...)
		if tt.method == "POST" {
			b = append(b, "201"...)
		} else {
			b = append(b, "200"...)
		}
		b = append(b, `,"http.response.body.digest":"sha256:`...)
		for range 4 {
			b = appendHex(b, g.rng.Uint64(), 8)
		}
		b = append(b, '"')
	}
	b = append(b, `,"duration_ms":`...)
	b = strconv.AppendInt(b, 2+g.rng.Int64N(300), 10)
	g.agent.pending = append(g.agent.pending, append(b, `}}`...))
}

func (g *Generator) appendAgent(dst []byte) []byte {
	s := g.agent
	if s.next == len(s.pending) {
		g.genTurn()
	}
	r := s.pending[s.next]
	s.next++
	return append(dst, r...)
}
