package infertrail_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/infertrail/infertrail"
)

// exampleRecord is the record of the issue, exactly as it was given.
const exampleRecord = `{"kind":"inference","id":"0193a5b0-7c1e-7000-8000-000000000001","time":"2026-11-26T10:00:00.123456Z","tenant":"acme","actor":{"id":"agent:payments-bot","type":"agent","on_behalf_of":"user:alice@acme.example"},"session_id":"sess-42","trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","span_id":"00f067aa0ba902b7","attributes":{"gen_ai.operation.name":"chat","gen_ai.provider.name":"openai","gen_ai.request.model":"gpt-4o","gen_ai.response.model":"gpt-4o-2024-08-06","openai.response.system_fingerprint":"fp_abc123","gen_ai.request.temperature":0.2,"gen_ai.usage.input_tokens":120,"gen_ai.usage.output_tokens":30},"content":{"gen_ai.input.messages":[{"role":"user","parts":[{"type":"text","content":"Pay invoice 7 of 1200 EUR to ACME"}]}],"gen_ai.output.messages":[{"role":"assistant","parts":[{"type":"tool_call","id":"call_1","name":"approve_payment","arguments":{"invoice":7,"amount_eur":1200}}],"finish_reason":"tool_call"}]}}`

const (
	exampleID   = "0193a5b0-7c1e-7000-8000-000000000001"
	otherID     = "0193a5b0-7c1e-7000-8000-000000000002"
	exampleSeq  = 41
	exampleSalt = "0123456789abcdef"
)

var exampleReceived = time.Date(2026, 11, 26, 10, 0, 0, 130000000, time.UTC)

// sealRecord sets the fields the server assigns, as the ledger does, with
// fixed values, and replaces content by commitments.
func sealRecord(tb testing.TB, r *infertrail.Record) {
	tb.Helper()
	r.Seq = exampleSeq
	r.ReceivedTime = exampleReceived
	r.Source = "ingest"
	if r.Tenant == "" {
		r.Tenant = infertrail.DefaultTenant
	}
	if r.ID.IsZero() {
		r.ID = mustUUID(tb, exampleID)
	}
	if r.Time.IsZero() {
		r.Time = exampleReceived
	}
	if len(r.Content) > 0 {
		r.Commitments = make(map[string]string, len(r.Content))
		for k, v := range r.Content {
			r.Commitments[k] = infertrail.Commitment([]byte(exampleSalt+k), v)
		}
	}
	r.Content = nil
}

func mustUUID(tb testing.TB, s string) infertrail.UUID {
	tb.Helper()
	u, err := infertrail.ParseUUID(s)
	if err != nil {
		tb.Fatal(err)
	}
	return u
}

func mustParse(tb testing.TB, src string) (*infertrail.Record, []byte) {
	tb.Helper()
	r, canon, err := infertrail.ParseRecord([]byte(src), infertrail.Limits{})
	if err != nil {
		tb.Fatalf("ParseRecord: %v\n%s", err, src)
	}
	return r, canon
}

// diffRecords describes how two records differ, treating empty and nil
// maps and slices alike and times by instant; "" means equal.
func diffRecords(a, b *infertrail.Record) string {
	var d []string
	chk := func(name string, eq bool, x, y any) {
		if !eq {
			d = append(d, fmt.Sprintf("%s: %v != %v", name, x, y))
		}
	}
	chk("Seq", a.Seq == b.Seq, a.Seq, b.Seq)
	chk("ID", a.ID == b.ID, a.ID, b.ID)
	chk("Kind", a.Kind == b.Kind, a.Kind, b.Kind)
	chk("Time", a.Time.Equal(b.Time), a.Time, b.Time)
	chk("ReceivedTime", a.ReceivedTime.Equal(b.ReceivedTime), a.ReceivedTime, b.ReceivedTime)
	chk("Tenant", a.Tenant == b.Tenant, a.Tenant, b.Tenant)
	chk("Actor", a.Actor == b.Actor, a.Actor, b.Actor)
	chk("SessionID", a.SessionID == b.SessionID, a.SessionID, b.SessionID)
	chk("TraceID", a.TraceID == b.TraceID, a.TraceID, b.TraceID)
	chk("SpanID", a.SpanID == b.SpanID, a.SpanID, b.SpanID)
	chk("ParentSpanID", a.ParentSpanID == b.ParentSpanID, a.ParentSpanID, b.ParentSpanID)
	chk("Source", a.Source == b.Source, a.Source, b.Source)
	chk("Links", slices.Equal(a.Links, b.Links), a.Links, b.Links)
	raw := func(x, y json.RawMessage) bool { return bytes.Equal(x, y) }
	chk("Attributes", maps.EqualFunc(a.Attributes, b.Attributes, raw), a.Attributes, b.Attributes)
	chk("Content", maps.EqualFunc(a.Content, b.Content, raw), a.Content, b.Content)
	chk("Commitments", maps.Equal(a.Commitments, b.Commitments), a.Commitments, b.Commitments)
	return strings.Join(d, "; ")
}

func TestParseRecordExample(t *testing.T) {
	r, canon := mustParse(t, exampleRecord)
	if r.Kind != infertrail.KindInference || r.ID.String() != exampleID || r.Tenant != "acme" ||
		r.Actor.ID != "agent:payments-bot" || r.Actor.Type != "agent" || r.Actor.OnBehalfOf != "user:alice@acme.example" ||
		r.SessionID != "sess-42" || r.TraceID != "4bf92f3577b34da6a3ce929d0e0e4736" || r.SpanID != "00f067aa0ba902b7" {
		t.Errorf("parsed record: %+v", r)
	}
	if want := time.Date(2026, 11, 26, 10, 0, 0, 123456000, time.UTC); !r.Time.Equal(want) || r.Time.Location() != time.UTC {
		t.Errorf("Time = %v, want %v in UTC", r.Time, want)
	}
	if len(r.Attributes) != 8 || string(r.Attributes["gen_ai.request.temperature"]) != "0.2" ||
		string(r.Attributes["gen_ai.request.model"]) != `"gpt-4o"` {
		t.Errorf("Attributes = %s", r.Attributes)
	}
	wantOut := `[{"finish_reason":"tool_call","parts":[{"arguments":{"amount_eur":1200,"invoice":7},"id":"call_1","name":"approve_payment","type":"tool_call"}],"role":"assistant"}]`
	if got := string(r.Content["gen_ai.output.messages"]); got != wantOut {
		t.Errorf("output messages = %s, want %s", got, wantOut)
	}
	want, err := infertrail.Canonicalize([]byte(exampleRecord))
	if err != nil || !bytes.Equal(canon, want) {
		t.Errorf("canonical submitted form = %s, want %s (%v)", canon, want, err)
	}
	// White space and member order do not change the submitted form.
	var pretty bytes.Buffer
	if err := json.Indent(&pretty, []byte(exampleRecord), "", "\t"); err != nil {
		t.Fatal(err)
	}
	_, canon2 := mustParse(t, pretty.String())
	if !bytes.Equal(canon, canon2) {
		t.Errorf("indented record gives another canonical form:\n%s\n%s", canon2, canon)
	}
}

func TestLeafExampleGolden(t *testing.T) {
	r, _ := mustParse(t, exampleRecord)
	sealRecord(t, r)
	leaf := r.AppendLeaf(nil)
	writeOrCompareGolden(t, filepath.Join("testdata", "leaf", "example.golden"), leaf)
	if c, err := infertrail.Canonicalize(leaf); err != nil || !bytes.Equal(c, leaf) {
		t.Errorf("leaf is not canonical: %v\n%s\n%s", err, leaf, c)
	}
	if !json.Valid(leaf) || bytes.Contains(leaf, []byte(`"content"`)) {
		t.Errorf("leaf %s", leaf)
	}
	back, err := infertrail.ParseLeaf(leaf)
	if err != nil {
		t.Fatalf("ParseLeaf: %v", err)
	}
	if d := diffRecords(r, back); d != "" {
		t.Errorf("ParseLeaf(AppendLeaf(r)) differs: %s", d)
	}
	if again := back.AppendLeaf(nil); !bytes.Equal(again, leaf) {
		t.Errorf("re-encoded leaf differs:\n%s\n%s", again, leaf)
	}
	split := r.AppendLeafPrefix([]byte("x"))
	split = fmt.Appendf(split, "%d", r.Seq)
	split = r.AppendLeafSuffix(split)
	if !bytes.Equal(split[1:], leaf) || split[0] != 'x' {
		t.Errorf("prefix + seq + suffix = %s, want %s", split, leaf)
	}
	if got := r.AppendLeaf([]byte("x")); string(got) != "x"+string(leaf) {
		t.Errorf("AppendLeaf does not append to dst")
	}
}

// TestLeafRoundTrip round-trips records with every optional field set or not.
func TestLeafRoundTrip(t *testing.T) {
	full := &infertrail.Record{
		Seq: 0, ID: mustUUID(t, otherID), Kind: infertrail.KindToolCall,
		Time:   time.Date(1970, 1, 1, 0, 0, 0, 1, time.UTC),
		Tenant: "t_1.x-y",
		Actor: infertrail.Actor{ID: "a\u2028\"\\é😀", Type: "workload", OnBehalfOf: "user:bob", Workload: "spiffe://x/y",
			CredentialFingerprint: "fp:1"},
		SessionID: "s", TraceID: "0123456789abcdef0123456789abcdef", SpanID: "0123456789abcdef", ParentSpanID: "fedcba9876543210",
		Links:      []infertrail.Link{{Rel: "answers", ID: mustUUID(t, exampleID)}, {Rel: "governs_2", ID: mustUUID(t, otherID)}},
		Attributes: map[string]json.RawMessage{"\ue000": json.RawMessage(`1`), "😀": json.RawMessage(`[]`), "a": json.RawMessage(`{"b":null}`)},
		Content:    map[string]json.RawMessage{"x": json.RawMessage(`"y"`), "\U0001F600": json.RawMessage(`1`), "\ufb2a": json.RawMessage(`2`)},
	}
	for name, r := range map[string]*infertrail.Record{
		"minimal": {Kind: infertrail.KindAccess},
		"full":    full,
		"big seq": {Kind: infertrail.KindErasure, Seq: 1<<53 - 1},
	} {
		t.Run(name, func(t *testing.T) {
			if err := r.Validate(infertrail.Limits{}); err != nil {
				t.Fatalf("Validate: %v", err)
			}
			seq := r.Seq
			sealRecord(t, r)
			if seq != 0 {
				r.Seq = seq
			}
			leaf := r.AppendLeaf(nil)
			back, err := infertrail.ParseLeaf(leaf)
			if err != nil {
				t.Fatalf("ParseLeaf(%s): %v", leaf, err)
			}
			if d := diffRecords(r, back); d != "" {
				t.Errorf("round trip differs: %s\n%s", d, leaf)
			}
		})
	}
}

// TestLeafBigNumberAttribute checks that a record whose attribute is a
// double with an integer form beyond 2^53 (such as 1e20) gives a leaf
// that ParseLeaf accepts. ParseRecord takes 1e20 and writes it as
// 100000000000000000000, which must then be acceptable canonical JSON.
func TestLeafBigNumberAttribute(t *testing.T) {
	src := strings.Replace(exampleRecord, `"gen_ai.usage.output_tokens":30`, `"gen_ai.usage.output_tokens":30,"big":1e20`, 1)
	r, _ := mustParse(t, src)
	if got := string(r.Attributes["big"]); got != "100000000000000000000" {
		t.Fatalf("attribute big = %s", got)
	}
	sealRecord(t, r)
	leaf := r.AppendLeaf(nil)
	if _, err := infertrail.ParseLeaf(leaf); err != nil {
		t.Errorf("ParseLeaf of a leaf this package wrote: %v", err)
	}
}

// withField returns the example record with a top-level member replaced by
// raw JSON, or removed when raw is "".
func withField(tb testing.TB, key, raw string) string {
	tb.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal([]byte(exampleRecord), &m); err != nil {
		tb.Fatal(err)
	}
	if raw == "" {
		delete(m, key)
	} else {
		m[key] = json.RawMessage(raw)
	}
	b, err := json.Marshal(m)
	if err != nil {
		tb.Fatalf("marshal with %s=%s: %v", key, raw, err)
	}
	return string(b)
}

func manyMembers(n int, value func(i int) string) string {
	var b strings.Builder
	b.WriteByte('{')
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `"m%d":%s`, i, value(i))
	}
	b.WriteByte('}')
	return b.String()
}

func manyLinks(n int) string {
	var b strings.Builder
	b.WriteByte('[')
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"rel":"follows","id":"0193a5b0-7c1e-7000-8000-%012x"}`, i+1)
	}
	b.WriteByte(']')
	return b.String()
}

func TestParseRecordFields(t *testing.T) {
	q := func(s string) string { b, _ := json.Marshal(s); return string(b) }
	long := strings.Repeat("x", 1025)
	tests := []struct {
		name, key, raw string // raw "" removes the member
		field          string // FieldError.Field; "" means the record is accepted
		err            error
	}{
		{"kind missing", "kind", "", "kind", infertrail.ErrInvalid},
		{"kind unknown", "kind", `"llm_call"`, "kind", infertrail.ErrInvalid},
		{"kind upper case", "kind", `"Inference"`, "kind", infertrail.ErrInvalid},
		{"kind empty", "kind", `""`, "kind", infertrail.ErrInvalid},
		{"kind not a string", "kind", `1`, "kind", infertrail.ErrInvalid},
		{"kind null", "kind", `null`, "kind", infertrail.ErrInvalid},
		{"kind each", "kind", `"policy_decision"`, "", nil},

		{"id missing is left zero", "id", "", "", nil},
		{"id bad", "id", `"not-a-uuid"`, "id", infertrail.ErrInvalid},
		{"id no hyphens", "id", `"0193a5b07c1e70008000000000000001"`, "id", infertrail.ErrInvalid},
		{"id not hex", "id", `"0193a5b0-7c1e-7000-8000-00000000000g"`, "id", infertrail.ErrInvalid},
		{"id nil", "id", `"00000000-0000-0000-0000-000000000000"`, "id", infertrail.ErrInvalid},
		{"id not a string", "id", `1`, "id", infertrail.ErrInvalid},
		{"id upper case", "id", `"0193A5B0-7C1E-7000-8000-00000000000A"`, "", nil},

		{"time missing is left zero", "time", "", "", nil},
		{"time space separator", "time", `"2026-11-26 10:00:00Z"`, "time", infertrail.ErrInvalid},
		{"time no zone", "time", `"2026-11-26T10:00:00"`, "time", infertrail.ErrInvalid},
		{"time date only", "time", `"2026-11-26"`, "time", infertrail.ErrInvalid},
		{"time year 1969", "time", `"1969-12-31T23:59:59.999Z"`, "time", infertrail.ErrInvalid},
		{"time 1969 after the offset", "time", `"1970-01-01T00:30:00+01:00"`, "time", infertrail.ErrInvalid},
		{"time year 10000", "time", `"10000-01-01T00:00:00Z"`, "time", infertrail.ErrInvalid},
		{"time 10000 after the offset", "time", `"9999-12-31T23:30:00-01:00"`, "time", infertrail.ErrInvalid},
		{"time comma fraction", "time", `"2026-11-26T10:00:00,5Z"`, "time", infertrail.ErrInvalid},
		{"time ten fraction digits", "time", `"2026-11-26T10:00:00.1234567890Z"`, "time", infertrail.ErrInvalid},
		{"time empty fraction", "time", `"2026-11-26T10:00:00.Z"`, "time", infertrail.ErrInvalid},
		{"time offset 24:00", "time", `"2026-11-26T10:00:00+24:00"`, "time", infertrail.ErrInvalid},
		{"time offset without colon", "time", `"2026-11-26T10:00:00+0100"`, "time", infertrail.ErrInvalid},
		{"time month 13", "time", `"2026-13-26T10:00:00Z"`, "time", infertrail.ErrInvalid},
		{"time not a string", "time", `1764151200`, "time", infertrail.ErrInvalid},
		{"time offset", "time", `"2026-11-26T11:00:00.5+01:00"`, "", nil},
		{"time 1970", "time", `"1970-01-01T00:00:00Z"`, "", nil},
		{"time 9999", "time", `"9999-12-31T23:59:59.999999999Z"`, "", nil},

		{"tenant missing is left empty", "tenant", "", "", nil},
		{"tenant space", "tenant", `"ac me"`, "tenant", infertrail.ErrInvalid},
		{"tenant slash", "tenant", `"a/b"`, "tenant", infertrail.ErrInvalid},
		{"tenant leading dash", "tenant", `"-acme"`, "tenant", infertrail.ErrInvalid},
		{"tenant non-ASCII", "tenant", `"acmé"`, "tenant", infertrail.ErrInvalid},
		{"tenant empty", "tenant", `""`, "tenant", infertrail.ErrInvalid},
		{"tenant too long", "tenant", q(strings.Repeat("a", 129)), "tenant", infertrail.ErrTooLarge},
		{"tenant longest", "tenant", q(strings.Repeat("a", 128)), "", nil},
		{"tenant not a string", "tenant", `["acme"]`, "tenant", infertrail.ErrInvalid},

		{"actor not an object", "actor", `"bob"`, "actor", infertrail.ErrInvalid},
		{"actor unknown member", "actor", `{"id":"a","name":"b"}`, "actor.name", infertrail.ErrInvalid},
		{"actor non-string", "actor", `{"id":7}`, "actor.id", infertrail.ErrInvalid},
		{"actor empty string", "actor", `{"type":""}`, "actor.type", infertrail.ErrInvalid},
		{"actor control char", "actor", `{"on_behalf_of":"a\u0001b"}`, "actor.on_behalf_of", infertrail.ErrInvalid},
		{"actor newline", "actor", `{"workload":"a\nb"}`, "actor.workload", infertrail.ErrInvalid},
		{"actor DEL", "actor", `{"id":"a\u007f"}`, "actor.id", infertrail.ErrInvalid},
		{"actor too long", "actor", `{"credential_fingerprint":` + q(long) + `}`, "actor.credential_fingerprint", infertrail.ErrTooLarge},
		{"actor every member", "actor", `{"id":"a","type":"b","on_behalf_of":"c","workload":"d","credential_fingerprint":"e"}`, "", nil},
		{"actor empty object", "actor", `{}`, "", nil},

		{"session_id empty", "session_id", `""`, "session_id", infertrail.ErrInvalid},
		{"session_id not a string", "session_id", `42`, "session_id", infertrail.ErrInvalid},
		{"session_id control char", "session_id", `"a\tb"`, "session_id", infertrail.ErrInvalid},
		{"session_id too long", "session_id", q(long), "session_id", infertrail.ErrTooLarge},
		{"session_id unicode", "session_id", `"séance 😀"`, "", nil},

		{"trace_id short", "trace_id", `"4bf92f3577b34da6a3ce929d0e0e473"`, "trace_id", infertrail.ErrInvalid},
		{"trace_id long", "trace_id", `"4bf92f3577b34da6a3ce929d0e0e47366"`, "trace_id", infertrail.ErrInvalid},
		{"trace_id upper case", "trace_id", `"4BF92F3577B34DA6A3CE929D0E0E4736"`, "trace_id", infertrail.ErrInvalid},
		{"trace_id all zero", "trace_id", q(strings.Repeat("0", 32)), "trace_id", infertrail.ErrInvalid},
		{"trace_id not hex", "trace_id", `"4bf92f3577b34da6a3ce929d0e0e473g"`, "trace_id", infertrail.ErrInvalid},
		{"trace_id not a string", "trace_id", `1`, "trace_id", infertrail.ErrInvalid},
		{"span_id short", "span_id", `"00f067aa0ba902b"`, "span_id", infertrail.ErrInvalid},
		{"span_id upper case", "span_id", `"00F067AA0BA902B7"`, "span_id", infertrail.ErrInvalid},
		{"span_id all zero", "span_id", `"0000000000000000"`, "span_id", infertrail.ErrInvalid},
		{"span_id trace-sized", "span_id", `"4bf92f3577b34da6a3ce929d0e0e4736"`, "span_id", infertrail.ErrInvalid},
		{"parent_span_id short", "parent_span_id", `"abc"`, "parent_span_id", infertrail.ErrInvalid},
		{"parent_span_id upper case", "parent_span_id", `"00F067AA0BA902B7"`, "parent_span_id", infertrail.ErrInvalid},
		{"parent_span_id all zero", "parent_span_id", `"0000000000000000"`, "parent_span_id", infertrail.ErrInvalid},
		{"parent_span_id good", "parent_span_id", `"00f067aa0ba902b8"`, "", nil},

		{"links not an array", "links", `{"rel":"answers"}`, "links", infertrail.ErrInvalid},
		{"links element not an object", "links", `[1]`, "links[0]", infertrail.ErrInvalid},
		{"links bad rel", "links", `[{"rel":"Answers","id":"` + otherID + `"}]`, "links[0].rel", infertrail.ErrInvalid},
		{"links rel with a dash", "links", `[{"rel":"an-swers","id":"` + otherID + `"}]`, "links[0].rel", infertrail.ErrInvalid},
		{"links empty rel", "links", `[{"rel":"","id":"` + otherID + `"}]`, "links[0].rel", infertrail.ErrInvalid},
		{"links rel not a string", "links", `[{"rel":1,"id":"` + otherID + `"}]`, "links[0].rel", infertrail.ErrInvalid},
		{"links missing id", "links", `[{"rel":"answers","id":"` + otherID + `"},{"rel":"answers"}]`, "links[1]", infertrail.ErrInvalid},
		{"links missing rel", "links", `[{"id":"` + otherID + `"}]`, "links[0]", infertrail.ErrInvalid},
		{"links bad id", "links", `[{"rel":"answers","id":"x"}]`, "links[0].id", infertrail.ErrInvalid},
		{"links nil id", "links", `[{"rel":"answers","id":"00000000-0000-0000-0000-000000000000"}]`, "links[0].id", infertrail.ErrInvalid},
		{"links unknown member", "links", `[{"rel":"answers","id":"` + otherID + `","note":"x"}]`, "links[0].note", infertrail.ErrInvalid},
		{"links too many", "links", manyLinks(65), "links", infertrail.ErrTooLarge},
		{"links most", "links", manyLinks(64), "", nil},
		{"links empty", "links", `[]`, "", nil},

		{"attributes not an object", "attributes", `[]`, "attributes", infertrail.ErrInvalid},
		{"attributes string", "attributes", `"x"`, "attributes", infertrail.ErrInvalid},
		{"attributes too many", "attributes", manyMembers(257, func(int) string { return "1" }), "attributes", infertrail.ErrTooLarge},
		{"attributes most", "attributes", manyMembers(256, func(int) string { return "1" }), "", nil},
		{"attributes value too large", "attributes", `{"big":` + q(strings.Repeat("x", 16<<10)) + `}`, `attributes["big"]`, infertrail.ErrTooLarge},
		{"attributes value largest", "attributes", `{"big":` + q(strings.Repeat("x", 16<<10-2)) + `}`, "", nil},
		{"attributes empty name", "attributes", `{"":1}`, `attributes[""]`, infertrail.ErrInvalid},
		{"attributes control char in name", "attributes", `{"a\nb":1}`, `attributes["a\nb"]`, infertrail.ErrInvalid},
		{"attributes name too long", "attributes", `{` + q(strings.Repeat("n", 257)) + `:1}`, `attributes["` + strings.Repeat("n", 257) + `"]`, infertrail.ErrInvalid},

		{"content not an object", "content", `"hello"`, "content", infertrail.ErrInvalid},
		{"content too many fields", "content", manyMembers(65, func(int) string { return `"x"` }), "content", infertrail.ErrTooLarge},
		{"content most fields", "content", manyMembers(64, func(int) string { return `"x"` }), "", nil},
		{"content empty name", "content", `{"":"x"}`, `content[""]`, infertrail.ErrInvalid},

		{"seq refused", "seq", `1`, "seq", infertrail.ErrInvalid},
		{"received_time refused", "received_time", `"2026-11-26T10:00:00Z"`, "received_time", infertrail.ErrInvalid},
		{"source refused", "source", `"openai"`, "source", infertrail.ErrInvalid},
		{"schema_version refused", "schema_version", `1`, "schema_version", infertrail.ErrInvalid},
		{"commitments refused", "commitments", `{}`, "commitments", infertrail.ErrInvalid},
		{"unknown field", "model", `"gpt-4o"`, "model", infertrail.ErrInvalid},
		{"unknown field null", "extra", `null`, "extra", infertrail.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := withField(t, tt.key, tt.raw)
			r, canon, err := infertrail.ParseRecord([]byte(src), infertrail.Limits{})
			if tt.field == "" {
				if err != nil {
					t.Fatalf("ParseRecord: %v", err)
				}
				if r == nil || canon == nil {
					t.Fatal("ParseRecord returned nil without an error")
				}
				return
			}
			if err == nil {
				t.Fatalf("ParseRecord accepted %s=%.80s", tt.key, tt.raw)
			}
			checkFieldError(t, err, -1, tt.field, tt.err)
			if r != nil || canon != nil {
				t.Errorf("ParseRecord returned a record with an error")
			}
		})
	}
}

// checkFieldError checks that err is a *FieldError for the field and
// record, wrapping want.
func checkFieldError(tb testing.TB, err error, record int, field string, want error) {
	tb.Helper()
	var fe *infertrail.FieldError
	if !errors.As(err, &fe) {
		tb.Fatalf("error %v (%T) is not a *FieldError", err, err)
	}
	if fe.Field != field {
		tb.Errorf("Field = %q, want %q (error %v)", fe.Field, field, err)
	}
	if fe.Record != record {
		tb.Errorf("Record = %d, want %d (error %v)", fe.Record, record, err)
	}
	if !errors.Is(err, want) {
		tb.Errorf("error %v does not wrap %v", err, want)
	}
	if fe.Reason == "" || !strings.Contains(err.Error(), fe.Field) {
		tb.Errorf("error text %q does not name the field or lacks a reason", err)
	}
}

// TestParseRecordLimits checks that a non-zero Limits overrides each default.
func TestParseRecordLimits(t *testing.T) {
	lim := infertrail.Limits{MaxStringBytes: 4, MaxAttributes: 1, MaxAttributeBytes: 3, MaxContentFields: 1, MaxContentBytes: 5, MaxLinks: 1}
	tests := []struct {
		key, raw, field string
	}{
		{"session_id", `"abcde"`, "session_id"},
		{"actor", `{"id":"abcde"}`, "actor.id"},
		{"attributes", `{"a":1,"b":2}`, "attributes"},
		{"attributes", `{"a":1234}`, `attributes["a"]`},
		{"content", `{"a":1,"b":2}`, "content"},
		{"content", `{"a":"12345"}`, `content["a"]`},
		{"links", manyLinks(2), "links"},
	}
	base := map[string]string{"kind": `"retrieval"`}
	for _, tt := range tests {
		t.Run(tt.field, func(t *testing.T) {
			src := fmt.Sprintf(`{"kind":%s,%q:%s}`, base["kind"], tt.key, tt.raw)
			_, _, err := infertrail.ParseRecord([]byte(src), lim)
			if err == nil {
				t.Fatalf("ParseRecord accepted %s", src)
			}
			checkFieldError(t, err, -1, tt.field, infertrail.ErrTooLarge)
		})
	}
	src := `{"kind":"retrieval","session_id":"abcd","attributes":{"a":123},"content":{"a":"123"},"links":` + manyLinks(1) + `}`
	if _, _, err := infertrail.ParseRecord([]byte(src), lim); err != nil {
		t.Errorf("ParseRecord at the limits: %v", err)
	}
}

// TestParseRecordSyntax checks that malformed records are refused with an
// error wrapping ErrInvalid, which the HTTP API turns into 400.
func TestParseRecordSyntax(t *testing.T) {
	tests := []struct{ name, in, field string }{
		{"empty", ``, "(record)"},
		{"array", `[]`, "(record)"},
		{"string", `"inference"`, "(record)"},
		{"null", `null`, "(record)"},
		{"unclosed", `{"kind":"inference"`, "(record)"},
		{"duplicate member", `{"kind":"inference","kind":"access"}`, "(record)"},
		{"duplicate member escaped", `{"kind":"inference","\u006bind":"access"}`, "(record)"},
		{"bad nested number", `{"kind":"inference","content":{"x":[1,2,0123]}}`, `content.x[2]`},
		{"big integer", `{"kind":"inference","attributes":{"n":12345678901234567890}}`, `attributes.n`},
		{"lone surrogate", `{"kind":"inference","session_id":"\ud800"}`, `session_id`},
		{"invalid UTF-8", "{\"kind\":\"inference\",\"session_id\":\"\xff\"}", `session_id`},
		{"trailing garbage", `{"kind":"inference"} {}`, ""},
		{"trailing comma", `{"kind":"inference",}`, "(record)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := infertrail.ParseRecord([]byte(tt.in), infertrail.Limits{})
			if err == nil {
				t.Fatalf("ParseRecord(%q) succeeded", tt.in)
			}
			if !errors.Is(err, infertrail.ErrInvalid) {
				t.Errorf("error %v (%T) does not wrap ErrInvalid", err, err)
			}
			var fe *infertrail.FieldError
			if tt.field != "" && errors.As(err, &fe) && fe.Field != tt.field {
				t.Errorf("Field = %q, want %q (%v)", fe.Field, tt.field, err)
			}
		})
	}
}

func TestParseRecords(t *testing.T) {
	good := `{"kind":"access"}`
	bad := `{"kind":"access","tenant":"no way"}`
	t.Run("empty array", func(t *testing.T) {
		recs, canons, err := infertrail.ParseRecords([]byte(" [ ] "), infertrail.Limits{})
		if err != nil || len(recs) != 0 || len(canons) != 0 {
			t.Fatalf("ParseRecords([]) = %v, %v, %v", recs, canons, err)
		}
	})
	t.Run("three", func(t *testing.T) {
		src := "[\n" + exampleRecord + " ,\n" + good + "," + `{"kind":"approval","id":"` + otherID + `"}` + "\n]\n"
		recs, canons, err := infertrail.ParseRecords([]byte(src), infertrail.Limits{})
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) != 3 || len(canons) != 3 || recs[1].Kind != infertrail.KindAccess || recs[2].ID.String() != otherID {
			t.Fatalf("ParseRecords = %v", recs)
		}
		one, canon := mustParse(t, exampleRecord)
		if d := diffRecords(recs[0], one); d != "" || !bytes.Equal(canons[0], canon) {
			t.Errorf("batch record 0 differs from ParseRecord: %s", d)
		}
		if string(canons[1]) != good {
			t.Errorf("canons[1] = %s", canons[1])
		}
	})
	// The canonical forms share one buffer: each must be its record's,
	// even when one is longer than its source (numbers written out, more
	// than the buffer holds), and appending to one must leave the next alone.
	t.Run("canonical forms", func(t *testing.T) {
		long := `{"kind":"access","attributes":{"n":[` + strings.Repeat("1e20,", 200) + `1e20]}}`
		srcs := []string{good, exampleRecord, long, `{ "kind" : "approval" }`, long, good}
		recs, canons, err := infertrail.ParseRecords([]byte("["+strings.Join(srcs, ",")+"]"), infertrail.Limits{})
		if err != nil || len(recs) != len(srcs) {
			t.Fatalf("ParseRecords: %d records, %v", len(recs), err)
		}
		for i, src := range srcs {
			_, want := mustParse(t, src)
			if !bytes.Equal(canons[i], want) {
				t.Errorf("canons[%d] = %.80s, want %.80s", i, canons[i], want)
			}
		}
		next := string(canons[1])
		_ = append(canons[0], "overwritten"...)
		if string(canons[1]) != next {
			t.Errorf("appending to canons[0] changed canons[1]")
		}
	})
	for _, tt := range []struct {
		name, src string
		record    int
		field     string
	}{
		{"first bad", "[" + bad + "," + good + "]", 0, "tenant"},
		{"third bad", "[" + good + "," + good + "," + bad + "]", 2, "tenant"},
		{"syntax in the second", "[" + good + `,{"kind":"access",` + "]", 1, "(record)"},
		{"not an object", "[" + good + ",1]", 1, "(record)"},
		{"trailing comma", "[" + good + ",]", 1, "(record)"},
		{"nested syntax", "[" + good + `,{"kind":"access","attributes":{"a":[tru]}}]`, 1, "attributes.a[0]"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			recs, _, err := infertrail.ParseRecords([]byte(tt.src), infertrail.Limits{})
			if err == nil {
				t.Fatalf("ParseRecords accepted %s", tt.src)
			}
			if recs != nil {
				t.Errorf("records returned with an error")
			}
			checkFieldError(t, err, tt.record, tt.field, infertrail.ErrInvalid)
		})
	}
	for _, tt := range []struct{ name, src string }{
		{"empty body", ``},
		{"object", good},
		{"string", `"x"`},
		{"unclosed", "[" + good},
		{"missing comma", "[" + good + good + "]"},
		{"trailing garbage", "[" + good + "] x"},
		{"two arrays", "[][]"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := infertrail.ParseRecords([]byte(tt.src), infertrail.Limits{})
			if err == nil {
				t.Fatalf("ParseRecords accepted %q", tt.src)
			}
			if !errors.Is(err, infertrail.ErrInvalid) {
				t.Errorf("error %v (%T) does not wrap ErrInvalid", err, err)
			}
		})
	}
}

func TestParseLeafRejects(t *testing.T) {
	r, _ := mustParse(t, exampleRecord)
	sealRecord(t, r)
	leaf := string(r.AppendLeaf(nil))
	if _, err := infertrail.ParseLeaf([]byte(leaf)); err != nil {
		t.Fatalf("ParseLeaf(good leaf): %v", err)
	}
	member := func(key, raw string) string { return leafMember(t, leaf, key, raw) }
	if member("seq", "41") != leaf {
		t.Fatalf("re-marshalled leaf differs from the leaf:\n%s\n%s", member("seq", "41"), leaf)
	}
	commitment := `"sha256:` + strings.Repeat("ab", 32) + `"`
	tests := []struct{ name, leaf string }{
		{"empty", ``},
		{"leading space", " " + leaf},
		{"trailing space", leaf + " "},
		{"trailing newline", leaf + "\n"},
		{"space after a colon", strings.Replace(leaf, `"seq":41`, `"seq": 41`, 1)},
		{"unsorted members", `{"kind":"inference",` + strings.Replace(leaf[1:], `"kind":"inference",`, "", 1)},
		{"escaped solidus", strings.Replace(leaf, `user:alice@acme.example`, `user:alice\/acme`, 1)},
		{"content present", member("content", `{"x":1}`)},
		{"missing id", member("id", "")},
		{"missing kind", member("kind", "")},
		{"missing time", member("time", "")},
		{"missing received_time", member("received_time", "")},
		{"missing tenant", member("tenant", "")},
		{"missing seq", member("seq", "")},
		{"missing source", member("source", "")},
		{"missing schema_version", member("schema_version", "")},
		{"schema_version 2", member("schema_version", "2")},
		{"schema_version string", member("schema_version", `"1"`)},
		{"seq negative", member("seq", "-1")},
		{"seq fraction", member("seq", "1.5")},
		{"seq string", member("seq", `"41"`)},
		{"seq non-canonical", member("seq", "41.0")},
		{"commitment without prefix", member("commitments", `{"x":"`+strings.Repeat("ab", 32)+`"}`)},
		{"commitment sha1", member("commitments", `{"x":"sha1:`+strings.Repeat("ab", 20)+`"}`)},
		{"commitment upper case", member("commitments", `{"x":"sha256:`+strings.Repeat("AB", 32)+`"}`)},
		{"commitment short", member("commitments", `{"x":"sha256:`+strings.Repeat("ab", 31)+`"}`)},
		{"commitment not a string", member("commitments", `{"x":1}`)},
		{"commitments not an object", member("commitments", `[`+commitment+`]`)},
		{"commitments empty", member("commitments", `{}`)},
		{"attributes empty", member("attributes", `{}`)},
		{"actor empty", member("actor", `{}`)},
		{"links empty", member("links", `[]`)},
		{"upper-case id", member("id", `"0193A5B0-7C1E-7000-8000-000000000001"`)},
		{"time with offset", member("time", `"2026-11-26T11:00:00.123456+01:00"`)},
		{"time with trailing zeros", member("time", `"2026-11-26T10:00:00.123456000Z"`)},
		{"lower-case z", member("time", `"2026-11-26T10:00:00.123456z"`)},
		{"empty source", member("source", `""`)},
		{"unknown member", member("zzz", `1`)},
		{"not an object", `[` + leaf + `]`},
		{"two leaves", leaf + leaf},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := infertrail.ParseLeaf([]byte(tt.leaf))
			if err == nil {
				t.Fatalf("ParseLeaf accepted %s", tt.leaf)
			}
			if r != nil {
				t.Errorf("ParseLeaf returned a record with an error")
			}
			if !errors.Is(err, infertrail.ErrInvalid) {
				t.Errorf("error %v does not wrap ErrInvalid", err)
			}
		})
	}
	// The same record with a good commitment in place of the real ones is fine.
	if _, err := infertrail.ParseLeaf([]byte(member("commitments", `{"x":`+commitment+`}`))); err != nil {
		t.Errorf("ParseLeaf with another commitment: %v", err)
	}
}

func TestValidate(t *testing.T) {
	base := func() *infertrail.Record {
		return &infertrail.Record{Kind: infertrail.KindInference, Tenant: "acme",
			Attributes: map[string]json.RawMessage{"b": json.RawMessage(" { \"y\" : 1.50, \"x\" : [ \"\\u00e9\" ] } ")},
			Content:    map[string]json.RawMessage{"c": json.RawMessage(`"\/"`), "d": json.RawMessage("1E2")}}
	}
	r := base()
	if err := r.Validate(infertrail.Limits{}); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	if got := string(r.Attributes["b"]); got != `{"x":["é"],"y":1.5}` {
		t.Errorf("attribute b = %s", got)
	}
	if got := string(r.Content["c"]) + string(r.Content["d"]); got != `"/"100` {
		t.Errorf("content = %s", got)
	}
	if err := r.Validate(infertrail.Limits{}); err != nil || string(r.Attributes["b"]) != `{"x":["é"],"y":1.5}` {
		t.Errorf("second Validate: %v, %s", err, r.Attributes["b"])
	}
	// A value in canonical form already, as values built in Go are, is
	// kept as it is, not copied.
	canon := json.RawMessage(`{"a":[1,"x"],"b":"\u001f"}`)
	r.Content["e"] = canon
	if err := r.Validate(infertrail.Limits{}); err != nil || &r.Content["e"][0] != &canon[0] {
		t.Errorf("Validate of a canonical value: %v, the value was copied: %t", err, &r.Content["e"][0] != &canon[0])
	}

	tests := []struct {
		name   string
		modify func(r *infertrail.Record)
		field  string
		err    error
	}{
		{"kind empty", func(r *infertrail.Record) { r.Kind = "" }, "kind", infertrail.ErrInvalid},
		{"kind unknown", func(r *infertrail.Record) { r.Kind = "chat" }, "kind", infertrail.ErrInvalid},
		{"tenant bad", func(r *infertrail.Record) { r.Tenant = "a b" }, "tenant", infertrail.ErrInvalid},
		{"trace_id upper case", func(r *infertrail.Record) { r.TraceID = strings.Repeat("A", 32) }, "trace_id", infertrail.ErrInvalid},
		{"span_id zero", func(r *infertrail.Record) { r.SpanID = strings.Repeat("0", 16) }, "span_id", infertrail.ErrInvalid},
		{"parent_span_id short", func(r *infertrail.Record) { r.ParentSpanID = "abc" }, "parent_span_id", infertrail.ErrInvalid},
		{"session_id control", func(r *infertrail.Record) { r.SessionID = "a\x00" }, "session_id", infertrail.ErrInvalid},
		{"session_id invalid UTF-8", func(r *infertrail.Record) { r.SessionID = "a\xff" }, "session_id", infertrail.ErrInvalid},
		{"actor.id too long", func(r *infertrail.Record) { r.Actor.ID = strings.Repeat("a", 1025) }, "actor.id", infertrail.ErrTooLarge},
		{"actor.workload control", func(r *infertrail.Record) { r.Actor.Workload = "\n" }, "actor.workload", infertrail.ErrInvalid},
		{"link rel", func(r *infertrail.Record) {
			r.Links = []infertrail.Link{{Rel: "Bad", ID: infertrail.NewUUID()}}
		}, "links[0].rel", infertrail.ErrInvalid},
		{"link id", func(r *infertrail.Record) { r.Links = []infertrail.Link{{Rel: "answers"}} }, "links[0].id", infertrail.ErrInvalid},
		{"too many links", func(r *infertrail.Record) {
			r.Links = make([]infertrail.Link, 65)
		}, "links", infertrail.ErrTooLarge},
		{"attribute not JSON", func(r *infertrail.Record) { r.Attributes["b"] = json.RawMessage(`{x}`) }, `attributes["b"]`, infertrail.ErrInvalid},
		{"attribute empty", func(r *infertrail.Record) { r.Attributes["b"] = nil }, `attributes["b"]`, infertrail.ErrInvalid},
		{"attribute duplicate names", func(r *infertrail.Record) { r.Attributes["b"] = json.RawMessage(`{"a":1,"\u0061":2}`) }, `attributes["b"]`, infertrail.ErrInvalid},
		{"attribute two values", func(r *infertrail.Record) { r.Attributes["b"] = json.RawMessage(`1 2`) }, `attributes["b"]`, infertrail.ErrInvalid},
		{"attribute big integer", func(r *infertrail.Record) { r.Attributes["b"] = json.RawMessage(`9007199254740993`) }, `attributes["b"]`, infertrail.ErrInvalid},
		{"attribute empty name", func(r *infertrail.Record) { r.Attributes[""] = json.RawMessage(`1`) }, `attributes[""]`, infertrail.ErrInvalid},
		{"attribute name invalid UTF-8", func(r *infertrail.Record) { r.Attributes["\xff"] = json.RawMessage(`1`) }, `attributes["\xff"]`, infertrail.ErrInvalid},
		{"attribute too large", func(r *infertrail.Record) {
			r.Attributes["b"] = json.RawMessage(`"` + strings.Repeat("x", 16<<10) + `"`)
		}, `attributes["b"]`, infertrail.ErrTooLarge},
		{"too many attributes", func(r *infertrail.Record) {
			for i := range 256 {
				r.Attributes[fmt.Sprint("a", i)] = json.RawMessage(`1`)
			}
		}, "attributes", infertrail.ErrTooLarge},
		{"content not JSON", func(r *infertrail.Record) { r.Content["c"] = json.RawMessage(`NaN`) }, `content["c"]`, infertrail.ErrInvalid},
		{"too many content fields", func(r *infertrail.Record) {
			for i := range 63 {
				r.Content[fmt.Sprint("c", i)] = json.RawMessage(`1`)
			}
		}, "content", infertrail.ErrTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := base()
			tt.modify(r)
			err := r.Validate(infertrail.Limits{})
			if err == nil {
				t.Fatal("Validate accepted the record")
			}
			checkFieldError(t, err, -1, tt.field, tt.err)
		})
	}
}

func FuzzParseRecord(f *testing.F) {
	f.Add([]byte(exampleRecord))
	f.Add([]byte(`{"kind":"access"}`))
	f.Add([]byte(`{"kind":"tool_call","links":[{"rel":"answers","id":"` + otherID + `"}],"parent_span_id":"00f067aa0ba902b7"}`))
	f.Add([]byte(`{"kind":"approval","actor":{"workload":"w","credential_fingerprint":"c"},"attributes":{"\ue000":1,"😀":1e300}}`))
	f.Add([]byte(`{"kind":"erasure","time":"2026-11-26T11:00:00+01:00","content":{"a":{"b":[1,"\u0000"]}}}`))
	f.Fuzz(func(t *testing.T, src []byte) {
		r, canon, err := infertrail.ParseRecord(src, infertrail.Limits{})
		if err != nil {
			if !errors.Is(err, infertrail.ErrInvalid) && !errors.Is(err, infertrail.ErrTooLarge) {
				t.Fatalf("error %v (%T) wraps neither ErrInvalid nor ErrTooLarge", err, err)
			}
			return
		}
		// The canonical submitted form is canonical and parses to the same record.
		if c, err := infertrail.Canonicalize(canon); err != nil || !bytes.Equal(c, canon) {
			t.Fatalf("submitted form %q is not canonical: %v", canon, err)
		}
		r2, canon2, err := infertrail.ParseRecord(canon, infertrail.Limits{})
		if err != nil {
			t.Fatalf("ParseRecord(%q): %v", canon, err)
		}
		if d := diffRecords(r, r2); d != "" || !bytes.Equal(canon, canon2) {
			t.Fatalf("submitted form %q parses to another record: %s", canon, d)
		}
		// Validate agrees with ParseRecord and changes nothing.
		if err := r2.Validate(infertrail.Limits{}); err != nil {
			t.Fatalf("Validate of a parsed record: %v", err)
		}
		if d := diffRecords(r, r2); d != "" {
			t.Fatalf("Validate changed a parsed record: %s", d)
		}
		// The leaf parses back to the same record.
		sealRecord(t, r)
		leaf := r.AppendLeaf(nil)
		back, err := infertrail.ParseLeaf(leaf)
		if err != nil {
			t.Fatalf("ParseLeaf(%q): %v", leaf, err)
		}
		if d := diffRecords(r, back); d != "" {
			t.Fatalf("leaf %q parses to another record: %s", leaf, d)
		}
	})
}

// leafMember returns leaf with the value of one member replaced by raw, or
// the member removed when raw is empty.
func leafMember(tb testing.TB, leaf, key, raw string) string {
	tb.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal([]byte(leaf), &m); err != nil {
		tb.Fatal(err)
	}
	if raw == "" {
		delete(m, key)
	} else {
		m[key] = json.RawMessage(raw)
	}
	b, err := json.Marshal(m) // sorted, compact: canonical for these ASCII names
	if err != nil {
		tb.Fatal(err)
	}
	return string(b)
}
