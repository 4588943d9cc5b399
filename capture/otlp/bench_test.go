package otlp_test

import (
	"bytes"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
)

// benchRequest is an export of 512 spans of about 1 KiB in one trace:
// chats with their messages, tool executions and the HTTP calls they made.
func benchRequest(tb testing.TB, batch int) []byte {
	tb.Helper()
	traceID := []byte(fmt.Sprintf("%016d", batch+1)) // 16 bytes, one trace per request
	var spans []*tracepb.Span
	start := uint64(time.Now().UnixNano())
	text := strings.Repeat("The invoice total is 1,200 EUR, due on the 30th. ", 16) // ~800 bytes
	for i := range 512 {
		text := fmt.Sprintf("%d/%d: %s", batch, i, text) // every span's content differs: no deduplication flatters the figure
		id := []byte{byte(i >> 8), byte(i), 3, 4, 5, 6, 7, 8}
		s := &tracepb.Span{TraceId: traceID, SpanId: id, StartTimeUnixNano: start + uint64(i)*1000, EndTimeUnixNano: start + uint64(i)*1000 + 500}
		switch i % 3 {
		case 0:
			s.Name, s.Kind = "chat gpt-4o", tracepb.Span_SPAN_KIND_CLIENT
			s.Attributes = kvs("gen_ai.operation.name", "chat", "gen_ai.provider.name", "openai", "gen_ai.request.model", "gpt-4o",
				"gen_ai.response.model", "gpt-4o-2024-08-06", "gen_ai.input.messages",
				`[{"role":"user","parts":[{"type":"text","content":"`+text+`"}]}]`)
		case 1:
			s.Name = "execute_tool pay"
			s.Attributes = kvs("gen_ai.operation.name", "execute_tool", "gen_ai.tool.name", "pay", "gen_ai.tool.call.id", fmt.Sprintf("call_%d", i),
				"gen_ai.tool.call.arguments", `{"invoice":7,"memo":"`+text+`"}`)
		default:
			s.Name, s.Kind = "POST", tracepb.Span_SPAN_KIND_CLIENT
			s.ParentSpanId = []byte{byte((i - 1) >> 8), byte(i - 1), 3, 4, 5, 6, 7, 8}
			s.Attributes = kvs("http.request.method", "POST", "url.full", "https://payments.example.com/v1/transfers/"+fmt.Sprint(i),
				"server.address", "payments.example.com", "user_agent.original", text[:400])
		}
		spans = append(spans, s)
	}
	b, err := proto.Marshal(&coltracepb.ExportTraceServiceRequest{ResourceSpans: []*tracepb.ResourceSpans{{
		ScopeSpans: []*tracepb.ScopeSpans{{Spans: spans}}}}})
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// BenchmarkExportHTTP posts exports of 512 spans over OTLP/HTTP protobuf
// to a receiver over a real SQLite trail; each answer comes once its
// records are durable. It reports spans/s, with 4 clients.
//
//	go test ./capture/otlp -run '^$' -bench ExportHTTP -benchtime 40x -count 3
func BenchmarkExportHTTP(b *testing.B) {
	r := newReceiverRig(b, nil)
	bodies := make([][]byte, b.N)
	for i := range bodies {
		bodies[i] = benchRequest(b, i)
	}
	b.SetBytes(int64(len(bodies[0])))
	b.ResetTimer()
	start := time.Now()
	next := make(chan []byte)
	errc := make(chan error, 4)
	for range 4 {
		go func() {
			for body := range next {
				resp, err := http.Post(r.srv.URL+"/v1/traces", "application/x-protobuf", bytes.NewReader(body))
				if err != nil {
					errc <- err
					return
				}
				resp.Body.Close()
				if resp.StatusCode != 200 {
					errc <- fmt.Errorf("status %d", resp.StatusCode)
					return
				}
			}
			errc <- nil
		}()
	}
	for _, body := range bodies {
		next <- body
	}
	close(next)
	for range 4 {
		if err := <-errc; err != nil {
			b.Fatal(err)
		}
	}
	elapsed := time.Since(start)
	b.StopTimer()
	if n, err := r.trail.Log.TreeSize(b.Context()); err != nil || n != int64(512*b.N) {
		b.Fatalf("%d records for %d spans: %v", n, 512*b.N, err)
	}
	b.ReportMetric(float64(512*b.N)/elapsed.Seconds(), "spans/s")
}
