package infertrail_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/infertrail/infertrail"
	"github.com/santhosh-tekuri/jsonschema/v6"
)

// docsIssueRecord is the example record of the record reference, byte for
// byte as the issue gives it. docs/examples/inference.json is the same
// record, pretty-printed.
const docsIssueRecord = `{"kind":"inference","id":"0193a5b0-7c1e-7000-8000-000000000001","time":"2026-11-26T10:00:00.123456Z","tenant":"acme","actor":{"id":"agent:payments-bot","type":"agent","on_behalf_of":"user:alice@acme.example"},"session_id":"sess-42","trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","span_id":"00f067aa0ba902b7","attributes":{"gen_ai.operation.name":"chat","gen_ai.provider.name":"openai","gen_ai.request.model":"gpt-4o","gen_ai.response.model":"gpt-4o-2024-08-06","openai.response.system_fingerprint":"fp_abc123","gen_ai.request.temperature":0.2,"gen_ai.usage.input_tokens":120,"gen_ai.usage.output_tokens":30},"content":{"gen_ai.input.messages":[{"role":"user","parts":[{"type":"text","content":"Pay invoice 7 of 1200 EUR to ACME"}]}],"gen_ai.output.messages":[{"role":"assistant","parts":[{"type":"tool_call","id":"call_1","name":"approve_payment","arguments":{"invoice":7,"amount_eur":1200}}],"finish_reason":"tool_call"}]}}`

// The worked example of docs/records.md: the issue's record stored as seq 41
// with these salts. docs/records.md must quote the leaf and its hash exactly.
var (
	docsLeafSalts = map[string]string{
		"gen_ai.input.messages":  "00112233445566778899aabbccddeeff",
		"gen_ai.output.messages": "ffeeddccbbaa99887766554433221100",
	}
	docsLeafSeq      = int64(41)
	docsLeafReceived = time.Date(2026, 11, 26, 10, 0, 0, 130912345, time.UTC)
)

func docsSchema(t *testing.T, name string) *jsonschema.Schema {
	t.Helper()
	c := jsonschema.NewCompiler()
	s, err := c.Compile(filepath.Join("docs", name))
	if err != nil {
		t.Fatalf("compile %s: %v", name, err)
	}
	return s
}

func docsValidate(s *jsonschema.Schema, doc []byte) error {
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(doc))
	if err != nil {
		return err
	}
	return s.Validate(v)
}

// TestDocsExamples checks that every example in docs/examples is a record
// the server accepts and the schema allows, and that there is one per kind.
func TestDocsExamples(t *testing.T) {
	schema := docsSchema(t, "record.schema.json")
	files, err := filepath.Glob(filepath.Join("docs", "examples", "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	seen := map[infertrail.Kind]string{}
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		r, _, err := infertrail.ParseRecord(src, infertrail.Limits{})
		if err != nil {
			t.Errorf("%s: ParseRecord: %v", f, err)
			continue
		}
		if err := docsValidate(schema, src); err != nil {
			t.Errorf("%s: record.schema.json: %v", f, err)
		}
		if want := string(r.Kind) + ".json"; filepath.Base(f) != want {
			t.Errorf("%s holds a %s record; name it %s", f, r.Kind, want)
		}
		if prev, dup := seen[r.Kind]; dup {
			t.Errorf("%s and %s are both %s examples", prev, f, r.Kind)
		}
		seen[r.Kind] = f
	}
	for _, k := range infertrail.Kinds {
		if seen[k] == "" {
			t.Errorf("no example of kind %s in docs/examples", k)
		}
	}
	if len(seen) != len(infertrail.Kinds) {
		t.Errorf("%d kinds have examples, want %d", len(seen), len(infertrail.Kinds))
	}
}

// TestDocsIssueRecord checks that the issue's example is accepted exactly as
// written and that docs/examples/inference.json is the same record.
func TestDocsIssueRecord(t *testing.T) {
	_, canon, err := infertrail.ParseRecord([]byte(docsIssueRecord), infertrail.Limits{})
	if err != nil {
		t.Fatalf("ParseRecord: %v", err)
	}
	if err := docsValidate(docsSchema(t, "record.schema.json"), []byte(docsIssueRecord)); err != nil {
		t.Errorf("record.schema.json: %v", err)
	}
	file, err := os.ReadFile(filepath.Join("docs", "examples", "inference.json"))
	if err != nil {
		t.Fatal(err)
	}
	_, fileCanon, err := infertrail.ParseRecord(file, infertrail.Limits{})
	if err != nil {
		t.Fatalf("inference.json: %v", err)
	}
	if !bytes.Equal(canon, fileCanon) {
		t.Errorf("docs/examples/inference.json is not the issue's record:\n%s\nwant\n%s", fileCanon, canon)
	}
}

// TestDocsLeaf rebuilds the leaf that docs/records.md shows, the way a
// third party would, and checks it against the package, both schemas and
// the text of docs/records.md.
func TestDocsLeaf(t *testing.T) {
	r, _, err := infertrail.ParseRecord([]byte(docsIssueRecord), infertrail.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	r.Seq, r.ReceivedTime, r.Source = docsLeafSeq, docsLeafReceived, "ingest"
	r.Commitments = map[string]string{}
	for field, v := range r.Content {
		salt, err := hex.DecodeString(docsLeafSalts[field])
		if err != nil || len(salt) != infertrail.SaltSize {
			t.Fatalf("salt of %s: %v", field, err)
		}
		r.Commitments[field] = infertrail.Commitment(salt, v)

		// A commitment is SHA-256(salt || JCS(value)); the value's JCS form
		// does not depend on how it was written.
		c, err := infertrail.Canonicalize(v)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(append(append([]byte{}, salt...), c...))
		if got := "sha256:" + hex.EncodeToString(sum[:]); got != r.Commitments[field] {
			t.Errorf("%s: commitment %s, recomputed %s", field, r.Commitments[field], got)
		}
	}
	leaf := r.AppendLeaf(nil)

	back, err := infertrail.ParseLeaf(leaf)
	if err != nil {
		t.Fatalf("ParseLeaf: %v", err)
	}
	if back.Seq != docsLeafSeq || back.Tenant != "acme" || len(back.Content) != 0 {
		t.Errorf("ParseLeaf: seq %d, tenant %q, %d content fields", back.Seq, back.Tenant, len(back.Content))
	}
	if err := docsValidate(docsSchema(t, "leaf.schema.json"), leaf); err != nil {
		t.Errorf("leaf.schema.json: %v", err)
	}
	if err := docsValidate(docsSchema(t, "record.schema.json"), leaf); err == nil {
		t.Errorf("record.schema.json accepts a leaf, which carries server-set fields")
	}

	h := sha256.Sum256(append([]byte{0x00}, leaf...))
	leafHash := hex.EncodeToString(h[:])
	t.Logf("leaf: %s", leaf)
	t.Logf("leaf hash: %s", leafHash)
	doc, err := os.ReadFile(filepath.Join("docs", "records.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{string(leaf), leafHash, r.Commitments["gen_ai.input.messages"], r.Commitments["gen_ai.output.messages"]} {
		if !strings.Contains(string(doc), want) {
			t.Errorf("docs/records.md does not quote %s", want)
		}
	}
}

// TestDocsBadRecords checks that the schema refuses what ParseRecord refuses.
func TestDocsBadRecords(t *testing.T) {
	schema := docsSchema(t, "record.schema.json")
	ok := `"kind":"tool_call","id":"0193a5b0-7c1e-7000-8000-000000000005"`
	for _, tc := range []struct{ name, rec string }{
		{"unknown field", `{` + ok + `,"prompt":"hello"}`},
		{"missing kind", `{"id":"0193a5b0-7c1e-7000-8000-000000000005"}`},
		{"wrong kind", `{"kind":"prompt"}`},
		{"kind in upper case", `{"kind":"Inference"}`},
		{"trace id in upper case", `{` + ok + `,"trace_id":"4BF92F3577B34DA6A3CE929D0E0E4736"}`},
		{"trace id all zero", `{` + ok + `,"trace_id":"00000000000000000000000000000000"}`},
		{"trace id too short", `{` + ok + `,"trace_id":"4bf92f3577b34da6"}`},
		{"span id all zero", `{` + ok + `,"span_id":"0000000000000000"}`},
		{"server-set seq", `{` + ok + `,"seq":7}`},
		{"server-set received_time", `{` + ok + `,"received_time":"2026-11-26T10:00:00Z"}`},
		{"server-set source", `{` + ok + `,"source":"ingest"}`},
		{"server-set schema_version", `{` + ok + `,"schema_version":1}`},
		{"server-set commitments", `{` + ok + `,"commitments":{}}`},
		{"nil uuid", `{"kind":"tool_call","id":"00000000-0000-0000-0000-000000000000"}`},
		{"uuid without hyphens", `{"kind":"tool_call","id":"0193a5b07c1e70008000000000000005"}`},
		{"time without zone", `{` + ok + `,"time":"2026-11-26T10:00:00"}`},
		{"time before 1970", `{` + ok + `,"time":"1969-12-31T23:59:59Z"}`},
		{"tenant starting with a dot", `{` + ok + `,"tenant":".acme"}`},
		{"empty tenant", `{` + ok + `,"tenant":""}`},
		{"empty session id", `{` + ok + `,"session_id":""}`},
		{"control character in actor id", `{` + ok + `,"actor":{"id":"agent:\tbot"}}`},
		{"unknown actor member", `{` + ok + `,"actor":{"name":"bot"}}`},
		{"actor not an object", `{` + ok + `,"actor":"agent:bot"}`},
		{"link without id", `{` + ok + `,"links":[{"rel":"answers"}]}`},
		{"link rel in upper case", `{` + ok + `,"links":[{"rel":"Answers","id":"0193a5b0-7c1e-7000-8000-000000000001"}]}`},
		{"link with an extra member", `{` + ok + `,"links":[{"rel":"answers","id":"0193a5b0-7c1e-7000-8000-000000000001","seq":3}]}`},
		{"65 links", `{` + ok + `,"links":[` + strings.Repeat(`{"rel":"follows","id":"0193a5b0-7c1e-7000-8000-000000000001"},`, 64) + `{"rel":"follows","id":"0193a5b0-7c1e-7000-8000-000000000001"}]}`},
		{"attributes not an object", `{` + ok + `,"attributes":["gen_ai.tool.name"]}`},
		{"empty attribute name", `{` + ok + `,"attributes":{"":1}}`},
		{"content not an object", `{` + ok + `,"content":"hello"}`},
		{"not an object", `["tool_call"]`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, _, err := infertrail.ParseRecord([]byte(tc.rec), infertrail.Limits{}); err == nil {
				t.Errorf("ParseRecord accepts %s", tc.rec)
			}
			if err := docsValidate(schema, []byte(tc.rec)); err == nil {
				t.Errorf("record.schema.json accepts %s", tc.rec)
			}
		})
	}
}

// TestDocsEdgeRecords checks that the schema accepts unusual records that
// ParseRecord accepts.
func TestDocsEdgeRecords(t *testing.T) {
	schema := docsSchema(t, "record.schema.json")
	for _, tc := range []struct{ name, rec string }{
		{"kind only", `{"kind":"access"}`},
		{"upper-case id", `{"kind":"access","id":"0193A5B0-7C1E-7000-8000-00000000000A"}`},
		{"time with an offset", `{"kind":"access","time":"2026-11-26T11:00:00.5+01:00"}`},
		{"empty actor, links, attributes and content", `{"kind":"access","actor":{},"links":[],"attributes":{},"content":{}}`},
		{"128-character tenant", `{"kind":"access","tenant":"` + strings.Repeat("a", 128) + `"}`},
		{"tenant with dots and dashes", `{"kind":"access","tenant":"eu-1.acme_corp"}`},
		{"null and nested values", `{"kind":"access","attributes":{"a":null,"b":[1,{"c":true}]},"content":{"d":null}}`},
		{"non-ASCII text", `{"kind":"access","session_id":"séance-42","actor":{"id":"agent:会計"}}`},
		{"64 links", `{"kind":"access","links":[` + strings.TrimSuffix(strings.Repeat(`{"rel":"reads","id":"0193a5b0-7c1e-7000-8000-000000000001"},`, 64), ",") + `]}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, _, err := infertrail.ParseRecord([]byte(tc.rec), infertrail.Limits{}); err != nil {
				t.Errorf("ParseRecord: %v", err)
			}
			if err := docsValidate(schema, []byte(tc.rec)); err != nil {
				t.Errorf("record.schema.json: %v", err)
			}
		})
	}
}
