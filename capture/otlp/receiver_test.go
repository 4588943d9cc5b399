package otlp_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	sdkresource "go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/infertrail/infertrail"
	"github.com/infertrail/infertrail/capture/gateway/gatewaytest"
	"github.com/infertrail/infertrail/capture/otlp"
)

type receiverRig struct {
	trail *gatewaytest.Trail
	recv  *otlp.Receiver
	srv   *httptest.Server
}

func newReceiverRig(tb testing.TB, edit func(*otlp.Config)) *receiverRig {
	tb.Helper()
	trail := gatewaytest.NewTrail(tb)
	cfg := otlp.Config{Recorder: trail.Log}
	if edit != nil {
		edit(&cfg)
	}
	recv, err := otlp.New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	srv := httptest.NewServer(recv)
	tb.Cleanup(srv.Close)
	return &receiverRig{trail: trail, recv: recv, srv: srv}
}

// emitTrace emits one agent turn with the OpenTelemetry Go SDK: an agent
// invocation, a chat, a tool execution and the HTTP call the tool made,
// in the current GenAI conventions.
func emitTrace(tb testing.TB, exp sdktrace.SpanExporter) trace.SpanContext {
	tb.Helper()
	res := sdkresource.NewWithAttributes("", attribute.String("service.name", "finance-bot"), attribute.String("service.instance.id", "pod-7"))
	// Batched, as exporters usually are: the agent span, which ends last,
	// travels with its children.
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	defer tp.Shutdown(context.Background())
	tr := tp.Tracer("test")
	ctx, agent := tr.Start(context.Background(), "invoke_agent payments", trace.WithAttributes(
		attribute.String("gen_ai.operation.name", "invoke_agent"), attribute.String("gen_ai.agent.id", "payments-bot"),
		attribute.String("gen_ai.agent.name", "Payments bot")))
	cctx, chat := tr.Start(ctx, "chat gpt-4o", trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(
		attribute.String("gen_ai.operation.name", "chat"), attribute.String("gen_ai.provider.name", "openai"),
		attribute.String("gen_ai.request.model", "gpt-4o"), attribute.String("gen_ai.response.model", "gpt-4o-2024-08-06"),
		attribute.Int("gen_ai.usage.input_tokens", 120), attribute.Int("gen_ai.usage.output_tokens", 30),
		attribute.StringSlice("gen_ai.response.finish_reasons", []string{"tool_calls"}),
		attribute.String("gen_ai.input.messages", `[{"role":"user","parts":[{"type":"text","content":"Pay invoice 7"}]}]`),
		attribute.String("gen_ai.output.messages", `[{"role":"assistant","parts":[{"type":"tool_call","id":"call_1","name":"pay","arguments":{"invoice":7}}],"finish_reason":"tool_call"}]`)))
	chat.End()
	_ = cctx
	tctx, tool := tr.Start(ctx, "execute_tool pay", trace.WithAttributes(
		attribute.String("gen_ai.operation.name", "execute_tool"), attribute.String("gen_ai.tool.name", "pay"),
		attribute.String("gen_ai.tool.call.id", "call_1"),
		attribute.String("gen_ai.tool.call.arguments", `{"invoice":7}`), attribute.String("gen_ai.tool.call.result", `{"status":"paid"}`)))
	_, call := tr.Start(tctx, "POST", trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(
		attribute.String("http.request.method", "POST"), attribute.String("url.full", "https://payments.example.com/v1/transfers?amount=1200"),
		attribute.String("server.address", "payments.example.com"), attribute.Int("http.response.status_code", 201)))
	call.End()
	tool.End()
	// A span of no interest: dropped.
	_, other := tr.Start(context.Background(), "GET /healthz", trace.WithSpanKind(trace.SpanKindServer))
	other.End()
	agent.End()
	return agent.SpanContext()
}

// checkTurn checks the records of emitTrace.
func checkTurn(t *testing.T, recs []gatewaytest.Record, sc trace.SpanContext) {
	t.Helper()
	kinds := map[infertrail.Kind][]gatewaytest.Record{}
	for _, r := range recs {
		if r.TraceID != sc.TraceID().String() {
			t.Errorf("record %s in trace %s, want %s", r.Kind, r.TraceID, sc.TraceID())
		}
		kinds[r.Kind] = append(kinds[r.Kind], r)
	}
	if len(kinds[infertrail.KindInference]) != 1 || len(kinds[infertrail.KindToolCall]) != 1 {
		t.Fatalf("records by kind: %d inference, %d tool_call, %d downstream_call (of %d)", len(kinds[infertrail.KindInference]),
			len(kinds[infertrail.KindToolCall]), len(kinds[infertrail.KindDownstreamCall]), len(recs))
	}
	inf := kinds[infertrail.KindInference][0]
	if inf.Attr("gen_ai.response.model") != "gpt-4o-2024-08-06" || inf.Attr("gen_ai.usage.input_tokens") != 120.0 || inf.Source != "otlp" {
		t.Errorf("inference record %v", inf.Attributes)
	}
	if !strings.Contains(string(inf.Content["gen_ai.input.messages"]), "Pay invoice 7") {
		t.Errorf("inference content %v", inf.Content)
	}
	if inf.Actor.ID == "" || !strings.Contains(inf.Actor.ID, "payments-bot") {
		t.Errorf("inference actor %+v: want the agent of the trace", inf.Actor)
	}
	tool := kinds[infertrail.KindToolCall][0]
	if tool.Attr("gen_ai.tool.name") != "pay" || tool.Attr("gen_ai.tool.call.id") != "call_1" || !strings.Contains(string(tool.Content["gen_ai.tool.call.result"]), "paid") {
		t.Errorf("tool record %v %v", tool.Attributes, tool.Content)
	}
	var http *gatewaytest.Record
	for i, r := range kinds[infertrail.KindDownstreamCall] {
		if r.Attr("http.request.method") == "POST" {
			http = &kinds[infertrail.KindDownstreamCall][i]
		}
	}
	if http == nil || http.ParentSpanID != tool.SpanID || http.Attr("server.address") != "payments.example.com" {
		t.Fatalf("HTTP downstream record %+v", http)
	}
	for _, r := range recs {
		if r.Attr("otel.span.name") == "GET /healthz" {
			t.Error("an unrelated span was stored")
		}
	}
}

// TestExportHTTP: the OpenTelemetry SDK's OTLP/HTTP exporter (protobuf,
// gzip) delivers a trace that becomes linked records.
func TestExportHTTP(t *testing.T) {
	r := newReceiverRig(t, nil)
	exp, err := otlptracehttp.New(t.Context(), otlptracehttp.WithEndpointURL(r.srv.URL+"/v1/traces"),
		otlptracehttp.WithCompression(otlptracehttp.GzipCompression), otlptracehttp.WithRetry(otlptracehttp.RetryConfig{Enabled: false}))
	if err != nil {
		t.Fatal(err)
	}
	sc := emitTrace(t, exp)
	checkTurn(t, r.trail.Records(t), sc)
}

// TestExportGRPC: the same through the SDK's OTLP/gRPC exporter.
func TestExportGRPC(t *testing.T) {
	r := newReceiverRig(t, nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	r.recv.Register(gs)
	go gs.Serve(ln)
	defer gs.Stop()
	exp, err := otlptracegrpc.New(t.Context(), otlptracegrpc.WithEndpoint(ln.Addr().String()), otlptracegrpc.WithInsecure(),
		otlptracegrpc.WithRetry(otlptracegrpc.RetryConfig{Enabled: false}))
	if err != nil {
		t.Fatal(err)
	}
	sc := emitTrace(t, exp)
	checkTurn(t, r.trail.Records(t), sc)
}

// TestExportIdempotent: an exporter that retries a batch it already sent
// adds nothing.
func TestExportIdempotent(t *testing.T) {
	r := newReceiverRig(t, nil)
	body := chatRequest(t, 3)
	for range 2 {
		if resp, b := post(t, r.srv.URL+"/v1/traces", "application/x-protobuf", "", body); resp.StatusCode != 200 {
			t.Fatalf("%d %s", resp.StatusCode, b)
		}
	}
	if n := len(r.trail.Records(t)); n != 3 {
		t.Fatalf("%d records after sending 3 spans twice", n)
	}
}

// chatRequest is an export of n chat spans in one trace.
func chatRequest(tb testing.TB, n int) []byte {
	tb.Helper()
	var spans []*tracepb.Span
	traceID := bytes.Repeat([]byte{0x4b}, 16)
	for i := range n {
		spans = append(spans, &tracepb.Span{TraceId: traceID, SpanId: []byte{1, 2, 3, 4, 5, 6, 7, byte(i + 1)}, Name: "chat",
			Kind: tracepb.Span_SPAN_KIND_CLIENT, StartTimeUnixNano: uint64(time.Now().UnixNano()), EndTimeUnixNano: uint64(time.Now().UnixNano() + 1e6),
			Attributes: kvs("gen_ai.operation.name", "chat", "gen_ai.provider.name", "openai", "gen_ai.request.model", "gpt-4o")})
	}
	b, err := proto.Marshal(&coltracepb.ExportTraceServiceRequest{ResourceSpans: []*tracepb.ResourceSpans{{
		ScopeSpans: []*tracepb.ScopeSpans{{Spans: spans}}}}})
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func post(tb testing.TB, url, ctype, encoding string, body []byte) (*http.Response, []byte) {
	tb.Helper()
	req, _ := http.NewRequestWithContext(tb.Context(), "POST", url, bytes.NewReader(body))
	req.Header.Set("Content-Type", ctype)
	if encoding != "" {
		req.Header.Set("Content-Encoding", encoding)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

// TestExportRefused: bad input gets the status the OTLP specification
// gives it, and nothing of the request is stored.
func TestExportRefused(t *testing.T) {
	r := newReceiverRig(t, func(c *otlp.Config) { c.MaxBodyBytes = 64 << 10 })
	good := chatRequest(t, 2)
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(bytes.Repeat([]byte{0}, 1<<20)) // 1 MiB of zeros: small compressed, too large once decompressed
	zw.Close()
	badID, _ := proto.Marshal(&coltracepb.ExportTraceServiceRequest{ResourceSpans: []*tracepb.ResourceSpans{{
		ScopeSpans: []*tracepb.ScopeSpans{{Spans: []*tracepb.Span{
			{TraceId: bytes.Repeat([]byte{1}, 16), SpanId: []byte{1, 1, 1, 1, 1, 1, 1, 1}, Name: "chat", Attributes: kvs("gen_ai.operation.name", "chat")},
			{TraceId: []byte{1, 2, 3}, SpanId: []byte{1, 1, 1, 1, 1, 1, 1, 2}, Name: "chat", Attributes: kvs("gen_ai.operation.name", "chat")},
		}}}}}})
	for _, c := range []struct {
		name, ctype, encoding string
		body                  []byte
		status                int
	}{
		{"truncated protobuf", "application/x-protobuf", "", good[:len(good)-7], 400},
		{"wrong content type", "text/plain", "", good, 415},
		{"unknown encoding", "application/x-protobuf", "br", good, 415},
		{"oversized body", "application/x-protobuf", "", bytes.Repeat([]byte{0x0a}, 100<<10), 413},
		{"oversized once decompressed", "application/x-protobuf", "gzip", gz.Bytes(), 413},
		{"not gzip", "application/x-protobuf", "gzip", good, 400},
		{"invalid trace id", "application/x-protobuf", "", badID, 400},
		{"invalid JSON", "application/json", "", []byte(`{"resourceSpans":[`), 400},
		{"JSON with a non-hex trace id", "application/json", "", []byte(`{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"zz","spanId":"0102030405060708","name":"chat"}]}]}]}`), 400},
	} {
		resp, b := post(t, r.srv.URL+"/v1/traces", c.ctype, c.encoding, c.body)
		if resp.StatusCode != c.status {
			t.Errorf("%s: %d %s, want %d", c.name, resp.StatusCode, b, c.status)
		}
	}
	if n := len(r.trail.Records(t)); n != 0 {
		t.Fatalf("%d records stored from refused requests", n)
	}
	// And a good JSON export is accepted, with hex ids.
	resp, b := post(t, r.srv.URL+"/v1/traces", "application/json", "", []byte(`{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"bot"}}]},"scopeSpans":[{"spans":[{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","name":"chat gpt-4o","kind":3,"startTimeUnixNano":"1764241200000000000","endTimeUnixNano":"1764241201000000000","attributes":[{"key":"gen_ai.operation.name","value":{"stringValue":"chat"}},{"key":"gen_ai.request.model","value":{"stringValue":"gpt-4o"}},{"key":"gen_ai.usage.input_tokens","value":{"intValue":"12"}}],"unknownField":1}]}]}]}`))
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("JSON export: %d %s", resp.StatusCode, b)
	}
	recs := r.trail.Records(t)
	if len(recs) != 1 || recs[0].TraceID != "5b8efff798038103d269b633813fc60c" || recs[0].SpanID != "eee19b7ec3c1b174" {
		t.Fatalf("records %v", recs)
	}
}

// kvs builds string attributes from key, value pairs.
func kvs(pairs ...string) []*commonpb.KeyValue {
	var out []*commonpb.KeyValue
	for i := 0; i+1 < len(pairs); i += 2 {
		out = append(out, &commonpb.KeyValue{Key: pairs[i], Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: pairs[i+1]}}})
	}
	return out
}

// TestExportLogs: a logs export in OTLP/JSON (the golden file of GenAI
// events) over HTTP, gzip-compressed, becomes records.
func TestExportLogs(t *testing.T) {
	r := newReceiverRig(t, nil)
	body, err := os.ReadFile("testdata/logs.json")
	if err != nil {
		t.Fatal(err)
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(body)
	zw.Close()
	resp, b := post(t, r.srv.URL+"/v1/logs", "application/json", "gzip", gz.Bytes())
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		t.Fatalf("logs export: %d %s", resp.StatusCode, b)
	}
	recs := r.trail.Records(t)
	if len(recs) == 0 {
		t.Fatal("no record from a logs export of GenAI events")
	}
	for _, rec := range recs {
		if rec.Kind != infertrail.KindInference || rec.Source != "otlp" || len(rec.Content) == 0 {
			t.Errorf("record %v %v", rec.Kind, rec.Attributes)
		}
	}
}
