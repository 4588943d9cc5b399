package redact_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/infertrail/infertrail"
	"github.com/infertrail/infertrail/redact"
	"go.yaml.in/yaml/v3"
)

// testSecret keys fingerprints in tests.
var testSecret = []byte("infertrail-test-fingerprint-secret-0123456789")

type corpusCase struct {
	Name    string         `yaml:"name"`
	Field   string         `yaml:"field"`
	Text    *string        `yaml:"text"`
	JSON    string         `yaml:"json"`
	Want    map[string]int `yaml:"want"`
	Out     *string        `yaml:"out"`
	Secrets []string       `yaml:"secrets"`
}

func loadCorpus(tb testing.TB) []corpusCase {
	tb.Helper()
	src, err := os.ReadFile(filepath.Join("testdata", "corpus.yaml"))
	if err != nil {
		tb.Fatal(err)
	}
	var f struct {
		Cases []corpusCase `yaml:"cases"`
	}
	dec := yaml.NewDecoder(bytes.NewReader(src))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		tb.Fatalf("testdata/corpus.yaml: %v", err)
	}
	return f.Cases
}

// chat wraps text as one user message, as the capture path records it.
func chat(text string) []byte {
	return infertrail.AppendString([]byte(`[{"parts":[{"content":`), text)
}

func chatJSON(text string) []byte { return append(chat(text), `,"type":"text"}],"role":"user"}]`...) }

// value is the canonical content value of a corpus case.
func (c corpusCase) value(tb testing.TB) []byte {
	tb.Helper()
	if c.Text != nil {
		return chatJSON(*c.Text)
	}
	v, err := infertrail.Canonicalize([]byte(c.JSON))
	if err != nil {
		tb.Fatalf("%s: json: %v", c.Name, err)
	}
	return v
}

func (c corpusCase) field() string {
	if c.Field == "" {
		return "gen_ai.input.messages"
	}
	return c.Field
}

func counts(fs []redact.Finding) map[string]int {
	m := map[string]int{}
	for _, f := range fs {
		m[f.Detector] += f.Count
	}
	return m
}

func sameCounts(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func newRedactor(tb testing.TB, cfg redact.Config) *redact.Redactor {
	tb.Helper()
	r, err := redact.New(cfg)
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	return r
}

func maskAll(tb testing.TB) *redact.Redactor {
	return newRedactor(tb, redact.Config{Actions: map[string]redact.Action{"secret": redact.Mask, "pii": redact.Mask}})
}

// checkCanonical fails unless out is canonical JSON.
func checkCanonical(tb testing.TB, out []byte) {
	tb.Helper()
	again, err := infertrail.Canonicalize(out)
	if err != nil {
		tb.Fatalf("output %q is not JSON: %v", out, err)
	}
	if !bytes.Equal(again, out) {
		tb.Fatalf("output is not canonical:\n got %s\nwant %s", out, again)
	}
}

// checkAbsent fails if secret, raw or as JSON escapes it, is in b.
func checkAbsent(tb testing.TB, what string, b []byte, secret string) {
	tb.Helper()
	esc := string(infertrail.AppendString(nil, secret))
	esc = esc[1 : len(esc)-1]
	if bytes.Contains(b, []byte(secret)) || bytes.Contains(b, []byte(esc)) {
		tb.Errorf("%s contains the secret %q:\n%s", what, secret, b)
	}
}

func TestCorpus(t *testing.T) {
	cases := loadCorpus(t)
	if len(cases) < 80 {
		t.Errorf("corpus has %d cases, want at least 80", len(cases))
	}
	masking := maskAll(t)
	defaults := newRedactor(t, redact.Config{FingerprintSecret: testSecret})
	seen := map[string]bool{}
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			if seen[c.Name] {
				t.Fatalf("duplicate case name")
			}
			seen[c.Name] = true
			want := c.Want
			if want == nil {
				want = map[string]int{}
			}
			v := c.value(t)
			out, fs, err := masking.Redact(c.field(), v)
			if err != nil {
				t.Fatalf("Redact: %v", err)
			}
			if got := counts(fs); !sameCounts(got, want) {
				t.Errorf("findings %v, want %v", got, want)
			}
			for _, f := range fs {
				if f.Field != c.field() || f.Action != redact.Mask || f.Count < 1 {
					t.Errorf("finding %+v: want field %s, action mask", f, c.field())
				}
			}
			checkCanonical(t, out)
			if len(want) == 0 && !bytes.Equal(out, v) {
				t.Errorf("nothing found but the value changed:\n%s\n%s", v, out)
			}
			fj, _ := json.Marshal(fs)
			for _, s := range c.Secrets {
				checkAbsent(t, "output", out, s)
				checkAbsent(t, "findings", fj, s)
			}
			if c.Out != nil {
				if c.Text != nil {
					if wantOut := chatJSON(*c.Out); !bytes.Equal(out, wantOut) {
						t.Errorf("output\n got %s\nwant %s", out, wantOut)
					}
				} else {
					wantOut, err := infertrail.Canonicalize([]byte(*c.Out))
					if err != nil {
						t.Fatalf("out: %v", err)
					}
					if !bytes.Equal(out, wantOut) {
						t.Errorf("output\n got %s\nwant %s", out, wantOut)
					}
				}
			}
			// Redacting the output again finds nothing.
			if again, fs2, err := masking.Redact(c.field(), out); err != nil || len(fs2) != 0 || !bytes.Equal(again, out) {
				t.Errorf("second pass: %v, findings %v, output %s", err, fs2, again)
			}
			if c.Text != nil {
				s, fs := masking.String(c.field(), *c.Text)
				if got := counts(fs); !sameCounts(got, want) {
					t.Errorf("String: findings %v, want %v", got, want)
				}
				if c.Out != nil && s != *c.Out {
					t.Errorf("String:\n got %q\nwant %q", s, *c.Out)
				}
			}
			// The default actions: same detections, canonical, idempotent.
			dout, dfs, err := defaults.Redact(c.field(), v)
			if err != nil {
				t.Fatalf("Redact with defaults: %v", err)
			}
			if got := counts(dfs); !sameCounts(got, want) {
				t.Errorf("defaults: findings %v, want %v", got, want)
			}
			checkCanonical(t, dout)
			_, dfs2, _ := defaults.Redact(c.field(), dout)
			for _, f := range dfs2 {
				if f.Action != redact.Keep {
					t.Errorf("defaults: second pass finds %+v", f)
				}
			}
			for _, f := range dfs {
				if f.Class == redact.ClassSecret {
					for _, s := range c.Secrets {
						checkAbsent(t, "default output", dout, s)
					}
				}
			}
		})
	}
}

// TestCorpusCoversEveryDetector checks that each default detector has a
// true positive in the corpus.
func TestCorpusCoversEveryDetector(t *testing.T) {
	found := map[string]bool{}
	for _, c := range loadCorpus(t) {
		for id := range c.Want {
			found[id] = true
		}
	}
	for _, id := range redact.DefaultRules().IDs() {
		if !found[id] {
			t.Errorf("no corpus case finds %s", id)
		}
	}
}

// TestDocsListEveryDetector keeps docs/redaction.md in step with the
// default rules.
func TestDocsListEveryDetector(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "docs", "redaction.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range redact.DefaultRules().Rules() {
		row := "| `" + r.ID + "` | " + r.Class + " |"
		if !strings.Contains(string(doc), row) {
			t.Errorf("docs/redaction.md has no table row starting %q", row)
		}
	}
}
