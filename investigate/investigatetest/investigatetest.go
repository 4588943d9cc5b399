// Package investigatetest builds realistic traffic for tests of
// investigation: the records of a finance agent's payment trace.
package investigatetest

import (
	"context"
	"encoding/json"
	"time"

	"github.com/infertrail/infertrail"
)

// TraceID is the trace of PaymentTrace.
const TraceID = "4bf92f3577b34da6a3ce929d0e0e4736"

// PaymentOrder names the records of PaymentTrace in the order they are
// recorded.
var PaymentOrder = []string{"prompt", "answer", "call", "decision", "approval", "payment", "result", "stray"}

func raw(v any) json.RawMessage {
	b, _ := json.Marshal(v)
	return b
}

// PaymentTrace returns, by name, a finance agent's trace in tenant acme:
// the prompt, the model's answer asking for a payment, the policy decision
// requiring approval, the approval, the tool execution (request and
// result) and the payment API call it made; and a stray downstream call
// that no model asked for. Their times are a second apart, ending a few
// seconds before start+8s.
func PaymentTrace(start time.Time) map[string]*infertrail.Record {
	actor := infertrail.Actor{ID: "agent:payments-bot", OnBehalfOf: "user:alice@acme.example"}
	base := func(kind infertrail.Kind, span, parent string) *infertrail.Record {
		return &infertrail.Record{ID: infertrail.NewUUID(), Kind: kind, Tenant: "acme", Actor: actor, SessionID: "sess-42",
			TraceID: TraceID, SpanID: span, ParentSpanID: parent, Source: "ingest", Attributes: map[string]json.RawMessage{}}
	}
	r := map[string]*infertrail.Record{}
	r["prompt"] = base(infertrail.KindInference, "a000000000000001", "")
	r["prompt"].Attributes["infertrail.phase"] = raw("request")
	r["prompt"].Attributes["gen_ai.request.model"] = raw("gpt-4o")
	r["prompt"].Content = map[string]json.RawMessage{"gen_ai.input.messages": raw([]map[string]string{{"role": "user", "content": "Pay invoice INV-7731 of 1,500 EUR to Globex"}})}

	r["answer"] = base(infertrail.KindInference, "a000000000000001", "")
	r["answer"].Links = []infertrail.Link{{Rel: "answers", ID: r["prompt"].ID}}
	r["answer"].Attributes["infertrail.phase"] = raw("response")
	r["answer"].Attributes["gen_ai.response.model"] = raw("gpt-4o-2024-08-06")
	r["answer"].Attributes["gen_ai.response.tool_calls"] = raw([]map[string]string{{"id": "call_pay1", "name": "pay"}})
	r["answer"].Content = map[string]json.RawMessage{"gen_ai.output.messages": raw("calling pay for INV-7731")}

	r["call"] = base(infertrail.KindToolCall, "b000000000000002", "")
	r["call"].Attributes["infertrail.phase"] = raw("request")
	r["call"].Attributes["gen_ai.tool.name"] = raw("pay")
	r["call"].Attributes["gen_ai.tool.call.id"] = raw("call_pay1")
	r["call"].Content = map[string]json.RawMessage{"gen_ai.tool.call.arguments": raw(map[string]any{"invoice": "INV-7731", "amount": 1500, "currency": "EUR"})}

	r["decision"] = base(infertrail.KindPolicyDecision, "", "")
	r["decision"].Links = []infertrail.Link{{Rel: "governs", ID: r["call"].ID}}
	r["decision"].Attributes["policy.result"] = raw("require_approval")
	r["decision"].Attributes["policy.point"] = raw("tool.call")

	r["approval"] = base(infertrail.KindApproval, "", "")
	r["approval"].Actor = infertrail.Actor{ID: "user:carol@acme.example"}
	r["approval"].Links = []infertrail.Link{{Rel: "answers", ID: r["decision"].ID}}
	r["approval"].Attributes["approval.decision"] = raw("approved")
	r["approval"].Content = map[string]json.RawMessage{"approval.rationale": raw("invoice matches PO-2231")}

	r["payment"] = base(infertrail.KindDownstreamCall, "c000000000000003", "b000000000000002")
	r["payment"].Attributes["http.request.method"] = raw("POST")
	r["payment"].Attributes["url.full"] = raw("https://payments.internal/transfer")

	r["result"] = base(infertrail.KindToolCall, "b000000000000002", "")
	r["result"].Links = []infertrail.Link{{Rel: "answers", ID: r["call"].ID}}
	r["result"].Attributes["infertrail.phase"] = raw("response")
	r["result"].Attributes["gen_ai.tool.name"] = raw("pay")
	r["result"].Attributes["gen_ai.tool.call.id"] = raw("call_pay1")

	r["stray"] = base(infertrail.KindDownstreamCall, "d000000000000004", "")
	r["stray"].Attributes["url.full"] = raw("https://payments.internal/transfer")

	for i, k := range PaymentOrder {
		r[k].Time = start.Add(time.Duration(i) * time.Second)
	}
	return r
}

// RecordPaymentTrace records PaymentTrace, a minute ago, with rec (such as
// a ledger.Log), and sets each record's Seq.
func RecordPaymentTrace(ctx context.Context, rec infertrail.Recorder) (map[string]*infertrail.Record, error) {
	r := PaymentTrace(time.Now().Add(-time.Minute))
	recs := make([]*infertrail.Record, len(PaymentOrder))
	for i, k := range PaymentOrder {
		recs[i] = r[k]
	}
	seqs, err := rec.Record(ctx, recs...)
	if err != nil {
		return nil, err
	}
	for i, k := range PaymentOrder {
		r[k].Seq = seqs[i]
	}
	return r, nil
}
