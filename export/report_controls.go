package export

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

//go:embed controls.yaml
var defaultControls []byte

// Controls maps the controls of regulations and frameworks to the report's
// evidence, with the organisation-defined parameters the report checks
// against. LoadControls reads it from a YAML file (export/controls.yaml is
// the default).
type Controls struct {
	Parameters Parameters
	Controls   []Control
}

// Control is one control and the report evidence that bears on it.
type Control struct {
	ID          string // such as "AU-9" or "EU-AI-ACT-12"
	Framework   string // such as "NIST SP 800-53 Rev. 5"
	Title       string
	Description string
	Evidence    []Evidence
}

// Evidence names a report section, or one metric of it.
type Evidence struct {
	Section string // such as "integrity"
	Metric  string // such as "gaps"; empty for the section's headline metrics
}

func (e Evidence) String() string {
	if e.Metric == "" {
		return e.Section
	}
	return e.Section + "." + e.Metric
}

// Parameters are the organisation-defined values a report checks against.
// Zero values mean the defaults.
type Parameters struct {
	// CheckpointMaxWait is the longest a record may wait for a signed
	// checkpoint (default 5m).
	CheckpointMaxWait Duration `json:"checkpoint_max_wait_seconds"`
	// ClockSkew is the largest clock difference not flagged, and the
	// margin used to find a period's records (default 2m).
	ClockSkew Duration `json:"clock_skew_seconds"`
	// MinRetention is how long records must be kept (default 183 days).
	MinRetention Duration `json:"min_retention_seconds"`
	// LongLivedCredential is the credential lifetime above which a
	// credential counts as long-lived (default 24h).
	LongLivedCredential Duration `json:"long_lived_credential_seconds"`
}

func (p Parameters) withDefaults() Parameters {
	def := func(d *Duration, v time.Duration) {
		if *d <= 0 {
			*d = Duration(v)
		}
	}
	def(&p.CheckpointMaxWait, 5*time.Minute)
	def(&p.ClockSkew, 2*time.Minute)
	def(&p.MinRetention, 183*24*time.Hour)
	def(&p.LongLivedCredential, 24*time.Hour)
	return p
}

// Duration is a time.Duration that is seconds in JSON and a duration
// string, with a "d" suffix for days, in YAML and text.
type Duration time.Duration

func (d Duration) ns() int64 { return int64(d) }

// Seconds returns the duration in seconds.
func (d Duration) Seconds() float64 { return time.Duration(d).Seconds() }

// Hours returns the duration in hours.
func (d Duration) Hours() float64 { return time.Duration(d).Hours() }

// String formats whole days as "183d", and other durations as
// time.Duration does.
func (d Duration) String() string {
	if d > 0 && time.Duration(d)%(24*time.Hour) == 0 {
		return strconv.FormatInt(int64(time.Duration(d)/(24*time.Hour)), 10) + "d"
	}
	return time.Duration(d).String()
}

// MarshalJSON encodes the duration in seconds.
func (d Duration) MarshalJSON() ([]byte, error) {
	return strconv.AppendFloat(nil, d.Seconds(), 'f', -1, 64), nil
}

// UnmarshalJSON decodes seconds.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var f float64
	if err := json.Unmarshal(b, &f); err != nil {
		return err
	}
	if f < 0 || f > math.MaxInt64/1e9 {
		return fmt.Errorf("duration of %v seconds is out of range", f)
	}
	*d = Duration(f * 1e9)
	return nil
}

// ParseDuration parses a Go duration ("90s", "15m", "24h") or a whole
// number of days ("183d").
func ParseDuration(s string) (Duration, error) {
	s = strings.TrimSpace(s)
	if n, ok := strings.CutSuffix(s, "d"); ok {
		days, err := strconv.ParseInt(n, 10, 64)
		if err != nil || days < 0 || days > math.MaxInt64/int64(24*time.Hour) {
			return 0, fmt.Errorf("duration %q: want a whole number of days, such as 183d", s)
		}
		return Duration(time.Duration(days) * 24 * time.Hour), nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("duration %q: want a duration such as 90s, 15m, 24h or 183d", s)
	}
	if d < 0 {
		return 0, fmt.Errorf("duration %q is negative", s)
	}
	return Duration(d), nil
}

// LoadControls reads a control mapping from the YAML file at path, or the
// built-in default (export/controls.yaml) when path is empty. An error
// names the file, the line and the field at fault.
func LoadControls(path string) (Controls, error) {
	name, b := "controls.yaml (built in)", defaultControls
	if path != "" {
		var err error
		if b, err = os.ReadFile(path); err != nil {
			return Controls{}, fmt.Errorf("read controls: %w", err)
		}
		name = path
	}
	return parseControls(name, b)
}

// yamlError is an error at a line of a controls file.
type yamlError struct {
	file string
	line int
	msg  string
}

func (e *yamlError) Error() string { return fmt.Sprintf("%s:%d: %s", e.file, e.line, e.msg) }

func parseControls(file string, b []byte) (Controls, error) {
	errAt := func(n *yaml.Node, format string, args ...any) error {
		return &yamlError{file: file, line: n.Line, msg: fmt.Sprintf(format, args...)}
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return Controls{}, fmt.Errorf("%s: %w", file, err)
	}
	if len(doc.Content) == 0 {
		return Controls{}, fmt.Errorf("%s: empty file; want version, parameters and controls", file)
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return Controls{}, errAt(root, "want a mapping with version, parameters and controls")
	}
	var out Controls
	seen := map[string]bool{}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		if seen[k.Value] {
			return Controls{}, errAt(k, "%s: given twice", k.Value)
		}
		seen[k.Value] = true
		switch k.Value {
		case "version":
			if v.Kind != yaml.ScalarNode || v.Value != "1" {
				return Controls{}, errAt(v, "version: %q is not supported; want 1", v.Value)
			}
		case "parameters":
			if err := parseParameters(v, &out.Parameters, errAt); err != nil {
				return Controls{}, err
			}
		case "controls":
			if v.Kind != yaml.SequenceNode {
				return Controls{}, errAt(v, "controls: want a list of controls")
			}
			ids := map[string]int{}
			for _, cn := range v.Content {
				c, err := parseControl(cn, errAt)
				if err != nil {
					return Controls{}, err
				}
				if line, dup := ids[c.ID]; dup {
					return Controls{}, errAt(cn, "control %q: its id is used already at line %d", c.ID, line)
				}
				ids[c.ID] = cn.Line
				out.Controls = append(out.Controls, c)
			}
		default:
			return Controls{}, errAt(k, "unknown field %q; want version, parameters or controls", k.Value)
		}
	}
	if !seen["version"] {
		return Controls{}, errAt(root, "version: missing; want version: 1")
	}
	if out.Controls == nil {
		out.Controls = []Control{}
	}
	out.Parameters = out.Parameters.withDefaults()
	return out, nil
}

func parseParameters(n *yaml.Node, p *Parameters, errAt func(*yaml.Node, string, ...any) error) error {
	if n.Kind != yaml.MappingNode {
		return errAt(n, "parameters: want a mapping of names to durations")
	}
	fields := map[string]*Duration{
		"checkpoint_max_wait":   &p.CheckpointMaxWait,
		"clock_skew":            &p.ClockSkew,
		"min_retention":         &p.MinRetention,
		"long_lived_credential": &p.LongLivedCredential,
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		dst, ok := fields[k.Value]
		if !ok {
			return errAt(k, "parameters: unknown parameter %q; want checkpoint_max_wait, clock_skew, min_retention or long_lived_credential", k.Value)
		}
		if v.Kind != yaml.ScalarNode {
			return errAt(v, "parameters.%s: want a duration such as 15m or 183d", k.Value)
		}
		d, err := ParseDuration(v.Value)
		if err != nil {
			return errAt(v, "parameters.%s: %v", k.Value, err)
		}
		if d == 0 {
			return errAt(v, "parameters.%s: must be more than zero", k.Value)
		}
		*dst = d
	}
	return nil
}

func parseControl(n *yaml.Node, errAt func(*yaml.Node, string, ...any) error) (Control, error) {
	var c Control
	if n.Kind != yaml.MappingNode {
		return c, errAt(n, "controls: each control is a mapping with id, framework, title, description and evidence")
	}
	var evidence *yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		var dst *string
		switch k.Value {
		case "id":
			dst = &c.ID
		case "framework":
			dst = &c.Framework
		case "title":
			dst = &c.Title
		case "description":
			dst = &c.Description
		case "evidence":
			evidence = v
			continue
		default:
			return c, errAt(k, "control: unknown field %q; want id, framework, title, description or evidence", k.Value)
		}
		if v.Kind != yaml.ScalarNode {
			return c, errAt(v, "control field %s: want text", k.Value)
		}
		*dst = strings.TrimSpace(v.Value)
	}
	what := "control"
	if c.ID != "" {
		what = fmt.Sprintf("control %q", c.ID)
	}
	for _, f := range []struct{ name, v string }{{"id", c.ID}, {"framework", c.Framework}, {"title", c.Title}} {
		if f.v == "" {
			return c, errAt(n, "%s: %s is missing", what, f.name)
		}
	}
	if evidence == nil || evidence.Kind != yaml.SequenceNode || len(evidence.Content) == 0 {
		at := n
		if evidence != nil {
			at = evidence
		}
		return c, errAt(at, "%s: evidence: want a list of sections or section.metric names, such as integrity or integrity.gaps", what)
	}
	for _, en := range evidence.Content {
		if en.Kind != yaml.ScalarNode {
			return c, errAt(en, "%s: evidence: want a section or section.metric name", what)
		}
		sec, metric, _ := strings.Cut(en.Value, ".")
		ms, ok := reportMetrics[sec]
		if !ok {
			return c, errAt(en, "%s: evidence %q: unknown section %q; want one of %s", what, en.Value, sec, strings.Join(sectionNames, ", "))
		}
		if metric != "" && findMetric(ms, metric) == nil {
			names := make([]string, len(ms))
			for i, m := range ms {
				names[i] = m.name
			}
			return c, errAt(en, "%s: evidence %q: section %s has no metric %q; want one of %s", what, en.Value, sec, metric, strings.Join(names, ", "))
		}
		c.Evidence = append(c.Evidence, Evidence{Section: sec, Metric: metric})
	}
	return c, nil
}

// ControlResult is one control as a report evaluated it.
type ControlResult struct {
	ID          string `json:"id"`
	Framework   string `json:"framework"`
	Title       string `json:"title"`
	Description string `json:"description"`
	// Status is the most pressing status among the evidence's sections.
	Status   string           `json:"status"`
	Evidence []EvidenceResult `json:"evidence"`
}

// EvidenceResult is one metric that evidences a control.
type EvidenceResult struct {
	Section string `json:"section"`
	Metric  string `json:"metric"`
	Label   string `json:"label"`
	Value   string `json:"value"`
	Status  string `json:"status"` // the section's status
}

// ApplyControls evaluates controls against the report's sections and sets
// r.Controls. The sections do not change: a report fetched from a server
// can be evaluated against a local mapping.
func (r *Report) ApplyControls(c Controls) {
	r.Controls = make([]ControlResult, 0, len(c.Controls))
	for _, ctl := range c.Controls {
		cr := ControlResult{ID: ctl.ID, Framework: ctl.Framework, Title: ctl.Title, Description: ctl.Description,
			Status: StatusOK, Evidence: []EvidenceResult{}}
		for _, ev := range ctl.Evidence {
			ms := reportMetrics[ev.Section]
			status := r.section(ev.Section).Status
			if statusRank(status) > statusRank(cr.Status) {
				cr.Status = status
			}
			var pick []metricDef
			if ev.Metric == "" {
				for _, m := range ms {
					if m.headline {
						pick = append(pick, m)
					}
				}
			} else if m := findMetric(ms, ev.Metric); m != nil {
				pick = append(pick, *m)
			}
			for _, m := range pick {
				cr.Evidence = append(cr.Evidence, EvidenceResult{Section: ev.Section, Metric: m.name, Label: m.label,
					Value: m.value(r), Status: status})
			}
		}
		r.Controls = append(r.Controls, cr)
	}
}

// section returns the status part of a section by name.
func (r *Report) section(name string) *SectionStatus {
	s := &r.Sections
	switch name {
	case "volume":
		return &s.Volume.SectionStatus
	case "completeness":
		return &s.Completeness.SectionStatus
	case "timestamps":
		return &s.Timestamps.SectionStatus
	case "integrity":
		return &s.Integrity.SectionStatus
	case "findings":
		return &s.Findings.SectionStatus
	case "agency":
		return &s.Agency.SectionStatus
	case "identities":
		return &s.Identities.SectionStatus
	case "retention":
		return &s.Retention.SectionStatus
	case "access":
		return &s.Access.SectionStatus
	}
	return &SectionStatus{}
}

// metricDef is a named value of a report section.
type metricDef struct {
	name     string
	label    string
	headline bool // shown when evidence names the section alone
	value    func(r *Report) string
}

func findMetric(ms []metricDef, name string) *metricDef {
	for i := range ms {
		if ms[i].name == name {
			return &ms[i]
		}
	}
	return nil
}

// sectionNames lists the report's sections in the order they are shown.
var sectionNames = []string{"volume", "completeness", "timestamps", "integrity", "findings", "agency", "identities", "retention", "access"}

// sectionTitles are the sections' headings.
var sectionTitles = map[string]string{
	"volume":       "Volume",
	"completeness": "Completeness of inference records",
	"timestamps":   "Time stamps",
	"integrity":    "Checkpoint continuity",
	"findings":     "Findings",
	"agency":       "Agency: tools, policy and approvals",
	"identities":   "Non-human identities",
	"retention":    "Retention and erasure",
	"access":       "Access to the evidence",
}

func fmtNum(n int64) string { return formatInt(n) }

func fmtShare(f float64) string { return strconv.FormatFloat(f*100, 'f', 2, 64) + "%" }

func fmtSecs(f float64) string {
	return (time.Duration(f * 1e9)).Round(time.Second).String()
}

func fmtCounts(cs []Count) string {
	if len(cs) == 0 {
		return "none"
	}
	parts := make([]string, 0, len(cs))
	for _, c := range cs {
		parts = append(parts, c.Value+" "+formatInt(c.Count))
	}
	return strings.Join(parts, ", ")
}

// formatInt writes n with thousands separators.
func formatInt(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// reportMetrics are the metrics controls can name, by section.
var reportMetrics = map[string][]metricDef{
	"volume": {
		{"records", "Records received in the period", true, func(r *Report) string { return fmtNum(r.Sections.Volume.Records) }},
		{"by_kind", "Records by kind", true, func(r *Report) string {
			var nz []Count
			for _, c := range r.Sections.Volume.ByKind {
				if c.Count > 0 {
					nz = append(nz, c)
				}
			}
			return fmtCounts(nz)
		}},
		{"tenants", "Tenants", false, func(r *Report) string { return fmtNum(r.Sections.Volume.Tenants) }},
		{"actors", "Distinct actors", false, func(r *Report) string { return fmtNum(r.Sections.Volume.Actors) }},
		{"by_source", "Records by capture source", false, func(r *Report) string { return fmtCounts(r.Sections.Volume.BySrc) }},
		{"empty_buckets", "Periods without any record", true, func(r *Report) string {
			v := r.Sections.Volume
			return fmt.Sprintf("%s of %s (%dh each)", fmtNum(v.EmptyBuckets), fmtNum(int64(len(v.Activity))), v.BucketHours)
		}},
	},
	"completeness": {
		{"complete_share", "Inference records with every required field", true, func(r *Report) string {
			c := r.Sections.Completeness
			return fmt.Sprintf("%s (%s of %s)", fmtShare(c.CompleteShare), fmtNum(c.Complete), fmtNum(c.Inferences))
		}},
		{"missing_prompt", "Without a prompt commitment", false, func(r *Report) string { return fmtNum(r.Sections.Completeness.Missing.Prompt) }},
		{"missing_response", "Without a response commitment", false, func(r *Report) string { return fmtNum(r.Sections.Completeness.Missing.Response) }},
		{"missing_model_version", "Without a model version", false, func(r *Report) string {
			return fmtNum(r.Sections.Completeness.Missing.ModelVersion)
		}},
		{"missing_caller_identity", "Without a caller identity", false, func(r *Report) string {
			return fmtNum(r.Sections.Completeness.Missing.CallerIdentity)
		}},
		{"missing", "Missing fields", true, func(r *Report) string {
			m := r.Sections.Completeness.Missing
			return fmt.Sprintf("prompt %s, response %s, model version %s, caller identity %s",
				fmtNum(m.Prompt), fmtNum(m.Response), fmtNum(m.ModelVersion), fmtNum(m.CallerIdentity))
		}},
	},
	"timestamps": {
		{"observed_ahead", "Observed after they were received", true, func(r *Report) string { return fmtNum(r.Sections.Timestamps.ObservedAhead) }},
		{"received_out_of_order", "Received before the record sequenced before them", true, func(r *Report) string {
			return fmtNum(r.Sections.Timestamps.ReceivedOutOfOrder)
		}},
		{"observed_late", "Received long after they were observed", false, func(r *Report) string { return fmtNum(r.Sections.Timestamps.ObservedLate) }},
		{"max_lag", "Largest delay from observation to receipt", false, func(r *Report) string { return fmtSecs(r.Sections.Timestamps.MaxLagSeconds) }},
	},
	"integrity": {
		{"checkpoints", "Checkpoints signed in the period", true, func(r *Report) string { return fmtNum(r.Sections.Integrity.Checkpoints) }},
		{"checked", "Checkpoints checked (with the ones around the period)", false, func(r *Report) string { return fmtNum(r.Sections.Integrity.Checked) }},
		{"invalid_signatures", "Checkpoints with an invalid signature", true, func(r *Report) string {
			return fmtNum(r.Sections.Integrity.InvalidSignatures)
		}},
		{"inconsistent", "Checkpoints inconsistent with the one before", true, func(r *Report) string { return fmtNum(r.Sections.Integrity.Inconsistent) }},
		{"gaps", "Waits for a checkpoint longer than allowed", true, func(r *Report) string { return fmtNum(int64(len(r.Sections.Integrity.Gaps))) }},
		{"longest_wait", "Longest wait for a checkpoint", false, func(r *Report) string { return fmtSecs(r.Sections.Integrity.LongestWaitSeconds) }},
		{"unsigned", "Records not yet covered by a checkpoint", false, func(r *Report) string { return fmtNum(r.Sections.Integrity.Unsigned) }},
	},
	"findings": {
		{"total", "Findings about the period's records", true, func(r *Report) string {
			if !r.Sections.Findings.Available {
				return "not available"
			}
			return fmtNum(r.Sections.Findings.Total)
		}},
		{"by_severity", "Findings by severity", true, func(r *Report) string {
			f := r.Sections.Findings
			if !f.Available {
				return "not available"
			}
			return fmt.Sprintf("high %s, medium %s, low %s", fmtNum(f.BySeverity["high"]), fmtNum(f.BySeverity["medium"]), fmtNum(f.BySeverity["low"]))
		}},
		{"by_detector", "Findings by detector", false, func(r *Report) string {
			f := r.Sections.Findings
			if !f.Available {
				return "not available"
			}
			cs := make([]Count, len(f.ByDetector))
			for i, d := range f.ByDetector {
				cs[i] = Count{d.Detector, d.Total}
			}
			return fmtCounts(cs)
		}},
	},
	"agency": {
		{"tool_calls", "Tool calls executed", true, func(r *Report) string { return fmtNum(r.Sections.Agency.ToolCalls) }},
		{"downstream_calls", "Downstream calls observed", true, func(r *Report) string { return fmtNum(r.Sections.Agency.DownstreamCalls) }},
		{"policy_decisions", "Policy decisions by result", true, func(r *Report) string { return fmtCounts(r.Sections.Agency.PolicyDecisions) }},
		{"approvals", "Human approvals by decision", true, func(r *Report) string { return fmtCounts(r.Sections.Agency.Approvals) }},
		{"tool_errors", "Tool calls that failed", false, func(r *Report) string { return fmtNum(r.Sections.Agency.ToolErrors) }},
	},
	"identities": {
		{"credential_events", "Credential events", true, func(r *Report) string { return fmtCounts(r.Sections.Identities.CredentialEvents) }},
		{"credentials", "Distinct credentials used", false, func(r *Report) string { return fmtNum(r.Sections.Identities.Credentials) }},
		{"shared_credentials", "Credentials used by more than one actor", true, func(r *Report) string {
			return fmtNum(r.Sections.Identities.Shared)
		}},
		{"long_lived", "Long-lived credentials issued", true, func(r *Report) string { return fmtNum(r.Sections.Identities.LongLived) }},
		{"anonymous", "Records without an actor or credential", true, func(r *Report) string { return fmtNum(r.Sections.Identities.Anonymous) }},
	},
	"retention": {
		{"oldest_record", "The log's first record", true, func(r *Report) string {
			rt := r.Sections.Retention
			if rt.OldestRecord.IsZero() {
				return "none"
			}
			return fmt.Sprintf("%s (%.0f days ago)", rt.OldestRecord.Format(time.RFC3339), rt.LogAgeDays)
		}},
		{"min_retention", "Retention required", false, func(r *Report) string { return r.Parameters.MinRetention.String() }},
		{"erasures", "Erasures in the period", true, func(r *Report) string {
			rt := r.Sections.Retention
			return fmt.Sprintf("%s (%s; %s scopes)", fmtNum(rt.Erasures), fmtCounts(rt.ByTrigger), fmtNum(rt.Scopes))
		}},
		{"holds_placed", "Legal holds placed and released", true, func(r *Report) string {
			rt := r.Sections.Retention
			return fmt.Sprintf("%s placed, %s released", fmtNum(rt.HoldsPlaced), fmtNum(rt.HoldsReleased))
		}},
	},
	"access": {
		{"total", "Reads, exports and administrative actions", true, func(r *Report) string { return fmtNum(r.Sections.Access.Total) }},
		{"by_action", "By action", true, func(r *Report) string { return fmtCounts(r.Sections.Access.ByAction) }},
		{"accessors", "Distinct people and services", false, func(r *Report) string { return fmtNum(r.Sections.Access.Accessors) }},
		{"with_reason", "With a stated reason", false, func(r *Report) string {
			a := r.Sections.Access
			return fmt.Sprintf("%s of %s", fmtNum(a.WithReason), fmtNum(a.Total))
		}},
	},
}
