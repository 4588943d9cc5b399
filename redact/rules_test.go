package redact_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/infertrail/infertrail"
	"github.com/infertrail/infertrail/redact"
)

func TestDefaultRules(t *testing.T) {
	ids := redact.DefaultRules().IDs()
	if len(ids) < 20 {
		t.Errorf("%d default rules: %v", len(ids), ids)
	}
	for _, r := range redact.DefaultRules().Rules() {
		if r.Description == "" || r.Priority == 0 {
			t.Errorf("rule %s: description and priority are required in the default rules", r.ID)
		}
	}
	// The embedded file is the one in the repository.
	src, err := os.ReadFile(filepath.Join("rules", "default.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	rs, err := redact.LoadRules(bytes.NewReader(src))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(rs.IDs(), ","); got != strings.Join(ids, ",") {
		t.Errorf("rules/default.yaml ids %s, embedded %s", got, strings.Join(ids, ","))
	}
}

func TestLoadRulesErrors(t *testing.T) {
	const ok = "    class: pii\n    regex: 'x'\n"
	for _, tc := range []struct {
		name, src, want string
	}{
		{"empty", ``, "empty"},
		{"no rules", "rules: []\n", "no rules"},
		{"unknown field", "rules:\n  - id: a\n" + ok + "    regx: 'y'\n", "regx"},
		{"bad id", "rules:\n  - id: Employee_ID\n" + ok, `id "Employee_ID"`},
		{"class as id", "rules:\n  - id: pii\n" + ok, `id "pii"`},
		{"bad class", "rules:\n  - id: a\n    class: personal\n    regex: 'x'\n", `class "personal"`},
		{"no regex", "rules:\n  - id: a\n    class: pii\n", "regex: missing"},
		{"bad regex", "rules:\n  - id: a\n    class: pii\n    regex: '(?<=x)y'\n", "rule 0 (a): regex"},
		{"group out of range", "rules:\n  - id: a\n" + ok + "    group: 2\n", "group 2"},
		{"upper-case keyword", "rules:\n  - id: a\n" + ok + "    keywords: [EMP]\n", `keywords[0] "EMP"`},
		{"unknown validator", "rules:\n  - id: a\n" + ok + "    validator: crc32\n", `validator "crc32"`},
		{"unknown anchor", "rules:\n  - id: a\n" + ok + "    anchor: words\n", `anchor "words"`},
		{"anchor and keywords", "rules:\n  - id: a\n" + ok + "    anchor: digits\n    keywords: [x]\n", "not both"},
		{"bad action", "rules:\n  - id: a\n" + ok + "    action: hide\n", `action "hide"`},
		{"bad entropy", "rules:\n  - id: a\n" + ok + "    entropy: 9\n", "entropy 9"},
		{"entropy validator without entropy", "rules:\n  - id: a\n" + ok + "    validator: entropy\n", "set entropy"},
		{"bad names", "rules:\n  - id: a\n" + ok + "    names: '('\n", "names"},
		{"bad allow", "rules:\n  - id: a\n" + ok + "    allow: ['[']\n", "allow[0]"},
		{"negative window", "rules:\n  - id: a\n" + ok + "    before: -1\n", "before -1"},
		{"duplicate", "rules:\n  - id: a\n" + ok + "  - id: a\n" + ok, `rule 1: duplicate id "a"`},
		{"not yaml", "rules: [", "load rules"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := redact.LoadRules(strings.NewReader(tc.src))
			if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, infertrail.ErrInvalid) {
				t.Errorf("LoadRules: %v, want an ErrInvalid containing %q", err, tc.want)
			}
		})
	}
}

// employeeRules is a user's extra rules file: an employee id, and a
// stricter email rule that replaces the default one.
const employeeRules = `
rules:
  - id: employee-id
    class: pii
    description: ACME employee number
    regex: '\bEMP-[0-9]{6}\b'
    keywords: [emp-]
    action: mask
    priority: 60
  - id: email
    class: pii
    description: email addresses at acme.example only
    regex: '[a-z.]+@acme\.example\b'
    keywords: ['@acme.example']
    action: drop
    priority: 50
`

func TestLoadRulesMerge(t *testing.T) {
	extra, err := redact.LoadRules(strings.NewReader(employeeRules))
	if err != nil {
		t.Fatal(err)
	}
	rs := redact.DefaultRules().Merge(extra)
	ids := rs.IDs()
	if n := len(redact.DefaultRules().IDs()) + 1; len(ids) != n || ids[len(ids)-1] != "employee-id" {
		t.Errorf("merged ids %v, want the defaults and employee-id last", ids)
	}
	r := newRedactor(t, redact.Config{FingerprintSecret: testSecret, Rules: rs})
	s, fs := r.String("f", "Ticket for EMP-004211 from bob@other.example")
	if s != "Ticket for [redacted:employee-id] from bob@other.example" || len(fs) != 1 {
		t.Errorf("String = %q, %+v", s, fs)
	}
	out, fs, err := r.Redact("f", chatJSON("cc alice@acme.example"))
	if err != nil || out != nil || len(fs) != 1 || fs[0].Action != redact.Drop {
		t.Errorf("Redact = %s, %+v, %v; want the field dropped", out, fs, err)
	}
	// Only the extra rules: nothing else is detected.
	r = newRedactor(t, redact.Config{Rules: extra})
	if _, fs := r.String("f", fakeGitHub+" EMP-000001"); len(fs) != 1 || fs[0].Detector != "employee-id" {
		t.Errorf("with only the extra rules: %+v", fs)
	}
}

func FuzzLoadRules(f *testing.F) {
	src, err := os.ReadFile(filepath.Join("rules", "default.yaml"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(src)
	f.Add([]byte(employeeRules))
	f.Add([]byte("rules:\n  - id: a\n    class: pii\n    regex: 'a+'\n    anchor: token\n"))
	f.Add([]byte("rules:\n  - id: a\n    class: secret\n    regex: '(x)'\n    group: 1\n    keywords: ['x']\n    names: 'x'\n"))
	f.Fuzz(func(t *testing.T, src []byte) {
		rs, err := redact.LoadRules(bytes.NewReader(src))
		if err != nil {
			if !errors.Is(err, infertrail.ErrInvalid) {
				t.Fatalf("error %v is not ErrInvalid", err)
			}
			return
		}
		r, err := redact.New(redact.Config{Rules: rs, Actions: map[string]redact.Action{"secret": redact.Mask, "pii": redact.Mask}})
		if err != nil {
			return // such as names without keywords
		}
		for _, s := range []string{"", "x", "a@b.example", "4248 5877 5897 4927 " + fakeGitHub, string(src)} {
			out, _, err := r.Redact("f", chatJSON(s))
			if err != nil {
				t.Fatalf("Redact: %v", err)
			}
			if out != nil {
				checkCanonical(t, out)
			}
			r.String("f", s)
		}
	})
}
