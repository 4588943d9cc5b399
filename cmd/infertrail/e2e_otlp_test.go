package main

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// TestE2EOTLP exports GenAI spans with the OpenTelemetry SDK to the built
// binary, over OTLP/HTTP and OTLP/gRPC, with an ingest token; the spans
// come back as records, and the log verifies.
func TestE2EOTLP(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := filepath.Join(t.TempDir(), "infertrail.yaml")
	os.WriteFile(cfg, []byte("otlp:\n  grpc_listen: 127.0.0.1:0\n"), 0o600)
	s := startServer(t, dir, "--config", cfg)
	m := regexp.MustCompile(`otlp grpc: +(\S+)`).FindStringSubmatch(s.stdout.String())
	if m == nil {
		t.Fatalf("no OTLP gRPC address printed:\n%s", s.stdout)
	}
	headers := map[string]string{"Authorization": "Bearer " + s.token}
	httpExp, err := otlptracehttp.New(t.Context(), otlptracehttp.WithEndpointURL(s.url+"/v1/traces"), otlptracehttp.WithHeaders(headers),
		otlptracehttp.WithRetry(otlptracehttp.RetryConfig{Enabled: false}))
	if err != nil {
		t.Fatal(err)
	}
	grpcExp, err := otlptracegrpc.New(t.Context(), otlptracegrpc.WithEndpoint(m[1]), otlptracegrpc.WithInsecure(), otlptracegrpc.WithHeaders(headers),
		otlptracegrpc.WithRetry(otlptracegrpc.RetryConfig{Enabled: false}))
	if err != nil {
		t.Fatal(err)
	}
	traces := map[string]string{}
	for name, exp := range map[string]sdktrace.SpanExporter{"http": httpExp, "grpc": grpcExp} {
		tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
		_, span := tp.Tracer("e2e").Start(context.Background(), "chat gpt-4o", trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(
			attribute.String("gen_ai.operation.name", "chat"), attribute.String("gen_ai.provider.name", "openai"),
			attribute.String("gen_ai.request.model", "gpt-4o"), attribute.String("gen_ai.input.messages", `[{"role":"user","parts":[{"type":"text","content":"via `+name+`"}]}]`)))
		span.End()
		if err := tp.Shutdown(context.Background()); err != nil {
			t.Fatalf("%s export: %v", name, err)
		}
		traces[span.SpanContext().TraceID().String()] = name
	}
	// Without a token: refused.
	anon, _ := otlptracehttp.New(t.Context(), otlptracehttp.WithEndpointURL(s.url+"/v1/traces"), otlptracehttp.WithRetry(otlptracehttp.RetryConfig{Enabled: false}))
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	_, span := tp.Tracer("e2e").Start(context.Background(), "chat", trace.WithAttributes(attribute.String("gen_ai.operation.name", "chat")))
	span.End()
	if err := anon.ExportSpans(t.Context(), spans.Ended()); err == nil || !strings.Contains(err.Error(), "401") {
		t.Errorf("export without a token: %v", err)
	}
	found := map[string]bool{}
	for seq := range treeSize(t, s.url) {
		rec, _, err := getRecord(t.Context(), s.url, seq)
		if err != nil {
			t.Fatal(err)
		}
		for id, name := range traces {
			if strings.Contains(string(rec.Record), `"trace_id":"`+id+`"`) && strings.Contains(string(rec.Record), `"source":"otlp"`) {
				found[name] = true
				if _, content := getContent(t, s.url, seq); !strings.Contains(content, "via "+name) {
					t.Errorf("%s: content %s", name, content)
				}
			}
		}
	}
	if !found["http"] || !found["grpc"] {
		t.Fatalf("records found: %v", found)
	}
	if code := s.stop(); code != 0 {
		t.Fatalf("exit %d", code)
	}
	if r := runCLI(t, nil, time.Minute, "verify", "--data", dir); r.code != 0 {
		t.Fatalf("verify:\n%s", r)
	}
}
