package obligation_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/infertrail/infertrail"
	"github.com/infertrail/infertrail/policy/obligation"
)

var secret = []byte("0123456789abcdef0123456789abcdef")

func raws(ss ...string) []json.RawMessage {
	out := make([]json.RawMessage, len(ss))
	for i, s := range ss {
		out[i] = json.RawMessage(s)
	}
	return out
}

func TestParse(t *testing.T) {
	s, err := obligation.Parse(infertrail.PointInferenceRequest, raws(`{"redact":"prompt"}`, `{"redact":"metadata.customer","detectors":["email","secret"]}`))
	if err != nil || len(s.Redact) != 2 || s.Redact[1].Field != "metadata.customer" || len(s.Redact[1].Detectors) != 2 {
		t.Fatalf("%+v %v", s, err)
	}
	for _, c := range []struct {
		point infertrail.PolicyPoint
		obl   string
		want  string
	}{
		{infertrail.PointInferenceRequest, `"redact"`, "want an object"},
		{infertrail.PointInferenceRequest, `{"notify":"secops"}`, "not one InferTrail can carry out"},
		{infertrail.PointInferenceRequest, `{"redact":"messages","mode":"x"}`, `unknown member "mode"`},
		{infertrail.PointInferenceRequest, `{"redact":7}`, "must be a field path"},
		{infertrail.PointInferenceRequest, `{"redact":"messages..x"}`, "not a dotted field path"},
		{infertrail.PointInferenceRequest, `{"redact":"arguments"}`, "must start with one of"},
		{infertrail.PointInferenceRequest, `{"redact":"prompt.x"}`, "has no members"},
		{infertrail.PointToolCall, `{"redact":"messages"}`, "must start with one of arguments"},
		{infertrail.PointInferenceResponse, `{"redact":"response","detectors":"pii"}`, "array of strings"},
	} {
		_, err := obligation.Parse(c.point, raws(c.obl))
		if err == nil || !errors.Is(err, infertrail.ErrInvalid) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s at %s: %v, want %q", c.obl, c.point, err, c.want)
		}
	}
}

func TestApply(t *testing.T) {
	rs := obligation.NewRedactors(secret, nil)
	doc := []byte(`{"model":"m","messages":[{"role":"user","content":"mail bob@example.com, key AKIAIOSFODNN7EXAMPLE"}],"metadata":{"customer":"alice@example.com","n":1}}`)
	out, a, err := rs.Apply(doc, []obligation.Redaction{{Field: "prompt", Detectors: []string{"email"}}, {Field: "metadata.customer"}})
	if err != nil {
		t.Fatal(err)
	}
	s := string(out)
	if strings.Contains(s, "bob@example.com") || strings.Contains(s, "alice@example.com") || !strings.Contains(s, "[redacted:email]") {
		t.Fatalf("not redacted: %s", s)
	}
	if !strings.Contains(s, "AKIAIOSFODNN7EXAMPLE") {
		t.Fatalf("the prompt redaction named only email, and the key went too: %s", s)
	}
	if !a.Changed() || len(a.Findings) != 2 {
		t.Fatalf("findings %+v", a.Findings)
	}
	var m map[string]any
	if err := json.Unmarshal(out, &m); err != nil || m["model"] != "m" {
		t.Fatalf("document %s: %v", out, err)
	}

	// Nothing found: the document itself; a missing path is no error.
	same, a, err := rs.Apply(doc, []obligation.Redaction{{Field: "system"}, {Field: "metadata.n.x"}})
	if err != nil || string(same) != string(doc) || a.Changed() {
		t.Fatalf("%s %+v %v", same, a, err)
	}
	if _, _, err := rs.Apply(doc, []obligation.Redaction{{Field: "messages", Detectors: []string{"no-such"}}}); err == nil || !strings.Contains(err.Error(), `"no-such"`) {
		t.Fatalf("unknown detector: %v", err)
	}
	if _, _, err := rs.Apply([]byte(`[1]`), []obligation.Redaction{{Field: "messages"}}); !errors.Is(err, infertrail.ErrInvalid) {
		t.Fatalf("not an object: %v", err)
	}
}

// TestApplyAmbiguous: a member on a redaction's path that is there twice,
// or in another case, is an error. encoding/json reads the last of two,
// and "IBAN" as "iban": masking the one found could forward the other.
func TestApplyAmbiguous(t *testing.T) {
	rs := obligation.NewRedactors(secret, nil)
	for doc, want := range map[string]string{
		`{"arguments":{"iban":"DE89370400440532013000","iban":"none"}}`:               `"iban" is there twice`,
		`{"arguments":{"IBAN":"DE89370400440532013000"}}`:                             `"iban" is there as "IBAN"`,
		`{"arguments":{"to":"x"},"Arguments":{"iban":"DE89370400440532013000"}}`:      `"arguments" is there as "Arguments"`,
		`{"arguments":{"iban":"DE89370400440532013000"},"arguments":{"iban":"none"}}`: `"arguments" is there twice`,
	} {
		_, _, err := rs.Apply([]byte(doc), []obligation.Redaction{{Field: "arguments.iban"}})
		if !errors.Is(err, infertrail.ErrInvalid) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %s", doc, err, want)
		}
	}
	// Other members may be anything; what is masked is found either way.
	out, a, err := rs.Apply([]byte(`{"arguments":{"memo":"a","Memo":"b","iban":"DE89370400440532013000"}}`), []obligation.Redaction{{Field: "arguments.iban"}})
	if err != nil || !a.Changed() || strings.Contains(string(out), "DE89370400440532013000") {
		t.Fatalf("%s %+v %v", out, a, err)
	}
}
