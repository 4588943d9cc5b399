package export

import (
	"bytes"
	"cmp"
	_ "embed"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"slices"
	"unicode/utf8"

	"github.com/infertrail/infertrail"
)

// summary.html is rendered from the manifest, the leaves and the content
// files alone, so that the verifier renders it again and refuses a bundle
// whose page says anything the verified records do not. The template is
// part of bundle format version 1: changing its output needs a new version.

//go:embed summary.html.tmpl
var summaryTemplateText string

var summaryTemplate = template.Must(template.New("summary").Parse(summaryTemplateText))

// What the summary shows of content: at most excerptLen bytes of a value,
// and summaryBudget bytes in all; the rest is in the content files.
const (
	excerptLen    = 2048
	summaryBudget = 4 << 20
	attrLen       = 256 // bytes of an attribute shown
)

// summaryPage is the data of summary.html.
type summaryPage struct {
	Title, Origin, VerifierKey string
	Exported, Exporter         string
	Checkpoint, Latest         ManifestCheckpoint
	Content                    bool
	Rows                       []summaryRow // by observed time, then seq
}

// summaryRow is one record of the timeline.
type summaryRow struct {
	Seq                    int64
	ID, Kind, Time         string
	Tenant, Session, Trace string
	Actor, OnBehalfOf      string
	Model, Tool, Policy    string
	Depth                  int
	Added                  string
	Fields                 []summaryField
	Withheld               int   // committed fields whose content the bundle does not reveal
	time                   int64 // observed time, Unix nanoseconds, for ordering
}

// summaryField is one content field of a record.
type summaryField struct {
	Name  string
	Value string // the canonical JSON, or its beginning; empty when not shown
	Note  string // why the value is cut, missing or not shown
}

// newSummaryRow describes one record; cf is its content file, nil when
// the bundle does not reveal its content. budget is what is left of the
// summary's content budget: rows must be made in ascending seq.
func newSummaryRow(rec *infertrail.Record, mr ManifestRecord, cf *contentFile, budget *int) summaryRow {
	row := summaryRow{
		Seq: rec.Seq, ID: rec.ID.String(), Kind: string(rec.Kind), Time: infertrail.FormatTime(rec.Time),
		Tenant: rec.Tenant, Session: rec.SessionID, Trace: rec.TraceID,
		Actor: rec.Actor.ID, OnBehalfOf: rec.Actor.OnBehalfOf,
		Model:  attrText(rec.Attributes, "gen_ai.response.model"),
		Tool:   attrText(rec.Attributes, "gen_ai.tool.name"),
		Policy: attrText(rec.Attributes, "policy.result"),
		Depth:  mr.Depth, Added: mr.Added, time: rec.Time.UnixNano(),
	}
	if row.Model == "" {
		row.Model = attrText(rec.Attributes, "gen_ai.request.model")
	}
	if cf == nil {
		row.Withheld = len(rec.Commitments)
		return row
	}
	names := make([]string, 0, len(cf.Fields))
	for name := range cf.Fields {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		f := cf.Fields[name]
		sf := summaryField{Name: name}
		switch {
		case f.ErasedBy != nil:
			sf.Note = fmt.Sprintf("erased by record %d (crypto-shredded); its commitment remains in the leaf", *f.ErasedBy)
		case f.Omitted:
			sf.Note = "committed in the leaf, never stored (capture profile)"
		default:
			text := displayValue(f.Value)
			ex := cut(text, excerptLen)
			switch {
			case len(ex) > *budget:
				sf.Note = fmt.Sprintf("not shown: this page shows at most %d MiB of content; the value is in %s", summaryBudget>>20, mr.Content)
			default:
				*budget -= len(ex)
				sf.Value = ex
				if len(ex) < len(text) {
					sf.Note = fmt.Sprintf("cut after %d of %d bytes; the whole value is in %s", len(ex), len(text), mr.Content)
				}
			}
		}
		row.Fields = append(row.Fields, sf)
	}
	return row
}

// newSummaryPage puts the rows in timeline order.
func newSummaryPage(m *Manifest, rows []summaryRow) *summaryPage {
	rows = slices.Clone(rows)
	slices.SortStableFunc(rows, func(a, b summaryRow) int {
		if c := cmp.Compare(a.time, b.time); c != 0 {
			return c
		}
		return cmp.Compare(a.Seq, b.Seq)
	})
	return &summaryPage{
		Title: m.Title, Origin: m.Origin, VerifierKey: m.VerifierKey, Exported: m.Exported, Exporter: m.Exporter,
		Checkpoint: m.Checkpoint, Latest: m.Latest, Content: m.Content, Rows: rows,
	}
}

func renderSummary(w io.Writer, p *summaryPage) error {
	return summaryTemplate.Execute(w, p)
}

// attrText returns an attribute for display: a string attribute's text,
// any other value's JSON, cut to attrLen bytes.
func attrText(attrs map[string]json.RawMessage, name string) string {
	raw, ok := attrs[name]
	if !ok {
		return ""
	}
	var s string
	if json.Unmarshal(raw, &s) != nil {
		s = string(raw)
	}
	return cut(s, attrLen)
}

// displayValue returns a content value for reading: a string's text, and
// any other value's JSON, indented.
func displayValue(v json.RawMessage) string {
	var s string
	if len(v) > 0 && v[0] == '"' && json.Unmarshal(v, &s) == nil {
		return s
	}
	var b bytes.Buffer
	if json.Indent(&b, v, "", "  ") != nil {
		return string(v)
	}
	return b.String()
}

// cut returns at most n bytes of s, not splitting a character.
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
