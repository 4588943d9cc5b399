package redact

import (
	"cmp"
	"encoding/json"
	"fmt"
	"maps"
	"slices"

	"github.com/infertrail/infertrail"
)

// fieldFindings are the findings of one field of a record: group 0 an
// attribute (key its name), 1 a metadata string (ord its place), 2 a
// content field (key its name).
type fieldFindings struct {
	group, ord int
	key        string
	fs         []Finding
}

// Profile is a capture profile: what of a record's content is kept.
type Profile string

// Capture profiles.
const (
	// Minimal keeps metadata and commitments: content is committed in the
	// leaf but not stored.
	Minimal Profile = "minimal"
	// Standard stores content encrypted, with every detector on.
	Standard Profile = "standard"
	// Forensic stores content encrypted and in full: secrets are still
	// redacted, personal data is kept.
	Forensic Profile = "forensic"
)

// ProfileAttribute is the record attribute through which a capture path
// (an LLM gateway route) chooses the profile of its records. Native ingest
// refuses it from clients.
const ProfileAttribute = "capture.profile"

// FindingsAttribute is the record attribute that lists what redaction found.
const FindingsAttribute = "redaction.findings"

// ParseProfile checks a profile name.
func ParseProfile(s string) (Profile, error) {
	switch p := Profile(s); p {
	case Minimal, Standard, Forensic:
		return p, nil
	case "":
		return Standard, nil
	}
	return "", fmt.Errorf("capture profile %q: want minimal, standard or forensic: %w", s, infertrail.ErrInvalid)
}

// CaptureConfig configures a Capture.
type CaptureConfig struct {
	Redaction Config
	Profile   Profile            // default Standard
	Tenants   map[string]Profile // per-tenant profiles
}

// Capture applies a tenant's capture profile and redaction to records
// before they are hashed or stored (ledger.Config.Capture). It is safe for
// concurrent use.
type Capture struct {
	profile            Profile
	tenants            map[string]Profile
	standard, forensic *Redactor
	// meta runs the secret detectors only, on metadata: identifiers such as
	// actor.on_behalf_of are expected to name people, and attributes carry
	// model names, ids and counts.
	meta *Redactor
}

// NewCapture validates cfg and builds the redactors the profiles use.
func NewCapture(cfg CaptureConfig) (*Capture, error) {
	c := &Capture{profile: cfg.Profile, tenants: cfg.Tenants}
	if c.profile == "" {
		c.profile = Standard
	}
	if _, err := ParseProfile(string(c.profile)); err != nil {
		return nil, err
	}
	for t, p := range cfg.Tenants {
		if _, err := ParseProfile(string(p)); err != nil {
			return nil, fmt.Errorf("tenant %q: %w", t, err)
		}
	}
	var err error
	if c.standard, err = New(cfg.Redaction); err != nil {
		return nil, err
	}
	// Forensic keeps personal data: every PII detector's action is keep,
	// whatever the configuration says; secrets are handled as configured.
	f := cfg.Redaction
	f.Actions = maps.Clone(f.Actions)
	if f.Actions == nil {
		f.Actions = map[string]Action{}
	}
	f.Fields = nil
	rules := f.Rules
	if rules == nil {
		rules = DefaultRules()
	}
	for _, r := range rules.Rules() {
		if r.Class == ClassPII {
			f.Actions[r.ID] = Keep
		}
	}
	f.Actions[ClassPII] = Keep
	for field, acts := range cfg.Redaction.Fields {
		keep := map[string]Action{}
		for k, a := range acts {
			if k != ClassPII && !slices.ContainsFunc(rules.Rules(), func(r Rule) bool { return r.ID == k && r.Class == ClassPII }) {
				keep[k] = a
			}
		}
		if len(keep) > 0 {
			if f.Fields == nil {
				f.Fields = map[string]map[string]Action{}
			}
			f.Fields[field] = keep
		}
	}
	if c.forensic, err = New(f); err != nil {
		return nil, err
	}
	m := cfg.Redaction
	m.Fields = nil
	m.Disable = slices.Clone(m.Disable)
	for _, r := range rules.Rules() {
		if r.Class == ClassPII && !slices.Contains(m.Disable, r.ID) {
			m.Disable = append(m.Disable, r.ID)
		}
	}
	m.Actions = map[string]Action{}
	for k, a := range cfg.Redaction.Actions {
		if k != ClassPII && !slices.ContainsFunc(rules.Rules(), func(r Rule) bool { return r.ID == k && r.Class == ClassPII }) {
			m.Actions[k] = a
		}
	}
	if c.meta, err = New(m); err != nil {
		return nil, err
	}
	return c, nil
}

// ProfileOf returns the profile of a tenant.
func (c *Capture) ProfileOf(tenant string) Profile {
	if p, ok := c.tenants[tenant]; ok {
		return p
	}
	return c.profile
}

// Apply redacts r in place: its content fields with every detector, and
// with the secret detectors the metadata written in clear into the leaf
// (attribute values, session id, actor fields), where a secret could
// otherwise never be erased. It records what
// fired in the attribute redaction.findings (detector, field, count and
// action: never a value). It returns whether the content is to be stored.
func (c *Capture) Apply(r *infertrail.Record) (store bool, err error) {
	p := c.ProfileOf(r.Tenant)
	if v, ok := r.Attributes[ProfileAttribute]; ok {
		var name string
		if err := json.Unmarshal(v, &name); err != nil {
			return false, fmt.Errorf("attribute %s: %w", ProfileAttribute, infertrail.ErrInvalid)
		}
		rp, err := ParseProfile(name)
		if err != nil {
			return false, err
		}
		p = rp
	}
	red := c.standard
	if p == Forensic {
		red = c.forensic
	}
	// Fields are redacted in map order; their findings are put in a fixed
	// order at the end (attributes by name, the metadata strings, content
	// fields by name), which sorts only the fields that had any.
	var found []fieldFindings
	redactMap := func(m map[string]json.RawMessage, red *Redactor, prefix, what string, group int) error {
		for f, v := range m {
			out, fs, err := red.Redact(prefix+f, v)
			if err != nil {
				return fmt.Errorf("redact %s %s: %w", what, f, err)
			}
			if out == nil {
				delete(m, f)
			} else {
				m[f] = out
			}
			if len(fs) > 0 {
				found = append(found, fieldFindings{group: group, key: f, fs: fs})
			}
		}
		return nil
	}
	if err := redactMap(r.Attributes, c.meta, "attributes.", "attribute", 0); err != nil {
		return false, err
	}
	for i, s := range []struct {
		name string
		v    *string
	}{{"session_id", &r.SessionID}, {"actor.id", &r.Actor.ID}, {"actor.on_behalf_of", &r.Actor.OnBehalfOf}, {"actor.workload", &r.Actor.Workload}} {
		if *s.v == "" {
			continue
		}
		v, fs := c.meta.String(s.name, *s.v)
		*s.v = v
		if len(fs) > 0 {
			found = append(found, fieldFindings{group: 1, ord: i, fs: fs})
		}
	}
	// Minimal content is redacted too: its commitments are stored, and a
	// commitment to a guessable secret could be checked against guesses.
	if err := redactMap(r.Content, red, "", "content field", 2); err != nil {
		return false, err
	}
	slices.SortFunc(found, func(a, b fieldFindings) int {
		return cmp.Or(cmp.Compare(a.group, b.group), cmp.Compare(a.ord, b.ord), cmp.Compare(a.key, b.key))
	})
	var all []Finding
	for _, f := range found {
		all = append(all, f.fs...)
	}
	if len(all) > 0 {
		b, err := json.Marshal(all)
		if err != nil {
			return false, err
		}
		if b, err = infertrail.Canonicalize(b); err != nil {
			return false, err
		}
		if r.Attributes == nil {
			r.Attributes = map[string]json.RawMessage{}
		}
		r.Attributes[FindingsAttribute] = b
	}
	if p != Standard {
		if r.Attributes == nil {
			r.Attributes = map[string]json.RawMessage{}
		}
		r.Attributes[ProfileAttribute] = infertrail.AppendString(nil, string(p))
	}
	return p != Minimal, nil
}
