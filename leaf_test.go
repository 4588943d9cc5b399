package infertrail_test

import (
	"encoding/json"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/infertrail/infertrail"
)

// checkLeafAgrees fails unless CheckLeaf and ParseLeaf both accept leaf, with
// the same fields, or both refuse it.
func checkLeafAgrees(tb testing.TB, leaf []byte) (accepted bool) {
	tb.Helper()
	var f infertrail.LeafFields
	// A used LeafFields must not leak into the next leaf's.
	f.Commitments = append(f.Commitments, infertrail.FieldCommitment{Field: "stale", Sum: "stale"})
	f.ActorID, f.SessionID = "stale", "stale"
	err := infertrail.CheckLeaf(leaf, &f)
	r, perr := infertrail.ParseLeaf(leaf)
	switch {
	case err != nil && perr != nil:
		// CheckLeaf's error is ParseLeaf's, but which of several faults
		// ParseLeaf names may change from call to call.
		return false
	case err != nil:
		tb.Fatalf("CheckLeaf(%q) = %v, but ParseLeaf accepts it", leaf, err)
	case perr != nil:
		tb.Fatalf("CheckLeaf(%q) accepts it, but ParseLeaf says %v", leaf, perr)
	}
	want := infertrail.LeafFields{
		Seq: r.Seq, ID: r.ID, Tenant: r.Tenant, Kind: r.Kind, Time: r.Time.UnixNano(), Received: r.ReceivedTime.UnixNano(),
		SessionID: r.SessionID, TraceID: r.TraceID, ActorID: r.Actor.ID,
	}
	for _, k := range slices.SortedFunc(maps.Keys(r.Commitments), infertrail.CompareKeys) {
		want.Commitments = append(want.Commitments, infertrail.FieldCommitment{Field: k, Sum: r.Commitments[k]})
	}
	got := f
	got.Commitments, want.Commitments = slices.Clip(got.Commitments), slices.Clip(want.Commitments)
	if len(got.Commitments) == 0 {
		got.Commitments = nil
	}
	if !equalLeafFields(got, want) {
		tb.Fatalf("CheckLeaf(%q) gives\n%+v\nParseLeaf gives\n%+v", leaf, got, want)
	}
	for k, v := range r.Commitments {
		if s, ok := f.Commitment(k); !ok || s != v {
			tb.Fatalf("CheckLeaf(%q).Commitment(%q) = %q, %v; want %q", leaf, k, s, ok, v)
		}
	}
	return true
}

func equalLeafFields(a, b infertrail.LeafFields) bool {
	return a.Seq == b.Seq && a.ID == b.ID && a.Tenant == b.Tenant && a.Kind == b.Kind && a.Time == b.Time &&
		a.Received == b.Received && a.SessionID == b.SessionID && a.TraceID == b.TraceID && a.ActorID == b.ActorID &&
		slices.Equal(a.Commitments, b.Commitments)
}

// leafCases are leaves for CheckLeaf to agree with ParseLeaf on: good
// ones, and each way a leaf can be bad that ParseLeaf checks.
func leafCases(tb testing.TB) map[string]string {
	tb.Helper()
	r, _ := mustParse(tb, exampleRecord)
	sealRecord(tb, r)
	r.Links = []infertrail.Link{{Rel: "answers", ID: mustUUID(tb, otherID)}}
	r.ParentSpanID = "00f067aa0ba902b8"
	leaf := string(r.AppendLeaf(nil))
	member := func(key, raw string) string { return leafMember(tb, leaf, key, raw) }
	canonical := func(v string) string {
		c, err := infertrail.Canonicalize([]byte(v))
		if err != nil {
			tb.Fatal(err)
		}
		return string(c)
	}
	minimal := &infertrail.Record{Kind: infertrail.KindAccess}
	sealRecord(tb, minimal)
	full := &infertrail.Record{
		Seq: 1<<53 - 1, ID: mustUUID(tb, otherID), Kind: infertrail.KindToolCall,
		Time: time.Date(1970, 1, 1, 0, 0, 0, 1, time.UTC), ReceivedTime: time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC),
		Tenant: "t_1.x-y", Source: "é\"😀",
		Actor: infertrail.Actor{ID: "a\u2028\"\\é😀", Type: "workload", OnBehalfOf: "user:bob", Workload: "spiffe://x/y",
			CredentialFingerprint: "fp:1"},
		SessionID: "s\\\"", TraceID: "0123456789abcdef0123456789abcdef", SpanID: "0123456789abcdef", ParentSpanID: "fedcba9876543210",
		Links:       []infertrail.Link{{Rel: "answers", ID: mustUUID(tb, exampleID)}, {Rel: "governs_2", ID: mustUUID(tb, otherID)}},
		Attributes:  map[string]json.RawMessage{"\ue000": json.RawMessage(`1`), "😀": json.RawMessage(`[]`), "a": json.RawMessage(`{"b":null}`)},
		Commitments: map[string]string{"\U0001F600": sum("1"), "\ufb2a": sum("2"), "x\"y": sum("3")},
	}
	commitment := `"sha256:` + strings.Repeat("ab", 32) + `"`
	cases := map[string]string{
		"example":                   leaf,
		"minimal":                   string(minimal.AppendLeaf(nil)),
		"full":                      string(full.AppendLeaf(nil)),
		"another commitment":        member("commitments", `{"x":`+commitment+`}`),
		"seq 0":                     member("seq", "0"),
		"time without fraction":     member("time", `"2026-11-26T10:00:00Z"`),
		"empty":                     ``,
		"brace":                     `{`,
		"empty object":              `{}`,
		"leading space":             " " + leaf,
		"trailing space":            leaf + " ",
		"space after a colon":       strings.Replace(leaf, `"seq":41`, `"seq": 41`, 1),
		"unsorted members":          `{"kind":"inference",` + strings.Replace(leaf[1:], `"kind":"inference",`, "", 1),
		"escaped solidus":           strings.Replace(leaf, `user:alice@acme.example`, `user:alice\/acme`, 1),
		"escaped name":              strings.Replace(leaf, `"kind"`, `"kin\u0064"`, 1),
		"content present":           member("content", `{"x":1}`),
		"missing id":                member("id", ""),
		"missing kind":              member("kind", ""),
		"missing time":              member("time", ""),
		"missing received_time":     member("received_time", ""),
		"missing tenant":            member("tenant", ""),
		"missing seq":               member("seq", ""),
		"missing source":            member("source", ""),
		"missing schema_version":    member("schema_version", ""),
		"schema_version 2":          member("schema_version", "2"),
		"schema_version string":     member("schema_version", `"1"`),
		"schema_version 1.0":        member("schema_version", "1.0"),
		"seq negative":              member("seq", "-1"),
		"seq minus zero":            member("seq", "-0"),
		"seq fraction":              member("seq", "1.5"),
		"seq string":                member("seq", `"41"`),
		"seq non-canonical":         member("seq", "41.0"),
		"seq exponent":              member("seq", "1e3"),
		"seq 1e20":                  member("seq", "100000000000000000000"),
		"seq past int64":            member("seq", "1e+300"),
		"commitment without prefix": member("commitments", `{"x":"`+strings.Repeat("ab", 32)+`"}`),
		"commitment upper case":     member("commitments", `{"x":"sha256:`+strings.Repeat("AB", 32)+`"}`),
		"commitment short":          member("commitments", `{"x":"sha256:`+strings.Repeat("ab", 31)+`"}`),
		"commitment not a string":   member("commitments", `{"x":1}`),
		"commitment empty name":     member("commitments", `{"":`+commitment+`}`),
		"commitment control name":   member("commitments", `{"\u0001":`+commitment+`}`),
		"commitment long name":      member("commitments", `{"`+strings.Repeat("n", 257)+`":`+commitment+`}`),
		"commitment 256-byte name":  member("commitments", `{"`+strings.Repeat("n", 256)+`":`+commitment+`}`),
		"commitments not an object": member("commitments", `[`+commitment+`]`),
		"commitments empty":         member("commitments", `{}`),
		"attributes empty":          member("attributes", `{}`),
		"attributes array":          member("attributes", `[1]`),
		"attributes 256":            member("attributes", canonical(manyMembers(256, func(int) string { return "1" }))),
		"attributes 257":            member("attributes", canonical(manyMembers(257, func(int) string { return "1" }))),
		"attribute 16 KiB":          member("attributes", `{"a":"`+strings.Repeat("x", 16<<10-2)+`"}`),
		"attribute past 16 KiB":     member("attributes", `{"a":"`+strings.Repeat("x", 16<<10-1)+`"}`),
		"attribute control name":    member("attributes", `{"a\u007f":1}`),
		"actor empty":               member("actor", `{}`),
		"actor unknown member":      member("actor", `{"id":"a","zzz":"b"}`),
		"actor empty id":            member("actor", `{"id":""}`),
		"actor id not a string":     member("actor", `{"id":1}`),
		"actor control":             member("actor", `{"type":"a\tb"}`),
		"actor without id":          member("actor", `{"type":"agent"}`),
		"actor not an object":       member("actor", `"a"`),
		"links empty":               member("links", `[]`),
		"links 64":                  member("links", canonical(manyLinks(64))),
		"links 65":                  member("links", canonical(manyLinks(65))),
		"link upper-case id":        member("links", `[{"id":"0193A5B0-7C1E-7000-8000-000000000001","rel":"answers"}]`),
		"link nil id":               member("links", `[{"id":"00000000-0000-0000-0000-000000000000","rel":"answers"}]`),
		"link without rel":          member("links", `[{"id":"`+otherID+`"}]`),
		"link extra member":         member("links", `[{"id":"`+otherID+`","rel":"answers","x":1}]`),
		"link bad rel":              member("links", `[{"id":"`+otherID+`","rel":"Answers"}]`),
		"link not an object":        member("links", `["`+otherID+`"]`),
		"links not an array":        member("links", `{"id":"`+otherID+`","rel":"answers"}`),
		"upper-case id":             member("id", `"0193A5B0-7C1E-7000-8000-000000000001"`),
		"nil id":                    member("id", `"00000000-0000-0000-0000-000000000000"`),
		"id not a string":           member("id", `1`),
		"time with offset":          member("time", `"2026-11-26T11:00:00.123456+01:00"`),
		"time with trailing zeros":  member("time", `"2026-11-26T10:00:00.123456000Z"`),
		"lower-case z":              member("time", `"2026-11-26T10:00:00.123456z"`),
		"time before 1970":          member("time", `"1969-12-31T23:59:59Z"`),
		"time 24:00":                member("time", `"2026-11-26T24:00:00Z"`),
		"time February 30":          member("time", `"2026-02-30T10:00:00Z"`),
		"received_time with offset": member("received_time", `"2026-11-26T11:00:00.13+01:00"`),
		"received_time a number":    member("received_time", `1`),
		"empty source":              member("source", `""`),
		"source control":            member("source", `"a\u0000"`),
		"source 65 bytes":           member("source", `"`+strings.Repeat("s", 65)+`"`),
		"session empty":             member("session_id", `""`),
		"session control":           member("session_id", `"a\nb"`),
		"session 1025 bytes":        member("session_id", `"`+strings.Repeat("s", 1025)+`"`),
		"session 1024 bytes":        member("session_id", `"`+strings.Repeat("s", 1024)+`"`),
		"tenant bad":                member("tenant", `"-acme"`),
		"tenant empty":              member("tenant", `""`),
		"kind unknown":              member("kind", `"inferences"`),
		"kind a number":             member("kind", `1`),
		"trace_id zero":             member("trace_id", `"`+strings.Repeat("0", 32)+`"`),
		"trace_id upper case":       member("trace_id", `"4BF92F3577B34DA6A3CE929D0E0E4736"`),
		"trace_id short":            member("trace_id", `"00f067aa0ba902b7"`),
		"span_id long":              member("span_id", `"4bf92f3577b34da6a3ce929d0e0e4736"`),
		"parent_span_id empty":      member("parent_span_id", `""`),
		"unknown member":            member("zzz", `1`),
		"unknown control member":    member("\u0001", `1`),
		"not an object":             `[` + leaf + `]`,
		"a string":                  `"leaf"`,
		"two leaves":                leaf + leaf,
	}
	return cases
}

func sum(s string) string { return infertrail.Commitment([]byte("salt"), []byte(s)) }

func TestCheckLeafAgreesWithParseLeaf(t *testing.T) {
	good := 0
	for name, leaf := range leafCases(t) {
		t.Run(name, func(t *testing.T) {
			if checkLeafAgrees(t, []byte(leaf)) {
				good++
			}
		})
	}
	if good < 10 {
		t.Errorf("only %d good leaves among the cases", good)
	}
}

// TestCheckLeafReusesCommitments checks that CheckLeaf reuses its Commitments.
func TestCheckLeafReusesCommitments(t *testing.T) {
	leaf := []byte(leafCases(t)["full"])
	var f infertrail.LeafFields
	if err := infertrail.CheckLeaf(leaf, &f); err != nil {
		t.Fatal(err)
	}
	first := &f.Commitments[0]
	if err := infertrail.CheckLeaf(leaf, &f); err != nil {
		t.Fatal(err)
	}
	if &f.Commitments[0] != first {
		t.Errorf("CheckLeaf did not reuse the Commitments of f")
	}
}

// FuzzCheckLeaf checks that CheckLeaf accepts exactly what ParseLeaf
// accepts, and extracts the same fields.
func FuzzCheckLeaf(f *testing.F) {
	for _, leaf := range leafCases(f) {
		f.Add([]byte(leaf))
	}
	f.Fuzz(func(t *testing.T, leaf []byte) {
		checkLeafAgrees(t, leaf)
	})
}
