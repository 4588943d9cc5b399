package redact_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"strings"
	"testing"

	"github.com/infertrail/infertrail"
	"github.com/infertrail/infertrail/redact"
)

// benchChat returns a realistic chat-messages content value of about size
// bytes: a system prompt, user questions with numbers, dates and names,
// tool calls with arguments, tool results and answers. With secret, one
// user message carries an API key.
func benchChat(tb testing.TB, size int, secret bool) []byte {
	tb.Helper()
	msgs := []string{
		`{"role":"system","parts":[{"type":"text","content":"You are the payments assistant of ACME Bank. Answer briefly, cite the ledger, and never reveal account data to the user."}]}`,
	}
	turn := []string{
		`{"role":"user","parts":[{"type":"text","content":"What was the total of invoices 7, 12 and 31 for November 2026, and which of them are still open?"}]}`,
		`{"role":"assistant","parts":[{"type":"tool_call","id":"call_9Xy2","name":"ledger.query","arguments":{"from":"2026-11-01","to":"2026-11-30","invoices":[7,12,31],"fields":["amount","status"]}}]}`,
		`{"role":"tool","parts":[{"type":"tool_call_response","id":"call_9Xy2","response":{"rows":[{"invoice":7,"amount":1200.5,"status":"paid"},{"invoice":12,"amount":310,"status":"open"}]}}]}`,
		`{"role":"assistant","parts":[{"type":"text","content":"Invoices 7 and 12 total 1510.50 EUR; invoice 12 is still open and due on 15 December."}],"finish_reason":"stop"}`,
	}
	var b bytes.Buffer
	b.WriteString("[")
	b.WriteString(msgs[0])
	for i := 0; b.Len() < size-100; i++ {
		b.WriteString(",")
		m := turn[i%len(turn)]
		if secret && i == 0 {
			m = `{"role":"user","parts":[{"type":"text","content":"The call fails with my key ghp_eF7Cqurdb5w2HYItbI9C9wXsPYeZW2qgwPzE, what is the total of invoices 7 and 12?"}]}`
		}
		b.WriteString(m)
	}
	b.WriteString("]")
	v, err := infertrail.Canonicalize(b.Bytes())
	if err != nil {
		tb.Fatal(err)
	}
	return v
}

func BenchmarkRedact(b *testing.B) {
	r := newRedactor(b, redact.Config{FingerprintSecret: testSecret})
	for _, bc := range []struct {
		name   string
		size   int
		secret bool
	}{
		{"1KiB", 1 << 10, false},
		{"1KiB-secret", 1 << 10, true},
		{"16KiB", 16 << 10, false},
	} {
		v := benchChat(b, bc.size, bc.secret)
		b.Run(fmt.Sprintf("%s/%dB", bc.name, len(v)), func(b *testing.B) {
			b.SetBytes(int64(len(v)))
			b.ReportAllocs()
			for b.Loop() {
				out, fs, err := r.Redact("gen_ai.input.messages", v)
				if err != nil || (len(fs) > 0) != bc.secret || len(out) == 0 {
					b.Fatalf("Redact: %v, %v", fs, err)
				}
			}
		})
		// The same content, every string new each time, as unique
		// traffic is: nothing comes from the cache.
		b.Run(fmt.Sprintf("%s-unique/%dB", bc.name, len(v)), func(b *testing.B) {
			n := 0
			b.SetBytes(int64(len(v)))
			b.ReportAllocs()
			for b.Loop() {
				n++
				u := bytes.ReplaceAll(v, []byte("invoice"), fmt.Appendf(nil, "inv%07d", n))
				out, fs, err := r.Redact("gen_ai.input.messages", u)
				if err != nil || (len(fs) > 0) != bc.secret || len(out) == 0 {
					b.Fatalf("Redact: %v, %v", fs, err)
				}
			}
		})
	}
}

func BenchmarkString(b *testing.B) {
	r := newRedactor(b, redact.Config{FingerprintSecret: testSecret})
	h := "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
	b.ReportAllocs()
	for b.Loop() {
		r.String("http.request.header.user-agent", h)
	}
}

// BenchmarkCaptureApply applies the standard profile to a record shaped
// like the load tool's fixed mix: a dozen attributes, 1 KiB of prose.
// go test ./redact -run '^$' -bench CaptureApply -benchmem
func BenchmarkCaptureApply(b *testing.B) {
	c, err := redact.NewCapture(redact.CaptureConfig{Redaction: redact.Config{FingerprintSecret: bytes.Repeat([]byte{1}, 32)}})
	if err != nil {
		b.Fatal(err)
	}
	attrs := map[string]json.RawMessage{}
	for _, k := range []string{"gen_ai.operation.name", "gen_ai.provider.name", "gen_ai.request.model", "gen_ai.response.model",
		"gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens", "http.response.status_code", "infertrail.phase",
		"infertrail.duration_ns", "server.address", "gen_ai.response.id", "gen_ai.response.finish_reasons"} {
		attrs[k] = json.RawMessage(`"value of ` + k + `"`)
	}
	prompt, _ := json.Marshal(strings.Repeat("the quarterly report is due on friday, please summarise it. ", 17))
	for b.Loop() {
		r := &infertrail.Record{Kind: infertrail.KindInference, Tenant: "t", SessionID: "s",
			Attributes: maps.Clone(attrs), Content: map[string]json.RawMessage{"prompt": prompt}}
		if _, err := c.Apply(r); err != nil {
			b.Fatal(err)
		}
	}
}
