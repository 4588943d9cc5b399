package infertrail_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/infertrail/infertrail"
)

// fullRecord sets every field a client may send, with unicode and nested
// JSON, and the fields only the server sets.
func fullRecord(tb testing.TB) *infertrail.Record {
	tb.Helper()
	r := &infertrail.Record{
		ID:   mustUUID(tb, exampleID),
		Kind: infertrail.KindToolCall,
		Time: time.Date(2026, 11, 26, 11, 0, 0, 123456789, time.FixedZone("CET", 3600)),
		Actor: infertrail.Actor{
			ID: "agent:zahlungs-bot-ü", Type: "agent", OnBehalfOf: `user:"zoë"\@acme.example`,
			Workload: "spiffe://acme.example/ns/prod/sa/bot", CredentialFingerprint: "hmac-sha256:0a1b",
		},
		Tenant:       "acme-eu_1.prod",
		SessionID:    "sess 42 — 会話 😀 \u2028",
		TraceID:      "4bf92f3577b34da6a3ce929d0e0e4736",
		SpanID:       "00f067aa0ba902b7",
		ParentSpanID: "00f067aa0ba902b8",
		Links: []infertrail.Link{
			{Rel: "answers", ID: mustUUID(tb, otherID)},
			{Rel: "governed_by", ID: mustUUID(tb, "0193a5b0-7c1e-7000-8000-000000000003")},
		},
		Attributes: map[string]json.RawMessage{
			"gen_ai.tool.name":    json.RawMessage(`"approve_payment"`),
			"gen_ai.usage.tokens": json.RawMessage(`{"input":120,"output":30,"detail":[1,2.5,{"x":null,"y":[true,false]}]}`),
			"名前":                  json.RawMessage(`"値 \"quoted\" \\ \n"`),
			"😀":                   json.RawMessage(`1e300`),
			"\ue000":              json.RawMessage(`-0.5`),
		},
		Content: map[string]json.RawMessage{
			"gen_ai.tool.call.arguments": json.RawMessage(`{"invoice":7,"amount_eur":1200,"memo":"für ACME </script>"}`),
			"gen_ai.tool.call.result":    json.RawMessage(`[{"ok":true},"\u0000",null]`),
		},
		// Set by the server; never sent.
		Seq:          41,
		Source:       "openai",
		ReceivedTime: time.Date(2026, 11, 26, 10, 0, 1, 0, time.UTC),
		Commitments:  map[string]string{"gen_ai.tool.call.result": "sha256:" + strings.Repeat("ab", 32)},
	}
	// Validate puts the values in canonical form, as ParseRecord returns them.
	if err := r.Validate(infertrail.Limits{}); err != nil {
		tb.Fatal(err)
	}
	return r
}

// sent is what of a record its receiver gets: the record without the
// fields the server sets.
func sent(r *infertrail.Record) *infertrail.Record {
	c := *r
	c.Seq, c.Source, c.ReceivedTime, c.Commitments = 0, "", time.Time{}, nil
	return &c
}

func TestMarshalJSONRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		rec  *infertrail.Record
	}{
		{"every field", fullRecord(t)},
		{"minimal", &infertrail.Record{Kind: infertrail.KindAccess}},
		{"id and time only", &infertrail.Record{Kind: infertrail.KindApproval, ID: infertrail.NewUUID(),
			Time: time.Date(1970, 1, 1, 0, 0, 0, 1, time.UTC)}},
		{"empty maps", &infertrail.Record{Kind: infertrail.KindRetrieval, Attributes: map[string]json.RawMessage{},
			Content: map[string]json.RawMessage{}, Links: []infertrail.Link{}}},
		{"actor in part", &infertrail.Record{Kind: infertrail.KindCredential, Actor: infertrail.Actor{Workload: "w"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := tt.rec.MarshalJSON()
			if err != nil {
				t.Fatal(err)
			}
			if !json.Valid(b) {
				t.Fatalf("not valid JSON: %s", b)
			}
			// Written as the canonical form it parses to.
			back, canon, err := infertrail.ParseRecord(b, infertrail.Limits{})
			if err != nil {
				t.Fatalf("ParseRecord: %v\n%s", err, b)
			}
			if !bytes.Equal(b, canon) {
				t.Errorf("not canonical:\n got %s\nwant %s", b, canon)
			}
			if d := diffRecords(sent(tt.rec), back); d != "" {
				t.Errorf("round trip changed the record: %s\n%s", d, b)
			}
			again, err := back.MarshalJSON()
			if err != nil || !bytes.Equal(again, b) {
				t.Errorf("encoding the parsed record gives %s (%v), want %s", again, err, b)
			}
			// Through encoding/json, in a batch, as a client sends it.
			batch, err := json.Marshal([]*infertrail.Record{tt.rec, tt.rec})
			if err != nil {
				t.Fatal(err)
			}
			recs, _, err := infertrail.ParseRecords(batch, infertrail.Limits{})
			if err != nil || len(recs) != 2 {
				t.Fatalf("ParseRecords: %d records, %v\n%s", len(recs), err, batch)
			}
			if d := diffRecords(sent(tt.rec), recs[1]); d != "" {
				t.Errorf("batch round trip changed the record: %s", d)
			}
		})
	}
}

func TestMarshalJSONMembers(t *testing.T) {
	b, err := fullRecord(t).MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	want := []string{"actor", "attributes", "content", "id", "kind", "links", "parent_span_id", "session_id",
		"span_id", "tenant", "time", "trace_id"}
	if !slices.Equal(keys, want) {
		t.Errorf("members %q, want %q", keys, want)
	}
	if got := string(m["time"]); got != `"2026-11-26T10:00:00.123456789Z"` {
		t.Errorf("time = %s, want UTC with nanoseconds", got)
	}
	if got := string(m["links"]); got != `[{"id":"`+otherID+`","rel":"answers"},{"id":"0193a5b0-7c1e-7000-8000-000000000003","rel":"governed_by"}]` {
		t.Errorf("links = %s", got)
	}

	b, err = (&infertrail.Record{Kind: infertrail.KindAccess}).MarshalJSON()
	if err != nil || string(b) != `{"kind":"access"}` {
		t.Errorf("minimal record = %s, %v", b, err)
	}
	b, err = (*infertrail.Record)(nil).MarshalJSON()
	if err != nil || string(b) != "null" {
		t.Errorf("nil record = %s, %v", b, err)
	}
}

// A parsed record encodes back to exactly its canonical submitted form when
// its time was written in UTC.
func TestMarshalJSONExample(t *testing.T) {
	r, canon := mustParse(t, exampleRecord)
	b, err := r.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, canon) {
		t.Errorf("MarshalJSON =\n%s\nwant\n%s", b, canon)
	}
}

// Values go out as they are, even when not canonical; the receiver
// canonicalizes them. A value that is not JSON is refused, naming it.
func TestMarshalJSONValues(t *testing.T) {
	r := &infertrail.Record{Kind: infertrail.KindInference, Attributes: map[string]json.RawMessage{
		"a": json.RawMessage(`{ "z" : 1, "a" : [ 1.0 ] }`),
	}}
	b, err := r.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"attributes":{"a":{ "z" : 1, "a" : [ 1.0 ] }},"kind":"inference"}`; string(b) != want {
		t.Errorf("MarshalJSON = %s, want %s", b, want)
	}
	back, _, err := infertrail.ParseRecord(b, infertrail.Limits{})
	if err != nil || string(back.Attributes["a"]) != `{"a":[1],"z":1}` {
		t.Errorf("parsed %v, %v", back, err)
	}

	for _, bad := range []string{"", "{", `"secret`, "1 2", "nul"} {
		r := &infertrail.Record{Kind: infertrail.KindInference, Content: map[string]json.RawMessage{
			"gen_ai.input.messages": json.RawMessage(bad),
		}}
		b, err := r.MarshalJSON()
		if b != nil {
			t.Errorf("%q: got output %s", bad, b)
		}
		checkFieldError(t, err, -1, `content["gen_ai.input.messages"]`, infertrail.ErrInvalid)
		if bad != "" && strings.Contains(err.Error(), bad) {
			t.Errorf("%q: the error quotes the value: %v", bad, err)
		}
		if _, err := json.Marshal(r); !errors.Is(err, infertrail.ErrInvalid) {
			t.Errorf("%q: json.Marshal error %v, want ErrInvalid", bad, err)
		}
	}
}

func FuzzMarshalJSON(f *testing.F) {
	f.Add([]byte(exampleRecord))
	f.Add([]byte(`{"kind":"access"}`))
	f.Add([]byte(`{"kind":"tool_call","links":[{"rel":"answers","id":"` + otherID + `"}],"parent_span_id":"00f067aa0ba902b7"}`))
	f.Add([]byte(`{"kind":"approval","actor":{"workload":"w","credential_fingerprint":"c"},"attributes":{"\ue000":1,"😀":1e300}}`))
	f.Add([]byte(`{"kind":"erasure","time":"2026-11-26T11:00:00+01:00","content":{"a":{"b":[1,"\u0000"]}}}`))
	f.Fuzz(func(t *testing.T, src []byte) {
		r, _, err := infertrail.ParseRecord(src, infertrail.Limits{})
		if err != nil {
			return
		}
		b, err := r.MarshalJSON()
		if err != nil {
			t.Fatalf("MarshalJSON of a parsed record: %v", err)
		}
		back, canon, err := infertrail.ParseRecord(b, infertrail.Limits{})
		if err != nil {
			t.Fatalf("ParseRecord(%q): %v", b, err)
		}
		if d := diffRecords(r, back); d != "" {
			t.Fatalf("%q parses to another record: %s", b, d)
		}
		if !bytes.Equal(b, canon) {
			t.Fatalf("MarshalJSON gives %q, not its canonical form %q", b, canon)
		}
	})
}
