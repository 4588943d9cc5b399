package otlp

import (
	"cmp"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
	"unsafe"

	collogspb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	logspb "go.opentelemetry.io/proto/otlp/logs/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/infertrail/infertrail"
)

// This file maps OTLP spans and log records to records. docs/otlp.md is
// its reference: every rule here has a row there.

// MapConfig configures a Mapper. Zero values are documented defaults.
type MapConfig struct {
	// Tenant is the tenant of the records of a request mapped with an
	// empty tenant (default infertrail.DefaultTenant). The receiver passes
	// each request's tenant, from the caller's token, to Traces and Logs.
	Tenant string
	// KeepIrrelevant keeps spans and log records that have nothing to do
	// with an AI interaction, as downstream_call records. By default they
	// are dropped and counted in Result.Dropped.
	KeepIrrelevant bool
	// MaxTraces bounds the traces whose GenAI context (the acting agent,
	// and whether the trace has GenAI spans) is remembered from one
	// request to the next (default 100,000). The least recently used are
	// forgotten first.
	MaxTraces int
}

// Mapper maps OTLP export requests to records. It remembers, for a
// bounded number of traces, the agent acting in the trace and whether the
// trace has GenAI spans, so that spans arriving in later requests are
// attributed and kept alike. It is safe for concurrent use.
type Mapper struct {
	tenant string
	keep   bool
	mem    traceMemory
}

// NewMapper returns a Mapper.
func NewMapper(cfg MapConfig) (*Mapper, error) {
	if cfg.Tenant == "" {
		cfg.Tenant = infertrail.DefaultTenant
	}
	if !infertrail.ValidTenant(cfg.Tenant) {
		return nil, fmt.Errorf("new OTLP mapper: tenant %q: want 1 to 128 characters of A-Z a-z 0-9 . _ - starting with a letter or digit: %w", cfg.Tenant, infertrail.ErrInvalid)
	}
	if cfg.MaxTraces < 0 {
		return nil, fmt.Errorf("new OTLP mapper: MaxTraces is %d, want 0 (the default) or more: %w", cfg.MaxTraces, infertrail.ErrInvalid)
	}
	if cfg.MaxTraces == 0 {
		cfg.MaxTraces = 100_000
	}
	m := &Mapper{tenant: cfg.Tenant, keep: cfg.KeepIrrelevant}
	m.mem.half = max(1, cfg.MaxTraces/2)
	return m, nil
}

// Result is what one export request becomes.
type Result struct {
	Records []*infertrail.Record
	Dropped int // spans or log records not relevant to an AI interaction (not stored)
}

// Limits of what a record made from OTLP data holds. Attributes are in
// clear in the leaf forever and a leaf holds at most 64 KiB, so they are
// bounded well below the trail's own limits.
const (
	maxAttrValue    = 4 << 10  // one attribute value's canonical JSON
	maxAttrs        = 128      // attributes per record, the counters included
	maxClearBytes   = 48 << 10 // names and values of a record's attributes
	maxContentValue = 16 << 20 // one content value (the trail's default limit)
	maxContentField = 64       // content fields per record (the trail's default limit)
	maxStringBytes  = 1024     // actor and session strings (the trail's default limit)
	maxNesting      = 64       // arrays and maps within an attribute value
	maxAncestors    = 64       // parent spans walked to find the acting agent
	maxFlatIndex    = 1024     // gen_ai.prompt.N / gen_ai.completion.N indexes read
)

// The attributes that count what a record's limits left out.
const (
	attrDropped        = "infertrail.otlp.attributes_dropped"
	attrContentDropped = "infertrail.otlp.content_dropped"
)

// otlpSource is the capture path of every record made here.
const otlpSource = "otlp"

// spanKey is a trace id followed by a span id.
type spanKey [24]byte

func (k *spanKey) trace() [16]byte { return [16]byte(k[:16]) }

// agent is the identity of an agent, from gen_ai.agent.* attributes, and
// what its span says of the human it acts for and of the session.
type agent struct {
	id, name, version string
	actor             string // "agent:<id or name>", clean
	onBehalf, session string // clean
}

func newAgent(id, name, version, onBehalf, session string) agent {
	a := agent{id: id, name: name, version: version, onBehalf: cleanString(onBehalf), session: cleanString(session)}
	switch {
	case id != "":
		a.actor = cleanString("agent:" + id)
	case name != "":
		a.actor = cleanString("agent:" + name)
	}
	return a
}

func (a agent) known() bool { return a.actor != "" }

// traceMemo is what the Mapper remembers of a trace.
type traceMemo struct {
	genAI bool
	agent agent
}

// traceMemory is a two-generation map: when the current generation is
// full it becomes the old one, and the old one is forgotten. A trace found
// in the old generation moves to the current one.
type traceMemory struct {
	mu       sync.Mutex
	half     int
	cur, old map[[16]byte]traceMemo
}

// get must be called with mu held.
func (t *traceMemory) get(k [16]byte) (traceMemo, bool) {
	if v, ok := t.cur[k]; ok {
		return v, true
	}
	v, ok := t.old[k]
	if ok {
		delete(t.old, k)
		t.put(k, v)
	}
	return v, ok
}

// put must be called with mu held.
func (t *traceMemory) put(k [16]byte, v traceMemo) {
	if t.cur == nil {
		t.cur = make(map[[16]byte]traceMemo)
	}
	if _, ok := t.cur[k]; !ok && len(t.cur) >= t.half {
		t.old, t.cur = t.cur, make(map[[16]byte]traceMemo, t.half)
	}
	t.cur[k] = v
}

// traceState is what one request knows of a trace.
type traceState struct {
	hex   string    // the trace id in lowercase hex
	genAI bool      // the request has GenAI spans or events of the trace
	agent agent     // the first agent span of the trace in the request
	memo  traceMemo // what earlier requests taught
}

// spanClass is what a span is evidence of.
type spanClass uint8

const (
	classIrrelevant spanClass = iota
	classInference            // chat, generate_content, text_completion, embeddings
	classTool                 // execute_tool, MCP tools/call
	classAgent                // invoke_agent, create_agent
	classGuardrail            // apply_guardrail, run_guardrail, or only gen_ai.guardrail.* attributes
	classRetrieval            // retrieval, MCP resources/read and prompts/get
	classGenAIOther           // other GenAI operations and MCP methods
	classHTTP                 // an HTTP client span
	classDB                   // a database client span
)

// genAI reports whether spans of the spanClass make their trace an AI
// interaction.
func (c spanClass) genAI() bool { return c != classIrrelevant && c != classHTTP && c != classDB }

func (c spanClass) kind() infertrail.Kind {
	switch c {
	case classInference:
		return infertrail.KindInference
	case classTool:
		return infertrail.KindToolCall
	case classGuardrail:
		return infertrail.KindPolicyDecision
	case classRetrieval:
		return infertrail.KindRetrieval
	}
	return infertrail.KindDownstreamCall
}

// spanRef is one span of a request, as the first pass reads it.
type spanRef struct {
	sp        *tracepb.Span
	res       *resourceInfo
	scope     []kvBytes // otel.scope.name and otel.scope.version
	key       spanKey
	parent    [8]byte
	hasParent bool
	ts        *traceState
	spanClass spanClass
	op        string // gen_ai.operation.name, or what an older span implies
	guard     bool   // has gen_ai.guardrail.* attributes
	agentSpan bool   // invoke_agent or create_agent
	agent     agent  // from the span's own gen_ai.agent.* attributes
	dup       bool   // the same span came earlier in the request
	rec       *infertrail.Record
}

// Traces maps a trace export request. An invalid span (trace id not 16
// bytes or all zero, span id not 8 bytes or zero, no start time, end
// before start, a kind it cannot read) is an error naming it (resource
// index, scope index, span index, field) that wraps infertrail.ErrInvalid;
// then nothing of the request is to be stored. An empty tenant means the
// configured one.
func (m *Mapper) Traces(req *coltracepb.ExportTraceServiceRequest, tenant string) (Result, error) {
	tenant, err := m.tenantOf(tenant)
	if err != nil {
		return Result{}, err
	}
	rq := newMapping(m, tenant)
	n := 0
	for _, rs := range req.GetResourceSpans() {
		for _, ss := range rs.GetScopeSpans() {
			n += len(ss.GetSpans())
		}
	}
	spans := make([]spanRef, 0, n)
	index := make(map[spanKey]int32, n)
	traces := map[[16]byte]*traceState{}
	size := 0

	// First pass: check every span, classify it, and gather what each
	// trace says of itself.
	for ri, rs := range req.GetResourceSpans() {
		resInfo := rq.resource(rs.GetResource())
		for si, ss := range rs.GetScopeSpans() {
			scope := rq.scope(ss.GetScope())
			for pi, sp := range ss.GetSpans() {
				s := spanRef{sp: sp, res: resInfo, scope: scope}
				if err := checkSpan(sp, &s); err != nil {
					err.Field = fmt.Sprintf("resourceSpans[%d].scopeSpans[%d].spans[%d].%s", ri, si, pi, err.Field)
					return Result{}, err
				}
				size += classify(&s)
				tid := s.key.trace()
				ts := traces[tid]
				if ts == nil {
					ts = &traceState{hex: hex.EncodeToString(tid[:])}
					traces[tid] = ts
				}
				s.ts = ts
				if _, ok := index[s.key]; ok {
					s.dup = true
				} else {
					index[s.key] = int32(len(spans))
				}
				if s.spanClass.genAI() {
					ts.genAI = true
				}
				if s.agentSpan && s.agent.known() && !ts.agent.known() {
					ts.agent = s.agent
				}
				spans = append(spans, s)
			}
		}
	}
	m.recall(traces)
	rq.reserve(size + size/4)

	// Second pass: one record per relevant span, and one more for the
	// guardrail attributes of a span that is evidence of something else.
	res := Result{Records: make([]*infertrail.Record, 0, len(spans)+1)}
	for i := range spans {
		s := &spans[i]
		if s.dup {
			res.Dropped++
			continue
		}
		c := s.spanClass
		if (c == classHTTP || c == classDB) && !s.ts.genAI && !s.ts.memo.genAI {
			c = classIrrelevant
		}
		if c == classIrrelevant && !m.keep {
			res.Dropped++
			continue
		}
		// The acting agent: the agent span's own, the nearest one above
		// the span, the one remembered for the trace, the trace's first
		// in the request, or, last, the one a span of another kind names.
		var ag agent
		if s.agentSpan {
			ag = s.agent
		}
		for _, next := range [...]func() agent{
			func() agent { return ancestorAgent(spans, index, s) },
			func() agent { return s.ts.memo.agent },
			func() agent { return s.ts.agent },
			func() agent { return s.agent },
		} {
			if ag.known() {
				break
			}
			ag = next()
		}
		s.rec = rq.spanRecord(s, c, ag, false)
		res.Records = append(res.Records, s.rec)
		if s.guard && c != classGuardrail {
			g := rq.spanRecord(s, classGuardrail, ag, true)
			g.Links = []infertrail.Link{{Rel: "governs", ID: s.rec.ID}}
			res.Records = append(res.Records, g)
		}
	}

	// Third pass: link records to their parent span's record.
	for i := range spans {
		s := &spans[i]
		if s.rec == nil || !s.hasParent {
			continue
		}
		rel := ""
		switch s.rec.Kind {
		case infertrail.KindDownstreamCall:
			rel = "child_of"
		case infertrail.KindPolicyDecision:
			rel = "governs"
		default:
			continue
		}
		pk := s.key
		copy(pk[16:], s.parent[:])
		if j, ok := index[pk]; ok && spans[j].rec != nil {
			s.rec.Links = append(s.rec.Links, infertrail.Link{Rel: rel, ID: spans[j].rec.ID})
		}
	}
	m.remember(traces)
	return res, nil
}

// tenantOf checks a request's tenant.
func (m *Mapper) tenantOf(tenant string) (string, error) {
	if tenant == "" {
		return m.tenant, nil
	}
	if !infertrail.ValidTenant(tenant) {
		return "", fmt.Errorf("map OTLP request: tenant %q is not a valid tenant name: %w", tenant, infertrail.ErrInvalid)
	}
	return tenant, nil
}

// recall fills in what earlier requests taught of the request's traces.
func (m *Mapper) recall(traces map[[16]byte]*traceState) {
	m.mem.mu.Lock()
	defer m.mem.mu.Unlock()
	for k, ts := range traces {
		ts.memo, _ = m.mem.get(k)
	}
}

// remember keeps what the request taught of its traces: that they have
// GenAI spans, and the first agent seen acting in each (it is not
// replaced later, so a trace's records keep one identity).
func (m *Mapper) remember(traces map[[16]byte]*traceState) {
	m.mem.mu.Lock()
	defer m.mem.mu.Unlock()
	for k, ts := range traces {
		if !ts.genAI && !ts.agent.known() {
			continue
		}
		v, _ := m.mem.get(k)
		old := v
		v.genAI = v.genAI || ts.genAI
		if !v.agent.known() {
			v.agent = ts.agent
		}
		if v != old {
			m.mem.put(k, v)
		}
	}
}

// ancestorAgent is the agent of the nearest invoke_agent or create_agent
// span among s's ancestors in the request.
func ancestorAgent(spans []spanRef, index map[spanKey]int32, s *spanRef) agent {
	cur := s
	for range maxAncestors {
		if !cur.hasParent {
			break
		}
		pk := cur.key
		copy(pk[16:], cur.parent[:])
		j, ok := index[pk]
		if !ok {
			break
		}
		cur = &spans[j]
		if cur.agentSpan && cur.agent.known() {
			return cur.agent
		}
	}
	return agent{}
}

// checkSpan checks a span's ids, times and kind, and fills s.key and
// s.parent.
func checkSpan(sp *tracepb.Span, s *spanRef) *infertrail.FieldError {
	bad := func(field, format string, args ...any) *infertrail.FieldError {
		return &infertrail.FieldError{Record: -1, Field: field, Reason: fmt.Sprintf(format, args...), Err: infertrail.ErrInvalid}
	}
	tid, sid, pid := sp.GetTraceId(), sp.GetSpanId(), sp.GetParentSpanId()
	switch {
	case len(tid) != 16:
		return bad("traceId", "is %d bytes, want 16", len(tid))
	case isZeroID(tid):
		return bad("traceId", "is all zero")
	case len(sid) != 8:
		return bad("spanId", "is %d bytes, want 8", len(sid))
	case isZeroID(sid):
		return bad("spanId", "is all zero")
	case len(pid) != 0 && len(pid) != 8:
		return bad("parentSpanId", "is %d bytes, want 8 or none", len(pid))
	}
	copy(s.key[:16], tid)
	copy(s.key[16:], sid)
	if len(pid) == 8 && !isZeroID(pid) {
		copy(s.parent[:], pid)
		s.hasParent = true
	}
	start, end := sp.GetStartTimeUnixNano(), sp.GetEndTimeUnixNano()
	switch {
	case start == 0:
		return bad("startTimeUnixNano", "is missing")
	case start > math.MaxInt64:
		return bad("startTimeUnixNano", "%d is after the year 2262", start)
	case end < start:
		return bad("endTimeUnixNano", "%d is before the start, %d", end, start)
	case end > math.MaxInt64:
		return bad("endTimeUnixNano", "%d is after the year 2262", end)
	}
	if k := sp.GetKind(); k < tracepb.Span_SPAN_KIND_UNSPECIFIED || k > tracepb.Span_SPAN_KIND_CONSUMER {
		return bad("kind", "%d is not a span kind", int32(k))
	}
	return nil
}

func isZeroID(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// classify reads what a span is evidence of from its attributes. It
// returns about how many bytes the span's values take in JSON.
func classify(s *spanRef) int {
	size := 96 + len(s.sp.GetName())
	var system, llmType, mcpMethod, agentID, agentName, agentVersion string
	var user, endUser, session, conversation string
	var httpMethod, dbSystem, anyGenAI bool
	for _, kv := range s.sp.GetAttributes() {
		k := kv.GetKey()
		size += 8 + len(kv.GetValue().GetStringValue())
		if !strings.HasPrefix(k, "gen_ai.") {
			switch k {
			case "enduser.id":
				endUser = kv.GetValue().GetStringValue()
			case "user.id":
				user = kv.GetValue().GetStringValue()
			case "session.id":
				session = kv.GetValue().GetStringValue()
			case "mcp.method.name":
				mcpMethod = kv.GetValue().GetStringValue()
			case "http.request.method", "http.method":
				httpMethod = true
			case "db.system.name", "db.system":
				dbSystem = true
			case "llm.request.type":
				llmType = kv.GetValue().GetStringValue()
			}
			continue
		}
		anyGenAI = true
		switch k {
		case "gen_ai.operation.name":
			s.op = kv.GetValue().GetStringValue()
		case "gen_ai.system", "gen_ai.provider.name":
			system = kv.GetValue().GetStringValue()
		case "gen_ai.agent.id":
			agentID = kv.GetValue().GetStringValue()
		case "gen_ai.agent.name":
			agentName = kv.GetValue().GetStringValue()
		case "gen_ai.agent.version":
			agentVersion = kv.GetValue().GetStringValue()
		case "gen_ai.conversation.id":
			conversation = kv.GetValue().GetStringValue()
		default:
			if strings.HasPrefix(k, "gen_ai.guardrail.") {
				s.guard = true
			}
		}
	}
	s.agent = newAgent(agentID, agentName, agentVersion, cmp.Or(endUser, user), cmp.Or(session, conversation))
	switch s.op {
	case "chat", "generate_content", "text_completion", "embeddings":
		s.spanClass = classInference
	case "execute_tool":
		s.spanClass = classTool
	case "invoke_agent", "create_agent":
		s.spanClass, s.agentSpan = classAgent, true
	case "apply_guardrail", "run_guardrail":
		s.spanClass = classGuardrail
	case "retrieval":
		s.spanClass = classRetrieval
	case "":
		switch {
		case system != "":
			// The older conventions: gen_ai.system, no operation name.
			s.spanClass = classInference
			switch llmType {
			case "completion":
				s.op = "text_completion"
			case "embedding":
				s.op = "embeddings"
			default:
				s.op = "chat"
			}
		case mcpMethod == "tools/call":
			s.spanClass = classTool
		case mcpMethod == "resources/read" || mcpMethod == "prompts/get":
			s.spanClass = classRetrieval
		case mcpMethod != "":
			s.spanClass = classGenAIOther
		case s.guard:
			s.spanClass = classGuardrail
		case anyGenAI:
			s.spanClass = classGenAIOther
		case httpMethod && s.sp.GetKind() == tracepb.Span_SPAN_KIND_CLIENT:
			s.spanClass = classHTTP
		case dbSystem && s.sp.GetKind() != tracepb.Span_SPAN_KIND_SERVER:
			s.spanClass = classDB
		}
	default:
		s.spanClass = classGenAIOther
	}
	return size
}

// resourceInfo is what a Resource gives every record made from its spans and
// log records.
type resourceInfo struct {
	attrs []kvBytes
	actor infertrail.Actor
}

type kvBytes struct {
	key string
	val []byte
}

// The resource attributes a record keeps; of Kubernetes, k8s.*.name and
// k8s.*.uid. The SPIFFE id is the actor's workload.
var resourceKept = map[string]bool{
	"service.name": true, "service.namespace": true, "service.version": true, "service.instance.id": true,
	"deployment.environment": true, "deployment.environment.name": true,
	"host.name": true, "host.id": true, "container.id": true, "container.name": true,
	"cloud.provider": true, "cloud.platform": true, "cloud.region": true, "cloud.availability_zone": true,
	"cloud.account.id": true, "cloud.resource_id": true, "faas.name": true, "faas.version": true,
	"telemetry.sdk.name": true, "telemetry.sdk.language": true, "telemetry.sdk.version": true,
}

func keepResourceAttr(k string) bool {
	if resourceKept[k] {
		return true
	}
	return strings.HasPrefix(k, "k8s.") && (strings.HasSuffix(k, ".name") || strings.HasSuffix(k, ".uid")) && validName(k)
}

// request is the state of mapping one request. buf holds the canonical
// JSON of every value of its records: each value is a slice of it that
// later appends never overwrite.
type mapping struct {
	m      *Mapper
	tenant string
	buf    []byte
	b      recordBuilder
	rules  map[string]attrRule
}

func newMapping(m *Mapper, tenant string) *mapping {
	rq := &mapping{m: m, tenant: tenant, buf: make([]byte, 0, 4<<10)}
	rq.b.rq = rq
	return rq
}

// reserve makes room for n more bytes in buf, at once rather than as it
// grows; the values already in it stay where they are.
func (rq *mapping) reserve(n int) {
	if cap(rq.buf)-len(rq.buf) < n {
		rq.buf = make([]byte, 0, n)
	}
}

// since returns the bytes appended to buf from start on.
func (rq *mapping) since(start int) []byte { return rq.buf[start:len(rq.buf):len(rq.buf)] }

func (rq *mapping) resource(r *resourcepb.Resource) *resourceInfo {
	res := &resourceInfo{}
	var service, workload, spiffe string
	for _, kv := range r.GetAttributes() {
		k := kv.GetKey()
		s, isString := kv.GetValue().GetValue().(*commonpb.AnyValue_StringValue)
		if isString {
			switch {
			case k == "service.name":
				service = s.StringValue
			case k == "spiffe.id":
				spiffe = s.StringValue
			case workload == "" && strings.HasPrefix(s.StringValue, "spiffe://"):
				workload = s.StringValue
			}
		}
		if !keepResourceAttr(k) {
			continue
		}
		start := len(rq.buf)
		out, ok := appendValue(rq.buf, kv.GetValue(), 0)
		if !ok || len(out)-start > maxAttrValue {
			continue
		}
		rq.buf = out
		res.attrs = append(res.attrs, kvBytes{k, rq.since(start)})
	}
	if spiffe != "" {
		workload = spiffe
	}
	if service != "" {
		res.actor.ID, res.actor.Type = cleanString("service:"+service), "workload"
	}
	res.actor.Workload = cleanString(workload)
	return res
}

// spanRecord makes the record of a span. With guardOnly, it is the
// policy_decision record of the gen_ai.guardrail.* attributes of a span
// that is evidence of something else.
func (rq *mapping) spanRecord(s *spanRef, c spanClass, ag agent, guardOnly bool) *infertrail.Record {
	sp := s.sp
	start, end := sp.GetStartTimeUnixNano(), sp.GetEndTimeUnixNano()
	var ids [32]byte
	hex.Encode(ids[:16], s.key[16:])
	hex.Encode(ids[16:], s.parent[:])
	tail := string(ids[:])
	r := &infertrail.Record{
		Kind:    c.kind(),
		Time:    time.Unix(0, int64(start)).UTC(),
		Tenant:  rq.tenant,
		Actor:   s.res.actor,
		TraceID: s.ts.hex,
		SpanID:  tail[:16],
		Source:  otlpSource,
	}
	if s.hasParent {
		r.ParentSpanID = tail[16:]
	}
	b := &rq.b
	b.reset(r, len(sp.GetAttributes())+len(s.res.attrs)+len(s.scope)+4)
	b.guardOnly = guardOnly
	b.setActorAgent(ag)

	b.setInt("infertrail.duration_ns", int64(end-start))
	b.setString("otel.span.name", sp.GetName())
	if k := sp.GetKind(); k != tracepb.Span_SPAN_KIND_UNSPECIFIED {
		b.setAttr("otel.span.kind", spanKinds[k])
	}
	switch st := sp.GetStatus(); st.GetCode() {
	case tracepb.Status_STATUS_CODE_OK:
		b.setAttr("otel.status_code", statusOK)
	case tracepb.Status_STATUS_CODE_ERROR:
		b.setAttr("otel.status_code", statusError)
		if msg := st.GetMessage(); msg != "" {
			b.setString("otel.status_description", msg)
		}
	}
	for _, kv := range s.scope {
		b.setAttr(kv.key, kv.val)
	}
	if n := sp.GetDroppedAttributesCount(); n > 0 {
		b.setInt("otel.dropped_attributes_count", int64(n))
	}
	for _, kv := range s.res.attrs {
		b.setAttr(kv.key, kv.val)
	}
	b.attributes(sp.GetAttributes())
	if !guardOnly {
		for _, ev := range sp.GetEvents() {
			b.event(ev.GetName(), ev.GetAttributes(), nil)
		}
		switch c {
		case classInference:
			b.fillString("gen_ai.operation.name", s.op)
		case classTool:
			b.fillString("gen_ai.operation.name", "execute_tool")
		}
	}
	b.finish()
	tag := byte('s')
	if guardOnly {
		tag = 'g'
	}
	r.ID = recordID(tag, &s.key, nil, r)
	return r
}

// Values every record may share: a value is never changed once set.
var (
	spanKinds = [...][]byte{nil, jsonConst("internal"), jsonConst("server"), jsonConst("client"),
		jsonConst("producer"), jsonConst("consumer")}
	statusOK    = jsonConst("OK")
	statusError = jsonConst("ERROR")
)

func jsonConst(s string) []byte {
	b := infertrail.AppendString(nil, s)
	return b[:len(b):len(b)]
}

// recordID derives a record id from what identifies the record's source
// data: the same data mapped again gets the same id, so a re-sent export
// is a duplicate for the trail, not a second copy. What the record learns
// from other spans (the acting agent, the human it acts for, the session)
// is part of it: a span re-sent after its trace's agent became known maps
// to a different record, which must not take the first one's id. The id
// has the layout of an RFC 9562 UUIDv8.
func recordID(tag byte, key *spanKey, extra []byte, r *infertrail.Record) infertrail.UUID {
	var scratch [256]byte
	b := append(scratch[:0], "infertrail otlp record v1\x00"...)
	b = append(b, tag)
	b = append(b, key[:]...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(extra)))
	b = append(b, extra...)
	for _, s := range [...]string{r.Actor.ID, r.Actor.OnBehalfOf, r.SessionID} {
		b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
		b = append(b, s...)
	}
	sum := sha256.Sum256(b)
	var u infertrail.UUID
	copy(u[:], sum[:16])
	u[6] = 0x80 | u[6]&0x0f
	u[8] = 0x80 | u[8]&0x3f
	return u
}

// recordBuilder fills one record's attributes and content within the limits.
type recordBuilder struct {
	rq        *mapping
	r         *infertrail.Record
	clear     int // bytes of attribute names and values
	dropped   int
	fill      bool // set only what is not set yet (an event repeating the span)
	guardOnly bool // keep only gen_ai.guardrail.* attributes
	msgEvent  bool // the attributes of a message event: its message fields are content
	logRecord bool // the attributes of a log record: event.name is in otel.log.event_names

	contentDropped []string
	deferred       []*commonpb.KeyValue // attributes of no known namespace, set last
	other          []kvBytes            // content under other conventions' names
	aliases        uint32               // older names seen, by index in aliases
	onBehalf       int                  // priority of the actor.on_behalf_of set so far
	session        int                  // priority of the session id set so far
	guard          guardState
	msgs           messageSet
}

func (b *recordBuilder) reset(r *infertrail.Record, nattrs int) {
	b.r = r
	r.Attributes = make(map[string]json.RawMessage, min(nattrs, maxAttrs))
	b.clear, b.dropped, b.fill, b.guardOnly, b.msgEvent, b.logRecord = 0, 0, false, false, false, false
	b.contentDropped = nil
	b.deferred = b.deferred[:0]
	b.other = b.other[:0]
	b.aliases, b.onBehalf, b.session = 0, 0, 0
	b.guard = guardState{}
	b.msgs.reset()
}

// setActorAgent makes the agent the record's actor. The human it acts for
// and the session are the agent span's unless the record's own attributes
// name others.
func (b *recordBuilder) setActorAgent(ag agent) {
	if !ag.known() {
		return
	}
	b.r.Actor.ID, b.r.Actor.Type = ag.actor, "agent"
	b.r.Actor.OnBehalfOf, b.r.SessionID = ag.onBehalf, ag.session
	if ag.id != "" {
		b.setString("gen_ai.agent.id", ag.id)
	}
	if ag.name != "" {
		b.setString("gen_ai.agent.name", ag.name)
	}
	if ag.version != "" {
		b.setString("gen_ai.agent.version", ag.version)
	}
}

// scope returns the attributes of an instrumentation scope.
func (rq *mapping) scope(sc *commonpb.InstrumentationScope) []kvBytes {
	var out []kvBytes
	for _, kv := range [...]kvBytes{{"otel.scope.name", []byte(sc.GetName())}, {"otel.scope.version", []byte(sc.GetVersion())}} {
		if len(kv.val) > 0 && len(kv.val) <= maxAttrValue/2 {
			start := len(rq.buf)
			rq.buf = infertrail.AppendString(rq.buf, string(kv.val))
			out = append(out, kvBytes{kv.key, rq.since(start)})
		}
	}
	return out
}

// validName reports whether s can name an attribute or content field.
func validName(s string) bool {
	if s == "" || len(s) > 256 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == 0x7f {
			return false
		}
	}
	return utf8.ValidString(s)
}

// setAttr sets an attribute to a canonical JSON value, within the limits;
// the name is valid (ruleOf checks those of the senders). The bytes of a
// value it replaces stay counted: the count only errs on the safe side.
func (b *recordBuilder) setAttr(key string, val []byte) {
	a := b.r.Attributes
	if b.fill || len(a) >= maxAttrs-2 {
		_, exists := a[key]
		if exists && b.fill {
			return
		}
		if !exists && len(a) >= maxAttrs-2 {
			b.dropped++
			return
		}
	}
	size := b.clear + len(key) + len(val)
	if len(val) > maxAttrValue || size > maxClearBytes {
		b.dropped++
		return
	}
	a[key] = val
	b.clear = size
}

func (b *recordBuilder) setString(key, v string) {
	if len(v) > 2*maxAttrValue {
		b.dropped++
		return
	}
	start := len(b.rq.buf)
	b.rq.buf = infertrail.AppendString(b.rq.buf, v)
	b.setAttr(key, b.rq.since(start))
}

func (b *recordBuilder) fillString(key, v string) {
	if _, ok := b.r.Attributes[key]; !ok && v != "" {
		b.setString(key, v)
	}
}

func (b *recordBuilder) setInt(key string, v int64) {
	start := len(b.rq.buf)
	b.rq.buf = appendInt(b.rq.buf, v)
	b.setAttr(key, b.rq.since(start))
}

func (b *recordBuilder) setValue(key string, v *commonpb.AnyValue) {
	if s, ok := v.GetValue().(*commonpb.AnyValue_StringValue); ok && len(s.StringValue) > 2*maxAttrValue {
		b.dropped++
		return
	}
	start := len(b.rq.buf)
	out, ok := appendValue(b.rq.buf, v, 0)
	if !ok {
		b.dropped++
		return
	}
	b.rq.buf = out
	b.setAttr(key, b.rq.since(start))
}

// setContent sets a content field to a canonical JSON value; the name is
// valid.
func (b *recordBuilder) setContent(key string, val []byte) {
	c := b.r.Content
	if _, exists := c[key]; exists && b.fill {
		return
	}
	if c == nil {
		c = make(map[string]json.RawMessage, 4)
		b.r.Content = c
	}
	if _, exists := c[key]; len(val) > maxContentValue || !exists && len(c) >= maxContentField {
		b.contentDropped = append(b.contentDropped, key)
		return
	}
	c[key] = val
}

// setContentValue sets a content field from an attribute value: a string
// that holds a JSON object or array is that JSON; any other string is a
// JSON string.
func (b *recordBuilder) setContentValue(key string, v *commonpb.AnyValue) {
	start := len(b.rq.buf)
	out, ok := appendJSONish(b.rq.buf, v)
	if !ok {
		b.contentDropped = append(b.contentDropped, key)
		return
	}
	b.rq.buf = out
	b.setContent(key, b.rq.since(start))
}

// Content fields: span, event and log attributes of these names are
// content, never attributes.
var contentKeys = map[string]bool{
	"gen_ai.input.messages":                          true,
	"gen_ai.output.messages":                         true,
	"gen_ai.system_instructions":                     true,
	"gen_ai.tool.definitions":                        true,
	"gen_ai.tool.call.arguments":                     true,
	"gen_ai.tool.call.result":                        true,
	"gen_ai.prompt":                                  true, // the JSON of the older gen_ai.content.prompt event
	"gen_ai.completion":                              true, // the JSON of the older gen_ai.content.completion event
	"gen_ai.retrieval.query.text":                    true,
	"gen_ai.retrieval.documents":                     true,
	"gen_ai.evaluation.explanation":                  true,
	"gen_ai.guardrail.verdict.reason":                true,
	"gen_ai.guardrail.security.content.input.value":  true,
	"gen_ai.guardrail.security.content.output.value": true,
	"exception.message":                              true,
	"exception.stacktrace":                           true,
}

// Attribute names (or their beginnings) under which other conventions
// (OpenInference, OpenLLMetry, the Vercel AI SDK, Logfire) carry prompts,
// responses and tool data. They are content too, gathered into the
// content field otel.content_attributes.
var otherContentPrefixes = []string{
	"input.value", "output.value",
	"llm.input_messages", "llm.output_messages", "llm.prompts", "llm.prompt_template.", "llm.tools", "llm.request.functions",
	"retrieval.documents", "reranker.", "embedding.embeddings", "embedding.text", "tool.parameters",
	"traceloop.entity.input", "traceloop.entity.output",
	"ai.prompt", "ai.response.text", "ai.response.toolCalls", "ai.response.object", "ai.response.reasoning",
	"ai.toolCall.args", "ai.toolCall.result", "ai.value", "ai.embedding", "ai.result.",
	"all_messages_events", "pydantic_ai.all_messages", "final_result", "tool_arguments", "tool_response",
}

func otherContent(k string) bool {
	for _, p := range otherContentPrefixes {
		if strings.HasPrefix(k, p) {
			return true
		}
	}
	return false
}

// secretKey reports whether an attribute may hold a credential: HTTP
// headers, RPC metadata, query parameters of a statement, and names that
// say so. They are never recorded.
func secretKey(k string) bool {
	for _, p := range [...]string{"http.request.header.", "http.response.header.", "rpc.grpc.request.metadata.",
		"rpc.grpc.response.metadata.", "rpc.request.metadata.", "rpc.response.metadata.", "db.query.parameter."} {
		if strings.HasPrefix(k, p) {
			return true
		}
	}
	// The last part of the name, in lower case.
	last := k[strings.LastIndexByte(k, '.')+1:]
	var lower [64]byte
	if len(last) == 0 || len(last) > len(lower) {
		return false
	}
	for i := 0; i < len(last); i++ {
		c := last[i]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		lower[i] = c
	}
	l := unsafe.String(&lower[0], len(last))
	for _, w := range [...]string{"password", "passwd", "secret", "api_key", "apikey", "api-key", "authorization",
		"cookie", "private_key", "access_token", "refresh_token", "bearer"} {
		if strings.Contains(l, w) {
			return true
		}
	}
	return false
}

// Older attribute names, and the current names they also set when a
// record does not have them.
var aliases = [...]struct{ old, cur string }{
	{"gen_ai.system", "gen_ai.provider.name"},
	{"gen_ai.usage.prompt_tokens", "gen_ai.usage.input_tokens"},
	{"gen_ai.usage.completion_tokens", "gen_ai.usage.output_tokens"},
	{"gen_ai.openai.response.system_fingerprint", "openai.response.system_fingerprint"},
	{"gen_ai.openai.request.service_tier", "openai.request.service_tier"},
	{"gen_ai.openai.response.service_tier", "openai.response.service_tier"},
	{"http.method", "http.request.method"},
	{"http.status_code", "http.response.status_code"},
	{"http.url", "url.full"},
	{"net.peer.name", "server.address"},
	{"net.peer.port", "server.port"},
	{"db.system", "db.system.name"},
	{"db.operation", "db.operation.name"},
}

var aliasIndex = func() map[string]uint32 {
	m := make(map[string]uint32, len(aliases))
	for i, a := range aliases {
		m[a.old] = uint32(i)
	}
	return m
}()

// attributes sets a record's attributes and content from span, event or
// log attributes.
func (b *recordBuilder) attributes(kvs []*commonpb.KeyValue) {
	for _, kv := range kvs {
		b.attribute(kv, true)
	}
	for _, kv := range b.deferred {
		b.attribute(kv, false)
	}
	b.deferred = b.deferred[:0]
}

// priorityPrefixes are the namespaces whose attributes are set first, so
// that a span with more attributes than a record holds keeps these.
var priorityPrefixes = [...]string{"gen_ai.", "http.", "url.", "server.", "db.", "error.", "mcp.", "jsonrpc.",
	"openai.", "session.", "enduser.", "user.", "rpc.", "network.", "llm."}

func (b *recordBuilder) attribute(kv *commonpb.KeyValue, first bool) {
	k, v := kv.GetKey(), kv.GetValue()
	r := b.rq.ruleFor(k)
	if b.guardOnly && !r.guard && k != "error.type" ||
		b.msgEvent && messageFields[k] || b.logRecord && k == "event.name" {
		return
	}
	if r.guard {
		b.guard.read(k, v)
	}
	sv, isString := v.GetValue().(*commonpb.AnyValue_StringValue)
	switch r.op {
	case opDrop:
		return
	case opInvalid:
		b.dropped++
		return
	case opContent:
		b.setContentValue(k, v)
		return
	case opFlatIn, opFlatOut:
		if r.op == opFlatIn && b.msgs.flat(&b.msgs.flatIn, k[len("gen_ai.prompt."):], v) ||
			r.op == opFlatOut && b.msgs.flat(&b.msgs.flatOut, k[len("gen_ai.completion."):], v) {
			return
		}
		// A part of a message it does not know: content all the same.
		fallthrough
	case opOtherContent:
		start := len(b.rq.buf)
		out, ok := appendJSONish(b.rq.buf, v)
		if !ok {
			b.dropped++
			return
		}
		b.rq.buf = out
		b.other = append(b.other, kvBytes{k, b.rq.since(start)})
		return
	case opLater:
		if first {
			b.deferred = append(b.deferred, kv)
			return
		}
	case opURL:
		if isString {
			b.setURL(k, sv.StringValue)
			if r.alias >= 0 {
				b.aliases |= 1 << r.alias
			}
		}
		return
	case opURLQuery:
		if isString && sv.StringValue != "" {
			b.setDigest("url.query.digest", sv.StringValue)
		}
		return
	case opHTTPTarget:
		if isString {
			path, query, _ := strings.Cut(sv.StringValue, "?")
			b.setString(k, path)
			if query != "" {
				b.setDigest("url.query.digest", query)
			}
		}
		return
	case opDBQuery:
		if isString {
			b.setDigest("db.query.digest", sv.StringValue)
		}
		return
	case opEndUser, opUserID:
		if p := int(r.op-opEndUser) + 1; isString && sv.StringValue != "" && p > b.onBehalf {
			b.onBehalf = p
			b.r.Actor.OnBehalfOf = cleanString(sv.StringValue)
		}
	case opSessionID, opConversation:
		if p := int(r.op-opSessionID) + 1; isString && sv.StringValue != "" && p > b.session {
			b.session = p
			b.r.SessionID = cleanString(sv.StringValue)
		}
	}
	if r.alias >= 0 {
		b.aliases |= 1 << r.alias
	}
	b.setValue(k, v)
}

// attrOp is what becomes of an attribute.
type attrOp uint8

const (
	opAttr         attrOp = iota // an attribute
	opLater                      // an attribute of no known namespace: set after the others
	opDrop                       // a secret, or a name the receiver sets itself
	opInvalid                    // a name a record cannot hold: counted as dropped
	opContent                    // content under its own name
	opOtherContent               // content, in otel.content_attributes
	opFlatIn                     // gen_ai.prompt.N.*
	opFlatOut                    // gen_ai.completion.N.*
	opURL                        // a URL: without user information, query and fragment
	opURLQuery                   // a query: only its digest
	opHTTPTarget                 // a path and query: the path, and the query's digest
	opDBQuery                    // a statement: only its digest
	opUserID                     // also actor.on_behalf_of, below enduser.id
	opEndUser                    // also actor.on_behalf_of
	opConversation               // also the session, below session.id
	opSessionID                  // also the session
)

// attrRule is what the mapping does with an attribute of some name.
type attrRule struct {
	op    attrOp
	alias int8 // index in aliases, or -1
	guard bool // a gen_ai.guardrail.* attribute
}

// ruleFor returns the rule of an attribute name, from the request's cache.
func (rq *mapping) ruleFor(k string) attrRule {
	if r, ok := rq.rules[k]; ok {
		return r
	}
	r := ruleOf(k)
	if len(rq.rules) < maxCachedRules {
		if rq.rules == nil {
			rq.rules = make(map[string]attrRule, 64)
		}
		rq.rules[k] = r
	}
	return r
}

// maxCachedRules bounds the attribute names a request remembers the rule
// of.
const maxCachedRules = 4096

func ruleOf(k string) attrRule {
	r := attrRule{alias: -1, guard: strings.HasPrefix(k, "gen_ai.guardrail.")}
	if !validName(k) {
		r.op = opInvalid
		return r
	}
	if i, ok := aliasIndex[k]; ok {
		r.alias = int8(i)
	}
	switch k {
	case "url.full", "http.url":
		r.op = opURL
		return r
	case "url.query":
		r.op = opURLQuery
		return r
	case "http.target":
		r.op = opHTTPTarget
		return r
	case "db.query.text", "db.statement":
		r.op = opDBQuery
		return r
	case "enduser.id":
		r.op = opEndUser
		return r
	case "user.id":
		r.op = opUserID
		return r
	case "session.id":
		r.op = opSessionID
		return r
	case "gen_ai.conversation.id":
		r.op = opConversation
		return r
	}
	switch {
	case contentKeys[k]:
		r.op = opContent
	case strings.HasPrefix(k, "gen_ai.prompt.") && isDigit(k, len("gen_ai.prompt.")):
		r.op = opFlatIn
	case strings.HasPrefix(k, "gen_ai.completion.") && isDigit(k, len("gen_ai.completion.")):
		r.op = opFlatOut
	case strings.HasPrefix(k, "infertrail.") || strings.HasPrefix(k, "otel."):
		r.op = opDrop // names the receiver sets itself; a sender cannot
	case secretKey(k):
		r.op = opDrop
	case otherContent(k):
		r.op = opOtherContent
	default:
		r.op = opLater
		for _, p := range priorityPrefixes {
			if strings.HasPrefix(k, p) {
				r.op = opAttr
				break
			}
		}
	}
	return r
}

func isDigit(s string, i int) bool { return i < len(s) && s[i] >= '0' && s[i] <= '9' }

// setURL sets a URL without its user information, query and fragment;
// the query's digest goes in url.query.digest.
func (b *recordBuilder) setURL(key, s string) {
	u, err := url.Parse(s)
	if err != nil {
		b.setDigest(key+".digest", s)
		return
	}
	query := u.RawQuery
	u.User, u.RawQuery, u.ForceQuery, u.Fragment, u.RawFragment = nil, "", false, "", ""
	b.setString(key, u.String())
	if query != "" {
		b.setDigest("url.query.digest", query)
	}
}

func (b *recordBuilder) setDigest(key, s string) {
	sum := sha256.Sum256(unsafe.Slice(unsafe.StringData(s), len(s)))
	start := len(b.rq.buf)
	b.rq.buf = append(b.rq.buf, `"sha256:`...)
	b.rq.buf = hex.AppendEncode(b.rq.buf, sum[:])
	b.rq.buf = append(b.rq.buf, '"')
	b.setAttr(key, b.rq.since(start))
}

// event reads a span event or a log record of the GenAI conventions.
// body is a log record's body.
func (b *recordBuilder) event(name string, attrs []*commonpb.KeyValue, body *commonpb.AnyValue) {
	switch name {
	case "gen_ai.client.inference.operation.details", "gen_ai.content.prompt", "gen_ai.content.completion",
		"gen_ai.evaluation.result", "exception":
		// Their attributes are the span's, or complete it.
		b.fill = true
		b.attributes(attrs)
		b.fill = false
	case "gen_ai.system.message", "gen_ai.user.message", "gen_ai.assistant.message", "gen_ai.tool.message", "gen_ai.choice":
		b.msgs.event(name, attrs, body)
	}
}

// finish sets what the record's attributes and content imply once all are
// read.
func (b *recordBuilder) finish() {
	for i, a := range aliases {
		if b.aliases&(1<<i) == 0 {
			continue
		}
		if _, ok := b.r.Attributes[a.cur]; !ok {
			if v, ok := b.r.Attributes[a.old]; ok {
				b.setAttr(a.cur, v)
			}
		}
	}
	if b.r.Kind == infertrail.KindPolicyDecision {
		b.guard.set(b)
	}
	if b.r.Content == nil || b.r.Content["gen_ai.input.messages"] == nil {
		b.messagesContent("gen_ai.input.messages", b.msgs.flatIn, b.msgs.in, "user")
	}
	if b.r.Content == nil || b.r.Content["gen_ai.output.messages"] == nil {
		b.messagesContent("gen_ai.output.messages", b.msgs.flatOut, b.msgs.out, "assistant")
	}
	if len(b.other) > 0 {
		// Sorted, the last of a repeated name winning.
		slices.SortStableFunc(b.other, func(x, y kvBytes) int { return infertrail.CompareKeys(x.key, y.key) })
		start := len(b.rq.buf)
		b.rq.buf = append(b.rq.buf, '{')
		for i, kv := range b.other {
			if i+1 < len(b.other) && b.other[i+1].key == kv.key {
				continue
			}
			if len(b.rq.buf) > start+1 {
				b.rq.buf = append(b.rq.buf, ',')
			}
			b.rq.buf = infertrail.AppendString(b.rq.buf, kv.key)
			b.rq.buf = append(b.rq.buf, ':')
			b.rq.buf = append(b.rq.buf, kv.val...)
		}
		b.rq.buf = append(b.rq.buf, '}')
		b.setContent("otel.content_attributes", b.rq.since(start))
	}
	if len(b.contentDropped) > 0 {
		start := len(b.rq.buf)
		b.rq.buf = append(b.rq.buf, '[')
		for i, k := range b.contentDropped {
			if i > 0 {
				b.rq.buf = append(b.rq.buf, ',')
			}
			b.rq.buf = infertrail.AppendString(b.rq.buf, k)
		}
		b.rq.buf = append(b.rq.buf, ']')
		if len(b.rq.buf)-start <= maxAttrValue {
			b.r.Attributes[attrContentDropped] = b.rq.since(start)
		} else {
			b.dropped++
		}
	}
	if b.dropped > 0 {
		b.r.Attributes[attrDropped] = appendInt(nil, int64(b.dropped))
	}
	if len(b.r.Content) == 0 {
		b.r.Content = nil
	}
}

// guardState is what gen_ai.guardrail.* attributes say of a decision.
type guardState struct {
	action, decision, result, verdict, status string
	triggered                                 int // 0 unknown, 1 false, 2 true
	policyID, id, name, component             string
}

func (g *guardState) read(k string, v *commonpb.AnyValue) {
	if bv, ok := v.GetValue().(*commonpb.AnyValue_BoolValue); ok {
		if k == "gen_ai.guardrail.triggered" || k == "gen_ai.guardrail.blocked" {
			g.triggered = 1
			if bv.BoolValue {
				g.triggered = 2
			}
		}
		return
	}
	s := v.GetStringValue()
	switch k {
	case "gen_ai.guardrail.action.type", "gen_ai.guardrail.action":
		g.action = s
	case "gen_ai.guardrail.decision":
		g.decision = s
	case "gen_ai.guardrail.result":
		g.result = s
	case "gen_ai.guardrail.verdict.type", "gen_ai.guardrail.verdict":
		g.verdict = s
	case "gen_ai.guardrail.status":
		g.status = s
	case "gen_ai.guardrail.security.policy.id":
		g.policyID = s
	case "gen_ai.guardrail.id":
		g.id = s
	case "gen_ai.guardrail.name":
		g.name = s
	case "gen_ai.guardrail.component.name":
		g.component = s
	}
}

// set sets policy.result and policy.id. The enforcement (action) decides
// over the verdict: a deny verdict that was only logged is not a denial.
func (g *guardState) set(b *recordBuilder) {
	result := ""
	for _, s := range [...]string{g.action, g.decision, g.result, g.verdict, g.status} {
		if result = normalizeDecision(s); result != "" {
			break
		}
	}
	if result == "" {
		switch g.triggered {
		case 1:
			result = "allow"
		case 2:
			result = "deny"
		}
	}
	if result != "" {
		b.setString("policy.result", result)
	}
	for _, id := range [...]string{g.policyID, g.id, g.name, g.component} {
		if id != "" {
			b.setString("policy.id", id)
			break
		}
	}
}

// normalizeDecision maps the words guardrails use for their decisions to
// allow, deny, modify or require_approval; an unknown word to "".
func normalizeDecision(s string) string {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "allow", "allowed", "pass", "passed", "ok", "approve", "approved", "accept", "accepted", "none",
		"success", "safe", "compliant", "valid", "no_action", "not_triggered":
		return "allow"
	case "deny", "denied", "block", "blocked", "reject", "rejected", "refuse", "refused", "fail", "failed",
		"flag", "flagged", "violation", "intervened", "guardrail_intervened", "unsafe", "stop", "halt",
		"tripwire_triggered", "triggered", "invalid", "abort", "aborted":
		return "deny"
	case "modify", "modified", "redact", "redacted", "mask", "masked", "anonymize", "anonymized",
		"sanitize", "sanitized", "rewrite", "rewritten", "fix", "fixed", "filter", "filtered":
		return "modify"
	case "require_approval", "approval_required", "needs_approval", "review", "human_review",
		"escalate", "escalated", "ask", "confirm":
		return "require_approval"
	}
	return ""
}

// cleanString makes s fit an actor or session field: at most 1,024 bytes
// of UTF-8 without control characters.
func cleanString(s string) string {
	ok := len(s) <= maxStringBytes
	for i := 0; ok && i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == 0x7f {
			ok = false
		}
	}
	if ok && utf8.ValidString(s) {
		return s
	}
	var sb strings.Builder
	for _, r := range strings.ToValidUTF8(s, "\uFFFD") {
		if r < 0x20 || r == 0x7f {
			r = ' '
		}
		if sb.Len()+utf8.RuneLen(r) > maxStringBytes {
			break
		}
		sb.WriteRune(r)
	}
	return sb.String()
}

// appendInt appends an integer as I-JSON allows: beyond ±(2^53-1) a
// double cannot hold it exactly, so it is a decimal string.
func appendInt(dst []byte, v int64) []byte {
	const maxSafe = 1<<53 - 1
	if v > maxSafe || v < -maxSafe {
		dst = append(dst, '"')
		dst = strconv.AppendInt(dst, v, 10)
		return append(dst, '"')
	}
	return strconv.AppendInt(dst, v, 10)
}

// appendValue appends the RFC 8785 canonical JSON of an OTLP value:
// strings, booleans, integers (as appendInt does), doubles (NaN and
// infinities as the strings "NaN", "Infinity" and "-Infinity"), bytes as
// base64 strings, arrays, and key-value lists as objects with sorted
// member names (the last of a repeated key winning). It reports false for
// a value it cannot read or that nests too deep.
func appendValue(dst []byte, v *commonpb.AnyValue, depth int) ([]byte, bool) {
	switch x := v.GetValue().(type) {
	case nil:
		return append(dst, "null"...), true
	case *commonpb.AnyValue_StringValue:
		return infertrail.AppendString(dst, x.StringValue), true
	case *commonpb.AnyValue_BoolValue:
		return strconv.AppendBool(dst, x.BoolValue), true
	case *commonpb.AnyValue_IntValue:
		return appendInt(dst, x.IntValue), true
	case *commonpb.AnyValue_DoubleValue:
		return appendDouble(dst, x.DoubleValue), true
	case *commonpb.AnyValue_BytesValue:
		dst = append(dst, '"')
		dst = base64.StdEncoding.AppendEncode(dst, x.BytesValue)
		return append(dst, '"'), true
	case *commonpb.AnyValue_ArrayValue:
		if depth >= maxNesting {
			return dst, false
		}
		dst = append(dst, '[')
		for i, e := range x.ArrayValue.GetValues() {
			if i > 0 {
				dst = append(dst, ',')
			}
			var ok bool
			if dst, ok = appendValue(dst, e, depth+1); !ok {
				return dst, false
			}
		}
		return append(dst, ']'), true
	case *commonpb.AnyValue_KvlistValue:
		if depth >= maxNesting {
			return dst, false
		}
		kvs := x.KvlistValue.GetValues()
		order := make([]int, len(kvs))
		for i := range order {
			order[i] = i
		}
		slices.SortStableFunc(order, func(i, j int) int { return infertrail.CompareKeys(kvs[i].GetKey(), kvs[j].GetKey()) })
		dst = append(dst, '{')
		n := 0
		for oi, i := range order {
			if oi+1 < len(order) && kvs[order[oi+1]].GetKey() == kvs[i].GetKey() {
				continue
			}
			if n > 0 {
				dst = append(dst, ',')
			}
			n++
			dst = infertrail.AppendString(dst, kvs[i].GetKey())
			dst = append(dst, ':')
			var ok bool
			if dst, ok = appendValue(dst, kvs[i].GetValue(), depth+1); !ok {
				return dst, false
			}
		}
		return append(dst, '}'), true
	}
	return dst, false
}

func appendDouble(dst []byte, f float64) []byte {
	switch {
	case math.IsNaN(f):
		return append(dst, `"NaN"`...)
	case math.IsInf(f, 1):
		return append(dst, `"Infinity"`...)
	case math.IsInf(f, -1):
		return append(dst, `"-Infinity"`...)
	}
	out, _ := infertrail.AppendNumber(dst, f)
	return out
}

// appendJSONish appends a content value: a string that holds a JSON object
// or array is that JSON, canonicalised; any other string is a JSON string;
// any other value is as appendValue gives it.
func appendJSONish(dst []byte, v *commonpb.AnyValue) ([]byte, bool) {
	if s, ok := v.GetValue().(*commonpb.AnyValue_StringValue); ok {
		if looksJSON(s.StringValue) {
			src := unsafe.Slice(unsafe.StringData(s.StringValue), len(s.StringValue))
			if out, err := infertrail.AppendCanonical(dst, src); err == nil {
				return out, true
			}
		}
		return infertrail.AppendString(dst, s.StringValue), true
	}
	return appendValue(dst, v, 0)
}

// looksJSON reports whether s starts as a JSON object or array does.
func looksJSON(s string) bool {
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case ' ', '\t', '\n', '\r':
			continue
		case '{', '[':
			return true
		}
		return false
	}
	return false
}

// Logs maps a log export request. Log records of GenAI events (event name
// gen_ai.*, from the event_name field or the event.name attribute) become
// inference records: those of one span one record. An invalid log record
// (a trace id that is not 16 bytes, a span id that is not 8, no time) is
// an error naming it that wraps infertrail.ErrInvalid.
func (m *Mapper) Logs(req *collogspb.ExportLogsServiceRequest, tenant string) (Result, error) {
	tenant, err := m.tenantOf(tenant)
	if err != nil {
		return Result{}, err
	}
	rq := newMapping(m, tenant)
	type logRef struct {
		lr         *logspb.LogRecord
		res        *resourceInfo
		scope      []kvBytes
		ri, si, li int
		name       string
		key        spanKey
		hasTrace   bool
		hasSpan    bool
		t          uint64
	}
	var logs []logRef
	groups := map[spanKey][]int{}
	var order []spanKey
	traces := map[[16]byte]*traceState{}
	res := Result{}
	for ri, rl := range req.GetResourceLogs() {
		resource := rq.resource(rl.GetResource())
		for si, sl := range rl.GetScopeLogs() {
			scope := rq.scope(sl.GetScope())
			for li, lr := range sl.GetLogRecords() {
				l := logRef{lr: lr, res: resource, scope: scope, ri: ri, si: si, li: li}
				if err := checkLog(lr, &l.key, &l.hasTrace, &l.hasSpan, &l.t); err != nil {
					err.Field = fmt.Sprintf("resourceLogs[%d].scopeLogs[%d].logRecords[%d].%s", ri, si, li, err.Field)
					return Result{}, err
				}
				l.name = lr.GetEventName()
				if l.name == "" {
					for _, kv := range lr.GetAttributes() {
						if kv.GetKey() == "event.name" {
							l.name = kv.GetValue().GetStringValue()
						}
					}
				}
				genAI := strings.HasPrefix(l.name, "gen_ai.")
				if !genAI && !m.keep {
					res.Dropped++
					continue
				}
				if l.hasTrace {
					tid := l.key.trace()
					ts := traces[tid]
					if ts == nil {
						ts = &traceState{hex: hex.EncodeToString(tid[:])}
						traces[tid] = ts
					}
					ts.genAI = ts.genAI || genAI
				}
				if genAI && l.hasSpan {
					if _, ok := groups[l.key]; !ok {
						order = append(order, l.key)
					}
					groups[l.key] = append(groups[l.key], len(logs))
				}
				logs = append(logs, l)
			}
		}
	}
	m.recall(traces)

	// record makes the record of the log records at idx.
	record := func(idx []int, kind infertrail.Kind, tag byte) *infertrail.Record {
		first := &logs[idx[0]]
		r := &infertrail.Record{Kind: kind, Tenant: tenant, Actor: first.res.actor, Source: otlpSource}
		var ts *traceState
		if first.hasTrace {
			ts = traces[first.key.trace()]
			r.TraceID = ts.hex
			if first.hasSpan {
				r.SpanID = hex.EncodeToString(first.key[16:])
			}
		}
		b := &rq.b
		nattrs := len(first.res.attrs) + 8
		for _, i := range idx {
			nattrs += len(logs[i].lr.GetAttributes())
		}
		b.reset(r, nattrs)
		b.logRecord = true
		// The acting agent: the one remembered for the trace, or the one
		// the log records name.
		own := agent{}
		for _, i := range idx {
			var id, name, version string
			for _, kv := range logs[i].lr.GetAttributes() {
				switch kv.GetKey() {
				case "gen_ai.agent.id":
					id = kv.GetValue().GetStringValue()
				case "gen_ai.agent.name":
					name = kv.GetValue().GetStringValue()
				case "gen_ai.agent.version":
					version = kv.GetValue().GetStringValue()
				}
			}
			if a := newAgent(id, name, version, "", ""); a.known() && !own.known() {
				own = a
			}
		}
		if ts != nil && ts.memo.agent.known() {
			own = ts.memo.agent
		}
		b.setActorAgent(own)
		for _, kv := range first.scope {
			b.setAttr(kv.key, kv.val)
		}
		for _, kv := range first.res.attrs {
			b.setAttr(kv.key, kv.val)
		}
		extra := make([]byte, 0, 32*len(idx))
		var names []byte
		earliest := first.t
		var bodies []int
		for _, i := range idx {
			l := &logs[i]
			earliest = min(earliest, l.t)
			extra = binary.BigEndian.AppendUint64(extra, l.lr.GetTimeUnixNano())
			extra = binary.BigEndian.AppendUint64(extra, l.lr.GetObservedTimeUnixNano())
			extra = append(extra, l.name...)
			extra = append(extra, 0)
			if len(idx) == 1 && tag != 'l' {
				extra = binary.BigEndian.AppendUint32(extra, uint32(l.ri))
				extra = binary.BigEndian.AppendUint32(extra, uint32(l.si))
				extra = binary.BigEndian.AppendUint32(extra, uint32(l.li))
			}
			if l.name != "" {
				if len(names) > 0 {
					names = append(names, ',')
				}
				names = infertrail.AppendString(names, l.name)
			}
			switch l.name {
			case "gen_ai.system.message", "gen_ai.user.message", "gen_ai.assistant.message", "gen_ai.tool.message", "gen_ai.choice":
				b.msgEvent = true
				b.attributes(l.lr.GetAttributes())
				b.msgEvent = false
				b.event(l.name, l.lr.GetAttributes(), l.lr.GetBody())
			default:
				b.attributes(l.lr.GetAttributes())
				if l.lr.GetBody() != nil && l.lr.GetBody().GetValue() != nil {
					bodies = append(bodies, i)
				}
			}
		}
		r.Time = time.Unix(0, int64(earliest)).UTC()
		if len(names) > 0 {
			start := len(rq.buf)
			rq.buf = append(rq.buf, '[')
			rq.buf = append(rq.buf, names...)
			rq.buf = append(rq.buf, ']')
			b.setAttr("otel.log.event_names", rq.since(start))
		}
		if len(bodies) > 0 {
			start := len(rq.buf)
			rq.buf = append(rq.buf, '[')
			ok := true
			for j, i := range bodies {
				if j > 0 {
					rq.buf = append(rq.buf, ',')
				}
				if rq.buf, ok = appendJSONish(rq.buf, logs[i].lr.GetBody()); !ok {
					break
				}
			}
			rq.buf = append(rq.buf, ']')
			if ok {
				b.setContent("otel.log.bodies", rq.since(start))
			} else {
				b.contentDropped = append(b.contentDropped, "otel.log.bodies")
			}
		}
		b.finish()
		r.ID = recordID(tag, &first.key, extra, r)
		return r
	}

	res.Records = make([]*infertrail.Record, 0, len(logs))
	for _, k := range order {
		idx := groups[k]
		res.Records = append(res.Records, record(idx, infertrail.KindInference, 'l'))
	}
	for i := range logs {
		l := &logs[i]
		genAI := strings.HasPrefix(l.name, "gen_ai.")
		switch {
		case genAI && l.hasSpan:
			continue // in its span's record
		case genAI:
			res.Records = append(res.Records, record([]int{i}, infertrail.KindInference, 'n'))
		default:
			res.Records = append(res.Records, record([]int{i}, infertrail.KindDownstreamCall, 'k'))
		}
	}
	m.remember(traces)
	return res, nil
}

// checkLog checks a log record's ids and time.
func checkLog(lr *logspb.LogRecord, key *spanKey, hasTrace, hasSpan *bool, t *uint64) *infertrail.FieldError {
	bad := func(field, format string, args ...any) *infertrail.FieldError {
		return &infertrail.FieldError{Record: -1, Field: field, Reason: fmt.Sprintf(format, args...), Err: infertrail.ErrInvalid}
	}
	tid, sid := lr.GetTraceId(), lr.GetSpanId()
	if len(tid) != 0 && len(tid) != 16 {
		return bad("traceId", "is %d bytes, want 16 or none", len(tid))
	}
	if len(sid) != 0 && len(sid) != 8 {
		return bad("spanId", "is %d bytes, want 8 or none", len(sid))
	}
	if len(tid) == 16 && !isZeroID(tid) {
		copy(key[:16], tid)
		*hasTrace = true
		if len(sid) == 8 && !isZeroID(sid) {
			copy(key[16:], sid)
			*hasSpan = true
		}
	}
	*t = lr.GetTimeUnixNano()
	if *t == 0 {
		*t = lr.GetObservedTimeUnixNano()
	}
	switch {
	case *t == 0:
		return bad("timeUnixNano", "is missing, and so is observedTimeUnixNano")
	case *t > math.MaxInt64:
		return bad("timeUnixNano", "%d is after the year 2262", *t)
	}
	return nil
}

// messages gathers the chat messages of the older conventions, to be
// rebuilt in the shape of gen_ai.input.messages and gen_ai.output.messages:
// [{"role":…,"parts":[{"type":"text","content":…}, …],"finish_reason":…}].
type messageSet struct {
	flatIn, flatOut []flatMessage // gen_ai.prompt.N.* and gen_ai.completion.N.*
	in, out         []chatMessage // from gen_ai.*.message and gen_ai.choice events
}

func (ms *messageSet) reset() { *ms = messageSet{} }

type flatMessage struct {
	set                      bool
	role, toolCallID, finish string
	content                  any
	calls                    []flatCall
	fn                       flatCall // the older function_call
}

type flatCall struct {
	set      bool
	id, name string
	args     any
}

// flat reads one flattened attribute: rest is what follows gen_ai.prompt.
// or gen_ai.completion., such as "0.role" or "1.tool_calls.0.name". It
// reports false for a part of a message it does not read.
func (ms *messageSet) flat(list *[]flatMessage, rest string, v *commonpb.AnyValue) bool {
	n, field, ok := flatIndex(rest)
	if !ok {
		return false
	}
	for len(*list) <= n {
		*list = append(*list, flatMessage{})
	}
	m := &(*list)[n]
	switch field {
	case "role":
		m.role = v.GetStringValue()
	case "content":
		m.content = goValue(v, 0)
	case "tool_call_id":
		m.toolCallID = v.GetStringValue()
	case "finish_reason":
		m.finish = v.GetStringValue()
	case "function_call.name":
		m.fn.set, m.fn.name = true, v.GetStringValue()
	case "function_call.arguments":
		m.fn.set, m.fn.args = true, goValue(v, 0)
	default:
		sub, ok := strings.CutPrefix(field, "tool_calls.")
		if !ok {
			return false
		}
		j, f, ok := flatIndex(sub)
		if !ok || f != "id" && f != "name" && f != "arguments" {
			return false
		}
		for len(m.calls) <= j {
			m.calls = append(m.calls, flatCall{})
		}
		c := &m.calls[j]
		switch f {
		case "id":
			c.set, c.id = true, v.GetStringValue()
		case "name":
			c.set, c.name = true, v.GetStringValue()
		case "arguments":
			c.set, c.args = true, goValue(v, 0)
		}
	}
	m.set = true
	return true
}

// flatIndex splits "N.rest" with N below maxFlatIndex.
func flatIndex(s string) (int, string, bool) {
	n, i := 0, 0
	for ; i < len(s) && s[i] >= '0' && s[i] <= '9'; i++ {
		n = n*10 + int(s[i]-'0')
		if n >= maxFlatIndex {
			return 0, "", false
		}
	}
	if i == 0 || i+1 >= len(s) || s[i] != '.' {
		return 0, "", false
	}
	return n, s[i+1:], true
}

func (f *flatMessage) message(role string) (chatMessage, bool) {
	if !f.set {
		return chatMessage{}, false
	}
	m := chatMessage{role: role, finish: f.finish}
	if f.role != "" {
		m.role = f.role
	}
	switch {
	case f.toolCallID != "":
		m.parts = append(m.parts, msgPart{typ: "tool_call_response", id: f.toolCallID, response: jsonish(f.content)})
	case f.content != nil && f.content != "":
		m.parts = append(m.parts, msgPart{typ: "text", content: f.content})
	}
	for _, c := range f.calls {
		if c.set {
			m.parts = append(m.parts, msgPart{typ: "tool_call", id: c.id, name: c.name, args: jsonish(c.args)})
		}
	}
	if f.fn.set {
		m.parts = append(m.parts, msgPart{typ: "tool_call", name: f.fn.name, args: jsonish(f.fn.args)})
	}
	return m, true
}

// chatMessage is one message in the current conventions' shape.
type chatMessage struct {
	role, finish string
	parts        []msgPart
}

type msgPart struct {
	typ      string // text, tool_call or tool_call_response
	content  any    // text
	id, name string // tool_call, tool_call_response
	args     any    // tool_call
	response any    // tool_call_response
}

// The fields of the older message events, in their attributes or body.
var messageFields = map[string]bool{"content": true, "role": true, "tool_calls": true, "id": true,
	"index": true, "finish_reason": true, "message": true}

// event reads a gen_ai.{system,user,assistant,tool}.message or
// gen_ai.choice event.
func (ms *messageSet) event(name string, attrs []*commonpb.KeyValue, body *commonpb.AnyValue) {
	f := map[string]any{}
	for _, kv := range attrs {
		if messageFields[kv.GetKey()] {
			f[kv.GetKey()] = goValue(kv.GetValue(), 0)
		}
	}
	switch x := body.GetValue().(type) {
	case *commonpb.AnyValue_KvlistValue:
		for _, kv := range x.KvlistValue.GetValues() {
			f[kv.GetKey()] = goValue(kv.GetValue(), 0)
		}
	case *commonpb.AnyValue_StringValue:
		if _, ok := f["content"]; !ok {
			f["content"] = x.StringValue
		}
	}
	str := func(v any) string { s, _ := v.(string); return s }
	switch name {
	case "gen_ai.choice":
		msg := f
		if mm, ok := jsonish(f["message"]).(map[string]any); ok {
			msg = mm
		}
		m := chatMessage{role: "assistant", finish: str(f["finish_reason"])}
		if r := str(msg["role"]); r != "" {
			m.role = r
		}
		m.parts = contentParts(m.parts, msg["content"])
		m.parts = toolCallParts(m.parts, msg["tool_calls"])
		ms.out = append(ms.out, m)
	case "gen_ai.tool.message":
		m := chatMessage{role: "tool"}
		if r := str(f["role"]); r != "" {
			m.role = r
		}
		if id := str(f["id"]); id != "" {
			m.parts = append(m.parts, msgPart{typ: "tool_call_response", id: id, response: jsonish(f["content"])})
		} else {
			m.parts = contentParts(m.parts, f["content"])
		}
		ms.in = append(ms.in, m)
	default:
		role := strings.TrimSuffix(strings.TrimPrefix(name, "gen_ai."), ".message")
		if r := str(f["role"]); r != "" {
			role = r
		}
		m := chatMessage{role: role}
		m.parts = contentParts(m.parts, f["content"])
		m.parts = toolCallParts(m.parts, f["tool_calls"])
		ms.in = append(ms.in, m)
	}
}

func contentParts(parts []msgPart, content any) []msgPart {
	if content == nil || content == "" {
		return parts
	}
	return append(parts, msgPart{typ: "text", content: content})
}

// toolCallParts reads tool calls in the OpenAI shape, [{id, type,
// function: {name, arguments}}], or with name and arguments at the top.
func toolCallParts(parts []msgPart, v any) []msgPart {
	var list []any
	switch x := jsonish(v).(type) {
	case []any:
		list = x
	case map[string]any:
		list = []any{x}
	}
	for _, e := range list {
		c, ok := e.(map[string]any)
		if !ok {
			continue
		}
		id, _ := c["id"].(string)
		name, _ := c["name"].(string)
		args := c["arguments"]
		if fn, ok := c["function"].(map[string]any); ok {
			name, _ = fn["name"].(string)
			args = fn["arguments"]
		}
		parts = append(parts, msgPart{typ: "tool_call", id: id, name: name, args: jsonish(args)})
	}
	return parts
}

// messagesContent sets a messages content field from the flattened
// attributes or, without them, the message events.
func (b *recordBuilder) messagesContent(key string, flat []flatMessage, events []chatMessage, role string) {
	var list []chatMessage
	for i := range flat {
		if m, ok := flat[i].message(role); ok {
			list = append(list, m)
		}
	}
	if len(list) == 0 {
		list = events
	}
	if len(list) == 0 {
		return
	}
	start := len(b.rq.buf)
	buf := append(b.rq.buf, '[')
	for i := range list {
		if i > 0 {
			buf = append(buf, ',')
		}
		var ok bool
		if buf, ok = appendMessage(buf, &list[i]); !ok {
			b.contentDropped = append(b.contentDropped, key)
			return
		}
	}
	b.rq.buf = append(buf, ']')
	b.setContent(key, b.rq.since(start))
}

// appendMessage appends a message's canonical JSON; member names are
// written in RFC 8785 order.
func appendMessage(dst []byte, m *chatMessage) ([]byte, bool) {
	ok := true
	dst = append(dst, '{')
	if m.finish != "" {
		dst = append(dst, `"finish_reason":`...)
		dst = infertrail.AppendString(dst, m.finish)
		dst = append(dst, ',')
	}
	dst = append(dst, `"parts":[`...)
	for i := range m.parts {
		p := &m.parts[i]
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, '{')
		switch p.typ {
		case "text":
			dst = append(dst, `"content":`...)
			dst, ok = appendGo(dst, p.content, 0)
		case "tool_call":
			if p.args != nil {
				dst = append(dst, `"arguments":`...)
				dst, ok = appendGo(dst, p.args, 0)
				dst = append(dst, ',')
			}
			if p.id != "" {
				dst = append(dst, `"id":`...)
				dst = infertrail.AppendString(dst, p.id)
				dst = append(dst, ',')
			}
			dst = append(dst, `"name":`...)
			dst = infertrail.AppendString(dst, p.name)
		case "tool_call_response":
			dst = append(dst, `"id":`...)
			dst = infertrail.AppendString(dst, p.id)
			dst = append(dst, `,"response":`...)
			dst, ok = appendGo(dst, p.response, 0)
		}
		if !ok {
			return dst, false
		}
		dst = append(dst, `,"type":`...)
		dst = infertrail.AppendString(dst, p.typ)
		dst = append(dst, '}')
	}
	dst = append(dst, `],"role":`...)
	dst = infertrail.AppendString(dst, m.role)
	return append(dst, '}'), true
}

// goValue is an OTLP value as a Go value: string, bool, int64, float64,
// []any, map[string]any or nil; bytes become base64 strings.
func goValue(v *commonpb.AnyValue, depth int) any {
	switch x := v.GetValue().(type) {
	case *commonpb.AnyValue_StringValue:
		return x.StringValue
	case *commonpb.AnyValue_BoolValue:
		return x.BoolValue
	case *commonpb.AnyValue_IntValue:
		return x.IntValue
	case *commonpb.AnyValue_DoubleValue:
		return x.DoubleValue
	case *commonpb.AnyValue_BytesValue:
		return base64.StdEncoding.EncodeToString(x.BytesValue)
	case *commonpb.AnyValue_ArrayValue:
		if depth >= maxNesting {
			return nil
		}
		out := make([]any, len(x.ArrayValue.GetValues()))
		for i, e := range x.ArrayValue.GetValues() {
			out[i] = goValue(e, depth+1)
		}
		return out
	case *commonpb.AnyValue_KvlistValue:
		if depth >= maxNesting {
			return nil
		}
		out := make(map[string]any, len(x.KvlistValue.GetValues()))
		for _, kv := range x.KvlistValue.GetValues() {
			out[kv.GetKey()] = goValue(kv.GetValue(), depth+1)
		}
		return out
	}
	return nil
}

// jsonish is v, or the JSON object or array a string v holds.
func jsonish(v any) any {
	s, ok := v.(string)
	if !ok || !looksJSON(s) {
		return v
	}
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	var out any
	if dec.Decode(&out) != nil || dec.InputOffset() != int64(len(strings.TrimRight(s, " \t\r\n"))) {
		return v
	}
	return out
}

// appendGo appends the canonical JSON of a value goValue or jsonish gave.
func appendGo(dst []byte, v any, depth int) ([]byte, bool) {
	switch x := v.(type) {
	case nil:
		return append(dst, "null"...), true
	case string:
		return infertrail.AppendString(dst, x), true
	case bool:
		return strconv.AppendBool(dst, x), true
	case int64:
		return appendInt(dst, x), true
	case float64:
		return appendDouble(dst, x), true
	case json.Number:
		if out, err := infertrail.AppendCanonical(dst, []byte(x)); err == nil {
			return out, true
		}
		return infertrail.AppendString(dst, string(x)), true
	case []any:
		if depth >= maxNesting {
			return dst, false
		}
		dst = append(dst, '[')
		for i, e := range x {
			if i > 0 {
				dst = append(dst, ',')
			}
			var ok bool
			if dst, ok = appendGo(dst, e, depth+1); !ok {
				return dst, false
			}
		}
		return append(dst, ']'), true
	case map[string]any:
		if depth >= maxNesting {
			return dst, false
		}
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		slices.SortFunc(keys, infertrail.CompareKeys)
		dst = append(dst, '{')
		for i, k := range keys {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = infertrail.AppendString(dst, k)
			dst = append(dst, ':')
			var ok bool
			if dst, ok = appendGo(dst, x[k], depth+1); !ok {
				return dst, false
			}
		}
		return append(dst, '}'), true
	}
	return dst, false
}
