package investigate

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/infertrail/infertrail"
)

var t0 = time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)

// world is a tenant's records, numbered in order, that the detectors'
// lookups search with the same index keys the engine posts.
type world struct {
	recs []*infertrail.Record
}

func (w *world) add(r *infertrail.Record) *infertrail.Record {
	r.Seq = int64(len(w.recs))
	if r.ID.IsZero() {
		r.ID = infertrail.NewUUID()
	}
	if r.Tenant == "" {
		r.Tenant = "acme"
	}
	if r.Time.IsZero() {
		r.Time = t0.Add(time.Duration(r.Seq) * time.Second)
	}
	w.recs = append(w.recs, r)
	return r
}

func (w *world) lookup(_ context.Context, tenant string, kinds []infertrail.Kind, keys ...string) ([]*infertrail.Record, error) {
	var out []*infertrail.Record
	for _, r := range w.recs {
		if r.Tenant != tenant || len(kinds) > 0 && !slices.Contains(kinds, r.Kind) {
			continue
		}
		have := LeafPostings(r)
		if !slices.ContainsFunc(keys, func(k string) bool { return !slices.Contains(have, k) }) {
			out = append(out, r)
		}
	}
	return out, nil
}

func (w *world) detect(t *testing.T, subject string, now time.Time, cfg DetectConfig) []infertrail.Finding {
	t.Helper()
	f, v, _ := infertrail.SplitIndexKey(subject)
	var recs []*infertrail.Record
	for _, r := range w.recs {
		if f == "trace" && r.TraceID == v || f == "session" && r.SessionID == v {
			recs = append(recs, r)
		}
	}
	fs, err := Detect(t.Context(), NewGroup(subject, recs), w.lookup, cfg, now)
	if err != nil {
		t.Fatal(err)
	}
	return fs
}

func attrs(kv ...string) map[string]json.RawMessage {
	m := map[string]json.RawMessage{}
	for i := 0; i < len(kv); i += 2 {
		m[kv[i]] = json.RawMessage(strconv.Quote(kv[i+1]))
	}
	return m
}

func commits(fields ...string) map[string]string {
	m := map[string]string{}
	for _, f := range fields {
		m[f] = "sha256:00"
	}
	return m
}

const trace = "4bf92f3577b34da6a3ce929d0e0e4736"

var agent = infertrail.Actor{ID: "agent:ops"}

// inference adds a complete inference (request and response records) that
// asks for the given tool calls.
func (w *world) inference(model string, calls ...ToolCallRequest) *infertrail.Record {
	req := w.add(&infertrail.Record{Kind: infertrail.KindInference, TraceID: trace, SessionID: "s1", Actor: agent,
		Attributes: attrs("infertrail.phase", "request", "gen_ai.request.model", model), Commitments: commits("gen_ai.input.messages")})
	a := attrs("infertrail.phase", "response", "gen_ai.response.model", model)
	if len(calls) > 0 {
		b, _ := json.Marshal(calls)
		a["gen_ai.response.tool_calls"] = b
	}
	return w.add(&infertrail.Record{Kind: infertrail.KindInference, TraceID: trace, SessionID: "s1", Actor: agent,
		Links: []infertrail.Link{{Rel: "answers", ID: req.ID}}, Attributes: a, Commitments: commits("gen_ai.output.messages")})
}

// toolCall adds an executed tool call (request and response records).
func (w *world) toolCall(name, callID string) (req, resp *infertrail.Record) {
	a := attrs("infertrail.phase", "request", "gen_ai.tool.name", name)
	if callID != "" {
		a["gen_ai.tool.call.id"] = json.RawMessage(strconv.Quote(callID))
	}
	req = w.add(&infertrail.Record{Kind: infertrail.KindToolCall, TraceID: trace, SessionID: "s1", Actor: agent, SpanID: "00f067aa0ba902b7", Attributes: a})
	b := attrs("infertrail.phase", "response", "gen_ai.tool.name", name)
	resp = w.add(&infertrail.Record{Kind: infertrail.KindToolCall, TraceID: trace, SessionID: "s1", Actor: agent, SpanID: "00f067aa0ba902b7",
		Links: []infertrail.Link{{Rel: "answers", ID: req.ID}}, Attributes: b})
	return req, resp
}

func (w *world) decision(result string, governs *infertrail.Record) *infertrail.Record {
	return w.add(&infertrail.Record{Kind: infertrail.KindPolicyDecision, TraceID: trace, SessionID: "s1",
		Links: []infertrail.Link{{Rel: "governs", ID: governs.ID}}, Attributes: attrs("policy.result", result)})
}

func detectors(fs []infertrail.Finding) []string {
	var out []string
	for _, f := range fs {
		out = append(out, f.Detector)
	}
	slices.Sort(out)
	return out
}

var later = t0.Add(time.Hour)

func TestDetectCleanTrace(t *testing.T) {
	w := &world{}
	w.inference("gpt-4o-2024-08-06", ToolCallRequest{ID: "call_1", Name: "pay"})
	req, _ := w.toolCall("pay", "call_1")
	w.decision("allow", req)
	if fs := w.detect(t, "trace="+trace, later, DetectConfig{}); len(fs) != 0 {
		t.Fatalf("findings on a clean trace: %+v", fs)
	}
}

func TestDetectHallucinatedToolCall(t *testing.T) {
	w := &world{}
	w.inference("gpt-4o", ToolCallRequest{ID: "call_1", Name: "pay"}, ToolCallRequest{ID: "call_2", Name: "refund"})
	req, _ := w.toolCall("pay", "call_1")
	w.decision("allow", req)
	// Within the window nothing is judged yet.
	if fs := w.detect(t, "trace="+trace, t0.Add(time.Minute), DetectConfig{}); len(fs) != 0 {
		t.Fatalf("findings within the window: %+v", fs)
	}
	fs := w.detect(t, "trace="+trace, later, DetectConfig{})
	if got := detectors(fs); !slices.Equal(got, []string{HallucinatedToolCall}) {
		t.Fatalf("detectors = %v, want hallucinated_tool_call: %+v", got, fs)
	}
	if !slices.Equal(fs[0].Records, []int64{0, 1}) {
		t.Errorf("records = %v, want the inference's [0 1]", fs[0].Records)
	}
	// An execution in another trace, found by the tool call id, clears it.
	w.add(&infertrail.Record{Kind: infertrail.KindToolCall, TraceID: "0af7651916cd43dd8448eb211c80319c",
		Attributes: attrs("gen_ai.tool.name", "refund", "gen_ai.tool.call.id", "call_2")})
	if fs := w.detect(t, "trace="+trace, later, DetectConfig{}); slices.Contains(detectors(fs), HallucinatedToolCall) {
		t.Errorf("still hallucinated after the execution arrived: %+v", fs)
	}
}

func TestDetectUnattributedAction(t *testing.T) {
	w := &world{}
	w.inference("gpt-4o", ToolCallRequest{ID: "call_1", Name: "deploy"})
	req, _ := w.toolCall("deploy", "call_1")
	w.decision("allow", req)
	// A downstream call made by the tool execution (its parent span) is
	// attributed; one with no cause is not.
	w.add(&infertrail.Record{Kind: infertrail.KindDownstreamCall, TraceID: trace, ParentSpanID: "00f067aa0ba902b7",
		Attributes: attrs("url.full", "https://deploy.internal/api/releases")})
	stray := w.add(&infertrail.Record{Kind: infertrail.KindDownstreamCall, TraceID: trace,
		Attributes: attrs("url.full", "https://payments.internal/transfer")})
	fs := w.detect(t, "trace="+trace, later, DetectConfig{})
	if got := detectors(fs); !slices.Equal(got, []string{UnattributedAction}) {
		t.Fatalf("detectors = %v: %+v", got, fs)
	}
	if !slices.Equal(fs[0].Records, []int64{stray.Seq}) {
		t.Errorf("records = %v, want [%d]", fs[0].Records, stray.Seq)
	}
}

func TestDetectPolicyGap(t *testing.T) {
	for _, tc := range []struct {
		name    string
		result  string // "" for no decision
		approve bool
		want    []string
		sev     infertrail.Severity
	}{
		{"no decision", "", false, []string{PolicyGap}, infertrail.SeverityMedium},
		{"despite deny", "deny", false, []string{PolicyGap}, infertrail.SeverityHigh},
		{"approval missing", "require_approval", false, []string{PolicyGap}, infertrail.SeverityHigh},
		{"approved", "require_approval", true, nil, ""},
		{"allowed", "allow", false, nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := &world{}
			w.inference("gpt-4o", ToolCallRequest{ID: "call_1", Name: "pay"})
			req, _ := w.toolCall("pay", "call_1")
			if tc.result != "" {
				d := w.decision(tc.result, req)
				if tc.approve {
					w.add(&infertrail.Record{Kind: infertrail.KindApproval, TraceID: trace,
						Links: []infertrail.Link{{Rel: "answers", ID: d.ID}}, Attributes: attrs("approval.decision", "approved")})
				}
			}
			fs := w.detect(t, "trace="+trace, later, DetectConfig{})
			if got := detectors(fs); !slices.Equal(got, tc.want) {
				t.Fatalf("detectors = %v, want %v: %+v", got, tc.want, fs)
			}
			if len(fs) > 0 && fs[0].Severity != tc.sev {
				t.Errorf("severity = %s, want %s", fs[0].Severity, tc.sev)
			}
		})
	}
}

func TestDetectCredentialMisuse(t *testing.T) {
	const fp = "hmac-sha256:3f9a"
	w := &world{}
	w.add(&infertrail.Record{Kind: infertrail.KindCredential, SessionID: "vault", Actor: infertrail.Actor{ID: "vault", CredentialFingerprint: fp},
		Attributes: attrs("credential.event", "issued", "credential.subject", "agent:ops", "credential.expiry_time", t0.Add(time.Hour).Format(time.RFC3339))})
	w.inference("gpt-4o", ToolCallRequest{ID: "call_1", Name: "deploy"})
	req, _ := w.toolCall("deploy", "call_1")
	w.decision("allow", req)
	use := func(actor string, at time.Time) *infertrail.Record {
		return w.add(&infertrail.Record{Kind: infertrail.KindDownstreamCall, TraceID: trace, ParentSpanID: "00f067aa0ba902b7", Time: at,
			Actor: infertrail.Actor{ID: actor, CredentialFingerprint: fp}, Attributes: attrs("url.full", "https://deploy.internal/")})
	}
	use("agent:ops", t0.Add(10*time.Second))
	if fs := w.detect(t, "trace="+trace, later, DetectConfig{}); len(fs) != 0 {
		t.Fatalf("findings for a proper use: %+v", fs)
	}
	revoked := w.add(&infertrail.Record{Kind: infertrail.KindCredential, SessionID: "vault", Time: t0.Add(20 * time.Second),
		Actor: infertrail.Actor{ID: "vault", CredentialFingerprint: fp}, Attributes: attrs("credential.event", "revoked")})
	replay := use("agent:ops", t0.Add(30*time.Second))
	other := use("agent:intruder", t0.Add(15*time.Second))
	late := use("agent:ops", t0.Add(2*time.Hour))
	fs := w.detect(t, "trace="+trace, later.Add(2*time.Hour), DetectConfig{})
	var got [][]int64
	for _, f := range fs {
		if f.Detector == CredentialMisuse {
			got = append(got, f.Records)
		}
	}
	want := [][]int64{{revoked.Seq, replay.Seq}, {0, other.Seq}, {revoked.Seq, late.Seq}}
	for _, w := range want {
		slices.Sort(w)
		if !slices.ContainsFunc(got, func(g []int64) bool { return slices.Equal(g, w) }) {
			t.Errorf("no credential_misuse finding on records %v; got %v", w, got)
		}
	}
}

func TestDetectModelDrift(t *testing.T) {
	w := &world{}
	w.inference("gpt-4o-2024-08-06")
	w.inference("gpt-4o-2024-08-06")
	w.inference("gpt-4o-2024-11-20")
	fs := w.detect(t, "session=s1", later, DetectConfig{})
	if got := detectors(fs); !slices.Equal(got, []string{ModelDrift}) {
		t.Fatalf("detectors = %v: %+v", got, fs)
	}
	if !slices.Equal(fs[0].Records, []int64{2, 3, 4, 5}) {
		t.Errorf("records = %v, want the two inferences around the change", fs[0].Records)
	}
	fs = w.detect(t, "session=s1", later, DetectConfig{ApprovedModels: []string{"gpt-4o-2024-08-*"}})
	if n := len(fs); n != 2 {
		t.Errorf("with an approved list: %d findings, want the change and the unapproved model: %+v", n, fs)
	}
}

func TestDetectIncompleteRecord(t *testing.T) {
	w := &world{}
	// An inference recorded as an ordinary application log would: a model
	// name asked for, no prompt, no response, no identity.
	w.add(&infertrail.Record{Kind: infertrail.KindInference, TraceID: trace, Attributes: attrs("gen_ai.request.model", "gpt-4o")})
	fs := w.detect(t, "trace="+trace, later, DetectConfig{})
	if got := detectors(fs); !slices.Equal(got, []string{IncompleteRecord}) {
		t.Fatalf("detectors = %v: %+v", got, fs)
	}
	if want := "an inference was recorded without its prompt, response, model version, caller identity"; fs[0].Summary != want {
		t.Errorf("summary = %q, want %q", fs[0].Summary, want)
	}
	// Disabled detectors do not run.
	if fs := w.detect(t, "trace="+trace, later, DetectConfig{Disabled: []string{IncompleteRecord}}); len(fs) != 0 {
		t.Errorf("disabled detector ran: %+v", fs)
	}
}

func TestFindingIDsAreStable(t *testing.T) {
	w := &world{}
	w.add(&infertrail.Record{Kind: infertrail.KindInference, TraceID: trace, SessionID: "s1"})
	a := w.detect(t, "trace="+trace, later, DetectConfig{})
	b := w.detect(t, "session=s1", later.Add(time.Hour), DetectConfig{})
	if len(a) != 1 || len(b) != 1 || a[0].ID != b[0].ID {
		t.Fatalf("the same finding from a trace and a session has ids %v and %v", a, b)
	}
}

func TestDetectConfigValidate(t *testing.T) {
	if err := (DetectConfig{Disabled: []string{"nope"}}).Validate(); err == nil {
		t.Error("an unknown detector is accepted")
	}
	if err := (DetectConfig{ApprovedModels: []string{"["}}).Validate(); err == nil {
		t.Error("a bad pattern is accepted")
	}
}

func TestWords(t *testing.T) {
	got := Words("Pay 1,500 EUR to alice@acme.example — call_7f3a! a", 100)
	want := []string{"pay", "1,500", "500", "eur", "to", "alice@acme.example", "alice", "acme", "example", "call_7f3a", "call", "7f3a"}
	if !slices.Equal(got, want) {
		t.Errorf("Words = %q, want %q", got, want)
	}
}

// TestTermKeys pins a word's index key: "term=" and the first 12 bytes,
// in hex, of HMAC-SHA256 under the search key derived from the secret,
// the same whether one key is asked for or many with one HMAC reused.
func TestTermKeys(t *testing.T) {
	secret := bytes.Repeat([]byte{7}, 32)
	terms, err := NewTerms(secret)
	if err != nil {
		t.Fatal(err)
	}
	d := hmac.New(sha256.New, secret)
	d.Write([]byte("infertrail search terms v1"))
	words := []string{"pay", "invoice", "alice@acme.example", "pay"}
	var want []string
	for _, w := range words {
		m := hmac.New(sha256.New, d.Sum(nil))
		m.Write([]byte(w))
		want = append(want, infertrail.IndexKey(infertrail.IndexTerm, hex.EncodeToString(m.Sum(nil)[:12])))
	}
	for i, w := range words {
		if got := terms.Key(w); got != want[i] {
			t.Errorf("Key(%q) = %s, want %s", w, got, want[i])
		}
	}
	parts := []string{terms.Key("alice"), terms.Key("acme"), terms.Key("example")}
	if got, want := terms.QueryKeys(strings.Join(words, " ")), append(want[:3:3], parts...); !slices.Equal(got, want) {
		t.Errorf("QueryKeys = %q, want %q", got, want)
	}
	e := &infertrail.Entry{Seq: 9, Content: []infertrail.ContentRef{{Field: "messages", Key: infertrail.KeyID{1}}}}
	ps := terms.ContentPostings(e, map[string]json.RawMessage{"messages": json.RawMessage(`["pay invoice", {"to": "alice@acme.example", "again": "pay"}]`)})
	var got []string
	for _, p := range ps {
		if p.Seq != 9 || p.DataKey != (infertrail.KeyID{1}) {
			t.Errorf("posting %+v: want seq 9 and the field's data key", p)
		}
		got = append(got, p.Key)
	}
	// Object member names are words too.
	wantPostings := append([]string{want[0], want[1], want[2], terms.Key("to"), terms.Key("again")}, parts...)
	slices.Sort(got)
	slices.Sort(wantPostings)
	if !slices.Equal(got, wantPostings) {
		t.Errorf("ContentPostings keys = %q, want %q", got, wantPostings)
	}
}
