package redact

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"

	"github.com/infertrail/infertrail"
	"go.yaml.in/yaml/v3"
)

// Classes of detectors.
const (
	ClassSecret = "secret" // credentials: keys, tokens, passwords
	ClassPII    = "pii"    // personal data: email, phone, card, IBAN
)

// Anchors are the built-in candidate scanners a rule without keywords can
// name. A rule with neither keywords nor an anchor runs its regex over
// every string, which is slow.
const (
	AnchorDigits = "digits" // a run of at least min_digits digits, with up to two of " -.()/+" between them; not a date or the end of a time
	AnchorIBAN   = "iban"   // two capital letters and two digits at the start of a word
	AnchorToken  = "token"  // a run of at least 20 characters of [A-Za-z0-9+/=_-] mixing upper case, lower case and digits
)

// Defaults of the window around a keyword or anchor in which a rule's
// regex runs.
const (
	DefaultBefore = 64
	DefaultAfter  = 256
)

// Rule is one detector, as a rules file writes it. See docs/redaction.md.
type Rule struct {
	ID          string   `yaml:"id"`
	Class       string   `yaml:"class"`
	Description string   `yaml:"description"`
	Regex       string   `yaml:"regex"`
	Group       int      `yaml:"group"`
	Keywords    []string `yaml:"keywords"`
	Anchor      string   `yaml:"anchor"`
	MinDigits   int      `yaml:"min_digits"`
	Validator   string   `yaml:"validator"`
	Entropy     float64  `yaml:"entropy"`
	Names       string   `yaml:"names"`
	Allow       []string `yaml:"allow"`
	Action      Action   `yaml:"action"`
	Priority    int      `yaml:"priority"`
	Before      *int     `yaml:"before"`
	After       *int     `yaml:"after"`
}

// ruleFile is the shape of a rules file.
type ruleFile struct {
	Rules []Rule `yaml:"rules"`
}

// rule is a validated, compiled Rule.
type rule struct {
	Rule
	re            *regexp.Regexp
	names         *regexp.Regexp
	allow         []*regexp.Regexp
	valid         validator
	before, after int
}

// Rules is a validated set of detectors, ordered as they were loaded. It is
// immutable and safe for concurrent use.
type Rules struct {
	list []*rule
}

//go:embed rules/default.yaml
var defaultYAML []byte

var defaultRules = func() *Rules {
	rs, err := LoadRules(bytes.NewReader(defaultYAML))
	if err != nil {
		panic("redact: embedded rules/default.yaml: " + err.Error())
	}
	return rs
}()

// DefaultRules returns the embedded default rule set (rules/default.yaml).
func DefaultRules() *Rules { return defaultRules }

// IDs returns the detector ids of the set, in order.
func (rs *Rules) IDs() []string {
	ids := make([]string, len(rs.list))
	for i, r := range rs.list {
		ids[i] = r.ID
	}
	return ids
}

// Rules returns a copy of the rules of the set, in order.
func (rs *Rules) Rules() []Rule {
	out := make([]Rule, len(rs.list))
	for i, r := range rs.list {
		out[i] = r.Rule
	}
	return out
}

// Merge returns the rules of rs followed by those of extra; a rule of extra
// with the id of a rule of rs replaces it in place. Neither set changes.
func (rs *Rules) Merge(extra *Rules) *Rules {
	out := &Rules{list: slices.Clone(rs.list)}
	for _, r := range extra.list {
		if i := slices.IndexFunc(out.list, func(o *rule) bool { return o.ID == r.ID }); i >= 0 {
			out.list[i] = r
		} else {
			out.list = append(out.list, r)
		}
	}
	return out
}

// maxRules bounds a rules file, so that a typo cannot make every scan slow.
const maxRules = 512

// LoadRules reads a rules file (YAML, `rules:` followed by a list of rules)
// and validates and compiles every rule. Unknown fields are errors. The
// error names the rule by index and id, and the field.
func LoadRules(r io.Reader) (*Rules, error) {
	dec := yaml.NewDecoder(r)
	dec.KnownFields(true)
	var f ruleFile
	if err := dec.Decode(&f); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("load rules: empty file: %w", infertrail.ErrInvalid)
		}
		return nil, fmt.Errorf("load rules: %v: %w", err, infertrail.ErrInvalid)
	}
	if len(f.Rules) == 0 {
		return nil, fmt.Errorf("load rules: no rules: %w", infertrail.ErrInvalid)
	}
	if len(f.Rules) > maxRules {
		return nil, fmt.Errorf("load rules: %d rules, at most %d: %w", len(f.Rules), maxRules, infertrail.ErrInvalid)
	}
	rs := &Rules{}
	seen := map[string]bool{}
	for i, raw := range f.Rules {
		r, err := compileRule(raw)
		if err != nil {
			if raw.ID != "" {
				return nil, fmt.Errorf("load rules: rule %d (%s): %w", i, raw.ID, err)
			}
			return nil, fmt.Errorf("load rules: rule %d: %w", i, err)
		}
		if seen[r.ID] {
			return nil, fmt.Errorf("load rules: rule %d: duplicate id %q: %w", i, r.ID, infertrail.ErrInvalid)
		}
		seen[r.ID] = true
		rs.list = append(rs.list, r)
	}
	return rs, nil
}

// validID reports whether id can name a detector: it appears inside
// "[redacted:<id>]" markers, so it is lower-case letters, digits and '-'.
func validID(id string) bool {
	if id == "" || len(id) > 64 || id[0] == '-' {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

func ruleErr(format string, args ...any) error {
	return fmt.Errorf(format+": %w", append(args, infertrail.ErrInvalid)...)
}

// maxWindow bounds before and after.
const maxWindow = 1 << 20

func compileRule(raw Rule) (*rule, error) {
	r := &rule{Rule: raw}
	switch {
	case !validID(r.ID):
		return nil, ruleErr("id %q: want 1 to 64 lower-case letters, digits and '-'", r.ID)
	case r.ID == ClassSecret || r.ID == ClassPII:
		return nil, ruleErr("id %q: a class name cannot be a detector id", r.ID)
	case r.Class != ClassSecret && r.Class != ClassPII:
		return nil, ruleErr("class %q: want secret or pii", r.Class)
	case r.Regex == "":
		return nil, ruleErr("regex: missing")
	case r.Action != "" && !r.Action.valid():
		return nil, ruleErr("action %q: want keep, mask, fingerprint or drop", r.Action)
	case r.Entropy < 0 || r.Entropy > 8:
		return nil, ruleErr("entropy %v: want 0 to 8 bits per character", r.Entropy)
	case r.MinDigits < 0 || r.MinDigits > 64:
		return nil, ruleErr("min_digits %d: want 0 to 64", r.MinDigits)
	}
	var err error
	if r.re, err = regexp.Compile(r.Regex); err != nil {
		return nil, ruleErr("regex: %v", err)
	}
	if r.Group < 0 || r.Group > r.re.NumSubexp() {
		return nil, ruleErr("group %d: the regex has %d groups", r.Group, r.re.NumSubexp())
	}
	if r.Names != "" {
		if r.names, err = regexp.Compile(r.Names); err != nil {
			return nil, ruleErr("names: %v", err)
		}
	}
	for j, a := range r.Allow {
		re, err := regexp.Compile(a)
		if err != nil {
			return nil, ruleErr("allow[%d]: %v", j, err)
		}
		r.allow = append(r.allow, re)
	}
	for j, k := range r.Keywords {
		if k == "" || len(k) > 64 {
			return nil, ruleErr("keywords[%d] %q: want 1 to 64 bytes", j, k)
		}
		for i := 0; i < len(k); i++ {
			if c := k[i]; c < 0x20 || c >= 0x7f || c >= 'A' && c <= 'Z' {
				return nil, ruleErr("keywords[%d] %q: want lower-case printable ASCII", j, k)
			}
		}
	}
	switch r.Anchor {
	case "":
	case AnchorDigits:
		if r.MinDigits == 0 {
			r.MinDigits = 7
		}
	case AnchorIBAN, AnchorToken:
	default:
		return nil, ruleErr("anchor %q: want digits, iban or token", r.Anchor)
	}
	if r.Anchor != "" && len(r.Keywords) > 0 {
		return nil, ruleErr("anchor %q: a rule has keywords or an anchor, not both", r.Anchor)
	}
	if r.Validator != "" {
		v, ok := validators[r.Validator]
		if !ok {
			return nil, ruleErr("validator %q: want one of %s", r.Validator, strings.Join(validatorNames(), ", "))
		}
		r.valid = v
	}
	if r.Validator == "entropy" && r.Entropy == 0 {
		return nil, ruleErr("validator entropy: set entropy to the minimum bits per character")
	}
	r.before, r.after = DefaultBefore, DefaultAfter
	if r.Before != nil {
		r.before = *r.Before
	}
	if r.After != nil {
		r.after = *r.After
	}
	if r.before < 0 || r.before > maxWindow || r.after < 0 || r.after > maxWindow {
		return nil, ruleErr("before %d, after %d: want 0 to %d", r.before, r.after, maxWindow)
	}
	return r, nil
}
