package otlp

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	collogspb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/infertrail/infertrail"
)

var updateGolden = flag.Bool("update-golden", false, "rewrite the expected records under testdata/")

// hexIDsToBase64ForTest rewrites the hex trace and span ids of OTLP/JSON
// as the base64 that protojson reads.
func hexIDsToBase64ForTest(tb testing.TB, v any) {
	tb.Helper()
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			if k == "traceId" || k == "spanId" || k == "parentSpanId" {
				b, err := hex.DecodeString(e.(string))
				if err != nil {
					tb.Fatalf("%s %q: %v", k, e, err)
				}
				x[k] = base64.StdEncoding.EncodeToString(b)
				continue
			}
			hexIDsToBase64ForTest(tb, e)
		}
	case []any:
		for _, e := range x {
			hexIDsToBase64ForTest(tb, e)
		}
	}
}

// mapLoad reads an OTLP/JSON file of testdata into m.
func mapLoad(tb testing.TB, name string, m proto.Message) {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		tb.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		tb.Fatalf("%s: %v", name, err)
	}
	hexIDsToBase64ForTest(tb, v)
	nb, err := json.Marshal(v)
	if err != nil {
		tb.Fatal(err)
	}
	if err := protojson.Unmarshal(nb, m); err != nil {
		tb.Fatalf("%s: %v", name, err)
	}
}

func mapTraces(tb testing.TB, name string) *coltracepb.ExportTraceServiceRequest {
	tb.Helper()
	req := &coltracepb.ExportTraceServiceRequest{}
	mapLoad(tb, name, req)
	return req
}

func mapLogs(tb testing.TB, name string) *collogspb.ExportLogsServiceRequest {
	tb.Helper()
	req := &collogspb.ExportLogsServiceRequest{}
	mapLoad(tb, name, req)
	return req
}

func newMapMapper(tb testing.TB, cfg MapConfig) *Mapper {
	tb.Helper()
	m, err := NewMapper(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return m
}

// mapCheck checks what every mapped record must be: canonical values,
// distinct ids, the otlp source, and a record the trail accepts.
func mapCheck(tb testing.TB, recs []*infertrail.Record) {
	tb.Helper()
	seen := map[infertrail.UUID]bool{}
	for i, r := range recs {
		if r.ID.IsZero() || seen[r.ID] {
			tb.Errorf("record %d: id %s is zero or repeated", i, r.ID)
		}
		seen[r.ID] = true
		if r.ID[6]>>4 != 8 || r.ID[8]>>6 != 2 {
			tb.Errorf("record %d: id %s is not a UUIDv8", i, r.ID)
		}
		if r.Source != "otlp" {
			tb.Errorf("record %d: source %q", i, r.Source)
		}
		if len(r.Attributes) > maxAttrs {
			tb.Errorf("record %d: %d attributes", i, len(r.Attributes))
		}
		for field, m := range map[string]map[string]json.RawMessage{"attributes": r.Attributes, "content": r.Content} {
			for k, v := range m {
				c, err := infertrail.Canonicalize(v)
				if err != nil || !bytes.Equal(c, v) {
					tb.Errorf("record %d: %s[%q] = %s is not canonical JSON (%v)", i, field, k, v, err)
				}
			}
		}
		if err := r.Validate(infertrail.Limits{}); err != nil {
			tb.Errorf("record %d: %v", i, err)
		}
	}
}

// mapGolden compares the records with testdata/<name>, or writes it with
// -update-golden.
func mapGolden(t *testing.T, name string, res Result) {
	t.Helper()
	var buf bytes.Buffer
	fmt.Fprintf(&buf, "{\"dropped\": %d, \"records\": [", res.Dropped)
	for i, r := range res.Records {
		b, err := r.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		if i > 0 {
			buf.WriteByte(',')
		}
		buf.Write(b)
	}
	buf.WriteString("]}")
	var out bytes.Buffer
	if err := json.Indent(&out, buf.Bytes(), "", "  "); err != nil {
		t.Fatal(err)
	}
	out.WriteByte('\n')
	path := filepath.Join("testdata", name)
	if *updateGolden {
		if err := os.WriteFile(path, out.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run the test with -update-golden to create it)", err)
	}
	if !bytes.Equal(out.Bytes(), want) {
		t.Errorf("records differ from %s (rerun with -update-golden and review the diff):\n%s", path, out.Bytes())
	}
}

func mapBySpan(t *testing.T, recs []*infertrail.Record, spanID string, kind infertrail.Kind) *infertrail.Record {
	t.Helper()
	for _, r := range recs {
		if r.SpanID == spanID && r.Kind == kind {
			return r
		}
	}
	t.Fatalf("no %s record of span %s", kind, spanID)
	return nil
}

func mapAttr(r *infertrail.Record, k string) string { return string(r.Attributes[k]) }

func mapHasLink(r *infertrail.Record, rel string, id infertrail.UUID) bool {
	for _, l := range r.Links {
		if l.Rel == rel && l.ID == id {
			return true
		}
	}
	return false
}

func TestMapCurrentConventions(t *testing.T) {
	m := newMapMapper(t, MapConfig{})
	res, err := m.Traces(mapTraces(t, "current.json"), "acme")
	if err != nil {
		t.Fatal(err)
	}
	mapCheck(t, res.Records)
	mapGolden(t, "current.records.json", res)
	if len(res.Records) != 5 || res.Dropped != 1 {
		t.Fatalf("%d records, %d dropped; want 5 and 1 (format_reply)", len(res.Records), res.Dropped)
	}
	agent := mapBySpan(t, res.Records, "b7ad6b7169203331", infertrail.KindDownstreamCall)
	chat := mapBySpan(t, res.Records, "00f067aa0ba902b7", infertrail.KindInference)
	tool := mapBySpan(t, res.Records, "1a2b3c4d5e6f7081", infertrail.KindToolCall)
	http := mapBySpan(t, res.Records, "2b3c4d5e6f708192", infertrail.KindDownstreamCall)
	db := mapBySpan(t, res.Records, "3c4d5e6f708192a3", infertrail.KindDownstreamCall)

	// The agent span comes last in the request; every record is still its.
	want := infertrail.Actor{ID: "agent:asst_5j66UpCp", Type: "agent", Workload: "spiffe://acme.example/ns/payments/sa/payments-agent"}
	for _, r := range res.Records {
		got := r.Actor
		got.OnBehalfOf = ""
		if got != want {
			t.Errorf("span %s: actor %+v, want %+v", r.SpanID, r.Actor, want)
		}
		if r.Tenant != "acme" || r.TraceID != "0af7651916cd43dd8448eb211c80319c" {
			t.Errorf("span %s: tenant %q, trace %q", r.SpanID, r.Tenant, r.TraceID)
		}
		if mapAttr(r, "service.name") != `"payments-agent"` || mapAttr(r, "k8s.pod.name") == "" {
			t.Errorf("span %s: resource attributes missing: %s", r.SpanID, r.Attributes)
		}
		if r.Attributes["process.command_args"] != nil {
			t.Errorf("span %s: process.command_args kept", r.SpanID)
		}
	}
	if mapAttr(agent, "gen_ai.operation.name") != `"invoke_agent"` {
		t.Errorf("invoke_agent record: %s", agent.Attributes)
	}
	// The human and the session of the agent span are those of the
	// records of its trace.
	for _, r := range res.Records {
		if r.Actor.OnBehalfOf != "alice@acme.example" || r.SessionID != "conv_5j66UpCp" {
			t.Errorf("span %s: on behalf of %q, session %q", r.SpanID, r.Actor.OnBehalfOf, r.SessionID)
		}
	}
	if chat.SessionID != "conv_5j66UpCp" || chat.ParentSpanID != "b7ad6b7169203331" {
		t.Errorf("chat: session %q, parent %q", chat.SessionID, chat.ParentSpanID)
	}
	for k, v := range map[string]string{
		"gen_ai.provider.name": `"openai"`, "gen_ai.request.model": `"gpt-4o"`, "gen_ai.response.model": `"gpt-4o-2024-08-06"`,
		"gen_ai.usage.input_tokens": "120", "gen_ai.usage.output_tokens": "30", "gen_ai.response.finish_reasons": `["tool_calls"]`,
		"gen_ai.request.temperature": "0.2", "gen_ai.request.top_p": "1", "openai.response.system_fingerprint": `"fp_abc123"`,
		"infertrail.duration_ns": "1360000000", "otel.status_code": `"OK"`, "otel.span.kind": `"client"`,
		"otel.scope.name": `"opentelemetry.instrumentation.openai_v2"`,
	} {
		if got := mapAttr(chat, k); got != v {
			t.Errorf("chat %s = %s, want %s", k, got, v)
		}
	}
	if got := string(chat.Content["gen_ai.input.messages"]); got != `[{"parts":[{"content":"Pay invoice 7 of 1200 EUR to ACME","type":"text"}],"role":"user"}]` {
		t.Errorf("chat input messages = %s", got)
	}
	for _, k := range []string{"gen_ai.output.messages", "gen_ai.system_instructions", "gen_ai.tool.definitions"} {
		if !bytes.HasPrefix(chat.Content[k], []byte("[{")) {
			t.Errorf("chat content %s = %s, want parsed JSON", k, chat.Content[k])
		}
	}
	for _, r := range res.Records {
		for k := range r.Attributes {
			if strings.HasPrefix(k, "http.request.header.") || strings.Contains(k, "messages") {
				t.Errorf("span %s: attribute %s kept", r.SpanID, k)
			}
		}
	}
	if got := string(tool.Content["gen_ai.tool.call.arguments"]); got != `{"amount_eur":1200,"invoice":7}` {
		t.Errorf("tool arguments = %s", got)
	}
	if mapAttr(tool, "gen_ai.tool.call.id") != `"call_1"` || mapAttr(tool, "gen_ai.tool.name") != `"approve_payment"` {
		t.Errorf("tool attributes: %s", tool.Attributes)
	}
	if got := mapAttr(http, "url.full"); got != `"https://payments.internal.example/v1/transfers"` {
		t.Errorf("url.full = %s", got)
	}
	if !strings.HasPrefix(mapAttr(http, "url.query.digest"), `"sha256:`) || mapAttr(http, "http.response.status_code") != "201" {
		t.Errorf("http attributes: %s", http.Attributes)
	}
	if !mapHasLink(http, "child_of", tool.ID) || !mapHasLink(db, "child_of", tool.ID) {
		t.Errorf("links: http %v, db %v", http.Links, db.Links)
	}
	if len(agent.Links) != 0 {
		t.Errorf("the root span's record has links %v", agent.Links)
	}
	if db.Attributes["db.query.text"] != nil || !strings.HasPrefix(mapAttr(db, "db.query.digest"), `"sha256:`) {
		t.Errorf("db attributes: %s", db.Attributes)
	}
	for _, r := range res.Records {
		if bytes.Contains(mapJSON(t, r), []byte("DE89370400440532013000")) || bytes.Contains(mapJSON(t, r), []byte("s3cr3t")) ||
			bytes.Contains(mapJSON(t, r), []byte("hunter2")) || bytes.Contains(mapJSON(t, r), []byte("sk-not-a-real-key")) {
			t.Errorf("span %s: a secret or a query is in the record", r.SpanID)
		}
	}
}

func mapJSON(t *testing.T, r *infertrail.Record) []byte {
	b, err := r.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestMapOlderConventions(t *testing.T) {
	m := newMapMapper(t, MapConfig{})
	res, err := m.Traces(mapTraces(t, "older.json"), "")
	if err != nil {
		t.Fatal(err)
	}
	mapCheck(t, res.Records)
	mapGolden(t, "older.records.json", res)
	if len(res.Records) != 3 || res.Dropped != 0 {
		t.Fatalf("%d records, %d dropped", len(res.Records), res.Dropped)
	}
	first := mapBySpan(t, res.Records, "051581bf3cb55c13", infertrail.KindInference)
	if first.Tenant != infertrail.DefaultTenant || first.Actor != (infertrail.Actor{ID: "service:legacy-bot", Type: "workload"}) {
		t.Errorf("tenant %q, actor %+v", first.Tenant, first.Actor)
	}
	for k, v := range map[string]string{
		"gen_ai.operation.name": `"chat"`, "gen_ai.provider.name": `"openai"`, "gen_ai.system": `"openai"`,
		"gen_ai.usage.input_tokens": "25", "gen_ai.usage.output_tokens": "12", "gen_ai.usage.prompt_tokens": "25",
		"openai.response.system_fingerprint": `"fp_44709d6fcb"`,
	} {
		if got := mapAttr(first, k); got != v {
			t.Errorf("%s = %s, want %s", k, got, v)
		}
	}
	for k := range first.Attributes {
		if strings.HasPrefix(k, "gen_ai.prompt") || strings.HasPrefix(k, "gen_ai.completion") || strings.HasPrefix(k, "llm.request.functions") {
			t.Errorf("flattened content attribute %s kept in clear", k)
		}
	}
	wantIn := `[{"parts":[{"content":"You are a weather bot.","type":"text"}],"role":"system"},{"parts":[{"content":"What's the weather in Paris?","type":"text"}],"role":"user"}]`
	wantOut := `[{"finish_reason":"tool_calls","parts":[{"arguments":{"city":"Paris"},"id":"call_w1","name":"get_weather","type":"tool_call"}],"role":"assistant"}]`
	if got := string(first.Content["gen_ai.input.messages"]); got != wantIn {
		t.Errorf("input messages:\n got %s\nwant %s", got, wantIn)
	}
	if got := string(first.Content["gen_ai.output.messages"]); got != wantOut {
		t.Errorf("output messages:\n got %s\nwant %s", got, wantOut)
	}
	if !bytes.Contains(first.Content["otel.content_attributes"], []byte(`"llm.request.functions.0.name":"get_weather"`)) {
		t.Errorf("otel.content_attributes = %s", first.Content["otel.content_attributes"])
	}

	second := mapBySpan(t, res.Records, "051581bf3cb55c14", infertrail.KindInference)
	if got := string(second.Content["gen_ai.input.messages"]); !strings.Contains(got, `{"parts":[{"id":"call_w1","response":{"temp_c":18},"type":"tool_call_response"}],"role":"tool"}`) {
		t.Errorf("tool response message missing: %s", got)
	}

	events := mapBySpan(t, res.Records, "051581bf3cb55c15", infertrail.KindInference)
	wantIn = `[{"parts":[{"content":"Answer in French.","type":"text"}],"role":"system"},{"parts":[{"content":"Say hello.","type":"text"}],"role":"user"}]`
	wantOut = `[{"finish_reason":"stop","parts":[{"content":"Bonjour !","type":"text"}],"role":"assistant"}]`
	if got := string(events.Content["gen_ai.input.messages"]); got != wantIn {
		t.Errorf("event input messages:\n got %s\nwant %s", got, wantIn)
	}
	if got := string(events.Content["gen_ai.output.messages"]); got != wantOut {
		t.Errorf("event output messages:\n got %s\nwant %s", got, wantOut)
	}
}

func TestMapGuardrail(t *testing.T) {
	m := newMapMapper(t, MapConfig{})
	res, err := m.Traces(mapTraces(t, "guardrail.json"), "acme")
	if err != nil {
		t.Fatal(err)
	}
	mapCheck(t, res.Records)
	mapGolden(t, "guardrail.records.json", res)
	chat := mapBySpan(t, res.Records, "8448eb211c80319c", infertrail.KindInference)
	pd := mapBySpan(t, res.Records, "c9f0e1d2a3b4c5d6", infertrail.KindPolicyDecision)
	if mapAttr(pd, "policy.result") != `"deny"` || mapAttr(pd, "policy.id") != `"gr-42"` || mapAttr(pd, "gen_ai.guardrail.decision") != `"BLOCKED"` {
		t.Errorf("policy decision attributes: %s", pd.Attributes)
	}
	if !mapHasLink(pd, "governs", chat.ID) {
		t.Errorf("policy decision links %v, want governs %s", pd.Links, chat.ID)
	}
	if pd.Attributes["gen_ai.guardrail.verdict.reason"] != nil || pd.Content["gen_ai.guardrail.verdict.reason"] == nil {
		t.Errorf("the verdict reason is not content: %s %s", pd.Attributes, pd.Content)
	}
	if mapAttr(pd, "otel.status_code") != `"ERROR"` || mapAttr(pd, "otel.status_description") != `"guardrail tripped"` {
		t.Errorf("status: %s", pd.Attributes)
	}
	// A tool span with guardrail attributes: a tool call, and the decision
	// about it, which the action (modify) decides over the verdict (deny).
	tool := mapBySpan(t, res.Records, "d0e1f2a3b4c5d6e7", infertrail.KindToolCall)
	tpd := mapBySpan(t, res.Records, "d0e1f2a3b4c5d6e7", infertrail.KindPolicyDecision)
	if mapAttr(tpd, "policy.result") != `"modify"` || mapAttr(tpd, "policy.id") != `"refund-limits"` || !mapHasLink(tpd, "governs", tool.ID) {
		t.Errorf("tool decision: %s %v", tpd.Attributes, tpd.Links)
	}
	if tpd.Attributes["gen_ai.tool.name"] != nil {
		t.Errorf("the decision record holds the tool's attributes: %s", tpd.Attributes)
	}
}

func TestMapLogs(t *testing.T) {
	m := newMapMapper(t, MapConfig{})
	res, err := m.Logs(mapLogs(t, "logs.json"), "acme")
	if err != nil {
		t.Fatal(err)
	}
	mapCheck(t, res.Records)
	mapGolden(t, "logs.records.json", res)
	if len(res.Records) != 3 || res.Dropped != 1 {
		t.Fatalf("%d records, %d dropped; want 3 and 1", len(res.Records), res.Dropped)
	}
	details := mapBySpan(t, res.Records, "00f067aa0ba902b7", infertrail.KindInference)
	if got := string(details.Content["gen_ai.input.messages"]); got != `[{"parts":[{"content":"Pay invoice 7 of 1200 EUR to ACME","type":"text"}],"role":"user"}]` {
		t.Errorf("details input messages = %s", got)
	}
	if !bytes.HasPrefix(details.Content["gen_ai.output.messages"], []byte(`[{"finish_reason":"tool_call"`)) {
		t.Errorf("details output messages = %s", details.Content["gen_ai.output.messages"])
	}
	if mapAttr(details, "gen_ai.request.model") != `"gpt-4o"` {
		t.Errorf("details attributes: %s", details.Attributes)
	}
	// The two older message events of one span make one record.
	pair := mapBySpan(t, res.Records, "5e6f708192a3b4c5", infertrail.KindInference)
	if got := string(pair.Content["gen_ai.input.messages"]); got != `[{"parts":[{"content":"Hi","type":"text"}],"role":"user"}]` {
		t.Errorf("input messages = %s", got)
	}
	if got := string(pair.Content["gen_ai.output.messages"]); got != `[{"finish_reason":"stop","parts":[{"content":"Hello! How can I help?","type":"text"}],"role":"assistant"}]` {
		t.Errorf("output messages = %s", got)
	}
	if mapAttr(pair, "otel.log.event_names") != `["gen_ai.user.message","gen_ai.choice"]` {
		t.Errorf("event names: %s", pair.Attributes)
	}
	// Mapped again, the same records.
	again, err := newMapMapper(t, MapConfig{}).Logs(mapLogs(t, "logs.json"), "acme")
	if err != nil {
		t.Fatal(err)
	}
	for i := range res.Records {
		if res.Records[i].ID != again.Records[i].ID {
			t.Errorf("record %d: id %s, then %s", i, res.Records[i].ID, again.Records[i].ID)
		}
	}
}

// TestMapIdempotent maps the same request twice: the records are the same,
// ids included, so the trail sees a re-sent export as duplicates.
func TestMapIdempotent(t *testing.T) {
	for _, name := range []string{"current.json", "older.json", "guardrail.json"} {
		m := newMapMapper(t, MapConfig{})
		a, err := m.Traces(mapTraces(t, name), "acme")
		if err != nil {
			t.Fatal(err)
		}
		b, err := m.Traces(mapTraces(t, name), "acme")
		if err != nil {
			t.Fatal(err)
		}
		if len(a.Records) != len(b.Records) {
			t.Fatalf("%s: %d records, then %d", name, len(a.Records), len(b.Records))
		}
		for i := range a.Records {
			ja, jb := mapJSON(t, a.Records[i]), mapJSON(t, b.Records[i])
			if !bytes.Equal(ja, jb) {
				t.Errorf("%s: record %d differs when mapped again:\n%s\n%s", name, i, ja, jb)
			}
		}
	}
}

// span builds a span for the tests; attributes alternate names and values.
func mapSpan(trace, span, parent string, kind tracepb.Span_SpanKind, kv ...any) *tracepb.Span {
	tid, _ := hex.DecodeString(trace)
	sid, _ := hex.DecodeString(span)
	sp := &tracepb.Span{TraceId: tid, SpanId: sid, Name: "span " + span, Kind: kind,
		StartTimeUnixNano: 1_790_000_000_000_000_000, EndTimeUnixNano: 1_790_000_000_250_000_000}
	if parent != "" {
		sp.ParentSpanId, _ = hex.DecodeString(parent)
	}
	for i := 0; i < len(kv); i += 2 {
		sp.Attributes = append(sp.Attributes, &commonpb.KeyValue{Key: kv[i].(string), Value: mapAnyValue(kv[i+1])})
	}
	return sp
}

func mapAnyValue(v any) *commonpb.AnyValue {
	switch x := v.(type) {
	case string:
		return &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: x}}
	case int:
		return &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: int64(x)}}
	case int64:
		return &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: x}}
	case float64:
		return &commonpb.AnyValue{Value: &commonpb.AnyValue_DoubleValue{DoubleValue: x}}
	case bool:
		return &commonpb.AnyValue{Value: &commonpb.AnyValue_BoolValue{BoolValue: x}}
	case []byte:
		return &commonpb.AnyValue{Value: &commonpb.AnyValue_BytesValue{BytesValue: x}}
	case []any:
		a := &commonpb.ArrayValue{}
		for _, e := range x {
			a.Values = append(a.Values, mapAnyValue(e))
		}
		return &commonpb.AnyValue{Value: &commonpb.AnyValue_ArrayValue{ArrayValue: a}}
	case map[string]any:
		l := &commonpb.KeyValueList{}
		for k, e := range x {
			l.Values = append(l.Values, &commonpb.KeyValue{Key: k, Value: mapAnyValue(e)})
		}
		return &commonpb.AnyValue{Value: &commonpb.AnyValue_KvlistValue{KvlistValue: l}}
	}
	return &commonpb.AnyValue{}
}

func mapRequest(service string, spans ...*tracepb.Span) *coltracepb.ExportTraceServiceRequest {
	return &coltracepb.ExportTraceServiceRequest{ResourceSpans: []*tracepb.ResourceSpans{{
		Resource: &resourcepb.Resource{Attributes: []*commonpb.KeyValue{
			{Key: "service.name", Value: mapAnyValue(service)}}},
		ScopeSpans: []*tracepb.ScopeSpans{{Spans: spans}},
	}}}
}

const (
	mapTraceA = "4bf92f3577b34da6a3ce929d0e0e4736"
	mapTraceB = "11111111111111111111111111111111"
)

// TestMapAcrossRequests: a trace's agent and its GenAI spans are
// remembered for the spans of later requests.
func TestMapAcrossRequests(t *testing.T) {
	m := newMapMapper(t, MapConfig{})
	first := mapRequest("svc",
		mapSpan(mapTraceA, "0000000000000001", "", tracepb.Span_SPAN_KIND_INTERNAL,
			"gen_ai.operation.name", "invoke_agent", "gen_ai.agent.name", "triage"),
		mapSpan(mapTraceA, "0000000000000002", "0000000000000001", tracepb.Span_SPAN_KIND_CLIENT,
			"gen_ai.operation.name", "chat", "gen_ai.request.model", "m"))
	if _, err := m.Traces(first, ""); err != nil {
		t.Fatal(err)
	}
	later := mapRequest("svc",
		mapSpan(mapTraceA, "0000000000000003", "0000000000000009", tracepb.Span_SPAN_KIND_CLIENT,
			"http.request.method", "GET", "url.full", "https://api.example/x"),
		mapSpan(mapTraceB, "0000000000000004", "", tracepb.Span_SPAN_KIND_CLIENT,
			"http.request.method", "GET", "url.full", "https://api.example/y"))
	res, err := m.Traces(later, "")
	if err != nil {
		t.Fatal(err)
	}
	mapCheck(t, res.Records)
	if len(res.Records) != 1 || res.Dropped != 1 {
		t.Fatalf("%d records, %d dropped; want the HTTP span of the agent's trace only", len(res.Records), res.Dropped)
	}
	r := res.Records[0]
	if r.Actor.ID != "agent:triage" || r.Actor.Type != "agent" || r.Kind != infertrail.KindDownstreamCall || len(r.Links) != 0 {
		t.Errorf("record: %+v", r)
	}
	// A fresh mapper knows nothing of the trace: the HTTP spans are not
	// part of an AI interaction.
	res, err = newMapMapper(t, MapConfig{}).Traces(later, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Records) != 0 || res.Dropped != 2 {
		t.Errorf("fresh mapper: %d records, %d dropped", len(res.Records), res.Dropped)
	}
	// Kept, they are downstream calls of the service.
	res, err = newMapMapper(t, MapConfig{KeepIrrelevant: true}).Traces(later, "")
	if err != nil {
		t.Fatal(err)
	}
	mapCheck(t, res.Records)
	if len(res.Records) != 2 || res.Dropped != 0 || res.Records[0].Actor.ID != "service:svc" {
		t.Errorf("KeepIrrelevant: %d records, %d dropped", len(res.Records), res.Dropped)
	}
}

// TestMapNestedAgents: a span is attributed to the nearest agent above it.
func TestMapNestedAgents(t *testing.T) {
	m := newMapMapper(t, MapConfig{})
	res, err := m.Traces(mapRequest("svc",
		mapSpan(mapTraceA, "0000000000000001", "", 0, "gen_ai.operation.name", "invoke_agent", "gen_ai.agent.id", "outer"),
		mapSpan(mapTraceA, "0000000000000002", "0000000000000001", 0, "gen_ai.operation.name", "invoke_agent", "gen_ai.agent.id", "inner"),
		mapSpan(mapTraceA, "0000000000000003", "0000000000000002", 0, "gen_ai.operation.name", "chat"),
		mapSpan(mapTraceA, "0000000000000004", "0000000000000001", 0, "gen_ai.operation.name", "chat"),
	), "")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"0000000000000001": "agent:outer", "0000000000000002": "agent:inner",
		"0000000000000003": "agent:inner", "0000000000000004": "agent:outer"}
	for _, r := range res.Records {
		if r.Actor.ID != want[r.SpanID] {
			t.Errorf("span %s: actor %s, want %s", r.SpanID, r.Actor.ID, want[r.SpanID])
		}
	}
}

func TestMapMCP(t *testing.T) {
	m := newMapMapper(t, MapConfig{})
	res, err := m.Traces(mapRequest("mcp-client",
		mapSpan(mapTraceA, "0000000000000001", "", tracepb.Span_SPAN_KIND_CLIENT, "mcp.method.name", "tools/call",
			"gen_ai.tool.name", "get_weather", "mcp.session.id", "s-1", "jsonrpc.request.id", "5",
			"gen_ai.tool.call.arguments", `{"city":"Paris"}`),
		mapSpan(mapTraceA, "0000000000000002", "", tracepb.Span_SPAN_KIND_CLIENT, "mcp.method.name", "tools/list"),
		mapSpan(mapTraceA, "0000000000000003", "", tracepb.Span_SPAN_KIND_CLIENT, "mcp.method.name", "resources/read",
			"mcp.resource.uri", "file:///srv/a.txt"),
		mapSpan(mapTraceA, "0000000000000004", "", tracepb.Span_SPAN_KIND_CLIENT, "mcp.method.name", "prompts/get",
			"gen_ai.prompt.name", "summarise"),
	), "")
	if err != nil {
		t.Fatal(err)
	}
	mapCheck(t, res.Records)
	kinds := []infertrail.Kind{infertrail.KindToolCall, infertrail.KindDownstreamCall, infertrail.KindRetrieval, infertrail.KindRetrieval}
	for i, r := range res.Records {
		if r.Kind != kinds[i] {
			t.Errorf("record %d: kind %s, want %s", i, r.Kind, kinds[i])
		}
	}
	call := res.Records[0]
	if mapAttr(call, "gen_ai.tool.name") != `"get_weather"` || mapAttr(call, "mcp.session.id") != `"s-1"` ||
		mapAttr(call, "gen_ai.operation.name") != `"execute_tool"` || string(call.Content["gen_ai.tool.call.arguments"]) != `{"city":"Paris"}` {
		t.Errorf("tools/call: %s %s", call.Attributes, call.Content)
	}
	if mapAttr(res.Records[3], "gen_ai.prompt.name") != `"summarise"` {
		t.Errorf("gen_ai.prompt.name is not an attribute: %s", res.Records[3].Attributes)
	}
}

func TestMapInvalid(t *testing.T) {
	good := func() *tracepb.Span {
		return mapSpan(mapTraceA, "0000000000000001", "", 0, "gen_ai.operation.name", "chat")
	}
	for _, tc := range []struct {
		name, field string
		change      func(*tracepb.Span)
	}{
		{"short trace id", "traceId", func(s *tracepb.Span) { s.TraceId = s.TraceId[:15] }},
		{"zero trace id", "traceId", func(s *tracepb.Span) { s.TraceId = make([]byte, 16) }},
		{"no span id", "spanId", func(s *tracepb.Span) { s.SpanId = nil }},
		{"zero span id", "spanId", func(s *tracepb.Span) { s.SpanId = make([]byte, 8) }},
		{"long parent id", "parentSpanId", func(s *tracepb.Span) { s.ParentSpanId = make([]byte, 9) }},
		{"end before start", "endTimeUnixNano", func(s *tracepb.Span) { s.EndTimeUnixNano = s.StartTimeUnixNano - 1 }},
		{"no start", "startTimeUnixNano", func(s *tracepb.Span) { s.StartTimeUnixNano = 0 }},
		{"unknown kind", "kind", func(s *tracepb.Span) { s.Kind = 9 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bad := mapSpan(mapTraceA, "0000000000000002", "", 0, "http.request.method", "GET")
			tc.change(bad)
			req := mapRequest("svc", good(), good())
			req.ResourceSpans[0].ScopeSpans = append(req.ResourceSpans[0].ScopeSpans, &tracepb.ScopeSpans{Spans: []*tracepb.Span{good(), bad}})
			res, err := newMapMapper(t, MapConfig{}).Traces(req, "")
			if !errors.Is(err, infertrail.ErrInvalid) {
				t.Fatalf("err = %v, want ErrInvalid", err)
			}
			if want := "resourceSpans[0].scopeSpans[1].spans[1]." + tc.field; !strings.Contains(err.Error(), want) {
				t.Errorf("err = %v, want it to name %s", err, want)
			}
			if len(res.Records) != 0 {
				t.Errorf("%d records from an invalid request", len(res.Records))
			}
		})
	}
	if _, err := newMapMapper(t, MapConfig{}).Traces(mapRequest("svc", good()), "not a tenant"); !errors.Is(err, infertrail.ErrInvalid) {
		t.Errorf("bad tenant: err = %v", err)
	}
	if _, err := NewMapper(MapConfig{MaxTraces: -1}); err == nil {
		t.Error("NewMapper accepted MaxTraces -1")
	}
	logs := &collogspb.ExportLogsServiceRequest{}
	mapLoad(t, "logs.json", logs)
	logs.ResourceLogs[0].ScopeLogs[0].LogRecords[2].TraceId = []byte{1, 2, 3}
	if _, err := newMapMapper(t, MapConfig{}).Logs(logs, ""); !errors.Is(err, infertrail.ErrInvalid) ||
		!strings.Contains(err.Error(), "resourceLogs[0].scopeLogs[0].logRecords[2].traceId") {
		t.Errorf("bad log trace id: err = %v", err)
	}
}

func TestMapLimits(t *testing.T) {
	kv := []any{"gen_ai.operation.name", "chat", "big", strings.Repeat("x", 5000),
		"huge.int", int64(math.MaxInt64), "nan", math.NaN(), "inf", math.Inf(-1), "bytes", []byte{0xff, 0},
		"nested", map[string]any{"b": []any{1, 2.5, true, "é"}, "a": nil},
		"infertrail.duration_ns", 1, "otel.span.name", "forged",
		"user.password", "hunter2", "rpc.grpc.request.metadata.authorization", "x",
		"url.full", "://not a url"}
	for i := range 200 {
		kv = append(kv, fmt.Sprintf("custom.attr.%03d", i), i)
	}
	res, err := newMapMapper(t, MapConfig{}).Traces(mapRequest("svc", mapSpan(mapTraceA, "0000000000000001", "", 0, kv...)), "")
	if err != nil {
		t.Fatal(err)
	}
	mapCheck(t, res.Records)
	r := res.Records[0]
	if len(r.Attributes) != maxAttrs-1 {
		t.Errorf("%d attributes, want %d (one place is kept for %s)", len(r.Attributes), maxAttrs-1, attrContentDropped)
	}
	for k, want := range map[string]string{
		"gen_ai.operation.name": `"chat"`, "huge.int": `"9223372036854775807"`, "nan": `"NaN"`, "inf": `"-Infinity"`,
		"bytes": `"/wA="`, "nested": `{"a":null,"b":[1,2.5,true,"é"]}`, "infertrail.duration_ns": "250000000",
		"otel.span.name": `"span 0000000000000001"`,
	} {
		if got := mapAttr(r, k); got != want {
			t.Errorf("%s = %s, want %s", k, got, want)
		}
	}
	for _, k := range []string{"big", "user.password", "rpc.grpc.request.metadata.authorization", "url.full"} {
		if r.Attributes[k] != nil {
			t.Errorf("%s kept", k)
		}
	}
	if mapAttr(r, "url.full.digest") == "" {
		t.Errorf("no digest of the URL that does not parse")
	}
	var dropped int
	if err := json.Unmarshal(r.Attributes[attrDropped], &dropped); err != nil || dropped < 80 {
		t.Errorf("%s = %s", attrDropped, r.Attributes[attrDropped])
	}
}

// TestMapSpanDetails: exception events, unknown parts of flattened
// messages, and log records kept with KeepIrrelevant.
func TestMapSpanDetails(t *testing.T) {
	sp := mapSpan(mapTraceA, "0000000000000001", "", tracepb.Span_SPAN_KIND_CLIENT,
		"gen_ai.system", "openai", "gen_ai.prompt.0.role", "user", "gen_ai.prompt.0.content", "hi",
		"gen_ai.prompt.0.name", "alice", "gen_ai.prompt.99999.content", "far", "error.type", "timeout")
	sp.Status = &tracepb.Status{Code: tracepb.Status_STATUS_CODE_ERROR, Message: "upstream timed out"}
	sp.Events = []*tracepb.Span_Event{{Name: "exception", Attributes: []*commonpb.KeyValue{
		{Key: "exception.type", Value: mapAnyValue("TimeoutError")},
		{Key: "exception.message", Value: mapAnyValue("no answer from api.openai.com for user alice")},
		{Key: "exception.stacktrace", Value: mapAnyValue("Traceback …")}}}}
	res, err := newMapMapper(t, MapConfig{}).Traces(mapRequest("svc", sp), "")
	if err != nil {
		t.Fatal(err)
	}
	mapCheck(t, res.Records)
	r := res.Records[0]
	for k, want := range map[string]string{"exception.type": `"TimeoutError"`, "error.type": `"timeout"`,
		"otel.status_code": `"ERROR"`, "otel.status_description": `"upstream timed out"`} {
		if got := mapAttr(r, k); got != want {
			t.Errorf("%s = %s, want %s", k, got, want)
		}
	}
	if r.Attributes["exception.message"] != nil || r.Content["exception.message"] == nil || r.Content["exception.stacktrace"] == nil {
		t.Errorf("the exception's message is not content: %s %s", r.Attributes, r.Content)
	}
	if got := string(r.Content["gen_ai.input.messages"]); got != `[{"parts":[{"content":"hi","type":"text"}],"role":"user"}]` {
		t.Errorf("input messages = %s", got)
	}
	if got := string(r.Content["otel.content_attributes"]); got != `{"gen_ai.prompt.0.name":"alice","gen_ai.prompt.99999.content":"far"}` {
		t.Errorf("otel.content_attributes = %s", got)
	}

	logs := mapLogs(t, "logs.json")
	res, err = newMapMapper(t, MapConfig{KeepIrrelevant: true}).Logs(logs, "")
	if err != nil {
		t.Fatal(err)
	}
	mapCheck(t, res.Records)
	if len(res.Records) != 4 || res.Dropped != 0 {
		t.Fatalf("%d records, %d dropped", len(res.Records), res.Dropped)
	}
	kept := res.Records[3]
	if kept.Kind != infertrail.KindDownstreamCall || string(kept.Content["otel.log.bodies"]) != `["GET /healthz 200"]` {
		t.Errorf("kept log record: %s %s", kept.Kind, kept.Content)
	}
}

func TestMapConcurrent(t *testing.T) {
	m := newMapMapper(t, MapConfig{MaxTraces: 4})
	req := mapTraces(t, "current.json")
	want, err := newMapMapper(t, MapConfig{}).Traces(req, "")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 20 {
				res, err := m.Traces(req, "")
				if err != nil || len(res.Records) != len(want.Records) {
					t.Errorf("%d records, err %v", len(res.Records), err)
					return
				}
				for i, r := range res.Records {
					if r.ID != want.Records[i].ID {
						t.Errorf("record %d: id differs", i)
					}
				}
			}
		})
	}
	wg.Wait()
}

func TestMapTraceMemory(t *testing.T) {
	var mem traceMemory
	mem.half = 10
	for i := range 1000 {
		var k [16]byte
		k[0], k[1] = byte(i), byte(i>>8)
		mem.put(k, traceMemo{genAI: true})
		if n := len(mem.cur) + len(mem.old); n > 20 {
			t.Fatalf("%d traces remembered, limit 20", n)
		}
	}
	var last [16]byte
	last[0], last[1] = 999&0xff, 999>>8
	if _, ok := mem.get(last); !ok {
		t.Error("the last trace is forgotten")
	}
}

// mapBenchRequest is 512 spans of about 1 KiB in 64 agent traces: per trace
// an agent span, two chat spans with messages, two tool spans, two HTTP
// client spans and a database span.
func mapBenchRequest() *coltracepb.ExportTraceServiceRequest {
	in := `[{"role":"system","parts":[{"type":"text","content":"You are the payments assistant of ACME. Be brief and exact."}]},` +
		`{"role":"user","parts":[{"type":"text","content":"Pay invoice 7 of 1200 EUR to ACME and tell me when it is done."}]}]`
	out := `[{"role":"assistant","parts":[{"type":"tool_call","id":"call_1","name":"approve_payment","arguments":{"invoice":7,"amount_eur":1200}}],"finish_reason":"tool_call"}]`
	var spans []*tracepb.Span
	for i := range 64 {
		trace := fmt.Sprintf("%032x", i+1)
		root := fmt.Sprintf("%016x", i*8+1)
		id := func(j int) string { return fmt.Sprintf("%016x", i*8+j) }
		spans = append(spans,
			mapSpan(trace, root, "", tracepb.Span_SPAN_KIND_INTERNAL, "gen_ai.operation.name", "invoke_agent",
				"gen_ai.agent.id", "asst_5j66UpCpwteGg4YSxUnt7lPY", "gen_ai.agent.name", "payments-bot",
				"gen_ai.provider.name", "openai", "gen_ai.conversation.id", "conv_5j66UpCpwteGg4YSxUnt7lPY",
				"enduser.id", "alice@acme.example", "gen_ai.request.model", "gpt-4o", "gen_ai.usage.input_tokens", 1200,
				"gen_ai.usage.output_tokens", 300, "gen_ai.agent.description", strings.Repeat("Pays approved invoices. ", 20)))
		for j := 2; j <= 3; j++ {
			spans = append(spans, mapSpan(trace, id(j), root, tracepb.Span_SPAN_KIND_CLIENT,
				"gen_ai.operation.name", "chat", "gen_ai.provider.name", "openai", "gen_ai.request.model", "gpt-4o",
				"gen_ai.response.model", "gpt-4o-2024-08-06", "gen_ai.response.id", "chatcmpl-9x2LqAbCdEf",
				"gen_ai.usage.input_tokens", 120, "gen_ai.usage.output_tokens", 30, "gen_ai.response.finish_reasons", []any{"tool_calls"},
				"gen_ai.request.temperature", 0.2, "gen_ai.request.max_tokens", 512, "openai.response.system_fingerprint", "fp_abc123",
				"server.address", "api.openai.com", "server.port", 443, "gen_ai.input.messages", in, "gen_ai.output.messages", out))
		}
		for j := 4; j <= 5; j++ {
			spans = append(spans, mapSpan(trace, id(j), root, tracepb.Span_SPAN_KIND_INTERNAL,
				"gen_ai.operation.name", "execute_tool", "gen_ai.tool.name", "approve_payment", "gen_ai.tool.call.id", "call_1",
				"gen_ai.tool.type", "function", "gen_ai.tool.description", strings.Repeat("Approve a payment. ", 20),
				"gen_ai.tool.call.arguments", `{"invoice":7,"amount_eur":1200}`,
				"gen_ai.tool.call.result", `{"status":"approved","transfer":"tr_881","detail":"`+strings.Repeat("ok ", 100)+`"}`))
		}
		for j := 6; j <= 7; j++ {
			spans = append(spans, mapSpan(trace, id(j), id(4), tracepb.Span_SPAN_KIND_CLIENT,
				"http.request.method", "POST", "url.full", "https://payments.internal.example/v1/transfers?idempotency_key=k-77",
				"server.address", "payments.internal.example", "server.port", 443, "http.response.status_code", 201,
				"network.protocol.version", "1.1", "user_agent.original", strings.Repeat("python-httpx/0.27 ", 30),
				"http.request.header.authorization", "Bearer eyJhbGciOi", "http.request.body.size", 512))
		}
		spans = append(spans, mapSpan(trace, id(8), id(5), tracepb.Span_SPAN_KIND_CLIENT,
			"db.system.name", "postgresql", "db.operation.name", "INSERT", "db.collection.name", "payments",
			"db.namespace", "ledger", "server.address", "db.internal.example", "server.port", 5432,
			"db.query.text", "INSERT INTO payments (invoice, amount_eur, iban, memo) VALUES ($1, $2, $3, $4) "+strings.Repeat("-- x ", 100)))
	}
	req := mapRequest("payments-agent", spans...)
	req.ResourceSpans[0].Resource.Attributes = append(req.ResourceSpans[0].Resource.Attributes,
		&commonpb.KeyValue{Key: "k8s.namespace.name", Value: mapAnyValue("payments")},
		&commonpb.KeyValue{Key: "k8s.pod.name", Value: mapAnyValue("payments-agent-7f9c4-x2kq")},
		&commonpb.KeyValue{Key: "service.instance.id", Value: mapAnyValue("payments-agent-7f9c4-x2kq")})
	req.ResourceSpans[0].ScopeSpans[0].Scope = &commonpb.InstrumentationScope{Name: "opentelemetry.instrumentation.openai_v2", Version: "2.3b0"}
	return req
}

func TestMapBenchRequest(t *testing.T) {
	req := mapBenchRequest()
	if n := len(req.ResourceSpans[0].ScopeSpans[0].Spans); n != 512 {
		t.Fatalf("%d spans", n)
	}
	size := proto.Size(req)
	if per := size / 512; per < 800 || per > 1400 {
		t.Errorf("%d bytes per span, want about 1 KiB", per)
	}
	res, err := newMapMapper(t, MapConfig{}).Traces(req, "")
	if err != nil {
		t.Fatal(err)
	}
	mapCheck(t, res.Records)
	if len(res.Records) != 512 {
		t.Errorf("%d records, %d dropped", len(res.Records), res.Dropped)
	}
}

func BenchmarkTraces(b *testing.B) {
	req := mapBenchRequest()
	m := newMapMapper(b, MapConfig{})
	b.SetBytes(int64(proto.Size(req)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := m.Traces(req, "acme"); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*512), "ns/span")
}
